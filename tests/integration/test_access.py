"""Per-repository rights through Apache's own authn/authz: htpasswd users, a
group file, and the registry's authz providers (Require oci-pull/oci-push/
oci-delete), with the catalog filtered per caller and mounts checked
against the source's rights. Real httpd, real store, curl-like client and
skopeo."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ocireg_client import Registry, sha256, check_error_body, header_ci
from test_skopeo import SKOPEO, skopeo, skopeo_env, image  # noqa: F401

USERS = {"alice": "alice-Pw-1", "bob": "bob-Pw-2", "carol": "carol-Pw-3",
         "dave": "dave-Pw-4"}

# Refusals are logged by httpd at error level: expected here.
pytestmark = pytest.mark.allow_errors(
    r"AH01630: client denied", r"AH01631: user \S+: authorization failure",
    r"AH01617: user \S+: authentication failure",
    r"AH01618: user \S* ?not found")


def _rules(base_dir):
    pw = Path(base_dir) / "access-htpasswd"
    pw.unlink(missing_ok=True)
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run(["htpasswd", "-b"] + (["-c"] if i == 0 else []) +
                       [str(pw), user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    groups = Path(base_dir) / "access-groups"
    groups.write_text("readers: bob\nadmins: dave\n")
    return "\n".join([
        "AuthType Basic",
        'AuthName "registry"',
        f'AuthUserFile "{pw}"',
        f'AuthGroupFile "{groups}"',
        "AuthzSendForbiddenOnFailure On",
        "<RequireAny>",
        "    Require oci-pull public/*",
        "    Require oci-push public/* group:admins",
        "    Require oci-push team-a/* user:alice",
        "    Require oci-pull team-a/* group:readers",
        "    Require oci-push team-b/* user:bob",
        "    Require oci-delete team-a/* team-b/* group:admins",
        "</RequireAny>",
    ])


@pytest.fixture(scope="module")
def server_rights(httpd_factory, base_dir):
    # A nested <Location> with rules of its own: checks of its repositories
    # (catalog, mount sources) run those rules, not the parent's.
    return httpd_factory("rights", location_auth=_rules(base_dir),
                         global_extra="<Location /v2/team-c>\n"
                                      "    Require user carol\n"
                                      "</Location>")


def client(inst, user=None):
    return Registry(inst.base_url, auth=(user, USERS[user]) if user else None)


def detail_of(r):
    body = r.json()
    check_error_body(r.status_code, r.headers.get("Content-Type"), r.content)
    return body["errors"][0]["code"], body["errors"][0]["detail"]


def test_environment_names_repository_and_action(httpd_factory):
    """OCI_REPOSITORY and OCI_ACTION reach `Require expr` before the
    handler runs."""
    inst = httpd_factory("rights-expr", location_auth="\n".join([
        "<RequireAny>",
        "  Require expr \"%{env:OCI_REPOSITORY} =~ m#^open/# && "
        "%{env:OCI_ACTION} == 'pull'\"",
        "  Require expr \"%{env:OCI_REPOSITORY} == '' && "
        "%{env:OCI_ACTION} == 'pull'\"",
        "</RequireAny>"]))
    c = Registry(inst.base_url)
    try:
        assert c.get("/v2/", check=False).status_code == 200
        r = c.get("/v2/open/thing/tags/list", check=False)
        assert r.status_code == 404, r.text          # allowed, just absent
        r = c.get("/v2/closed/thing/tags/list", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "closed/thing",
                                           "action": "pull"})
        r = c.post("/v2/open/thing/blobs/uploads/", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "open/thing",
                                           "action": "push"})
    finally:
        c.close()


def test_push_allowed_in_one_repository_denied_in_another(server_rights):
    alice = client(server_rights, "alice")
    try:
        d = alice.push_blob("team-a/app", b"alice's layer")
        assert alice.get(f"/v2/team-a/app/blobs/{d}").content == b"alice's layer"
        r = alice.post("/v2/team-b/app/blobs/uploads/", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "team-b/app",
                                           "action": "push"})
        # push includes pull: alice reads back what she pushes
        assert alice.head(f"/v2/team-a/app/blobs/{d}").status_code == 200
    finally:
        alice.close()


def test_read_only_user(server_rights):
    alice, bob = client(server_rights, "alice"), client(server_rights, "bob")
    try:
        d = alice.push_blob("team-a/ro", b"for readers")
        assert bob.get(f"/v2/team-a/ro/blobs/{d}").content == b"for readers"
        r = bob.post("/v2/team-a/ro/blobs/uploads/", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "team-a/ro",
                                           "action": "push"})
        r = bob.put(f"/v2/team-a/ro/manifests/v1", data=b"{}",
                    headers={"Content-Type":
                             "application/vnd.oci.image.manifest.v1+json"},
                    check=False)
        assert r.status_code == 403
    finally:
        alice.close()
        bob.close()


def test_user_without_rights_is_denied_not_challenged(server_rights):
    carol = client(server_rights, "carol")
    try:
        r = carol.get("/v2/team-a/app/tags/list", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "team-a/app",
                                           "action": "pull"})
    finally:
        carol.close()


def test_anonymous_pull_of_public_pattern_push_authenticated(server_rights):
    dave, anon = client(server_rights, "dave"), client(server_rights)
    try:
        d = dave.push_blob("public/base", b"public bytes")
        assert anon.get(f"/v2/public/base/blobs/{d}").content == b"public bytes"
        # /v2/ challenges, so clients learn to send credentials; an
        # anonymous client pulls on regardless.
        r = anon.get("/v2/", check=False)
        assert r.status_code == 401
        assert header_ci(r.headers, "WWW-Authenticate").startswith("Basic ")
        assert dave.get("/v2/").status_code == 200
        r = anon.post("/v2/public/base/blobs/uploads/", check=False)
        assert r.status_code == 401
        assert header_ci(r.headers, "WWW-Authenticate").startswith("Basic ")
        assert detail_of(r) == ("UNAUTHORIZED", {"repository": "public/base",
                                                 "action": "push"})
        # Nothing anonymous outside the public pattern; the challenge asks
        # for credentials (somebody may pull there).
        r = anon.get("/v2/team-a/app/tags/list", check=False)
        assert r.status_code == 401
        assert detail_of(r)[0] == "UNAUTHORIZED"
    finally:
        dave.close()
        anon.close()


def test_wrong_password_is_refused_even_where_anonymous_may_pull(server_rights):
    r = Registry(server_rights.base_url, auth=("alice", "wrong"))
    try:
        resp = r.get("/v2/public/base/tags/list", check=False)
        assert resp.status_code == 401
        body = resp.text
        assert "wrong" not in body and "alice" not in body
        assert detail_of(resp)[0] == "UNAUTHORIZED"
    finally:
        r.close()


def test_delete_is_separate_from_push(server_rights):
    alice, dave = client(server_rights, "alice"), client(server_rights, "dave")
    try:
        m = alice.push_image("team-a/del", tag="v1")
        digest = m["digest"] if isinstance(m, dict) else m
        r = alice.delete(f"/v2/team-a/del/manifests/v1", check=False)
        assert r.status_code == 403
        assert detail_of(r) == ("DENIED", {"repository": "team-a/del",
                                           "action": "delete"})
        r = dave.delete(f"/v2/team-a/del/manifests/v1", check=False)
        assert r.status_code == 202, r.text
        # An upload's own cancel is the pusher's, not a delete.
        loc, _ = alice.start_upload("team-a/del")
        assert alice.delete(loc, check=False).status_code == 204
    finally:
        alice.close()
        dave.close()


def test_mount_needs_pull_on_from(server_rights):
    alice, bob = client(server_rights, "alice"), client(server_rights, "bob")
    try:
        da = alice.push_blob("team-a/src", b"team a's blob")
        db = bob.push_blob("team-b/src", b"team b's blob")
        # bob may pull team-a: his mount into team-b is a mount
        r = bob.post(f"/v2/team-b/dst/blobs/uploads/?mount={da}&from=team-a/src",
                     check=False)
        assert r.status_code == 201, r.text
        # alice may not pull team-b: a session, never the blob
        r = alice.post(f"/v2/team-a/dst/blobs/uploads/?mount={db}&from=team-b/src",
                       check=False)
        assert r.status_code == 202, r.text
        assert alice.head(f"/v2/team-a/dst/blobs/{db}", check=False).status_code == 404
    finally:
        alice.close()
        bob.close()


def catalog(c):
    names, url = [], "/v2/_catalog?n=2"
    while url:
        r = c.get(url)
        names += r.json()["repositories"]
        link = header_ci(r.headers, "Link")
        url = link[link.index("<") + 1:link.index(">")] if link else None
    return names


def test_catalog_filtered_per_caller(server_rights):
    alice, bob = client(server_rights, "alice"), client(server_rights, "bob")
    dave, carol = client(server_rights, "dave"), client(server_rights, "carol")
    anon = client(server_rights)
    try:
        alice.push_image("team-a/cat1", tag="v1")
        alice.push_image("team-a/cat2", tag="v1")
        bob.push_image("team-b/cat", tag="v1")
        carol.push_image("team-c/cat", tag="v1")
        dave.push_image("public/cat", tag="v1")
        every = set(catalog(dave))
        assert {"public/cat", "team-a/cat1", "team-a/cat2", "team-b/cat"} <= every
        seen = {u: set(catalog(c)) for u, c in
                [("alice", alice), ("bob", bob), ("carol", carol), ("anon", anon)]}
        assert all(not n.startswith("team-b/") for n in seen["alice"])
        assert {"team-a/cat1", "team-a/cat2", "public/cat"} <= seen["alice"]
        assert {"team-a/cat1", "team-b/cat", "public/cat"} <= seen["bob"]
        assert "team-c/cat" not in seen["bob"] | seen["alice"]
        assert {"public/cat", "team-c/cat"} <= seen["carol"]
        assert all(n.split("/")[0] in ("public", "team-c") for n in seen["carol"])
        assert all(n.startswith("public/") for n in seen["anon"]), seen["anon"]
        assert "public/cat" in seen["anon"]
    finally:
        for c in (alice, bob, dave, carol, anon):
            c.close()


@pytest.mark.skopeo
def test_skopeo_with_creds_and_login(server_rights, skopeo_env, image):  # noqa: F811
    if SKOPEO is None:
        pytest.fail("skopeo is required")
    layout, info = image
    host = server_rights.hostport
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false",
           "--dest-creds", f"alice:{USERS['alice']}",
           f"oci:{layout}:v1", f"docker://{host}/team-a/skopeo:v1")
    # bob, logged in, reads it; his push there fails
    auth = str(skopeo_env["dir"] / "bob-auth.json")
    skopeo(skopeo_env, "login", "--tls-verify=false", "--authfile", auth,
           "-u", "bob", "-p", USERS["bob"], host)
    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false",
                           "--authfile", auth, f"docker://{host}/team-a/skopeo:v1"))
    assert js["Digest"] == info["manifest_digest"]
    p = subprocess.run([SKOPEO, "--policy", skopeo_env["policy"], "copy",
                        "--dest-tls-verify=false", "--authfile", auth,
                        f"oci:{layout}:v1", f"docker://{host}/team-a/bobs:v1"],
                       env=skopeo_env["env"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0
    assert "denied" in (p.stdout + p.stderr).lower()
    # anonymous pull of a public image, with no credentials at all
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false",
           "--dest-creds", f"dave:{USERS['dave']}",
           f"oci:{layout}:v1", f"docker://{host}/public/skopeo:v1")
    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false",
                           "--no-creds", f"docker://{host}/public/skopeo:v1"))
    assert js["Digest"] == info["manifest_digest"]
    out = skopeo_env["dir"] / "anon-pull"
    skopeo(skopeo_env, "copy", "--src-tls-verify=false", "--src-no-creds",
           f"docker://{host}/public/skopeo:v1", f"oci:{out}:v1")
    assert (out / "index.json").exists()


def _example(name, base_dir, **paths):
    """A conf/examples/ file with its paths pointed at the test's own."""
    from httpd_harness import REPO_ROOT
    text = (REPO_ROOT / "conf" / "examples" / name).read_text()
    for old, new in paths.items():
        assert old in text, old
        text = text.replace(old, str(new))
    return text


