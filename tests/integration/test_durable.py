"""Upload sessions are kept in the store, not only in one httpd's shared
memory: a second httpd on the same store (another host, in production)
continues an upload, and so does httpd after a full stop and start."""

import fcntl
import hashlib
import os
import re
import time

import pytest
import requests

from httpd_harness import HttpdInstance, bad_log_lines
from ocireg_client import RawConnection, path_of
from test_robustness import kill_child_serving

MIB = 1024 * 1024


class SharedFsInstance(HttpdInstance):
    """An httpd whose filesystem store is another instance's."""

    def __init__(self, *a, store_dir, **kw):
        super().__init__(*a, **kw)
        self.store_dir = store_dir

    def storage_conf(self):
        return f'    OCIRegStorage filesystem "{self.store_dir}"'


def _pair(backend, base_dir, request, b_slots=256, extra=""):
    tag = request.node.name.split("[")[0][-20:].replace("_", "-")
    if backend == "s3":
        rgw = request.getfixturevalue("rgw")
        storage = rgw.storage(base_dir, f"durable-{tag}", part_size="5M")
        a = HttpdInstance(f"dur-a-{tag}-s3", base_dir, storage=storage,
                          global_extra=extra)
        b = HttpdInstance(f"dur-b-{tag}-s3", base_dir, storage=storage,
                          upload_slots=b_slots, global_extra=extra)
    else:
        a = HttpdInstance(f"dur-a-{tag}-fs", base_dir, global_extra=extra)
        b = SharedFsInstance(f"dur-b-{tag}-fs", base_dir, store_dir=a.data_dir,
                             upload_slots=b_slots, global_extra=extra)
    started = []
    try:
        for inst in (a, b):
            inst.start()
            started.append(inst)
        yield a, b
    finally:
        for inst in started:
            inst.stop()
    for inst in started:
        assert bad_log_lines(inst.error_log_since(0)) == [], inst.name


@pytest.fixture
def pair(backend, base_dir, request):
    """Two httpd instances, separate shared memory, one store."""
    yield from _pair(backend, base_dir, request)


@pytest.fixture
def pair_expiring(backend, base_dir, request):
    """The same, expiring uploads after 2 s (a sweep every second), with
    the sweeps logged."""
    yield from _pair(backend, base_dir, request,
                     extra="OCIRegUploadExpiry 2\nLogLevel info ocireg:debug")


@pytest.fixture
def pair_small_b(backend, base_dir, request):
    """The same, with room for one session only in b's table."""
    yield from _pair(backend, base_dir, request, b_slots=1)


