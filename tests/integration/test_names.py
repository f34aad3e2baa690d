"""Repository names, tags and digests per the spec grammar, and attempts to
get out of the storage through the URL."""

import pytest

from ocireg_client import (assert_error, check_raw_response, raw_request,
                           random_digest, sha256, MT_OCI_MANIFEST)

BAD_NAMES = [
    "UPPER",
    "Mixed/case",
    "a..b",
    "-leading",
    "trailing-",
    "a___b",
    "a_",
    ".hidden",
    "a/.b",
    "a/-b",
    "a/b.",
    "a%20b",
    "x" * 300,
]

GOOD_NAMES = [
    "a",
    "a0",
    "a.b",
    "a_b",
    "a__b",
    "a-b",
    "a---b",
    "a/b/c",
    "library/ubuntu",
    "x" * 100,
]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("endpoint", ["tags/list", "manifests/latest",
                                      "blobs/" + random_digest()])
def test_bad_name_400(reg, name, endpoint):
    r = reg.get(f"/v2/{name}/{endpoint}")
    assert_error(r, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", BAD_NAMES[:6])
def test_bad_name_upload_400(reg, name):
    r = reg.post(f"/v2/{name}/blobs/uploads/", data=b"")
    assert_error(r, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_name_not_invalid(reg, name):
    # A valid name of a repository that does not exist: 404, never 400.
    r = reg.get(f"/v2/{name}/tags/list")
    assert_error(r, 404, "NAME_UNKNOWN")
    r = reg.get(f"/v2/{name}/manifests/latest")
    assert r.status_code == 404


def test_name_with_endpoint_words(reg):
    # Names may contain "blobs", "manifests", "tags" as components.
    repo = "it/blobs/manifests/tags/uploads/referrers"
    data = b"endpoint words in a name"
    d = reg.push_blob(repo, data)
    r = reg.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200 and r.content == data
    img = reg.push_image(repo, "latest")
    r = reg.get_manifest(repo, "latest")
    assert r.status_code == 200 and r.content == img["manifest"]
    r = reg.get(f"/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": ["latest"]}


BAD_TAGS = ["-tag", ".tag", "t" * 129, "tag!", "ta%20g", "t@g"]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tag_on_put_400(reg, repo, tag):
    img = reg.push_image(repo, "ok")
    r = reg.put(f"/v2/{repo}/manifests/{tag}", data=img["manifest"],
                headers={"Content-Type": MT_OCI_MANIFEST})
    assert_error(r, 400, "NAME_INVALID", "MANIFEST_INVALID", "DIGEST_INVALID", "TAG_INVALID")


@pytest.mark.parametrize("tag", BAD_TAGS + [".INVALID_MANIFEST_NAME"])
def test_bad_tag_on_get_head_delete_404(reg, repo, tag):
    # Nothing can be stored under it: readers are told it is not there
    # (the conformance suite expects 404 MANIFEST_UNKNOWN).
    reg.push_image(repo, "ok")
    for method in ("GET", "HEAD", "DELETE"):
        r = reg.request(method, f"/v2/{repo}/manifests/{tag}")
        assert r.status_code == 404, (method, r.status_code, r.text)
        if method != "HEAD":
            assert_error(r, 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, "ok").status_code == 200


def test_bad_tag_delete_with_deletes_off_405(server_nodelete, repo):
    from ocireg_client import Registry
    reg = Registry(server_nodelete.base_url)
    r = reg.delete(f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME")
    assert_error(r, 405, "UNSUPPORTED")
    reg.close()


def test_tag_of_128_chars_ok(reg, repo):
    img = reg.push_image(repo)
    tag = "T" + "a" * 127
    reg.put_manifest(repo, tag, img["manifest"], MT_OCI_MANIFEST)
    r = reg.get_manifest(repo, tag)
    assert r.status_code == 200 and r.content == img["manifest"]


BAD_DIGESTS = [
    "sha256:xyz",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256" + "a" * 64,
    ":" + "a" * 64,
    "sha256:",
    "SHA256:" + "a" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digest_blob_400(reg, repo, digest):
    reg.push_blob(repo, b"make the repo exist")
    r = reg.get(f"/v2/{repo}/blobs/{digest}")
    assert_error(r, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", BAD_DIGESTS[:4])
def test_bad_digest_manifest_get_404_put_400(reg, repo, digest):
    img = reg.push_image(repo, "x")
    assert_error(reg.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    r = reg.put(f"/v2/{repo}/manifests/{digest}", data=img["manifest"],
                headers={"Content-Type": MT_OCI_MANIFEST})
    assert_error(r, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", BAD_DIGESTS[:4])
def test_bad_digest_monolithic_post_400(reg, repo, digest):
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=b"abc")
    assert_error(r, 400, "DIGEST_INVALID")


# -- path traversal ---------------------------------------------------------

# (path, reaches the registry under /v2 after httpd's own normalisation)
TRAVERSALS = [
    ("/v2/../etc/passwd", False),
    ("/v2/%2e%2e/x/manifests/latest", False),
    ("/v2/a/%2e%2e/%2e%2e/manifests/x", False),
    ("/v2/a%2fb/manifests/x", True),
    ("/v2/a%00/manifests/x", True),
    ("/v2//etc/manifests/x", True),
    ("/v2/a/..%2f..%2fetc/manifests/x", True),
    ("/v2/a/blobs/..%2f..%2f..%2fetc%2fpasswd", True),
    ("/v2/a/manifests/..%2f..%2f..%2fetc%2fpasswd", True),
    ("/v2/a/blobs/sha256:..%2f..%2fpasswd", True),
    ("/v2/%2fetc/manifests/x", True),
    ("/v2/a/blobs/uploads/..%2f..%2f..%2fetc", True),
    ("/v2/a/tags/list?last=../../../../etc/passwd", True),
    ("/v2/a/blobs/uploads/../../../../etc/passwd", False),
]


@pytest.mark.parametrize("path,under_v2", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_path_traversal(server, path, under_v2, method):
    body = b"" if method == "PUT" else None
    r = raw_request(server.port, method, path, body=body)
    assert not (200 <= r.status < 300), f"{method} {path} -> {r.status}"
    assert r.status in (400, 404, 405), f"{method} {path} -> {r.status} {r.body[:200]!r}"
    assert b"root:" not in r.body
    if under_v2 and method != "HEAD":
        check_raw_response(r, path, method)


@pytest.mark.allow_errors(r"AH10244: invalid URI path \(/\.\./data/\)")
def test_storage_layout_not_reachable(server, reg, repo):
    # Nothing of the storage root is reachable as a document.
    d = reg.push_blob(repo, b"secret bytes")
    for p in ("/data/", "/../data/", f"/v2/{repo}/_layers/", "/v2/_uploads/"):
        r = raw_request(server.port, "GET", p)
        assert r.status in (400, 403, 404), (p, r.status)
        assert b"secret bytes" not in r.body
    assert d
