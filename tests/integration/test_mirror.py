"""The pull-through mirror (issue #12) serving, on both stores, from real
upstream registries on loopback: Debian's docker-registry anonymous and
behind Basic auth (tests/fixtures/upstream.py), and a second mod_ocireg
demanding bearer tokens from the token server of test_auth_tokens.py.

skopeo and curl pull through the mirror and the digests are compared with
what the upstream holds; a second pull is a cache hit (the upstream's
access log shows no request); a tag that moves upstream is picked up after
its TTL and not before, re-checked with a conditional request; an upstream
killed mid-blob gives the client an error and leaves nothing cached; an
upstream stopped altogether still lets cached images pull, tags included;
ten concurrent pulls of one 200 MB blob reach the upstream once while the
children's memory stays small; pushes into mirrored names are refused
unless the rule says `local`; the access rules apply to mirrored names
before any upstream request. Python upstreams on loopback stand for one
that sends wrong bytes (never served whole, never stored) and one that
answers 5xx/429 (the cache is served); two httpd instances on one store
stand for two hosts (one fills, the other streams without storing)."""

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import UPSTREAM_PASSWORD, UPSTREAM_USER
from httpd_harness import (HttpdInstance, children_of, free_port, htpasswd_file,
                           sanitizer_runtimes, wait_for)
from ocireg_client import (ALL_MANIFEST_TYPES, EMPTY_JSON, MT_OCI_CONFIG, MT_OCI_INDEX,
                           MT_OCI_LAYER, MT_OCI_MANIFEST, Registry, artifact_manifest,
                           assert_error, check_error_body, header_ci, oci_index,
                           platform_descriptor,
                           sha256)
from test_auth_tokens import (USERS, Bearer, claims, es256, keys,  # noqa: F401
                              token_conf, token_server)
from test_hostile_input import vm_kib
from test_skopeo import SKOPEO, skopeo, skopeo_env  # noqa: F401

MiB = 1024 * 1024
# The tag TTL of the rule whose tags are re-checked within a test.
SHORT_TTL = 3
# What the mirror answers when the upstream cannot give what is not cached
# (README "Pull-through mirror").
UNAVAILABLE_STATUSES = (502, 503)

needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")


# -- images ------------------------------------------------------------------

def layer_tgz(size, name="data.bin"):
    """A gzip'd tar of one file of random bytes, and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(os.urandom(size)))
    tar = raw.getvalue()
    return gzip.compress(tar, compresslevel=1, mtime=0), sha256(tar)


def make_image(sizes=(4096, 150000)):
    """A real OCI image: config bytes and gzip'd tar layers (what skopeo
    copies without complaint)."""
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        gz, diff = layer_tgz(size, f"layer{i}/data.bin")
        layers.append(gz)
        diff_ids.append(diff)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/true"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "nonce": os.urandom(8).hex()}).encode()
    return config, layers


def push_image_to(base_url, repo, tag, auth=None, sizes=(4096, 150000), image=None):
    """Pushes an image (POST then PUT with the digest, what every registry
    takes) to base_url; returns {"manifest", "digest", "config", "layers",
    "blobs": {digest: bytes}}."""
    config, layers = image or make_image(sizes)
    s = requests.Session()
    s.auth = auth
    blobs = {}
    try:
        for data in [config] + layers:
            d = sha256(data)
            blobs[d] = data
            r = s.post(f"{base_url}/v2/{repo}/blobs/uploads/", timeout=30)
            assert r.status_code == 202, (r.status_code, r.text)
            loc = r.headers["Location"]
            if loc.startswith("/"):
                loc = base_url + loc
            r = s.put(loc + ("&" if "?" in loc else "?") + f"digest={d}", data=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=60)
            assert r.status_code == 201, (r.status_code, r.text)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256(config),
                       "size": len(config)},
            "layers": [{"mediaType": MT_OCI_LAYER, "digest": sha256(l), "size": len(l)}
                       for l in layers]}).encode()
        r = s.put(f"{base_url}/v2/{repo}/manifests/{tag}", data=manifest,
                  headers={"Content-Type": MT_OCI_MANIFEST}, timeout=30)
        assert r.status_code == 201, (r.status_code, r.text)
    finally:
        s.close()
    return {"manifest": manifest, "digest": sha256(manifest), "config": sha256(config),
            "layers": [sha256(l) for l in layers], "blobs": blobs}


def slug(repo):
    """A one-component name from the test's repository name."""
    return repo.replace("/", "-")


# -- answers -----------------------------------------------------------------

def assert_unavailable(r):
    """502/503 with an OCI JSON error body: the spec's code for what was
    asked (MANIFEST_UNKNOWN, BLOB_UNKNOWN: it has none for a gateway) and
    a message naming the upstream as the cause; 503 with Retry-After."""
    assert r.status_code in UNAVAILABLE_STATUSES, \
        f"{r.request.method} {r.url}: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    if r.status_code == 503:
        assert r.headers.get("Retry-After"), dict(r.headers)
    if r.request.method == "HEAD":
        return
    codes = check_error_body(r.status_code, r.headers.get("Content-Type"), r.content,
                             f"{r.request.method} {r.url}")
    want = "MANIFEST_UNKNOWN" if "/manifests/" in r.url else "BLOB_UNKNOWN"
    assert codes == [want], (codes, r.text[:300])
    assert "upstream" in r.json()["errors"][0]["message"], r.text[:300]


