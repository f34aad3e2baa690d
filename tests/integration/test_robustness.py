"""Concurrency, crashed workers, connection handling and store isolation."""

import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import pytest

from httpd_harness import free_port
from ocireg_client import (MT_OCI_MANIFEST, EMPTY_JSON, RawConnection, Registry,
                           artifact_manifest, assert_error, check_raw_response,
                           path_of, raw_request, sha256, with_query)

OCTET = {"Content-Type": "application/octet-stream"}


def _abs(base, loc):
    return urljoin(base + "/", loc)


def chunked_upload_new_connections(port, base, repo, data, chunk):
    """POST, PATCHes each on a new connection, PUT; returns the digest."""
    r = raw_request(port, "POST", f"/v2/{repo}/blobs/uploads/", body=b"",
                    headers={"Connection": "close"})
    assert r.status == 202, r
    loc = _abs(base, r.header("Location"))
    for a in range(0, len(data), chunk):
        piece = data[a:a + chunk]
        r = raw_request(port, "PATCH", path_of(loc), body=piece,
                        headers={**OCTET, "Connection": "close",
                                 "Content-Range": f"{a}-{a + len(piece) - 1}"})
        assert r.status == 202, (a, r)
        assert r.header("Range") == f"0-{a + len(piece) - 1}"
        loc = _abs(base, r.header("Location"))
    d = sha256(data)
    r = raw_request(port, "PUT", path_of(with_query(loc, digest=d)), body=b"",
                    headers={"Connection": "close"})
    assert r.status == 201, r
    return d


def test_parallel_uploads(server, reg, repo):
    blobs = [os.urandom(20000 + i) for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        digests = list(ex.map(
            lambda b: chunked_upload_new_connections(server.port, server.base_url, repo, b, 1500),
            blobs))
    for b, d in zip(blobs, digests):
        assert d == sha256(b)
        assert reg.get(f"/v2/{repo}/blobs/{d}").content == b


def test_same_blob_uploaded_concurrently(server, reg, repo):
    data = os.urandom(50000)
    with ThreadPoolExecutor(6) as ex:
        digests = list(ex.map(
            lambda _: chunked_upload_new_connections(server.port, server.base_url, repo, data, 7000),
            range(6)))
    assert set(digests) == {sha256(data)}
    r = reg.get(f"/v2/{repo}/blobs/{sha256(data)}")
    assert r.content == data


def test_concurrent_tags_not_lost(server, reg, repo):
    img = reg.push_image(repo, "base")
    tags = [f"t{i}" for i in range(16)]

    def put(tag):
        c = Registry(server.base_url)
        try:
            c.put_manifest(repo, tag, img["manifest"], MT_OCI_MANIFEST)
        finally:
            c.close()

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, tags))
    got = reg.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert sorted(got) == sorted(tags + ["base"])


def test_concurrent_same_tag_consistent(server, reg, repo):
    imgs = [reg.push_image(repo) for _ in range(6)]

    def put(img):
        c = Registry(server.base_url)
        try:
            c.put_manifest(repo, "race", img["manifest"], MT_OCI_MANIFEST)
        finally:
            c.close()

    with ThreadPoolExecutor(6) as ex:
        list(ex.map(put, imgs))
    r = reg.get_manifest(repo, "race")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == sha256(r.content)
    assert r.content in [i["manifest"] for i in imgs]


def test_concurrent_referrers_not_lost(server, reg, repo):
    reg.push_blob(repo, EMPTY_JSON)
    img = reg.push_image(repo, "subject")
    bodies = [artifact_manifest("application/vnd.example.race", img["descriptor"],
                                annotations={"i": str(i)}) for i in range(16)]

    def put(body):
        c = Registry(server.base_url)
        try:
            c.put_manifest(repo, sha256(body), body, MT_OCI_MANIFEST)
        finally:
            c.close()

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, bodies))
    doc = reg.get(f"/v2/{repo}/referrers/{img['digest']}").json()
    assert sorted(m["digest"] for m in doc["manifests"]) == sorted(sha256(b) for b in bodies)


