"""The upstream registry client (ocireg_upstream.h) on its own, through
build/tools/upstream_client_ops (tests/integration/upstream_client_ops.c,
built by `make unit`), against real registries on loopback: Debian's
docker-registry anonymous and behind Basic auth (htpasswd, bcrypt), and a
mod_ocireg demanding bearer tokens from the token server of
test_auth_tokens.py. A small Python front on loopback stands for an
upstream that redirects blob GETs to storage on another port, recording
the headers each side got. The client is not used by the module yet, so
one store is enough: the upstreams here use the filesystem."""

import hashlib
import json
import os
import signal
import subprocess
import threading
from urllib.parse import urljoin
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from httpd_harness import HttpdInstance, free_port, module_path, wait_for
from ocireg_client import MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, oci_manifest
from test_auth_tokens import (Bearer, claims, es256, keys, token_conf,  # noqa: F401
                              token_server)

TOOL = module_path().parent / "tools" / "upstream_client_ops"
DIST_USER, DIST_PASSWORD = "mirror", "mirror-Passw0rd"


def run_tool(base, op, repo, ref, *opts, out=None):
    args = [str(TOOL), *opts]
    if out is not None:
        args += ["--out", str(out)]
    r = subprocess.run(args + [base, op, repo, ref], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


class DockerRegistry:
    """Debian's docker-registry (distribution 2.8) on a free loopback port,
    filesystem storage, optionally behind htpasswd Basic auth."""

    def __init__(self, work, name, htpasswd=None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.dir = work / name
        self.dir.mkdir()
        conf = ("version: 0.1\nlog:\n  level: info\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'root'}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n")
        if htpasswd:
            conf += ("auth:\n  htpasswd:\n    realm: mirror-test\n"
                     f"    path: {htpasswd}\n")
        self.conf = self.dir / "config.yml"
        self.conf.write_text(conf)
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)     # docker-registry panics where it is set
        self.log = open(self.dir / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.conf)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                return requests.get(self.base_url + "/v2/", timeout=2).status_code in (200, 401)
            except requests.ConnectionError:
                assert self.proc.poll() is None, "docker-registry exited"
                return False
        wait_for(up, what="docker-registry to listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("upstream-client")


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: run `make unit`", pytrace=False)
    return TOOL


@pytest.fixture(scope="module")
def dist_anon(work):
    d = DockerRegistry(work, "anon")
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def dist_basic(work):
    ht = work / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(ht), DIST_USER, DIST_PASSWORD], check=True,
                   capture_output=True)
    d = DockerRegistry(work, "basic", htpasswd=ht)
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def bearer_upstream(base_dir, keys, token_server):
    inst = HttpdInstance("upstream-tokens", base_dir,
                         location_auth=token_conf(token_server.realm, keys))
    inst.start()
    inst.realm = token_server.realm
    yield inst
    inst.stop()


