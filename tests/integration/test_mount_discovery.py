"""A mount without `from` (`?mount=<digest>` alone, the spec's optional
automatic content discovery): the blob is linked (201) when some
repository holding it lets this client pull, and an upload session opens
(202) otherwise. The repositories holding a digest come from the store's
holder index (holders/sha256/<hex>/<name>); an entry is only a hint, so one
without a link mounts nothing. The rights cases run with Basic auth and
`Require oci-push/oci-pull` rules, on both stores. What it costs on S3 is
counted in test_s3_request_cost.py."""

import os
from pathlib import Path

import pytest

from httpd_harness import htpasswd_file, wait_for
from ocireg_client import Registry, assert_error, random_digest, sha256, with_query
from test_restart import graceful_restart

OCTET = {"Content-Type": "application/octet-stream"}


def mount(reg, target, digest, frm=None):
    q = f"?mount={digest}" + (f"&from={frm}" if frm else "")
    return reg.post(f"/v2/{target}/blobs/uploads/{q}", data=b"")


def assert_session(reg, r):
    """A 202 that opened a usable session; cancelled here."""
    assert r.status_code == 202, r.text
    assert r.headers.get("Docker-Upload-UUID")
    assert r.headers.get("Range") == "0-0"
    reg.cancel_upload(reg.location(r))


def assert_mounted(reg, r, target, digest, data):
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    g = reg.get(f"/v2/{target}/blobs/{digest}")
    assert g.status_code == 200 and g.content == data


def assert_not_linked(reg, target, digest):
    g = reg.get(f"/v2/{target}/blobs/{digest}")
    assert_error(g, 404, "BLOB_UNKNOWN")


class Store:
    """The instance's store, reached behind the registry's back."""

    def __init__(self, inst, request):
        self.inst = inst
        self.s3 = None
        if inst.storage:
            rgw = request.getfixturevalue("rgw")
            self.s3 = rgw.client()
            self.bucket = rgw.bucket
            self.prefix = inst.storage["prefix"]

    def add_holder(self, digest, name):
        """A holder entry with no link behind it."""
        hexd = digest.split(":", 1)[1]
        if self.s3:
            self.s3.put_object(Bucket=self.bucket, Body=b"",
                               Key=f"{self.prefix}holders/sha256/{hexd}/{name}")
            return
        d = Path(self.inst.data_dir) / "holders" / "sha256" / hexd
        d.mkdir(parents=True, exist_ok=True)
        (d / name.replace("/", "+")).write_bytes(b"")

    def forget_holders(self, digest):
        """As a build before the index left the store: no entries for the
        digest, no marker of a completed index."""
        hexd = digest.split(":", 1)[1]
        if self.s3:
            for name in self.holders(digest):
                self.s3.delete_object(
                    Bucket=self.bucket,
                    Key=f"{self.prefix}holders/sha256/{hexd}/{name}")
            self.s3.delete_object(Bucket=self.bucket,
                                  Key=f"{self.prefix}holders.complete")
            return
        d = Path(self.inst.data_dir) / "holders" / "sha256" / hexd
        for f in d.iterdir():
            f.unlink()
        (Path(self.inst.data_dir) / "holders.complete").unlink()

    def index_complete(self):
        if self.s3:
            try:
                self.s3.head_object(Bucket=self.bucket,
                                    Key=f"{self.prefix}holders.complete")
                return True
            except Exception:  # noqa: BLE001
                return False
        return (Path(self.inst.data_dir) / "holders.complete").exists()

    def holders(self, digest):
        hexd = digest.split(":", 1)[1]
        if self.s3:
            p = f"{self.prefix}holders/sha256/{hexd}/"
            got = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=p)
            return sorted(o["Key"][len(p):] for o in got.get("Contents", []))
        d = Path(self.inst.data_dir) / "holders" / "sha256" / hexd
        if not d.exists():
            return []
        return sorted(f.name.replace("+", "/") for f in d.iterdir())


@pytest.fixture
def store(server, request):
    return Store(server, request)


# -- without rules -----------------------------------------------------------