def test_referrer_listed_once_when_pushed_twice(reg, repo):
    reg.push_blob(repo, EMPTY_JSON)
    img = reg.push_image(repo, "subject")
    body = artifact_manifest("application/vnd.example.once", img["descriptor"])
    reg.put_manifest(repo, sha256(body), body, MT_OCI_MANIFEST)
    reg.put_manifest(repo, "sig", body, MT_OCI_MANIFEST)
    reg.put_manifest(repo, "sig2", body, MT_OCI_MANIFEST)
    doc = reg.get(f"/v2/{repo}/referrers/{img['digest']}").json()
    assert [m["digest"] for m in doc["manifests"]] == [sha256(body)]
    # Deleting a tag keeps the manifest, and so its referrer entry.
    assert reg.delete(f"/v2/{repo}/manifests/sig").status_code == 202
    doc = reg.get(f"/v2/{repo}/referrers/{img['digest']}").json()
    assert [m["digest"] for m in doc["manifests"]] == [sha256(body)]


# -- a worker killed while holding a session -------------------------------------

def _children(ppid):
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == ppid:
            out.append(int(p.name))
    return out


def _server_side_inode(server_port, client_port):
    want_local = f"0100007F:{server_port:04X}"
    want_remote = f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want_local and f[2] == want_remote:
            return f[9]
    return None


def kill_child_serving(inst, client_sock):
    """kill -9 of the httpd child at the other end of client_sock; returns
    once it is gone."""
    inode = _server_side_inode(inst.port, client_sock.getsockname()[1])
    assert inode, "server side of our connection not found in /proc/net/tcp"
    deadline = time.monotonic() + 10
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = _pid_owning_socket(_children(inst.proc.pid), inode)
    assert pid, "no child owns our connection"
    assert pid != inst.proc.pid
    print(f"\nkilling child {pid} while it holds the session")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"child {pid} did not die"
        time.sleep(0.02)


def _pid_owning_socket(pids, inode):
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs /proc")
def test_session_taken_over_after_worker_killed(server, reg, repo):
    first = os.urandom(4000)
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=first, headers={**OCTET, "Content-Range": "0-3999"})
    assert r.status_code == 202
    loc = reg.location(r)

    c = RawConnection(server.port, timeout=30)
    try:
        c.send_head("PATCH", path_of(loc), {**OCTET, "Content-Range": "4000-103999",
                                            "Content-Length": "100000",
                                            "Expect": "100-continue"})
        status, _, _ = c.read_head()
        assert status == 100
        c.send(os.urandom(3000))
        # The session is held now.
        busy = reg.patch(loc, data=b"x", headers={**OCTET, "Content-Range": "4000-4000"})
        assert busy.status_code in (409, 416), busy.text

        kill_child_serving(server, c.sock)
    finally:
        c.close()

    # Whatever the dead worker had half-written, the session continues from
    # the offset its status reports.
    deadline = time.monotonic() + 15
    while True:
        s = reg.get(loc)
        assert s.status_code == 204, s.text
        off = int(s.headers["Range"].split("-")[1]) + 1
        assert off == 4000, s.headers["Range"]
        r = reg.patch(_abs(server.base_url, s.headers["Location"]), data=b"y" * 100,
                      headers={**OCTET, "Content-Range": "4000-4099"})
        if r.status_code == 202:
            break
        assert r.status_code in (409, 416), r.text
        assert time.monotonic() < deadline, "session never taken over from the dead worker"
        time.sleep(0.05)
    blob = first + b"y" * 100
    r = reg.put(with_query(reg.location(r), digest=sha256(blob)))
    assert r.status_code == 201, r.text
    assert reg.get(f"/v2/{repo}/blobs/{sha256(blob)}").content == blob
    # The server as a whole is fine.
    assert reg.get("/v2/").status_code == 200


# -- DELETE racing a PATCH --------------------------------------------------------

