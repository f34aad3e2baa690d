"""What a push costs in S3 requests, counted at the wire (a proxy between
httpd and the RGW records every request). At R2's distance each request a
client waits for is a round trip, so these counts are the product's speed:
they are deterministic and asserted exactly, with what each request is for.

A small blob (less than a part) pushed the way docker and skopeo push it
(POST, one chunked PATCH without Content-Length, closing PUT):
  POST   PUT  uploads/<uuid>/state.1       the session's record (create-only)
  PATCH  PUT  uploads/<uuid>/state.2       the record, its body the bytes
  PUT    PUT  blobs/sha256/<hex>            server-side copy of state.2's body,
         PUT  repositories/<name>/_layers/  and beside it the repository's link
         PUT  holders/sha256/<hex>/<name>   and the digest's holder entry (the
                                            index a mount without `from` lists)
  after the 201:
         POST ?delete                       the records, in one DeleteObjects
The same push continued by another host reads the record the Location
names (one HEAD) before its PATCH."""

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

import conftest
from conftest import BACKENDS
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines, module_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")

KIB = 1024
MIB = 1024 * KIB
PART = 5 * MIB


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def counted_pair(rgw, base_dir, request):
    """Two httpd instances (two hosts: separate shared memory) on one
    bucket prefix, both through one counting proxy."""
    if not module_path().exists():
        pytest.fail(f"{module_path()} does not exist; run `make build` first",
                    pytrace=False)
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    tag = request.node.name.split("[")[0][-16:].replace("_", "-")
    storage = rgw.storage(base_dir, f"rt-{tag}", part_size="5M")
    storage["endpoint"] = proxy.endpoint
    insts = [HttpdInstance(f"rt-{n}-{tag}", base_dir, storage=storage)
             for n in ("a", "b")]
    started = []
    try:
        for inst in insts:
            try:
                inst.start()
            except HttpdError as e:
                pytest.fail(str(e), pytrace=False)
            started.append(inst)
            conftest._RUNNING.append(inst)
        proxy.wait_prepared(len(started))
        yield insts[0], insts[1], proxy
    finally:
        for inst in started:
            conftest._RUNNING.remove(inst)
            inst.stop()
        proxy.close()
    for inst in started:
        assert bad_log_lines(inst.error_log_since(0)) == [], inst.name


def chunked(data, piece=64 * KIB):
    """A body without Content-Length: requests sends it chunked, as docker
    and skopeo do."""
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


def wait_quiet(proxy, until):
    """The requests once `until(log)` holds (the work after an answer runs
    on in httpd), within a generous bound."""
    deadline = time.monotonic() + 30
    while True:
        log = proxy.s3_requests()
        if until(log):
            return log
        assert time.monotonic() < deadline, log
        time.sleep(0.05)


def shape(log):
    """(method, what) per request, the key reduced to its kind."""
    out = []
    for r in log:
        t = r.target
        if "?delete" in t:
            kind = "delete-many"
        elif "/holders/sha256/" in t:
            kind = "holder"
        elif "/uploads/" in t and "/state." in t:
            kind = "record"
        elif "/uploads/" in t and "/lock." in t:
            kind = "lock"
        elif "uploadId=" in t and "partNumber=" in t:
            kind = "part"
        elif "uploadId=" in t:
            kind = "multipart"
        elif t.endswith("?uploads") or "?uploads&" in t or "?uploads=" in t:
            kind = "multipart-create"
        elif "/blobs/sha256/" in t:
            kind = "blob"
        elif "/_layers/" in t:
            kind = "link"
        elif "/data/" in t:
            kind = "data"
        else:
            kind = t
        out.append((r.method, kind))
    return out


