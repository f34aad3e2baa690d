"""The shared cache of store answers (OCIRegCacheEntries, OCIRegCacheSeconds),
counted at the wire. On the host that pushed, reads of what it just wrote
cost no metadata request; a change this host makes is served at once,
never the answer before it; another host's change shows here within
OCIRegCacheSeconds."""

import os
import sys
import time
from pathlib import Path

import pytest
import requests

import conftest
from conftest import BACKENDS
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines, module_path
from ocireg_client import MT_OCI_MANIFEST, Registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")

TTL = 2


@pytest.fixture(scope="module")
def hosts(rgw, base_dir):
    """Two httpd instances (two hosts) on one bucket prefix, through one
    counting proxy, each with its own cache (OCIRegCacheSeconds 2)."""
    if not module_path().exists():
        pytest.fail(f"{module_path()} does not exist; run `make build` first",
                    pytrace=False)
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    storage = rgw.storage(base_dir, "s3-cache")
    storage["endpoint"] = proxy.endpoint
    insts = [HttpdInstance(f"s3-cache-{n}", base_dir, storage=storage,
                           global_extra=f"OCIRegCacheSeconds {TTL}")
             for n in ("a", "b")]
    started = []
    try:
        for inst in insts:
            try:
                inst.start()
            except HttpdError as e:
                pytest.fail(str(e), pytrace=False)
            started.append(inst)
            conftest._RUNNING.append(inst)
        proxy.wait_prepared(len(started))
        yield insts[0], insts[1], proxy
    finally:
        for inst in started:
            conftest._RUNNING.remove(inst)
            inst.stop()
        proxy.close()
    for inst in started:
        assert bad_log_lines(inst.error_log_since(0)) == [], inst.name


def quiet(proxy):
    """Until the proxy saw nothing new for a while and nothing is in
    flight: what earlier requests do after their answer is over."""
    seen = -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with proxy.lock:
            n, busy = len(proxy.log), proxy.in_flight
        if n == seen and not busy:
            return
        seen = n
        time.sleep(0.2)
    raise AssertionError("the proxy did not go quiet")


def cost(proxy, fn):
    quiet(proxy)
    proxy.reset()
    r = fn()
    return r, [(q.method, q.path) for q in proxy.s3_requests()]


def eventually(fn, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_reads_after_a_push_on_the_same_host(hosts):
    a, _, proxy = hosts
    reg = Registry(a.base_url)
    img = reg.push_image("cache/same", tag="v1", nlayers=2, layer_size=300 * 1024)
    layer = img["layers"][0]["digest"]

    # The link is known here: a GET is the data's GET alone, a HEAD nothing.
    r, reqs = cost(proxy, lambda: reg.get(f"/v2/cache/same/blobs/{layer}"))
    assert r.status_code == 200 and len(r.content) == 300 * 1024
    assert [m for m, _ in reqs] == ["GET"], reqs
    r, reqs = cost(proxy, lambda: reg.head(f"/v2/cache/same/blobs/{layer}"))
    assert r.status_code == 200 and reqs == []
    # A tag this host set, and the manifest link it wrote: a GET by tag
    # is the link's GET (the manifest's bytes), a HEAD nothing.
    r, reqs = cost(proxy, lambda: reg.get_manifest("cache/same", "v1"))
    assert r.status_code == 200 and r.content == img["manifest"]
    assert [m for m, _ in reqs] == ["GET"], reqs
    r, reqs = cost(proxy, lambda: reg.get_manifest("cache/same", "v1", method="HEAD"))
    assert r.status_code == 200 and reqs == []
    assert r.headers["Docker-Content-Digest"] == img["digest"]


def test_changes_on_this_host_are_served_at_once(hosts):
    a, _, _ = hosts
    reg = Registry(a.base_url)
    one = reg.push_image("cache/moves", tag="latest")
    assert reg.get_manifest("cache/moves", "latest").content == one["manifest"]
    two = reg.push_image("cache/moves", tag="latest")
    r = reg.get_manifest("cache/moves", "latest")
    assert r.content == two["manifest"]
    assert r.headers["Docker-Content-Digest"] == two["digest"]
    # a deleted tag, manifest and blob link: gone here at once
    assert reg.delete("/v2/cache/moves/manifests/latest").status_code == 202
    assert reg.get_manifest("cache/moves", "latest").status_code == 404
    assert reg.delete(f"/v2/cache/moves/manifests/{one['digest']}").status_code == 202
    assert reg.get_manifest("cache/moves", one["digest"], method="HEAD").status_code == 404
    layer = two["layers"][0]["digest"]
    assert reg.head(f"/v2/cache/moves/blobs/{layer}").status_code == 200
    assert reg.delete(f"/v2/cache/moves/blobs/{layer}").status_code == 202
    assert reg.head(f"/v2/cache/moves/blobs/{layer}").status_code == 404


def test_another_hosts_change_shows_within_the_cache_seconds(hosts):
    a, b, proxy = hosts
    ra, rb = Registry(a.base_url), Registry(b.base_url)
    one = ra.push_image("cache/elsewhere", tag="latest")
    # b reads (and keeps) the tag and a link
    assert rb.get_manifest("cache/elsewhere", "latest").content == one["manifest"]
    layer = one["layers"][0]["digest"]
    assert rb.head(f"/v2/cache/elsewhere/blobs/{layer}").status_code == 200
    r, reqs = cost(proxy, lambda: rb.head(f"/v2/cache/elsewhere/blobs/{layer}"))
    assert r.status_code == 200 and reqs == []

    # a moves the tag and deletes the link: b sees both within the TTL
    two = ra.push_image("cache/elsewhere", tag="latest")
    assert ra.delete(f"/v2/cache/elsewhere/blobs/{layer}").status_code == 202
    moved_at = time.monotonic()
    eventually(lambda: rb.get_manifest("cache/elsewhere", "latest").content
               == two["manifest"], "b never saw the tag move")
    eventually(lambda: rb.head(f"/v2/cache/elsewhere/blobs/{layer}").status_code == 404,
               "b never saw the link go")
    # (bounded by the cache's seconds; no wall-clock assertion beyond
    # convergence: the bound is the directive's, checked by its reads)
    assert time.monotonic() - moved_at < 30
    # and b serves a's bytes for what a linked meanwhile
    assert rb.get_manifest("cache/elsewhere", two["digest"]).status_code == 200


def test_no_cache_when_switched_off(rgw, base_dir):
    """OCIRegCacheEntries 0: every read goes to the store."""
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    storage = rgw.storage(base_dir, "s3-nocache")
    storage["endpoint"] = proxy.endpoint
    inst = HttpdInstance("s3-nocache", base_dir, storage=storage,
                         global_extra="OCIRegCacheEntries 0")
    inst.start()
    conftest._RUNNING.append(inst)
    try:
        proxy.wait_prepared()
        reg = Registry(inst.base_url)
        d = reg.push_blob("cache/off", os.urandom(1000))
        r, reqs = cost(proxy, lambda: reg.head(f"/v2/cache/off/blobs/{d}"))
        assert r.status_code == 200 and [m for m, _ in reqs] == ["HEAD"], reqs
    finally:
        conftest._RUNNING.remove(inst)
        inst.stop()
        proxy.close()
    assert bad_log_lines(inst.error_log_since(0)) == []
    assert requests is not None and MT_OCI_MANIFEST
