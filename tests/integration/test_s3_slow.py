"""The S3 endpoint answers slowly. A proxy (tests/fixtures/faultproxy.py:
real sockets, real RGW behind it) sits between httpd and the bucket and
holds back every answer: a little, and the push is slow but right; longer than the
configured timeouts, and the client gets 503 with an OCI JSON body in
bounded time, nothing half-written shows, and once the backend is quick
again the same upload finishes with the right digest."""

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest
import requests

from httpd_harness import HttpdInstance, bad_log_lines
from ocireg_client import (MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST,
                           assert_error, descriptor, oci_manifest)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

MIB = 1024 * 1024
STALL = 3  # OCIRegS3Timeouts' stall seconds for this instance


@pytest.fixture(scope="module")
def slow(rgw, base_dir):
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    storage = rgw.storage(base_dir, "s3-slow", part_size="5M",
                          extra=[f"OCIRegS3Timeouts 2 {STALL}", "OCIRegS3Retries 1"])
    storage["endpoint"] = f"http://127.0.0.1:{proxy.port}"
    inst = HttpdInstance("s3-slow", base_dir, storage=storage)
    inst.start()
    yield inst, proxy
    try:
        inst.stop()
    finally:
        proxy.close()
    # A slow backend is worth warnings, not errors.
    assert bad_log_lines(inst.error_log_since(0)) == []


def test_slow_backend_still_right(slow):
    inst, proxy = slow
    base = inst.base_url
    repo = "slow/ok"
    proxy.delay = 0.3  # every S3 answer a third of a second late
    try:
        data = os.urandom(11 * MIB + 7)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        half = 6 * MIB
        r = requests.patch(base + loc, data=iter([data[:half]]))
        assert r.status_code == 202, r.text
        r = requests.patch(base + r.headers["Location"], data=data[half:],
                           headers={"Content-Range": f"{half}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        r = requests.put(base + r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        config = b'{"architecture":"amd64","os":"linux"}'
        r = requests.post(f"{base}/v2/{repo}/blobs/uploads/",
                          params={"digest": "sha256:" + hashlib.sha256(config).hexdigest()},
                          data=config)
        assert r.status_code == 201, r.text
        manifest = oci_manifest(descriptor(MT_OCI_CONFIG, config),
                                [descriptor(MT_OCI_LAYER, data)])
        r = requests.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
                         headers={"Content-Type": MT_OCI_MANIFEST})
        assert r.status_code == 201, r.text
        r = requests.get(f"{base}/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest[7:]
    finally:
        proxy.delay = 0.0


def test_backend_slower_than_the_timeout_then_quick_again(slow):
    inst, proxy = slow
    base = inst.base_url
    repo = "slow/late"
    data = os.urandom(12 * MIB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
    loc = r.headers["Location"]
    first = 6 * MIB
    r = requests.patch(base + loc, data=iter([data[:first]]))
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    config = b'{"architecture":"arm64","os":"linux"}'
    config_d = "sha256:" + hashlib.sha256(config).hexdigest()
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": config_d},
                      data=config)
    assert r.status_code == 201, r.text
    manifest = oci_manifest(descriptor(MT_OCI_CONFIG, config),
                            [descriptor(MT_OCI_LAYER, data)])

    proxy.delay = 4 * STALL  # answers come long after the stall timeout
    try:
        # Bound per request: the stall timeout for each backend call it
        # makes, and a retry; nothing waits for the backend's answer.
        bound = 4 * (STALL + 1) * 2
        for method, url, kw in (
                ("PATCH", base + loc, {"data": data[first:], "headers": {
                    "Content-Range": f"{first}-{len(data) - 1}"}}),
                ("PUT", f"{base}/v2/{repo}/manifests/v1", {"data": manifest, "headers": {
                    "Content-Type": MT_OCI_MANIFEST}}),
                ("GET", f"{base}/v2/{repo}/blobs/{config_d}", {}),
                ("GET", f"{base}/v2/{repo}/tags/list", {})):
            t0 = time.monotonic()
            r = requests.request(method, url, timeout=120, **kw)
            took = time.monotonic() - t0
            assert r.status_code in (503, 504), (method, url, r.status_code, r.text)
            assert_error(r, r.status_code, "UNAVAILABLE")
            assert r.headers.get("Retry-After"), r.headers
            assert took < bound, f"{method} {url} took {took:.1f}s"
    finally:
        proxy.delay = 0.0

    # Quick again: nothing half-written is visible, and the upload goes on
    # from where its status says.
    assert requests.get(f"{base}/v2/{repo}/manifests/v1").status_code == 404
    assert requests.head(f"{base}/v2/{repo}/blobs/{digest}").status_code == 404
    st = requests.get(base + loc)
    assert st.status_code == 204, st.text
    offset = int(st.headers["Range"].split("-")[1]) + 1
    assert first <= offset <= len(data), st.headers["Range"]
    loc = st.headers["Location"]
    if offset < len(data):
        r = requests.patch(base + loc, data=data[offset:],
                           headers={"Content-Range": f"{offset}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
    r = requests.put(base + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    r = requests.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
                     headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = requests.get(f"{base}/v2/{repo}/blobs/{digest}")
    assert hashlib.sha256(r.content).hexdigest() == digest[7:]