def curl(url, out, *opts, method=None):
    """curl to a file: (status, headers dict lowercased)."""
    args = ["curl", "-sS", "-o", str(out), "-D", "-", "-w", "\n%{http_code}", *opts]
    if method == "HEAD":
        args.append("-I")
    p = subprocess.run(args + [url], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.rstrip("\n").splitlines()
    status = int(lines[-1])
    headers = {}
    for l in lines[:-1]:
        if ":" in l:
            k, v = l.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def curl_pull(base, name, img, tmp_path, ref="v1"):
    """curl GETs of the manifest by tag and by digest and of every blob;
    each compared with the upstream's bytes."""
    accept = ["-H", f"Accept: {ALL_MANIFEST_TYPES}"]
    out = tmp_path / f"m-{os.urandom(4).hex()}"
    for r in (ref, img["digest"]):
        status, h = curl(f"{base}/v2/{name}/manifests/{r}", out, *accept)
        assert status == 200, (r, status, out.read_bytes()[:300])
        assert out.read_bytes() == img["manifest"]
        assert h.get("docker-content-digest") == img["digest"]
        assert h.get("content-type") == MT_OCI_MANIFEST
        status, h = curl(f"{base}/v2/{name}/manifests/{r}", out, *accept, method="HEAD")
        assert status == 200 and h.get("docker-content-digest") == img["digest"]
        assert int(h["content-length"]) == len(img["manifest"])
    for d, data in img["blobs"].items():
        status, h = curl(f"{base}/v2/{name}/blobs/{d}", out)
        assert status == 200, (d, status, out.read_bytes()[:300])
        assert file_digest(out) == d and out.stat().st_size == len(data)
        status, h = curl(f"{base}/v2/{name}/blobs/{d}", out, method="HEAD")
        assert status == 200 and int(h["content-length"]) == len(data)


def skopeo_pull(env, hostport, name, ref, img, dest):
    """skopeo copy docker://mirror/name:ref (or @digest) to a dir:, checked
    against the upstream's manifest and blobs."""
    sep = "@" if ref.startswith("sha256:") else ":"
    skopeo(env, "copy", "--src-tls-verify=false", "--src-no-creds",
           f"docker://{hostport}/{name}{sep}{ref}", f"dir:{dest}")
    manifest = (dest / "manifest.json").read_bytes()
    assert sha256(manifest) == img["digest"], manifest[:300]
    for d in img["blobs"]:
        assert file_digest(dest / d.split(":")[1]) == d


def digest_of(reg, name, ref):
    r = reg.get_manifest(name, ref)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert header_ci(r.headers, "Docker-Content-Digest") == sha256(r.content)
    return sha256(r.content)


def manifest_requests(reqs, upstream_name, ref):
    return [q for q in reqs if q.path == f"/v2/{upstream_name}/manifests/{ref}"]


# -- upstreams and mirrors -------------------------------------------------

@pytest.fixture(scope="module")
def bearer_upstream(base_dir, keys, token_server):  # noqa: F811
    """A mod_ocireg (filesystem store) that demands tokens of the token
    server; alice may pull and push tok/*."""
    inst = HttpdInstance("mirror-upstream-tokens", base_dir,
                         location_auth=token_conf(token_server.realm, keys))
    inst.start()
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def flaky(base_dir):
    """An anonymous docker-registry of this module's own, which tests kill
    and stop (and start again before they end)."""
    from upstream import DistributionRegistry
    up = DistributionRegistry(base_dir, "upstream-flaky").start()
    yield up
    up.stop()


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread of the test process: its
    `url`; close() stops it."""

    def serve(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Liar(LoopbackServer):
    """An upstream on loopback that lies: every blob's bytes are random (of
    the size it announces, `size` in the name: /v2/liar/<size>/blobs/...),
    a manifest by digest is another manifest, and a manifest by tag comes
    with a Docker-Content-Digest that is not its digest. Counts requests."""

    def __init__(self):
        self.seen = []
        liar = self

        class Handler(QuietHandler):
            def answer(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                liar.seen.append((self.command, self.path))
                parts = self.path.split("/")
                if self.path == "/v2/":
                    return self.answer(200, b"{}", [("Content-Type", "application/json")])
                if len(parts) == 6 and parts[4] == "blobs":
                    body = os.urandom(int(parts[3]))
                    return self.answer(200, body, [
                        ("Content-Type", "application/octet-stream"),
                        ("Docker-Content-Digest", parts[5])])
                if len(parts) >= 5 and parts[-2] == "manifests":
                    body = json.dumps({
                        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256(b"{}"),
                                   "size": 2},
                        "layers": [], "annotations": {"n": os.urandom(8).hex()}}).encode()
                    ref = parts[-1]
                    claimed = ref if ref.startswith("sha256:") else sha256(os.urandom(8))
                    return self.answer(200, body, [("Content-Type", MT_OCI_MANIFEST),
                                                   ("Docker-Content-Digest", claimed)])
                self.answer(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}',
                            [("Content-Type", "application/json")])

            do_HEAD = do_GET

        self.serve(Handler)


class Switch(LoopbackServer):
    """A front of a real upstream on loopback that passes requests on, or,
    while `fail` is a status (500, 429...), answers every /v2/<name>/...
    request with it."""

    def __init__(self, target):
        self.fail = None
        self.seen = []
        sw = self

        class Handler(QuietHandler):
            def do_GET(self):
                sw.seen.append((self.command, self.path, sw.fail))
                if sw.fail and self.path != "/v2/":
                    body = b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}'
                    self.send_response(sw.fail)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                fwd = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "if-none-match", "range")}
                r = requests.request(self.command, target + self.path, headers=fwd,
                                     timeout=60, allow_redirects=False)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() in ("content-type", "docker-content-digest", "etag",
                                     "content-length", "www-authenticate"):
                        self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(r.content)

            do_HEAD = do_GET

        self.serve(Handler)


@pytest.fixture(scope="module")
def switch(upstream_anon):
    sw = Switch(upstream_anon.url)
    yield sw
    sw.close()


@pytest.fixture(scope="module")
def liar():
    up = Liar()
    yield up
    up.close()


def cred_file(base_dir, name, user, password):
    path = Path(base_dir) / name
    path.write_text(f"# upstream credentials\nusername = {user}\npassword = {password}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def mirror(httpd_factory, base_dir, upstream_anon, upstream_basic, bearer_upstream, flaky,
           liar, switch):
    basic = cred_file(base_dir, "mirror-basic.cred", UPSTREAM_USER, UPSTREAM_PASSWORD)
    wrong = cred_file(base_dir, "mirror-wrong.cred", UPSTREAM_USER, "not-the-password")
    alice = cred_file(base_dir, "mirror-alice.cred", "alice", USERS["alice"])
    rules = "\n".join([
        f"OCIRegMirror anon/* {upstream_anon.url} insecure",
        f"OCIRegMirror basic/* {upstream_basic.url} insecure credentials=file:{basic}",
        # bearer/<x> is tok/<x> upstream, where alice's grants are.
        f"OCIRegMirror bearer/* {bearer_upstream.base_url}/tok insecure "
        f"credentials=file:{alice}",
        f"OCIRegMirror ttl/* {upstream_anon.url} insecure tag-ttl={SHORT_TTL}",
        f"OCIRegMirror both/* {upstream_anon.url} insecure local",
        # Local too, and every fetched tag re-checked at each pull.
        f"OCIRegMirror localttl/* {upstream_anon.url} insecure local tag-ttl=0",
        # Every pull by tag asks the upstream again.
        f"OCIRegMirror flaky/* {flaky.url} insecure tag-ttl=0",
        f"OCIRegMirror badcred/* {upstream_basic.url} insecure credentials=file:{wrong}",
        f"OCIRegMirror liar/* {liar.url} insecure",
        f"OCIRegMirror switch/* {switch.url} insecure tag-ttl=0",
        # Tried in order: nothing listens on the first, the second has
        # not the names, the third has them.
        f"OCIRegMirror multi/* http://127.0.0.1:{free_port()} {flaky.url} "
        f"{upstream_anon.url} insecure",
    ])
    inst = httpd_factory("mirror-serve", location_extra=rules)
    inst.reg = Registry(inst.base_url)
    yield inst
    inst.reg.close()


# -- 1. pull through ---------------------------------------------------------

@needs_skopeo
def test_pull_through_anonymous(mirror, upstream_anon, skopeo_env, repo, tmp_path):  # noqa: F811
    img = push_image_to(upstream_anon.url, repo, "v1")
    mark = upstream_anon.mark()
    curl_pull(mirror.base_url, f"anon/{repo}", img, tmp_path)
    skopeo_pull(skopeo_env, mirror.hostport, f"anon/{repo}", "v1", img, tmp_path / "pulled")
    upstream_anon.sync()
    seen = upstream_anon.requests_since(mark)
    # The mirror asked for the upstream's name (prefix removed), and for
    # nothing else.
    assert seen, "the upstream saw no request"
    assert all(q.path == "/v2/" or q.path.startswith(f"/v2/{repo}/") for q in seen), seen
    assert any(q.method == "GET" and q.status == 200 for q in
               manifest_requests(seen, repo, "v1")), seen
    # Every blob crossed once at most (a second GET is a cache hit).
    for d in img["blobs"]:
        gets = [q for q in seen if q.method == "GET" and q.path == f"/v2/{repo}/blobs/{d}"]
        assert len(gets) == 1, (d, seen)


@needs_skopeo
def test_second_pull_is_a_cache_hit(mirror, upstream_anon, skopeo_env, repo, tmp_path):  # noqa: F811
    img = push_image_to(upstream_anon.url, repo, "v1")
    name = f"anon/{repo}"
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "first")
    mark = upstream_anon.mark()
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "by-tag")
    skopeo_pull(skopeo_env, mirror.hostport, name, img["digest"], img, tmp_path / "by-digest")
    curl_pull(mirror.base_url, name, img, tmp_path)
    r = mirror.reg.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200 and r.json()["tags"] == ["v1"], r.text
    r = mirror.reg.get("/v2/_catalog?n=100000")
    assert r.status_code == 200 and name in r.json()["repositories"], r.text[:300]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []


@needs_skopeo
def test_pull_through_basic_auth_upstream(mirror, upstream_basic, skopeo_env, repo,  # noqa: F811
                                          tmp_path):
    img = push_image_to(upstream_basic.url, repo, "v1", auth=upstream_basic.auth)
    name = f"basic/{repo}"
    # Anonymous to the upstream: refused there.
    assert requests.get(f"{upstream_basic.url}/v2/{repo}/manifests/v1",
                        timeout=10).status_code == 401
    mark = upstream_basic.mark()
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "pulled")
    curl_pull(mirror.base_url, name, img, tmp_path)
    upstream_basic.sync()
    seen = upstream_basic.requests_since(mark)
    assert [q for q in manifest_requests(seen, repo, "v1") if q.status == 200], seen
    mark = upstream_basic.mark()
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "again")
    upstream_basic.sync()
    assert upstream_basic.requests_since(mark) == []


def bearer_access_lines(inst):
    return [l for l in inst.access_log_lines() if "ocireg-sync=" not in l]


def bearer_sync(inst):
    """Returns once an access line of a request made now is logged."""
    token = os.urandom(8).hex()
    requests.get(f"{inst.base_url}/v2/?ocireg-sync={token}", timeout=10)
    got = inst.wait_access_log(lambda l: token in l, 1)
    assert got, f"the access line of the sync request {token} never appeared"


@needs_skopeo
def test_pull_through_bearer_upstream(mirror, bearer_upstream, token_server, keys,  # noqa: F811
                                      skopeo_env, repo, tmp_path):
    upstream_name = f"tok/{slug(repo)}"
    push = Bearer(es256(keys, claims([(upstream_name, ["pull", "push"])])))
    img = push_image_to(bearer_upstream.base_url, upstream_name, "v1", auth=push)
    name = f"bearer/{slug(repo)}"
    tokens_before = len(token_server.requests())
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "pulled")
    curl_pull(mirror.base_url, name, img, tmp_path)
    fetched = token_server.requests()[tokens_before:]
    assert fetched, "the mirror fetched no token"
    assert all(t["user"] == "alice" for t in fetched), fetched
    assert any(f"repository:{upstream_name}:pull" in json.dumps(t) for t in fetched), fetched
    bearer_sync(bearer_upstream)
    # "%P %>s \"%r\"" lines: the mirror's requests for the upstream name.
    served = [l for l in bearer_access_lines(bearer_upstream)
              if f"/v2/{upstream_name}/" in l and l.split()[1] == "200"]
    assert served, bearer_access_lines(bearer_upstream)[-20:]
    # Again: neither the upstream nor the token server hears of it.
    before = len(bearer_access_lines(bearer_upstream))
    tokens_before = len(token_server.requests())
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "again")
    skopeo_pull(skopeo_env, mirror.hostport, name, img["digest"], img, tmp_path / "again-d")
    bearer_sync(bearer_upstream)
    assert bearer_access_lines(bearer_upstream)[before:] == []
    assert token_server.requests()[tokens_before:] == []


def test_blob_redirect_to_storage_without_credentials(httpd_factory, base_dir, upstream_anon):
    """An upstream that wants Basic auth and redirects blob GETs (a
    relative hop on itself, then storage on another port, as to a CDN or
    a bucket): the blob pulls through and is stored; the credentials went
    to the upstream's own origin only."""
    from test_upstream_client import DIST_PASSWORD, DIST_USER, Front
    front = Front(upstream_anon.url)
    try:
        cred = cred_file(base_dir, "mirror-front.cred", DIST_USER, DIST_PASSWORD)
        inst = httpd_factory(f"mirror-redirect-{os.urandom(3).hex()}",
                             location_extra=f"OCIRegMirror redir/* {front.base_url} "
                                            f"insecure credentials=file:{cred}")
        data = os.urandom(300000)
        # Front's storage reads lib/redirected of the upstream behind it.
        d = upstream_anon.push_blob("lib/redirected", data)
        reg = Registry(inst.base_url)
        try:
            r = reg.get(f"/v2/redir/lib/redirected/blobs/{d}")
            assert r.status_code == 200 and r.content == data, (r.status_code, r.text[:300])
            api = [a for port, _, a in front.seen if port == front.api_port]
            storage = [(p, a) for port, p, a in front.seen if port == front.storage_port]
            assert api and api[-1] == front.auth, front.seen
            assert storage == [(f"/storage/{d}", None)], front.seen
            # Stored: the next pull does not reach the upstream.
            seen = len(front.seen)
            r = reg.get(f"/v2/redir/lib/redirected/blobs/{d}")
            assert r.status_code == 200 and r.content == data
            assert front.seen[seen:] == []
        finally:
            reg.close()
    finally:
        front.close()