def test_delete_session_during_patch(server, reg, repo):
    loc, _ = reg.start_upload(repo)
    data = os.urandom(20000)
    with RawConnection(server.port, timeout=30) as slow:
        slow.send_head("PATCH", path_of(loc), {**OCTET, "Content-Range": "0-19999",
                                               "Content-Length": "20000",
                                               "Expect": "100-continue"})
        status, _, _ = slow.read_head()
        assert status == 100
        slow.send(data[:5000])
        d = raw_request(server.port, "DELETE", path_of(loc))
        slow.send(data[5000:])
        r = slow.read_response("PATCH")
    print(f"\nDELETE during PATCH -> {d.status}; PATCH -> {r.status}")
    if d.status == 204:
        # Deleted under the writer: the writer must not resurrect it.
        assert r.status >= 400, r
        assert_error(reg.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    else:
        assert d.status in (409, 416), d
        check_raw_response(d, path_of(loc), "DELETE")
        assert r.status == 202, r
        assert reg.get(loc).headers["Range"] == "0-19999"
        reg.cancel_upload(loc)


# -- connection handling -----------------------------------------------------------

def test_keepalive_after_error_with_unread_body(server, repo):
    body = os.urandom(100000)
    with RawConnection(server.port) as c:
        c.send_head("PATCH", f"/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000",
                    {**OCTET, "Content-Length": str(len(body))})
        c.send(body)
        r1 = c.read_response("PATCH")
        assert r1.status == 404
        closing = (r1.header("Connection") or "").lower() == "close"
        ok = c.send_head("GET", "/v2/")
        try:
            r2 = c.read_response("GET")
        except (ConnectionError, OSError):
            r2 = None
    if r2 is None or not ok:
        assert closing, "server dropped a keep-alive connection without Connection: close"
    else:
        assert r2.status == 200, r2


def test_http10_base(server):
    with RawConnection(server.port) as c:
        c.send(b"GET /v2/ HTTP/1.0\r\n\r\n")
        r = c.read_response("GET")
    assert r.status == 200
    assert r.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_empty_patch_keeps_offset(reg, repo):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"a" * 100, headers={**OCTET, "Content-Range": "0-99"})
    loc = reg.location(r)
    r = reg.patch(loc, data=b"", headers=OCTET)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-99"
    r = reg.put(with_query(reg.location(r), digest=sha256(b"a" * 100)))
    assert r.status_code == 201


@pytest.mark.parametrize("rng", ["0-99999999999999999999999", "99999999999999999999-99999999999999999999"])
def test_content_range_overflow(reg, repo, rng):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"abc", headers={**OCTET, "Content-Range": rng})
    assert r.status_code in (400, 416), r.text
    reg.cancel_upload(loc)


def test_manifest_put_chunked(server, reg, repo):
    img = reg.push_image(repo, "plain")
    body = img["manifest"]
    path = f"/v2/{repo}/manifests/chunked"
    r = raw_request(server.port, "PUT", path, headers={"Content-Type": MT_OCI_MANIFEST},
                    chunks=[body[:50], body[50:]])
    assert r.status == 201, r
    assert r.header("Docker-Content-Digest") == img["digest"]
    assert reg.get_manifest(repo, "chunked").content == body


def test_monolithic_post_chunked(server, reg, repo):
    data = os.urandom(70000)
    d = sha256(data)
    r = raw_request(server.port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}",
                    headers=OCTET, chunks=[data[:30000], data[30000:]])
    assert r.status == 201, r
    assert reg.get(f"/v2/{repo}/blobs/{d}").content == data


def test_sha512_blob_reference(reg, repo):
    reg.push_blob(repo, b"exists")
    r = reg.get(f"/v2/{repo}/blobs/sha512:" + hashlib.sha512(b"x").hexdigest())
    assert_error(r, 404, "BLOB_UNKNOWN")


# -- two virtual hosts, two stores ---------------------------------------------------

@pytest.fixture(scope="module")
def vhosts(httpd_factory, base_dir):
    port_b = free_port()
    data_b = Path(base_dir) / "vhosts-data-b"
    extra = f"""
Listen 127.0.0.1:{port_b}
<VirtualHost 127.0.0.1:{port_b}>
    ServerName vhost-b
    OCIRegStorage filesystem "{data_b}"
    <Location /v2>
        Require all granted
        OCIRegistry On
        LimitRequestBody 0
    </Location>
</VirtualHost>
"""
    inst = httpd_factory("vhosts", global_extra=extra)
    inst.port_b = port_b
    return inst


