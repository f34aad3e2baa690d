"""Upload sessions are kept in the store, not only in one httpd's shared
memory: a second httpd on the same store (another host, in production)
continues an upload, and so does httpd after a full stop and start."""

import hashlib
import os

import pytest
import requests

from httpd_harness import HttpdInstance, bad_log_lines

MIB = 1024 * 1024


class SharedFsInstance(HttpdInstance):
    """An httpd whose filesystem store is another instance's."""

    def __init__(self, *a, store_dir, **kw):
        super().__init__(*a, **kw)
        self.store_dir = store_dir

    def storage_conf(self):
        return f'    OCIRegStorage filesystem "{self.store_dir}"'


@pytest.fixture
def pair(backend, base_dir, request):
    """Two httpd instances, separate shared memory, one store."""
    tag = request.node.name.split("[")[0][-20:].replace("_", "-")
    if backend == "s3":
        rgw = request.getfixturevalue("rgw")
        storage = rgw.storage(base_dir, f"durable-{tag}", part_size="5M")
        a = HttpdInstance(f"dur-a-{tag}-s3", base_dir, storage=storage)
        b = HttpdInstance(f"dur-b-{tag}-s3", base_dir, storage=storage)
    else:
        a = HttpdInstance(f"dur-a-{tag}-fs", base_dir)
        b = SharedFsInstance(f"dur-b-{tag}-fs", base_dir, store_dir=a.data_dir)
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