# -- misses and what the upstream says ---------------------------------------

def test_blob_head_miss_asks_upstream_stores_nothing(mirror, upstream_anon, repo):
    img = push_image_to(upstream_anon.url, repo, "v1")
    reg = mirror.reg
    d = img["layers"][1]
    path = f"/v2/anon/{repo}/blobs/{d}"
    mark = upstream_anon.mark()
    r = reg.head(path)
    assert r.status_code == 200, r.status_code
    assert int(r.headers["Content-Length"]) == len(img["blobs"][d])
    upstream_anon.sync()
    seen = [q for q in upstream_anon.requests_since(mark) if "/blobs/" in q.path]
    assert seen == [("HEAD", f"/v2/{repo}/blobs/{d}", 200)], seen
    # Nothing stored: the GET fetches it.
    mark = upstream_anon.mark()
    r = reg.get(path)
    assert r.status_code == 200 and sha256(r.content) == d
    upstream_anon.sync()
    assert [q for q in upstream_anon.requests_since(mark) if q.method == "GET"
            and q.path == f"/v2/{repo}/blobs/{d}"], upstream_anon.requests_since(mark)


def test_blob_cached_under_another_name(mirror, upstream_anon, repo):
    """Bytes the store has under another name become readable here without
    a download, once an upstream HEAD confirmed this name has them (even
    under the same rule: the upstream may let the mirror read a repository
    that a client here may not); a local repository's blob never leaks into
    a mirrored name on its digest alone."""
    img = push_image_to(upstream_anon.url, repo, "v1")
    push_image_to(upstream_anon.url, repo + "-other", "v1",
                  image=(img["blobs"][img["config"]],
                         [img["blobs"][d] for d in img["layers"]]))
    reg = mirror.reg
    d = img["layers"][1]
    size = len(img["blobs"][d])
    r = reg.get(f"/v2/anon/{repo}/blobs/{d}")
    assert r.status_code == 200 and sha256(r.content) == d
    # The same rule, another name: one HEAD upstream, then linked.
    mark = upstream_anon.mark()
    for method in ("HEAD", "GET"):
        r = reg.request(method, f"/v2/anon/{repo}-other/blobs/{d}")
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == size
    assert sha256(r.content) == d
    upstream_anon.sync()
    seen = upstream_anon.requests_since(mark)
    assert [q.method for q in seen] == ["HEAD"], seen
    # Another rule on the same upstream: a HEAD there, no download.
    mark = upstream_anon.mark()
    r = reg.get(f"/v2/ttl/{repo}/blobs/{d}")
    assert r.status_code == 200 and sha256(r.content) == d
    upstream_anon.sync()
    seen = upstream_anon.requests_since(mark)
    assert seen and all(q.method == "HEAD" for q in seen), seen
    # A blob pushed to a local name: the upstream has no such blob.
    private = os.urandom(3000)
    pd = reg.push_blob(f"{repo}-private", private)
    assert_error(reg.get(f"/v2/anon/{repo}/blobs/{pd}"), 404, "BLOB_UNKNOWN")
    assert reg.head(f"/v2/anon/{repo}/blobs/{pd}").status_code == 404


