"""Pushing, pulling and deleting manifests of every supported type."""

import json
import os

import pytest

from ocireg_client import (ALL_MANIFEST_TYPES, MT_DOCKER_CONFIG, MT_DOCKER_LAYER,
                           MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_CONFIG,
                           MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
                           RawConnection, assert_error, check_raw_response,
                           descriptor, docker_manifest, docker_manifest_list,
                           oci_index, oci_manifest, platform_descriptor,
                           random_digest, sha256)


def push_blobs(reg, repo, config_type, layer_type, nlayers=2):
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "nonce": os.urandom(8).hex()}).encode()
    reg.push_blob(repo, config)
    layers = []
    for _ in range(nlayers):
        data = os.urandom(2000)
        reg.push_blob(repo, data)
        layers.append(descriptor(layer_type, data))
    return descriptor(config_type, config), layers


def check_pull(reg, repo, ref, body, media_type):
    d = sha256(body)
    for method in ("GET", "HEAD"):
        r = reg.get_manifest(repo, ref, method=method)
        assert r.status_code == 200, (method, ref, r.status_code, r.text)
        assert r.headers["Docker-Content-Digest"] == d
        assert r.headers["Content-Type"].split(";")[0].strip() == media_type
        assert r.headers["Content-Length"] == str(len(body))
        if method == "GET":
            assert r.content == body
        else:
            assert r.content == b""


def test_oci_manifest_by_tag(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER)
    body = oci_manifest(cfg, layers, annotations={"a": "b"}, pretty=True)
    d = sha256(body)
    r = reg.put_manifest(repo, "v1", body, MT_OCI_MANIFEST)
    assert r.headers["Docker-Content-Digest"] == d
    loc = reg.location(r)
    g = reg.get(loc, headers={"Accept": ALL_MANIFEST_TYPES})
    assert g.status_code == 200 and g.content == body
    check_pull(reg, repo, "v1", body, MT_OCI_MANIFEST)
    check_pull(reg, repo, d, body, MT_OCI_MANIFEST)


def test_oci_manifest_by_digest(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER)
    body = oci_manifest(cfg, layers)
    d = sha256(body)
    r = reg.put_manifest(repo, d, body, MT_OCI_MANIFEST)
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers.get("Location")
    check_pull(reg, repo, d, body, MT_OCI_MANIFEST)
    # Pushed by digest only: no tag.
    t = reg.get(f"/v2/{repo}/tags/list")
    assert t.status_code == 200 and t.json()["tags"] in ([], None)


def test_oci_manifest_content_type_with_parameters(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER)
    body = oci_manifest(cfg, layers)
    r = reg.put_manifest(repo, "p", body, MT_OCI_MANIFEST + "; charset=utf-8")
    assert r.status_code == 201
    r = reg.get_manifest(repo, "p")
    assert r.headers["Content-Type"].split(";")[0].strip() == MT_OCI_MANIFEST


def test_oci_index(reg, repo):
    a = reg.push_image(repo)
    b = reg.push_image(repo)
    body = oci_index([platform_descriptor(a["descriptor"], "amd64"),
                      platform_descriptor(b["descriptor"], "arm64")])
    r = reg.put_manifest(repo, "multi", body, MT_OCI_INDEX)
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    check_pull(reg, repo, "multi", body, MT_OCI_INDEX)
    check_pull(reg, repo, sha256(body), body, MT_OCI_INDEX)


def test_docker_schema2_manifest(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_DOCKER_CONFIG, MT_DOCKER_LAYER, 3)
    body = docker_manifest(cfg, layers)
    reg.put_manifest(repo, "docker", body, MT_DOCKER_MANIFEST)
    check_pull(reg, repo, "docker", body, MT_DOCKER_MANIFEST)
    check_pull(reg, repo, sha256(body), body, MT_DOCKER_MANIFEST)


def test_docker_manifest_list(reg, repo):
    children = []
    for arch in ("amd64", "arm64", "s390x"):
        cfg, layers = push_blobs(reg, repo, MT_DOCKER_CONFIG, MT_DOCKER_LAYER, 1)
        body = docker_manifest(cfg, layers)
        reg.put_manifest(repo, sha256(body), body, MT_DOCKER_MANIFEST)
        children.append(platform_descriptor(descriptor(MT_DOCKER_MANIFEST, body), arch))
    body = docker_manifest_list(children)
    reg.put_manifest(repo, "list", body, MT_DOCKER_LIST)
    check_pull(reg, repo, "list", body, MT_DOCKER_LIST)
    check_pull(reg, repo, sha256(body), body, MT_DOCKER_LIST)


