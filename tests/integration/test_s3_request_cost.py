"""What reads and manifest pushes cost on the S3 store, counted at the wire
(FaultProxy between httpd and the RGW): a blob GET is the link's HEAD and
the data's GET, a blob HEAD the link's HEAD alone, a manifest by digest one
request of its link and by tag two; the existence checks of a manifest
PUT's references go out together, so their wait does not grow with the
layers. Links of the layout before (no metadata; a manifest link holding
only the media type) are still read, at the old cost. The tags list's cost
(one ListObjectsV2 request per page of 1000) is in
test_s3_listing_cost.py. These are the store's own costs, so the instance
here keeps no cache of store answers (OCIRegCacheEntries 0); what the cache
saves is in test_s3_cache.py."""

import os
import time

import pytest

from conftest import BACKENDS
from ocireg_client import (MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST, descriptor,
                           oci_index, oci_manifest, platform_descriptor, random_digest,
                           sha256)
from test_s3_listing_cost import start_counted, stop_counted

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")


@pytest.fixture(scope="module")
def counted(rgw, base_dir):
    c = start_counted(rgw, base_dir, "s3-reqcost",
                      global_extra="OCIRegCacheEntries 0")
    yield c
    stop_counted(c)


def settled(c):
    """Waits until what earlier requests do after their answer (an upload's
    cleanup) is over: no upload objects left, nothing in flight, and the
    proxy's log not growing."""
    client = c.rgw.client()
    seen = -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with c.proxy.lock:
            n, busy = len(c.proxy.log), c.proxy.in_flight
        left = client.list_objects_v2(Bucket=c.rgw.bucket,
                                      Prefix=f"{c.prefix}uploads/").get("KeyCount", 0)
        if n == seen and not busy and not left:
            return
        seen = n
        time.sleep(0.2)
    raise AssertionError("the store did not settle")


def cost(c, fn):
    """fn's answer and the S3 requests it made."""
    settled(c)
    c.proxy.reset()
    r = fn()
    return r, c.s3()


def key(c, rest):
    return f"/{c.rgw.bucket}/{c.prefix}{rest}"


def link(c, repo, digest, kind="_layers"):
    return key(c, f"repositories/{repo}/{kind}/sha256/{digest.split(':', 1)[1]}")


