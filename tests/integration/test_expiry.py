"""Abandoned uploads expire in the background (OCIRegUploadExpiry): the
session goes, its multipart upload is aborted, its data and tail are
removed, and upload data no session knows is swept once it is old."""

import os
import time
import uuid as uuidlib

import pytest
import requests

from httpd_harness import wait_for

MIB = 1024 * 1024
EXPIRY = 2


@pytest.fixture(scope="module")
def expiring(httpd_factory):
    return httpd_factory("expiry", global_extra=f"OCIRegUploadExpiry {EXPIRY}")


def leftovers(inst, backend, rgw_or_none):
    if backend == "filesystem":
        return sorted(os.listdir(inst.data_dir / "uploads"))
    prefix = inst.storage["prefix"]
    c = rgw_or_none.client()
    objs = c.list_objects_v2(Bucket=rgw_or_none.bucket,
                             Prefix=prefix + "uploads/").get("Contents", [])
    return [o["Key"] for o in objs] + [m[0] for m in rgw_or_none.multipart_uploads(prefix)]


@pytest.fixture
def s3_or_none(backend, request):
    return request.getfixturevalue("rgw") if backend == "s3" else None


def test_idle_upload_expires_and_leaves_nothing(expiring, backend, s3_or_none):
    base = expiring.base_url
    r = requests.post(f"{base}/v2/expiry/idle/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    # More than one 5 MiB part on S3, so a multipart upload and a tail exist.
    r = requests.patch(base + loc, data=iter([os.urandom(6 * MIB)]))
    assert r.status_code == 202, r.text
    assert leftovers(expiring, backend, s3_or_none)
    wait_for(lambda: requests.get(base + loc).status_code == 404,
             what="the idle session to expire")
    wait_for(lambda: leftovers(expiring, backend, s3_or_none) == [],
             what="the session's data to be removed")


def test_orphaned_upload_data_is_swept(expiring, backend, s3_or_none):
    """Data of an upload no session knows (left by a stop or a crash)."""
    orphan = str(uuidlib.uuid4())
    if backend == "filesystem":
        f = expiring.data_dir / "uploads" / orphan
        f.write_bytes(b"left behind")
        old = time.time() - 3600
        os.utime(f, (old, old))
    else:
        c = s3_or_none.client()
        key = expiring.storage["prefix"] + "data/" + orphan
        c.create_multipart_upload(Bucket=s3_or_none.bucket, Key=key)
        c.put_object(Bucket=s3_or_none.bucket,
                     Key=expiring.storage["prefix"] + f"uploads/{orphan}/tail", Body=b"x")
    wait_for(lambda: leftovers(expiring, backend, s3_or_none) == [],
             what="orphaned upload data to be swept")


def test_active_upload_is_not_expired(expiring):
    """A session that keeps moving outlives the expiry."""
    base = expiring.base_url
    r = requests.post(f"{base}/v2/expiry/active/blobs/uploads/")
    loc = r.headers["Location"]
    data = b""
    deadline = time.monotonic() + 3 * EXPIRY
    while time.monotonic() < deadline:
        chunk = os.urandom(1000)
        r = requests.patch(base + loc, data=chunk,
                           headers={"Content-Range": f"{len(data)}-{len(data) + 999}"})
        assert r.status_code == 202, r.text
        data += chunk
        loc = r.headers["Location"]
        time.sleep(0.5)  # paces the client; nothing waits on it
    import hashlib
    r = requests.put(base + loc, params={"digest": "sha256:" + hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201, r.text
