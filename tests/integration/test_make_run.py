"""`make run` with CONF_EXTRA: conf/run.sh (what `make run` calls) renders the
standalone configuration with the file's directives inside <Location /v2>
and serves it; here with the README's htpasswd example, on a free loopback
port, stopped by its PID."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from httpd_harness import (REPO_ROOT, free_port, module_path,
                           sanitizer_runtimes, wait_for)
from ocireg_client import Registry, header_ci, sha256

import requests

from conftest import BACKENDS, UPSTREAM_PASSWORD, UPSTREAM_USER


@pytest.fixture
def run_dir(base_dir):
    d = Path(base_dir) / "make-run"
    d.mkdir(exist_ok=True)
    d.chmod(0o755)
    return d


def test_conf_extra_puts_auth_rules_in_the_location(run_dir):
    pw = run_dir / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(pw), "alice", "alice-secret"],
                   check=True, capture_output=True)
    pw.chmod(0o644)
    extra = run_dir / "auth.conf"
    extra.write_text("\n".join([
        "AuthType Basic", 'AuthName "registry"', f"AuthUserFile {pw}",
        "AuthzSendForbiddenOnFailure On",
        "<RequireAny>", "    Require oci-pull public/*",
        "    Require oci-push * user:alice", "</RequireAny>", ""]))
    p, base, out = start_run_sh(run_dir, {"CONF_EXTRA": str(extra)})
    try:
        conf = (run_dir / "data" / ".httpd" / "httpd.conf").read_text()
        assert f'Include "{extra}"' in conf
        anon = Registry(base)
        r = anon.get("/v2/", check=False)
        assert r.status_code == 401
        assert header_ci(r.headers, "WWW-Authenticate").startswith("Basic ")
        alice = Registry(base, auth=("alice", "alice-secret"))
        d = alice.push_blob("public/app", b"pushed by alice")
        assert anon.get(f"/v2/public/app/blobs/{d}").content == b"pushed by alice"
        r = anon.post("/v2/public/app/blobs/uploads/", check=False)
        assert r.status_code == 401
        anon.close()
        alice.close()
    finally:
        stop_run_sh(p, out)


def start_run_sh(run_dir, env_extra, drop=("S3_ENDPOINT",)):
    """conf/run.sh on a free port with env_extra; returns (process, base URL,
    output file), once /v2/ answers."""
    port = free_port()
    env = dict(os.environ, OCIREG_MODULE=str(module_path()), **env_extra)
    for k in drop:
        env.pop(k, None)
    libs = sanitizer_runtimes()
    if libs:
        env["LD_PRELOAD"] = " ".join(libs)
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:halt_on_error=1"
    out = open(run_dir / "output", "wb")
    p = subprocess.Popen(["sh", str(REPO_ROOT / "conf" / "run.sh"), str(REPO_ROOT),
                          str(port), str(run_dir / "data")],
                         stdout=out, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base + "/v2/", timeout=2).status_code
        except requests.ConnectionError:
            assert p.poll() is None, (run_dir / "output").read_text()
            return None
    try:
        wait_for(up, timeout=30, what="make run's httpd answering")
    except BaseException:
        stop_run_sh(p, out)
        raise
    return p, base, out


def stop_run_sh(p, out):
    # run.sh execs apache2: its PID is the server's parent.
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    p.wait(timeout=30)
    out.close()


def check_mirror_run(run_dir, base, up, env_extra=None):
    """make run with MIRROR= a Basic-auth docker-registry: the rendered
    line names the credentials' variables, never their values; pushes are
    refused; an image pushed upstream pulls through, digests equal."""
    conf = (run_dir / "data" / ".httpd" / "httpd.conf").read_text()
    line = (f"OCIRegMirror * {up.url} "
            "credentials=env:OCIREG_MIRROR_USER,OCIREG_MIRROR_PASSWORD insecure")
    assert line in conf, conf
    assert UPSTREAM_PASSWORD not in conf and UPSTREAM_USER not in conf
    # The configuration run.sh checked (apache2 -t) and serves.
    p = subprocess.run(["/usr/sbin/apache2", "-t", "-f",
                        str(run_dir / "data" / ".httpd" / "httpd.conf")],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, OCIREG_MIRROR_USER="u",
                                OCIREG_MIRROR_PASSWORD="p", **(env_extra or {}),
                                **({"LD_PRELOAD": " ".join(sanitizer_runtimes())}
                                   if sanitizer_runtimes() else {})))
    assert p.returncode == 0, p.stdout + p.stderr
    name = f"make-run/{os.urandom(4).hex()}"
    img = up.push_image(name, "v1", layers=(os.urandom(70000),))
    reg = Registry(base)
    try:
        r = reg.post(f"/v2/{name}/blobs/uploads/", data=b"", check=True)
        assert r.status_code == 405, r.text
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        r = reg.get_manifest(name, "v1")
        assert r.status_code == 200 and r.content == img["manifest"]
        assert r.headers["Docker-Content-Digest"] == img["digest"]
        for d in [img["config"]] + img["layers"]:
            r = reg.get(f"/v2/{name}/blobs/{d}")
            assert r.status_code == 200 and sha256(r.content) == d
    finally:
        reg.close()
    assert UPSTREAM_PASSWORD not in (run_dir / "output").read_text(errors="replace")


def test_mirror_pulls_through_with_credentials_kept_out(run_dir, upstream_basic):
    env = {"MIRROR": upstream_basic.url, "MIRROR_USER": UPSTREAM_USER,
           "MIRROR_PASSWORD": UPSTREAM_PASSWORD, "MIRROR_ALLOW_INSECURE": "1"}
    p, base, out = start_run_sh(run_dir, env)
    try:
        check_mirror_run(run_dir, base, upstream_basic)
    finally:
        stop_run_sh(p, out)


@pytest.mark.parametrize("env, message", [
    ({"MIRROR": "http://127.0.0.1:9"}, "MIRROR_ALLOW_INSECURE"),
    ({"MIRROR": "docker.io", "MIRROR_USER": "u"}, "MIRROR_PASSWORD"),
    ({"MIRROR": "docker.io\nOCIRegistry Off"}, "not a registry URL"),
    ({"MIRROR": "ftp://mirror.example.org"}, "OCIRegMirror"),
])
def test_mirror_bad_settings_stop_make_run(run_dir, env, message):
    full = dict(os.environ, OCIREG_MODULE=str(module_path()), **env)
    full.pop("S3_ENDPOINT", None)
    libs = sanitizer_runtimes()
    if libs:
        full["LD_PRELOAD"] = " ".join(libs)
    p = subprocess.run(["sh", str(REPO_ROOT / "conf" / "run.sh"), str(REPO_ROOT),
                        str(free_port()), str(run_dir / "data")],
                       capture_output=True, text=True, env=full, timeout=60)
    assert p.returncode != 0, p.stdout + p.stderr
    assert message in p.stdout + p.stderr


@pytest.mark.skipif("s3" not in BACKENDS, reason="OCIREG_BACKENDS does not include s3")
def test_mirror_combines_with_s3(run_dir, rgw, upstream_basic):
    """MIRROR with the S3_* variables: both in one configuration."""
    env = {"MIRROR": upstream_basic.url, "MIRROR_USER": UPSTREAM_USER,
           "MIRROR_PASSWORD": UPSTREAM_PASSWORD, "MIRROR_ALLOW_INSECURE": "1",
           "S3_ENDPOINT": rgw.endpoint, "S3_BUCKET": rgw.bucket,
           "S3_ACCESS_KEY": rgw.access_key, "S3_SECRET_KEY": rgw.secret_key,
           "S3_REGION": "us-east-1", "S3_PREFIX": "make-run-mirror/",
           "S3_PART_SIZE": "5M", "S3_ALLOW_INSECURE": "1"}
    p, base, out = start_run_sh(run_dir, env, drop=())
    try:
        conf = (run_dir / "data" / ".httpd" / "httpd.conf").read_text()
        assert f"OCIRegStorage s3 {rgw.endpoint}" in conf
        assert rgw.secret_key not in conf
        check_mirror_run(run_dir, base, upstream_basic, {
            "OCIREG_S3_ACCESS_KEY": rgw.access_key,
            "OCIREG_S3_SECRET_KEY": rgw.secret_key})
    finally:
        stop_run_sh(p, out)