def test_found_in_another_repository(reg, repo, store):
    data = os.urandom(5000)
    d = reg.push_blob(f"{repo}/src", data)
    assert store.holders(d) == [f"{repo}/src"]
    r = mount(reg, f"{repo}/dst", d)
    assert_mounted(reg, r, f"{repo}/dst", d, data)
    # The mounted link has its entry too: it is found from there as well.
    assert store.holders(d) == [f"{repo}/dst", f"{repo}/src"]
    # Mounting into a repository that holds it already is a mount too.
    assert_mounted(reg, mount(reg, f"{repo}/src", d), f"{repo}/src", d, data)


def test_chunked_push_is_found(reg, repo):
    data = os.urandom(70000)
    d = reg.push_blob_chunked(f"{repo}/src", data, 30000)
    assert_mounted(reg, mount(reg, f"{repo}/dst", d), f"{repo}/dst", d, data)


def test_unknown_digest_opens_a_session(reg, repo):
    d = random_digest()
    r = mount(reg, f"{repo}/dst", d)
    assert r.status_code == 202, r.text
    # The session is an ordinary one.
    data = b"uploaded, since nothing held it"
    r = reg.put(with_query(reg.location(r), digest=sha256(data)), data=data,
                headers=OCTET)
    assert r.status_code == 201, r.text


def test_malformed_digest_is_refused(reg, repo):
    assert_error(mount(reg, f"{repo}/dst", "sha256:xyz"), 400, "DIGEST_INVALID")


def test_deleted_everywhere_is_not_found(reg, repo, store):
    data = os.urandom(3000)
    d = reg.push_blob(f"{repo}/src", data)
    assert reg.delete(f"/v2/{repo}/src/blobs/{d}").status_code == 202
    # The entry went with the link.
    assert store.holders(d) == []
    assert_session(reg, mount(reg, f"{repo}/dst", d))
    assert_not_linked(reg, f"{repo}/dst", d)


def test_an_entry_without_a_link_mounts_nothing(reg, repo, store):
    """The index is a hint: entries left by a failed unlink, or written into
    the store by someone else, are checked against the link."""
    data = os.urandom(3000)
    d = reg.push_blob(f"{repo}/src", data)
    assert reg.delete(f"/v2/{repo}/src/blobs/{d}").status_code == 202
    store.add_holder(d, f"{repo}/src")
    store.add_holder(d, f"{repo}/ghost")
    assert_session(reg, mount(reg, f"{repo}/dst", d))
    assert_not_linked(reg, f"{repo}/dst", d)
    # An entry naming no valid repository is ignored.
    store.add_holder(d, "UPPER")
    assert_session(reg, mount(reg, f"{repo}/dst", d))
    # A holder listed after the stale ones is still found.
    reg.push_blob(f"{repo}/zz", data)
    assert_mounted(reg, mount(reg, f"{repo}/dst", d), f"{repo}/dst", d, data)


def test_links_older_than_the_index_are_found_after_a_start(httpd_factory, request):
    """Links made before the holder index have no entries: not found (a
    session), until a start completes the index in the background (once:
    its marker says so)."""
    inst = httpd_factory(f"holders-backfill-{os.urandom(3).hex()}")
    store = Store(inst, request)
    reg = Registry(inst.base_url)
    try:
        wait_for(store.index_complete, timeout=60, what="the index marked at start")
        data = os.urandom(2000)
        d = reg.push_blob("old/src", data)
        reg.push_blob("old/src/nested", data)
        store.forget_holders(d)
        assert store.holders(d) == []
        assert_session(reg, mount(reg, "old/dst", d))
        assert_not_linked(reg, "old/dst", d)
        graceful_restart(inst)
        wait_for(store.index_complete, timeout=60, what="the index completed")
        assert store.holders(d) == ["old/src", "old/src/nested"]
        assert_mounted(reg, mount(reg, "old/dst", d), "old/dst", d, data)
    finally:
        reg.close()


# -- with rules ---------------------------------------------------------------

USERS = {"alice": "alice-Passw0rd", "bob": "bob-Passw0rd"}