def test_example_anonymous_pull(httpd_factory, base_dir):
    pw = Path(base_dir) / "anon-example-htpasswd"
    subprocess.run(["htpasswd", "-bc", str(pw), "ci-bot", "bot-Pw"], check=True,
                   capture_output=True)
    subprocess.run(["htpasswd", "-b", str(pw), "admin", "admin-Pw"], check=True,
                   capture_output=True)
    inst = httpd_factory("anon-example", location_auth=_example(
        "anonymous-pull.conf", base_dir,
        **{"/etc/apache2/registry.htpasswd": pw}))
    bot = Registry(inst.base_url, auth=("ci-bot", "bot-Pw"))
    admin = Registry(inst.base_url, auth=("admin", "admin-Pw"))
    anon = Registry(inst.base_url)
    try:
        m = bot.push_image("any/where", tag="v1")
        r = anon.get("/v2/any/where/manifests/v1")
        assert r.content == m["manifest"]
        r = anon.post("/v2/any/where/blobs/uploads/", check=False)
        assert r.status_code == 401
        assert detail_of(r) == ("UNAUTHORIZED", {"repository": "any/where",
                                                 "action": "push"})
        r = bot.delete("/v2/any/where/manifests/v1", check=False)
        assert r.status_code == 403
        assert admin.delete("/v2/any/where/manifests/v1").status_code == 202
        assert "any/where" in anon.get("/v2/_catalog").json()["repositories"]
    finally:
        for c in (bot, admin, anon):
            c.close()


