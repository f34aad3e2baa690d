"""What listings cost on the S3 store, counted at the wire: a proxy between
httpd and the RGW records every S3 request. A page of tags or of the
catalog is one ListObjectsV2 request, whatever the repository or the store
holds; a manifest 404 lists nothing; a store written before the catalog
index is backfilled once, and tags stored under the old keys still resolve
and are listed in order."""

import hashlib
import re
import sys
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import pytest
import requests

import conftest
from conftest import BACKENDS
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines, module_path, wait_for
from ocireg_client import MT_OCI_MANIFEST, Registry, assert_error, random_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")

LINK_RE = re.compile(r'^<([^>]+)>;\s*rel="?next"?$')


def lexical(items):
    return sorted(items, key=lambda t: (t.lower(), t))


def next_link(r):
    link = r.headers.get("Link")
    if not link:
        return None
    m = LINK_RE.match(link.strip())
    assert m, link
    return urljoin(r.url, m.group(1))


class Counted:
    def __init__(self, inst, proxy, prefix, rgw):
        self.inst = inst
        self.proxy = proxy
        self.prefix = prefix
        self.rgw = rgw
        self.reg = Registry(inst.base_url)

    def s3(self):
        return self.proxy.s3_requests()


def start_counted(rgw, base_dir, name, global_extra="", prefix=None):
    if not module_path().exists():
        pytest.fail(f"{module_path()} does not exist; run `make build` first",
                    pytrace=False)
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    storage = rgw.storage(base_dir, name)
    storage["endpoint"] = proxy.endpoint
    if prefix:
        storage["prefix"] = prefix
    inst = HttpdInstance(name, base_dir, storage=storage,
                         global_extra=global_extra)
    try:
        inst.start()
    except HttpdError as e:
        proxy.close()
        pytest.fail(str(e), pytrace=False)
    proxy.wait_prepared()
    assert bad_log_lines(inst.error_log_since(0)) == []
    inst.checked_offset = inst.error_log_size()
    conftest._RUNNING.append(inst)
    return Counted(inst, proxy, storage["prefix"], rgw)


def stop_counted(c):
    conftest._RUNNING.remove(c.inst)
    offset = getattr(c.inst, "checked_offset", 0)
    try:
        c.reg.close()
        c.inst.stop()
    finally:
        c.proxy.close()
    assert bad_log_lines(c.inst.error_log_since(offset)) == []


@pytest.fixture(scope="module")
def counted(rgw, base_dir):
    c = start_counted(rgw, base_dir, "s3-count")
    yield c
    stop_counted(c)


TAGS = 2500


@pytest.fixture(scope="module")
def many_tags(counted):
    """A repository with 2500 tags, mixed case, pushed through the registry."""
    repo = "cost/tags"
    img = counted.reg.push_image(repo, "t0000")
    names = ["t0000"] + [f"{'tT'[i % 2]}{i:04d}" for i in range(1, TAGS)]
    base = counted.inst.base_url

    def put(tag):
        r = requests.put(f"{base}/v2/{repo}/manifests/{tag}", data=img["manifest"],
                         headers={"Content-Type": MT_OCI_MANIFEST}, timeout=60)
        assert r.status_code == 201, r.text

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, names[1:]))
    return repo, img, lexical(names)


def lists_only(c, reqs):
    """The S3 requests other than listings: none, but for a process's first
    look at the index marker (each httpd child looks once)."""
    marker = f"/{c.rgw.bucket}/{c.prefix}catalog.complete"
    return [q for q in reqs if not q.is_list
            and not (q.method == "HEAD" and q.path == marker)]


def walk(c, url):
    """Follows Links from url; returns the items and, per page, the S3
    requests it cost."""
    got, costs = [], []
    while url:
        c.proxy.reset()
        r = c.reg.get(url)
        assert r.status_code == 200, r.text
        costs.append(c.s3())
        doc = r.json()
        got += doc.get("tags", doc.get("repositories")) or []
        url = next_link(r)
    return got, costs


def test_tags_list_one_request_per_page(counted, many_tags):
    repo, _, want = many_tags
    counted.reg.get(f"/v2/{repo}/tags/list?n=1")  # the store's index is known
    got, costs = walk(counted, f"/v2/{repo}/tags/list?n=1000")
    assert got == want
    assert len(costs) == 3
    for page, reqs in enumerate(costs):
        lists = [q for q in reqs if q.is_list]
        assert len(lists) == 1, (page, reqs)
        assert lists_only(counted, reqs) == [], reqs
        assert lists[0].query["max-keys"] == ["1000"]
        assert ("start-after" in lists[0].query) == (page > 0)


def test_tags_list_small_pages_and_last(counted, many_tags):
    repo, _, want = many_tags
    counted.proxy.reset()
    r = counted.reg.get(f"/v2/{repo}/tags/list?n=7&last={want[1234]}")
    assert r.json()["tags"] == want[1235:1242]
    assert next_link(r)
    assert [q for q in counted.s3() if q.is_list] != []
    assert len([q for q in counted.s3() if q.is_list]) == 1
    assert lists_only(counted, counted.s3()) == []
    # Without n: the first 1000, and a Link on.
    counted.proxy.reset()
    r = counted.reg.get(f"/v2/{repo}/tags/list")
    assert r.json()["tags"] == want[:1000]
    assert next_link(r)
    assert len([q for q in counted.s3() if q.is_list]) == 1
    assert lists_only(counted, counted.s3()) == []