def push_blob(s, base, repo, data):
    """POST then PUT with the digest: what every registry takes."""
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, (r.status_code, r.text)
    loc = urljoin(r.url, r.headers["Location"])
    r = s.put(loc, params={"digest": d}, data=data, timeout=30,
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, (r.status_code, r.text)
    return {"mediaType": MT_OCI_LAYER, "digest": d, "size": len(data)}


def image_on(base, repo, tag, auth=None, layer_size=300 * 1024):
    """An OCI image of a config and two random layers pushed to base;
    returns its manifest bytes, digest and descriptors."""
    s = requests.Session()
    s.auth = auth
    try:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "nonce": os.urandom(8).hex()}).encode()
        cdesc = push_blob(s, base, repo, config)
        cdesc["mediaType"] = MT_OCI_CONFIG
        layers = [push_blob(s, base, repo, os.urandom(layer_size)) for _ in range(2)]
        body = oci_manifest(cdesc, layers)
        r = s.put(f"{base}/v2/{repo}/manifests/{tag}", data=body, timeout=30,
                  headers={"Content-Type": MT_OCI_MANIFEST})
        assert r.status_code == 201, (r.status_code, r.text)
        return {"manifest": body, "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                "layers": layers}
    finally:
        s.close()


def test_anonymous_manifest_and_blob(tool, dist_anon, tmp_path):
    img = image_on(dist_anon.base_url, "lib/app", "v1")
    r = run_tool(dist_anon.base_url, "get-manifest", "lib/app", "v1")
    assert r["outcome"] == "ok" and r["status"] == "200"
    assert "sha256:" + r["sha256"] == img["digest"] == r["digest"]
    assert r["content_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert int(r["content_length"]) == len(img["manifest"]) == int(r["bytes"])
    assert r["token_fetches"] == "0"

    h = run_tool(dist_anon.base_url, "head-manifest", "lib/app", img["digest"])
    assert h["outcome"] == "ok" and h["digest"] == img["digest"] and h["bytes"] == "0"

    layer = img["layers"][1]
    out = tmp_path / "blob"
    b = run_tool(dist_anon.base_url, "get-blob", "lib/app", layer["digest"], out=out)
    assert b["outcome"] == "ok"
    assert "sha256:" + b["sha256"] == layer["digest"]
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == layer["digest"]
    assert int(b["bytes"]) == layer["size"] == int(b["content_length"])


def test_not_found_is_not_unavailable(tool, dist_anon):
    image_on(dist_anon.base_url, "lib/app", "v1")
    r = run_tool(dist_anon.base_url, "get-manifest", "lib/app", "nosuchtag")
    assert (r["outcome"], r["status"]) == ("enoent", "404")
    r = run_tool(dist_anon.base_url, "get-blob", "lib/app", "sha256:" + "0" * 64)
    assert (r["outcome"], r["status"]) == ("enoent", "404")
    r = run_tool(dist_anon.base_url, "get-manifest", "lib/nosuchrepo", "v1")
    assert r["outcome"] == "enoent"


def test_stopped_upstream_is_unavailable(tool, work):
    d = DockerRegistry(work, "stopped")
    d.start()
    try:
        img = image_on(d.base_url, "lib/gone", "v1")
        assert run_tool(d.base_url, "head-manifest", "lib/gone", "v1")["outcome"] == "ok"
    finally:
        d.stop()
    r = run_tool(d.base_url, "get-manifest", "lib/gone", "v1", "--retries", "2")
    assert (r["outcome"], r["status"]) == ("eunavailable", "0"), r
    assert r["error"]
    r = run_tool(d.base_url, "get-blob", "lib/gone", img["layers"][0]["digest"])
    assert r["outcome"] == "eunavailable"


def test_conditional_recheck_of_a_tag(tool, dist_anon):
    img = image_on(dist_anon.base_url, "lib/cond", "v1")
    first = run_tool(dist_anon.base_url, "get-manifest", "lib/cond", "v1")
    assert first["etag"], first
    # Unchanged: a 304 and no body.
    again = run_tool(dist_anon.base_url, "get-manifest", "lib/cond", "v1",
                     "--if-none-match", first["etag"])
    assert (again["outcome"], again["status"], again["not_modified"]) == ("ok", "304", "1")
    assert again["bytes"] == "0"
    # The tag moved: the new manifest.
    img2 = image_on(dist_anon.base_url, "lib/cond", "v1")
    moved = run_tool(dist_anon.base_url, "get-manifest", "lib/cond", "v1",
                     "--if-none-match", first["etag"])
    assert (moved["status"], moved["not_modified"]) == ("200", "0")
    assert moved["digest"] == img2["digest"] != img["digest"]
    assert "sha256:" + moved["sha256"] == img2["digest"]


def test_basic_auth(tool, dist_basic):
    img = image_on(dist_basic.base_url, "lib/private", "v1",
                   auth=(DIST_USER, DIST_PASSWORD))
    r = run_tool(dist_basic.base_url, "get-manifest", "lib/private", "v1",
                 "--user", DIST_USER, "--password", DIST_PASSWORD)
    assert r["outcome"] == "ok" and r["digest"] == img["digest"]
    b = run_tool(dist_basic.base_url, "get-blob", "lib/private", img["layers"][0]["digest"],
                 "--user", DIST_USER, "--password", DIST_PASSWORD)
    assert "sha256:" + b["sha256"] == img["layers"][0]["digest"]
    assert b["token_fetches"] == "0"
    # Anonymous, or a wrong password: refused, not missing or unavailable.
    r = run_tool(dist_basic.base_url, "get-manifest", "lib/private", "v1")
    assert (r["outcome"], r["status"]) == ("erefused", "401")
    r = run_tool(dist_basic.base_url, "get-manifest", "lib/private", "v1",
                 "--user", DIST_USER, "--password", "wrong")
    assert (r["outcome"], r["status"]) == ("erefused", "401")


def test_bearer_token_fetched_once(tool, bearer_upstream, token_server, keys):
    push = Bearer(es256(keys, claims(access=[("tok/mirrored", ["pull", "push"])])))
    img = image_on(bearer_upstream.base_url, "tok/mirrored", "v1", auth=push)
    before = len(token_server.requests())
    r = run_tool(bearer_upstream.base_url, "get-manifest", "tok/mirrored", "v1",
                 "--user", "alice", "--password", "alice-Passw0rd", "--repeat", "5")
    assert r["outcome"] == "ok" and r["digest"] == img["digest"]
    assert "sha256:" + r["sha256"] == img["digest"]
    # One token for five requests, fetched with alice's Basic credentials
    # for the scope the challenge named.
    assert r["token_fetches"] == "1"
    reqs = token_server.requests()[before:]
    assert len(reqs) == 1, reqs
    assert reqs[0]["user"] == "alice"
    assert "repository:tok/mirrored:pull" in json.dumps(reqs[0])

    layer = img["layers"][0]
    b = run_tool(bearer_upstream.base_url, "get-blob", "tok/mirrored", layer["digest"],
                 "--user", "alice", "--password", "alice-Passw0rd", "--repeat", "3")
    assert b["outcome"] == "ok" and "sha256:" + b["sha256"] == layer["digest"]
    assert b["token_fetches"] == "1"


def test_bearer_anonymous_and_refused(tool, bearer_upstream, token_server, keys):
    push = Bearer(es256(keys, claims(access=[("tok/public", ["pull", "push"]),
                                             ("tok/closed", ["pull", "push"])])))
    img = image_on(bearer_upstream.base_url, "tok/public", "v1", auth=push)
    image_on(bearer_upstream.base_url, "tok/closed", "v1", auth=push)
    # The anonymous grant covers tok/public only.
    r = run_tool(bearer_upstream.base_url, "get-manifest", "tok/public", "v1")
    assert r["outcome"] == "ok" and r["digest"] == img["digest"]
    assert r["token_fetches"] == "1"
    r = run_tool(bearer_upstream.base_url, "get-manifest", "tok/closed", "v1")
    assert (r["outcome"], r["status"]) == ("erefused", "401"), r
    assert r["token_fetches"] == "1"
    # A wrong password: the token server refuses, the request is refused.
    r = run_tool(bearer_upstream.base_url, "get-manifest", "tok/public", "v1",
                 "--user", "alice", "--password", "wrong")
    assert r["outcome"] == "erefused", r


class Front:
    """An upstream in front of a real registry that wants Basic auth and
    sends blob GETs on: first to a relative Location on itself, then to
    storage on another loopback port (another origin). Records the
    Authorization header each request came with. /v2/trunc/blobs/... sends
    a body shorter than its Content-Length."""

    def __init__(self, backend_url):
        self.seen = []
        self.auth = "Basic " + __import__("base64").b64encode(
            f"{DIST_USER}:{DIST_PASSWORD}".encode()).decode()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                port = self.server.server_address[1]
                front.seen.append((port, self.path, self.headers.get("Authorization")))
                if port == front.storage_port:
                    digest = self.path.rsplit("/", 1)[1]
                    r = requests.get(f"{backend_url}/v2/lib/redirected/blobs/{digest}")
                    return self.send(r.status_code, r.content,
                                     [("Content-Type", "application/octet-stream")])
                if self.headers.get("Authorization") != front.auth:
                    return self.send(401, b"{}", [("WWW-Authenticate",
                                                   'Basic realm="front"')])
                if self.path.startswith("/v2/trunc/blobs/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if "/blobs/" in self.path:
                    digest = self.path.rsplit("/", 1)[1]
                    return self.send(307, b"", [("Location", f"../../../hop/{digest}")])
                if self.path.startswith("/v2/hop/"):
                    digest = self.path.rsplit("/", 1)[1]
                    loc = f"http://127.0.0.1:{front.storage_port}/storage/{digest}"
                    return self.send(302, b"", [("Location", loc)])
                self.send(404, b"{}")

        self.api = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.storage = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_port = self.api.server_address[1]
        self.storage_port = self.storage.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.api, self.storage)]
        for t in self.threads:
            t.start()

    def close(self):
        for s in (self.api, self.storage):
            s.shutdown()
            s.server_close()


@pytest.fixture
def front(dist_anon):
    f = Front(dist_anon.base_url)
    yield f
    f.close()


def test_redirect_to_another_origin_drops_credentials(tool, front, dist_anon, tmp_path):
    img = image_on(dist_anon.base_url, "lib/redirected", "v1")
    layer = img["layers"][0]
    out = tmp_path / "blob"
    r = run_tool(front.base_url, "get-blob", "lib/redirected", layer["digest"],
                 "--user", DIST_USER, "--password", DIST_PASSWORD, out=out)
    assert r["outcome"] == "ok", r
    assert r["redirects"] == "2"
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == layer["digest"]
    # The upstream's own URLs (the relative hop included) got the
    # credentials; the storage on another port never did.
    api = [a for port, _, a in front.seen if port == front.api_port]
    storage = [(p, a) for port, p, a in front.seen if port == front.storage_port]
    assert api and all(a == front.auth for a in api[-2:]), front.seen
    assert storage == [(f"/storage/{layer['digest']}", None)], front.seen


def test_body_shorter_than_content_length(tool, front):
    r = run_tool(front.base_url, "get-blob", "trunc", "sha256:" + "1" * 64,
                 "--user", DIST_USER, "--password", DIST_PASSWORD)
    assert r["outcome"] == "etruncated", r
    assert r["bytes"] == "1000"
