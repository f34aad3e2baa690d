"""The S3 store's pull-through mirror records against the session's RGW,
through FaultProxy: tag marks (one PUT, GET or DELETE each, at
mirror/<name>/_tags/<tag>) and the claim of fetching a blob from an
upstream (fills/sha256/<hex>: one create-only PUT when the digest is free;
renewal, takeover of a claim whose lease ran out, release by its holder
only, a lost answer's retry). The store is driven by
build/tools/s3_client_ops (tests/integration/s3_client_ops.c, built by
`make unit`) with a prefix of its own."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BACKENDS
from httpd_harness import module_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")

DIGEST = "sha256:" + "ab" * 32


class Store:
    def __init__(self, rgw, proxy, tool):
        self.rgw = rgw
        self.proxy = proxy
        self.tool = tool
        self.prefix = f"mirror-records-{secrets.token_hex(4)}/"

    def __call__(self, *args):
        """Runs one store operation; its outcome words and the S3 requests
        it took."""
        env = dict(os.environ, S3_ENDPOINT=self.proxy.endpoint,
                   S3_BUCKET=self.rgw.bucket, S3_ACCESS_KEY=self.rgw.access_key,
                   S3_SECRET_KEY=self.rgw.secret_key, S3_PREFIX=self.prefix)
        self.proxy.reset()
        p = subprocess.run([str(self.tool), *args], env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        line = p.stdout.rstrip("\n")
        words = {}
        # text= runs to the end of the line (a mark may hold spaces)
        head, _, text = line.partition(" text=")
        for w in head.split(" "):
            k, _, v = w.partition("=")
            words[k] = v
        if _:
            words["text"] = text
        return words, self.proxy.s3_requests()

    def keys(self, prefix=""):
        c = self.rgw.client()
        out = []
        for page in c.get_paginator("list_objects_v2").paginate(
                Bucket=self.rgw.bucket, Prefix=self.prefix + prefix):
            out += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return out

    def body(self, key):
        o = self.rgw.client().get_object(Bucket=self.rgw.bucket,
                                         Key=self.prefix + key)
        return o["Body"].read().decode()

    def put_raw(self, key, body):
        self.rgw.client().put_object(Bucket=self.rgw.bucket,
                                     Key=self.prefix + key, Body=body.encode())


@pytest.fixture(scope="module")
def store(rgw):
    tool = module_path().parent / "tools" / "s3_client_ops"
    if not tool.exists():
        pytest.fail(f"{tool} does not exist; run `make unit` first", pytrace=False)
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    s = Store(rgw, proxy, tool)
    try:
        yield s
    finally:
        proxy.close()
        left = [s.prefix + k for k in s.keys()]
        if left:
            rgw.client().delete_objects(
                Bucket=rgw.bucket,
                Delete={"Objects": [{"Key": k} for k in left[:1000]]})


@pytest.fixture(autouse=True)
def no_rules(store):
    yield
    store.proxy.clear()


def calls(reqs):
    return [(q.method, q.status) for q in reqs]


def test_marks_cost_one_request_each(store):
    w, reqs = store("mark-get", "lib/app", "v1")
    assert w["status"] == "enoent" and calls(reqs) == [("GET", 404)]
    w, reqs = store("mark-put", "lib/app", "v1", 'sha256:aa 1700000000 "e 1"')
    assert w["status"] == "ok" and calls(reqs) == [("PUT", 200)]
    assert reqs[0].path.endswith("/" + store.prefix + "mirror/lib/app/_tags/v1")
    w, reqs = store("mark-get", "lib/app", "v1")
    assert w == {"status": "ok", "text": 'sha256:aa 1700000000 "e 1"'}
    assert calls(reqs) == [("GET", 200)]
    # A nested repository's marks are its own.
    w, _ = store("mark-get", "lib", "v1")
    assert w["status"] == "enoent"
    w, reqs = store("mark-put", "lib/app", "v1", "second")
    assert w["status"] == "ok" and calls(reqs) == [("PUT", 200)]
    assert store("mark-get", "lib/app", "v1")[0]["text"] == "second"
    w, reqs = store("mark-delete", "lib/app", "v1")
    assert w["status"] == "ok" and calls(reqs) == [("DELETE", 204)]
    assert store("mark-get", "lib/app", "v1")[0]["status"] == "enoent"
    # An absent mark's delete is no failure, and still one request.
    w, reqs = store("mark-delete", "lib/app", "v1")
    assert w["status"] == "ok" and calls(reqs) == [("DELETE", 204)]
    # Nothing under repositories/ or catalog/: no listing sees marks.
    assert store.keys("repositories/") == [] and store.keys("catalog/") == []


def test_marks_refuse_bad_input_without_a_request(store):
    for args in (("mark-put", "../x", "v1", "m"), ("mark-put", "lib", "../v", "m"),
                 ("mark-get", "Lib", "v1"), ("mark-delete", "lib", "a/b"),
                 ("mark-put", "lib", "v1", "x" * 513)):
        w, reqs = store(*args)
        assert w["status"] == "einval" and reqs == [], args
    w, reqs = store("mark-put", "lib", "long", "x" * 512)
    assert w["status"] == "ok" and calls(reqs) == [("PUT", 200)]
    assert store("mark-get", "lib", "long")[0]["text"] == "x" * 512


def claim(store, digest, host, pid, lease=60, instance="1"):
    return store("fill-claim", digest, host, instance, str(pid), str(lease))


def release(store, digest, host, pid, instance="1"):
    return store("fill-release", digest, host, instance, str(pid))


def fill_key(digest):
    return "fills/sha256/" + digest.split(":", 1)[1]


def test_fill_claim(store):
    d = "sha256:" + secrets.token_hex(32)
    # A free digest: one create-only PUT.
    w, reqs = claim(store, d, "host-a", 100)
    assert w["status"] == "ok" and calls(reqs) == [("PUT", 200)]
    assert reqs[0].path.endswith("/" + store.prefix + fill_key(d))
    assert store.body(fill_key(d)).startswith("ocireg-lock/1 host-a 1 100 ")
    # Another host's claim waits: the 412 and the GET of the holder.
    w, reqs = claim(store, d, "host-b", 200)
    assert w["status"] == "ebusy"
    assert calls(reqs) == [("PUT", 412), ("GET", 200)]
    # The holder renews: its record is written again.
    before = store.body(fill_key(d))
    w, reqs = claim(store, d, "host-a", 100, lease=120)
    assert w["status"] == "ok"
    assert calls(reqs) == [("PUT", 412), ("GET", 200), ("PUT", 200)]
    assert store.body(fill_key(d)) != before
    # A release by someone else leaves it.
    w, reqs = release(store, d, "host-b", 200)
    assert calls(reqs) == [("GET", 200)]
    assert store.keys(fill_key(d)) == [fill_key(d)]
    # The holder's release removes it, and the digest is free again.
    w, reqs = release(store, d, "host-a", 100)
    assert calls(reqs) == [("GET", 200), ("DELETE", 204)]
    assert store.keys(fill_key(d)) == []
    w, reqs = release(store, d, "host-a", 100)
    assert calls(reqs) == [("GET", 404)]
    w, reqs = claim(store, d, "host-b", 200)
    assert w["status"] == "ok" and calls(reqs) == [("PUT", 200)]


def test_fill_claim_takeover(store):
    d = "sha256:" + secrets.token_hex(32)
    # A claim whose lease ran out is deleted and created again.
    assert claim(store, d, "host-a", 100, lease=-5)[0]["status"] == "ok"
    w, reqs = claim(store, d, "host-b", 200)
    assert w["status"] == "ok"
    assert calls(reqs) == [("PUT", 412), ("GET", 200), ("DELETE", 204),
                           ("PUT", 200)]
    assert store.body(fill_key(d)).startswith("ocireg-lock/1 host-b ")
    # Its old holder, back, finds it taken; its release changes nothing.
    assert claim(store, d, "host-a", 100)[0]["status"] == "ebusy"
    release(store, d, "host-a", 100)
    assert store.body(fill_key(d)).startswith("ocireg-lock/1 host-b ")
    # An object that is no lock record was never a working claimer's.
    store.put_raw(fill_key(d), "garbage")
    w, reqs = claim(store, d, "host-a", 100)
    assert w["status"] == "ok"
    assert store.body(fill_key(d)).startswith("ocireg-lock/1 host-a ")


def test_fill_claim_lost_answer_is_ours(store):
    d = "sha256:" + secrets.token_hex(32)
    # The create's answer is lost: the retry meets the object the first
    # attempt made, whose token says it is this claim's own.
    store.proxy.drop("PUT", fill_key(d) + "$")
    w, reqs = claim(store, d, "host-a", 100)
    assert w["status"] == "ok"
    assert calls(reqs) == [("PUT", 200), ("PUT", 412), ("GET", 200)]
    assert claim(store, d, "host-b", 200)[0]["status"] == "ebusy"


def test_fill_claim_refuses_bad_digests_without_a_request(store):
    before = store.keys()
    for d in ("sha256:../../x", "sha256:" + "AB" * 32, "md5:abc",
              "sha512:" + "ab" * 64):
        w, reqs = claim(store, d, "host-a", 100)
        assert w["status"] == "einval" and reqs == [], d
        _, reqs = release(store, d, "host-a", 100)
        assert reqs == []
    assert store.keys() == before
