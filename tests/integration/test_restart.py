"""A restart (`apache2ctl graceful` as Debian's logrotate `reload` does, or
`apache2ctl restart`) must not lose upload sessions in progress: the spec's resumable
push lets a client continue an upload later, and the module's design keeps
sessions in a table any process can continue."""

import os
import signal
import time

import pytest

from ocireg_client import Registry, sha256, with_query


@pytest.fixture
def restartable(httpd_factory):
    # Its own instance, so that restarting it disturbs no other test.
    return httpd_factory(f"restart-{os.urandom(3).hex()}")


def graceful_restart(inst, timeout=20, sig=signal.SIGUSR1):
    before = inst.startup_output().count("AH00489")
    os.kill(inst.proc.pid, sig)
    deadline = time.monotonic() + timeout
    while inst.startup_output().count("AH00489") <= before:
        assert time.monotonic() < deadline, "graceful restart did not complete"
        assert inst.running, "httpd died on graceful restart"
        time.sleep(0.05)


def test_graceful_restart_serves_content(restartable):
    reg = Registry(restartable.base_url)
    img = reg.push_image("it/restart/content", "v1")
    graceful_restart(restartable)
    assert reg.get("/v2/").status_code == 200
    assert reg.get_manifest("it/restart/content", "v1").content == img["manifest"]
    d = reg.push_blob("it/restart/content", b"after restart")
    assert reg.get(f"/v2/it/restart/content/blobs/{d}").content == b"after restart"
    reg.close()


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP], ids=["graceful", "restart"])
def test_restart_keeps_upload_sessions(restartable, sig):
    reg = Registry(restartable.base_url)
    loc, _ = reg.start_upload("it/restart/upload")
    r = reg.patch(loc, data=b"a" * 100, headers={"Content-Range": "0-99"})
    assert r.status_code == 202
    loc = reg.location(r)
    graceful_restart(restartable, sig=sig)
    s = reg.get(loc)
    assert s.status_code == 204, f"upload session lost by a {sig.name} restart: {s.status_code} {s.text}"
    assert s.headers["Range"] == "0-99"
    r = reg.patch(loc, data=b"b" * 100, headers={"Content-Range": "100-199"})
    assert r.status_code == 202
    r = reg.put(with_query(reg.location(r), digest=sha256(b"a" * 100 + b"b" * 100)))
    assert r.status_code == 201
    reg.close()
