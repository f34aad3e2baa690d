#!/usr/bin/python3
"""mod_ocireg against CNCF distribution (Debian's docker-registry 2.8), same
client, same storage, same machine. A benchmark, not a test: it asserts no
timings, but every timed push is checked (the blob pulled back hashes to the
digest pushed) and a failed check aborts the run.

usage: bench.py [--quick] [--reps N] [--only SCENARIOS] [--stores fs,s3]
                [--rtt-ms MS] [--json FILE]

`--only latency` runs just the latency scenario (S3 behind a delaying
proxy, tests/bench/rttproxy.py); `--only pullthrough` just the pull-through
rows (OCIRegMirror against distribution's proxy mode, one upstream). Prints one markdown table (stdout), one
more for scenario 9 and one for the latency scenario; progress goes to stderr. See README.md
in this directory for what each row measures.
"""
import argparse
import concurrent.futures
import glob
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RGW_SH = os.path.join(REPO, "tests", "fixtures", "rgw.sh")
MiB = 1 << 20
PART = 64 * MiB                 # S3 part size of both registries
AK, SK = "OCIREGBENCH", "ocireg-bench-secret-0123456789"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn(http.client.HTTPConnection):
    """http.client with TCP_NODELAY (as Go and curl clients) and an optional
    small SO_SNDBUF, set before connect."""

    def __init__(self, port, sndbuf=None, timeout=600):
        super().__init__("127.0.0.1", port, timeout=timeout)
        self.sndbuf = sndbuf

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        s.settimeout(self.timeout)
        s.connect((self.host, self.port))
        self.sock = s


def req(c, method, url, body=None, headers=None, want=None):
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if want is not None and r.status not in (want if isinstance(want, tuple) else (want,)):
        raise RuntimeError(f"{method} {url}: HTTP {r.status} (wanted {want}): {data[:300]!r}")
    return r, data


def path_of(loc):
    u = urllib.parse.urlsplit(loc)
    return u.path + ("?" + u.query if u.query else "")


def with_digest(loc, digest):
    return loc + ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)


def sendv(sock, prefix, mv):
    """sendall of prefix+mv in one writev where possible."""
    n = sock.sendmsg([prefix, mv])
    if n < len(prefix):
        sock.sendall(prefix[n:])
        sock.sendall(mv)
    elif n < len(prefix) + len(mv):
        sock.sendall(mv[n - len(prefix):])


# ---------------------------------------------------------------- memory

def proc_status(pid):
    try:
        text = open(f"/proc/{pid}/status").read()
    except OSError:
        return None
    ppid = re.search(r"^PPid:\s+(\d+)", text, re.M)
    rss = re.search(r"^VmRSS:\s+(\d+)", text, re.M)
    hwm = re.search(r"^VmHWM:\s+(\d+)", text, re.M)
    if not (ppid and rss and hwm):      # kernel thread or zombie
        return None
    return int(ppid.group(1)), int(rss.group(1)), int(hwm.group(1))


def children(ppid):
    out = []
    for path in glob.glob("/proc/[0-9]*/status"):
        pid = int(path.split("/")[2])
        st = proc_status(pid)
        if st and st[0] == ppid:
            out.append(pid)
    return out


class MemProbe:
    """Peak RSS growth of a registry's serving processes during one job:
    VmHWM is reset (clear_refs 5) at the start; growth is the sum over the
    processes of VmHWM at the end minus VmRSS at the start (a child forked
    during the job counts from its siblings' starting RSS); total is the sum
    of the VmHWMs (plus the httpd parent)."""

    def __init__(self, reg):
        self.reg = reg
        self.base = {}
        for pid in reg.server_pids():
            st = proc_status(pid)
            if st:
                self.base[pid] = st[1]
                try:
                    with open(f"/proc/{pid}/clear_refs", "w") as f:
                        f.write("5")
                except OSError:
                    pass

    def result(self):
        pids = set(self.reg.server_pids())
        start = min(self.base.values()) if self.base else 0
        growth = total = 0
        for pid in pids:
            st = proc_status(pid)
            if not st:
                continue
            growth += max(0, st[2] - self.base.get(pid, start))
            total += st[2]
        extra = sum(proc_status(p)[1] for p in self.reg.other_pids() if proc_status(p))
        return growth / 1024.0, (total + extra) / 1024.0   # MiB


class PssSampler:
    """Peak of the summed PSS of the registry's processes, sampled every
    0.1 s (RSS sums count httpd's shared pages once per child; PSS splits
    them)."""

    def __init__(self, reg):
        self.pids = lambda: reg.server_pids() + reg.other_pids()
        self.peak = 0
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop_ev.is_set():
            tot = 0
            for pid in self.pids():
                try:
                    m = re.search(r"^Pss:\s+(\d+)", open(f"/proc/{pid}/smaps_rollup").read(), re.M)
                    tot += int(m.group(1)) if m else 0
                except OSError:
                    pass
            self.peak = max(self.peak, tot)
            self.stop_ev.wait(0.1)

    def result(self):
        self.stop_ev.set()
        self.th.join()
        return self.peak / 1024.0


# ---------------------------------------------------------------- S3 side

class Rgw:
    def __init__(self, work):
        self.dir = os.path.join(work, "rgw")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.started = False
        self.logfile = os.path.join(self.dir, "log", "client.rgw.a.log")

    def start(self, osd_size):
        env = dict(os.environ, OSD_SIZE=osd_size)
        self.started = True
        p = subprocess.run(["bash", RGW_SH, "start", self.dir, str(self.port), AK, SK, "ocireg"],
                           env=env, capture_output=True, text=True, timeout=300)
        if p.returncode:
            raise RuntimeError("rgw.sh start failed:\n" + p.stdout + p.stderr)
        log(p.stdout.strip().splitlines()[-1])
        self.s3 = self.client()
        self.s3.create_bucket(Bucket="dist")

    def stop(self):
        if self.started:
            subprocess.run(["bash", RGW_SH, "stop", self.dir], capture_output=True, timeout=120)
            self.started = False

    def client(self):
        import boto3
        import botocore.auth
        from botocore.config import Config
        # plain http: botocore would SHA-256 every body for the signature;
        # the registries send UNSIGNED-PAYLOAD-style requests, so do we.
        botocore.auth.S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=AK,
                            aws_secret_access_key=SK, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          max_pool_connections=16))

    def empty(self, bucket):
        c = self.s3
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                c.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})
        for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            c.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])

    def gc(self):
        subprocess.run(["radosgw-admin", "-c", os.path.join(self.dir, "ceph.conf"),
                        "gc", "process", "--include-all"], capture_output=True, timeout=300)

    def log_offset(self):
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def count_requests(self, offset, bucket):
        """S3 requests to BUCKET logged by radosgw (one beast access line
        each) since OFFSET, after the log has gone quiet."""
        last, still = -1, 0
        while still < 3:
            time.sleep(0.1)
            size = self.log_offset()
            still = still + 1 if size == last else 0
            last = size
        with open(self.logfile, "rb") as f:
            f.seek(offset)
            text = f.read().decode("latin-1")
        ops = {}
        n = 0
        for m in re.finditer(r'beast: \S+ \S+ - \S+ \[[^\]]*\] "(\w+) /([^/?\s]+)[^"]*" (\d+)', text):
            if m.group(2) != bucket:
                continue
            n += 1
            ops[m.group(1)] = ops.get(m.group(1), 0) + 1
        return n, ops


# ---------------------------------------------------------------- registries

class Registry:
    name = "?"
    proc = None

    def __init__(self, work, store, rgw):
        self.work = work
        self.store = store
        self.rgw = rgw
        self.port = free_port()

    def wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start, see {self.logpath}")
            try:
                c = Conn(self.port, timeout=2)
                r, _ = req(c, "GET", "/v2/")
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready, see {self.logpath}")

    def stop(self):
        if not self.proc:
            return
        try:
            kids = children(self.proc.pid)
        except Exception:       # never let bookkeeping keep a server alive
            kids = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in kids:    # children that outlived their parent
            deadline = time.monotonic() + 5
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
            st = proc_status(pid)
            if st and st[0] in (self.proc.pid, 1):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.proc = None
        self.logf.close()

    def restart(self):
        self.stop()
        self.wipe()
        self.start()

    def other_pids(self):
        return []


