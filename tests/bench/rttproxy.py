#!/usr/bin/python3
"""A TCP proxy that puts a far-away object store behind a registry: every
byte is delivered RTT/2 later in each direction (latency, not bandwidth;
bulk transfers keep their rate), a new connection's first bytes wait one
RTT more (the TCP handshake), and the HTTP/1.1 requests that cross it are
counted. Loopback only. Used by bench.py's latency scenario.

    rttproxy.py TARGET_PORT RTT_MS

Prints "PORT" (where it listens on 127.0.0.1) on stdout, then answers one
command per line on stdin with one JSON line on stdout:

    rtt MS   change the delay (new bytes only)          -> {"rtt_ms": MS}
    state    {"n": requests seen, "inflight": not yet answered,
              "idle_s": seconds since a byte last moved}
    log      every request since the last reset: [method, target,
             status, seconds seen, seconds answer delivered]
             (times on this process's monotonic clock, see "now")
    now      {"now": monotonic seconds}
    reset    forget the requests seen so far

Both directions are parsed just enough to frame messages (Content-Length,
chunked, 1xx interim answers, HEAD, 204/304, read-to-close), so that each
answer is matched to its request and "answered" means its last byte was
handed to the registry's socket.
"""
import collections
import json
import socket
import sys
import threading
import time

QUEUE_MAX = 8 << 20        # bytes held per direction (a TCP window's worth)


class Request:
    __slots__ = ("method", "target", "status", "seen", "answered")

    def __init__(self, method, target):
        self.method, self.target = method, target
        self.status = None
        self.seen = time.monotonic()
        self.answered = None


