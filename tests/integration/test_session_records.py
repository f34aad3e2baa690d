"""Upload-session records read back from the store are input: anyone who can
write the bucket (or the store's directory) can put bytes there. A record
that fails its checks (format, field grammar, hash state, HMAC under the
record key) is an unknown session: 404 BLOB_UPLOAD_UNKNOWN, a warning in
the log, never a crash. A record made by another program to the documented
format (include/ocireg_uploads.h) is read like the module's own."""

import base64
import hashlib
import hmac
import os
import secrets
import struct
import uuid as uuidlib

import pytest
import requests

from ocireg_client import assert_error

SHA256_IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
LABEL = b"mod_ocireg session record key v1\0"


def encode(uid, name, key, *, store_id, offset=0, version=1, moved=0,
           hash_length=None, pending=b"", driver=b"", fmt=1, uuid_len=None):
    """A record of format 1 as include/ocireg_uploads.h describes it."""
    body = b"OCIRSESS" + struct.pack(">H", fmt)
    u = uid.encode()
    body += struct.pack(">B", len(u) if uuid_len is None else uuid_len) + u
    n = name.encode()
    body += struct.pack(">H", len(n)) + n
    body += struct.pack(">I", store_id)
    body += struct.pack(">QQQQQ", offset, version, moved, 1, 1)
    body += struct.pack(">8I", *SHA256_IV)
    body += struct.pack(">Q", offset if hash_length is None else hash_length)
    body += struct.pack(">B", len(pending)) + pending
    body += struct.pack(">H", len(driver)) + driver
    return body + hmac.new(key, body, hashlib.sha256).digest()


class Records:
    """Writes records where the instance's store keeps them."""

    def __init__(self, inst, backend, rgw, key):
        self.inst, self.backend, self.rgw, self.key = inst, backend, rgw, key

    def put(self, uid, data, version=1):
        if self.backend == "filesystem":
            f = self.inst.data_dir / "uploads" / f"{uid}.state"
            f.write_bytes(b"%015d\n" % version + data)
            f.chmod(0o644)
        else:
            # On S3 a record is an object whose metadata holds the record
            # (base64) and whose body holds the session's tail bytes.
            key = f"{self.inst.storage['prefix']}uploads/{uid}/state.{version:020d}"
            self.rgw.client().put_object(
                Bucket=self.rgw.bucket, Key=key, Body=b"",
                Metadata={"ocireg-session": base64.b64encode(data).decode()})

    def latest(self, uid):
        """(version, bytes) of the latest record the module wrote."""
        if self.backend == "filesystem":
            raw = (self.inst.data_dir / "uploads" / f"{uid}.state").read_bytes()
            return int(raw[:15]), raw[16:]
        c = self.rgw.client()
        prefix = f"{self.inst.storage['prefix']}uploads/{uid}/state."
        keys = sorted(o["Key"] for o in c.list_objects_v2(
            Bucket=self.rgw.bucket, Prefix=prefix).get("Contents", []))
        meta = c.head_object(Bucket=self.rgw.bucket, Key=keys[-1])["Metadata"]
        return int(keys[-1].rsplit(".", 1)[1]), base64.b64decode(meta["ocireg-session"])

    def remove(self, uid):
        if self.backend == "filesystem":
            for f in (self.inst.data_dir / "uploads").glob(f"{uid}*"):
                f.unlink()
        else:
            c = self.rgw.client()
            prefix = f"{self.inst.storage['prefix']}uploads/{uid}/"
            for o in c.list_objects_v2(Bucket=self.rgw.bucket,
                                       Prefix=prefix).get("Contents", []):
                c.delete_object(Bucket=self.rgw.bucket, Key=o["Key"])


@pytest.fixture(scope="module")
def s3_or_none(backend, request):
    return request.getfixturevalue("rgw") if backend == "s3" else None


@pytest.fixture(scope="module")
def keyed(httpd_factory, base_dir, backend, s3_or_none):
    key = secrets.token_hex(32).encode()     # as `openssl rand -hex 32` makes it
    path = base_dir / f"record-{backend}.key"
    path.write_bytes(key + b"\n")
    inst = httpd_factory("records-keyed", global_extra=f"OCIRegRecordKey file:{path}")
    return Records(inst, backend, s3_or_none, key)


@pytest.fixture(scope="module")
def derived(httpd_factory, backend, s3_or_none):
    """No OCIRegRecordKey: the S3 store derives one from its secret; the
    filesystem store checks an unkeyed HMAC (a checksum)."""
    inst = httpd_factory("records-derived")
    if backend == "s3":
        ctx = f"{inst.storage['bucket']}/{inst.storage['prefix']}".encode()
        key = hmac.new(s3_or_none.secret_key.encode(), LABEL + ctx, hashlib.sha256).digest()
    else:
        key = b""
    return Records(inst, backend, s3_or_none, key)


