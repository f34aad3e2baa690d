"""Per-repository rights from LDAP: mod_authnz_ldap against a private slapd.

The slapd fixture (tests/fixtures/slapd.py) holds alice (team-a-pushers),
bob (readers), carol (no group) and dave (registry-admins). httpd
authenticates them with `AuthBasicProvider ldap` and decides with the
registry's `Require oci-pull|oci-push|oci-delete` rules whose principals
are `ldap-group:<dn>`: the rules of conf/examples/auth-ldap.conf, as
they stand there. Storage does not matter here, so only the filesystem
store runs these tests.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from ocireg_client import (MT_OCI_MANIFEST, Registry, assert_error,  # noqa: E402
                           descriptor, oci_manifest, sha256, MT_OCI_CONFIG)
from slapd import USERS, Slapd, SlapdError, user_dn  # noqa: E402

SKOPEO = shutil.which("skopeo")

# Refusals are what these tests provoke; httpd logs each at error level.
REFUSALS = [r"AH01617: user \w*: authentication failure",
            r"AH01618: user [\w-]+ not found",
            r"AH01631: user \w+: authorization failure",
            r"AH01630: client denied by server configuration"]

pytestmark = [pytest.mark.allow_errors(*REFUSALS)]
# The httpd instances of this file use the filesystem store only.
filesystem_only = pytest.mark.parametrize("backend", ["filesystem"], indirect=True)

LDAP_MODULES = """\
LoadModule ldap_module /usr/lib/apache2/modules/mod_ldap.so
LoadModule authnz_ldap_module /usr/lib/apache2/modules/mod_authnz_ldap.so
"""


EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "examples" / "auth-ldap.conf"


def ldap_rules(url, cache=True):
    """conf/examples/auth-ldap.conf as it stands, pointed at our slapd, in
    a <Location /v2> after the LoadModule lines (global_extra: a <Location>
    is parsed where it stands); the template's own <Location /v2> gets no
    rules, and httpd merges the two."""
    text = EXAMPLE.read_text()
    assert "ldap://ldap.example.org/" in text
    text = text.replace("ldap://ldap.example.org", url)
    caches = "" if cache else "LDAPCacheEntries 0\nLDAPOpCacheEntries 0\n"
    return f"{LDAP_MODULES}{caches}\n<Location /v2>\n{text}\n</Location>\n"


@pytest.fixture(scope="module")
def slapd(base_dir):
    s = Slapd(base_dir, name="slapd-auth-ldap")
    try:
        s.start()
    except SlapdError as e:
        s.stop()
        pytest.fail(str(e), pytrace=False)
    print(f"\nslapd on {s.url} ready in {s.start_seconds:.3f}s (slapadd included)")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ldap_server(httpd_factory, slapd):
    return httpd_factory("ldap", location_auth="# rules: the <Location /v2> at the end",
                         global_extra=ldap_rules(slapd.url))


@pytest.fixture(scope="module")
def ldap_server_nocache(httpd_factory, slapd):
    """mod_ldap's caches off: every request shows its own LDAP operations."""
    return httpd_factory("ldap-nocache", location_auth="# rules: at the end",
                         global_extra=ldap_rules(slapd.url, cache=False))


@pytest.fixture
def client(ldap_server):
    made = []

    def make(user=None, password=None):
        auth = (user, password if password is not None else USERS[user]) if user else None
        r = Registry(ldap_server.base_url, auth=auth)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def denied_detail(r):
    (e,) = r.json()["errors"]
    return e["detail"]