def test_delete_by_digest_removes_its_tags(counted):
    repo = "cost/tags-delete"
    mine = counted.reg.push_image(repo, "keep")
    for t in ("a", "B", "c"):
        counted.reg.put_manifest(repo, t, mine["manifest"], MT_OCI_MANIFEST)
    counted.reg.push_image(repo, "stays")
    assert counted.reg.delete(f"/v2/{repo}/manifests/{mine['digest']}").status_code == 202
    assert counted.reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["stays"]


def test_catalog_one_request_per_page(counted):
    # The index is written by manifest pushes; 2500 more entries go straight
    # into the bucket (pushing 2500 repositories would take minutes).
    pushed = ["cost/cat/a", "cost/cat/b/c"]
    for name in pushed:
        counted.reg.push_image(name, "v1")
    client = counted.rgw.client()
    extra = [f"cost/bulk/r{i:04d}" for i in range(2500)]

    def put(name):
        client.put_object(Bucket=counted.rgw.bucket,
                          Key=f"{counted.prefix}catalog/{name}", Body=b"")

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, extra))
    counted.reg.get("/v2/_catalog?n=1")
    got, costs = walk(counted, "/v2/_catalog?n=1000")
    assert got == lexical(got) and len(set(got)) == len(got)
    for name in pushed + extra + ["cost/tags"]:
        assert name in got
    assert len(costs) == (len(got) + 999) // 1000
    for reqs in costs:
        assert len([q for q in reqs if q.is_list]) == 1, reqs
        assert lists_only(counted, reqs) == [], reqs


def test_manifest_404_lists_nothing(counted):
    counted.reg.push_image("cost/miss", "here")
    for repo, ref in (("cost/miss", "nope"), ("cost/miss", random_digest()),
                      ("cost/no-such-repo", "latest"),
                      ("cost/no-such-repo", random_digest())):
        for method in ("GET", "HEAD"):
            counted.proxy.reset()
            r = counted.reg.get_manifest(repo, ref, method=method)
            assert r.status_code == 404
            if method == "GET":
                assert_error(r, 404, "MANIFEST_UNKNOWN")
            reqs = counted.s3()
            assert not any(q.is_list for q in reqs), reqs
            # the tag, or the link: one GET each, and a process's first
            # look at the marker (old tag keys are looked up until then)
            assert len(lists_only(counted, reqs)) <= 3, reqs


def test_backfill_of_a_store_without_index(rgw, base_dir):
    """A store as the previous layout wrote it: links and tags under
    repositories/, no catalog/ index, tags at _tags/<tag>. An httpd started
    on it completes the index in the background (the expiry watchdog's
    first round), before any listing needs it."""
    seed = start_counted(rgw, base_dir, "s3-backfill")
    try:
        img = seed.reg.push_image("old/one", "seed")
    finally:
        stop_counted(seed)
    client = rgw.client()
    prefix = seed.prefix
    # Make it look old: drop the new-layout keys the push wrote.
    for key in (f"{prefix}catalog/old/one", f"{prefix}catalog.complete",
                f"{prefix}repositories/old/one/_tags/seed!seed"):
        client.delete_object(Bucket=rgw.bucket, Key=key)
    digest = img["digest"]
    hexd = digest.split(":", 1)[1]
    old = {"old/one": ["latest", "Beta", "alpha"], "old/two/nested": ["v1"],
           "old/layers-only": []}
    for name, tags in old.items():
        if name == "old/layers-only":
            client.put_object(Bucket=rgw.bucket, Body=b"",
                              Key=f"{prefix}repositories/{name}/_layers/sha256/{hexd}")
            continue
        client.put_object(Bucket=rgw.bucket, Body=MT_OCI_MANIFEST.encode(),
                          Key=f"{prefix}repositories/{name}/_manifests/sha256/{hexd}")
        for t in tags:
            client.put_object(Bucket=rgw.bucket, Body=digest.encode(),
                              Key=f"{prefix}repositories/{name}/_tags/{t}")

    c = start_counted(rgw, base_dir, "s3-backfill", prefix=prefix)
    try:
        def marked():
            # The holder index's completion comes after the listing
            # index's; both are done once the second marker is there.
            try:
                for m in ("catalog.complete", "holders.complete"):
                    client.head_object(Bucket=rgw.bucket, Key=f"{prefix}{m}")
                return True
            except Exception:
                return False
        wait_for(marked, timeout=60, what="the index completed in the background")
        # Old tags resolve (now under their ordered keys) ...
        r = c.reg.get_manifest("old/one", "Beta")
        assert r.status_code == 200 and r.content == img["manifest"]
        # ... a tag set now wins over an old one ...
        other = c.reg.push_image("old/one", "alpha")
        # ... and a deleted one stays deleted.
        assert c.reg.delete("/v2/old/one/manifests/latest").status_code == 202

        c.proxy.reset()
        assert c.reg.get("/v2/_catalog").json()["repositories"] == ["old/one",
                                                                   "old/two/nested"]
        assert len([q for q in c.s3() if q.is_list]) == 1
        assert lists_only(c, c.s3()) == []
        assert c.reg.get("/v2/old/one/tags/list").json()["tags"] == ["alpha", "Beta"]
        assert c.reg.get_manifest("old/one", "alpha").content == other["manifest"]
        assert c.reg.get_manifest("old/one", "Beta").content == img["manifest"]
        assert_error(c.reg.get_manifest("old/one", "latest"), 404, "MANIFEST_UNKNOWN")
        assert c.reg.get("/v2/old/two/nested/tags/list").json()["tags"] == ["v1"]
        # No tag is left under the old keys.
        keys = [o["Key"] for o in client.list_objects_v2(
            Bucket=rgw.bucket, Prefix=f"{c.prefix}repositories/").get("Contents", [])]
        assert not [k for k in keys if "/_tags/" in k and "!" not in k], keys
    finally:
        stop_counted(c)
