"""Instances with other configurations: OCIRegDeletes Off, a tiny upload
session table (OCIRegUploadSlots 2), Basic authentication."""

import os
import re

import pytest

from ocireg_client import (MT_OCI_MANIFEST, Registry, assert_error,
                           check_raw_response, raw_request, sha256, with_query)


# -- OCIRegDeletes Off ---------------------------------------------------------

@pytest.fixture(scope="module")
def nodel(server_nodelete):
    r = Registry(server_nodelete.base_url)
    yield r
    r.close()


def _check_405_no_delete(r):
    assert_error(r, 405, "UNSUPPORTED")
    allow = r.headers.get("Allow")
    assert allow, "405 without Allow"
    assert "DELETE" not in {m.strip().upper() for m in allow.split(",")}


def test_deletes_off_manifest(nodel):
    repo = "it/nodel/m"
    img = nodel.push_image(repo, "keep")
    _check_405_no_delete(nodel.delete(f"/v2/{repo}/manifests/{img['digest']}"))
    _check_405_no_delete(nodel.delete(f"/v2/{repo}/manifests/keep"))
    assert nodel.get_manifest(repo, "keep").content == img["manifest"]
    assert nodel.get_manifest(repo, img["digest"]).status_code == 200


def test_deletes_off_blob(nodel):
    repo = "it/nodel/b"
    d = nodel.push_blob(repo, b"undeletable")
    _check_405_no_delete(nodel.delete(f"/v2/{repo}/blobs/{d}"))
    assert nodel.get(f"/v2/{repo}/blobs/{d}").content == b"undeletable"


def test_deletes_off_unknown_targets(nodel):
    # Refused as an operation, whatever the target.
    r = nodel.delete(f"/v2/it/nodel/none/blobs/{sha256(b'x')}")
    assert r.status_code in (404, 405)
    r = nodel.delete("/v2/it/nodel/none/manifests/latest")
    assert r.status_code in (404, 405)


def test_deletes_off_rest_works(nodel):
    repo = "it/nodel/rest"
    data = os.urandom(3000)
    d = nodel.push_blob_chunked(repo, data, 1000)
    assert nodel.get(f"/v2/{repo}/blobs/{d}").content == data
    # Cancelling an upload is not deleting content.
    loc, _ = nodel.start_upload(repo)
    r = nodel.delete(loc)
    assert r.status_code in (204, 405), r.text
    if r.status_code == 405:
        assert_error(r, 405, "UNSUPPORTED")


# -- OCIRegUploadSlots 2 --------------------------------------------------------

@pytest.fixture(scope="module")
def slots(server_slots2):
    r = Registry(server_slots2.base_url)
    yield r
    r.close()


def test_session_table_full(slots):
    repo = "it/slots/full"
    l1, _ = slots.start_upload(repo)
    l2, _ = slots.start_upload(repo)
    try:
        r = slots.post(f"/v2/{repo}/blobs/uploads/", data=b"")
        assert_error(r, 429, "TOOMANYREQUESTS")
        ra = r.headers.get("Retry-After")
        assert ra and re.fullmatch(r"[0-9]+", ra), ra
        # A monolithic POST needs no session slot beyond the request... or
        # it does; either way it must not corrupt anything.
        data = b"monolithic while full"
        r = slots.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", data=data)
        assert r.status_code in (201, 429), r.text
        # Mount needs no slot when it succeeds.
        d = slots.push_blob(repo + "-src", b"mountable") if r.status_code == 201 else None
        if d:
            r = slots.post(f"/v2/{repo}/blobs/uploads/?mount={d}&from={repo}-src", data=b"")
            assert r.status_code == 201, r.text
        # Freed slot can be reused.
        assert slots.delete(l1).status_code == 204
        l3, _ = slots.start_upload(repo)
        assert_error(slots.post(f"/v2/{repo}/blobs/uploads/", data=b""), 429, "TOOMANYREQUESTS")
        # Closing a session frees its slot too.
        r = slots.put(with_query(l2, digest=sha256(b"")))
        assert r.status_code == 201, r.text
        l4, _ = slots.start_upload(repo)
    finally:
        for loc in (l1, l2, locals().get("l3"), locals().get("l4")):
            if loc:
                slots.cancel_upload(loc)


def test_session_table_empty_after(slots):
    # The previous test released everything: two sessions fit again.
    repo = "it/slots/again"
    l1, _ = slots.start_upload(repo)
    l2, _ = slots.start_upload(repo)
    slots.cancel_upload(l1)
    slots.cancel_upload(l2)


# -- Basic auth --------------------------------------------------------------------

@pytest.fixture(scope="module")
def authed(server_auth):
    r = Registry(server_auth.base_url, auth=(server_auth.user, server_auth.password))
    yield r
    r.close()


@pytest.fixture(scope="module")
def anon(server_auth):
    r = Registry(server_auth.base_url)
    yield r
    r.close()


@pytest.mark.parametrize("method,path", [
    ("GET", "/v2/"),
    ("GET", "/v2"),
    ("GET", "/v2/it/auth/x/tags/list"),
    ("GET", "/v2/it/auth/x/manifests/latest"),
    ("POST", "/v2/it/auth/x/blobs/uploads/"),
    ("GET", "/v2/_catalog"),
])
def test_auth_required(anon, method, path):
    r = anon.request(method, path, data=b"" if method == "POST" else None)
    assert_error(r, 401, "UNAUTHORIZED")
    wa = r.headers.get("WWW-Authenticate")
    assert wa and wa.lower().startswith("basic"), wa


@pytest.mark.allow_errors(r"AH01617: user tester: authentication failure")
def test_auth_wrong_password(server_auth):
    r = Registry(server_auth.base_url, auth=(server_auth.user, "wrong"))
    try:
        assert_error(r.get("/v2/"), 401, "UNAUTHORIZED")
    finally:
        r.close()


def test_auth_head_401(anon):
    r = anon.head("/v2/")
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate")


def test_auth_raw_401_json(server_auth):
    r = raw_request(server_auth.port, "GET", "/v2/")
    assert r.status == 401
    codes = check_raw_response(r, "/v2/", "GET")
    assert "UNAUTHORIZED" in codes


def test_auth_static_content_open(server_auth):
    r = raw_request(server_auth.port, "GET", "/")
    assert r.status == 200


def test_auth_with_credentials(authed):
    assert authed.get("/v2/").status_code == 200
    repo = "it/auth/works"
    img = authed.push_image(repo, "v1")
    assert authed.get_manifest(repo, "v1").content == img["manifest"]
    assert authed.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]


def test_auth_expect_100_no_continue_without_credentials(server_auth):
    from ocireg_client import RawConnection
    with RawConnection(server_auth.port, timeout=15) as c:
        c.send_head("PUT", "/v2/it/auth/y/manifests/latest",
                    {"Content-Type": MT_OCI_MANIFEST, "Content-Length": "100000",
                     "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 401