def test_blob_get_is_two_requests_and_head_one(counted):
    repo = "rc/blob"
    data = os.urandom(300 * 1024)
    d = counted.reg.push_blob(repo, data)

    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/{repo}/blobs/{d}"))
    assert r.status_code == 200 and r.content == data
    assert [(q.method, q.path) for q in reqs] == [
        ("HEAD", link(counted, repo, d)),
        ("GET", key(counted, f"blobs/sha256/{d.split(':', 1)[1]}"))], reqs

    r, reqs = cost(counted, lambda: counted.reg.head(f"/v2/{repo}/blobs/{d}"))
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert [(q.method, q.path) for q in reqs] == [
        ("HEAD", link(counted, repo, d))], reqs

    # A range is the same two requests, the range passed through.
    r, reqs = cost(counted, lambda: counted.reg.get(
        f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=1000-1999"}))
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert len(reqs) == 2, reqs

    # Unknown here: the link's HEAD says so.
    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/rc/other/blobs/{d}"))
    assert r.status_code == 404
    assert len(reqs) == 1, reqs


def test_blob_in_parts_is_two_requests(counted):
    """A blob that came in parts: the link names its data/<uuid> object."""
    repo = "rc/parts"
    data = os.urandom(5 * 1024 * 1024 + 12345)
    d = counted.reg.push_blob_chunked(repo, data, 5 * 1024 * 1024)
    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/{repo}/blobs/{d}"))
    assert r.status_code == 200 and r.content == data
    assert [q.method for q in reqs] == ["HEAD", "GET"], reqs
    assert reqs[1].path.startswith(key(counted, "data/")), reqs


def holder(c, repo, digest):
    return key(c, f"holders/sha256/{digest.split(':', 1)[1]}/{repo}")


def test_mount_reads_the_source_link_once(counted):
    data = os.urandom(4096)
    d = counted.reg.push_blob("rc/mount-from", data)
    r, reqs = cost(counted, lambda: counted.reg.post(
        f"/v2/rc/mount-to/blobs/uploads/?mount={d}&from=rc/mount-from"))
    assert r.status_code == 201, r.text
    # The new link and its holder entry go out together (one round trip).
    assert [(q.method, q.path) for q in reqs][0] == (
        "HEAD", link(counted, "rc/mount-from", d)), reqs
    assert sorted((q.method, q.path) for q in reqs[1:]) == [
        ("PUT", holder(counted, "rc/mount-to", d)),
        ("PUT", link(counted, "rc/mount-to", d))], reqs
    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/rc/mount-to/blobs/{d}"))
    assert r.status_code == 200 and r.content == data
    assert len(reqs) == 2, reqs


def test_mount_without_from_lists_the_holders_once(counted):
    """A mount without `from`: one ListObjectsV2 of the digest's holder
    entries, one HEAD of the chosen holder's link (an entry is only a
    hint), then the new link and its entry together."""
    data = os.urandom(4096)
    d = counted.reg.push_blob("rc/found-src", data)
    hexd = d.split(":", 1)[1]
    r, reqs = cost(counted, lambda: counted.reg.post(
        f"/v2/rc/found-dst/blobs/uploads/?mount={d}"))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/rc/found-dst/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert len(reqs) == 4, reqs
    assert reqs[0].is_list, reqs
    assert reqs[0].query["prefix"] == [f"{counted.prefix}holders/sha256/{hexd}/"]
    assert reqs[0].query["max-keys"] == ["100"]
    assert (reqs[1].method, reqs[1].path) == (
        "HEAD", link(counted, "rc/found-src", d)), reqs
    assert sorted((q.method, q.path) for q in reqs[2:]) == [
        ("PUT", holder(counted, "rc/found-dst", d)),
        ("PUT", link(counted, "rc/found-dst", d))], reqs
    r = counted.reg.get(f"/v2/rc/found-dst/blobs/{d}")
    assert r.status_code == 200 and r.content == data

    # A digest nobody holds: the listing alone, then the session's record.
    ghost = random_digest()
    r, reqs = cost(counted, lambda: counted.reg.post(
        f"/v2/rc/found-dst/blobs/uploads/?mount={ghost}"))
    assert r.status_code == 202, r.text
    assert reqs[0].is_list and len(reqs) == 2, reqs
    assert reqs[1].method == "PUT" and "/uploads/" in reqs[1].path, reqs
    assert counted.reg.delete(r.headers["Location"]).status_code == 204

    # An entry whose link is gone (removed behind the registry): its HEAD
    # says so, and the next holder is the source.
    counted.reg.post(f"/v2/rc/found-zzz/blobs/uploads/?mount={d}&from=rc/found-src")
    counted.rgw.client().delete_object(
        Bucket=counted.rgw.bucket,
        Key=f"{counted.prefix}repositories/rc/found-dst/_layers/sha256/{hexd}")
    counted.rgw.client().delete_object(
        Bucket=counted.rgw.bucket,
        Key=f"{counted.prefix}repositories/rc/found-src/_layers/sha256/{hexd}")
    r, reqs = cost(counted, lambda: counted.reg.post(
        f"/v2/rc/found-new/blobs/uploads/?mount={d}"))
    assert r.status_code == 201, r.text
    assert reqs[0].is_list, reqs
    assert [(q.method, q.path) for q in reqs[1:4]] == [
        ("HEAD", link(counted, "rc/found-dst", d)),
        ("HEAD", link(counted, "rc/found-src", d)),
        ("HEAD", link(counted, "rc/found-zzz", d))], reqs
    assert len(reqs) == 6, reqs
    r = counted.reg.get(f"/v2/rc/found-new/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def test_blob_delete_removes_the_holder_entry(counted):
    data = os.urandom(1024)
    d = counted.reg.push_blob("rc/unheld", data)
    r, reqs = cost(counted, lambda: counted.reg.delete(f"/v2/rc/unheld/blobs/{d}"))
    assert r.status_code == 202
    # The link's HEAD, then the link and the entry removed together.
    assert (reqs[0].method, reqs[0].path) == ("HEAD", link(counted, "rc/unheld", d))
    assert sorted((q.method, q.path) for q in reqs[1:]) == [
        ("DELETE", holder(counted, "rc/unheld", d)),
        ("DELETE", link(counted, "rc/unheld", d))], reqs
    r = counted.reg.post(f"/v2/rc/unheld-to/blobs/uploads/?mount={d}")
    assert r.status_code == 202
    assert counted.reg.delete(r.headers["Location"]).status_code == 204


def test_manifest_reads(counted):
    repo = "rc/manifest"
    img = counted.reg.push_image(repo, "v1")
    d = img["digest"]
    mlink = link(counted, repo, d, "_manifests")
    tag_key = key(counted, f"repositories/{repo}/_tags/v1!v1")

    r, reqs = cost(counted, lambda: counted.reg.get_manifest(repo, d))
    assert r.status_code == 200 and r.content == img["manifest"]
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    assert r.headers["Docker-Content-Digest"] == d
    assert [(q.method, q.path) for q in reqs] == [("GET", mlink)], reqs

    r, reqs = cost(counted, lambda: counted.reg.get_manifest(repo, d, method="HEAD"))
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(img["manifest"]))
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    assert [(q.method, q.path) for q in reqs] == [("HEAD", mlink)], reqs

    r, reqs = cost(counted, lambda: counted.reg.get_manifest(repo, "v1"))
    assert r.status_code == 200 and r.content == img["manifest"]
    assert [(q.method, q.path) for q in reqs] == [("GET", tag_key),
                                                   ("GET", mlink)], reqs

    r, reqs = cost(counted, lambda: counted.reg.get_manifest(repo, "v1", method="HEAD"))
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(img["manifest"]))
    assert len(reqs) == 2, reqs

    # The content-addressed copy is written too (other repositories, GC).
    body = counted.rgw.client().get_object(
        Bucket=counted.rgw.bucket,
        Key=f"{counted.prefix}blobs/sha256/{d.split(':', 1)[1]}")["Body"].read()
    assert body == img["manifest"]


def manifest_of(c, repo, nlayers):
    layers = []
    for i in range(nlayers):
        data = f"{repo} layer {i} {os.urandom(8).hex()}".encode()
        c.reg.push_blob(repo, data)
        layers.append(descriptor(MT_OCI_LAYER, data))
    config = f'{{"repo":"{repo}","n":{nlayers}}}'.encode()
    c.reg.push_blob(repo, config)
    return oci_manifest(descriptor("application/vnd.oci.image.config.v1+json",
                                   config), layers)


@pytest.mark.parametrize("nlayers", [10, 100])
def test_manifest_put_checks_references_together(counted, nlayers):
    repo = f"rc/put{nlayers}"
    body = manifest_of(counted, repo, nlayers)
    d = sha256(body)
    refs = nlayers + 1
    counted.reg.put_manifest(repo, "seed", body, MT_OCI_MANIFEST)
    counted.proxy.delay = 0.04  # as far away as R2 may be
    try:
        t0 = time.monotonic()
        r, reqs = cost(counted, lambda: counted.reg.put_manifest(
            repo, "again", body, MT_OCI_MANIFEST))
        took = time.monotonic() - t0
        overlap = counted.proxy.max_in_flight
    finally:
        counted.proxy.delay = 0.0
    print(f"\n[manifest PUT, {nlayers} layers, 40 ms per S3 answer] "
          f"{len(reqs)} S3 requests, {overlap} at once at most, {took:.2f} s")
    assert r.status_code == 201
    heads = [q for q in reqs if q.method == "HEAD"]
    assert len(heads) == refs, reqs
    assert all("/_layers/sha256/" in q.path for q in heads), heads
    puts = sorted(q.path for q in reqs if q.method == "PUT"
                  and not q.path.startswith(key(counted, "catalog/")))
    assert puts == sorted([key(counted, f"blobs/sha256/{d.split(':', 1)[1]}"),
                           link(counted, repo, d, "_manifests"),
                           key(counted, f"repositories/{repo}/_tags/again!again")]), reqs
    # The child that answers may not have written the catalog entry yet.
    assert len(reqs) in (refs + 3, refs + 4), reqs
    # The checks went out together, not one after the other.
    assert overlap >= 2, overlap


def test_index_put_checks_its_manifests_together(counted):
    repo = "rc/index"
    children = [counted.reg.push_image(repo, f"c{i}")["descriptor"] for i in range(3)]
    body = oci_index([platform_descriptor(c, a) for c, a in
                      zip(children, ("amd64", "arm64", "s390x"))])
    r, reqs = cost(counted, lambda: counted.reg.put_manifest(repo, "multi", body,
                                                             MT_OCI_INDEX))
    assert r.status_code == 201
    heads = sorted(q.path for q in reqs if q.method == "HEAD")
    assert heads == sorted(link(counted, repo, c["digest"], "_manifests")
                           for c in children), reqs
    r = counted.reg.get_manifest(repo, "multi")
    assert r.content == body and r.headers["Content-Type"] == MT_OCI_INDEX
    # A child that is not there is named in the answer.
    ghost = {"mediaType": MT_OCI_MANIFEST, "digest": random_digest(), "size": 10}
    bad = oci_index([children[0], ghost])
    r = counted.reg.put_manifest(repo, "bad", bad, MT_OCI_INDEX, expect=400)
    assert [e["detail"]["digest"] for e in r.json()["errors"]] == [ghost["digest"]]


def test_manifest_put_reports_every_missing_reference(counted):
    repo = "rc/missing"
    body = manifest_of(counted, repo, 3)
    doc_layers = [descriptor(MT_OCI_LAYER, os.urandom(16)) for _ in range(2)]
    import json
    doc = json.loads(body)
    doc["layers"] += doc_layers
    r = counted.reg.put_manifest(repo, "x", json.dumps(doc).encode(),
                                 MT_OCI_MANIFEST, expect=400)
    details = sorted(e["detail"]["digest"] for e in r.json()["errors"])
    assert details == sorted(x["digest"] for x in doc_layers)


def test_links_of_the_layout_before_are_read(counted):
    """Links as builds before this one wrote them: an empty blob link, and a
    manifest link holding only the media type."""
    client = counted.rgw.client()
    src = "rc/old-src"
    img = counted.reg.push_image(src, "v1", nlayers=1, layer_size=2048)
    layer = img["layers"][0]["digest"]
    repo = "rc/old"
    hexl = layer.split(":", 1)[1]
    hexm = img["digest"].split(":", 1)[1]
    client.put_object(Bucket=counted.rgw.bucket, Body=b"",
                      Key=f"{counted.prefix}repositories/{repo}/_layers/sha256/{hexl}")
    client.put_object(Bucket=counted.rgw.bucket, Body=MT_OCI_MANIFEST.encode(),
                      Key=f"{counted.prefix}repositories/{repo}/_manifests/sha256/{hexm}")

    want = counted.reg.get(f"/v2/{src}/blobs/{layer}").content
    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/{repo}/blobs/{layer}"))
    assert r.status_code == 200 and r.content == want
    assert [q.method for q in reqs] == ["HEAD", "HEAD", "GET"], reqs
    r, reqs = cost(counted, lambda: counted.reg.head(f"/v2/{repo}/blobs/{layer}"))
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(want))
    assert len(reqs) == 2, reqs

    r, reqs = cost(counted, lambda: counted.reg.get_manifest(repo, img["digest"]))
    assert r.status_code == 200 and r.content == img["manifest"]
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    assert len(reqs) == 2, reqs
    r = counted.reg.get_manifest(repo, img["digest"], method="HEAD")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(img["manifest"]))
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST

    # Mounting from an old link writes a new one, which reads at the new cost.
    r = counted.reg.post(f"/v2/rc/old-mounted/blobs/uploads/?mount={layer}&from={repo}")
    assert r.status_code == 201
    r, reqs = cost(counted, lambda: counted.reg.get(f"/v2/rc/old-mounted/blobs/{layer}"))
    assert r.status_code == 200 and r.content == want
    assert len(reqs) == 2, reqs
    # A manifest PUT referencing the old links finds them.
    body = oci_manifest(img["config"], img["layers"])
    client.put_object(Bucket=counted.rgw.bucket, Body=b"",
                      Key=f"{counted.prefix}repositories/{repo}/_layers/sha256/"
                          f"{img['config']['digest'].split(':', 1)[1]}")
    counted.reg.put_manifest(repo, "again", body, MT_OCI_MANIFEST)


