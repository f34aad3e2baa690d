"""Lost answers on the S3 side, with real parts (S3 store only).

A fault proxy (tests/fixtures/faultproxy.py) sits between httpd and the
RGW: it forwards a request, lets RGW apply it and reads RGW's answer, then
drops the connection before the answer reaches the module. It does so once,
for every S3 write of the upload and finalize path. Each push must end with
the right blob (read back, digest checked) or a clean retryable error after
which the client's retry succeeds: never a 201 over a broken blob, and
nothing left behind (no multipart upload, no upload object, no data object
no pointer names). The same with kill -9 of the httpd child while the
answer of each finalize step is held back."""

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import BACKENDS
from httpd_harness import HttpdInstance, bad_log_lines
from ocireg_client import RawConnection, path_of
from test_robustness import kill_child_serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from faultproxy import FaultProxy  # noqa: E402

MIB = 1024 * 1024
PART = 5 * MIB
# Two full parts and a tail: PATCH 1 sends part 1 and a tail, PATCH 2
# part 2 and a new tail, the closing PUT sends the tail as part 3.
PATCHES = [7 * MIB, 4 * MIB + 1234]

pytestmark = pytest.mark.skipif("s3" not in BACKENDS,
                                reason="OCIREG_BACKENDS does not include s3")


@pytest.fixture(scope="module")
def lossy(rgw, base_dir):
    host, port = rgw.endpoint.split("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    storage = rgw.storage(base_dir, "s3-lossy", part_size="5M",
                          extra=["OCIRegS3Timeouts 5 20", "OCIRegS3Retries 2"])
    storage["endpoint"] = proxy.endpoint
    # The test config's Timeout is 30: a lease of 31 s is renewed every
    # ~10 s, so a renewal while waiting on S3 can be watched.
    inst = HttpdInstance("s3-lossy", base_dir, storage=storage,
                         global_extra="OCIRegUploadLease 31")
    inst.start()
    yield inst, proxy, rgw
    try:
        inst.stop()
    finally:
        proxy.close()
    # Reported here, where the failing module is named, not by the
    # session's bucket check.
    left = rgw.multipart_uploads(storage["prefix"])
    for k, upload_id, _ in left:
        rgw.client().abort_multipart_upload(Bucket=rgw.bucket, Key=k, UploadId=upload_id)
    assert left == [], f"multipart uploads left: {left}"
    # A lost answer is worth warnings; a killed child, notices. Errors
    # would be the module failing a request it could have finished.
    bad = bad_log_lines(inst.error_log_since(0),
                        [r"exit signal Killed", r"OCIREG\d+: .*backend unreachable",
                         r"OCIREG00024: .*stored parts differ",
                         r"OCIREG\d+: .*(Empty reply|Recv failure|Send failure|Connection reset)"])
    assert bad == [], "\n".join(bad)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def offset_of(base, loc):
    """The session's offset as it reports it (GET on the upload)."""
    for _ in range(10):
        r = requests.get(base + loc)
        if r.status_code == 204:
            rng = r.headers["Range"]
            # "0-0" is what an empty session reports (none of ours has 1 byte)
            end = 0 if rng == "0-0" else int(rng.split("-")[1]) + 1
            return end, r.headers.get("Location", loc)
        assert r.status_code >= 500, (r.status_code, r.text)
    raise AssertionError(f"upload status kept failing: {r.status_code} {r.text}")


def retryable(r):
    """A clean failure: 5xx (or 416 with the session's Range) with an OCI
    JSON error body."""
    assert r.status_code >= 500 or r.status_code == 416, (r.status_code, r.text)
    assert r.json()["errors"], r.text
    return True


