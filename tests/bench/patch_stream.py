#!/usr/bin/env python3
"""One blob in a single PATCH with chunked transfer encoding (how docker and
containers/image push), then the closing PUT, against a running registry.
Prints throughput, finalize latency and the growth of every httpd child's
peak RSS (VmHWM). A measurement, not a test: it asserts nothing about time,
but it does check the digest read back.

usage: patch_stream.py --port 5000 --pidfile var/.httpd/httpd.pid [--size-mib 1024]
"""
import argparse
import glob
import hashlib
import http.client
import os
import re
import time


def children(ppid):
    out = {}
    for path in glob.glob("/proc/[0-9]*/status"):
        try:
            text = open(path).read()
        except OSError:
            continue
        if re.search(r"^PPid:\s+%d$" % ppid, text, re.M):
            out[int(path.split("/")[2])] = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repo", default="bench/stream")
    a = ap.parse_args()
    ppid = int(open(a.pidfile).read())
    before = children(ppid)

    block = os.urandom(1 << 20)
    h = hashlib.sha256()

    def body():
        for i in range(a.size_mib):
            # vary each MiB so the blob is not trivially repetitive
            chunk = i.to_bytes(8, "little") + block[8:]
            h.update(chunk)
            yield chunk

    c = http.client.HTTPConnection("127.0.0.1", a.port)
    c.request("POST", f"/v2/{a.repo}/blobs/uploads/")
    r = c.getresponse(); r.read()
    loc = r.getheader("Location")
    t0 = time.monotonic()
    c.request("PATCH", loc, body=body(), encode_chunked=True,
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse(); r.read()
    t1 = time.monotonic()
    assert r.status == 202, r.status
    loc = r.getheader("Location")  # names the session's new version
    digest = "sha256:" + h.hexdigest()
    t2 = time.monotonic()
    c.request("PUT", loc + ("&" if "?" in loc else "?") + f"digest={digest}")
    r = c.getresponse(); r.read()
    t3 = time.monotonic()
    assert r.status == 201, r.status
    c.request("HEAD", f"/v2/{a.repo}/blobs/{digest}")
    r = c.getresponse(); r.read()
    assert r.getheader("Docker-Content-Digest") == digest
    after = children(ppid)
    size = a.size_mib << 20
    print(f"PATCH {a.size_mib} MiB chunked: {size / 1e6 / (t1 - t0):.0f} MB/s ({t1 - t0:.2f} s)")
    print(f"closing PUT: {(t3 - t2) * 1000:.1f} ms")
    for pid, hwm in sorted(after.items()):
        print(f"child {pid}: peak RSS {before.get(pid, 0)} -> {hwm} KiB "
              f"(+{hwm - before.get(pid, hwm)} KiB)")


if __name__ == "__main__":
    main()
