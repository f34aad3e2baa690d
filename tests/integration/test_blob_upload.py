"""Blob upload sessions: monolithic, POST+PUT, chunked PATCH in every
Content-Range form, chunked transfer encoding, status, cancel, errors,
Expect: 100-continue, sessions continued by other processes, racing
requests on one session."""

import hashlib
import os
import re
import uuid as uuidlib
from urllib.parse import urljoin, urlsplit

import pytest

from ocireg_client import (RawConnection, assert_error, check_raw_response,
                           path_of, raw_request, sha256, with_query)

OCTET = {"Content-Type": "application/octet-stream"}


def check_session_headers(reg, r, end):
    """Location, Range 0-<end> and Docker-Upload-UUID of a 202/204."""
    loc = r.headers.get("Location")
    assert loc, r.headers
    assert r.headers.get("Range") == f"0-{end}", r.headers.get("Range")
    uid = r.headers.get("Docker-Upload-UUID")
    assert uid, r.headers
    assert uid in loc, (uid, loc)
    return reg.location(r)


# -- monolithic ----------------------------------------------------------------

def test_monolithic_post(reg, repo):
    data = os.urandom(5000)
    d = sha256(data)
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={d}", data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    loc = reg.location(r)
    g = reg.get(loc)
    assert g.status_code == 200 and g.content == data
    g = reg.get(f"/v2/{repo}/blobs/{d}")
    assert g.content == data


def test_monolithic_post_empty_blob(reg, repo):
    d = sha256(b"")
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={d}", data=b"", headers=OCTET)
    assert r.status_code == 201, r.text
    g = reg.get(f"/v2/{repo}/blobs/{d}")
    assert g.status_code == 200 and g.content == b""
    assert g.headers["Content-Length"] == "0"


def test_monolithic_post_wrong_digest(reg, repo):
    data = b"some data"
    claimed = sha256(b"other data")
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={claimed}", data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404
    assert reg.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404


def test_post_then_put(reg, repo):
    data = os.urandom(3000)
    d = sha256(data)
    r = reg.post(f"/v2/{repo}/blobs/uploads/", data=b"")
    assert r.status_code == 202, r.text
    loc = check_session_headers(reg, r, 0)
    ml = r.headers.get("OCI-Chunk-Min-Length")
    assert ml is not None and re.fullmatch(r"[0-9]+", ml) and int(ml) > 0, ml
    r = reg.put(with_query(loc, digest=d), data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    assert reg.get(reg.location(r)).content == data


def test_post_without_body_headers(reg, repo):
    # A POST with no Content-Length at all (some clients) opens a session.
    r = raw_request(reg_port(reg), "POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r
    assert r.header("Location") and r.header("Docker-Upload-UUID")
    reg.cancel_upload(_abs(reg, r.header("Location")))


def test_upload_ids_unique(reg, repo):
    ids = set()
    locs = []
    for _ in range(5):
        loc, r = reg.start_upload(repo)
        ids.add(r.headers["Docker-Upload-UUID"])
        locs.append(loc)
    assert len(ids) == 5
    for loc in locs:
        reg.cancel_upload(loc)


def reg_port(reg):
    return int(urlsplit(reg.base).port)


# -- chunked ---------------------------------------------------------------------

RANGE_FORMS = {
    "plain": "{a}-{b}",
    "bytes-space": "bytes {a}-{b}",
    "bytes-equals": "bytes={a}-{b}",
    "bytes-total": "bytes {a}-{b}/{total}",
    "bytes-star": "bytes {a}-{b}/*",
}


@pytest.mark.parametrize("form", list(RANGE_FORMS))
def test_chunked_patch_content_range_forms(reg, repo, form):
    data = os.urandom(10000)
    d = reg.push_blob_chunked(repo, data, 3000, RANGE_FORMS[form])
    assert d == sha256(data)
    r = reg.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def test_chunked_status_between_chunks(reg, repo):
    data = os.urandom(4096)
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202, r.text
    loc = check_session_headers(reg, r, 999)
    s = reg.get(loc)
    assert s.status_code == 204, s.text
    loc = check_session_headers(reg, s, 999)
    assert s.content == b""
    r = reg.patch(loc, data=data[1000:], headers={**OCTET, "Content-Range": "1000-4095"})
    assert r.status_code == 202
    loc = check_session_headers(reg, r, 4095)
    r = reg.put(with_query(loc, digest=sha256(data)))
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)


def test_status_of_fresh_session(reg, repo):
    loc, _ = reg.start_upload(repo)
    s = reg.get(loc)
    assert s.status_code == 204, s.text
    assert s.headers.get("Location") and s.headers.get("Docker-Upload-UUID")
    assert s.headers.get("Range") == "0-0"
    reg.cancel_upload(loc)


def test_patch_without_content_range_appends(reg, repo):
    data = os.urandom(9000)
    loc, _ = reg.start_upload(repo)
    end = -1
    for a in range(0, len(data), 2500):
        chunk = data[a:a + 2500]
        r = reg.patch(loc, data=chunk, headers=OCTET)
        assert r.status_code == 202, r.text
        end += len(chunk)
        loc = check_session_headers(reg, r, end)
    r = reg.put(with_query(loc, digest=sha256(data)))
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_patch_chunked_transfer_encoding(server, reg, repo):
    data = os.urandom(200000)
    loc, _ = reg.start_upload(repo)
    pieces = [data[i:i + 7001] for i in range(0, len(data), 7001)]
    r = raw_request(server.port, "PATCH", path_of(loc), headers=OCTET, chunks=pieces)
    assert r.status == 202, r
    assert r.header("Range") == f"0-{len(data) - 1}"
    assert r.header("Docker-Upload-UUID") and r.header("Location")
    loc = _abs(reg, r.header("Location"))
    # A second streamed chunk, then close.
    more = os.urandom(5000)
    r = raw_request(server.port, "PATCH", path_of(loc), headers=OCTET, chunks=[more])
    assert r.status == 202, r
    assert r.header("Range") == f"0-{len(data) + len(more) - 1}"
    loc = _abs(reg, r.header("Location"))
    r = reg.put(with_query(loc, digest=sha256(data + more)))
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(data + more)}").content == data + more


