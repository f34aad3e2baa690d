"""Real client round trips with skopeo: push a multi-layer OCI image layout,
pull it back, compare digests; login and push with credentials."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from ocireg_client import (MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER,
                           MT_OCI_MANIFEST, Registry, sha256)

SKOPEO = shutil.which("skopeo")
pytestmark = [pytest.mark.skopeo,
              pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")]


def _write_blob(layout, data):
    d = sha256(data)
    p = layout / "blobs" / "sha256" / d.split(":")[1]
    p.write_bytes(data)
    return d


def build_oci_layout(layout: Path, tag="v1", nlayers=3, layer_mb=3):
    """An OCI image layout with `nlayers` gzip'd tar layers of random data."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layers, diff_ids = [], []
    for i in range(nlayers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
            payload = os.urandom(layer_mb * 1024 * 1024 + i * 1000)
            ti = tarfile.TarInfo(f"layer{i}/data.bin")
            ti.size = len(payload)
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(payload))
        tar = raw.getvalue()
        diff_ids.append(sha256(tar))
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        d = _write_blob(layout, gz)
        layers.append({"mediaType": MT_OCI_LAYER, "digest": d, "size": len(gz)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(nlayers)],
    }).encode()
    cd = _write_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": cd, "size": len(config)},
        "layers": layers,
    }, indent=2).encode()
    md = _write_blob(layout, manifest)
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [{
        "mediaType": MT_OCI_MANIFEST, "digest": md, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return {"manifest_digest": md, "manifest": manifest, "config_digest": cd,
            "layers": [l["digest"] for l in layers]}


def read_layout(layout: Path, tag="v1"):
    index = json.loads((layout / "index.json").read_text())
    (m,) = [m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    manifest = (layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_bytes()
    assert sha256(manifest) == m["digest"]
    doc = json.loads(manifest)
    for l in doc["layers"] + [doc["config"]]:
        data = (layout / "blobs" / "sha256" / l["digest"].split(":")[1]).read_bytes()
        assert sha256(data) == l["digest"] and len(data) == l["size"]
    return m["digest"], doc


@pytest.fixture(scope="module")
def skopeo_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("skopeo")
    policy = d / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    home = d / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("REGISTRY_AUTH_FILE", None)
    return {"dir": d, "policy": str(policy), "env": env, "authfile": str(d / "auth.json")}


def skopeo(env, *args, timeout=180):
    cmd = [SKOPEO, "--policy", env["policy"], *args]
    p = subprocess.run(cmd, env=env["env"], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    layout = tmp_path_factory.mktemp("layout") / "img"
    info = build_oci_layout(layout)
    return layout, info


def test_skopeo_round_trip(server, skopeo_env, image, tmp_path):
    layout, info = image
    ref = f"docker://{server.hostport}/round/trip:v1"
    t0 = time.monotonic()
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    print(f"\nskopeo push of 3 layers took {time.monotonic() - t0:.2f}s")

    reg = Registry(server.base_url)
    r = reg.get_manifest("round/trip", "v1")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == info["manifest_digest"]
    assert r.content == info["manifest"]
    for d in info["layers"] + [info["config_digest"]]:
        assert reg.head(f"/v2/round/trip/blobs/{d}").status_code == 200
    reg.close()

    out = tmp_path / "pulled"
    skopeo(skopeo_env, "copy", "--src-tls-verify=false", ref, f"oci:{out}:v1")
    md, doc = read_layout(out)
    assert md == info["manifest_digest"]
    assert [l["digest"] for l in doc["layers"]] == info["layers"]
    assert doc["config"]["digest"] == info["config_digest"]

    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false", ref))
    assert js["Digest"] == info["manifest_digest"]
    assert js["Layers"] == info["layers"]
    raw = skopeo(skopeo_env, "inspect", "--raw", "--tls-verify=false", ref)
    assert raw.encode() == info["manifest"]

    tags = json.loads(skopeo(skopeo_env, "list-tags", "--tls-verify=false",
                             f"docker://{server.hostport}/round/trip"))
    assert tags["Tags"] == ["v1"]


def test_skopeo_copy_between_repos(server, skopeo_env, image):
    """Registry to registry copy: skopeo mounts blobs across repositories."""
    layout, info = image
    src = f"docker://{server.hostport}/round/src:v1"
    dst = f"docker://{server.hostport}/round/dst:v2"
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", src)
    skopeo(skopeo_env, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst)
    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false", dst))
    assert js["Digest"] == info["manifest_digest"]


def test_skopeo_delete(server, skopeo_env, image):
    layout, info = image
    ref = f"docker://{server.hostport}/round/del:v1"
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    skopeo(skopeo_env, "delete", "--tls-verify=false", ref)
    reg = Registry(server.base_url)
    assert reg.get_manifest("round/del", info["manifest_digest"]).status_code == 404
    reg.close()


def test_skopeo_login_and_push_with_creds(server_auth, skopeo_env, image):
    layout, info = image
    skopeo(skopeo_env, "login", "--tls-verify=false", "--authfile", skopeo_env["authfile"],
           "-u", server_auth.user, "-p", server_auth.password, server_auth.hostport)
    ref = f"docker://{server_auth.hostport}/auth/skopeo:v1"
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false",
           "--dest-creds", f"{server_auth.user}:{server_auth.password}",
           f"oci:{layout}:v1", ref)
    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false",
                           "--authfile", skopeo_env["authfile"], ref))
    assert js["Digest"] == info["manifest_digest"]


@pytest.mark.allow_errors(r"AH01617: user tester: authentication failure")
def test_skopeo_login_wrong_password_fails(server_auth, skopeo_env):
    p = subprocess.run([SKOPEO, "--policy", skopeo_env["policy"], "login", "--tls-verify=false",
                        "--authfile", str(skopeo_env["dir"] / "bad-auth.json"),
                        "-u", server_auth.user, "-p", "wrong", server_auth.hostport],
                       env=skopeo_env["env"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