@pytest.fixture(scope="module")
def rights(httpd_factory, base_dir):
    """alice pushes (and pulls) team-a/*; bob pushes team-b/* and pulls
    team-a/shared only."""
    lines = []
    for user, pw in USERS.items():
        f = htpasswd_file(Path(base_dir) / f"htpasswd-discovery-{user}", user, pw)
        lines.append(Path(f).read_text().strip())
    pw = Path(base_dir) / "htpasswd-discovery"
    pw.write_text("\n".join(lines) + "\n")
    pw.chmod(0o644)
    auth = "\n".join([
        "AuthType Basic",
        'AuthName "ocireg discovery"',
        f'AuthUserFile "{pw}"',
        "AuthzSendForbiddenOnFailure On",
        "<RequireAny>",
        "    Require oci-push team-a/* user:alice",
        "    Require oci-push team-b/* user:bob",
        "    Require oci-pull team-a/shared user:bob",
        "</RequireAny>",
    ])
    inst = httpd_factory("discovery-rights", location_auth=auth)
    clients = {u: Registry(inst.base_url, auth=(u, pw_)) for u, pw_ in USERS.items()}
    yield inst, clients
    for c in clients.values():
        c.close()


# httpd logs each refusal at level error.
REFUSALS = pytest.mark.allow_errors(r"AH01631: user \w+: authorization failure")


@REFUSALS
def test_rules_are_what_the_tests_assume(rights):
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    d = alice.push_blob("team-a/private", os.urandom(100))
    assert bob.get(f"/v2/team-a/private/blobs/{d}").status_code == 403
    r = bob.post("/v2/team-a/x/blobs/uploads/", data=b"")
    assert r.status_code == 403
    d = alice.push_blob("team-a/shared", os.urandom(100))
    assert bob.get(f"/v2/team-a/shared/blobs/{d}").status_code == 200


def test_found_where_the_client_may_pull(rights):
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    data = os.urandom(4000)
    d = alice.push_blob("team-a/shared", data)
    assert_mounted(bob, mount(bob, "team-b/found", d), "team-b/found", d, data)


def test_not_found_where_the_client_may_not_pull(rights):
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    data = os.urandom(4000)
    d = alice.push_blob("team-a/private", data)
    assert_session(bob, mount(bob, "team-b/refused", d))
    assert_not_linked(bob, "team-b/refused", d)
    # Nor the other way round: bob's blobs are not alice's to mount.
    d2 = bob.push_blob("team-b/own", os.urandom(4000))
    assert_session(alice, mount(alice, "team-a/taken", d2))
    assert_not_linked(alice, "team-a/taken", d2)


def test_unknown_digest_with_rules(rights):
    _, c = rights
    assert_session(c["bob"], mount(c["bob"], "team-b/unknown", random_digest()))


def test_refused_holders_are_passed_over(rights):
    """The first holder in order is one bob may not pull; the next is his
    own repository."""
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    data = os.urandom(4000)
    d = alice.push_blob("team-a/aaa-private", data)
    bob.push_blob("team-b/zzz-own", data)
    assert_mounted(bob, mount(bob, "team-b/passed-over", d), "team-b/passed-over",
                   d, data)


def test_from_without_pull_is_never_a_mount(rights):
    """`?mount=&from=` names a repository bob may not pull: a session, even
    though the blob is in a repository he may pull (`from` is not ignored
    for discovery)."""
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    data = os.urandom(4000)
    d = alice.push_blob("team-a/private", data)
    assert_session(bob, mount(bob, "team-b/from-refused", d, frm="team-a/private"))
    assert_not_linked(bob, "team-b/from-refused", d)
    alice.push_blob("team-a/shared", data)
    assert_session(bob, mount(bob, "team-b/from-refused", d, frm="team-a/private"))
    assert_not_linked(bob, "team-b/from-refused", d)
    # With pull on `from`, the mount is made.
    assert_mounted(bob, mount(bob, "team-b/from-allowed", d, frm="team-a/shared"),
                   "team-b/from-allowed", d, data)


@REFUSALS
def test_no_push_on_the_target_is_refused_first(rights):
    _, c = rights
    alice, bob = c["alice"], c["bob"]
    d = alice.push_blob("team-a/shared", os.urandom(4000))
    r = mount(bob, "team-a/shared-copy", d)
    assert_error(r, 403, "DENIED")
    anon = Registry(rights[0].base_url)
    try:
        assert_error(mount(anon, "team-b/anon", d), 401, "UNAUTHORIZED")
    finally:
        anon.close()