def store_id_of(rec, repo):
    """The store id, read from a record the module wrote."""
    r = requests.post(f"{rec.inst.base_url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    uid = r.headers["Docker-Upload-UUID"]
    _, data = rec.latest(uid)
    assert data[:8] == b"OCIRSESS" and data[8:10] == b"\0\1"
    name_len = struct.unpack(">H", data[47:49])[0]
    (sid,) = struct.unpack(">I", data[49 + name_len:53 + name_len])
    assert requests.delete(rec.inst.base_url + r.headers["Location"]).status_code == 204
    return sid


def test_record_made_to_the_format_is_read_keyed(keyed):
    check_record_made_to_the_format(keyed, "keyed")


def test_record_made_to_the_format_is_read_derived_key(derived):
    check_record_made_to_the_format(derived, "derived")


def check_record_made_to_the_format(rec, which):
    repo = f"records/{which}/good"
    sid = store_id_of(rec, repo)
    uid = str(uuidlib.uuid4())
    rec.put(uid, encode(uid, repo, rec.key, store_id=sid, version=3, moved=1), version=3)
    try:
        r = requests.get(f"{rec.inst.base_url}/v2/{repo}/blobs/uploads/{uid}")
        assert r.status_code == 204, (r.text, sid, [
            l for l in rec.inst.error_log_since(0) if uid in l or "OCIREG" in l][-20:])
        assert r.headers["Range"] == "0-0"
        assert r.headers["Location"].endswith("?_state=3")
    finally:
        rec.remove(uid)


BAD = {
    "wrong key": lambda uid, repo, key, sid: encode(uid, repo, b"not the key" * 3, store_id=sid),
    "hash length is not the offset": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, hash_length=5),
    "pending bytes beyond a block": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, offset=200, pending=b"\xff" * 200),
    "offset beyond int64": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, offset=1 << 63, hash_length=0),
    "name outside the grammar": lambda uid, repo, key, sid: encode(
        uid, "../" + repo, key, store_id=sid),
    "uuid of the wrong length": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, uuid_len=40),
    "driver state too long": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, driver=b"\1" * 513),
    "unknown format": lambda uid, repo, key, sid: encode(uid, repo, key, store_id=sid, fmt=9),
    "moved after version": lambda uid, repo, key, sid: encode(
        uid, repo, key, store_id=sid, version=1, moved=2),
    # the previous raw-memory layout: a magic and a struct, never again
    "raw struct of an old build": lambda uid, repo, key, sid: (
        b"OCIRUS02" + uid.encode() + b"\0" + os.urandom(1400)),
    "empty": lambda uid, repo, key, sid: b"",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_record_is_an_unknown_session(keyed, case):
    repo = "records/bad"
    sid = store_id_of(keyed, repo)
    uid = str(uuidlib.uuid4())
    keyed.put(uid, BAD[case](uid, repo, keyed.key, sid))
    before = keyed.inst.error_log_size()
    try:
        base = f"{keyed.inst.base_url}/v2/{repo}/blobs/uploads/{uid}"
        for _ in range(3):
            assert_error(requests.get(base), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(requests.patch(base, data=b"abc", headers={"Content-Range": "0-2"}),
                     404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(requests.put(base, params={"digest": "sha256:" + "0" * 64}),
                     404, "BLOB_UPLOAD_UNKNOWN")
        warned = [l for l in keyed.inst.error_log_since(before)
                  if "OCIREG00150" in l and uid in l]
        assert warned and all(":warn]" in l for l in warned), warned
        # once per process, not once per request
        assert len(warned) <= 5 * 3, warned
    finally:
        keyed.remove(uid)


def test_tampered_record_of_a_live_session(keyed):
    """A real session whose record is changed behind the module's back:
    a reader of the store refuses it; the session's own slot copy is not
    what a reader sees."""
    repo = "records/tampered"
    base = keyed.inst.base_url
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
    loc = r.headers["Location"]
    uid = r.headers["Docker-Upload-UUID"]
    r = requests.patch(base + loc, data=b"hello", headers={"Content-Range": "0-4"})
    assert r.status_code == 202, r.text
    version, data = keyed.latest(uid)
    flipped = bytearray(data)
    flipped[60] ^= 0x01
    keyed.put(uid, bytes(flipped), version=version)
    assert_error(requests.get(base + r.headers["Location"]), 404, "BLOB_UPLOAD_UNKNOWN")
    # put back: the session carries on
    keyed.put(uid, data, version=version)
    assert requests.get(base + r.headers["Location"]).status_code == 204
    assert requests.delete(base + r.headers["Location"]).status_code == 204