class Ocireg(Registry):
    name = "mod_ocireg"

    def __init__(self, work, store, rgw, endpoint=None, part=PART, tag=None, mirror=None):
        super().__init__(work, store, rgw)
        tag = tag or store
        self.data = os.path.join(work, f"ocireg-{tag}")
        self.logpath = os.path.join(work, f"ocireg-{tag}.log")
        self.endpoint = endpoint or (rgw.endpoint if rgw else None)
        self.part = part
        self.mirror = mirror        # upstream URL: a pull-through mirror of every name

    def start(self):
        env = dict(os.environ)
        for k in [k for k in env if k.startswith(("S3_", "MIRROR"))]:
            del env[k]
        if self.mirror:
            # conf/run.sh: OCIRegMirror * <url> insecure (plain http upstream)
            env.update(MIRROR=self.mirror, MIRROR_ALLOW_INSECURE="1")
        if self.store == "s3":
            env.update(S3_ENDPOINT=self.endpoint, S3_BUCKET="ocireg", S3_ACCESS_KEY=AK,
                       S3_SECRET_KEY=SK, S3_REGION="auto", S3_PART_SIZE=f"{self.part >> 20}M",
                       S3_ALLOW_INSECURE="1")  # the local RGW is plain http
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(["sh", os.path.join(REPO, "conf", "run.sh"), REPO,
                                      str(self.port), self.data], env=env,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready()

    def wipe(self):
        if self.store == "fs":
            if os.path.isdir(self.data):
                for e in os.listdir(self.data):
                    if e != ".httpd":
                        shutil.rmtree(os.path.join(self.data, e), ignore_errors=True)
        else:
            self.rgw.empty("ocireg")

    def server_pids(self):
        return children(self.proc.pid)

    def other_pids(self):
        return [self.proc.pid]

    bucket = "ocireg"


class Distribution(Registry):
    name = "distribution"
    bucket = "dist"

    def __init__(self, work, store, rgw, endpoint=None, part=PART, tag=None, proxy=None):
        super().__init__(work, store, rgw)
        tag = tag or store
        self.root = os.path.join(work, f"dist-{tag}")
        self.conf = os.path.join(work, f"dist-{tag}.yml")
        self.logpath = os.path.join(work, f"dist-{tag}.log")
        if store == "fs":
            st = f"  filesystem:\n    rootdirectory: {self.root}\n"
        else:
            st = ("  s3:\n"
                  f"    accesskey: {AK}\n    secretkey: {SK}\n    region: auto\n"
                  f"    regionendpoint: {endpoint or rgw.endpoint}\n    forcepathstyle: true\n"
                  f"    bucket: dist\n    secure: false\n    v4auth: true\n"
                  f"    chunksize: {part}\n")
        with open(self.conf, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\n"
                    "storage:\n" + st +
                    "  redirect:\n    disable: true\n  delete:\n    enabled: true\n"
                    "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n"
                    # proxy mode: a pull-through cache of that registry
                    + (f"proxy:\n  remoteurl: {proxy}\n" if proxy else ""))

    def start(self):
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)     # docker-registry panics where it is set
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.conf], env=env,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready()

    def wipe(self):
        if self.store == "fs":
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.rgw.empty("dist")

    def server_pids(self):
        return [self.proc.pid]


# ---------------------------------------------------------------- client ops

def push_stream(port, repo, mv, digest, piece=256 * 1024, chunk=MiB, sndbuf=None):
    """POST, one PATCH with chunked transfer encoding (no Content-Length),
    closing PUT. Returns total seconds, PUT seconds, longest blocked write."""
    c = Conn(port, sndbuf=sndbuf)
    t0 = time.monotonic()
    _, _ = None, None
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
    loc = path_of(r.getheader("Location"))
    c.putrequest("PATCH", loc, skip_accept_encoding=True)
    c.putheader("Content-Type", "application/octet-stream")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    sock = c.sock
    stall = 0.0
    prefix = b""
    n = len(mv)
    for off in range(0, n, chunk):
        ln = min(chunk, n - off)
        prefix += b"%x\r\n" % ln
        for p in range(off, off + ln, piece):
            t = time.monotonic()
            sendv(sock, prefix, mv[p:min(p + piece, off + ln)])
            d = time.monotonic() - t
            if d > stall:
                stall = d
            prefix = b""
        prefix = b"\r\n"
    t = time.monotonic()
    sock.sendall(prefix + b"0\r\n\r\n")
    stall = max(stall, time.monotonic() - t)
    r = c.getresponse()
    body = r.read()
    if r.status != 202:
        raise RuntimeError(f"PATCH: HTTP {r.status} {body[:300]!r}")
    loc = path_of(r.getheader("Location"))
    t1 = time.monotonic()
    r, _ = req(c, "PUT", with_digest(loc, digest), want=201)
    t2 = time.monotonic()
    c.close()
    return t2 - t0, t2 - t1, stall


def push_patches(port, repo, mv, digest, size):
    c = Conn(port)
    t0 = time.monotonic()
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
    loc = path_of(r.getheader("Location"))
    n = len(mv)
    for off in range(0, n, size):
        end = min(off + size, n)
        r, _ = req(c, "PATCH", loc, body=mv[off:end], want=202,
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(end - off),
                            "Content-Range": f"{off}-{end - 1}"})
        loc = path_of(r.getheader("Location"))
    t1 = time.monotonic()
    req(c, "PUT", with_digest(loc, digest), want=201)
    t2 = time.monotonic()
    c.close()
    return t2 - t0, t2 - t1


def push_monolithic(port, repo, mv, digest):
    c = Conn(port)
    t0 = time.monotonic()
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
    loc = path_of(r.getheader("Location"))
    req(c, "PUT", with_digest(loc, digest), body=mv, want=201,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(mv))})
    t1 = time.monotonic()
    c.close()
    return t1 - t0


def verify_blob(port, repo, digest, size, buf=None):
    """GETs the blob, hashes it, compares. Returns the GET's seconds (the
    read alone, into BUF when given, hashed afterwards)."""
    c = Conn(port)
    t0 = time.monotonic()
    c.request("GET", f"/v2/{repo}/blobs/{digest}")
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"GET blob {digest}: HTTP {r.status} {r.read()[:200]!r}")
    h = hashlib.sha256()
    got = 0
    if buf is not None:
        mv = memoryview(buf)[:size]
        while got < size:
            k = r.readinto(mv[got:])
            if not k:
                break
            got += k
        r.read()
        t1 = time.monotonic()
        h.update(mv[:got])
    else:
        chunk = memoryview(bytearray(8 * MiB))
        while True:
            k = r.readinto(chunk)
            if not k:
                break
            h.update(chunk[:k])
            got += k
        t1 = time.monotonic()
    c.close()
    if got != size or "sha256:" + h.hexdigest() != digest:
        raise RuntimeError(f"CHECK FAILED: blob {digest} pulled back as {got} bytes "
                           f"sha256:{h.hexdigest()}")
    return t1 - t0


def range_get(port, repo, digest, data, length):
    mid = (len(data) // 2) & ~(MiB - 1)
    c = Conn(port)
    t0 = time.monotonic()
    r, body = req(c, "GET", f"/v2/{repo}/blobs/{digest}",
                  headers={"Range": f"bytes={mid}-{mid + length - 1}"}, want=206)
    t1 = time.monotonic()
    c.close()
    if body != data[mid:mid + length]:
        raise RuntimeError("CHECK FAILED: range GET returned other bytes")
    return t1 - t0


def push_small_image(port, repo, tags=10):
    layer = os.urandom(4096)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    c = Conn(port)
    for b in (layer, config):
        r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
        req(c, "PUT", with_digest(path_of(r.getheader("Location")), sha(b)), body=b, want=201,
            headers={"Content-Type": "application/octet-stream"})
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": sha(config), "size": len(config)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": sha(layer), "size": len(layer)}]}).encode()
    for i in range(tags):
        req(c, "PUT", f"/v2/{repo}/manifests/v{i}", body=man, want=201,
            headers={"Content-Type": OCI_MANIFEST})
    c.close()
    return sha(layer)


