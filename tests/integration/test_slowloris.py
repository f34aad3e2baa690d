"""Slowloris on PATCH (both stores): a client sends its body one byte every
couple of seconds. It holds its session, and only its session: other
clients push at full speed meanwhile, and another request on that session
is told it is busy. The holder's lease is renewed while its bytes arrive;
when they stop, httpd's Timeout (5 s in this instance) ends the request,
and the session then resumes and finishes with the right blob."""

import re
import time

import pytest

from ocireg_client import RawConnection, Registry, path_of, sha256, with_query

OCTET = {"Content-Type": "application/octet-stream"}

TIMEOUT = 5   # httpd's Timeout for this instance
LEASE = 9     # OCIRegUploadLease: above Timeout, renewed every LEASE/3 s
SLOW_BYTES = 6
GAP = 2.0     # seconds between two slow bytes: below Timeout


@pytest.fixture(scope="module")
def slow_srv(httpd_factory):
    return httpd_factory("slowloris",
                         global_extra=f"Timeout {TIMEOUT}\nOCIRegUploadLease {LEASE}")


def lock_expiry(rgw, inst, uuid):
    """The expiry the session's S3 lock records, or None without one."""
    c = rgw.client()
    prefix = inst.storage["prefix"] + f"uploads/{uuid}/lock."
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=rgw.bucket, Prefix=prefix)
            .get("Contents", [])]
    if not keys:
        return None
    body = c.get_object(Bucket=rgw.bucket, Key=sorted(keys)[-1])["Body"].read().decode()
    return int(body.split()[-1])


def test_slowloris_patch(slow_srv, backend, request):
    rgw = request.getfixturevalue("rgw") if backend == "s3" else None
    reg = Registry(slow_srv.base_url)
    repo = "slowloris/held"
    first = b"a" * 1000
    rest = bytes(range(256)) * 40
    data = first + rest

    loc, started = reg.start_upload(repo)
    uuid = started.headers["Docker-Upload-UUID"]
    r = reg.patch(loc, data=first, headers={**OCTET, "Content-Range": f"0-{len(first) - 1}"})
    assert r.status_code == 202, r.text
    loc = reg.location(r)

    c = RawConnection(slow_srv.port, timeout=60)
    try:
        # Expect: 100-continue: the 100 comes at the first body read, when
        # the module holds the session.
        c.send_head("PATCH", path_of(loc), {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{len(first)}-{len(data) - 1}",
            "Content-Length": str(len(rest)),
            "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 100
        expiries = []
        others = []
        for i in range(SLOW_BYTES):
            assert c.send(rest[i:i + 1])
            # Everyone else at full speed meanwhile.
            blob = bytes([i]) * (256 * 1024)
            others.append((reg.push_blob(f"slowloris/other{i}", blob), blob, i))
            busy = reg.patch(loc, data=b"x", headers={
                **OCTET, "Content-Range": f"{len(first)}-{len(first)}"})
            assert busy.status_code == 416, busy.text
            if rgw:
                expiries.append(lock_expiry(rgw, slow_srv, uuid))
            time.sleep(GAP)
        if rgw:
            # The spool holding the part in progress has no name: nothing
            # would be left by kill -9.
            assert list(slow_srv.data_dir.glob("ocireg-spool-*")) == []
            # A chunk smaller than a part takes no lock in the bucket (its
            # create-only record is all the exclusion it needs); this host's
            # own slot refused the PATCHes above. The lease of a request
            # that sends parts: test_s3_lost_answers.
            assert expiries == [None] * len(expiries), expiries
        # Now silence: httpd's Timeout ends the request.
        try:
            res = c.read_response("PATCH")
            assert res.status >= 400, res
        except ConnectionError:
            pass
    finally:
        c.close()

    # The other pushes are whole.
    for d, blob, i in others:
        g = reg.get(f"/v2/slowloris/other{i}/blobs/{d}")
        assert g.status_code == 200 and g.content == blob

    # The session is free again and resumes from what it kept.
    deadline = time.monotonic() + 30
    while True:
        s = reg.get(loc)
        assert s.status_code == 204, s.text
        end = int(s.headers["Range"].split("-")[1]) + 1
        loc = reg.location(s) if s.headers.get("Location") else loc
        r = reg.patch(loc, data=data[end:], headers={
            **OCTET, "Content-Range": f"{end}-{len(data) - 1}"})
        if r.status_code == 202:
            break
        # still held by the ended request for a moment
        assert r.status_code == 416, r.text
        assert time.monotonic() < deadline, "the session stayed held"
        time.sleep(0.2)
    assert end >= len(first)
    loc = reg.location(r)
    d = sha256(data)
    r = reg.put(with_query(loc, digest=d))
    assert r.status_code == 201, r.text
    g = reg.get(f"/v2/{repo}/blobs/{d}")
    assert g.status_code == 200 and g.content == data
    if rgw:
        assert lock_expiry(rgw, slow_srv, uuid) is None
        assert re.fullmatch(r"[0-9a-f-]{36}", uuid)
