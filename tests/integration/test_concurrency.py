"""Many clients at once: the same blob pushed in parallel into several
repositories is stored once; parallel updates of one tag leave it pointing
at one of the pushed manifests, never a broken one."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ocireg_client import Registry, sha256, MT_OCI_MANIFEST

MIB = 1024 * 1024


@pytest.fixture
def s3_or_none(backend, request):
    return request.getfixturevalue("rgw") if backend == "s3" else None


def stored_copies(server, backend, rgw, digest, size):
    hexd = digest.split(":")[1]
    if backend == "filesystem":
        return len([1 for _ in (server.data_dir / "blobs" / "sha256" / hexd[:2]).glob(hexd + "*")])
    prefix = server.storage["prefix"]
    c = rgw.client()
    data = c.list_objects_v2(Bucket=rgw.bucket, Prefix=prefix + "data/").get("Contents", [])
    head = c.head_object(Bucket=rgw.bucket, Key=f"{prefix}blobs/sha256/{hexd}")
    # A pointer names one data object; no other may hold these bytes (other
    # tests' blobs share the prefix: this blob's size is unique to it).
    meta = head.get("Metadata", {})
    if "ocireg-data" not in meta:
        return 1
    return len([o for o in data if o["Size"] == size])


def test_fifty_parallel_pushes_of_one_blob_store_one_copy(server, backend, s3_or_none):
    # Larger than one 5 MiB part, so S3 pushes go through multipart uploads.
    data = os.urandom(6 * MIB + 17)
    d = sha256(data)
    repos = [f"conc/same/r{i}" for i in range(5)]

    def push(i):
        # A connection per request: under load the event MPM may close idle
        # keep-alive connections, and a POST or PUT is not retried.
        close = {"Connection": "close"}
        r = requests.post(f"{server.base_url}/v2/{repos[i % 5]}/blobs/uploads/",
                          headers=close, timeout=120)
        assert r.status_code == 202, r.text
        r = requests.put(server.base_url + r.headers["Location"], params={"digest": d},
                         data=data, headers=close, timeout=120)
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(push, range(50)))
    assert results == [d] * 50
    reg = Registry(server.base_url)
    for r in repos:
        got = reg.get(f"/v2/{r}/blobs/{d}")
        assert got.status_code == 200 and sha256(got.content) == d
    reg.close()
    assert stored_copies(server, backend, s3_or_none, d, len(data)) == 1


def test_twenty_parallel_updates_of_one_tag(server, reg, repo):
    imgs = [reg.push_image(repo) for _ in range(20)]

    def put(img):
        r = requests.put(f"{server.base_url}/v2/{repo}/manifests/contended",
                         data=img["manifest"], timeout=60,
                         headers={"Content-Type": MT_OCI_MANIFEST, "Connection": "close"})
        assert r.status_code == 201, r.text

    with ThreadPoolExecutor(20) as ex:
        list(ex.map(put, imgs))
    r = reg.get_manifest(repo, "contended")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == sha256(r.content)
    assert r.content in [i["manifest"] for i in imgs]