def test_example_htpasswd(httpd_factory, base_dir):
    pw = Path(base_dir) / "example-htpasswd"
    for i, user in enumerate(USERS):
        subprocess.run(["htpasswd", "-b"] + (["-c"] if i == 0 else []) +
                       [str(pw), user, USERS[user]], check=True, capture_output=True)
    groups = Path(base_dir) / "example-groups"
    groups.write_text("readers: bob carol\nadmins: dave\n")
    inst = httpd_factory("htpasswd-example", location_auth=_example(
        "auth-htpasswd.conf", base_dir,
        **{"/etc/apache2/registry.htpasswd": pw,
           "/etc/apache2/registry.groups": groups}))
    alice, bob = client(inst, "alice"), client(inst, "bob")
    dave, anon = client(inst, "dave"), client(inst)
    try:
        m = alice.push_image("team-a/svc", tag="v1")
        assert bob.get("/v2/team-a/svc/manifests/v1").content == m["manifest"]
        assert bob.post("/v2/team-a/svc/blobs/uploads/", check=False).status_code == 403
        assert anon.get("/v2/team-a/svc/manifests/v1", check=False).status_code == 401
        assert alice.post("/v2/public/x/blobs/uploads/", check=False).status_code == 403
        dave.push_image("public/base", tag="v1")
        assert anon.get("/v2/public/base/manifests/v1").status_code == 200
        assert alice.delete("/v2/team-a/svc/manifests/v1", check=False).status_code == 403
        assert dave.delete("/v2/team-a/svc/manifests/v1").status_code == 202
        assert set(anon.get("/v2/_catalog").json()["repositories"]) == {"public/base"}
    finally:
        for c in (alice, bob, dave, anon):
            c.close()