def test_manifest_without_media_type_field(reg, repo):
    # mediaType is only SHOULD; the Content-Type header decides.
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    body = json.dumps({"schemaVersion": 2, "config": cfg, "layers": layers}).encode()
    reg.put_manifest(repo, "nomt", body, MT_OCI_MANIFEST)
    check_pull(reg, repo, "nomt", body, MT_OCI_MANIFEST)


def test_manifest_media_type_mismatch_rejected(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    body = oci_manifest(cfg, layers)
    r = reg.put_manifest(repo, "mm", body, MT_DOCKER_MANIFEST, expect=None)
    assert_error(r, 400, "MANIFEST_INVALID")


def test_retag_moves_tag(reg, repo):
    a = reg.push_image(repo, "moving")
    b = reg.push_image(repo, "moving")
    r = reg.get_manifest(repo, "moving")
    assert r.content == b["manifest"]
    # The old manifest is still there by digest.
    assert reg.get_manifest(repo, a["digest"]).content == a["manifest"]


def test_same_manifest_many_tags(reg, repo):
    img = reg.push_image(repo, "one")
    reg.put_manifest(repo, "two", img["manifest"], MT_OCI_MANIFEST)
    reg.put_manifest(repo, "three", img["manifest"], MT_OCI_MANIFEST)
    for t in ("one", "two", "three"):
        assert reg.get_manifest(repo, t).headers["Docker-Content-Digest"] == img["digest"]


def test_manifest_blob_unknown(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    missing = descriptor(MT_OCI_LAYER, b"never pushed " + os.urandom(8))
    body = oci_manifest(cfg, layers + [missing])
    r = reg.put_manifest(repo, "bad", body, MT_OCI_MANIFEST, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert reg.get_manifest(repo, "bad").status_code == 404


def test_manifest_config_unknown(reg, repo):
    _, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    cfg = descriptor(MT_OCI_CONFIG, b'{"missing":true}')
    r = reg.put_manifest(repo, "bad", oci_manifest(cfg, layers), MT_OCI_MANIFEST, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_blob_from_other_repo_unknown(reg, repo):
    other = repo + "-src"
    cfg, layers = push_blobs(reg, other, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    reg.push_blob(repo, b"repo exists")
    r = reg.put_manifest(repo, "x", oci_manifest(cfg, layers), MT_OCI_MANIFEST, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_child_unknown(reg, repo):
    a = reg.push_image(repo)
    ghost = {"mediaType": MT_OCI_MANIFEST, "digest": random_digest(), "size": 500}
    body = oci_index([a["descriptor"], ghost])
    r = reg.put_manifest(repo, "idx", body, MT_OCI_INDEX, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_child_is_blob_not_manifest(reg, repo):
    data = b'{"not":"a manifest"}'
    reg.push_blob(repo, data)
    body = oci_index([descriptor(MT_OCI_MANIFEST, data)])
    r = reg.put_manifest(repo, "idx", body, MT_OCI_INDEX, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_put_by_digest_mismatch(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    body = oci_manifest(cfg, layers)
    r = reg.put_manifest(repo, random_digest(), body, MT_OCI_MANIFEST, expect=None)
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.get_manifest(repo, sha256(body)).status_code == 404


@pytest.mark.parametrize("body", [
    b"not json",
    b"{",
    b"",
    b"[]",
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": 5}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": "sha256:zz", "size": 1, "mediaType": "a/b"}, "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": "x"}',
    b'\xff\xfe{}',
])
def test_invalid_manifest(reg, repo, body):
    reg.push_blob(repo, b"repo exists")
    r = reg.put_manifest(repo, "inv", body, MT_OCI_MANIFEST if b"index" not in body else MT_OCI_INDEX,
                         expect=None)
    if b"sha256:zz" in body:
        assert_error(r, 400, "MANIFEST_INVALID", "DIGEST_INVALID")
    else:
        assert_error(r, 400, "MANIFEST_INVALID")


def _big_manifest(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    pad = "x" * (4 * 1024 * 1024 + 100)
    return oci_manifest(cfg, layers, annotations={"pad": pad})


def test_manifest_too_large_content_length(server, reg, repo):
    body = _big_manifest(reg, repo)
    path = f"/v2/{repo}/manifests/big"
    with RawConnection(server.port) as c:
        r = c.request("PUT", path, headers={"Content-Type": MT_OCI_MANIFEST}, body=body)
    assert r.status == 413, r
    check_raw_response(r, path, "PUT")
    assert reg.get_manifest(repo, "big").status_code == 404


def test_manifest_too_large_chunked(server, reg, repo):
    body = _big_manifest(reg, repo)
    path = f"/v2/{repo}/manifests/bigc"
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    with RawConnection(server.port) as c:
        r = c.request("PUT", path, headers={"Content-Type": MT_OCI_MANIFEST}, chunks=pieces)
    assert r.status == 413, r
    check_raw_response(r, path, "PUT")
    assert reg.get_manifest(repo, "bigc").status_code == 404


def test_manifest_just_under_4mib_accepted(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_OCI_CONFIG, MT_OCI_LAYER, 1)
    small = oci_manifest(cfg, layers, annotations={"pad": ""})
    pad = "y" * (4 * 1024 * 1024 - len(small) - 1000)
    body = oci_manifest(cfg, layers, annotations={"pad": pad})
    assert len(body) < 4 * 1024 * 1024
    reg.put_manifest(repo, "almost", body, MT_OCI_MANIFEST)
    assert reg.get_manifest(repo, "almost").content == body


def test_unknown_manifest(reg, repo):
    reg.push_image(repo, "exists")
    assert_error(reg.get_manifest(repo, "nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.get_manifest(repo, random_digest()), 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, "nope", method="HEAD").status_code == 404


def test_manifest_of_unknown_repo(reg):
    r = reg.get_manifest("it/no-such-repo-at-all", "latest")
    assert_error(r, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    r = reg.get_manifest("it/no-such-repo-at-all", random_digest())
    assert_error(r, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_manifest_not_visible_in_other_repo(reg, repo):
    img = reg.push_image(repo, "t")
    other = repo + "-o"
    reg.push_image(other, "t")
    assert_error(reg.get_manifest(other, img["digest"]), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_by_digest(reg, repo):
    img = reg.push_image(repo, "tagged")
    reg.put_manifest(repo, "also", img["manifest"], MT_OCI_MANIFEST)
    r = reg.delete(f"/v2/{repo}/manifests/{img['digest']}")
    assert r.status_code == 202, r.text
    assert_error(reg.get_manifest(repo, img["digest"]), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.get_manifest(repo, "tagged"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.get_manifest(repo, "also"), 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, "tagged", method="HEAD").status_code == 404
    tags = reg.get(f"/v2/{repo}/tags/list")
    if tags.status_code == 200:
        assert "tagged" not in (tags.json()["tags"] or [])


def test_delete_manifest_by_tag(reg, repo):
    img = reg.push_image(repo, "gone")
    reg.put_manifest(repo, "stays", img["manifest"], MT_OCI_MANIFEST)
    r = reg.delete(f"/v2/{repo}/manifests/gone")
    assert r.status_code == 202, r.text
    assert_error(reg.get_manifest(repo, "gone"), 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, img["digest"]).content == img["manifest"]
    assert reg.get_manifest(repo, "stays").content == img["manifest"]
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["stays"]


def test_delete_unknown_manifest(reg, repo):
    reg.push_image(repo, "x")
    assert_error(reg.delete(f"/v2/{repo}/manifests/{random_digest()}"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.delete(f"/v2/{repo}/manifests/nosuchtag"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_unknown_repo(reg):
    r = reg.delete(f"/v2/it/no-such-repo-del/manifests/{random_digest()}")
    assert_error(r, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_repush_after_delete(reg, repo):
    img = reg.push_image(repo, "again")
    assert reg.delete(f"/v2/{repo}/manifests/{img['digest']}").status_code == 202
    reg.put_manifest(repo, "again", img["manifest"], MT_OCI_MANIFEST)
    assert reg.get_manifest(repo, "again").content == img["manifest"]


def test_foreign_layers_need_not_exist(reg, repo):
    cfg, layers = push_blobs(reg, repo, MT_DOCKER_CONFIG, MT_DOCKER_LAYER, 1)
    foreign = descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                         digest=random_digest(), size=1234,
                         urls=["https://example.invalid/layer"])
    body = docker_manifest(cfg, layers + [foreign])
    reg.put_manifest(repo, "foreign", body, MT_DOCKER_MANIFEST)
    check_pull(reg, repo, "foreign", body, MT_DOCKER_MANIFEST)


def test_manifest_by_unsupported_but_valid_digest_is_404(reg, repo):
    # sha512 is a registered algorithm: a well-formed sha512 reference is a
    # digest; a manifest not in the repository is 404 (spec: "If the manifest
    # is not found in the repository, the response code MUST be 404").
    import hashlib
    reg.push_image(repo, "x")
    ref = "sha512:" + hashlib.sha512(b"nothing").hexdigest()
    assert_error(reg.get_manifest(repo, ref), 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, ref, method="HEAD").status_code == 404


def test_index_child_in_other_repo_unknown(reg, repo):
    other = reg.push_image(repo + "-elsewhere", "x")
    reg.push_image(repo, "here")
    body = oci_index([other["descriptor"]])
    r = reg.put_manifest(repo, "idx", body, MT_OCI_INDEX, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
