"""The upstream registries the mirror's tests pull from
(tests/fixtures/upstream.py): distribution 2.8, anonymous and behind Basic
auth, takes an image pushed with the tests' client and with skopeo and
serves it back; counts the requests it served; stops and starts again on
the same port with the same content."""

import os
import shutil
import subprocess

import pytest
import requests

from conftest import UPSTREAM_PASSWORD, UPSTREAM_USER
from ocireg_client import MT_OCI_MANIFEST, Registry, assert_error, header_ci, sha256
from test_skopeo import build_oci_layout

SKOPEO = shutil.which("skopeo")


@pytest.fixture(params=["anonymous", "basic"])
def upstream(request):
    return request.getfixturevalue(
        "upstream_anon" if request.param == "anonymous" else "upstream_basic")


def test_client_push_and_pull(upstream, repo):
    layers = [os.urandom(4096), os.urandom(70000)]
    img = upstream.push_image(repo, "v1", layers=layers)
    reg = Registry(upstream.url, auth=upstream.auth)
    try:
        r = reg.get_manifest(repo, "v1")
        assert r.status_code == 200
        assert r.content == img["manifest"]
        assert header_ci(r.headers, "Docker-Content-Digest") == img["digest"]
        for data, d in zip(layers, img["layers"]):
            r = reg.get(f"/v2/{repo}/blobs/{d}")
            assert r.status_code == 200 and r.content == data
    finally:
        reg.close()


@pytest.mark.skopeo
@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_skopeo_push_and_pull(upstream, repo, tmp_path):
    layout = tmp_path / "layout"
    build_oci_layout(layout, nlayers=2, layer_mb=1)
    creds = [f"--dest-creds={UPSTREAM_USER}:{UPSTREAM_PASSWORD}"] if upstream.auth else []
    subprocess.run([SKOPEO, "copy", "--dest-tls-verify=false", *creds,
                    f"oci:{layout}:v1", f"docker://{upstream.hostport}/{repo}:v1"],
                   check=True, capture_output=True, timeout=120)
    src = [f"--creds={UPSTREAM_USER}:{UPSTREAM_PASSWORD}"] if upstream.auth else []
    raw = subprocess.run([SKOPEO, "inspect", "--raw", "--tls-verify=false", *src,
                          f"docker://{upstream.hostport}/{repo}:v1"],
                         check=True, capture_output=True, timeout=60).stdout
    local = subprocess.run([SKOPEO, "inspect", "--raw", f"oci:{layout}:v1"],
                           check=True, capture_output=True, timeout=60).stdout
    assert sha256(raw) == sha256(local)


def test_basic_auth_demanded(upstream_basic, repo):
    r = requests.get(f"{upstream_basic.url}/v2/", timeout=10)
    assert r.status_code == 401
    assert header_ci(r.headers, "WWW-Authenticate").startswith("Basic ")
    r = requests.get(f"{upstream_basic.url}/v2/", auth=(UPSTREAM_USER, "wrong"), timeout=10)
    assert r.status_code == 401
    r = requests.get(f"{upstream_basic.url}/v2/", auth=upstream_basic.auth, timeout=10)
    assert r.status_code == 200


def test_requests_are_counted(upstream, repo):
    reg = Registry(upstream.url, auth=upstream.auth)
    try:
        mark = upstream.mark()
        upstream.sync()
        assert upstream.requests_since(mark) == []
        assert_error(reg.get(f"/v2/{repo}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
        assert reg.head(f"/v2/{repo}/manifests/nope").status_code == 404
        upstream.sync()
        seen = upstream.requests_since(mark)
        assert [(q.method, q.path, q.status) for q in seen] == [
            ("GET", f"/v2/{repo}/manifests/nope", 404),
            ("HEAD", f"/v2/{repo}/manifests/nope", 404)], seen
        if upstream.auth:
            # Without credentials: 401, counted too.
            assert requests.get(f"{upstream.url}/v2/{repo}/tags/list",
                                timeout=10).status_code == 401
            upstream.sync()
            assert upstream.requests_since(mark)[2:] == [
                ("GET", f"/v2/{repo}/tags/list", 401)]
    finally:
        reg.close()


def test_stop_and_start_keep_port_and_content(upstream, repo):
    reg = Registry(upstream.url, auth=upstream.auth)
    try:
        img = upstream.push_image(repo, "v1")
        port = upstream.port
        upstream.stop()
        assert not upstream.running
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{upstream.url}/v2/", timeout=5)
        upstream.start()
        assert upstream.port == port
        reg.close()
        reg = Registry(upstream.url, auth=upstream.auth)
        r = reg.get_manifest(repo, "v1")
        assert r.status_code == 200 and r.content == img["manifest"]
        assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    finally:
        if not upstream.running:
            upstream.start()
        reg.close()
