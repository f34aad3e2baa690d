"""What only the S3 store has: multipart parts of exactly the part size, the
tail kept in the session's record object, pointer objects, one copy of a blob pushed twice, aborted
multipart uploads, presigned redirects, a refusing backend (wrong secret)
and a backend that stops answering in the middle of a PATCH.

These tests look at the bucket behind the registry's back (boto3 against the
session's RGW) and use instances of their own, built here from `rgw` and
HttpdInstance rather than from the `backend`-parametrized httpd_factory, so
that they run exactly once when "s3" is among OCIREG_BACKENDS. The instances
are guarded like conftest's: startup errors fail at once, the suite's
per-test error-log guard covers them (conftest._RUNNING), and at the end of
the module their logs since the last test and their shutdown are checked,
and no multipart upload may be left under their prefixes."""

import re
import hashlib
import json
import os
import random
import select
import signal
import time
from urllib.parse import urljoin

import pytest
import requests

import conftest
from conftest import BACKENDS
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines, module_path, wait_for
from ocireg_client import (MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, Registry,
                           RawConnection, assert_error, check_raw_response, descriptor,
                           oci_manifest, path_of, raw_request, sha256, with_query)

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")

MiB = 1024 * 1024
PART = 5 * MiB
OCTET = {"Content-Type": "application/octet-stream"}


# -- instances -------------------------------------------------------------------

class S3Instances:
    """Starts HttpdInstances on the session's RGW, each with its own prefix;
    `allowed` are regexes of error-log lines expected from that instance
    (such an instance is kept out of the suite's per-test guard and checked
    by its test)."""

    def __init__(self, rgw, base_dir):
        self.rgw = rgw
        self.base_dir = base_dir
        self.started = []

    def start(self, name, allowed=(), cred_file=None, extra=(), part_size="5M"):
        if not module_path().exists():
            pytest.fail(f"{module_path()} does not exist; run `make build` first",
                        pytrace=False)
        kw = {"part_size": part_size, "extra": list(extra)}
        if cred_file:
            kw["cred_file"] = cred_file
        storage = self.rgw.storage(self.base_dir, name, **kw)
        inst = HttpdInstance(name, self.base_dir, storage=storage)
        inst.prefix = storage["prefix"]
        inst.allowed = list(allowed)
        try:
            inst.start()
        except HttpdError as e:
            pytest.fail(str(e), pytrace=False)
        self.started.append(inst)
        startup = bad_log_lines(inst.error_log_since(0))
        if startup:
            pytest.fail(f"httpd {name} logged errors at startup:\n" + "\n".join(startup),
                        pytrace=False)
        inst.checked_offset = inst.error_log_size()
        if not inst.allowed:
            conftest._RUNNING.append(inst)
        return inst

    def finish(self):
        problems = []
        for inst in self.started:
            offset = getattr(inst, "checked_offset", 0)
            inst.stop()
            if inst in conftest._RUNNING:
                conftest._RUNNING.remove(inst)
            bad = bad_log_lines(inst.error_log_since(offset), inst.allowed)
            if bad:
                problems.append(f"httpd {inst.name}:\n" + "\n".join(bad))
            left = self.rgw.multipart_uploads(inst.prefix)
            if left:
                problems.append(f"httpd {inst.name} left multipart uploads: {left}")
                # Reported here, once; don't let the session's RGW check
                # report them again for the whole suite.
                c = self.rgw.client()
                for k, upload_id, _ in left:
                    c.abort_multipart_upload(Bucket=self.rgw.bucket, Key=k,
                                             UploadId=upload_id)
            tails = [o["Key"] for o in self.rgw.client().list_objects_v2(
                Bucket=self.rgw.bucket, Prefix=inst.prefix + "uploads/").get("Contents", [])]
            if tails:
                problems.append(f"httpd {inst.name} left tail objects of ended "
                                f"sessions: {tails}")
        return problems


@pytest.fixture(scope="module")
def s3i(rgw, base_dir):
    f = S3Instances(rgw, base_dir)
    yield f
    problems = f.finish()
    if problems:
        pytest.fail("after the S3 tests / at shutdown:\n" + "\n".join(problems),
                    pytrace=False)


@pytest.fixture(scope="module")
def s3c(rgw):
    return rgw.client()


@pytest.fixture(scope="module")
def parts_srv(s3i):
    return s3i.start("s3parts")