def push_alternating(a, b, repo, data, chunk):
    """POST on a, then PATCHes alternating between b and a, PUT on b."""
    r = requests.post(f"{a.base_url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    servers = [b, a]
    for i, off in enumerate(range(0, len(data), chunk)):
        part = data[off:off + chunk]
        srv = servers[i % 2]
        r = requests.patch(srv.base_url + loc, data=part,
                           headers={"Content-Range": f"{off}-{off + len(part) - 1}"})
        assert r.status_code == 202, (srv.name, r.text)
        assert r.headers["Range"] == f"0-{off + len(part) - 1}"
        loc = r.headers["Location"]
        # the other one sees the same progress
        st = requests.get(servers[(i + 1) % 2].base_url + loc)
        assert st.status_code == 204 and st.headers["Range"] == r.headers["Range"]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(b.base_url + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    return digest


def test_two_servers_one_store_alternate_patches(pair):
    a, b = pair
    data = os.urandom(13 * MIB + 77)  # several 5 MiB parts and a tail on S3
    digest = push_alternating(a, b, "durable/alternate", data, 3 * MIB + 5)
    for srv in (a, b):
        r = requests.get(f"{srv.base_url}/v2/durable/alternate/blobs/{digest}")
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == digest[7:]


def test_upload_survives_full_stop_and_start(pair):
    a, _ = pair
    data = os.urandom(7 * MIB + 3)
    r = requests.post(f"{a.base_url}/v2/durable/restart/blobs/uploads/")
    loc = r.headers["Location"]
    half = 4 * MIB
    r = requests.patch(a.base_url + loc, data=data[:half],
                       headers={"Content-Range": f"0-{half - 1}"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    a.stop()           # shared memory gone with the parent
    a.start(keep_dirs=True)  # a new port and a fresh table, same store
    st = requests.get(a.base_url + loc)
    assert st.status_code == 204, st.text
    assert st.headers["Range"] == f"0-{half - 1}"
    r = requests.patch(a.base_url + loc, data=data[half:],
                       headers={"Content-Range": f"{half}-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(a.base_url + r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    r = requests.get(f"{a.base_url}/v2/durable/restart/blobs/{digest}")
    assert hashlib.sha256(r.content).hexdigest() == digest[7:]


def _patch_held_open(srv, loc, start, length):
    """Sends a PATCH's head with Expect: 100-continue and waits for the 100:
    httpd sends it at the first body read, after the module took the session,
    so from then on this request holds it."""
    c = RawConnection(srv.port, timeout=60)
    c.send_head("PATCH", path_of(loc), {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + length - 1}",
        "Content-Length": str(length),
        "Expect": "100-continue"})
    status, _, _ = c.read_head()
    assert status == 100
    return c


def test_patches_racing_through_two_servers_exactly_one_applies(pair, backend):
    """Two PATCHes from one record on two hosts: exactly one applies. On
    the filesystem the first holds the session's lock (flock) for its whole
    request, so the second is refused at once. On S3 a chunk smaller than
    a part takes no lock: records are created only once per version, so
    the first to save its record wins and the other is refused then, with
    the winner's Range; its bytes go nowhere."""
    a, b = pair
    mine, theirs = os.urandom(3 * MIB + 1), os.urandom(2 * MIB)
    r = requests.post(f"{a.base_url}/v2/durable/race/blobs/uploads/")
    loc = r.headers["Location"]
    held = _patch_held_open(a, loc, 0, len(mine))
    try:
        # b has its own shared memory: only the store can stop it
        r = requests.patch(b.base_url + loc, data=theirs,
                           headers={"Content-Range": f"0-{len(theirs) - 1}"})
        if backend == "s3":
            assert r.status_code == 202, r.text
        else:
            assert r.status_code == 416, r.text
            assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
            assert r.headers["Range"] == "0-0"
        held.send(mine)
        done = held.read_response("PATCH")
    finally:
        held.close()
    winner = theirs if backend == "s3" else mine
    if backend == "s3":
        assert done.status == 416, done.body
        assert done.header("Range") == f"0-{len(theirs) - 1}"
        loc = r.headers["Location"]
    else:
        assert done.status == 202, done.body
        assert done.header("Range") == f"0-{len(mine) - 1}"
        loc = done.header("Location")
    # the loser left no trace: the session is the winner's bytes only
    st = requests.get(b.base_url + loc)
    assert st.status_code == 204 and st.headers["Range"] == f"0-{len(winner) - 1}"
    digest = "sha256:" + hashlib.sha256(winner).hexdigest()
    r = requests.put(b.base_url + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    r = requests.get(f"{a.base_url}/v2/durable/race/blobs/{digest}")
    assert r.content == winner


def test_stale_location_gets_416_with_current_range(pair):
    a, b = pair
    data = os.urandom(6 * MIB + 11)
    first, second = data[:3 * MIB], data[3 * MIB:]
    r = requests.post(f"{a.base_url}/v2/durable/stale/blobs/uploads/")
    loc0 = r.headers["Location"]
    r = requests.patch(a.base_url + loc0, data=first,
                       headers={"Content-Range": f"0-{len(first) - 1}"})
    assert r.status_code == 202, r.text
    loc1 = r.headers["Location"]
    assert loc1 != loc0
    r = requests.patch(b.base_url + loc1, data=second)  # no Content-Range
    assert r.status_code == 202, r.text
    loc2 = r.headers["Location"]
    # The second chunk again, with the Location it was sent with: on the
    # host that took it, and on the one that last saw the session before it.
    # Without Content-Range only the Location tells that it is a retry.
    for srv in (b, a):
        r = requests.patch(srv.base_url + loc1, data=second)
        assert r.status_code == 416, (srv.name, r.text)
        assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        assert r.headers["Location"] == loc2
    # a closing PUT on a stale Location is refused the same way
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(a.base_url + loc0, params={"digest": digest})
    assert r.status_code == 416, r.text
    r = requests.put(a.base_url + loc2, params={"digest": digest})
    assert r.status_code == 201, r.text
    r = requests.get(f"{b.base_url}/v2/durable/stale/blobs/{digest}")
    assert r.content == data


def _uuid_and_version(loc):
    path, _, query = loc.partition("?")
    version = int(dict(kv.split("=", 1) for kv in query.split("&"))["_state"])
    return path.rsplit("/", 1)[1], version


class ForeignHolder:
    """Holds a session's lock in the store the way an httpd on another host
    would: on S3 a lock object naming another host, with a lease; on the
    filesystem flock(2) on the session's lock file."""

    def __init__(self, backend, inst, rgw, loc, lease_s):
        self.backend, self.inst, self.rgw = backend, inst, rgw
        uuid, version = _uuid_and_version(loc)
        if backend == "s3":
            self.key = (inst.storage["prefix"]
                        + f"uploads/{uuid}/lock.{version:020d}.0")
            expires = int((time.time() + lease_s) * 1e6)
            rgw.client().put_object(
                Bucket=rgw.bucket, Key=self.key,
                Body=f"ocireg-lock/1 other-host.example 1 4242 {expires}".encode())
        else:
            self.f = open(inst.data_dir / "uploads" / f"{uuid}.lock", "a+")
            fcntl.flock(self.f, fcntl.LOCK_EX)

    def release(self):
        if self.backend != "s3":
            self.f.close()


def test_session_locked_by_another_host_waits_for_it(pair, backend, request):
    a, b = pair
    rgw = request.getfixturevalue("rgw") if backend == "s3" else None
    # More than a part (5 MiB): on S3 the lock is taken to send a part.
    data = os.urandom(6 * MIB + 3)
    r = requests.post(f"{a.base_url}/v2/durable/foreign/blobs/uploads/")
    loc = r.headers["Location"]
    holder = ForeignHolder(backend, a, rgw, loc, lease_s=3)
    r = requests.patch(b.base_url + loc, data=data)
    assert r.status_code == 416, r.text
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert r.headers["Range"] == "0-0"
    # On S3 the lease runs out (the holder is gone, it stopped renewing);
    # on the filesystem the holder lets go.
    holder.release()
    deadline = time.monotonic() + 30
    while True:
        r = requests.patch(b.base_url + loc, data=data)
        if r.status_code != 416:
            break
        assert time.monotonic() < deadline, "the lock was never taken over"
        time.sleep(0.2)
    assert r.status_code == 202, r.text
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(a.base_url + r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    assert requests.get(f"{b.base_url}/v2/durable/foreign/blobs/{digest}").content == data


def test_child_killed_mid_patch_resumed_on_the_other_server(pair, backend, request):
    a, b = pair
    rgw = request.getfixturevalue("rgw") if backend == "s3" else None
    data = os.urandom(9 * MIB + 5)
    r = requests.post(f"{a.base_url}/v2/durable/killed/blobs/uploads/")
    loc = r.headers["Location"]
    first = 2 * MIB
    r = requests.patch(a.base_url + loc, data=data[:first],
                       headers={"Content-Range": f"0-{first - 1}"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    held = _patch_held_open(a, loc, first, len(data) - first)
    try:
        held.send(data[first:first + 6 * MIB])  # a full 5 MiB part on S3
        if rgw:
            # the part went out while the body arrived: it is in the
            # bucket, under a multipart upload no record names yet
            uuid, _ = _uuid_and_version(loc)
            key = a.storage["prefix"] + f"data/{uuid}"
            deadline = time.monotonic() + 20
            while [m[2] for m in rgw.multipart_uploads(key)] != [[5 * MIB]]:
                assert time.monotonic() < deadline, rgw.multipart_uploads(key)
                time.sleep(0.05)
        kill_child_serving(a, held.sock)
    finally:
        held.close()
    # The client asks the other server where to go on, and finishes there.
    st = requests.get(b.base_url + loc)
    assert st.status_code == 204, st.text
    offset = int(st.headers["Range"].split("-")[1]) + 1
    assert offset == first
    r = requests.patch(b.base_url + st.headers["Location"], data=data[offset:],
                       headers={"Content-Range": f"{offset}-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(b.base_url + r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    got = requests.get(f"{a.base_url}/v2/durable/killed/blobs/{digest}").content
    assert hashlib.sha256(got).hexdigest() == digest[7:]


def test_full_table_refuses_new_uploads_but_serves_started_ones(pair_small_b):
    a, b = pair_small_b
    r = requests.post(f"{b.base_url}/v2/durable/full/blobs/uploads/")
    assert r.status_code == 202, r.text
    mine = r.headers["Location"]
    # b's table is full: a new upload there waits
    r = requests.post(f"{b.base_url}/v2/durable/full/blobs/uploads/")
    assert r.status_code == 429, r.text
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert int(r.headers["Retry-After"]) > 0
    # an upload started elsewhere goes on through b, from the store alone
    data = os.urandom(6 * MIB + 1)
    r = requests.post(f"{a.base_url}/v2/durable/full/blobs/uploads/")
    loc = r.headers["Location"]
    for off in range(0, len(data), 2 * MIB):
        chunk = data[off:off + 2 * MIB]
        r = requests.patch(b.base_url + loc, data=chunk,
                           headers={"Content-Range": f"{off}-{off + len(chunk) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        st = requests.get(b.base_url + loc)
        assert st.status_code == 204 and st.headers["Range"] == r.headers["Range"]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.put(b.base_url + loc, params={"digest": digest})
    assert r.status_code == 201, r.text
    assert requests.get(f"{a.base_url}/v2/durable/full/blobs/{digest}").content == data
    # and b's own session is still there
    assert requests.get(b.base_url + mine).status_code == 204
    assert requests.delete(b.base_url + mine).status_code == 204


def _sweep_periods(inst):
    periods = [int(m.group(1)) for m in
               re.finditer(r"OCIREG00036: sweeping store \w+, period (\d+)",
                           "\n".join(inst.error_log_since(0)))]
    assert len(periods) == len(set(periods)), periods
    return set(periods)


def test_abandoned_data_swept_by_one_server_per_period(pair_expiring):
    a, b = pair_expiring
    # an upload both servers know of, then abandoned
    r = requests.post(f"{a.base_url}/v2/durable/sweep/blobs/uploads/")
    loc = r.headers["Location"]
    r = requests.patch(b.base_url + loc, data=os.urandom(1000))
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while True:
        pa, pb = _sweep_periods(a), _sweep_periods(b)
        gone = requests.get(a.base_url + r.headers["Location"]).status_code == 404
        if gone and len(pa | pb) >= 6:
            break
        assert time.monotonic() < deadline, (gone, pa, pb)
        time.sleep(0.2)
    # both ran their watchdog every second; each period was swept once
    assert not pa & pb, (pa, pb)
