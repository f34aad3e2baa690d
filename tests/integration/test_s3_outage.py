"""The S3 endpoint goes away in the middle of a push and comes back: the
client gets 503 with an OCI JSON body and Retry-After, no child hangs past
the configured timeouts, nothing half-written is visible, and the same
upload then finishes with the right digest."""

import hashlib
import os

import pytest
import requests

from httpd_harness import HttpdInstance, bad_log_lines
from ocireg_client import assert_error

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def outage(rgw, base_dir):
    inst = HttpdInstance("s3-outage", base_dir,
                         storage=rgw.storage(base_dir, "s3-outage", part_size="5M",
                                             extra=["OCIRegS3Timeouts 2 3",
                                                    "OCIRegS3Retries 1"]))
    inst.start()
    yield inst
    try:
        rgw.start_gateway()
    finally:
        inst.stop()
    # Outages are warnings, not errors.
    assert bad_log_lines(inst.error_log_since(0)) == []


def test_upload_survives_gateway_outage(outage, rgw):
    base = outage.base_url
    repo = "outage/blob"
    data = os.urandom(12 * MIB + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    first = 6 * MIB
    r = requests.patch(base + loc, data=iter([data[:first]]))  # chunked
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{first - 1}"
    loc = r.headers["Location"]

    rgw.stop_gateway()
    try:
        # Small requests: 503, JSON, Retry-After.
        r = requests.get(f"{base}/v2/{repo}/tags/list", timeout=60)
        assert_error(r, 503, "UNAVAILABLE")
        assert r.headers.get("Retry-After")
        r = requests.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=60)
        assert r.status_code == 503
        # The next chunk cannot go anywhere.
        try:
            r = requests.patch(base + loc, data=data[first:], timeout=60,
                               headers={"Content-Range": f"{first}-{len(data) - 1}"})
            assert_error(r, 503, "UNAVAILABLE")
            assert r.headers.get("Retry-After")
        except requests.ConnectionError:
            pass  # the server answered before the body was sent; fine
    finally:
        rgw.start_gateway()

    # Nothing half-written is visible.
    assert requests.head(f"{base}/v2/{repo}/blobs/{digest}").status_code == 404
    # The session is where it was, or where the received bytes took it.
    r = requests.get(base + loc)
    assert r.status_code == 204
    done = int(r.headers["Range"].split("-")[1]) + 1
    assert first <= done <= len(data)
    loc = r.headers["Location"]
    if done < len(data):
        r = requests.patch(base + loc, data=data[done:],
                           headers={"Content-Range": f"{done}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
    r = requests.put(base + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    r = requests.get(f"{base}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == digest[7:]
