"""The base endpoint, headers on every response, unknown endpoints, wrong
methods, and coexistence with ordinary static content."""

import pytest

from httpd_harness import INDEX_HTML
from ocireg_client import (API_VERSION, assert_error, raw_request,
                           check_raw_response, random_digest)


def test_static_content_still_served(server):
    r = raw_request(server.port, "GET", "/")
    assert r.status == 200
    assert r.body == INDEX_HTML
    r = raw_request(server.port, "GET", "/index.html")
    assert r.status == 200
    assert r.body == INDEX_HTML


def test_static_404_outside_v2_is_not_registry(server):
    r = raw_request(server.port, "GET", "/no-such-file.txt")
    assert r.status == 404


@pytest.mark.parametrize("path", ["/v2/", "/v2"])
def test_base_endpoint(reg, path):
    r = reg.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_base_endpoint_head(reg):
    r = reg.head("/v2/")
    assert r.status_code == 200
    assert r.content == b""


@pytest.mark.parametrize("path", [
    "/v2/foo",
    "/v2/foo/bar",
    "/v2/foo/unknown/thing",
    "/v2/foo/blobs",
    "/v2/foo/manifests",
    "/v2/foo/tags",
    "/v2/foo/tags/other",
    "/v2/foo/referrers",
    "/v2/_catalogue",
    "/v2/foo/blobs/uploads/abc/def",
])
def test_unknown_endpoint_404_json(reg, path):
    r = reg.get(path)
    assert r.status_code == 404, r.text
    # check_response verified the JSON error body and the API header


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/v2/"),
    ("PUT", "/v2/"),
    ("POST", "/v2/"),
    ("PUT", "/v2/foo/tags/list"),
    ("DELETE", "/v2/foo/tags/list"),
    ("POST", "/v2/foo/manifests/latest"),
    ("PATCH", "/v2/foo/manifests/latest"),
    ("PATCH", "/v2/foo/blobs/" + random_digest()),
    ("POST", "/v2/foo/blobs/" + random_digest()),
    ("PUT", "/v2/foo/blobs/" + random_digest()),
    ("PUT", "/v2/foo/blobs/uploads/"),
    ("PATCH", "/v2/foo/blobs/uploads/"),
    ("DELETE", "/v2/foo/blobs/uploads/"),
    ("POST", "/v2/_catalog"),
    ("DELETE", "/v2/foo/referrers/" + random_digest()),
    ("POST", "/v2/foo/blobs/uploads/3f1d2c7e-5a4b-4c3d-9e8f-0123456789ab"),
])
def test_wrong_method_405(reg, method, path):
    r = reg.request(method, path, data=b"")
    assert_error(r, 405, "UNSUPPORTED")
    allow = r.headers.get("Allow")
    assert allow, "405 without Allow header"
    allowed = {m.strip().upper() for m in allow.split(",")}
    assert method not in allowed
    assert allowed, allow


def test_options_or_405_has_api_header(server):
    # Whatever the module does with OPTIONS, the API header is on it.
    r = raw_request(server.port, "OPTIONS", "/v2/foo/manifests/latest")
    assert r.header("Docker-Distribution-API-Version") == API_VERSION
    if r.status >= 400:
        check_raw_response(r, "/v2/foo/manifests/latest", "OPTIONS")


def test_api_header_on_errors(reg):
    r = reg.get("/v2/nosuchrepo-base/manifests/latest")
    assert r.status_code == 404
    assert r.headers["Docker-Distribution-API-Version"] == API_VERSION
    r = reg.head("/v2/nosuchrepo-base/manifests/latest")
    assert r.status_code == 404
    assert r.headers["Docker-Distribution-API-Version"] == API_VERSION