class Framer:
    """Incremental HTTP/1.1 message framing of one direction. on_head(head)
    returns how the body is framed: ("none"|"length", n|"chunked"|"close");
    on_done() is called at the end of each message."""

    def __init__(self, on_head, on_done):
        self.on_head, self.on_done = on_head, on_done
        self.buf = bytearray()
        self.state = "head"
        self.left = 0

    def feed(self, data):
        data = memoryview(data)
        while len(data):
            st = self.state
            if st in ("body", "chunk"):
                take = min(self.left, len(data))
                self.left -= take
                data = data[take:]
                if self.left == 0:
                    if st == "body":
                        self._done()
                    else:
                        self.state = "size"
                continue
            if st == "close":
                return
            # line-oriented states: head, chunk size line, trailers
            self.buf += data
            data = memoryview(b"")
            while True:
                st = self.state
                if st == "head":
                    i = self.buf.find(b"\r\n\r\n")
                    if i < 0:
                        return
                    head = bytes(self.buf[:i])
                    del self.buf[:i + 4]
                    kind, n = self.on_head(head)
                    if kind == "none":
                        self._done()
                    elif kind == "length":
                        if n == 0:
                            self._done()
                        else:
                            self.state, self.left = "body", n
                    elif kind == "chunked":
                        self.state = "size"
                    else:
                        self.state = "close"
                elif st in ("size", "trailer"):
                    i = self.buf.find(b"\r\n")
                    if i < 0:
                        return
                    line = bytes(self.buf[:i])
                    del self.buf[:i + 2]
                    if st == "trailer":
                        if line == b"":
                            self._done()
                        continue
                    n = int(line.split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        self.state = "trailer"
                    else:
                        self.state, self.left = "chunk", n + 2
                else:
                    break
                if self.state in ("body", "chunk", "close"):
                    rest = bytes(self.buf)
                    self.buf.clear()
                    if rest:
                        self.feed(rest)
                    return

    def _done(self):
        self.state = "head"
        self.on_done()


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return lines[0].split(" "), hdrs


def body_kind(hdrs, response):
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in hdrs:
        return "length", int(hdrs["content-length"])
    return ("close", 0) if response else ("none", 0)


class Proxy:
    def __init__(self, target_port, rtt_ms):
        self.target = ("127.0.0.1", target_port)
        self.rtt = rtt_ms / 1000.0
        self.lock = threading.Lock()
        self.log = []
        self.inflight = 0
        self.last = time.monotonic()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.ls.accept()
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        accepted = time.monotonic()
        try:
            u = socket.create_connection(self.target)
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = collections.deque()       # requests awaiting their answer
        done_now = []                       # answers completed in this read

        def on_request(head):
            (method, target, *_), hdrs = parse_head(head)
            r = Request(method, target)
            with self.lock:
                self.log.append(r)
                self.inflight += 1
            pending.append(r)
            return body_kind(hdrs, False)

        resp = {}

        def on_response(head):
            (_, status, *_), hdrs = parse_head(head)
            status = int(status)
            resp["status"] = status
            if 100 <= status < 200 and status != 101:
                resp["interim"] = True
                return "none", 0
            resp["interim"] = False
            if (pending and pending[0].method == "HEAD") or status in (204, 304):
                return "none", 0
            return body_kind(hdrs, True)

        def on_response_done():
            if resp.get("interim"):
                return
            if pending:
                r = pending.popleft()
                r.status = resp["status"]
                done_now.append(r)

        req_framer = Framer(on_request, lambda: None)
        resp_framer = Framer(on_response, on_response_done)
        # the handshake: a client's first bytes arrive 1.5 RTT after connect()
        up = Pump(self, c, u, accepted + self.rtt, lambda d: (req_framer.feed(d), [])[1])

        def feed_resp(d):
            resp_framer.feed(d)
            out = done_now[:]
            done_now.clear()
            return out
        down = Pump(self, u, c, 0.0, feed_resp)
        up.start()
        down.start()
        up.join()
        down.join()
        for s in (c, u):
            s.close()
        with self.lock:     # a connection closed before its answer
            for r in pending:
                if r.answered is None:
                    r.answered = time.monotonic()
                    self.inflight -= 1

    def delivered(self, reqs):
        now = time.monotonic()
        with self.lock:
            self.last = now
            for r in reqs:
                r.answered = now
                self.inflight -= 1

    def touch(self):
        with self.lock:
            self.last = time.monotonic()


class Pump:
    """One direction: a reader that stamps each piece with its due time and a
    writer that hands it on when due; at most QUEUE_MAX bytes in between."""

    def __init__(self, proxy, src, dst, not_before, parse):
        self.p, self.src, self.dst = proxy, src, dst
        self.not_before = not_before
        self.parse = parse
        self.q = collections.deque()
        self.held = 0
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self.read, daemon=True),
                        threading.Thread(target=self.write, daemon=True)]
        self.broken = False

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join()

    def read(self):
        while True:
            try:
                data = self.src.recv(256 * 1024)
            except OSError:
                data = b""
            self.p.touch()
            done = self.parse(data) if data else []
            due = max(time.monotonic(), self.not_before) + self.p.rtt / 2
            with self.cv:
                while self.held >= QUEUE_MAX and not self.broken:
                    self.cv.wait()
                if self.broken:
                    return
                self.q.append((due, data, done))
                self.held += len(data)
                self.cv.notify_all()
            if not data:
                return

    def write(self):
        while True:
            with self.cv:
                while not self.q:
                    self.cv.wait()
                due, data, done = self.q.popleft()
                self.held -= len(data)
                self.cv.notify_all()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
            except OSError:
                with self.cv:
                    self.broken = True
                    self.cv.notify_all()
                for s in (self.src, self.dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.p.delivered(done)
                return
            self.p.delivered(done)


def main():
    target, rtt_ms = int(sys.argv[1]), float(sys.argv[2])
    p = Proxy(target, rtt_ms)
    print(p.port, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        with p.lock:
            if cmd[0] == "rtt":
                p.rtt = float(cmd[1]) / 1000.0
                out = {"rtt_ms": p.rtt * 1000}
            elif cmd[0] == "state":
                out = {"n": len(p.log), "inflight": p.inflight,
                       "idle_s": time.monotonic() - p.last}
            elif cmd[0] == "log":
                out = [[r.method, r.target, r.status, r.seen, r.answered] for r in p.log]
            elif cmd[0] == "now":
                out = {"now": time.monotonic()}
            elif cmd[0] == "reset":
                p.log = []
                out = {"ok": True}
            else:
                out = {"error": line.strip()}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