def parse_lat(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    v = float(m.group(1))
    return v * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[m.group(2)]


def run_ab_head(url, seconds):
    """HEAD load with ab -i -k: wrk 4.1 waits for a HEAD response's body
    (Content-Length) and never completes one."""
    out = subprocess.run(["ab", "-q", "-k", "-i", "-c", "16", "-t", str(seconds), "-n", "100000000",
                          url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    p99 = float(re.search(r"^\s+99%\s+(\d+)", out, re.M).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    if failed or "Non-2xx" in out:
        raise RuntimeError(f"ab {url}: errors:\n{out}")
    return rps, p99


def run_wrk(url, seconds, script=None, headers=()):
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = parse_lat(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    if bad:
        raise RuntimeError(f"wrk {url}: non-2xx answers:\n{out}")
    if errs and re.search(r"[1-9]", errs.group(1)):
        # A connection the server closed while wrk read on it (keep-alive
        # limits) does not make the answers wrong; it is reported, not fatal.
        log(f"  wrk {url}: socket errors: {errs.group(1)}")
    return rps, p99


# ---------------------------------------------------------------- ceilings

def ceiling_sha256():
    out = subprocess.run(["openssl", "speed", "-seconds", "2", "-bytes", "16384",
                          "-evp", "sha256"], capture_output=True, text=True).stdout
    m = re.search(r"^sha256\s+([\d.]+)k", out, re.M)
    return float(m.group(1)) * 1000 / 1e6      # MB/s


def ceiling_loopback(mv):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    total = len(mv)
    got = [0]

    def rx():
        s, _ = srv.accept()
        b = memoryview(bytearray(4 * MiB))
        while got[0] < total:
            k = s.recv_into(b)
            if not k:
                break
            got[0] += k
        s.close()
    th = threading.Thread(target=rx)
    th.start()
    c = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    for off in range(0, total, MiB):
        c.sendall(mv[off:off + MiB])
    th.join()
    t1 = time.monotonic()
    c.close()
    srv.close()
    return total / 1e6 / (t1 - t0)


def ceiling_rgw(rgw, work, size, parallel):
    """RGW's raw multipart ingest: SIZE bytes in 64 MiB parts, PARALLEL parts
    in flight, each sent by curl (C, UNSIGNED-PAYLOAD, from the page cache),
    from CreateMultipartUpload to CompleteMultipartUpload."""
    c = rgw.s3
    part_file = os.path.join(work, "part.bin")
    if not os.path.exists(part_file):
        with open(part_file, "wb") as f:
            f.write(os.urandom(PART))
    n = max(1, size // PART)
    key = f"ceiling/raw-{parallel}"
    t0 = time.monotonic()
    up = c.create_multipart_upload(Bucket="ocireg", Key=key)["UploadId"]

    def one(i):
        url = (f"{rgw.endpoint}/ocireg/{key}?partNumber={i + 1}"
               f"&uploadId={urllib.parse.quote(up, safe='')}")
        out = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-D", "-", "-T", part_file,
                              "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{AK}:{SK}",
                              "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", url],
                             capture_output=True, text=True, check=True).stdout
        etag = re.search(r"^etag:\s*(\S+)", out, re.M | re.I).group(1)
        return {"PartNumber": i + 1, "ETag": etag}
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        done = list(ex.map(one, range(n)))
    c.complete_multipart_upload(Bucket="ocireg", Key=key, UploadId=up,
                                MultipartUpload={"Parts": done})
    t1 = time.monotonic()
    c.delete_object(Bucket="ocireg", Key=key)
    return n * PART / 1e6 / (t1 - t0)


# ---------------------------------------------------------------- latency

RTTPROXY = os.path.join(REPO, "tests", "bench", "rttproxy.py")
LAT_PART = 16 * MiB             # part size of both registries in the latency scenario


class RttProxy:
    """tests/bench/rttproxy.py in its own process (so that its threads do not
    share the client's interpreter lock while the client's send is timed):
    delays every byte RTT/2 each way and logs each S3 request with the time
    its answer reached the registry."""

    def __init__(self, target_port, rtt_ms):
        self.proc = subprocess.Popen(["/usr/bin/python3", RTTPROXY, str(target_port), str(rtt_ms)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.rtt_ms = rtt_ms

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def set_rtt(self, ms):
        self.rtt_ms = ms
        self.cmd(f"rtt {ms}")

    def quiet(self, timeout=300):
        """Polls the proxy until its request counter is stable: no request
        waits for its answer and no byte has crossed for a window of
        max(0.5 s, 2 RTT) (a registry's next request follows an answer
        within milliseconds)."""
        window = max(0.5, 2 * self.rtt_ms / 1000.0)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            st = self.cmd("state")
            if st["inflight"] == 0 and st["idle_s"] >= window and st["n"] == (last or st["n"]):
                return st["n"]
            last = st["n"]
            time.sleep(0.05)
        raise RuntimeError("S3 proxy never went quiet")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait(10)


def measure_s3(proxy, op):
    """Runs op() -> (seconds, answer time or None) between two quiet points of
    the proxy. Returns seconds, S3 requests in all, S3 requests whose answer
    reached the registry before the client had its answer, the requests."""
    proxy.quiet()
    proxy.cmd("reset")
    secs, t_answer = op()
    proxy.quiet()
    log_ = proxy.cmd("log")
    before = sum(1 for r in log_ if t_answer is not None and r[4] is not None and r[4] <= t_answer)
    return secs, len(log_), before, [[r[0], r[1], r[2]] for r in log_]


def chunked_patch(port, repo, src, total, sndbuf=64 * 1024, piece=256 * 1024, chunk=MiB):
    """POST and one chunked PATCH of TOTAL bytes (SRC repeated); returns the
    longest blocked send, the connection and the session's Location."""
    c = Conn(port, sndbuf=sndbuf)
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
    loc = path_of(r.getheader("Location"))
    c.putrequest("PATCH", loc, skip_accept_encoding=True)
    c.putheader("Content-Type", "application/octet-stream")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    sock = c.sock
    stall = 0.0
    prefix = b""
    n = len(src)
    for off in range(0, total, chunk):
        ln = min(chunk, total - off)
        prefix += b"%x\r\n" % ln
        for p in range(off, off + ln, piece):
            s = p % n
            t = time.monotonic()
            sendv(sock, prefix, src[s:s + min(piece, off + ln - p)])
            stall = max(stall, time.monotonic() - t)
            prefix = b""
        prefix = b"\r\n"
    t = time.monotonic()
    sock.sendall(prefix + b"0\r\n\r\n")
    stall = max(stall, time.monotonic() - t)
    r = c.getresponse()
    body = r.read()
    if r.status != 202:
        raise RuntimeError(f"PATCH: HTTP {r.status} {body[:300]!r}")
    return stall, c, path_of(r.getheader("Location"))


def push_blob(c, repo, b):
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", want=202)
    req(c, "PUT", with_digest(path_of(r.getheader("Location")), sha(b)), body=b, want=201,
        headers={"Content-Type": "application/octet-stream"})


def p90(v):
    s = sorted(v)
    return s[min(len(s) - 1, max(0, -(-9 * len(s) // 10) - 1))]


def run_latency(cfg, work, rgw, data, rtt_ms, cleanup):
    """The latency scenario: both registries on S3 (16 MiB parts), each through
    its own delaying, counting proxy to the same RGW. Returns (Results, raw)."""
    res = Results()
    raw = {"rtt_ms": rtt_ms, "part": LAT_PART, "requests": [], "stall_runs": {},
           "finalize_runs": [], "counts": []}
    px = {"mod_ocireg": RttProxy(rgw.port, rtt_ms), "distribution": RttProxy(rgw.port, rtt_ms)}
    cleanup.extend(px.values())
    o_reg = Ocireg(work, "s3", rgw, px["mod_ocireg"].endpoint, LAT_PART, "lat")
    d_reg = Distribution(work, "s3", rgw, px["distribution"].endpoint, LAT_PART, "lat")
    cleanup.extend([o_reg, d_reg])
    store = f"S3, RTT {rtt_ms:g} ms"

    def order(rep):
        return [o_reg, d_reg] if rep % 2 == 0 else [d_reg, o_reg]

    def fresh(reg):
        reg.restart()
        px[reg.name].set_rtt(rtt_ms)

    def settle():
        for r in (o_reg, d_reg):
            r.stop()
            r.wipe()
        rgw.gc()

    # -- S3 requests per operation
    small = os.urandom(300 * 1024)
    layers = [os.urandom(1024) for _ in range(100)]
    cfgblob = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [sha(l) for l in layers]}}).encode()

    def manifest(n):
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(cfgblob), "size": len(cfgblob)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha(l), "size": len(l)} for l in layers[:n]]}).encode()
    m10, m100 = manifest(10), manifest(100)
    for rep in range(cfg["lat_reps"]):
        got = {}
        for reg in order(rep):
            fresh(reg)
            p = px[reg.name]
            g = got[reg.name] = {}
            ops = []
            c = Conn(reg.port)

            def small_push():
                t0 = time.monotonic()
                total, _, _ = push_stream(reg.port, "lat/small", memoryview(small), sha(small),
                                          piece=64 * 1024, chunk=64 * 1024)
                t1 = time.monotonic()
                return t1 - t0, t1
            secs, n, before, rq = measure_s3(p, small_push)
            g["push_n"], g["push_before"], g["push_ms"] = n, before, secs * 1000
            ops.append(("small push", rq))

            def get_blob():
                t0 = time.monotonic()
                _, body = req(c, "GET", f"/v2/lat/small/blobs/{sha(small)}", want=200)
                t1 = time.monotonic()
                if body != small:
                    raise RuntimeError("CHECK FAILED: small blob pulled back differs")
                return t1 - t0, t1

            def head_blob():
                t0 = time.monotonic()
                r, _ = req(c, "HEAD", f"/v2/lat/small/blobs/{sha(small)}", want=200)
                t1 = time.monotonic()
                if r.getheader("Docker-Content-Digest") != sha(small):
                    raise RuntimeError("CHECK FAILED: HEAD blob digest")
                return t1 - t0, t1
            for key, op in (("get", get_blob), ("head", head_blob)):
                secs, n, _, rq = measure_s3(p, op)
                g[key + "_n"], g[key + "_ms"] = n, secs * 1000
                ops.append((key, rq))

            # the manifests' blobs go in at 0 ms, uncounted
            p.set_rtt(0)

            def push_some(bs):
                pc = Conn(reg.port)
                for b in bs:
                    push_blob(pc, "lat/img", b)
                pc.close()
            blobs = layers + [cfgblob]
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                for f in [ex.submit(push_some, blobs[i::8]) for i in range(8)]:
                    f.result()
            p.quiet()
            p.set_rtt(rtt_ms)
            for key, tag, man in (("m10", "m10", m10), ("m100", "m100", m100)):
                def put_man():
                    t0 = time.monotonic()
                    req(c, "PUT", f"/v2/lat/img/manifests/{tag}", body=man, want=201,
                        headers={"Content-Type": OCI_MANIFEST})
                    t1 = time.monotonic()
                    return t1 - t0, t1
                secs, n, _, rq = measure_s3(p, put_man)
                g[key + "_n"], g[key + "_ms"] = n, secs * 1000
                ops.append((f"manifest PUT {key}", rq))
            for key, url in (("mtag", "/v2/lat/img/manifests/m10"),
                             ("mdig", f"/v2/lat/img/manifests/{sha(m10)}"),
                             ("tags", "/v2/lat/img/tags/list")):
                def get():
                    t0 = time.monotonic()
                    _, body = req(c, "GET", url, want=200, headers={"Accept": OCI_MANIFEST})
                    t1 = time.monotonic()
                    if key != "tags" and body != m10:
                        raise RuntimeError(f"CHECK FAILED: GET {url}")
                    if key == "tags" and sorted(json.loads(body)["tags"]) != ["m10", "m100"]:
                        raise RuntimeError(f"CHECK FAILED: tags list {body[:200]!r}")
                    return t1 - t0, t1
                secs, n, _, rq = measure_s3(p, get)
                g[key + "_n"], g[key + "_ms"] = n, secs * 1000
                ops.append((key, rq))
            c.close()
            reg.stop()
            raw["requests"].append({"registry": reg.name, "rep": rep,
                                    "ops": [{"op": k, "requests": rq} for k, rq in ops]})
        settle()
        raw["counts"].append(got)
        log(f"  latency rep {rep + 1}: S3 requests o/d: " + ", ".join(
            f"{k[:-2]} {got['mod_ocireg'][k]}/{got['distribution'][k]}"
            for k in got["mod_ocireg"] if k.endswith("_n")))
        for key, meta in (
                ("push_n", {"scenario": "small blob 300 KiB: POST, 1 chunked PATCH, PUT", "metric": "S3 requests in all (until quiet)"}),
                ("push_before", {"scenario": "  same", "metric": "S3 requests answered before the 201"}),
                ("push_ms", {"scenario": "  same", "metric": "ms (POST→201)"}),
                ("get_n", {"scenario": "blob GET (300 KiB)", "metric": "S3 requests"}),
                ("head_n", {"scenario": "blob HEAD", "metric": "S3 requests"}),
                ("m10_n", {"scenario": "manifest PUT, 10 layers", "metric": "S3 requests"}),
                ("m10_ms", {"scenario": "  same", "metric": "ms"}),
                ("m100_n", {"scenario": "manifest PUT, 100 layers", "metric": "S3 requests"}),
                ("m100_ms", {"scenario": "  same", "metric": "ms"}),
                ("mtag_n", {"scenario": "manifest GET by tag", "metric": "S3 requests"}),
                ("mdig_n", {"scenario": "manifest GET by digest", "metric": "S3 requests"}),
                ("tags_n", {"scenario": "tags list (2 tags)", "metric": "S3 requests"})):
            res.add(("L", key), dict(meta, n="L", store=store), got["mod_ocireg"][key],
                    got["distribution"][key])

    # -- finalize: the closing PUT after one chunked PATCH
    fbuf = bytearray(max(cfg["lat_fin_sizes"]))
    for off in range(0, len(fbuf), len(data)):
        k = min(len(data), len(fbuf) - off)
        fbuf[off:off + k] = data[:k]
    fmv = memoryview(fbuf)
    for rep in range(cfg["lat_fin_reps"]):
        got = {}
        for reg in order(rep):
            fresh(reg)
            got[reg.name] = {}
            for fsize in cfg["lat_fin_sizes"]:
                fbuf[:16] = os.urandom(16)      # a new blob: a pushed one is deduplicated
                dg = sha(fmv[:fsize])
                _, fin, _ = push_stream(reg.port, "lat/fin", fmv[:fsize], dg)
                verify_blob(reg.port, "lat/fin", dg, fsize)
                got[reg.name][fsize] = fin * 1000
            reg.stop()
        settle()
        raw["finalize_runs"].append(got)
        log(f"  latency finalize rep {rep + 1}: ms o/d: " + ", ".join(
            f"{f}: {fmt(got['mod_ocireg'][f])}/{fmt(got['distribution'][f])}"
            for f in cfg["lat_fin_sizes"]))
        for fsize in cfg["lat_fin_sizes"]:
            k, t = divmod(fsize, LAT_PART)
            label = (f"{fsize >> 20} MiB" if not t else
                     f"{(fsize + 1) >> 20} MiB − 1 B ("
                     + (f"{k} parts + " if k else "") + "a tail of a part − 1 B)"
                     if t == LAT_PART - 1 else f"{fsize} B")
            res.add(("L", "fin", fsize),
                    {"n": "L", "store": store, "metric": "closing PUT ms",
                     "scenario": f"finalize after 1 chunked PATCH, {label}"},
                    got["mod_ocireg"][fsize], got["distribution"][fsize])
    del fmv, fbuf

    # -- longest blocked send during one chunked PATCH
    sizes = cfg["lat_stall_sizes"]
    for rtt in (rtt_ms, 0):
        runs = {"mod_ocireg": [], "distribution": []}
        for i, size in enumerate(sizes):
            for reg in order(i):
                if reg.proc is None:
                    reg.restart()
                px[reg.name].set_rtt(rtt)
                stall, c, loc = chunked_patch(reg.port, "lat/stall", data, size)
                # not finalized (distribution's finalize copies the blob):
                # the session is cancelled, and the bucket emptied anyway
                req(c, "DELETE", loc, want=(202, 204))
                c.close()
                runs[reg.name].append({"size": size, "stall_ms": stall * 1000})
                px[reg.name].quiet()
                reg.wipe()
            log(f"  latency stall RTT {rtt} ms, {size >> 20} MiB: ms o/d "
                f"{runs['mod_ocireg'][-1]['stall_ms']:.0f}/{runs['distribution'][-1]['stall_ms']:.0f}")
            if i % 3 == 2:
                rgw.gc()
        settle()
        raw["stall_runs"][str(rtt)] = runs
        st = f"S3, RTT {rtt:g} ms"
        o = [r["stall_ms"] for r in runs["mod_ocireg"]]
        d = [r["stall_ms"] for r in runs["distribution"]]
        lo, hi = min(sizes) >> 20, max(sizes) >> 20
        span = f"{lo} MiB" if lo == hi else f"{lo}–{hi} MiB"
        key = ("L", "stall", rtt)
        res.rows[key] = {"meta": {"n": "L", "store": st, "metric": "longest blocked send ms",
                                  "scenario": f"1 chunked PATCH {span}, SO_SNDBUF 64 KiB, {len(o)} runs"},
                         "o": o, "d": d, "pairs": [a / b if b else float("nan") for a, b in zip(o, d)]}
        res.order.append(key)
        key = ("L", "stall90", rtt)
        res.add(key, {"n": "L", "store": st, "metric": "p90 of the runs ms", "scenario": "  same"},
                p90(o), p90(d))

    # -- skopeo: 10 layers × 0.5 MiB
    layout = os.path.join(work, "oci-lat")
    man_digest, img_bytes, layer_digests = build_oci_layout(layout, data, 512 * 1024, 10)
    for rep in range(cfg["lat_skopeo_reps"]):
        got = {}
        for reg in order(rep):
            fresh(reg)
            dest = f"docker://127.0.0.1:{reg.port}/lat/img:v1"
            t0 = time.monotonic()
            subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                            f"oci:{layout}:v1", dest], check=True, timeout=900)
            t1 = time.monotonic()
            c = Conn(reg.port)
            r, _ = req(c, "HEAD", "/v2/lat/img/manifests/v1", want=200, headers={"Accept": OCI_MANIFEST})
            if r.getheader("Docker-Content-Digest") != man_digest:
                raise RuntimeError("CHECK FAILED: skopeo pushed another manifest")
            for ld in layer_digests:
                req(c, "HEAD", f"/v2/lat/img/blobs/{ld}", want=200)
            c.close()
            pull = os.path.join(work, "oci-lat-pull")
            shutil.rmtree(pull, ignore_errors=True)
            px[reg.name].quiet()
            t2 = time.monotonic()
            subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                            dest, f"oci:{pull}:v1"], check=True, timeout=900)
            t3 = time.monotonic()
            shutil.rmtree(pull, ignore_errors=True)
            got[reg.name] = (t1 - t0, t3 - t2)
            reg.stop()
        settle()
        log(f"  latency skopeo rep {rep + 1}: push s o/d {got['mod_ocireg'][0]:.2f}/"
            f"{got['distribution'][0]:.2f}, pull {got['mod_ocireg'][1]:.2f}/{got['distribution'][1]:.2f}")
        res.add(("L", "skopeo", "push"), {"n": "L", "store": store, "metric": "wall s",
                                         "scenario": f"skopeo copy push, 10 layers × 0.5 MiB"},
                got["mod_ocireg"][0], got["distribution"][0])
        res.add(("L", "skopeo", "pull"), {"n": "L", "store": store, "metric": "wall s",
                                         "scenario": "skopeo copy pull of the same"},
                got["mod_ocireg"][1], got["distribution"][1])
    shutil.rmtree(layout, ignore_errors=True)
    for p in px.values():
        p.stop()
    return res, raw