def test_manifest_head_miss_fetches_and_stores(mirror, upstream_anon, repo):
    """Clients HEAD a tag, then GET by digest: the HEAD fetched it."""
    img = push_image_to(upstream_anon.url, repo, "v1")
    reg = mirror.reg
    r = reg.get_manifest(f"anon/{repo}", "v1", method="HEAD")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img["digest"]
    assert int(r.headers["Content-Length"]) == len(img["manifest"])
    mark = upstream_anon.mark()
    r = reg.get_manifest(f"anon/{repo}", img["digest"])
    assert r.status_code == 200 and r.content == img["manifest"]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []


def test_upstreams_tried_in_order(mirror, upstream_anon, flaky, repo, tmp_path):
    img = push_image_to(upstream_anon.url, repo, "v1")
    mark = flaky.mark()
    curl_pull(mirror.base_url, f"multi/{repo}", img, tmp_path)
    flaky.sync()
    # The second upstream was asked and had nothing.
    assert [q for q in flaky.requests_since(mark) if q.status == 404], \
        flaky.requests_since(mark)
    # Nobody has it, but one upstream could not say: not a 404.
    assert_unavailable(mirror.reg.get(f"/v2/multi/{repo}/manifests/nope", check=False))


def test_client_gone_fill_goes_on(mirror, upstream_anon, repo):
    """A client that leaves mid-blob does not stop the fetch: the blob is
    finished into the store for the next pull."""
    data = os.urandom(24 * MiB)
    digest = upstream_anon.push_blob(repo, data)
    path = f"/v2/anon/{repo}/blobs/{digest}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", mirror.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {mirror.hostport}\r\n\r\n".encode())
    status, headers, rest = read_head(sock)
    assert status == 200, (status, rest[:300])
    body = bytearray(rest)
    assert recv_until_closed(sock, body, stop_at=MiB) == "enough"
    sock.close()

    def stored():
        mark = upstream_anon.mark()
        r = mirror.reg.head(path)
        assert r.status_code == 200
        upstream_anon.sync()
        return upstream_anon.requests_since(mark) == []
    wait_for(stored, timeout=60, what="the blob to be finished into the store")
    mark = upstream_anon.mark()
    r = mirror.reg.get(path)
    assert r.status_code == 200 and sha256(r.content) == digest
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []


def put_upstream_manifest(base_url, repo, ref, body, media_type, auth=None):
    r = requests.put(f"{base_url}/v2/{repo}/manifests/{ref}", data=body, auth=auth,
                     headers={"Content-Type": media_type}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    return sha256(body)


def test_index_and_referrers_pull_through(mirror, upstream_anon, repo):
    """An index by tag, its images by digest (fetched when asked for), and
    an artifact pointing at one of them: the mirror's referrers list it
    once it has passed through."""
    amd = push_image_to(upstream_anon.url, repo, "amd64")
    arm = push_image_to(upstream_anon.url, repo, "arm64")
    index = oci_index([
        platform_descriptor({"mediaType": MT_OCI_MANIFEST, "digest": amd["digest"],
                             "size": len(amd["manifest"])}, "amd64"),
        platform_descriptor({"mediaType": MT_OCI_MANIFEST, "digest": arm["digest"],
                             "size": len(arm["manifest"])}, "arm64")])
    index_digest = put_upstream_manifest(upstream_anon.url, repo, "multi", index,
                                         MT_OCI_INDEX)
    # distribution takes the empty config as a blob like any other.
    upstream_anon.push_blob(repo, EMPTY_JSON)
    sig = artifact_manifest("application/vnd.example.signature", {
        "mediaType": MT_OCI_MANIFEST, "digest": arm["digest"],
        "size": len(arm["manifest"])})
    sig_digest = put_upstream_manifest(upstream_anon.url, repo, "sig", sig, MT_OCI_MANIFEST)
    reg = mirror.reg
    name = f"anon/{repo}"
    r = reg.get_manifest(name, "multi")
    assert r.status_code == 200 and r.content == index
    assert r.headers["Content-Type"] == MT_OCI_INDEX
    assert r.headers["Docker-Content-Digest"] == index_digest
    for img in (amd, arm):
        r = reg.get_manifest(name, img["digest"])
        assert r.status_code == 200 and r.content == img["manifest"]
        for d in img["layers"]:
            r = reg.get(f"/v2/{name}/blobs/{d}")
            assert r.status_code == 200 and sha256(r.content) == d
    r = reg.get_manifest(name, sig_digest)
    assert r.status_code == 200 and r.content == sig
    r = reg.get(f"/v2/{name}/referrers/{arm['digest']}")
    assert r.status_code == 200, r.text
    assert [m["digest"] for m in r.json()["manifests"]] == [sig_digest], r.text
    r = reg.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200 and sorted(r.json()["tags"]) == ["multi"], r.text


def test_upstream_not_found_is_not_found(mirror, upstream_anon, repo):
    img = push_image_to(upstream_anon.url, repo, "v1")
    reg = mirror.reg
    name = f"anon/{repo}"
    assert_error(reg.get(f"/v2/{name}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    assert reg.head(f"/v2/{name}/manifests/nope").status_code == 404
    assert_error(reg.get(f"/v2/{name}/manifests/{sha256(b'none')}"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.get(f"/v2/{name}/blobs/{sha256(b'none')}"), 404, "BLOB_UNKNOWN")
    assert reg.head(f"/v2/{name}/blobs/{sha256(b'none')}").status_code == 404
    # A name the upstream does not have at all.
    assert_error(reg.get(f"/v2/{name}-none/manifests/v1"), 404, "MANIFEST_UNKNOWN",
                 "NAME_UNKNOWN")
    # Still there afterwards.
    assert digest_of(reg, name, "v1") == img["digest"]


def test_refused_credentials_are_502(mirror, upstream_basic, repo):
    push_image_to(upstream_basic.url, repo, "v1", auth=upstream_basic.auth)
    reg = mirror.reg
    assert_unavailable(reg.get(f"/v2/badcred/{repo}/manifests/v1", check=False))
    r = reg.get(f"/v2/badcred/{repo}/manifests/v1", check=False)
    assert r.status_code == 502, r.status_code


def read_all(port, hostport, path):
    """A raw GET read to the end: (status, headers, body bytes as sent
    (content, or decoded chunks), complete); status None when the
    connection closed before a whole head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\n"
                 "Connection: close\r\n\r\n".encode())
    try:
        status, headers, rest = read_head(sock)
    except (AssertionError, ConnectionResetError):
        sock.close()
        return None, {}, b"", False
    body = bytearray(rest)
    ended = recv_until_closed(sock, body)
    sock.close()
    assert ended in ("eof", "reset"), ended
    if headers.get("transfer-encoding", "").lower() == "chunked":
        data, complete = dechunk(bytes(body))
    else:
        data = bytes(body)
        complete = len(data) == int(headers.get("content-length", -1))
    return status, headers, data, complete


@pytest.mark.allow_errors(r"OCIREG00556")
def test_wrong_bytes_upstream_never_served_whole(mirror, liar, capsys):
    reg = mirror.reg
    outcomes = []
    for size in (100, 300000, 4 * MiB):
        d = sha256(os.urandom(16))
        path = f"/v2/liar/x/{size}/blobs/{d}"
        for attempt in range(2):
            status, headers, data, complete = read_all(mirror.port, mirror.hostport, path)
            outcomes.append(f"{size} B: {status or 'cut before the head'}"
                            + (f", {len(data)} B" if status == 200 else ""))
            if size <= 65536:
                # All of it held back: nothing went out, so a status.
                assert status in UNAVAILABLE_STATUSES, (size, status, data[:300])
                assert check_error_body(status, headers.get("content-type"), data) == [
                    "BLOB_UNKNOWN"], data[:300]
            elif status is None:
                pass    # cut before the head: an error to the client
            elif status == 200:
                assert not complete, (size, attempt, "a whole body under a wrong digest")
            else:
                assert status in UNAVAILABLE_STATUSES, (size, status, data[:300])
        # Nothing stored: each attempt asked the upstream again.
        gets = [q for q in liar.seen if q == ("GET", f"/v2/x/{size}/blobs/{d}")]
        assert len(gets) == 2, liar.seen
    with capsys.disabled():
        print(f"\n[{mirror.name}] blobs with wrong bytes upstream: " + "; ".join(outcomes))
    # Manifests: by digest, the bytes are not that digest; by tag, the
    # upstream's Docker-Content-Digest is not the bytes' digest.
    d = sha256(os.urandom(16))
    assert_unavailable(reg.get(f"/v2/liar/app/manifests/{d}", check=False))
    assert reg.get(f"/v2/liar/app/manifests/{d}", check=False).status_code == 502
    assert_unavailable(reg.get("/v2/liar/app/manifests/v1", check=False))


# -- 3. tags and their TTL ---------------------------------------------------

def test_tag_picked_up_after_ttl_not_before(mirror, upstream_anon, repo):
    reg = mirror.reg
    name = f"ttl/{repo}"
    a = push_image_to(upstream_anon.url, repo, "v1")
    # B's blobs are upstream before A is pulled, so that only a manifest
    # PUT lies between the pull of A and the pull that must still give A.
    b_image = make_image()
    b_blobs = push_image_to(upstream_anon.url, repo, "b-staging", image=b_image)
    assert digest_of(reg, name, "v1") == a["digest"]
    r = requests.put(f"{upstream_anon.url}/v2/{repo}/manifests/v1", data=b_blobs["manifest"],
                     headers={"Content-Type": MT_OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    mark = upstream_anon.mark()
    assert digest_of(reg, name, "v1") == a["digest"]
    assert reg.get_manifest(name, "v1", method="HEAD").headers[
        "Docker-Content-Digest"] == a["digest"]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []
    # After the TTL: B, as the upstream has it.
    wait_for(lambda: digest_of(reg, name, "v1") == b_blobs["digest"],
             timeout=SHORT_TTL + 30, what="the mirror to serve the moved tag")
    r = reg.get_manifest(name, "v1")
    assert r.content == b_blobs["manifest"]
    upstream_anon.sync()
    seen = manifest_requests(upstream_anon.requests_since(mark), repo, "v1")
    assert [q for q in seen if q.method == "GET" and q.status == 200], seen
    # A stays pullable by digest (cached, never re-checked).
    mark = upstream_anon.mark()
    r = reg.get_manifest(name, a["digest"])
    assert r.status_code == 200 and r.content == a["manifest"]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []

    # Unchanged upstream: once stale again, the re-check is conditional
    # (304 to a GET with If-None-Match, or a HEAD) and B is still served.
    def rechecked():
        assert digest_of(reg, name, "v1") == b_blobs["digest"]
        upstream_anon.sync()
        return manifest_requests(upstream_anon.requests_since(mark), repo, "v1")
    seen = wait_for(rechecked, timeout=SHORT_TTL + 30, what="a re-check of the tag upstream")
    for q in seen:
        assert (q.method, q.status) in (("GET", 304), ("HEAD", 200)), seen


# -- 4. the upstream killed mid-blob -----------------------------------------

def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed in the head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def connections_to(port):
    """Established TCP connections to 127.0.0.1:port (server side)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(":%04X" % port) and f[3] == "01":
            n += 1
    return n


def recv_until_closed(sock, got, stop_at=None):
    """Appends what arrives to got until EOF, a reset or (with stop_at)
    that many bytes; returns how it ended."""
    while stop_at is None or len(got) < stop_at:
        try:
            chunk = sock.recv(65536 if stop_at is None else 16384)
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "timeout"
        if not chunk:
            return "eof"
        got += chunk
    return "enough"


def dechunk(body):
    """(data, complete) of a chunked body read so far."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out), True
        start = eol + 2
        out += body[start:start + size]
        if len(body) < start + size + 2:
            return bytes(out), False
        pos = start + size + 2


def test_upstream_killed_mid_blob(mirror, flaky, repo, backend, request, capsys):
    big = os.urandom(64 * MiB)
    digest = flaky.push_blob(repo, big)
    name = f"flaky/{repo}"
    path = f"/v2/{name}/blobs/{digest}"
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small window: the mirror can run ahead of this reader by no
        # more than the buffers in between, far less than 64 MiB.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", mirror.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {mirror.hostport}\r\n"
                     "Connection: close\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        assert status == 200, (status, headers, rest[:300])
        body = bytearray(rest)
        assert recv_until_closed(sock, body, stop_at=MiB) == "enough"
        # Two more clients of the blob, waiting for this fill (or
        # fetching on their own once it failed).
        connected = connections_to(mirror.port)
        others = [subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
             "--max-time", "120", mirror.base_url + path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        wait_for(lambda: connections_to(mirror.port) >= connected + 2, timeout=30,
                 what="the other clients to connect")
        flaky.kill()
        ended = recv_until_closed(sock, body)
        sock.close()
        outcomes = []
        for p in others:
            out, err = p.communicate(timeout=180)
            code, got = out.split()
            outcomes.append(f"{code} with {got} B")
            # An error status, or a body cut short: never all of it.
            assert code in ("502", "503") or int(got) < len(big), (code, got, p.returncode)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data, complete = dechunk(bytes(body))
            assert not complete, "a complete chunked body after the upstream died"
        else:
            data = bytes(body)
            assert int(headers["content-length"]) == len(big)
        with capsys.disabled():
            print(f"\n[{mirror.name}] upstream killed mid-blob: the client got "
                  f"{len(data)} of {len(big)} bytes, then {ended}; two more clients: "
                  + ", ".join(outcomes))
        # Cut short, never wrong bytes, and cut: not left hanging.
        assert ended in ("eof", "reset"), (ended, len(data))
        assert len(data) < len(big), (ended, len(data))
        assert big.startswith(data), "the client got bytes the blob does not have"
        # Nothing cached: with the upstream down the mirror cannot answer.
        reg = mirror.reg
        h = reg.head(path, check=False)
        assert h.status_code != 200, dict(h.headers)
        assert_unavailable(h)
        assert_unavailable(reg.get(path, check=False))
        if backend == "s3":
            rgw = request.getfixturevalue("rgw")
            prefix = mirror.storage["prefix"]
            wait_for(lambda: rgw.multipart_uploads(prefix) == [], timeout=30,
                     what="the aborted fill's multipart upload to go")
    finally:
        if not flaky.running:
            flaky.start()
    # Back: the next pull succeeds, and is the blob.
    h = hashlib.sha256()
    with requests.get(mirror.base_url + path, stream=True, timeout=120) as r:
        assert r.status_code == 200
        n = 0
        for chunk in r.iter_content(MiB):
            h.update(chunk)
            n += len(chunk)
    assert "sha256:" + h.hexdigest() == digest and n == len(big)
    # Now it is cached.
    mark = flaky.mark()
    assert mirror.reg.head(path).status_code == 200
    flaky.sync()
    assert flaky.requests_since(mark) == []


# -- 5. the upstream stopped altogether --------------------------------------

@needs_skopeo
def test_upstream_down_cached_images_still_pull(mirror, flaky, skopeo_env, repo,  # noqa: F811
                                                tmp_path):
    img = push_image_to(flaky.url, repo, "v1")
    other = push_image_to(flaky.url, repo + "-never", "v1")
    name = f"flaky/{repo}"
    skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "first")
    # tag-ttl=0: every pull by tag asks again, conditionally, and the
    # unchanged tag gets a 304.
    mark = flaky.mark()
    assert digest_of(mirror.reg, name, "v1") == img["digest"]
    flaky.sync()
    seen = manifest_requests(flaky.requests_since(mark), repo, "v1")
    assert seen, "a stale tag was served without asking the upstream"
    for q in seen:
        assert (q.method, q.status) in (("GET", 304), ("HEAD", 200)), seen
    offset = mirror.error_log_size()
    flaky.stop()
    try:
        skopeo_pull(skopeo_env, mirror.hostport, name, "v1", img, tmp_path / "by-tag")
        skopeo_pull(skopeo_env, mirror.hostport, name, img["digest"], img,
                    tmp_path / "by-digest")
        curl_pull(mirror.base_url, name, img, tmp_path)
        wait_for(lambda: any("OCIREG00552" in l and ":warn]" in l
                             for l in mirror.error_log_since(offset)),
                 timeout=10, what="the warning OCIREG00552 in the error log")
        # Never cached: 503 (or 502) with an OCI JSON body.
        reg = mirror.reg
        assert_unavailable(reg.get(f"/v2/{name}/manifests/nope", check=False))
        assert_unavailable(reg.get(f"/v2/{name}-never/manifests/v1", check=False))
        assert_unavailable(reg.head(f"/v2/{name}-never/manifests/v1", check=False))
        assert_unavailable(reg.get(f"/v2/{name}-never/manifests/{other['digest']}",
                                   check=False))
        assert_unavailable(reg.get(f"/v2/{name}-never/blobs/{other['config']}",
                                   check=False))
    finally:
        flaky.start()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_upstream_failing_serves_the_cache(mirror, upstream_anon, switch, repo, tmp_path,
                                           status):
    """An upstream that answers 5xx or 429 is failing, not saying "gone":
    the cached tag is served with the warning; what is not cached is 503."""
    img = push_image_to(upstream_anon.url, repo, "v1")
    name = f"switch/{repo}"
    curl_pull(mirror.base_url, name, img, tmp_path)
    offset = mirror.error_log_size()
    switch.fail = status
    try:
        before = len(switch.seen)
        curl_pull(mirror.base_url, name, img, tmp_path)
        # tag-ttl=0: the tag was asked for, and the failure seen.
        assert [q for q in switch.seen[before:] if "/manifests/v1" in q[1]], switch.seen
        wait_for(lambda: any("OCIREG00552" in l and ":warn]" in l
                             for l in mirror.error_log_since(offset)),
                 timeout=10, what="the warning OCIREG00552")
        reg = mirror.reg
        r = reg.get(f"/v2/{name}/manifests/nope", check=False)
        assert_unavailable(r)
        assert r.status_code == 503, r.status_code
        assert_unavailable(reg.get(f"/v2/{name}/blobs/{sha256(b'nope')}", check=False))
    finally:
        switch.fail = None


# -- 6. ten concurrent pulls of one 200 MB blob ------------------------------

BIG_SIZE = 200 * 1000 * 1000


@pytest.fixture(scope="module")
def big_blob(upstream_anon):
    """200 MB of random bytes pushed to the anonymous upstream once (POST,
    a streamed PATCH, PUT with the digest), never whole in memory here."""
    repo = f"big/blob-{os.urandom(4).hex()}"
    h = hashlib.sha256()

    def chunks():
        left = BIG_SIZE
        while left:
            c = os.urandom(min(4 * MiB, left))
            h.update(c)
            left -= len(c)
            yield c
    s = requests.Session()
    base = upstream_anon.url
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    loc = base + loc if loc.startswith("/") else loc
    r = s.patch(loc, data=chunks(), headers={"Content-Type": "application/octet-stream"},
                timeout=300)
    assert r.status_code == 202, (r.status_code, r.text)
    loc = r.headers["Location"]
    loc = base + loc if loc.startswith("/") else loc
    d = "sha256:" + h.hexdigest()
    r = s.put(loc + ("&" if "?" in loc else "?") + f"digest={d}", timeout=120)
    assert r.status_code == 201, (r.status_code, r.text)
    s.close()
    return repo, d


@pytest.fixture
def big_mirror(httpd_factory, upstream_anon):
    """Its own instance: its children's high-water marks are this test's.
    Under ASan, freed memory waits in a quarantine (256 MiB by default)
    that would hide a whole blob buffered; a small one keeps the figure
    meaningful."""
    saved = os.environ.get("ASAN_OPTIONS")
    if sanitizer_runtimes():
        os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [saved, "quarantine_size_mb=8"]))
    try:
        # Room for all ten at once in the children started, and none of
        # them reaped as idle afterwards: the ones measured are the ones
        # that served.
        inst = httpd_factory(f"mirror-big-{os.urandom(3).hex()}",
                             location_extra=f"OCIRegMirror big/* {upstream_anon.url} insecure",
                             global_extra="StartServers 3\nMaxSpareThreads 64")
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved
    return inst


def child_hwm(inst):
    out = {}
    for p in children_of(inst.proc.pid):
        try:
            out[p] = vm_kib(p, "VmHWM")
        except (OSError, KeyError):
            pass
    return out


def test_ten_concurrent_pulls_of_a_big_blob(big_mirror, upstream_anon, big_blob, capsys):
    inst = big_mirror
    repo, digest = big_blob
    url = f"{inst.base_url}/v2/big/{repo}/blobs/{digest}"
    before = child_hwm(inst)
    assert before, "no children"
    mark = upstream_anon.mark()
    procs = [subprocess.Popen(["bash", "-o", "pipefail", "-c",
                               f"curl -sfS --max-time 600 '{url}' | sha256sum"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(10)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        results.append((p.returncode, out.split()[0] if out else "", err))
    after = child_hwm(inst)
    assert set(before) <= set(after), (before, after)
    upstream_anon.sync()
    for rc, hexd, err in results:
        assert rc == 0 and "sha256:" + hexd == digest, (rc, hexd, err)
    seen = upstream_anon.requests_since(mark)
    gets = [q for q in seen if q.method == "GET" and q.path.endswith(f"/blobs/{digest}")]
    assert len(gets) == 1, seen
    assert all(q.method in ("GET", "HEAD") for q in seen), seen
    # A child that appeared meanwhile started as small as the smallest
    # of those there before.
    base = min(before.values())
    growth = {p: (kib - before.get(p, base)) / 1024 for p, kib in after.items()}
    worst = max(growth.values())
    with capsys.disabled():
        print(f"\n[{inst.name}] 10 concurrent pulls of a {BIG_SIZE // 1000000} MB blob: "
              f"child VmHWM growth max {worst:.1f} MiB "
              f"({', '.join(f'{g:.1f}' for g in sorted(growth.values()))})")
    limit = 64 * (2 if sanitizer_runtimes() else 1)
    assert worst < limit, growth
    # Cached: an eleventh pull does not reach the upstream.
    mark = upstream_anon.mark()
    r = requests.head(url, timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == BIG_SIZE
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []


def test_paused_client_does_not_hold_back_others(mirror, upstream_anon, repo):
    """The issue: concurrent misses "wait and stream from the copy being
    written, or stream from upstream without storing". A first client that
    stops reading (it is still connected) must not make a second client of
    the same blob wait until httpd's Timeout drops the first; once the
    second has the blob, the first reads on and gets all of it too."""
    big = os.urandom(64 * MiB)
    digest = upstream_anon.push_blob(repo, big)
    path = f"/v2/anon/{repo}/blobs/{digest}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.settimeout(120)
    sock.connect(("127.0.0.1", mirror.port))
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {mirror.hostport}\r\n"
                     "Connection: close\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        assert status == 200, (status, rest[:300])
        body = bytearray(rest)
        assert recv_until_closed(sock, body, stop_at=MiB) == "enough"
        # The first client pauses; a second one asks for the same blob.
        h = hashlib.sha256()
        with requests.get(mirror.base_url + path, stream=True, timeout=300) as r:
            assert r.status_code == 200, r.text[:300]
            for chunk in r.iter_content(MiB):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == digest
        first = hashlib.sha256(body)
        got = len(body)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            first.update(chunk)
            got += len(chunk)
    finally:
        sock.close()
    size = len(big)
    del big
    assert got == size, f"the paused client got {got} of {size} bytes"
    assert "sha256:" + first.hexdigest() == digest


# -- two hosts on one store --------------------------------------------------

@pytest.fixture
def mirror_pair(backend, base_dir, upstream_anon, request):
    """Two httpd instances with their own shared memory (two hosts) on
    one store, both mirroring the anonymous upstream under pair/*."""
    from test_durable import _pair
    yield from _pair(backend, base_dir, request,
                     extra=f"OCIRegMirror pair/* {upstream_anon.url} insecure")


def test_fill_claimed_by_another_host(mirror_pair, upstream_anon, repo, backend, request,
                                      capsys):
    """While host a fills the store with a blob (its client reading
    slowly), host b's client gets the blob streamed from upstream without
    storing; then a finishes, the blob is stored once, and both serve it."""
    a, b = mirror_pair
    big = os.urandom(64 * MiB)
    digest = upstream_anon.push_blob(repo, big)
    path = f"/v2/pair/{repo}/blobs/{digest}"
    mark = upstream_anon.mark()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", a.port))
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {a.hostport}\r\n"
                     "Connection: close\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        assert status == 200, (status, headers, rest[:300])
        first = hashlib.sha256()
        body = bytearray(rest)
        assert recv_until_closed(sock, body, stop_at=MiB) == "enough"
        first.update(body)
        got = len(body)
        offset_b = b.error_log_size()
        # b, meanwhile: the whole blob, right.
        h = hashlib.sha256()
        with requests.get(b.base_url + path, stream=True, timeout=300) as r:
            assert r.status_code == 200, r.text[:300]
            for chunk in r.iter_content(MiB):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == digest
        assert any("OCIREG00563" in l for l in b.error_log_since(offset_b)), \
            b.error_log_since(offset_b)
        # a's client reads on to the end.
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            first.update(chunk)
            got += len(chunk)
    finally:
        sock.close()
    assert got == len(big) and "sha256:" + first.hexdigest() == digest
    upstream_anon.sync()
    gets = [q for q in upstream_anon.requests_since(mark)
            if q.method == "GET" and q.path.endswith(f"/blobs/{digest}")]
    assert len(gets) == 2, upstream_anon.requests_since(mark)
    # Stored by a: both hosts serve it without the upstream.
    mark = upstream_anon.mark()
    for inst in (a, b):
        r = requests.head(inst.base_url + path, timeout=30)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(big)
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []
    if backend == "s3":
        rgw = request.getfixturevalue("rgw")
        wait_for(lambda: rgw.multipart_uploads(a.storage["prefix"]) == [], timeout=30,
                 what="no multipart upload left")


# -- 7. pushes ---------------------------------------------------------------

def test_push_into_mirrored_name_refused_local_rule_takes_it(mirror, upstream_anon, repo):
    reg = mirror.reg
    mark = upstream_anon.mark()
    data = b"not for a mirror"
    d = sha256(data)
    for r in (reg.post(f"/v2/anon/{repo}/blobs/uploads/?digest={d}", data=data),
              reg.post(f"/v2/anon/{repo}/blobs/uploads/", data=b""),
              reg.put(f"/v2/anon/{repo}/manifests/v1", data=b"{}",
                      headers={"Content-Type": MT_OCI_MANIFEST})):
        assert_error(r, 405, "UNSUPPORTED")
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []
    # `local`: pushed here, served from here.
    img = reg.push_image(f"both/{repo}", tag="v1", nlayers=2)
    r = reg.get_manifest(f"both/{repo}", "v1")
    assert r.status_code == 200 and r.content == img["manifest"], (r.status_code, r.text)
    for layer in img["layers"]:
        r = reg.get(f"/v2/both/{repo}/blobs/{layer['digest']}")
        assert r.status_code == 200 and sha256(r.content) == layer["digest"]
    # And a name of the same rule that only the upstream has pulls through.
    up = push_image_to(upstream_anon.url, repo + "-up", "v1")
    assert digest_of(reg, f"both/{repo}-up", "v1") == up["digest"]


def test_local_push_of_a_tag_is_not_rechecked(mirror, upstream_anon, repo):
    """Under a `local` rule a tag pushed here is this registry's: served as
    pushed, never replaced by the upstream's, never asked for upstream
    (tag-ttl=0 re-checks a fetched tag at every pull), also when the tag
    had been fetched before the push."""
    reg = mirror.reg
    name = f"localttl/{repo}"
    up1 = push_image_to(upstream_anon.url, repo, "v1")
    up2 = push_image_to(upstream_anon.url, repo, "v2")
    local1 = reg.push_image(name, tag="v1")
    assert local1["digest"] != up1["digest"]
    mark = upstream_anon.mark()
    assert digest_of(reg, name, "v1") == local1["digest"]
    assert digest_of(reg, name, "v1") == local1["digest"]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []
    # Fetched: asked again at each pull.
    assert digest_of(reg, name, "v2") == up2["digest"]
    mark = upstream_anon.mark()
    assert digest_of(reg, name, "v2") == up2["digest"]
    upstream_anon.sync()
    assert manifest_requests(upstream_anon.requests_since(mark), repo, "v2")
    # Pushed over: ours from now on.
    local2 = reg.push_image(name, tag="v2")
    mark = upstream_anon.mark()
    assert digest_of(reg, name, "v2") == local2["digest"]
    assert digest_of(reg, name, "v2") == local2["digest"]
    upstream_anon.sync()
    assert upstream_anon.requests_since(mark) == []


# -- 8. access rules ---------------------------------------------------------

@pytest.fixture(scope="module")
def acl_mirror(httpd_factory, base_dir, upstream_anon):
    pw = htpasswd_file(Path(base_dir) / "mirror-acl-htpasswd", "alice", "alice-pw")
    auth = "\n".join(["AuthType Basic", 'AuthName "mirror"', f'AuthUserFile "{pw}"',
                      "AuthzSendForbiddenOnFailure On",
                      "<RequireAny>", "Require oci-pull acl/open/*", "</RequireAny>"])
    return httpd_factory("mirror-acl", location_auth=auth,
                         location_extra=f"OCIRegMirror acl/* {upstream_anon.url} insecure")


@pytest.mark.allow_errors(r"AH01630: client denied", r"AH01631: user \S+: authorization failure")
def test_access_rules_apply_to_mirrored_names(acl_mirror, upstream_anon, repo):
    s = slug(repo)
    closed = push_image_to(upstream_anon.url, f"closed/{s}", "v1")
    opened = push_image_to(upstream_anon.url, f"open/{s}", "v1")
    anon = Registry(acl_mirror.base_url)
    alice = Registry(acl_mirror.base_url, auth=("alice", "alice-pw"))
    try:
        mark = upstream_anon.mark()
        # Anonymous: 401 or (AuthzSendForbiddenOnFailure) 403.
        for r in (anon.get(f"/v2/acl/closed/{s}/manifests/v1"),
                  anon.get(f"/v2/acl/closed/{s}/blobs/{closed['config']}")):
            assert_error(r, r.status_code if r.status_code in (401, 403) else 401,
                         "UNAUTHORIZED", "DENIED")
        assert_error(alice.get(f"/v2/acl/closed/{s}/manifests/{closed['digest']}"), 403,
                     "DENIED")
        assert_error(alice.head(f"/v2/acl/closed/{s}/blobs/{closed['layers'][0]}"), 403)
        upstream_anon.sync()
        assert upstream_anon.requests_since(mark) == []
        # The open name pulls through.
        assert digest_of(anon, f"acl/open/{s}", "v1") == opened["digest"]
        r = anon.get(f"/v2/acl/open/{s}/blobs/{opened['layers'][1]}")
        assert r.status_code == 200 and sha256(r.content) == opened["layers"][1]
    finally:
        anon.close()
        alice.close()
