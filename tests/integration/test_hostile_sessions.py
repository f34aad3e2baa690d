"""Hostile clients against the upload-session table, on both stores.

- A client that opens a thousand sessions and walks away reaches its own
  limit (OCIRegUploadsPerClient) and nobody else's; with the limits raised
  so that it fills the table, new POSTs get 429 while a push already in
  progress finishes, and the abandoned (empty) sessions expire after
  OCIRegUploadEmptyExpiry (seconds here), freeing the slots.
- Many PATCHes racing on one session through several children: exactly one
  is applied, the others get 416, and the blob is the winner's bytes.
- One upload whose abort fails (filesystem store: its data file replaced by
  a directory) does not keep the rest of the expiry's batch held.
"""

import hashlib
import http.client
import os
import shutil
import threading
import time

import pytest
import requests

from httpd_harness import HttpdInstance, bad_log_lines, wait_for
from ocireg_client import assert_error, check_error_body, raw_request, path_of

MIB = 1024 * 1024
# Short, for the test's sake, yet long enough that no session expires while
# a loaded machine is still flooding the table.
EMPTY_EXPIRY = 15


class Client:
    """A keep-alive HTTP client bound to its own loopback source address,
    so that the registry sees distinct clients (127.0.0.x)."""

    def __init__(self, inst, source="127.0.0.1"):
        self.inst = inst
        self.source = source
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.inst.port, timeout=30,
                    source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(self, repo):
        return self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def assert_429(status, headers, body):
    assert status == 429, (status, body)
    check_error_body(status, headers.get("content-type"), body)
    assert b"TOOMANYREQUESTS" in body, body
    assert int(headers["retry-after"]) > 0


@pytest.fixture(scope="module")
def limited(httpd_factory):
    # The default OCIRegUploadEmptyExpiry (300 s): nothing expires here.
    return httpd_factory("hostile-limits", upload_slots=512, global_extra="\n".join([
        "OCIRegUploadsPerClient 20",
        "OCIRegUploadsPerRepository 40",
    ]))


@pytest.fixture(scope="module")
def small_table(httpd_factory):
    # No per-client or per-repository limit: one client can fill the table.
    return httpd_factory("hostile-full", upload_slots=32, global_extra="\n".join([
        "OCIRegUploadsPerClient 0",
        "OCIRegUploadsPerRepository 0",
        f"OCIRegUploadEmptyExpiry {EMPTY_EXPIRY}",
        "OCIRegUploadExpiry 600",
    ]))


def test_thousand_abandoned_sessions_hit_the_client_limit(limited):
    flood = Client(limited, "127.0.0.2")
    other = Client(limited, "127.0.0.3")
    try:
        opened, refused = [], 0
        for _ in range(1000):
            status, headers, body = flood.post("hostile/flood")
            if status == 202:
                opened.append(headers["location"])
            else:
                assert_429(status, headers, body)
                refused += 1
        assert len(opened) == 20 and refused == 980
        # Another client, even in the same repository, is not affected.
        status, headers, body = other.post("hostile/flood")
        assert status == 202, body
        assert other.request("DELETE", headers["location"])[0] == 204
        # A session that ends gives its client's share back.
        assert flood.request("DELETE", opened.pop())[0] == 204
        status, headers, body = flood.post("hostile/flood")
        assert status == 202, body
        opened.append(headers["location"])
        assert_429(*flood.post("hostile/flood"))
        for loc in opened:
            assert flood.request("DELETE", loc)[0] == 204
    finally:
        flood.close()
        other.close()


def test_repository_limit_spares_other_repositories(limited):
    clients = [Client(limited, f"127.0.0.{10 + i}") for i in range(3)]
    try:
        for c in clients[:2]:
            for _ in range(20):
                status, _, body = c.post("hostile/popular")
                assert status == 202, body
        status, headers, body = clients[2].post("hostile/popular")
        assert_429(status, headers, body)
        assert b"repository" in body
        status, _, body = clients[2].post("hostile/quiet")
        assert status == 202, body
    finally:
        for c in clients:
            c.close()