# ---------------------------------------------------------------- pull-through

PT_REPO = "bench/pt"            # the image's name upstream, and through both mirrors


def start_upstream(work, data, layer_size, layers):
    """The pull-through scenario's upstream: one anonymous docker-registry
    (tests/fixtures/upstream.py: filesystem storage, access log, request
    counting) holding an OCI image of LAYERS gzip layers of LAYER_SIZE,
    pushed with skopeo. Returns (upstream, manifest digest)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
    from upstream import DistributionRegistry
    up = DistributionRegistry(work, "pt-upstream").start()
    layout = os.path.join(work, "oci-pt")
    man_digest, _, _ = build_oci_layout(layout, data, layer_size, layers)
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                    f"oci:{layout}:v1", f"docker://{up.hostport}/{PT_REPO}:v1"],
                   check=True, timeout=300)
    shutil.rmtree(layout, ignore_errors=True)
    c = Conn(up.port)
    r, _ = req(c, "HEAD", f"/v2/{PT_REPO}/manifests/v1", want=200, headers={"Accept": OCI_MANIFEST})
    c.close()
    if r.getheader("Docker-Content-Digest") != man_digest:
        raise RuntimeError("CHECK FAILED: the upstream holds another manifest than pushed")
    return up, man_digest


def upstream_requests(up, mark):
    """Requests the upstream logged since MARK, once its log is quiet (three
    polls 0.2 s apart with the same count: a registry that fetches on after
    its client's answer is counted). Returns the count and the mix, e.g.
    {"GET blob 200": 4, "HEAD manifest 200": 1}."""
    last, still = None, 0
    while still < 3:
        up.sync()
        got = up.requests_since(mark)
        still = still + 1 if last is not None and len(got) == len(last) else 0
        last = got
        time.sleep(0.2)
    mix = {}
    for r in last:
        path = r.path.split("?")[0]
        kind = ("ping" if path.rstrip("/") == "/v2" else "manifest" if "/manifests/" in path
                else "blob" if "/blobs/" in path else path)
        k = f"{r.method} {kind} {r.status}"
        mix[k] = mix.get(k, 0) + 1
    return len(last), mix


def pull_image(port, dest, man_digest, timeout=300):
    """skopeo copy docker://127.0.0.1:PORT/bench/pt:v1 oci:DEST:v1. Returns
    (seconds, None) when the copy worked (skopeo checks every blob's digest)
    and the layout holds the upstream's manifest digest, else (None, why)."""
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                            f"docker://127.0.0.1:{port}/{PT_REPO}:v1", f"oci:{dest}:v1"],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"skopeo copy did not finish in {timeout} s"
    secs = time.monotonic() - t0
    try:
        if p.returncode:
            lines = (p.stderr or p.stdout).strip().splitlines()
            return None, f"skopeo copy exited {p.returncode}: " + (lines[-1] if lines else "")
        with open(os.path.join(dest, "index.json")) as f:
            got = json.load(f)["manifests"][0]["digest"]
        if got != man_digest:
            return None, f"CHECK FAILED: pulled manifest {got}, upstream has {man_digest}"
        return secs, None
    finally:
        shutil.rmtree(dest, ignore_errors=True)


# ---------------------------------------------------------------- the run

class Results:
    def __init__(self):
        self.rows = {}        # key -> {"meta":..., "o": [..], "d": [..], "pairs": [..]}
        self.order = []

    def add(self, key, meta, o, d):
        if key not in self.rows:
            self.rows[key] = {"meta": meta, "o": [], "d": [], "pairs": []}
            self.order.append(key)
        row = self.rows[key]
        row["o"].append(o)
        row["d"].append(d)
        # None: that run failed (the table says so); no ratio for the pair
        row["pairs"].append(o / d if o is not None and d else float("nan"))


def fmt(v):
    if v is None:
        return "failed"
    if v != v:
        return "–"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cells(vs):
    """Median and min–max of a row's runs; a failed run (None) is left out
    and said: "failed" when every run failed, "(k/n failed)" otherwise."""
    ok = [v for v in vs if v is not None]
    if not ok:
        return "**failed**", "–"
    med = fmt(statistics.median(ok))
    if len(ok) < len(vs):
        med += f" ({len(vs) - len(ok)}/{len(vs)} failed)"
    return med, f"{fmt(min(ok))}–{fmt(max(ok))}"


def table(res):
    out = ["| # | scenario | store | metric | mod_ocireg median | min–max | distribution median | min–max | ratio o/d (median of pairs) |",
           "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for key in res.order:
        row = res.rows[key]
        m = row["meta"]
        (om, orng), (dm, drng) = cells(row["o"]), cells(row["d"])
        p = [v for v in row["pairs"] if v == v]
        out.append(f"| {m['n']} | {m['scenario']} | {m['store']} | {m['metric']} | "
                   f"{om} | {orng} | {dm} | {drng} | "
                   f"{fmt(statistics.median(p)) if p else '–'} |")
    return "\n".join(out)


def build_oci_layout(path, data, layer_size, n=3):
    """N gzip layers (stored blocks, level 0: no compression work for skopeo
    or for this script; gzip so that skopeo does not compress them itself)."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(b):
        d = hashlib.sha256(b).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(b)
        return "sha256:" + d
    layers = []
    diff = []
    for i in range(n):
        raw = data[i * layer_size:(i + 1) * layer_size]
        gz = gzip.compress(raw, compresslevel=0, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": put(gz), "size": len(gz)})
        diff.append(sha(raw))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": put(config), "size": len(config)},
                      "layers": layers}).encode()
    md = put(man)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": md, "size": len(man),
             "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    return md, sum(l["size"] for l in layers) + len(config), [l["digest"] for l in layers]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--only", default="1,2,3,5,6,7,9,pullthrough,latency",
                    help="scenario numbers (4 comes with 1, 8 with 1 and 2), pullthrough "
                         "and/or latency")
    ap.add_argument("--rtt-ms", type=float, default=40.0,
                    help="round-trip time the latency scenario adds between registry and S3")
    ap.add_argument("--stores", default="fs,s3")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "last-run.json"))
    a = ap.parse_args()
    q = a.quick
    cfg = dict(size=(128 if q else 1024) * MiB, reps=a.reps or (2 if q else 3),
               conc_n=8, conc_size=(16 if q else 256) * MiB, patch=50 * MiB,
               layer=(16 if q else 200) * 1000 * 1000, wrk_s=1 if q else 3,
               range_len=16 * MiB, range_reps=5,
               fin_sizes=(64 * MiB, (512 if q else 4096) * MiB),
               rtt_ms=a.rtt_ms, lat_reps=1 if q else 2, lat_fin_reps=1 if q else 2,
               lat_skopeo_reps=1 if q else 3,
               pt_layers=3, pt_layer=(8 if q else 32) * MiB,
               lat_fin_sizes=(256 * MiB, LAT_PART - 1, 17 * LAT_PART - 1),
               # 10 runs from 256 MiB to 2 GiB, mostly small: at 40 ms
               # distribution takes about 25 s per GiB
               lat_stall_sizes=tuple(m * MiB for m in (
                   (256,) * 3 if q else (256, 256, 512, 256, 256, 2048, 256, 256, 512, 256))))
    only = set(a.only.split(","))
    classic = only - {"latency", "pullthrough"}     # the numbered scenarios
    stores = a.stores.split(",")
    if os.geteuid() != 0:
        sys.exit("bench.py must run as root (httpd drops to www-data; clear_refs for peak RSS)")
    wall0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="ocireg-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    res = Results()
    finrows = []
    ceil = {}
    extra = {"s3_ops": [], "pullthrough_upstream": []}
    regs = []
    lat_cleanup = []
    lat_res, lat_raw = None, None
    pt_failures = extra["pullthrough_failures"] = []
    up = None
    rgw = Rgw(work)
    try:
        log(f"work dir {work}; config {cfg}")
        size = cfg["size"]
        if not classic and "latency" not in only:       # pull-through alone
            size = cfg["pt_layers"] * cfg["pt_layer"]
        data = memoryview(bytearray(os.urandom(size)))
        big_digest = sha(data)
        cs = cfg["conc_size"]
        if classic:
            step = (size - cs) // (cfg["conc_n"] - 1) & ~(MiB - 1)
            conc = [(data[i * step:i * step + cs], sha(data[i * step:i * step + cs]))
                    for i in range(cfg["conc_n"])]
            layout = os.path.join(work, "oci-src")
            man_digest, img_bytes, layer_digests = build_oci_layout(layout, data, cfg["layer"])
            getbuf = bytearray(size)
            log(f"data ready: {size >> 20} MiB blob {big_digest[:19]}…, "
                f"{cfg['conc_n']}×{cs >> 20} MiB, image {img_bytes / 1e6:.0f} MB")

            ceil["sha256 MB/s (openssl speed -evp sha256, 16 KiB, 1 core)"] = ceiling_sha256()
            ceil["loopback TCP copy MB/s (python sendall→recv_into)"] = ceiling_loopback(data)
            log(f"ceilings: {ceil}")
        gib = (1 << 30) / size
        if "pullthrough" in only:
            up, pt_digest = start_upstream(work, data, cfg["pt_layer"], cfg["pt_layers"])
            log(f"pull-through upstream {up.url}: {PT_REPO}:v1, {cfg['pt_layers']} × "
                f"{cfg['pt_layer'] >> 20} MiB layers, manifest {pt_digest[:19]}…")
        if "latency" in only and "s3" not in stores:
            log("the latency scenario needs the S3 store (--stores ...,s3): skipped")

        for store in stores:
            if store == "s3":
                rgw.start("60G")
                for par in ((1, 4) if classic else ()):
                    ceil[f"RGW raw multipart ingest MB/s ({size >> 20} MiB in 64 MiB parts, "
                         f"{par} in flight, curl)"] = ceiling_rgw(rgw, work, size, par)
                rgw.gc()
                log(f"ceilings: {ceil}")
            o_reg, d_reg = Ocireg(work, store, rgw), Distribution(work, store, rgw)
            regs[:] = [o_reg, d_reg]
            sname = "filesystem" if store == "fs" else "S3 (RGW)"

            def pairs(job, o=None, d=None):
                """job(reg) -> dict metric-key -> (meta, value); runs it REPS
                times per registry (o_reg and d_reg unless O and D are given),
                alternating which goes first."""
                o, d = o or o_reg, d or d_reg
                for rep in range(cfg["reps"]):
                    order = [o, d] if rep % 2 == 0 else [d, o]
                    got = {}
                    for reg in order:
                        reg.restart()
                        try:
                            got[reg.name] = job(reg)
                        finally:
                            reg.stop()
                        if store == "s3":
                            reg.wipe()
                    if store == "s3":
                        rgw.gc()
                    for k, (meta, ov) in got["mod_ocireg"].items():
                        res.add((store,) + k, dict(meta, store=sname), ov,
                                got["distribution"][k][1])
                    log(f"  {store} rep {rep + 1}: " + ", ".join(
                        f"{k[-1]} {fmt(got['mod_ocireg'][k][1])}/{fmt(got['distribution'][k][1])}"
                        for k in got["mod_ocireg"]))

            def s3count(reg, off):
                if store != "s3":
                    return None
                n, ops = rgw.count_requests(off, reg.bucket)
                extra["s3_ops"].append({"registry": reg.name, "ops": ops, "n": n})
                return n

            mb = size / 1e6
            if "1" in only:
                log(f"{store}: scenario 1/4/6/8: chunked PATCH {size >> 20} MiB, then GETs")

                def job1(reg):
                    off = rgw.log_offset() if store == "s3" else 0
                    mem = MemProbe(reg)
                    total, fin, stall = push_stream(reg.port, "bench/stream", data, big_digest,
                                                    sndbuf=64 * 1024)
                    growth, _ = mem.result()
                    n = s3count(reg, off)
                    gt = verify_blob(reg.port, "bench/stream", big_digest, size, getbuf)
                    rt = statistics.median(range_get(reg.port, "bench/stream", big_digest, data,
                                                     cfg["range_len"])
                                           for _ in range(cfg["range_reps"]))
                    out = {
                        ("1", "tput"): ({"n": 1, "scenario": f"push {size >> 20} MiB, 1 chunked PATCH + PUT", "metric": "MB/s (POST→201)"}, mb / total),
                        ("1", "rss"): ({"n": 1, "scenario": "  same", "metric": "peak RSS growth MiB"}, growth),
                        ("1", "fin"): ({"n": 1, "scenario": "  same", "metric": "finalize (closing PUT) ms"}, fin * 1000),
                        ("4", "stall"): ({"n": 4, "scenario": "  same, SO_SNDBUF 64 KiB", "metric": "longest blocked write ms"}, stall * 1000),
                        ("6", "get"): ({"n": 6, "scenario": f"GET the {size >> 20} MiB blob", "metric": "MB/s"}, mb / gt),
                        ("6", "range"): ({"n": 6, "scenario": "16 MiB Range GET from the middle", "metric": "ms (median of 5)"}, rt * 1000),
                    }
                    if n is not None:
                        out[("8", "s3a")] = ({"n": 8, "scenario": "S3 requests per pushed GiB, scenario 1", "metric": "requests"}, n * gib)
                    return out
                pairs(job1)

            if "2" in only:
                log(f"{store}: scenario 2: 50 MiB PATCHes; monolithic PUT")

                def job2(reg):
                    off = rgw.log_offset() if store == "s3" else 0
                    mem = MemProbe(reg)
                    total, fin = push_patches(reg.port, "bench/patch", data, big_digest, cfg["patch"])
                    growth, _ = mem.result()
                    n = s3count(reg, off)
                    verify_blob(reg.port, "bench/patch", big_digest, size)
                    out = {
                        ("2", "tput"): ({"n": 2, "scenario": f"push {size >> 20} MiB as 50 MiB PATCHes (Content-Range)", "metric": "MB/s (POST→201)"}, mb / total),
                        ("2", "rss"): ({"n": 2, "scenario": "  same", "metric": "peak RSS growth MiB"}, growth),
                        ("2", "fin"): ({"n": 2, "scenario": "  same", "metric": "finalize (closing PUT) ms"}, fin * 1000),
                    }
                    if n is not None:
                        out[("8", "s3b")] = ({"n": 8, "scenario": "S3 requests per pushed GiB, 50 MiB PATCHes", "metric": "requests"}, n * gib)
                    reg.restart()       # fresh process and store for the monolithic PUT
                    off = rgw.log_offset() if store == "s3" else 0
                    mem = MemProbe(reg)
                    total = push_monolithic(reg.port, "bench/mono", data, big_digest)
                    growth, _ = mem.result()
                    n = s3count(reg, off)
                    verify_blob(reg.port, "bench/mono", big_digest, size)
                    out[("2m", "tput")] = ({"n": 2, "scenario": f"push {size >> 20} MiB as one monolithic PUT", "metric": "MB/s (POST→201)"}, mb / total)
                    out[("2m", "rss")] = ({"n": 2, "scenario": "  same", "metric": "peak RSS growth MiB"}, growth)
                    if n is not None:
                        out[("8", "s3c")] = ({"n": 8, "scenario": "S3 requests per pushed GiB, monolithic PUT", "metric": "requests"}, n * gib)
                    return out
                pairs(job2)

            if "3" in only:
                log(f"{store}: scenario 3: {cfg['conc_n']} concurrent {cs >> 20} MiB pushes")

                def job3(reg):
                    mem = MemProbe(reg)
                    pss = PssSampler(reg)
                    t0 = time.monotonic()
                    with concurrent.futures.ThreadPoolExecutor(cfg["conc_n"]) as ex:
                        futs = [ex.submit(push_stream, reg.port, f"bench/conc{i}", mv, dg,
                                          MiB, MiB) for i, (mv, dg) in enumerate(conc)]
                        for f in futs:
                            f.result()
                    t1 = time.monotonic()
                    _, total = mem.result()
                    pss_peak = pss.result()
                    for i, (mv, dg) in enumerate(conc):
                        verify_blob(reg.port, f"bench/conc{i}", dg, len(mv))
                    agg = cfg["conc_n"] * cs / 1e6 / (t1 - t0)
                    return {
                        ("3", "tput"): ({"n": 3, "scenario": f"{cfg['conc_n']} concurrent {cs >> 20} MiB chunked pushes", "metric": "aggregate MB/s"}, agg),
                        ("3", "rss"): ({"n": 3, "scenario": "  same", "metric": "total peak RSS MiB (sum of VmHWM)"}, total),
                        ("3", "pss"): ({"n": 3, "scenario": "  same", "metric": "peak PSS MiB (sampled every 0.1 s)"}, pss_peak),
                    }
                pairs(job3)

            if "5" in only:
                log(f"{store}: scenario 5: wrk, 16 connections, {cfg['wrk_s']} s each")

                def job5(reg):
                    ld = push_small_image(reg.port, "bench/small")
                    base = f"http://127.0.0.1:{reg.port}/v2/bench/small"
                    out = {}
                    rps, p99 = run_ab_head(f"{base}/blobs/{ld}", cfg["wrk_s"])
                    out[("5", "head", "rps")] = ({"n": 5, "scenario": "HEAD blob, ab -k -c16 (wrk 4.1 cannot HEAD)", "metric": "requests/s"}, rps)
                    out[("5", "head", "p99")] = ({"n": 5, "scenario": "  same", "metric": "p99 latency ms (ab: whole ms)"}, p99)
                    for key, url, script, hdrs, label in (
                            ("man", f"{base}/manifests/v3", None, (f"Accept: {OCI_MANIFEST}",), "GET manifest by tag"),
                            ("tags", f"{base}/tags/list", None, (), "GET tags list (10 tags)")):
                        rps, p99 = run_wrk(url, cfg["wrk_s"], script, hdrs)
                        out[("5", key, "rps")] = ({"n": 5, "scenario": f"{label}, wrk -c16", "metric": "requests/s"}, rps)
                        out[("5", key, "p99")] = ({"n": 5, "scenario": "  same", "metric": "p99 latency ms"}, p99)
                    return out
                pairs(job5)

            if "9" in only:
                # mod_ocireg only: distribution's finalize copies the blob
                # (scenario 1 shows it at 1 GiB); here the question is
                # whether ours grows with the blob.
                log(f"{store}: scenario 9: finalize against blob size (mod_ocireg)")
                for fsize in cfg["fin_sizes"]:
                    big = bytearray(fsize)
                    for off in range(0, fsize, size):
                        n = min(size, fsize - off)
                        big[off:off + n] = data[:n]
                    fins = []
                    for rep in range(cfg["reps"]):
                        # a new blob each time: a pushed one would be deduplicated
                        big[:16] = os.urandom(16)
                        dg = sha(big)
                        o_reg.restart()
                        try:
                            _, fin, _ = push_stream(o_reg.port, "bench/fin", memoryview(big), dg)
                            verify_blob(o_reg.port, "bench/fin", dg, fsize)
                        finally:
                            o_reg.stop()
                        o_reg.wipe()
                        if store == "s3":
                            rgw.gc()
                        fins.append(fin * 1000)
                    finrows.append((sname, fsize, fins))
                    log(f"  {store} {fsize >> 20} MiB: finalize ms {[round(f, 1) for f in fins]}")
                    del big

            if "7" in only:
                log(f"{store}: scenario 7: skopeo copy push/pull, {img_bytes / 1e6:.0f} MB image")

                def job7(reg):
                    dest = f"docker://127.0.0.1:{reg.port}/bench/img:v1"
                    t0 = time.monotonic()
                    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q",
                                    "--dest-tls-verify=false", f"oci:{layout}:v1", dest],
                                   check=True, timeout=900)
                    t1 = time.monotonic()
                    c = Conn(reg.port)
                    r, _ = req(c, "HEAD", "/v2/bench/img/manifests/v1", want=200,
                               headers={"Accept": OCI_MANIFEST})
                    if r.getheader("Docker-Content-Digest") != man_digest:
                        raise RuntimeError(f"CHECK FAILED: skopeo pushed manifest "
                                           f"{r.getheader('Docker-Content-Digest')}, not {man_digest}")
                    for ld in layer_digests:
                        r, _ = req(c, "HEAD", f"/v2/bench/img/blobs/{ld}", want=200)
                        if r.getheader("Docker-Content-Digest") != ld:
                            raise RuntimeError(f"CHECK FAILED: layer {ld}")
                    c.close()
                    pull = os.path.join(work, "oci-pull")
                    shutil.rmtree(pull, ignore_errors=True)
                    t2 = time.monotonic()
                    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q",
                                    "--src-tls-verify=false", dest, f"oci:{pull}:v1"],
                                   check=True, timeout=900)
                    t3 = time.monotonic()
                    shutil.rmtree(pull, ignore_errors=True)
                    return {
                        ("7", "push"): ({"n": 7, "scenario": f"skopeo copy push, 3 layers, {img_bytes / 1e6:.0f} MB", "metric": "wall s"}, t1 - t0),
                        ("7", "pull"): ({"n": 7, "scenario": "skopeo copy pull of the same", "metric": "wall s"}, t3 - t2),
                    }
                pairs(job7)

            if "pullthrough" in only:
                nl, ls = cfg["pt_layers"], cfg["pt_layer"] >> 20
                log(f"{store}: pull-through: skopeo pull of {nl} × {ls} MiB through "
                    f"OCIRegMirror and distribution's proxy mode, first and cached")
                o_pt = Ocireg(work, store, rgw, tag=f"{store}-pt", mirror=up.url)
                d_pt = Distribution(work, store, rgw, tag=f"{store}-pt", proxy=up.url)
                regs.extend([o_pt, d_pt])
                pt_rep = {}

                def jobP(reg):
                    pt_rep[reg.name] = pt_rep.get(reg.name, 0) + 1
                    out = {}
                    for phase, label in (("first", f"pull-through: first pull (cold cache), "
                                                   f"skopeo, {nl} layers × {ls} MiB"),
                                         ("cached", "pull-through: second pull (cached)")):
                        mark = up.mark()
                        mem = MemProbe(reg)
                        secs, why = pull_image(reg.port, os.path.join(work, "oci-pt-pull"),
                                               pt_digest)
                        growth, _ = mem.result()
                        n, mix = upstream_requests(up, mark)
                        extra["pullthrough_upstream"].append(
                            {"registry": reg.name, "store": store, "rep": pt_rep[reg.name],
                             "pull": phase, "requests": n, "mix": mix})
                        log(f"  {reg.name} {phase} pull: upstream requests {n} {mix}")
                        if why:
                            # a failed pull is a failed row, not a crash: its
                            # numbers would measure an error answer
                            log(f"  {reg.name} {phase} pull FAILED ({n} upstream requests): {why}")
                            pt_failures.append({"registry": reg.name, "store": store,
                                                "rep": pt_rep[reg.name], "pull": phase,
                                                "upstream_requests": n, "error": why})
                            secs = n = growth = None
                        out[("P", phase, "s")] = ({"n": "P", "scenario": label, "metric": "wall s"}, secs)
                        out[("P", phase, "up")] = ({"n": "P", "scenario": "  same", "metric": "upstream requests"}, n)
                        out[("P", phase, "rss")] = ({"n": "P", "scenario": "  same", "metric": "peak RSS growth MiB"}, growth)
                    return out
                pairs(jobP, o_pt, d_pt)
                o_pt.stop()
                d_pt.stop()

            if store == "s3" and "latency" in only:
                log(f"s3: latency scenario: RTT {cfg['rtt_ms']:g} ms between each registry "
                    f"and RGW, {LAT_PART >> 20} MiB parts")
                lat_res, lat_raw = run_latency(cfg, work, rgw, data, cfg["rtt_ms"], lat_cleanup)

            for r in regs:
                r.stop()
            if store == "s3":
                rgw.stop()
    finally:
        if up is not None:
            up.stop()
        for r in regs + lat_cleanup:
            try:
                r.stop()
            except Exception as e:      # keep stopping the rest
                log(f"stopping {getattr(r, 'name', 'the S3 proxy')}: {e}")
        rgw.stop()
        # the upstream's registry.log stays with the other logs
        shutil.rmtree(os.path.join(work, "pt-upstream", "data"), ignore_errors=True)
        for d in glob.glob(os.path.join(work, "*")):
            if os.path.basename(d) not in ("rgw", "pt-upstream") and not d.endswith(".log"):
                shutil.rmtree(d, ignore_errors=True) if os.path.isdir(d) else None
        shutil.rmtree(os.path.join(work, "rgw", "osd"), ignore_errors=True)

    wall = time.monotonic() - wall0
    out = []
    if ceil:
        out.append(f"Ceilings on this machine:\n")
        for k, v in ceil.items():
            out.append(f"- {k}: {v:.0f}")
        out.append("")
    if res.order:
        out.append(table(res))
        out.append("")
    if pt_failures:
        out.append("Pull-through runs that failed (their rows say failed):\n")
        for f in pt_failures:
            out.append(f"- {f['registry']}, {f['store']}, run {f['rep']}, {f['pull']} pull "
                       f"({f['upstream_requests']} upstream requests): {f['error']}")
        out.append("")
    if finrows:
        out.append("Scenario 9: finalize (closing PUT after one chunked PATCH) against blob size, mod_ocireg:\n")
        out.append("| store | blob | finalize ms median | min–max |")
        out.append("|---|---:|---:|---:|")
        for sname, fsize, fins in finrows:
            out.append(f"| {sname} | {fsize >> 20} MiB | {fmt(statistics.median(fins))} | "
                       f"{fmt(min(fins))}–{fmt(max(fins))} |")
        out.append("")
    if lat_res is not None:
        out.append(f"Latency scenario: S3 (RGW) {cfg['rtt_ms']:g} ms away (a proxy delays every byte "
                   f"RTT/2 each way), {LAT_PART >> 20} MiB parts; runs per registry: "
                   f"{cfg['lat_reps']} for the S3 request counts, {cfg['lat_fin_reps']} for "
                   f"finalize, {len(cfg['lat_stall_sizes'])} for the blocked send, "
                   f"{cfg['lat_skopeo_reps']} for skopeo; alternating which goes first:\n")
        out.append(table(lat_res))
        out.append("")
    foot = f"wall time {wall:.0f} s; logs in {work}"
    if classic:
        foot = f"{cfg['reps']} runs per registry and row, alternating; " + foot
    out.append(foot)
    print("\n".join(out))
    with open(a.json, "w") as f:
        json.dump({"config": cfg, "ceilings": ceil, "wall_s": wall, "extra": extra,
                   "finalize_by_size": finrows,
                   "latency": lat_raw and dict(lat_raw, rows=[{"key": list(k), **lat_res.rows[k]}
                                                             for k in lat_res.order]),
                   "rows": [{"key": list(k), **res.rows[k]} for k in res.order]}, f, indent=1)


if __name__ == "__main__":
    main()