def small_image(reg, repo, tag):
    """A config-only OCI image (one blob, one manifest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    reg.push_blob(repo, config)
    body = oci_manifest(descriptor(MT_OCI_CONFIG, config), [])
    reg.put_manifest(repo, tag, body, MT_OCI_MANIFEST)
    return sha256(body)


def test_slapd_holds_the_directory(slapd):
    for uid, pw in USERS.items():
        assert slapd.bind_ok(uid, pw)
        assert not slapd.bind_ok(uid, pw + "x")
    assert slapd.members("team-a-pushers") == [user_dn("alice")]
    assert slapd.members("readers") == [user_dn("bob")]


def test_slapd_fixture_retries_a_taken_port(tmp_path, monkeypatch):
    import socket
    import slapd as fixture
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1]]
        real = fixture._free_port
        monkeypatch.setattr(fixture, "_free_port", lambda: ports.pop() if ports else real())
        s = Slapd(tmp_path, name="clash")
        try:
            s.start()
            assert s.port != taken.getsockname()[1] and not ports
            assert s.bind_ok("bob", USERS["bob"])
        finally:
            s.stop()
    assert not s.running


def test_slapd_fixture_names_what_is_missing(tmp_path, monkeypatch):
    import slapd as fixture
    real = fixture._tool
    monkeypatch.setattr(fixture, "_tool", lambda name, *a: None if name == "slapd" else real(name))
    with pytest.raises(SlapdError, match=r"need slapd.*make test-deps"):
        Slapd(tmp_path).start()


@filesystem_only
def test_ldap_team_pushes_readers_pull_others_refused(client):
    repo = "team-a/py"
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    img = alice.push_image(repo, tag="v1")
    for reg in (alice, bob):
        r = reg.get_manifest(repo, "v1")
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.content == img["manifest"]
        assert reg.get(f"/v2/{repo}/blobs/{img['config']['digest']}").status_code == 200

    r = bob.post(f"/v2/{repo}/blobs/uploads/", data=b"")
    assert_error(r, 403, "DENIED")
    assert denied_detail(r) == {"repository": repo, "action": "push"}
    assert "WWW-Authenticate" not in r.headers
    r = bob.put(f"/v2/{repo}/manifests/v2", data=img["manifest"],
                headers={"Content-Type": MT_OCI_MANIFEST})
    assert_error(r, 403, "DENIED")

    r = carol.get_manifest(repo, "v1")
    assert_error(r, 403, "DENIED")
    assert denied_detail(r) == {"repository": repo, "action": "pull"}
    # alice pushes only team-a/*
    r = alice.post("/v2/team-b/py/blobs/uploads/", data=b"")
    assert_error(r, 403, "DENIED")
    assert denied_detail(r) == {"repository": "team-b/py", "action": "push"}


@filesystem_only
def test_ldap_wrong_password_is_401(client):
    for reg in (client("alice", "not-her-password"), client("nobody-here", "x")):
        for path in ("/v2/", "/v2/team-a/py/tags/list", "/v2/public/x/tags/list"):
            r = reg.get(path)
            assert_error(r, 401, "UNAUTHORIZED")
            assert r.headers["WWW-Authenticate"].startswith("Basic "), r.headers
            body = r.text.lower()
            assert "password" not in body and "ldap" not in body, r.text


@filesystem_only
def test_ldap_anonymous_is_challenged_except_public_pull(client):
    anon, dave, carol = client(), client("dave"), client("carol")
    digest = small_image(dave, "public/tool", "v1")
    r = anon.get_manifest("public/tool", "v1")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    # credentials sent are checked even where none are needed
    r = client("carol", "wrong").get_manifest("public/tool", "v1")
    assert_error(r, 401, "UNAUTHORIZED")
    assert carol.get_manifest("public/tool", "v1").status_code == 200
    for method, path in (("GET", "/v2/"), ("GET", "/v2/team-a/py/tags/list"),
                         ("POST", "/v2/public/tool/blobs/uploads/")):
        r = anon.request(method, path, data=b"" if method == "POST" else None)
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["WWW-Authenticate"].startswith("Basic "), r.headers


@filesystem_only
def test_ldap_delete_is_separate_from_push(client):
    repo = "team-a/del"
    alice, dave = client("alice"), client("dave")
    digest = small_image(alice, repo, "v1")
    r = alice.delete(f"/v2/{repo}/manifests/{digest}")
    assert_error(r, 403, "DENIED")
    assert denied_detail(r) == {"repository": repo, "action": "delete"}
    # cancelling one's own upload is part of pushing
    loc, _ = alice.start_upload(repo)
    assert alice.delete(loc).status_code == 204
    assert dave.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
    assert alice.get_manifest(repo, digest).status_code == 404


@filesystem_only
def test_ldap_catalog_filtered_per_user(client):
    """Each user's catalog lists what that user may pull, by the same rules."""
    alice, bob, carol, dave = (client(u) for u in ("alice", "bob", "carol", "dave"))
    small_image(alice, "team-a/x", "cat")
    small_image(dave, "private/hidden", "cat")
    small_image(dave, "public/shown", "cat")

    def catalog(reg):
        r = reg.get("/v2/_catalog?n=1000")
        assert r.status_code == 200, (r.status_code, r.text)
        return set(r.json()["repositories"])

    seen = {name: catalog(reg) for name, reg in
            (("alice", alice), ("bob", bob), ("carol", carol), ("dave", dave),
             ("anonymous", client()))}
    assert {"team-a/x", "public/shown"} <= seen["bob"], seen
    assert "private/hidden" not in seen["bob"], seen
    assert "team-a/x" not in seen["carol"] and "private/hidden" not in seen["carol"], seen
    assert "public/shown" in seen["carol"], seen
    assert {"team-a/x", "private/hidden", "public/shown"} <= seen["dave"], seen
    assert all(n.startswith("public/") for n in seen["anonymous"]), seen
    assert "public/shown" in seen["anonymous"], seen