def test_a_link_naming_a_foreign_key_is_not_followed(counted):
    """A link is read back from a shared bucket: one whose metadata names an
    object outside this store's data is ignored, and the pointer asked."""
    client = counted.rgw.client()
    data = os.urandom(1000)
    d = counted.reg.push_blob("rc/forged-src", data)
    client.put_object(Bucket=counted.rgw.bucket, Body=b"secret",
                      Key=f"{counted.prefix}elsewhere")
    client.put_object(Bucket=counted.rgw.bucket, Body=b"",
                      Key=f"{counted.prefix}repositories/rc/forged/_layers/sha256/"
                          f"{d.split(':', 1)[1]}",
                      Metadata={"ocireg-data": f"{counted.prefix}elsewhere",
                                "ocireg-size": "6"})
    r = counted.reg.get(f"/v2/rc/forged/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def test_bytes_gone_behind_the_registry_are_unknown(counted):
    """A link naming a data object someone removed from the bucket: 404
    BLOB_UNKNOWN, not cacheable, not a 500."""
    data = os.urandom(2000)
    d = counted.reg.push_blob("rc/gone", data)
    counted.rgw.client().delete_object(
        Bucket=counted.rgw.bucket, Key=f"{counted.prefix}blobs/sha256/{d.split(':', 1)[1]}")
    r = counted.reg.get(f"/v2/rc/gone/blobs/{d}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert "immutable" not in r.headers.get("Cache-Control", "")
    assert "ETag" not in r.headers