class Push:
    """One blob pushed as a client with retries would: POST, PATCHes, PUT;
    a failed PATCH resumes from the offset the session reports, a failed
    PUT is sent again."""

    def __init__(self, inst, repo, data):
        self.base = inst.base_url
        self.repo = repo
        self.data = data
        self.digest = digest_of(data)
        self.loc = None
        self.sent = 0
        self.failures = []

    def post(self):
        for _ in range(3):
            r = requests.post(f"{self.base}/v2/{self.repo}/blobs/uploads/")
            if r.status_code == 202:
                self.loc = r.headers["Location"]
                return
            retryable(r)
            self.failures.append(("POST", r.status_code))
        raise AssertionError("POST kept failing")

    def patch(self, n):
        end = self.sent + n
        for _ in range(4):
            r = requests.patch(self.base + self.loc, data=self.data[self.sent:end],
                               headers={"Content-Range": f"{self.sent}-{end - 1}",
                                        "Content-Type": "application/octet-stream"})
            if r.status_code == 202:
                assert r.headers["Range"] == f"0-{end - 1}", r.headers
                self.loc = r.headers["Location"]
                self.sent = end
                return
            retryable(r)
            self.failures.append(("PATCH", r.status_code))
            self.sent, self.loc = offset_of(self.base, self.loc)
            assert self.sent <= end
            if self.sent == end:
                return
        raise AssertionError("PATCH kept failing")

    def put(self, loc=None):
        loc = loc or self.loc
        for _ in range(4):
            try:
                r = requests.put(self.base + loc, params={"digest": self.digest})
            except requests.ConnectionError as e:
                self.failures.append(("PUT", str(e)))
                continue
            if r.status_code == 201:
                assert r.headers["Docker-Content-Digest"] == self.digest
                return
            if r.status_code == 404 and self.failures:
                # The session ended with an earlier attempt whose answer
                # was lost: the blob must be there.
                h = requests.head(f"{self.base}/v2/{self.repo}/blobs/{self.digest}")
                assert h.status_code == 200, (r.text, h.status_code)
                return
            retryable(r)
            self.failures.append(("PUT", r.status_code))
        raise AssertionError("PUT kept failing")

    def check(self, rgw, prefix):
        g = requests.get(f"{self.base}/v2/{self.repo}/blobs/{self.digest}")
        assert g.status_code == 200, g.text
        assert digest_of(g.content) == self.digest, "a broken blob was served"
        # The link's holder entry was written with it: a mount without
        # `from` finds the blob.
        r = requests.post(f"{self.base}/v2/{self.repo}-found/blobs/uploads/",
                          params={"mount": self.digest})
        assert r.status_code == 201, r.text
        assert_nothing_left(rgw, prefix)


def assert_nothing_left(rgw, prefix):
    """No multipart upload, no upload object, no data object that no
    pointer names. What a session kept goes right after the 201, by the
    same request: waited for."""
    c = rgw.client()

    def keys(p):
        out, token = [], None
        while True:
            kw = {"Bucket": rgw.bucket, "Prefix": p}
            if token:
                kw["ContinuationToken"] = token
            page = c.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    deadline = time.monotonic() + 10
    while rgw.multipart_uploads(prefix) or keys(prefix + "uploads/"):
        assert time.monotonic() < deadline, (rgw.multipart_uploads(prefix),
                                             keys(prefix + "uploads/"))
        time.sleep(0.05)
    named = set()
    for k in keys(prefix + "blobs/"):
        meta = c.head_object(Bucket=rgw.bucket, Key=k).get("Metadata", {})
        if "ocireg-data" in meta:
            named.add(meta["ocireg-data"])
    orphans = [k for k in keys(prefix + "data/") if k not in named]
    assert orphans == [], f"data objects no pointer names: {orphans}"


# (name, client step before which the rule is set, method, target regex)
LOST = [
    ("record-create", "post", "PUT", r"/uploads/[^/?]+/state\."),
    ("record", "patch1", "PUT", r"/uploads/[^/?]+/state\."),
    ("record-replaced-delete", "patch2", "DELETE", r"/uploads/[^/?]+/state\."),
    ("lock", "patch1", "PUT", r"/uploads/[^/?]+/lock\."),
    ("unlock", "patch1", "DELETE", r"/uploads/[^/?]+/lock\."),
    ("multipart-create", "patch1", "POST", r"/data/[^?]+\?uploads"),
    ("part", "patch1", "PUT", r"partNumber=1(&|$)"),
    ("second-part", "patch2", "PUT", r"partNumber=2(&|$)"),
    ("last-part", "put", "PUT", r"partNumber=3(&|$)"),
    ("complete", "put", "POST", r"/data/[^?]+\?uploadId="),
    ("pointer", "put", "PUT", r"/blobs/sha256/"),
    ("link", "put", "PUT", r"/_layers/"),
    ("holder", "put", "PUT", r"/holders/"),
    ("cleanup-delete", "put", "POST", r"\?delete"),
]