@filesystem_only
def test_ldap_catalog_cost_does_not_grow_with_repositories(client, slapd,
                                                          ldap_server_nocache):
    """Without mod_ldap's caches, a catalog of many repositories costs one
    authentication (search + bind) and at most one group question per
    distinct `ldap-group:` principal of the rules, however many
    repositories it lists: verdicts are kept per request."""
    dave = Registry(ldap_server_nocache.base_url, auth=("dave", USERS["dave"]))
    bob = Registry(ldap_server_nocache.base_url, auth=("bob", USERS["bob"]))
    try:
        for i in range(12):
            small_image(dave, f"{'team-a' if i % 2 else 'private'}/many-{i:02d}", "v1")
        mark = slapd.mark()
        r = bob.get("/v2/_catalog?n=1000")
        assert r.status_code == 200, (r.status_code, r.text)
        ops = slapd.operations(mark)
    finally:
        bob.close()
        dave.close()
    print(f"\ncatalog of {len(r.json()['repositories'])} repositories for bob, "
          f"uncached LDAP: {ops}")
    principals = 3  # team-a-pushers, readers, registry-admins
    assert ops["CMP"] <= principals, ops
    # one search to find bob at authentication, then at most one per
    # principal first asked in a sub-request (mod_authnz_ldap looks the
    # user's DN up again where it did not authenticate him)
    assert ops["SRCH"] <= 1 + principals, ops


@filesystem_only
def test_ldap_operations_per_request(slapd, ldap_server, ldap_server_nocache):
    """What LDAP a push and a catalog cost, counted in slapd's stats log:
    with mod_ldap's caches (the default) a user's next requests cost
    nothing; without them each request searches and binds once, and each
    group rule asked costs one compare."""
    cached = Registry(ldap_server.base_url, auth=("alice", USERS["alice"]))
    raw = Registry(ldap_server_nocache.base_url, auth=("alice", USERS["alice"]))
    try:
        cached.get("/v2/")  # fills the caches
        results = {}
        for name, reg in (("cached", cached), ("uncached", raw)):
            mark = slapd.mark()
            small_image(reg, f"team-a/count-{name}", "v1")  # POST blob + PUT manifest
            results[f"push {name}"] = slapd.operations(mark)
            mark = slapd.mark()
            assert reg.get("/v2/_catalog").status_code == 200
            results[f"catalog {name}"] = slapd.operations(mark)
        print("\nLDAP operations (alice):")
        for k, v in results.items():
            print(f"  {k}: {v}")
        assert results["push cached"] == {"BIND": 0, "SRCH": 0, "CMP": 0, "UNBIND": 0}
        # two requests; each authenticates (search + bind) and asks one group
        up = results["push uncached"]
        assert up["SRCH"] == 2 and up["CMP"] <= 2, up
        assert 2 <= up["BIND"] <= 6, up
    finally:
        cached.close()
        raw.close()