def post(inst, repo):
    r = requests.post(f"{inst.base_url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return r.headers["Location"]


def patch_chunked(inst, loc, data):
    r = requests.patch(inst.base_url + loc, data=chunked(data),
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    return r.headers["Location"]


def put(inst, loc, digest):
    r = requests.put(inst.base_url + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    return r


def assert_pulled(inst, repo, data):
    r = requests.get(f"{inst.base_url}/v2/{repo}/blobs/{digest_of(data)}")
    assert r.status_code == 200
    assert r.content == data


def cleaned_up(log):
    return any(m == "POST" and k == "delete-many" for m, k in shape(log))


def test_small_push_fresh_session(counted_pair):
    a, _, proxy = counted_pair
    data = os.urandom(300 * KIB)
    proxy.reset()
    loc = post(a, "rt/small")
    assert shape(proxy.s3_requests()) == [("PUT", "record")]
    loc = patch_chunked(a, loc, data)
    assert shape(proxy.s3_requests())[1:] == [("PUT", "record")]
    put(a, loc, digest_of(data))
    before_201 = shape(proxy.s3_requests())
    after = shape(wait_quiet(proxy, cleaned_up))
    assert sorted(before_201[2:]) == [("PUT", "blob"), ("PUT", "holder"),
                                      ("PUT", "link")]
    assert len(before_201) == 5
    assert after[5:] == [("POST", "delete-many")]
    assert len(after) == 6
    assert_pulled(a, "rt/small", data)
    # Nothing of the session is left in the bucket.
    assert [r for r in proxy.s3_requests() if r.status and r.status >= 400] == []


def test_small_push_continued_on_another_host(counted_pair):
    a, b, proxy = counted_pair
    data = os.urandom(300 * KIB)
    proxy.reset()
    loc = post(a, "rt/moved")
    loc = patch_chunked(b, loc, data)
    assert shape(proxy.s3_requests())[1:] == [("HEAD", "record"),
                                              ("PUT", "record")]
    put(b, loc, digest_of(data))
    before_201 = shape(proxy.s3_requests())
    after = shape(wait_quiet(proxy, cleaned_up))
    assert len(before_201) == 6
    assert len(after) == 7
    assert_pulled(a, "rt/moved", data)


def test_chunked_upload_over_parts(counted_pair):
    """3.5 parts in one chunked PATCH: no part is started that is not
    full, none is aborted, the tail is never read back, and the closing PUT
    copies it server-side as the last part."""
    a, _, proxy = counted_pair
    data = os.urandom(3 * PART + PART // 2)
    loc = post(a, "rt/parts")
    proxy.reset()
    loc = patch_chunked(a, loc, data)
    patch_log = shape(proxy.s3_requests())
    assert patch_log.count(("PUT", "part")) == 3
    assert patch_log.count(("POST", "multipart-create")) == 1
    assert ("DELETE", "multipart") not in patch_log
    assert ("GET", "record") not in patch_log
    # The lock (taken only because parts went out), the check that no
    # later record exists, the record, the lock's removal.
    assert sorted(k for k in patch_log if k[1] in ("lock", "record")) == [
        ("DELETE", "lock"), ("HEAD", "record"), ("PUT", "lock"),
        ("PUT", "record")]
    assert len(patch_log) == 8
    proxy.reset()
    put(a, loc, digest_of(data))
    put_log = shape(proxy.s3_requests())
    # The tail as part 4 (UploadPartCopy) and ListParts side by side, then
    # Complete, the pointer, the link and its holder entry.
    assert sorted(put_log) == sorted([
        ("PUT", "part"), ("GET", "multipart"), ("POST", "multipart"),
        ("PUT", "blob"), ("PUT", "link"), ("PUT", "holder")])
    assert ("GET", "record") not in put_log
    assert_pulled(a, "rt/parts", data)


@pytest.mark.parametrize("size", [300 * KIB, PART + 1], ids=["small", "parts"])
def test_holder_entry_costs_no_round_trip(counted_pair, size):
    """The holder entry goes out in the same batch as the blob and the
    link: while the link's answer is held, the entry and the blob are
    answered, so the closing PUT waits no longer than before it."""
    a, _, proxy = counted_pair
    data = os.urandom(size)
    loc = patch_chunked(a, post(a, f"rt/held-{size}"), data)
    held = proxy.hold("PUT", r"/_layers/")
    answer = {}

    def closing():
        answer["r"] = requests.put(a.base_url + loc,
                                   params={"digest": digest_of(data)})

    t = threading.Thread(target=closing)
    t.start()
    try:
        assert held.fired.wait(30), proxy.requests()[-10:]
        done = wait_quiet(proxy, lambda log: {"holder", "blob"} <= {
            k for m, k in shape(log) if m == "PUT"})
        assert ("PUT", "link") not in shape(done)
    finally:
        held.release()
        t.join(30)
        proxy.clear()
    assert answer["r"].status_code == 201, answer["r"].text
    assert_pulled(a, f"rt/held-{size}", data)