@pytest.fixture(scope="module")
def preg(parts_srv):
    r = Registry(parts_srv.base_url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def redirect_srv(s3i):
    return s3i.start("s3redirect", extra=["OCIRegS3BlobRedirect 300"])


@pytest.fixture(scope="module")
def badcred_srv(s3i, rgw, base_dir):
    cred = rgw.cred_file(base_dir, "bad.cred", secret="wrong")
    return s3i.start("s3badcred", cred_file=cred,
                     allowed=[r"OCIREG00014: storage refused: .*backend answered 403"])


@pytest.fixture(scope="module")
def pause_srv(s3i):
    return s3i.start("s3pause", extra=["OCIRegS3Timeouts 2 3", "OCIRegS3Retries 0"])


# -- helpers ---------------------------------------------------------------------

def head(s3c, rgw, key):
    """head_object, or None when the object does not exist."""
    try:
        return s3c.head_object(Bucket=rgw.bucket, Key=key)
    except s3c.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def keys_under(s3c, rgw, prefix):
    out = []
    for page in s3c.get_paginator("list_objects_v2").paginate(Bucket=rgw.bucket,
                                                               Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def blob_key(inst, digest):
    return inst.prefix + "blobs/sha256/" + digest.split(":", 1)[1]


def data_key(inst, uid):
    return inst.prefix + "data/" + uid


def tail_keys(s3c, rgw, inst, uid):
    """The session's records that hold bytes: the tail (the bytes after the
    last full part) is the body of the latest record,
    uploads/<uuid>/state.<20-digit version>; a superseded record that held
    bytes goes once its successor is saved."""
    objs = s3c.list_objects_v2(Bucket=rgw.bucket,
                               Prefix=inst.prefix + f"uploads/{uid}/").get("Contents", [])
    tails = [o["Key"].rsplit("/", 1)[1] for o in objs if o["Size"] > 0]
    for k in tails:
        assert re.fullmatch(r"state\.[0-9]{20}", k), k
    return tails


def upload_objects(s3c, rgw, inst, uid):
    """Everything the session keeps under uploads/<uuid>/ (state, tails)."""
    objs = s3c.list_objects_v2(Bucket=rgw.bucket,
                               Prefix=inst.prefix + f"uploads/{uid}/").get("Contents", [])
    return [o["Key"].rsplit("/", 1)[1] for o in objs]


def error_json(status, headers, body, where):
    """A 5xx of the module: JSON {"errors": [...]} (codes outside the spec's
    list are fine here: UNAVAILABLE, INTERNAL_ERROR)."""
    ct = headers.get("Content-Type") if hasattr(headers, "get") else None
    assert ct and ct.split(";")[0].strip() == "application/json", \
        f"{where}: {status} with Content-Type {ct!r}, body {body[:200]!r}"
    doc = json.loads(body)
    assert isinstance(doc.get("errors"), list) and doc["errors"], (where, doc)
    assert all("code" in e and "message" in e for e in doc["errors"]), (where, doc)
    return [e["code"] for e in doc["errors"]]


class RawHeaders:
    def __init__(self, resp):
        self.resp = resp

    def get(self, name):
        return self.resp.header(name)


def patch_chunk(inst, loc, offset, chunk, mode):
    """One PATCH on a new connection: mode "cl" with Content-Length and
    Content-Range, "te" with chunked transfer encoding and no length at
    all. Returns (next location path, response)."""
    hdrs = {**OCTET, "Connection": "close"}
    if mode == "cl":
        hdrs["Content-Range"] = f"{offset}-{offset + len(chunk) - 1}"
        r = raw_request(inst.port, "PATCH", loc, headers=hdrs, body=chunk)
    else:
        step = 256 * 1024
        r = raw_request(inst.port, "PATCH", loc, headers=hdrs,
                        chunks=(chunk[i:i + step] for i in range(0, len(chunk), step)))
    check_raw_response(r, loc, "PATCH")
    assert r.status == 202, (offset, len(chunk), mode, r)
    assert r.header("Range") == f"0-{offset + len(chunk) - 1}", (offset, len(chunk), r)
    return path_of(urljoin(inst.base_url + "/", r.header("Location"))), r


def start_session(reg, repo):
    r = reg.post(f"/v2/{repo}/blobs/uploads/", data=b"")
    assert r.status_code == 202, r.text
    uid = r.headers["Docker-Upload-UUID"]
    return path_of(reg.location(r)), uid


def assert_parts_before_put(rgw, s3c, inst, uid, sent):
    """While the session is open: one multipart upload holding exactly the
    full parts so far, each exactly PART bytes, and the rest in the latest
    record; no multipart upload before the first part. A blob's first
    whole part stays in the record until more bytes come (a blob of one
    part is then a single object); once there are parts, a request that
    ends on a part boundary sends its last part."""
    mpus = rgw.multipart_uploads(data_key(inst, uid))
    if sent % PART == 0 and sent >= 2 * PART:
        full = sent // PART
    else:
        full = max(0, -(-sent // PART) - 1)
    if full == 0:
        assert mpus == [], f"{sent} bytes sent, no full part, yet {mpus}"
    else:
        assert len(mpus) == 1, f"{sent} bytes sent: {mpus}"
        k, _, sizes = mpus[0]
        assert k == data_key(inst, uid)
        assert sizes == [PART] * full, f"{sent} bytes sent: part sizes {sizes}"
    tails = tail_keys(s3c, rgw, inst, uid)
    if sent - full * PART:
        # earlier tails are gone once the state moved past them
        assert len(tails) == 1, (sent, tails)
        t = head(s3c, rgw, inst.prefix + f"uploads/{uid}/{tails[0]}")
        assert t is not None and t["ContentLength"] == sent - full * PART, (sent, t)
    else:
        assert tails == [], f"{sent} bytes, all in parts, but records with bytes: {tails}"


def upload_gone_after_201(rgw, s3c, inst, uid):
    """The 201 goes out as soon as the blob is visible; what the upload kept
    (multipart upload, records, locks, tail) is removed right after it, by
    the same request: wait for that."""
    def gone():
        mpus = rgw.multipart_uploads(data_key(inst, uid) if uid else inst.prefix + "data/")
        left = upload_objects(s3c, rgw, inst, uid) if uid else []
        return not mpus and not left
    wait_for(gone, timeout=10, what="the upload's objects removed after the 201")


def assert_stored(rgw, s3c, inst, uid, digest, size):
    """After the closing PUT: no multipart upload or record of the session;
    a plain object for a blob of at most one part, else a pointer to the
    data object whose completed parts are PART bytes but the last."""
    upload_gone_after_201(rgw, s3c, inst, uid)
    h = head(s3c, rgw, blob_key(inst, digest))
    assert h is not None, f"no object for {digest}"
    meta = h.get("Metadata", {})
    if size <= PART:
        assert h["ContentLength"] == size and "ocireg-data" not in meta, h
        return
    assert h["ContentLength"] == 0, h
    assert meta.get("ocireg-size") == str(size), meta
    if uid:
        assert meta.get("ocireg-data") == data_key(inst, uid), meta
    d = head(s3c, rgw, meta["ocireg-data"])
    assert d is not None and d["ContentLength"] == size, d
    # A completed multipart object's ETag ends in -<number of parts>; the
    # part sizes were checked with ListParts before the closing PUT.
    nparts = -(-size // PART)
    assert d["ETag"].strip('"').endswith(f"-{nparts}"), (d["ETag"], nparts)


def served_pids(inst, uid, count):
    lines = inst.wait_access_log(lambda l: uid in l and '"PATCH ' in l, count)
    return {l.split()[0] for l in lines}


# -- 1. part sizes ------------------------------------------------------------------

# (chunk size, mode) lists; ("put", n) carries the last n bytes on the PUT.
PATTERNS = {
    "bytes-then-big": [(1, "cl"), (1, "te"), (1, "cl"), (1, "te"), (1, "cl"),
                       (PART + 100, "cl")],
    "part-plus-1": [(PART + 1, "cl")],
    "7MiB-te": [(7 * MiB, "te")],
    "7MiB-cl": [(7 * MiB, "cl")],
    "part-minus-1": [(PART - 1, "cl")],
    "part-minus-1-te": [(PART - 1, "te")],
    "part": [(PART, "cl")],
    "part-te": [(PART, "te")],
    "part-plus-1-te": [(PART + 1, "te")],
    "3parts-plus-5": [(3 * PART + 5, "te")],
    "3parts-plus-5-cl": [(3 * PART + 5, "cl")],
    "fill-from-tail": [(PART - 1, "cl"), (1, "te"), (PART + 1, "cl"), (2, "te"),
                       (PART - 3, "cl"), (4, "te")],
    "final-on-put": [(PART - 10, "cl"), ("put", 2 * MiB)],
    "final-on-put-exact": [(PART + 7, "te"), ("put", PART - 7)],
    "only-put": [("put", PART + 3)],
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_part_sizes(rgw, s3c, parts_srv, preg, name):
    inst, reg = parts_srv, preg
    repo = f"s3/parts-{name.lower()}"
    pattern = PATTERNS[name]
    total = sum(n for n, _ in pattern if n != "put") + sum(m for n, m in pattern if n == "put")
    data = random.Random(name).randbytes(total)
    loc, uid = start_session(reg, repo)
    sent = 0
    final = b""
    for n, mode in pattern:
        if n == "put":
            final = data[sent:sent + mode]
            continue
        loc, _ = patch_chunk(inst, loc, sent, data[sent:sent + n], mode)
        sent += n
        assert_parts_before_put(rgw, s3c, inst, uid, sent)
    assert sent + len(final) == total
    d = sha256(data)
    r = reg.put(with_query(loc, digest=d), data=final, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    assert_stored(rgw, s3c, inst, uid, d, total)
    g = reg.get(f"/v2/{repo}/blobs/{d}")
    assert g.status_code == 200 and g.content == data
    assert g.headers["Content-Length"] == str(total)


def test_part_sizes_random_chunks_across_children(rgw, s3c, parts_srv, preg):
    """Seeded random chunk sizes (bytes to several MiB), with and without
    Content-Length, each PATCH on a new connection, until at least three
    parts are in and two children have served PATCHes of the session."""
    inst, reg = parts_srv, preg
    repo = "s3/parts-random"
    rnd = random.Random(20240607)
    loc, uid = start_session(reg, repo)
    h = hashlib.sha256()
    kept = []
    sent = 0
    count = 0
    pids = set()
    while count < 60:
        kind = rnd.random()
        if kind < 0.3:
            n = rnd.randint(1, 4096)
        elif kind < 0.7:
            n = rnd.randint(4097, MiB)
        else:
            n = rnd.randint(MiB, 6 * MiB)
        chunk = rnd.randbytes(n)
        loc, _ = patch_chunk(inst, loc, sent, chunk, rnd.choice(["cl", "te"]))
        sent += n
        count += 1
        h.update(chunk)
        kept.append(chunk)
        if count % 4 == 0 or sent >= 3 * PART:
            assert_parts_before_put(rgw, s3c, inst, uid, sent)
        if sent >= 3 * PART and count >= 10:
            pids = served_pids(inst, uid, count)
            if len(pids) >= 2:
                break
    assert_parts_before_put(rgw, s3c, inst, uid, sent)
    data = b"".join(kept)
    d = "sha256:" + h.hexdigest()
    r = reg.put(with_query(loc, digest=d), data=b"")
    assert r.status_code == 201, r.text
    assert_stored(rgw, s3c, inst, uid, d, sent)
    assert reg.get(f"/v2/{repo}/blobs/{d}").content == data
    print(f"\n{count} chunks, {sent} bytes, served by child pids {sorted(pids)}")
    assert len(pids) >= 2, f"all {count} PATCHes were served by one child {pids}"


# -- 2. small blobs: no multipart ---------------------------------------------------------

@pytest.mark.parametrize("how", ["monolithic", "monolithic-te", "patch-te", "post-put"])
def test_small_blob_without_multipart(rgw, s3c, parts_srv, preg, how):
    inst, reg = parts_srv, preg
    repo = f"s3/small-{how}"
    data = os.urandom(PART - 4096 if how != "post-put" else 12345)
    d = sha256(data)
    uid = None
    if how == "monolithic":
        r = raw_request(inst.port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}",
                        headers=OCTET, body=data)
    elif how == "monolithic-te":
        r = raw_request(inst.port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}",
                        headers=OCTET,
                        chunks=(data[i:i + 65536] for i in range(0, len(data), 65536)))
    else:
        loc, uid = start_session(reg, repo)
        if how == "patch-te":
            loc, _ = patch_chunk(inst, loc, 0, data, "te")
            assert rgw.multipart_uploads(data_key(inst, uid)) == []
            r = raw_request(inst.port, "PUT", with_query(loc, digest=d), body=b"")
        else:
            r = raw_request(inst.port, "PUT", with_query(loc, digest=d), headers=OCTET,
                            body=data)
    assert r.status == 201, r
    assert rgw.multipart_uploads(inst.prefix + "data/") == []
    if uid:
        upload_gone_after_201(rgw, s3c, inst, uid)
    h = head(s3c, rgw, blob_key(inst, d))
    assert h is not None and h["ContentLength"] == len(data), h
    assert "ocireg-data" not in h.get("Metadata", {}), h
    assert reg.get(f"/v2/{repo}/blobs/{d}").content == data


# -- 3. one copy of a blob pushed twice ------------------------------------------------------

def test_dedup_second_push_aborts_its_multipart(rgw, s3c, parts_srv, preg):
    inst, reg = parts_srv, preg
    data = os.urandom(PART + 12345)
    d = sha256(data)
    before = keys_under(s3c, rgw, inst.prefix + "data/")
    reg.push_blob("s3/dedup-one", data)
    after_first = keys_under(s3c, rgw, inst.prefix + "data/")
    assert len(after_first) == len(before) + 1, (before, after_first)

    loc, uid = start_session(reg, "s3/dedup-two")
    loc, _ = patch_chunk(inst, loc, 0, data, "cl")
    mpus = rgw.multipart_uploads(data_key(inst, uid))
    assert len(mpus) == 1 and mpus[0][2] == [PART], mpus
    r = reg.put(with_query(loc, digest=d), data=b"")
    assert r.status_code == 201, r.text
    upload_gone_after_201(rgw, s3c, inst, uid)
    after_second = keys_under(s3c, rgw, inst.prefix + "data/")
    assert sorted(after_second) == sorted(after_first)
    assert head(s3c, rgw, data_key(inst, uid)) is None
    for repo in ("s3/dedup-one", "s3/dedup-two"):
        assert reg.get(f"/v2/{repo}/blobs/{d}").content == data

    # A third push as one monolithic POST (parts sent while the body comes).
    reg.push_blob("s3/dedup-three", data)
    assert sorted(keys_under(s3c, rgw, inst.prefix + "data/")) == sorted(after_first)
    assert rgw.multipart_uploads(inst.prefix + "data/") == []


# -- 4. digest mismatch on a multi-part upload ------------------------------------------------

def test_digest_mismatch_aborts_multipart(rgw, s3c, parts_srv, preg):
    inst, reg = parts_srv, preg
    repo = "s3/mismatch"
    data = os.urandom(2 * PART + 7)
    claimed = sha256(data[:-1] + b"X")
    loc, uid = start_session(reg, repo)
    loc, _ = patch_chunk(inst, loc, 0, data[:PART + 3], "te")
    loc, _ = patch_chunk(inst, loc, PART + 3, data[PART + 3:], "cl")
    assert_parts_before_put(rgw, s3c, inst, uid, len(data))
    r = reg.put(with_query(loc, digest=claimed), data=b"")
    assert_error(r, 400, "DIGEST_INVALID")
    assert rgw.multipart_uploads(data_key(inst, uid)) == []
    assert upload_objects(s3c, rgw, inst, uid) == []
    assert head(s3c, rgw, data_key(inst, uid)) is None
    for dg in (claimed, sha256(data)):
        assert reg.head(f"/v2/{repo}/blobs/{dg}").status_code == 404
        assert head(s3c, rgw, blob_key(inst, dg)) is None
    assert_error(reg.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_cancelled_session_leaves_nothing(rgw, s3c, parts_srv, preg):
    inst, reg = parts_srv, preg
    loc, uid = start_session(reg, "s3/cancel")
    data = os.urandom(PART + 99)
    loc, _ = patch_chunk(inst, loc, 0, data, "cl")
    assert_parts_before_put(rgw, s3c, inst, uid, len(data))
    r = reg.delete(loc)
    assert r.status_code == 204, r.text
    assert rgw.multipart_uploads(data_key(inst, uid)) == []
    assert upload_objects(s3c, rgw, inst, uid) == []


# -- 5. presigned redirect -----------------------------------------------------------------

@pytest.mark.parametrize("size", [3000, PART + 5])
def test_presigned_redirect(rgw, redirect_srv, size):
    reg = Registry(redirect_srv.base_url)
    try:
        repo = "s3/redirect"
        data = os.urandom(size)
        d = reg.push_blob(repo, data)
        r = reg.get(f"/v2/{repo}/blobs/{d}", allow_redirects=False)
        assert r.status_code == 307, (r.status_code, r.text)
        # Cached no longer than the presigned URL lives (300 s here).
        cc = r.headers.get("Cache-Control", "")
        assert "immutable" not in cc and "private" in cc, cc
        assert 0 < int(cc.split("max-age=")[1].split(",")[0]) <= 300, cc
        loc = r.headers["Location"]
        assert loc.startswith(rgw.endpoint + "/"), loc
        assert "X-Amz-Signature=" in loc, loc
        g = requests.get(loc, timeout=30)
        assert g.status_code == 200, (g.status_code, g.text[:300])
        assert g.content == data
        h = reg.head(f"/v2/{repo}/blobs/{d}")
        assert h.status_code == 200
        assert h.headers["Content-Length"] == str(size)
        assert h.headers.get("Docker-Content-Digest") == d
        assert "Location" not in h.headers
    finally:
        reg.close()


# -- 6. wrong secret ------------------------------------------------------------------------

def test_wrong_secret_is_500_and_logged(badcred_srv):
    inst = badcred_srv
    offset = inst.error_log_size()
    data = os.urandom(2000)
    d = sha256(data)
    r = requests.post(f"{inst.base_url}/v2/s3/badcred/blobs/uploads/?digest={d}",
                      data=data, headers=OCTET, timeout=30)
    assert r.status_code == 500, (r.status_code, r.text)
    error_json(r.status_code, r.headers, r.content, "POST monolithic")
    assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"

    deadline = time.monotonic() + 10
    while True:
        lines = inst.error_log_since(offset)
        named = [l for l in lines if "OCIREG00014" in l and "SignatureDoesNotMatch" in l]
        if named or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert named, "no OCIREG00014 line naming SignatureDoesNotMatch:\n" + "\n".join(lines)

    # A read refused too: 500 with JSON, logged as a refusal (403).
    offset2 = inst.error_log_size()
    g = requests.get(f"{inst.base_url}/v2/s3/badcred/blobs/{d}", timeout=30)
    assert g.status_code == 500, (g.status_code, g.text)
    error_json(g.status_code, g.headers, g.content, "GET blob")
    deadline = time.monotonic() + 10
    while True:
        refused = [l for l in inst.error_log_since(offset2)
                   if "OCIREG00014" in l and "403" in l]
        if refused or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert refused, "no OCIREG00014 line for the refused read"
    print("\n" + "\n".join(refused))

    lines = inst.error_log_since(offset)
    bad = bad_log_lines(lines, inst.allowed)
    assert not bad, "unexpected error-log lines:\n" + "\n".join(bad)
    inst.checked_offset = inst.error_log_size()


# -- 7. backend paused in the middle of a PATCH -----------------------------------------------

class PausedRgw:
    """SIGSTOP to the RGW daemon; SIGCONT however the block ends."""

    def __init__(self, rgw):
        self.pid = rgw.rgw_pid()
        self.stopped = False

    def stop(self):
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped = False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.cont()


def read_response_nonblocking(conn, deadline):
    """Reads the response from a RawConnection whose socket polled
    readable; None on a reset (the server closed with our data unread)."""
    conn.sock.settimeout(max(1.0, deadline - time.monotonic()))
    try:
        return conn.read_response("PATCH")
    except (ConnectionResetError, ConnectionError, BrokenPipeError):
        return None


def stream_patch_and_pause(inst, loc, data, pause_at, paused, deadline):
    """A chunked PATCH of data, pausing the backend once pause_at bytes are
    sent, sending on (as far as the server reads) until it answers.
    Returns (response or None on a reset, bytes handed to the socket,
    monotonic time of the pause)."""
    conn = RawConnection(inst.port, timeout=30)
    t_pause = None
    try:
        assert conn.send_head("PATCH", loc, {**OCTET, "Transfer-Encoding": "chunked"})
        sock = conn.sock
        sock.setblocking(False)
        step = 64 * 1024
        pos = 0
        pending = b""
        ended = False
        while time.monotonic() < deadline:
            if not pending and not ended:
                if pos < len(data):
                    piece = data[pos:pos + step]
                    pending = b"%x\r\n" % len(piece) + piece + b"\r\n"
                    pos += len(piece)
                else:
                    pending = b"0\r\n\r\n"
                    ended = True
            if t_pause is None and pos >= pause_at and not pending:
                paused.stop()
                t_pause = time.monotonic()
            wl = [sock] if pending else []
            rl, wr, _ = select.select([sock], wl, [], 0.2)
            if rl:
                sock.setblocking(True)
                return read_response_nonblocking(conn, deadline), pos, t_pause
            if wr:
                try:
                    n = sock.send(pending)
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    sock.setblocking(True)
                    return read_response_nonblocking(conn, deadline), pos, t_pause
                pending = pending[n:]
        raise AssertionError(f"no answer to the PATCH within the deadline "
                             f"({pos} bytes sent, paused at {t_pause})")
    finally:
        conn.close()


def test_backend_paused_mid_patch(rgw, s3c, pause_srv):
    inst = pause_srv
    reg = Registry(inst.base_url)
    repo = "s3/paused"
    data = random.Random("paused").randbytes(3 * PART + 4321)
    d = sha256(data)
    # Things to touch while the backend is paused.
    small = os.urandom(1000)
    small_d = reg.push_blob(repo, small)
    config = b'{"architecture":"amd64","os":"linux"}'
    reg.push_blob(repo, config)
    manifest = oci_manifest(descriptor(MT_OCI_CONFIG, config),
                            [descriptor(MT_OCI_LAYER, small)])

    loc, uid = start_session(reg, repo)
    try:
        with PausedRgw(rgw) as paused:
            deadline = time.monotonic() + 30
            resp, pos, t_pause = stream_patch_and_pause(inst, loc, data, 6 * MiB,
                                                        paused, deadline)
            assert t_pause is not None, "the PATCH was answered before the pause"
            waited = time.monotonic() - t_pause
            assert waited < 30, f"PATCH answered {waited:.1f}s after the pause"
            if resp is not None:
                assert resp.status == 503, resp
                error_json(resp.status, RawHeaders(resp), resp.body, "PATCH while paused")
                assert resp.header("Retry-After"), resp
                assert resp.header("Docker-Distribution-API-Version") == "registry/2.0"
            print(f"\nPATCH answered {waited:.1f}s after the pause "
                  f"({pos} bytes sent): {resp.status if resp else 'reset'}")

            # Still paused: a manifest PUT and a blob GET fail fast with 503.
            for method, path, kw in (
                    ("PUT", f"/v2/{repo}/manifests/v1",
                     {"data": manifest, "headers": {"Content-Type": MT_OCI_MANIFEST}}),
                    ("GET", f"/v2/{repo}/blobs/{small_d}", {})):
                t0 = time.monotonic()
                r = reg.request(method, path, check=False, timeout=30, **kw)
                took = time.monotonic() - t0
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                error_json(r.status_code, r.headers, r.content, f"{method} {path}")
                assert r.headers.get("Retry-After"), r.headers
                assert took < 10, f"{method} {path} took {took:.1f}s"
            # The session status lives in shared memory: no backend needed.
            st = reg.get(loc)
            assert st.status_code == 204, st.text
        # Backend back.
        st = reg.get(loc)
        assert st.status_code == 204, st.text
        rng = st.headers["Range"]
        end = int(rng.split("-")[1])
        offset = 0 if rng == "0-0" else end + 1
        assert offset <= pos, (rng, pos)
        print(f"resuming at {offset}")
        # where the status says to go on
        loc = path_of(urljoin(inst.base_url + "/", st.headers["Location"]))
        r = raw_request(inst.port, "PATCH", loc, headers={
            **OCTET, "Content-Range": f"{offset}-{len(data) - 1}"}, body=data[offset:])
        check_raw_response(r, loc, "PATCH")
        assert r.status == 202, r
        assert r.header("Range") == f"0-{len(data) - 1}"
        loc = path_of(urljoin(inst.base_url + "/", r.header("Location")))
        # Checked after the data path, so that both show when this fails:
        # the session is still one multipart upload of whole parts.
        mpus_before_put = rgw.multipart_uploads(data_key(inst, uid))
        r = reg.put(with_query(loc, digest=d), data=b"")
        assert r.status_code == 201, r.text
        uid_done = uid
        uid = None
        g = reg.get(f"/v2/{repo}/blobs/{d}")
        assert g.status_code == 200 and g.content == data
        # Once the backend is back, the manifest goes in.
        reg.put_manifest(repo, "v1", manifest, MT_OCI_MANIFEST)
        assert len(mpus_before_put) == 1 and mpus_before_put[0][2] == [PART] * 3, \
            f"before the closing PUT: {mpus_before_put}"
        assert_stored(rgw, s3c, inst, uid_done, d, len(data))
    finally:
        if uid is not None:
            reg.request("DELETE", loc, check=False)
        reg.close()