# -- skopeo -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def skopeo_run(tmp_path_factory):
    if SKOPEO is None:
        pytest.fail("skopeo is not installed (tests/install-deps.sh test)", pytrace=False)
    d = tmp_path_factory.mktemp("skopeo-ldap")
    (d / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    (d / "home").mkdir()
    env = dict(os.environ, HOME=str(d / "home"), XDG_RUNTIME_DIR=str(d / "home"),
               XDG_CONFIG_HOME=str(d / "home" / ".config"))
    env.pop("REGISTRY_AUTH_FILE", None)

    def run(*args):
        return subprocess.run([SKOPEO, "--policy", str(d / "policy.json"), *args],
                              env=env, capture_output=True, text=True, timeout=180)
    run.dir = d
    return run


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    from test_skopeo import build_oci_layout
    path = tmp_path_factory.mktemp("ldap-layout") / "img"
    return path, build_oci_layout(path, nlayers=2, layer_mb=1)


@filesystem_only
def test_ldap_skopeo_push_pull_refusals(ldap_server, skopeo_run, layout, tmp_path):
    from test_skopeo import read_layout
    src, info = layout
    ref = f"docker://{ldap_server.hostport}/team-a/x"
    creds = {u: f"{u}:{USERS[u]}" for u in USERS}

    p = skopeo_run("copy", "--dest-tls-verify=false", "--dest-creds", creds["alice"],
                   f"oci:{src}:v1", f"{ref}:v1")
    assert p.returncode == 0, p.stderr
    for who in ("alice", "bob"):
        out = tmp_path / who
        p = skopeo_run("copy", "--src-tls-verify=false", "--src-creds", creds[who],
                       f"{ref}:v1", f"oci:{out}:v1")
        assert p.returncode == 0, p.stderr
        assert read_layout(out)[0] == info["manifest_digest"]

    p = skopeo_run("copy", "--dest-tls-verify=false", "--dest-creds", creds["bob"],
                   f"oci:{src}:v1", f"{ref}:bob")
    assert p.returncode != 0 and "denied" in p.stderr, p.stderr
    p = skopeo_run("copy", "--src-tls-verify=false", "--src-creds", creds["carol"],
                   f"{ref}:v1", f"oci:{tmp_path / 'carol'}:v1")
    assert p.returncode != 0 and "denied" in p.stderr, p.stderr
    p = skopeo_run("inspect", "--tls-verify=false", "--creds", "alice:wrong", f"{ref}:v1")
    assert p.returncode != 0 and "unauthorized" in p.stderr.lower(), p.stderr
    # after `skopeo login`, the stored LDAP credentials are used
    authfile = str(skopeo_run.dir / "bob-auth.json")
    p = skopeo_run("login", "--tls-verify=false", "--authfile", authfile,
                   "-u", "bob", "-p", USERS["bob"], ldap_server.hostport)
    assert p.returncode == 0, p.stderr
    p = skopeo_run("inspect", "--tls-verify=false", "--authfile", authfile, f"{ref}:v1")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == info["manifest_digest"]
    p = skopeo_run("login", "--tls-verify=false", "--authfile", authfile,
                   "-u", "bob", "-p", "wrong", ldap_server.hostport)
    assert p.returncode != 0, p.stdout

    # delete is the admins' right, not the pushers'
    p = skopeo_run("delete", "--tls-verify=false", "--creds", creds["alice"], f"{ref}:v1")
    assert p.returncode != 0 and "denied" in p.stderr, p.stderr
    p = skopeo_run("delete", "--tls-verify=false", "--creds", creds["dave"], f"{ref}:v1")
    assert p.returncode == 0, p.stderr
    p = skopeo_run("inspect", "--tls-verify=false", "--creds", creds["alice"], f"{ref}:v1")
    assert p.returncode != 0 and "manifest unknown" in p.stderr.lower(), p.stderr


@filesystem_only
def test_ldap_skopeo_anonymous_pull_of_public(ldap_server, skopeo_run, layout, tmp_path):
    from test_skopeo import read_layout
    src, info = layout
    ref = f"docker://{ldap_server.hostport}/public/skopeo"
    p = skopeo_run("copy", "--dest-tls-verify=false", "--dest-creds",
                   f"dave:{USERS['dave']}", f"oci:{src}:v1", f"{ref}:v1")
    assert p.returncode == 0, p.stderr
    # containers/image answers /v2/'s challenge with an empty Basic login
    # when it has no credentials: that is anonymous, not a failed login
    p = skopeo_run("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{tmp_path / 'anon'}:v1")
    assert p.returncode == 0, p.stderr
    assert read_layout(tmp_path / "anon")[0] == info["manifest_digest"]
    # and pushing there still needs an admin
    p = skopeo_run("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"{ref}:anon")
    assert p.returncode != 0 and "unauthorized" in p.stderr.lower(), p.stderr