def run_push(push, arm):
    """The push, with arm(step) called before each step."""
    arm("post")
    push.post()
    for i, n in enumerate(PATCHES):
        arm(f"patch{i + 1}")
        push.patch(n)
    arm("put")
    push.put()


@pytest.mark.parametrize("name, step, method, target", LOST, ids=[l[0] for l in LOST])
def test_lost_answer(lossy, name, step, method, target):
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, f"lost/{name}", data)
    rule = []

    def arm(s):
        if s == step:
            rule.append(proxy.drop(method, target))

    try:
        run_push(push, arm)
        # what follows the 201 (removing the session's objects) too
        assert rule and rule[0].fired.wait(30), \
            f"{rule} never matched: {proxy.requests()[-20:]}"
    finally:
        proxy.clear()
    push.check(rgw, inst.storage["prefix"])


def test_lost_answers_of_every_pointer_attempt(lossy):
    """The pointer PUT and both its retries lose their answers: the
    closing PUT fails cleanly, and the client's retry finds the blob whole
    (the pointer names this session's data, which stays)."""
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, "lost/pointer-twice", data)
    rules = []

    def arm(s):
        if s == "put":
            # more than the S3 client's attempts (OCIRegS3Retries 2, and
            # curl's own resend on a connection that closed unanswered)
            rules.append(proxy.drop("PUT", r"/blobs/sha256/", times=6))

    try:
        run_push(push, arm)
    finally:
        proxy.clear()
    assert rules[0].count >= 3, rules
    assert ("PUT", 503) in push.failures, push.failures
    push.check(rgw, inst.storage["prefix"])


# Finalize steps whose answer is held while the child is killed.
FINALIZE = [
    ("last-part", "PUT", r"partNumber=3(&|$)"),
    ("list-parts", "GET", r"/data/[^?]+\?uploadId="),
    ("complete", "POST", r"/data/[^?]+\?uploadId="),
    ("pointer", "PUT", r"/blobs/sha256/"),
    ("link", "PUT", r"/_layers/"),
    ("holder", "PUT", r"/holders/"),
    ("cleanup-delete", "POST", r"\?delete"),
]


def kill_closing_put_at(inst, proxy, push, method, target):
    """Sends the closing PUT, holds the S3 answer to the request matching
    method and target, kills the child serving the PUT meanwhile, and then
    drops the held answer."""
    rule = proxy.hold(method, target)
    c = RawConnection(inst.port, timeout=120)
    try:
        c.send_head("PUT", path_of(push.loc) + ("&" if "?" in push.loc else "?")
                    + "digest=" + push.digest, {"Content-Length": "0"})
        assert rule.fired.wait(60), f"{rule} never matched: {proxy.requests()[-20:]}"
        kill_child_serving(inst, c.sock)
    finally:
        rule.release(drop=True)
        c.close()
        proxy.clear()


@pytest.mark.parametrize("name, method, target", FINALIZE, ids=[f[0] for f in FINALIZE])
def test_child_killed_at_finalize_step(lossy, name, method, target):
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, f"killed/{name}", data)
    push.post()
    for n in PATCHES:
        push.patch(n)
    kill_closing_put_at(inst, proxy, push, method, target)
    push.failures.append(("PUT", "killed"))
    push.put()
    push.check(rgw, inst.storage["prefix"])


