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
from ocireg_client import Registry, header_ci

import requests


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
    port = free_port()
    env = dict(os.environ, CONF_EXTRA=str(extra), OCIREG_MODULE=str(module_path()))
    env.pop("S3_ENDPOINT", None)    # the filesystem store under run_dir
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
    try:
        def up():
            try:
                return requests.get(base + "/v2/", timeout=2).status_code
            except requests.ConnectionError:
                assert p.poll() is None, (run_dir / "output").read_text()
                return None
        wait_for(up, timeout=30, what="make run's httpd answering")
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
        # run.sh execs apache2: its PID is the server's parent.
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
        out.close()
