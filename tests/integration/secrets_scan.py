"""The S3 keys must never show up in anything the registry writes or sends.

conftest registers the session's keys (the RGW fixture makes random,
distinctive ones) with `register()`. From then on every response the suite
receives through requests (the Registry client and direct requests calls,
redirects included) or through ocireg_client.RawConnection is scanned, head
and body, as it arrives; `scan_logs()` scans the instances' error and access
logs, httpd's stdout and the sanitizer reports at the end of the session.

One exception is by design: a presigned URL (OCIRegS3BlobRedirect) names the
access key id in its X-Amz-Credential parameter, so that is removed before a
Location header is scanned for the access key id. The secret key is never
excepted anywhere.
"""

import re
from urllib.parse import unquote

import requests

import ocireg_client

# label -> needles (bytes); a needle found anywhere is a leak.
_SECRETS = {}
# Access key ids, for the presigned-URL exception.
_ACCESS_KEYS = set()
# Hosts whose responses are not the registry's (the RGW itself).
_FOREIGN_HOSTS = set()
hits = []
stats = {"responses": 0, "log_files": 0, "log_bytes": 0}


def register(label, value, access_key=False):
    """value must never appear; a secret also must not appear in part (its
    first or last 16 characters), in case something logs it truncated."""
    needles = {value.encode()}
    if not access_key and len(value) >= 32:
        needles |= {value[:16].encode(), value[-16:].encode()}
    else:
        _ACCESS_KEYS.add(value)
    _SECRETS[label] = needles


def ignore_host(netloc):
    _FOREIGN_HOSTS.add(netloc)


def registered():
    return sorted(_SECRETS)


def find(data, where):
    """Labels of the secrets found in data (bytes or str)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return [label for label, needles in _SECRETS.items()
            if any(n in data for n in needles)]


def _strip_presigned_credential(value):
    """A Location's X-Amz-Credential=<access key>/... is the presigned URL's
    purpose; the access key id anywhere else is a leak."""
    for ak in _ACCESS_KEYS:
        value = re.sub(r"(?i)(X-Amz-Credential=)" + re.escape(ak), r"\1", unquote(value))
    return value


def scan_response(url, status, headers, body):
    if not _SECRETS:
        return
    if any(f"//{h}/" in url or url.endswith(f"//{h}") for h in _FOREIGN_HOSTS):
        return
    stats["responses"] += 1
    for name, value in headers:
        if name.lower() == "location":
            value = _strip_presigned_credential(value)
        for label in find(f"{name}: {value}", ""):
            hits.append(f"{label} in header {name} of the {status} answer to {url}")
    if body:
        for label in find(body, ""):
            hits.append(f"{label} in the body of the {status} answer to {url}")


def scan_logs(instances):
    """Every log, stdout and sanitizer report of the instances (the RGW's own
    logs are not ours and hold the keys by design)."""
    if not _SECRETS:
        return
    for inst in instances:
        files = [inst.dir / "stdout"]
        for d in (inst.log_dir, inst.san_dir):
            if d.is_dir():
                files += [p for p in d.rglob("*") if p.is_file()]
        for p in files:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            stats["log_files"] += 1
            stats["log_bytes"] += len(data)
            for label in find(data, str(p)):
                line = next((l for l in data.splitlines() if find(l, "")), b"")
                hits.append(f"{label} in {p}: {line[:300]!r}")


def install():
    """Scan every response from now on (idempotent)."""
    if getattr(requests.Session.send, "_secrets_scan", False):
        return
    orig_send = requests.Session.send

    def send(self, request, **kw):
        r = orig_send(self, request, **kw)
        # A streamed body is the test's to read; its head is scanned here.
        body = None if kw.get("stream") else r.content
        scan_response(r.url, r.status_code, list(r.headers.items()), body)
        return r

    send._secrets_scan = True
    requests.Session.send = send

    # Raw connections: every head and body read, however a test reads them.
    raw = ocireg_client.RawConnection
    orig_head, orig_body = raw.read_head, raw.read_body

    def read_head(self):
        status, reason, headers = orig_head(self)
        scan_response(f"raw http://{self.host}:{self.port}", status, headers, None)
        return status, reason, headers

    def read_body(self, status, headers, method):
        body = orig_body(self, status, headers, method)
        scan_response(f"raw http://{self.host}:{self.port}", status, [], body)
        return body

    raw.read_head, raw.read_body = read_head, read_body