def test_patch_chunked_te_with_content_range(server, reg, repo):
    data = os.urandom(30000)
    loc, _ = reg.start_upload(repo)
    r = raw_request(server.port, "PATCH", path_of(loc),
                    headers={**OCTET, "Content-Range": f"0-{len(data) - 1}"},
                    chunks=[data[:10000], data[10000:]])
    assert r.status == 202, r
    assert r.header("Range") == f"0-{len(data) - 1}"
    r = reg.put(with_query(_abs(reg, r.header("Location")), digest=sha256(data)))
    assert r.status_code == 201, r.text


def test_final_chunk_with_closing_put(reg, repo):
    data = os.urandom(6000)
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=data[:4000], headers={**OCTET, "Content-Range": "0-3999"})
    assert r.status_code == 202
    loc = reg.location(r)
    r = reg.put(with_query(loc, digest=sha256(data)), data=data[4000:],
                headers={**OCTET, "Content-Range": "4000-5999"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert reg.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_final_chunk_with_closing_put_no_range(reg, repo):
    data = os.urandom(6000)
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    loc = reg.location(r)
    r = reg.put(with_query(loc, digest=sha256(data)), data=data[1000:], headers=OCTET)
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_closing_put_chunked_te(server, reg, repo):
    data = os.urandom(50000)
    loc, _ = reg.start_upload(repo)
    r = raw_request(server.port, "PUT", path_of(with_query(loc, digest=sha256(data))),
                    headers=OCTET, chunks=[data[:20000], data[20000:]])
    assert r.status == 201, r
    assert r.header("Docker-Content-Digest") == sha256(data)
    assert reg.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_upload_of_existing_blob_again(reg, repo):
    data = os.urandom(1234)
    d1 = reg.push_blob(repo, data)
    d2 = reg.push_blob_chunked(repo, data, 500)
    assert d1 == d2
    assert reg.get(f"/v2/{repo}/blobs/{d1}").content == data


# -- chunk errors ---------------------------------------------------------------

def _session_with(reg, repo, data):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=data, headers={**OCTET, "Content-Range": f"0-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    return reg.location(r)


@pytest.mark.parametrize("rng", ["200-299", "50-149", "0-99", "99-198", "101-200"])
def test_out_of_order_chunk_416(reg, repo, rng):
    first = os.urandom(100)
    loc = _session_with(reg, repo, first)
    a, b = (int(x) for x in rng.split("-"))
    r = reg.patch(loc, data=os.urandom(b - a + 1), headers={**OCTET, "Content-Range": rng})
    assert_error(r, 416, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "SIZE_INVALID")
    assert r.headers.get("Range") == "0-99", r.headers
    assert r.headers.get("Location"), r.headers
    # The session is intact: continue and close it.
    s = reg.get(reg.location(r))
    assert s.status_code == 204 and s.headers["Range"] == "0-99"
    second = os.urandom(50)
    r = reg.patch(reg.location(s), data=second, headers={**OCTET, "Content-Range": "100-149"})
    assert r.status_code == 202
    r = reg.put(with_query(reg.location(r), digest=sha256(first + second)))
    assert r.status_code == 201, r.text


def test_first_chunk_not_at_zero_416(reg, repo):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"x" * 10, headers={**OCTET, "Content-Range": "5-14"})
    assert_error(r, 416)
    assert r.headers.get("Location")
    assert r.headers.get("Range") == "0-0"
    reg.cancel_upload(loc)


def test_content_range_length_mismatch(reg, repo):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"x" * 10, headers={**OCTET, "Content-Range": "0-19"})
    assert r.status_code in (400, 416), r.text
    reg.cancel_upload(loc)


@pytest.mark.parametrize("value", ["garbage", "10-5", "bytes", "-5", "a-b", "0-", "bytes=0-9/abc"])
def test_content_range_malformed(reg, repo, value):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"x" * 10, headers={**OCTET, "Content-Range": value})
    assert r.status_code in (400, 416), r.text
    reg.cancel_upload(loc)


