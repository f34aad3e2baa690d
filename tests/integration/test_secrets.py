"""The S3 keys never leave httpd's configuration.

The session's RGW has random, distinctive keys; conftest scans every response
the suite receives as it arrives, and every log of every instance at the end
of the session (secrets_scan.py). The tests here make sure that scan can
find what it looks for, and run an S3 registry with the module's logging
turned up to trace8 through its busy paths, its error paths and a backend
that refuses the (distinctive, wrong) secret, so that everything the module
can log is there to be scanned."""

import os
import time

import pytest
import requests

import conftest
import secrets_scan
from conftest import BACKENDS
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines
from ocireg_client import (Registry, assert_error, raw_request, random_digest, sha256)

needs_s3 = pytest.mark.skipif("s3" not in BACKENDS,
                              reason="OCIREG_BACKENDS does not include s3")

TRACE = "LogLevel debug ocireg:trace8"
WRONG_SECRET = "OCIREG-WRONG-" + os.urandom(16).hex()


@pytest.fixture(scope="module")
def trace_instances(rgw, base_dir):
    """A good S3 instance with presigned redirects and one with a wrong
    secret, both logging everything the module can say."""
    secrets_scan.register("the wrong S3 secret key", WRONG_SECRET)
    started = []

    def start(name, **kw):
        storage = rgw.storage(base_dir, name, **kw)
        inst = HttpdInstance(name, base_dir, storage=storage, global_extra=TRACE)
        try:
            inst.start()
        except HttpdError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(inst)
        return inst

    good = start("secrets-trace", extra=["OCIRegS3BlobRedirect 300"])
    bad = start("secrets-badkey",
                cred_file=rgw.cred_file(base_dir, "wrong-secret.cred", secret=WRONG_SECRET))
    yield good, bad
    for inst in started:
        inst.stop()
    before = len(secrets_scan.hits)
    secrets_scan.scan_logs(started)
    assert secrets_scan.hits[before:] == []


@needs_s3
def test_scan_finds_the_keys(rgw, tmp_path):
    """The session-end scan is not vacuous: a key planted in a log file, a
    header or a body is found; a presigned Location is not a leak."""
    before = len(secrets_scan.hits)
    fake = HttpdInstance("planted", tmp_path)
    fake.log_dir.mkdir(parents=True)
    (fake.log_dir / "error_log").write_text(f"[x] secret={rgw.secret_key[:20]}\n")
    (fake.dir / "stdout").write_text(f"key {rgw.access_key}\n")
    HttpdInstance.created.remove(fake)
    secrets_scan.scan_logs([fake])
    secrets_scan.scan_response("http://127.0.0.1:1/v2/", 500,
                               [("X-Debug", rgw.secret_key)], b"")
    secrets_scan.scan_response("http://127.0.0.1:1/v2/", 500, [],
                               f'{{"detail":"{rgw.access_key}"}}'.encode())
    presigned = (f"{rgw.endpoint}/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                 f"{rgw.access_key}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request")
    secrets_scan.scan_response("http://127.0.0.1:1/v2/", 307, [("Location", presigned)], b"")
    found = secrets_scan.hits[before:]
    del secrets_scan.hits[before:]
    assert len(found) == 4, found
    assert sum("secret key" in f for f in found) == 2, found
    assert sum("access key id" in f for f in found) == 2, found


@needs_s3
def test_keys_stay_out_of_trace_logs_and_answers(trace_instances):
    good, _ = trace_instances
    reg = Registry(good.base_url)
    try:
        repo = "secrets/trace"
        data = os.urandom(300 * 1024)
        d = reg.push_blob(repo, data)
        chunked = os.urandom(200 * 1024)
        reg.push_blob_chunked(repo, chunked, 64 * 1024)
        reg.push_image(repo, tag="v1", nlayers=2, layer_size=4096)
        # A pull through the presigned redirect, and straight from the bucket.
        r = reg.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 307, r.status_code
        assert requests.get(r.headers["Location"], timeout=30).content == data
        assert reg.head(f"/v2/{repo}/blobs/{d}").status_code == 200
        assert reg.get(f"/v2/{repo}/tags/list").status_code == 200
        assert reg.get("/v2/_catalog").status_code == 200
        # Error paths.
        assert_error(reg.get(f"/v2/{repo}/blobs/{random_digest()}"), 404, "BLOB_UNKNOWN")
        assert_error(reg.get(f"/v2/{repo}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.put(f"/v2/{repo}/manifests/v2", data=b"{not json",
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
                     400, "MANIFEST_INVALID")
        loc, _ = reg.start_upload(repo)
        assert reg.delete(loc).status_code == 204
        assert reg.delete(f"/v2/{repo}/blobs/{d}").status_code == 202
        resp = raw_request(good.port, "GET", f"/v2/{repo}/blobs/{d}")
        assert resp.status == 404
    finally:
        reg.close()
    assert bad_log_lines(good.error_log_since(0)) == []


@needs_s3
def test_wrong_secret_is_refused_without_showing_it(trace_instances):
    _, bad = trace_instances
    offset = bad.error_log_size()
    data = os.urandom(2000)
    r = requests.post(f"{bad.base_url}/v2/secrets/bad/blobs/uploads/?digest={sha256(data)}",
                      data=data, headers={"Content-Type": "application/octet-stream"},
                      timeout=30)
    assert r.status_code == 500, r.status_code
    # The refusal is logged (and the scan of that log finds no key).
    deadline = time.monotonic() + 10
    while not any("403" in l for l in bad.error_log_since(offset)):
        assert time.monotonic() < deadline, bad.error_log_since(offset)
        time.sleep(0.05)
    before = len(secrets_scan.hits)
    secrets_scan.scan_logs([bad])
    assert secrets_scan.hits[before:] == []
