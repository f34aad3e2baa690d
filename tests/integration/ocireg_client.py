"""Client side helpers for the integration tests: a requests-based registry
client that checks the invariants every response must satisfy, a raw HTTP/1.1
client for what requests cannot do (unnormalised paths, chunked bodies with
control over timing, Expect: 100-continue, half-sent requests), blob push
helpers and manifest builders."""

import hashlib
import json
import os
import socket
import uuid as uuidlib
from urllib.parse import urljoin, urlsplit, urlencode, quote

import requests

API_VERSION = "registry/2.0"

SPEC_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID",
    "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}
# Legacy Docker codes the spec says clients may encounter.
LEGACY_CODES = {"TAG_INVALID", "MANIFEST_UNVERIFIED"}

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ALL_MANIFEST_TYPES = ", ".join([MT_OCI_MANIFEST, MT_OCI_INDEX,
                                MT_DOCKER_MANIFEST, MT_DOCKER_LIST])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_digest() -> str:
    return sha256(os.urandom(32))


def header_ci(headers, name):
    """First value of a header in a list of (name, value) or a dict-like."""
    if hasattr(headers, "get") and not isinstance(headers, list):
        return headers.get(name)
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def check_error_body(status, content_type, body, where=""):
    """An error response must be JSON {"errors":[{"code":..,"message":..}]}
    with spec codes. Returns the list of codes."""
    assert content_type is not None, f"{where}: error {status} without Content-Type"
    assert content_type.split(";")[0].strip().lower() == "application/json", \
        f"{where}: error {status} with Content-Type {content_type!r}, body {body[:200]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"{where}: error {status} body is not JSON: {body[:300]!r}")
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], \
        f"{where}: error body lacks a non-empty errors list: {doc!r}"
    codes = []
    for e in doc["errors"]:
        assert isinstance(e, dict) and isinstance(e.get("code"), str), f"{where}: bad entry {e!r}"
        assert e["code"] in SPEC_CODES | LEGACY_CODES, f"{where}: unknown code {e['code']!r}"
        assert "message" in e, f"{where}: entry without message {e!r}"
        codes.append(e["code"])
    return codes


# ---------------------------------------------------------------------------
# requests based client

