"""A TCP proxy between httpd and the RGW that records every S3 request it
forwards (method and target), so tests can assert how many requests, and
which, a registry operation costs. It reads request heads and skips bodies
by their Content-Length (the module always sends one); answers are passed
through untouched."""

import socket
import threading
from urllib.parse import parse_qs, unquote, urlsplit


class S3Request:
    def __init__(self, method, target):
        self.method = method
        self.target = target
        parts = urlsplit(target)
        self.path = unquote(parts.path)
        self.query = parse_qs(parts.query, keep_blank_values=True)

    @property
    def is_list(self):
        """A ListObjectsV2 request."""
        return self.method == "GET" and self.query.get("list-type") == ["2"]

    def __repr__(self):
        return f"{self.method} {self.target}"


class CountingProxy:
    def __init__(self, target):
        self.target = target
        self.lock = threading.Lock()
        self.seen = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.closing = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def reset(self):
        with self.lock:
            self.seen = []

    def requests(self):
        with self.lock:
            return list(self.seen)

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            self.socks += [c, u]
            threading.Thread(target=self._requests, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _requests(self, src, dst):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = src.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    if name.strip().lower() == "transfer-encoding":
                        raise RuntimeError("chunked request bodies are not counted")
                with self.lock:
                    self.seen.append(S3Request(method, target))
                dst.sendall(head + b"\r\n\r\n")
                while length > 0:
                    if not buf:
                        buf = src.recv(min(length, 1 << 20))
                        if not buf:
                            return
                    chunk, buf = buf[:length], buf[length:]
                    dst.sendall(chunk)
                    length -= len(chunk)
        except OSError:
            pass
        finally:
            self._shut(src, dst)

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(256 * 1024)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(src, dst)

    @staticmethod
    def _shut(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closing = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