def test_vhost_stores_isolated(vhosts):
    a = Registry(vhosts.base_url)
    b = Registry(f"http://127.0.0.1:{vhosts.port_b}")
    try:
        assert b.get("/v2/").status_code == 200
        d = a.push_blob("iso/repo", b"only in store A")
        assert_error(b.get(f"/v2/iso/repo/blobs/{d}"), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")
        # An upload begun on A cannot be continued or closed on B.
        loc, r = a.start_upload("iso/repo")
        uid = r.headers["Docker-Upload-UUID"]
        path = f"/v2/iso/repo/blobs/uploads/{uid}"
        assert_error(b.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(b.patch(path, data=b"x", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(b.put(path + "?digest=" + sha256(b"")), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(b.delete(path), 404, "BLOB_UPLOAD_UNKNOWN")
        s = a.get(loc)
        assert s.status_code == 204 and s.headers["Range"] == "0-0"
        r = a.put(with_query(loc, digest=sha256(b"")))
        assert r.status_code == 201
        # Both stores work on their own.
        d2 = b.push_blob("iso/repo", b"only in store B")
        assert_error(a.get(f"/v2/iso/repo/blobs/{d2}"), 404, "BLOB_UNKNOWN")
        # The catalog lists repositories with a manifest (README).
        b.push_image("iso/repo", "b")
        cat_b = b.get("/v2/_catalog").json()["repositories"]
        assert cat_b == ["iso/repo"]
    finally:
        a.close()
        b.close()


# -- odds and ends ---------------------------------------------------------------

def test_referrers_filter_with_plus_in_artifact_type(reg, repo):
    from urllib.parse import quote
    reg.push_blob(repo, EMPTY_JSON)
    img = reg.push_image(repo, "subject")
    at = "application/vnd.example.sbom.v1+json"
    body = artifact_manifest(at, img["descriptor"])
    reg.put_manifest(repo, sha256(body), body, MT_OCI_MANIFEST)
    other = artifact_manifest("application/vnd.example.other", img["descriptor"])
    reg.put_manifest(repo, sha256(other), other, MT_OCI_MANIFEST)
    r = reg.get(f"/v2/{repo}/referrers/{img['digest']}?artifactType={quote(at, safe='')}")
    assert r.status_code == 200
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(body)]
    assert "artifactType" in r.headers.get("OCI-Filters-Applied", "")


def test_manifest_referencing_deleted_blob(reg, repo):
    img = reg.push_image(repo, "v1")
    layer = img["layers"][0]["digest"]
    assert reg.delete(f"/v2/{repo}/blobs/{layer}").status_code == 202
    # The existing manifest is still served...
    assert reg.get_manifest(repo, "v1").status_code == 200
    # ...but a new push referencing the deleted blob is refused.
    from ocireg_client import oci_manifest
    body = oci_manifest(img["config"], img["layers"], annotations={"new": "1"})
    r = reg.put_manifest(repo, "v2", body, MT_OCI_MANIFEST, expect=None)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_blob_conditional_get(reg, repo):
    data = os.urandom(500)
    d = reg.push_blob(repo, data)
    r = reg.get(f"/v2/{repo}/blobs/{d}")
    etag = r.headers.get("ETag")
    if not etag:
        pytest.skip("no ETag on blobs")
    r = reg.get(f"/v2/{repo}/blobs/{d}", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""


def test_manifest_head_sends_no_body(server, reg, repo):
    img = reg.push_image(repo, "h")
    with RawConnection(server.port) as c:
        c.send_head("HEAD", f"/v2/{repo}/manifests/h", {"Accept": MT_OCI_MANIFEST})
        r1 = c.read_response("HEAD")
        c.send_head("GET", "/v2/")
        r2 = c.read_response("GET")
    assert r1.status == 200
    assert r1.header("Content-Length") == str(len(img["manifest"]))
    assert r1.header("Docker-Content-Digest") == img["digest"]
    assert r2.status == 200


def test_closing_put_with_wrong_range_start(reg, repo):
    loc, _ = reg.start_upload(repo)
    r = reg.patch(loc, data=b"a" * 10, headers={**OCTET, "Content-Range": "0-9"})
    loc = reg.location(r)
    r = reg.put(with_query(loc, digest=sha256(b"a" * 20)), data=b"a" * 10,
                headers={**OCTET, "Content-Range": "20-29"})
    assert_error(r, 416)
    assert r.headers.get("Range") == "0-9"
    r = reg.put(with_query(loc, digest=sha256(b"a" * 20)), data=b"a" * 10,
                headers={**OCTET, "Content-Range": "10-19"})
    assert r.status_code == 201, r.text


def test_auth_mount_with_credentials(server_auth):
    from conftest import AUTH_USER, AUTH_PASSWORD
    c = Registry(server_auth.base_url, auth=(AUTH_USER, AUTH_PASSWORD))
    try:
        d = c.push_blob("it/auth/mount-src", b"mount me with credentials")
        r = c.post(f"/v2/it/auth/mount-dst/blobs/uploads/?mount={d}&from=it/auth/mount-src",
                   data=b"")
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/it/auth/mount-dst/blobs/{d}").content == b"mount me with credentials"
    finally:
        c.close()