class Registry:
    """A thin requests.Session wrapper. Every response to a /v2 URL is checked
    for the API version header, and every error (but HEAD's) for a JSON body
    with spec codes."""

    def __init__(self, base_url, auth=None):
        self.base = base_url.rstrip("/")
        self.s = requests.Session()
        if auth:
            self.s.auth = auth
        self.hostport = urlsplit(self.base).netloc

    def close(self):
        self.s.close()

    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base + path

    def request(self, method, path, check=True, **kw):
        kw.setdefault("allow_redirects", False)
        kw.setdefault("timeout", 30)
        url = self.url(path)
        r = self.s.request(method, url, **kw)
        if check:
            check_response(r)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- uploads -----------------------------------------------------------
    def location(self, r):
        """The absolute URL of a response's Location header."""
        loc = r.headers.get("Location")
        assert loc, f"{r.request.method} {r.url} -> {r.status_code} without Location"
        return urljoin(r.url, loc)

    def start_upload(self, repo):
        r = self.post(f"/v2/{repo}/blobs/uploads/", data=b"")
        assert r.status_code == 202, (r.status_code, r.text)
        return self.location(r), r

    def push_blob(self, repo, data):
        """Single POST monolithic upload; returns the digest."""
        d = sha256(data)
        r = self.post(f"/v2/{repo}/blobs/uploads/?digest={d}", data=data,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.text)
        assert r.headers.get("Docker-Content-Digest") == d
        return d

    def push_blob_post_put(self, repo, data):
        d = sha256(data)
        loc, _ = self.start_upload(repo)
        r = self.put(with_query(loc, digest=d), data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.text)
        return d

    def push_blob_chunked(self, repo, data, chunk_size, range_fmt="{a}-{b}"):
        """POST, PATCH chunks with Content-Range in the given form, PUT."""
        d = sha256(data)
        loc, _ = self.start_upload(repo)
        for a in range(0, len(data), chunk_size):
            chunk = data[a:a + chunk_size]
            b = a + len(chunk) - 1
            r = self.patch(loc, data=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": range_fmt.format(a=a, b=b, total=len(data))})
            assert r.status_code == 202, (r.status_code, r.text)
            assert r.headers.get("Range") == f"0-{b}"
            loc = self.location(r)
        r = self.put(with_query(loc, digest=d), data=b"")
        assert r.status_code == 201, (r.status_code, r.text)
        return d

    def cancel_upload(self, loc):
        r = self.delete(loc)
        assert r.status_code in (204, 404), (r.status_code, r.text)

    # -- manifests ---------------------------------------------------------
    def put_manifest(self, repo, ref, body, media_type, expect=201):
        r = self.put(f"/v2/{repo}/manifests/{ref}", data=body,
                     headers={"Content-Type": media_type})
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.text)
        return r

    def get_manifest(self, repo, ref, method="GET", accept=ALL_MANIFEST_TYPES):
        return self.request(method, f"/v2/{repo}/manifests/{ref}",
                            headers={"Accept": accept})

    def push_image(self, repo, tag=None, nlayers=1, layer_size=1024,
                   annotations=None):
        """Pushes config and layers and an OCI image manifest; returns a dict
        with manifest bytes, digest, config and layer descriptors."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "nonce": uuidlib.uuid4().hex}).encode()
        cdesc = descriptor(MT_OCI_CONFIG, config)
        self.push_blob(repo, config)
        layers = []
        for _ in range(nlayers):
            data = os.urandom(layer_size)
            self.push_blob(repo, data)
            layers.append(descriptor(MT_OCI_LAYER, data))
        body = oci_manifest(cdesc, layers, annotations=annotations)
        d = sha256(body)
        self.put_manifest(repo, tag or d, body, MT_OCI_MANIFEST)
        return {"manifest": body, "digest": d, "config": cdesc, "layers": layers,
                "descriptor": {"mediaType": MT_OCI_MANIFEST, "digest": d,
                               "size": len(body)}}


def check_response(r):
    path = urlsplit(r.url).path
    if path == "/v2" or path.startswith("/v2/"):
        assert r.headers.get("Docker-Distribution-API-Version") == API_VERSION, \
            f"{r.request.method} {r.url} -> {r.status_code} lacks Docker-Distribution-API-Version"
        assert r.headers.get("X-Content-Type-Options") == "nosniff", \
            f"{r.request.method} {r.url} -> {r.status_code} lacks X-Content-Type-Options: nosniff"
        if r.status_code >= 400 and r.request.method != "HEAD":
            check_error_body(r.status_code, r.headers.get("Content-Type"), r.content,
                             f"{r.request.method} {r.url}")


def error_codes(r):
    return [e["code"] for e in r.json()["errors"]]


def assert_error(r, status, *codes):
    """Status and (unless HEAD) one of the given codes in the JSON body."""
    assert r.status_code == status, \
        f"{r.request.method} {r.url}: expected {status}, got {r.status_code}: {r.text[:300]}"
    if r.request.method != "HEAD" and codes:
        got = error_codes(r)
        assert set(got) & set(codes), f"{r.request.method} {r.url}: codes {got}, wanted one of {codes}"


def with_query(url, **params):
    sep = "&" if urlsplit(url).query else "?"
    return url + sep + urlencode(params)


# ---------------------------------------------------------------------------
# manifests

def jbytes(obj, pretty=False):
    if pretty:
        return (json.dumps(obj, indent=3) + "\n").encode()
    return json.dumps(obj, separators=(",", ":")).encode()


def descriptor(media_type, data=None, digest=None, size=None, **extra):
    d = {"mediaType": media_type,
         "digest": digest if digest else sha256(data),
         "size": size if size is not None else len(data)}
    d.update(extra)
    return d


EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": MT_OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": 2}


def oci_manifest(config, layers, annotations=None, artifact_type=None,
                 subject=None, pretty=False):
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config
    m["layers"] = layers
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return jbytes(m, pretty)


def oci_index(manifests, annotations=None, artifact_type=None, subject=None):
    m = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = manifests
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return jbytes(m)


def docker_manifest(config, layers):
    return jbytes({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                   "config": config, "layers": layers}, pretty=True)


def docker_manifest_list(manifests):
    return jbytes({"schemaVersion": 2, "mediaType": MT_DOCKER_LIST,
                   "manifests": manifests}, pretty=True)


def artifact_manifest(artifact_type, subject, annotations=None, layers=None):
    """An OCI 1.1 artifact: image manifest with artifactType, the empty
    config and a subject."""
    return oci_manifest(EMPTY_DESCRIPTOR, layers if layers is not None else [EMPTY_DESCRIPTOR],
                        annotations=annotations, artifact_type=artifact_type,
                        subject=subject)


def platform_descriptor(desc, arch, os_="linux"):
    d = dict(desc)
    d["platform"] = {"architecture": arch, "os": os_}
    return d


# ---------------------------------------------------------------------------
# raw HTTP/1.1

class RawResponse:
    def __init__(self, status, reason, headers, body=b"", interim=()):
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value)
        self.body = body
        self.interim = list(interim)

    def header(self, name):
        return header_ci(self.headers, name)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {self.body[:200]!r}>"


class RawConnection:
    """One TCP connection speaking HTTP/1.1 by hand."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    def close(self):
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data: bytes):
        """Sends; returns False when the server already closed on us."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_head(self, method, path, headers=None):
        hdrs = [("Host", f"{self.host}:{self.port}")]
        for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
            hdrs.append((k, v))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        return self.send(head.encode("latin-1"))

    def send_chunk(self, data: bytes):
        if not data:
            return True
        return self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_chunks(self):
        return self.send(b"0\r\n\r\n")

    def read_head(self):
        line = self.rfile.readline(65537)
        if not line:
            raise ConnectionError("connection closed before a response")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        return status, reason, headers

    def read_body(self, status, headers, method):
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        te = header_ci(headers, "Transfer-Encoding")
        if te and "chunked" in te.lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        cl = header_ci(headers, "Content-Length")
        if cl is not None:
            return self.rfile.read(int(cl))
        return self.rfile.read()

    def read_response(self, method="GET", skip_interim=True):
        """Reads the next final response (interim 1xx are collected)."""
        interim = []
        while True:
            status, reason, headers = self.read_head()
            if 100 <= status < 200 and skip_interim:
                interim.append(status)
                continue
            body = self.read_body(status, headers, method)
            return RawResponse(status, reason, headers, body, interim)

    def request(self, method, path, headers=None, body=None, chunks=None):
        """Sends a whole request (Content-Length body or chunked from an
        iterable) and reads the response. A server closing early (e.g. on a
        413) is tolerated as long as it sent a response."""
        hdrs = dict(headers or {})
        if chunks is not None:
            hdrs.setdefault("Transfer-Encoding", "chunked")
        elif body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        ok = self.send_head(method, path, hdrs)
        if ok and chunks is not None:
            for c in chunks:
                if not self.send_chunk(c):
                    break
            else:
                self.end_chunks()
        elif ok and body:
            self.send(body)
        return self.read_response(method)


def raw_request(port, method, path, headers=None, body=None, chunks=None, timeout=60):
    with RawConnection(port, timeout=timeout) as c:
        return c.request(method, path, headers=headers, body=body, chunks=chunks)


def check_raw_response(resp, path, method="GET"):
    """The invariants of check_response for raw responses."""
    assert resp.header("Docker-Distribution-API-Version") == API_VERSION, \
        f"{method} {path} -> {resp.status} lacks Docker-Distribution-API-Version: {resp!r}"
    assert resp.header("X-Content-Type-Options") == "nosniff", \
        f"{method} {path} -> {resp.status} lacks X-Content-Type-Options: nosniff: {resp!r}"
    if resp.status >= 400 and method != "HEAD":
        return check_error_body(resp.status, resp.header("Content-Type"), resp.body,
                                f"{method} {path}")
    return []


def path_of(url):
    """Path and query of an absolute URL (for raw requests)."""
    u = urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def upload_uuid(r):
    return r.headers.get("Docker-Upload-UUID")