def test_full_table_refuses_new_posts_while_a_push_goes_on(small_table):
    base = small_table.base_url
    data = os.urandom(6 * MIB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # A push in progress: it has bytes, so only OCIRegUploadExpiry ends it.
    r = requests.post(f"{base}/v2/hostile/pusher/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = requests.patch(base + r.headers["Location"], data=data[:3 * MIB],
                       headers={"Content-Range": f"0-{3 * MIB - 1}"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]

    flood = Client(small_table, "127.0.0.4")
    try:
        opened, refused = [], 0
        for _ in range(200):
            status, headers, body = flood.post("hostile/filler")
            if status == 202:
                opened.append(headers["location"])
            else:
                assert_429(status, headers, body)
                refused += 1
        assert len(opened) == 31 and refused == 169
        # Everyone's new uploads wait, ...
        assert_error(requests.post(f"{base}/v2/hostile/victim/blobs/uploads/"),
                     429, "TOOMANYREQUESTS")
        # ... but the push in progress continues and finishes.
        r = requests.patch(base + loc, data=data[3 * MIB:],
                           headers={"Content-Range": f"{3 * MIB}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        r = requests.put(base + r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        assert requests.get(f"{base}/v2/hostile/pusher/blobs/{digest}").content == data
        # Expiry frees the abandoned slots: every one of them.
        wait_for(lambda: all(flood.request("GET", l)[0] == 404 for l in opened),
                 timeout=EMPTY_EXPIRY + 45, what="the abandoned sessions to expire")
        # (these go by themselves, as the first ones did)
        for _ in range(32):
            status, headers, body = flood.post("hostile/filler")
            assert status == 202, body
    finally:
        flood.close()


@pytest.fixture(scope="module")
def racing(httpd_factory):
    # Default expiries: the expiry must not take a session while it races.
    return httpd_factory("hostile-race")


def test_many_patches_on_one_session_exactly_one_applies(racing):
    """Racing PATCHes at offset 0, each on its own connection: whichever
    child gets it, one is applied and the others get 416."""
    limited = racing
    port = limited.port
    racers = 12
    pids = set()
    for round_ in range(6):
        r = requests.post(f"{limited.base_url}/v2/hostile/race/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        uid = r.headers["Docker-Upload-UUID"]
        bodies = [os.urandom(MIB + i) for i in range(racers)]
        results = [None] * racers
        barrier = threading.Barrier(racers)

        def race(i):
            barrier.wait()
            results[i] = raw_request(
                port, "PATCH", path_of(loc),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"0-{len(bodies[i]) - 1}",
                         "Connection": "close"},
                body=bodies[i], timeout=60)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [i for i, res in enumerate(results) if res.status == 202]
        assert len(won) == 1, [res.status for res in results]
        for i, res in enumerate(results):
            if i != won[0]:
                assert res.status == 416, res
                assert b"BLOB_UPLOAD_INVALID" in res.body, res
        winner = bodies[won[0]]
        st = requests.get(limited.base_url + loc)
        assert st.status_code == 204
        assert st.headers["Range"] == f"0-{len(winner) - 1}"
        digest = "sha256:" + hashlib.sha256(winner).hexdigest()
        r = requests.put(limited.base_url + results[won[0]].header("Location"),
                         params={"digest": digest})
        assert r.status_code == 201, r.text
        got = requests.get(f"{limited.base_url}/v2/hostile/race/blobs/{digest}").content
        assert got == winner
        lines = limited.wait_access_log(lambda l: uid in l and '"PATCH ' in l, racers)
        pids |= {l.split()[0] for l in lines}
        if len(pids) >= 2:
            break
    assert len(pids) >= 2, f"every racing PATCH was served by one child: {pids}"


@pytest.fixture
def wedge(base_dir):
    """The failing abort is provoked through the filesystem store, so this
    instance has one whatever the session's backend (and runs once)."""
    inst = HttpdInstance("expiry-wedge", base_dir, global_extra="OCIRegUploadExpiry 2")
    inst.start()
    try:
        yield inst
    finally:
        inst.stop()
    assert bad_log_lines(inst.error_log_since(0)) == [], inst.name


def test_failed_abort_does_not_wedge_the_rest_of_the_batch(wedge):
    base = wedge.base_url
    sessions = []
    # The broken one first: a fresh table fills its slots in order, and the
    # expiry takes its batch in slot order.
    for i in range(6):
        r = requests.post(f"{base}/v2/hostile/wedge/blobs/uploads/")
        assert r.status_code == 202
        r = requests.patch(base + r.headers["Location"], data=b"x" * (i + 1))
        assert r.status_code == 202, r.text
        sessions.append((r.headers["Docker-Upload-UUID"], r.headers["Location"]))
    broken_uuid, broken_loc = sessions[0]
    data_file = wedge.data_dir / "uploads" / broken_uuid
    assert data_file.is_file()
    # Its abort now fails: the data file is a directory with something in it.
    data_file.unlink()
    data_file.mkdir()
    (data_file / "keep").write_bytes(b"")
    try:
        # Every other session of the batch expires all the same.
        for _, loc in sessions[1:]:
            wait_for(lambda loc=loc: requests.get(base + loc).status_code == 404,
                     what="the other sessions of the batch to expire")
        wait_for(lambda: "could not abort idle upload " + broken_uuid
                 in "".join(wedge.error_log_since(0)),
                 what="the failed abort to be logged")
    finally:
        shutil.rmtree(data_file)
    # Released, not held: a later round takes it again and ends it.
    wait_for(lambda: "expired idle upload " + broken_uuid
             in "".join(wedge.error_log_since(0)),
             what="the broken session to expire once its abort can work")
    assert requests.get(base + broken_loc).status_code == 404
    wait_for(lambda: not any((wedge.data_dir / "uploads").iterdir()),
             what="the uploads directory to be empty")