def test_closing_put_wrong_digest(reg, repo):
    data = os.urandom(2048)
    loc = _session_with(reg, repo, data)
    claimed = sha256(b"not the data")
    r = reg.put(with_query(loc, digest=claimed))
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404
    assert reg.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    reg.cancel_upload(loc)


def test_closing_put_wrong_digest_with_final_chunk(reg, repo):
    data = os.urandom(2048)
    loc, _ = reg.start_upload(repo)
    claimed = sha256(b"not the data")
    r = reg.put(with_query(loc, digest=claimed), data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404
    assert reg.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    reg.cancel_upload(loc)


def test_closing_put_missing_digest(reg, repo):
    loc = _session_with(reg, repo, b"abc")
    r = reg.put(loc)
    assert_error(r, 400, "DIGEST_INVALID")
    reg.cancel_upload(loc)


def test_closing_put_malformed_digest(reg, repo):
    loc = _session_with(reg, repo, b"abc")
    r = reg.put(with_query(loc, digest="sha256:nothex"))
    assert_error(r, 400, "DIGEST_INVALID")
    reg.cancel_upload(loc)


def test_delete_upload_session(reg, repo):
    loc = _session_with(reg, repo, b"some bytes")
    r = reg.delete(loc)
    assert r.status_code == 204, r.text
    r = reg.get(loc)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.patch(loc, data=b"more", headers=OCTET)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.put(with_query(loc, digest=sha256(b"some bytes")))
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.delete(loc)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_session_gone_after_close(reg, repo):
    loc = _session_with(reg, repo, b"closing")
    r = reg.put(with_query(loc, digest=sha256(b"closing")))
    assert r.status_code == 201
    assert_error(reg.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(reg.patch(loc, data=b"x", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("uid", [
    str(uuidlib.uuid4()),
    "garbage",
    "0" * 36,
    "3F1D2C7E-5A4B-4C3D-9E8F-0123456789AB",
    "x" * 300,
])
@pytest.mark.parametrize("method", ["PATCH", "GET", "PUT", "DELETE"])
def test_unknown_upload_id(reg, repo, uid, method):
    reg.push_blob(repo, b"repo exists")
    path = f"/v2/{repo}/blobs/uploads/{uid}"
    if method == "PUT":
        path += "?digest=" + sha256(b"x")
    r = reg.request(method, path, data=b"x" if method in ("PATCH", "PUT") else None,
                    headers=OCTET)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_id_under_other_repo(reg, repo):
    loc = _session_with(reg, repo, b"0123456789")
    uid = reg.get(loc).headers["Docker-Upload-UUID"]
    other = repo + "-other"
    reg.push_blob(other, b"other repo exists")
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        path = f"/v2/{other}/blobs/uploads/{uid}"
        if method == "PUT":
            path += "?digest=" + sha256(b"0123456789")
        r = reg.request(method, path, data=b"" if method in ("PATCH", "PUT") else None)
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    # Untouched in its own repository.
    s = reg.get(loc)
    assert s.status_code == 204 and s.headers["Range"] == "0-9"
    r = reg.put(with_query(loc, digest=sha256(b"0123456789")))
    assert r.status_code == 201
    assert reg.head(f"/v2/{other}/blobs/{sha256(b'0123456789')}").status_code == 404


# -- Expect: 100-continue -----------------------------------------------------------

@pytest.mark.parametrize("uid", [str(uuidlib.uuid4()), "not-a-uuid"])
def test_expect_100_unknown_upload_no_continue(server, repo, uid):
    path = f"/v2/{repo}/blobs/uploads/{uid}"
    with RawConnection(server.port, timeout=15) as c:
        c.send_head("PATCH", path, {"Content-Type": "application/octet-stream",
                                    "Content-Length": str(10 * 1024 ** 3),
                                    "Expect": "100-continue"})
        status, reason, headers = c.read_head()
        assert status == 404, f"got {status} {reason} before sending any body"
        body = c.read_body(status, headers, "PATCH")
    from ocireg_client import RawResponse
    check_raw_response(RawResponse(status, reason, headers, body), path, "PATCH")
    assert "BLOB_UPLOAD_UNKNOWN" in body.decode()


def test_expect_100_valid_session_continues(server, reg, repo):
    loc, _ = reg.start_upload(repo)
    data = os.urandom(4096)
    with RawConnection(server.port, timeout=15) as c:
        c.send_head("PATCH", path_of(loc), {"Content-Type": "application/octet-stream",
                                            "Content-Length": str(len(data)),
                                            "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 100
        c.send(data)
        r = c.read_response("PATCH")
    assert r.status == 202, r
    assert r.header("Range") == f"0-{len(data) - 1}"
    r = reg.put(with_query(_abs(reg, r.header("Location")), digest=sha256(data)))
    assert r.status_code == 201


def test_expect_100_bad_name_no_continue(server):
    with RawConnection(server.port, timeout=15) as c:
        c.send_head("PUT", "/v2/BAD/manifests/latest",
                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                     "Content-Length": "1000", "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 400


# -- across processes -----------------------------------------------------------------

def _abs(reg, loc):
    return urljoin(reg.base + "/", loc)


def test_chunks_on_new_connections_cross_processes(server, reg, repo):
    """Each PATCH on a new TCP connection; the session state lives in shared
    memory, so whichever child gets the connection continues it. The access
    log (%P) must show that at least two children served the upload."""
    loc, r = reg.start_upload(repo)
    uid = r.headers["Docker-Upload-UUID"]
    h = hashlib.sha256()
    offset = 0
    sent = 0
    max_chunks = 400

    def served_pids():
        lines = server.wait_access_log(lambda l: uid in l and '"PATCH ' in l, sent)
        assert len(lines) >= sent, f"access log has {len(lines)} of {sent} PATCH lines"
        return {l.split()[0] for l in lines}

    pids = set()
    while sent < max_chunks:
        chunk = os.urandom(4096 + sent)
        rr = raw_request(server.port, "PATCH", path_of(loc),
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                                  "Connection": "close"},
                         body=chunk)
        assert rr.status == 202, (sent, rr)
        offset += len(chunk)
        h.update(chunk)
        assert rr.header("Range") == f"0-{offset - 1}"
        loc = _abs(reg, rr.header("Location"))
        sent += 1
        if sent >= 40 and (sent % 10 == 0):
            pids = served_pids()
            if len(pids) >= 2:
                break
    d = "sha256:" + h.hexdigest()
    r = reg.put(with_query(loc, digest=d))
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    g = reg.get(f"/v2/{repo}/blobs/{d}")
    assert g.status_code == 200 and "sha256:" + hashlib.sha256(g.content).hexdigest() == d
    print(f"\n{sent} chunks served by child pids {sorted(pids)}")
    assert len(pids) >= 2, f"all {sent} PATCHes were served by one child {pids}"


# -- racing requests on one session -------------------------------------------------

def test_racing_patches_refused(server, reg, repo):
    loc, _ = reg.start_upload(repo)
    first = os.urandom(64 * 1024)
    with RawConnection(server.port, timeout=30) as slow:
        slow.send_head("PATCH", path_of(loc), {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"0-{len(first) - 1}",
            "Content-Length": str(len(first)),
            "Expect": "100-continue"})
        # The handler asks for the body only once it holds the session.
        status, _, _ = slow.read_head()
        assert status == 100
        slow.send(first[:1000])

        # A second PATCH on the same session while the first is in progress.
        second = os.urandom(500)
        for rng in ("0-499", f"{len(first)}-{len(first) + 499}"):
            r = raw_request(server.port, "PATCH", path_of(loc),
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Range": rng},
                            body=second, timeout=20)
            assert r.status in (409, 416), r
            check_raw_response(r, path_of(loc), "PATCH")
        # A closing PUT is refused as well.
        r = raw_request(server.port, "PUT", path_of(with_query(loc, digest=sha256(first))),
                        body=b"", timeout=20)
        assert 400 <= r.status < 500, r
        check_raw_response(r, path_of(loc), "PUT")

        slow.send(first[1000:])
        r = slow.read_response("PATCH")
    assert r.status == 202, r
    assert r.header("Range") == f"0-{len(first) - 1}"
    s = reg.get(loc)
    assert s.status_code == 204
    assert s.headers["Range"] == f"0-{len(first) - 1}"
    r = reg.put(with_query(_abs(reg, s.headers["Location"]), digest=sha256(first)))
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(first)}").content == first


def test_abandoned_patch_resumable(server, reg, repo):
    """A PATCH whose client disappears half-way leaves a consistent session:
    its offset is either the previous one or includes a prefix of what was
    received (the spec's resumable push); the upload can be completed from
    whatever the status says."""
    first = os.urandom(3000)
    partial = os.urandom(5000)
    loc = _session_with(reg, repo, first)
    with RawConnection(server.port, timeout=30) as c:
        c.send_head("PATCH", path_of(loc), {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"3000-{3000 + 99999}",
            "Content-Length": "100000",
            "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 100
        c.send(partial)
    # The server notices the closed connection and releases the session;
    # poll until a continuation is accepted.
    import time
    deadline = time.monotonic() + 20
    tail = b"z" * 10
    while True:
        s = reg.get(loc)
        assert s.status_code == 204
        m = re.fullmatch(r"0-([0-9]+)", s.headers["Range"])
        assert m, s.headers["Range"]
        off = int(m.group(1)) + 1
        assert 3000 <= off <= 8000, off
        r = reg.patch(_abs(reg, s.headers["Location"]), data=tail,
                      headers={**OCTET, "Content-Range": f"{off}-{off + 9}"})
        if r.status_code == 202:
            break
        assert r.status_code in (409, 416), r.text
        assert time.monotonic() < deadline, \
            f"session never released: {s.headers} / {r.status_code} {r.headers} {r.text}"
        time.sleep(0.02)
    print(f"\nsession offset after the abandoned PATCH: {off}")
    assert r.headers["Range"] == f"0-{off + 9}"
    blob = first + partial[:off - 3000] + tail
    r = reg.put(with_query(reg.location(r), digest=sha256(blob)))
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(blob)}").content == blob


# -- large ------------------------------------------------------------------------------

def test_large_streamed_patch_64mib(reg, repo):
    """One 64 MiB PATCH in chunked transfer encoding from a generator."""
    loc, _ = reg.start_upload(repo)
    block = os.urandom(1024 * 1024)
    h = hashlib.sha256()
    total = 64 * 1024 * 1024

    def gen():
        for i in range(64):
            piece = i.to_bytes(4, "big") + block[4:]
            h.update(piece)
            yield piece

    r = reg.patch(loc, data=gen(), headers=OCTET, timeout=120)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{total - 1}"
    d = "sha256:" + h.hexdigest()
    r = reg.put(with_query(reg.location(r), digest=d))
    assert r.status_code == 201, r.text
    hd = reg.head(f"/v2/{repo}/blobs/{d}")
    assert hd.status_code == 200
    assert hd.headers["Content-Length"] == str(total)
    g = reg.get(f"/v2/{repo}/blobs/{d}", stream=True)
    hh = hashlib.sha256()
    n = 0
    for part in g.iter_content(1024 * 1024):
        hh.update(part)
        n += len(part)
    assert n == total and "sha256:" + hh.hexdigest() == d