def test_child_killed_after_complete_then_upload_cancelled(lossy):
    """Complete went through, the child died before the pointer, and the
    client gives up (DELETE of the session): the completed data object
    goes with the session."""
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, "killed/cancelled", data)
    push.post()
    for n in PATCHES:
        push.patch(n)
    kill_closing_put_at(inst, proxy, push, "POST", r"/data/[^?]+\?uploadId=")
    prefix = inst.storage["prefix"]
    uuid = path_of(push.loc).split("?")[0].rsplit("/", 1)[1]
    # the data object is complete, and no pointer names it yet
    assert rgw.client().head_object(Bucket=rgw.bucket,
                                    Key=prefix + "data/" + uuid)["ContentLength"] == len(data)
    r = requests.delete(push.base + push.loc)
    assert r.status_code == 204, r.text
    h = requests.head(f"{push.base}/v2/{push.repo}/blobs/{push.digest}")
    assert h.status_code == 404
    assert_nothing_left(rgw, prefix)
    assert [o["Key"] for o in rgw.client().list_objects_v2(
        Bucket=rgw.bucket, Prefix=prefix + "data/").get("Contents", [])
        if o["Key"].endswith(uuid)] == []


def test_tail_changed_behind_the_session_refused(lossy):
    """A tail that is not what the session recorded (anyone with access to
    the bucket rewrote the record object's body) is refused at finalize:
    the server-side copy of the tail is conditional on the MD5 the record
    holds. 400 BLOB_UPLOAD_INVALID, and no blob under that digest."""
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, "tampered/tail", data)
    push.post()
    for n in PATCHES:
        push.patch(n)
    prefix = inst.storage["prefix"]
    uuid = path_of(push.loc).split("?")[0].rsplit("/", 1)[1]
    c = rgw.client()
    tails = [o["Key"] for o in c.list_objects_v2(
        Bucket=rgw.bucket, Prefix=f"{prefix}uploads/{uuid}/state.").get("Contents", [])
        if o["Size"] > 0]
    assert len(tails) == 1, tails
    got = c.get_object(Bucket=rgw.bucket, Key=tails[0])
    body = got["Body"].read()
    assert len(body) == len(data) - 2 * PART
    c.put_object(Bucket=rgw.bucket, Key=tails[0], Body=bytes(len(body)),
                 Metadata=got["Metadata"])
    r = requests.put(push.base + push.loc, params={"digest": push.digest})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    h = requests.head(f"{push.base}/v2/{push.repo}/blobs/{push.digest}")
    assert h.status_code == 404
    assert_nothing_left(rgw, prefix)


def test_lease_renewed_while_waiting_on_s3(lossy):
    """The answer to the session record's PUT is held back: while the
    request waits on S3, its lock's lease is renewed (the lock object's
    expiry moves on), so no other host takes the session over."""
    inst, proxy, rgw = lossy
    data = os.urandom(sum(PATCHES))
    push = Push(inst, "lease/waiting", data)
    push.post()
    prefix = inst.storage["prefix"]
    uuid = path_of(push.loc).split("?")[0].rsplit("/", 1)[1]
    c = rgw.client()

    def lock_expiry():
        keys = [o["Key"] for o in c.list_objects_v2(
            Bucket=rgw.bucket, Prefix=f"{prefix}uploads/{uuid}/lock.").get("Contents", [])]
        if not keys:
            return None
        return int(c.get_object(Bucket=rgw.bucket, Key=sorted(keys)[-1])["Body"]
                   .read().split()[-1])

    rule = proxy.hold("PUT", r"/uploads/[^/?]+/state\.")
    patcher = threading.Thread(target=push.patch, args=(PATCHES[0],))
    try:
        patcher.start()
        assert rule.fired.wait(60), f"{rule} never matched"
        first = lock_expiry()
        assert first is not None
        deadline = time.monotonic() + 40
        while True:
            now = lock_expiry()
            # still held and waiting on the same answer
            assert now is not None and patcher.is_alive() and rule.count == 1, \
                "the request stopped waiting before its lease was renewed"
            if now > first:
                break
            assert time.monotonic() < deadline, "the lease was not renewed while waiting"
            time.sleep(0.2)
    finally:
        rule.release()
        patcher.join(60)
        proxy.clear()
    assert push.sent == PATCHES[0]
    push.patch(PATCHES[1])
    push.put()
    push.check(rgw, prefix)