def test_catalog_scan_limit_resumes_without_naming_hidden_repositories(
        httpd_factory, base_dir):
    """A filtered catalog response checks at most OCIRegCatalogScanLimit
    names; it then links on with a sealed cursor, never a hidden name."""
    inst = httpd_factory("rights-scan", location_auth=_rules(base_dir),
                         global_extra="OCIRegCatalogScanLimit 4")
    alice, carol, dave = (client(inst, u) for u in ("alice", "carol", "dave"))
    try:
        hidden = [f"team-a/h{i:02d}" for i in range(10)]
        for name in hidden:
            alice.push_image(name, tag="v1")
        dave.push_image("public/a1", tag="v1")    # carol sees only public/*
        dave.push_image("public/z1", tag="v1")

        def walk(c, secret=()):
            names, url, pages = [], "/v2/_catalog?n=100", 0
            while url:
                r = c.get(url)
                pages += 1
                assert not any(h in r.text for h in secret)
                names += r.json()["repositories"]
                link = header_ci(r.headers, "Link")
                url = None
                if link:
                    assert not any(h in link for h in secret), link
                    url = link[link.index("<") + 1:link.index(">")]
            return names, pages

        names, pages = walk(carol, hidden)
        assert names == ["public/a1", "public/z1"]
        assert pages >= 3          # 12 names, 4 checked per response
        names, _ = walk(alice)
        assert names == ["public/a1", "public/z1"] + hidden
        r = carol.get("/v2/_catalog?last=~AAAAbogus", check=False)
        assert r.status_code == 400
        check_error_body(r.status_code, r.headers.get("Content-Type"), r.content)
    finally:
        for c in (alice, carol, dave):
            c.close()
