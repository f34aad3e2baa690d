"""Pulling, checking, deleting and mounting blobs."""

import os

import pytest

from ocireg_client import assert_error, random_digest, sha256, with_query


@pytest.fixture
def blob(reg, repo):
    data = os.urandom(10000)
    d = reg.push_blob(repo, data)
    return repo, d, data


def test_get_blob(reg, blob):
    repo, d, data = blob
    r = reg.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == str(len(data))


def test_head_blob(reg, blob):
    repo, d, data = blob
    r = reg.head(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == d


def test_head_blob_raw_no_body(server, blob):
    # requests never reads a HEAD body; check on the wire that none is sent
    # by following with a second request on the same connection.
    from ocireg_client import RawConnection
    repo, d, data = blob
    with RawConnection(server.port) as c:
        c.send_head("HEAD", f"/v2/{repo}/blobs/{d}")
        r1 = c.read_response("HEAD")
        c.send_head("GET", "/v2/")
        r2 = c.read_response("GET")
    assert r1.status == 200 and r1.header("Content-Length") == str(len(data))
    assert r2.status == 200


def test_get_blob_range(reg, blob):
    repo, d, data = blob
    r = reg.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206, r.status_code
    assert r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["Content-Length"] == "10"


def test_get_blob_open_range(reg, blob):
    repo, d, data = blob
    r = reg.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=9990-"})
    assert r.status_code == 206
    assert r.content == data[9990:]
    assert r.headers["Content-Range"] == f"bytes 9990-9999/{len(data)}"
    r = reg.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206
    assert r.content == data[-5:]


def test_get_blob_unsatisfiable_range(reg, blob):
    repo, d, data = blob
    # check_response: the API version header and a JSON error body.
    r = reg.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=20000-30000"})
    assert r.status_code == 416


def test_unknown_blob(reg, blob):
    repo, _, _ = blob
    r = reg.get(f"/v2/{repo}/blobs/{random_digest()}")
    assert_error(r, 404, "BLOB_UNKNOWN")
    r = reg.head(f"/v2/{repo}/blobs/{random_digest()}")
    assert r.status_code == 404
    assert r.content == b""


def test_blob_in_unknown_repo(reg, blob):
    _, d, _ = blob
    r = reg.get(f"/v2/it/never-created-repo/blobs/{d}")
    assert_error(r, 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_blob_not_visible_in_other_repo(reg, blob):
    repo, d, _ = blob
    other = repo + "-b"
    reg.push_blob(other, b"something else")
    r = reg.get(f"/v2/{other}/blobs/{d}")
    assert_error(r, 404, "BLOB_UNKNOWN")
    assert reg.head(f"/v2/{other}/blobs/{d}").status_code == 404


def test_delete_blob(reg, blob):
    repo, d, _ = blob
    r = reg.delete(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 202, r.text
    assert_error(reg.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert reg.head(f"/v2/{repo}/blobs/{d}").status_code == 404
    assert_error(reg.delete(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_only_in_one_repo(reg, blob):
    repo, d, data = blob
    other = repo + "-c"
    reg.push_blob(other, data)
    assert reg.delete(f"/v2/{repo}/blobs/{d}").status_code == 202
    r = reg.get(f"/v2/{other}/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def test_delete_unknown_blob(reg, blob):
    repo, _, _ = blob
    assert_error(reg.delete(f"/v2/{repo}/blobs/{random_digest()}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_bad_digest(reg, blob):
    repo, _, _ = blob
    assert_error(reg.delete(f"/v2/{repo}/blobs/sha256:zz"), 400, "DIGEST_INVALID")


def test_repush_after_delete(reg, blob):
    repo, d, data = blob
    assert reg.delete(f"/v2/{repo}/blobs/{d}").status_code == 202
    assert reg.push_blob(repo, data) == d
    assert reg.get(f"/v2/{repo}/blobs/{d}").content == data


# -- mount -------------------------------------------------------------------

def test_mount_from_repo_that_has_it(reg, blob):
    repo, d, data = blob
    target = repo + "-mnt"
    r = reg.post(f"/v2/{target}/blobs/uploads/?mount={d}&from={repo}", data=b"")
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    loc = reg.location(r)
    g = reg.get(loc)
    assert g.status_code == 200 and g.content == data
    g = reg.get(f"/v2/{target}/blobs/{d}")
    assert g.status_code == 200 and g.content == data


def test_mount_from_repo_lacking_it(reg, blob):
    repo, _, _ = blob
    other = repo + "-empty"
    reg.push_blob(other, b"other content")
    target = repo + "-mnt2"
    missing = sha256(b"never pushed anywhere " + os.urandom(8))
    r = reg.post(f"/v2/{target}/blobs/uploads/?mount={missing}&from={other}", data=b"")
    assert r.status_code == 202, r.text
    assert r.headers.get("Location")
    assert r.headers.get("Docker-Upload-UUID")
    assert r.headers.get("Range") == "0-0"
    # The session is usable.
    loc = reg.location(r)
    data = b"uploaded instead of mounted"
    r = reg.put(with_query(loc, digest=sha256(data)), data=data,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def test_mount_blob_existing_elsewhere_but_not_in_from(reg, blob):
    # The blob exists in the registry but not in `from`: no mount (the
    # caller has not shown access to a repository holding it).
    repo, d, _ = blob
    other = repo + "-nothere"
    reg.push_blob(other, b"x")
    target = repo + "-mnt3"
    r = reg.post(f"/v2/{target}/blobs/uploads/?mount={d}&from={other}", data=b"")
    if r.status_code == 202:
        reg.cancel_upload(reg.location(r))
    else:
        # The spec lets a registry ignore `from` and mount anything it has.
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == d


def test_mount_from_unknown_repo(reg, blob):
    repo, d, _ = blob
    r = reg.post(f"/v2/{repo}-mnt4/blobs/uploads/?mount={d}&from=it/no-such-repo", data=b"")
    assert r.status_code in (201, 202), r.text
    if r.status_code == 202:
        reg.cancel_upload(reg.location(r))


def test_mount_bad_digest(reg, blob):
    repo, _, _ = blob
    r = reg.post(f"/v2/{repo}-mnt5/blobs/uploads/?mount=sha256:xyz&from={repo}", data=b"")
    assert r.status_code in (202, 400), r.text
    if r.status_code == 400:
        assert_error(r, 400, "DIGEST_INVALID")
    else:
        reg.cancel_upload(reg.location(r))


def test_mount_bad_from_name(reg, blob):
    repo, d, _ = blob
    r = reg.post(f"/v2/{repo}-mnt6/blobs/uploads/?mount={d}&from=BAD..name", data=b"")
    assert r.status_code in (202, 400), r.text
    if r.status_code == 400:
        assert_error(r, 400, "NAME_INVALID")
    else:
        reg.cancel_upload(reg.location(r))
