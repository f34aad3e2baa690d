"""Bearer tokens (AuthType oci-token, Require oci-token): JWTs minted with
the `openssl` command, ES256 and RS256, checked by a real httpd; and skopeo
through the whole Docker token flow against a token server process
(tests/fixtures/tokenserver.py) that mints with `openssl` per request."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import jwt_openssl  # noqa: E402

from httpd_harness import HttpdInstance, wait_for  # noqa: E402
from ocireg_client import Registry, sha256  # noqa: E402

TOKEN_SERVER = Path(__file__).resolve().parents[1] / "fixtures" / "tokenserver.py"
APACHE2 = "/usr/sbin/apache2"
SKOPEO = shutil.which("skopeo")
ISSUER = "ocireg-test-issuer"
SERVICE = "ocireg-test-registry"
USERS = {"alice": "alice-Passw0rd", "reader": "reader-Passw0rd"}
GRANTS = {"alice": {"tok/*": ["pull", "push", "delete"]},
          "reader": {"tok/*": ["pull"]},
          "": {"tok/public": ["pull"]}}
# httpd's own line for every refusal of an authenticated user (at error
# level, whatever the module does).
SCOPE_REFUSED = r"AH01631: user \w*: authorization failure"
# What a refusal must never tell the client.
REASONS = ["expired", "signature", "issuer", "audience", "not yet", "algorithm",
           "malformed", "nbf", "invalid_token"]


class Bearer(requests.auth.AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("token-keys")
    d.chmod(0o755)
    k = {}
    for name, gen in (("ec", jwt_openssl.gen_ec), ("rsa", jwt_openssl.gen_rsa),
                      ("ec_other", jwt_openssl.gen_ec),
                      ("rsa_other", jwt_openssl.gen_rsa)):
        gen(d / f"{name}.key")
        jwt_openssl.public_of(d / f"{name}.key", d / f"{name}.pub")
        k[name] = d / f"{name}.key"
        k[name + "_pub"] = d / f"{name}.pub"
    # The RSA key as a token server's certificate, as Harbor and GitLab
    # hand it out.
    jwt_openssl.self_signed_cert(k["rsa"], d / "rsa.crt")
    k["rsa_crt"] = d / "rsa.crt"
    k["dir"] = d
    return k


@pytest.fixture(scope="module")
def token_server(keys, tmp_path_factory):
    d = tmp_path_factory.mktemp("token-server")
    cfg = {"key": str(keys["ec"]), "alg": "ES256", "issuer": ISSUER,
           "service": SERVICE, "lifetime": 300, "users": USERS,
           "grants": GRANTS, "log": str(d / "requests.jsonl")}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "requests.jsonl").write_text("")
    proc = subprocess.Popen([sys.executable, str(TOKEN_SERVER), str(d / "config.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        pytest.fail(f"token server did not start: {line}{proc.stdout.read()}", pytrace=False)
    port = int(line.split()[1])

    class TokenServer:
        realm = f"http://127.0.0.1:{port}/token"
        log = d / "requests.jsonl"

        def requests(self):
            return [json.loads(l) for l in self.log.read_text().splitlines() if l]

    yield TokenServer()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def token_conf(realm, keys, require="Require oci-token", extra=()):
    return "\n".join([
        "AuthType oci-token",
        f"OCIRegTokenRealm {realm}",
        f"OCIRegTokenService {SERVICE}",
        f"OCIRegTokenIssuer {ISSUER}",
        f'OCIRegTokenPublicKey "{keys["ec_pub"]}"',
        f'OCIRegTokenPublicKey "{keys["rsa_crt"]}"',
        *extra,
        require,
    ])


@pytest.fixture(scope="module")
def server_tokens(httpd_factory, keys, token_server):
    # Room for a header over the module's 16 KiB cap on tokens.
    inst = httpd_factory("tokens", location_auth=token_conf(token_server.realm, keys),
                         global_extra="LimitRequestFieldSize 32768")
    inst.realm = token_server.realm
    return inst


def claims(access=(), **kw):
    now = int(time.time())
    c = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300,
         "nbf": now - 5, "iat": now - 5, "jti": os.urandom(8).hex(),
         "access": [{"type": "repository", "name": n, "actions": list(a)}
                    for n, a in access]}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def es256(keys, c, key="ec"):
    return jwt_openssl.mint(keys[key], "ES256", c)


def rs256(keys, c, key="rsa"):
    return jwt_openssl.mint(keys[key], "RS256", c)


def client(server, token=None):
    return Registry(server.base_url, auth=Bearer(token) if token else None)


def challenge(server, scope=None, error=None):
    v = f'Bearer realm="{server.realm}",service="{SERVICE}"'
    if scope:
        v += f',scope="{scope}"'
    if error:
        v += f',error="{error}"'
    return v


def assert_refused(r, server, repository, action, scope, error):
    """401 UNAUTHORIZED with the challenge, a body naming the action and
    repository, and nothing about why."""
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers.get("WWW-Authenticate") == challenge(server, scope, error)
    if r.request.method == "HEAD":
        return
    doc = r.json()
    assert [e["code"] for e in doc["errors"]] == ["UNAUTHORIZED"], doc
    detail = doc["errors"][0].get("detail")
    assert detail == {"repository": repository, "action": action}, doc
    text = r.text.lower()
    for word in REASONS:
        assert word not in text, (word, r.text)


# -- the challenge --------------------------------------------------------

def test_challenge_without_token(server_tokens):
    reg = client(server_tokens)
    r = reg.get("/v2/")
    assert_refused(r, server_tokens, "", "pull", None, None)
    r = reg.get("/v2/tok/app/manifests/v1")
    assert_refused(r, server_tokens, "tok/app", "pull", "repository:tok/app:pull", None)
    r = reg.head("/v2/tok/app/blobs/" + sha256(b"x"))
    assert_refused(r, server_tokens, "tok/app", "pull", "repository:tok/app:pull", None)
    r = reg.post("/v2/tok/app/blobs/uploads/", data=b"")
    assert_refused(r, server_tokens, "tok/app", "push",
                   "repository:tok/app:pull,push", None)
    r = reg.put("/v2/tok/app/manifests/v1", data=b"{}")
    assert_refused(r, server_tokens, "tok/app", "push",
                   "repository:tok/app:pull,push", None)
    r = reg.delete("/v2/tok/app/manifests/v1")
    assert_refused(r, server_tokens, "tok/app", "delete", "repository:tok/app:delete",
                   None)
    r = reg.get("/v2/_catalog")
    assert_refused(r, server_tokens, "", "pull", "registry:catalog:*", None)
    reg.close()


def test_basic_credentials_get_the_bearer_challenge(server_tokens):
    reg = Registry(server_tokens.base_url, auth=("alice", USERS["alice"]))
    r = reg.get("/v2/tok/app/tags/list")
    assert_refused(r, server_tokens, "tok/app", "pull", "repository:tok/app:pull", None)
    reg.close()


# -- valid tokens ---------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_valid_token_pushes_and_pulls(server_tokens, keys, repo, alg):
    mint = es256 if alg == "ES256" else rs256
    token = mint(keys, claims([(repo, ["pull", "push"])]))
    reg = client(server_tokens, token)
    assert reg.get("/v2/").status_code == 200
    img = reg.push_image(repo, tag="v1", nlayers=2)
    r = reg.get_manifest(repo, "v1")
    assert r.status_code == 200 and r.content == img["manifest"]
    for layer in img["layers"]:
        r = reg.get(f"/v2/{repo}/blobs/{layer['digest']}")
        assert r.status_code == 200 and sha256(r.content) == layer["digest"]
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    # Any valid token reaches the catalog.
    assert reg.get("/v2/_catalog").status_code == 200
    reg.close()
    # A pull-only token, with the other algorithm, reads what was pushed.
    other = rs256 if alg == "ES256" else es256
    reader = client(server_tokens, other(keys, claims([(repo, ["pull"])])))
    r = reader.get_manifest(repo, "v1")
    assert r.status_code == 200 and r.content == img["manifest"]
    reader.close()


def test_clock_skew_within_leeway_is_accepted(server_tokens, keys, repo):
    now = int(time.time())
    # exp 10 s ago and nbf 10 s ahead: inside the default 30 s leeway.
    for c in (claims([(repo, ["pull"])], exp=now - 10),
              claims([(repo, ["pull"])], nbf=now + 10)):
        reg = client(server_tokens, es256(keys, c))
        r = reg.get(f"/v2/{repo}/tags/list")
        assert r.status_code == 404, (r.status_code, r.text)  # authorized, empty
        reg.close()


def test_wildcard_action_and_audience_list(server_tokens, keys, repo):
    c = claims([(repo, ["*"])], aud=["someone-else", SERVICE])
    reg = client(server_tokens, rs256(keys, c))
    reg.push_image(repo, tag="v1")
    r = reg.delete(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 202, (r.status_code, r.text)
    reg.close()


# -- refused tokens -------------------------------------------------------

def _refused_tokens(keys):
    now = int(time.time())
    pub_pem = keys["rsa_pub"].read_bytes()
    ok = dict(access=[("tok/app", ["pull", "push", "delete"])])
    return {
        "expired": es256(keys, claims(**ok, exp=now - 120)),
        "not yet valid": es256(keys, claims(**ok, nbf=now + 120)),
        "bad signature": es256(keys, claims(**ok), key="ec_other"),
        "bad signature rsa": rs256(keys, claims(**ok), key="rsa_other"),
        "wrong audience": es256(keys, claims(**ok, aud="another-registry")),
        "wrong issuer": rs256(keys, claims(**ok, iss="another-issuer")),
        "no expiry": es256(keys, claims(**ok, exp=None)),
        "algorithm not accepted": jwt_openssl.mint_none(claims(**ok)),
        "algorithm not accepted hs256": jwt_openssl.mint_hs256(pub_pem, claims(**ok)),
        "malformed": "not.a.token",
    }


REFUSED = ["expired", "not yet valid", "bad signature", "bad signature rsa",
           "wrong audience", "wrong issuer", "no expiry", "algorithm not accepted",
           "algorithm not accepted hs256", "malformed"]


# The reason the log gives (ocireg_token_status_text).
LOGGED = {"not yet valid": "not yet valid (nbf)", "bad signature rsa": "bad signature",
          "no expiry": "no expiry (exp)",
          "algorithm not accepted hs256": "algorithm not accepted"}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_token(server_tokens, keys, case):
    token = _refused_tokens(keys)[case]
    offset = server_tokens.error_log_size()
    reg = client(server_tokens, token)
    r = reg.get("/v2/tok/app/manifests/v1")
    assert_refused(r, server_tokens, "tok/app", "pull", "repository:tok/app:pull",
                   "invalid_token")
    r = reg.post("/v2/tok/app/blobs/uploads/", data=b"")
    assert_refused(r, server_tokens, "tok/app", "push", "repository:tok/app:pull,push",
                   "invalid_token")
    r = reg.get("/v2/")
    assert_refused(r, server_tokens, "", "pull", None, "invalid_token")
    reg.close()
    # Why is in the error log, at info, with our tag; the token is not.
    reason = LOGGED.get(case, case)
    lines = wait_for(lambda: [l for l in server_tokens.error_log_since(offset)
                              if "OCIREG00472" in l], what="OCIREG00472 lines")
    assert any(f"bearer token refused: {reason} (GET /v2/tok/app/manifests/v1)" in l
               for l in lines), lines
    assert all(":info]" in l for l in lines), lines
    log = "".join(server_tokens.error_log_since(0))
    assert token.split(".")[-1] not in log or len(token.split(".")[-1]) < 8


def test_oversized_token_refused(server_tokens, keys):
    token = es256(keys, claims([("tok/app", ["pull"])], pad="x" * 13000))
    assert 16384 < len(token) < 32000
    r = client(server_tokens, token).get("/v2/tok/app/tags/list")
    assert_refused(r, server_tokens, "tok/app", "pull", "repository:tok/app:pull",
                   "invalid_token")


# -- scope ----------------------------------------------------------------

@pytest.mark.allow_errors(SCOPE_REFUSED)
def test_pull_token_cannot_push(server_tokens, keys, repo):
    offset = server_tokens.error_log_size()
    reg = client(server_tokens, es256(keys, claims([(repo, ["pull"])])))
    r = reg.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 404, (r.status_code, r.text)  # allowed; nothing there
    r = reg.post(f"/v2/{repo}/blobs/uploads/", data=b"")
    assert_refused(r, server_tokens, repo, "push", f"repository:{repo}:pull,push",
                   "insufficient_scope")
    r = reg.put(f"/v2/{repo}/manifests/v1", data=b"{}",
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert_refused(r, server_tokens, repo, "push", f"repository:{repo}:pull,push",
                   "insufficient_scope")
    reg.close()
    lines = server_tokens.error_log_since(offset)
    assert any(f'OCIREG00474: the bearer token of "alice" does not allow push on {repo}'
               in l for l in lines), lines


@pytest.mark.allow_errors(SCOPE_REFUSED)
def test_push_token_cannot_delete_and_delete_token_can(server_tokens, keys, repo):
    pusher = client(server_tokens, es256(keys, claims([(repo, ["pull", "push"])])))
    img = pusher.push_image(repo, tag="v1")
    r = pusher.delete(f"/v2/{repo}/manifests/v1")
    assert_refused(r, server_tokens, repo, "delete", f"repository:{repo}:delete",
                   "insufficient_scope")
    # Cancelling one's own upload session is part of pushing.
    loc, _ = pusher.start_upload(repo)
    assert pusher.delete(loc).status_code == 204
    pusher.close()
    deleter = client(server_tokens, rs256(keys, claims([(repo, ["delete"])])))
    r = deleter.delete(f"/v2/{repo}/manifests/{img['digest']}")
    assert r.status_code == 202, (r.status_code, r.text)
    deleter.close()


@pytest.mark.allow_errors(SCOPE_REFUSED)
def test_token_for_another_repository(server_tokens, keys, repo):
    reg = client(server_tokens, es256(keys, claims([(repo + "-other", ["*"]),
                                                    (repo, [])])))
    r = reg.get(f"/v2/{repo}/tags/list")
    assert_refused(r, server_tokens, repo, "pull", f"repository:{repo}:pull",
                   "insufficient_scope")
    # A registry-wide entry is not a repository's.
    c = claims()
    c["access"] = [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    reg = client(server_tokens, es256(keys, c))
    r = reg.get(f"/v2/{repo}/tags/list")
    assert_refused(r, server_tokens, repo, "pull", f"repository:{repo}:pull",
                   "insufficient_scope")
    assert reg.get("/v2/_catalog").status_code == 200
    reg.close()


@pytest.mark.allow_errors(SCOPE_REFUSED)
def test_catalog_filtered_by_token(server_tokens, keys, repo):
    """The catalog lists what the token may pull, by the same rule
    (Require oci-token) asked per repository."""
    names = [f"{repo}-{i}" for i in range(3)]
    p = client(server_tokens, es256(keys, claims([(n, ["pull", "push"]) for n in names])))
    for n in names:
        p.push_image(n, tag="v1")
    r = client(server_tokens, rs256(keys, claims([(names[0], ["pull"]),
                                                  (names[2], ["pull", "push"]),
                                                  (names[1], ["push"])])))
    listed = r.get("/v2/_catalog?n=1000").json()["repositories"]
    assert [n for n in listed if n.startswith(repo)] == [names[0], names[2]]
    nobody = client(server_tokens, rs256(keys, claims([])))
    listed = nobody.get("/v2/_catalog?n=1000").json()["repositories"]
    assert not [n for n in listed if n.startswith(repo)]
    for c in (p, r, nobody):
        c.close()


def test_mount_needs_pull_on_the_source(server_tokens, keys, repo):
    src, dst = repo + "-src", repo + "-dst"
    owner = client(server_tokens, es256(keys, claims([(src, ["pull", "push"])])))
    blob = os.urandom(2048)
    d = owner.push_blob(src, blob)
    owner.close()
    # Push on the target only: a normal upload session, never a mount.
    reg = client(server_tokens, es256(keys, claims([(dst, ["pull", "push"])])))
    r = reg.post(f"/v2/{dst}/blobs/uploads/?mount={d}&from={src}", data=b"")
    assert r.status_code == 202, (r.status_code, r.text)
    reg.cancel_upload(reg.location(r))
    reg.close()
    # With pull on the source as well: mounted.
    reg = client(server_tokens, rs256(keys, claims([(dst, ["pull", "push"]),
                                                    (src, ["pull"])])))
    r = reg.post(f"/v2/{dst}/blobs/uploads/?mount={d}&from={src}", data=b"")
    assert r.status_code == 201, (r.status_code, r.text)
    assert reg.get(f"/v2/{dst}/blobs/{d}").content == blob
    reg.close()


# -- skopeo through the token server ---------------------------------------

from test_skopeo import skopeo_env  # noqa: E402,F401  (its HOME, policy)


def skopeo(env, *args, check=True):
    cmd = [SKOPEO, "--policy", env["policy"], *args]
    p = subprocess.run(cmd, env=env["env"], capture_output=True, text=True, timeout=180)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from test_skopeo import build_oci_layout
    layout = tmp_path_factory.mktemp("token-layout") / "img"
    return layout, build_oci_layout(layout, nlayers=2, layer_mb=1)


@pytest.mark.skopeo
@pytest.mark.allow_errors(SCOPE_REFUSED)
@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_skopeo_token_flow(server_tokens, token_server, keys, skopeo_env, image, tmp_path):
    from test_skopeo import read_layout
    layout, info = image
    host = server_tokens.hostport
    before = len(token_server.requests())
    alice = f"alice:{USERS['alice']}"
    ref = f"docker://{host}/tok/app:v1"
    skopeo(skopeo_env, "copy", "--dest-tls-verify=false", "--dest-creds", alice,
           f"oci:{layout}:v1", ref)
    # Pulled back by a read-only user, and anonymously where the token
    # server lets anyone pull.
    out = tmp_path / "pulled"
    skopeo(skopeo_env, "copy", "--src-tls-verify=false", "--src-creds",
           f"reader:{USERS['reader']}", ref, f"oci:{out}:v1")
    md, doc = read_layout(out)
    assert md == info["manifest_digest"]
    assert [l["digest"] for l in doc["layers"]] == info["layers"]
    skopeo(skopeo_env, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--src-creds", alice, "--dest-creds", alice, ref,
           f"docker://{host}/tok/public:v1")
    js = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false",
                           f"docker://{host}/tok/public:v1").stdout)
    assert js["Digest"] == info["manifest_digest"]
    # The read-only user cannot push; anonymous cannot read tok/app.
    p = skopeo(skopeo_env, "copy", "--dest-tls-verify=false", "--dest-creds",
               f"reader:{USERS['reader']}", f"oci:{layout}:v1",
               f"docker://{host}/tok/app:v2", check=False)
    assert p.returncode != 0
    p = skopeo(skopeo_env, "inspect", "--tls-verify=false", ref, check=False)
    assert p.returncode != 0
    # Every token came from the token server, with Docker's scopes.
    asked = token_server.requests()[before:]
    assert {"user": "alice", "scope": ["repository:tok/app:pull,push"],
            "access": [{"type": "repository", "name": "tok/app",
                        "actions": ["pull", "push"]}]} in asked, asked
    assert any(a["user"] == "reader" and a["access"] == [
        {"type": "repository", "name": "tok/app", "actions": ["pull"]}] for a in asked), asked
    assert any(a["user"] == "" and "repository:tok/public:pull" in a["scope"]
               for a in asked), asked
    reg = client(server_tokens, es256(keys, claims([("tok/app", ["pull"])])))
    assert reg.get("/v2/tok/app/tags/list").json()["tags"] == ["v1"]
    reg.close()


# -- configuration --------------------------------------------------------

def configtest(tmp_path, location_auth):
    inst = HttpdInstance("configtest", tmp_path, location_auth=location_auth)
    inst._prepare_dirs()
    inst.port = 1
    inst.conf_path.write_text(inst.render_conf())
    p = subprocess.run([APACHE2, "-t", "-f", str(inst.conf_path)],
                       capture_output=True, text=True, timeout=30, env=inst.env())
    return p.returncode, p.stdout + p.stderr


def test_config_with_keys_and_certificate_passes(tmp_path, keys):
    rc, out = configtest(tmp_path, token_conf("https://auth.example.org/token", keys,
                                              extra=["OCIRegTokenLeeway 0"]))
    assert rc == 0, out


@pytest.mark.parametrize("line, directive, words", [
    ("OCIRegTokenPublicKey /nonexistent/key.pem", "OCIRegTokenPublicKey", "cannot read"),
    ("OCIRegTokenPublicKey {ec}", "OCIRegTokenPublicKey", "private key"),
    ("OCIRegTokenPublicKey {p384}", "OCIRegTokenPublicKey", "P-256"),
    ("OCIRegTokenPublicKey {rsa1024}", "OCIRegTokenPublicKey", "1024 bits"),
    ("OCIRegTokenPublicKey {garbage}", "OCIRegTokenPublicKey", "no PUBLIC KEY"),
    ("OCIRegTokenRealm auth.example.org/token", "OCIRegTokenRealm", "URL"),
    ("OCIRegTokenRealm ftp://auth.example.org/token", "OCIRegTokenRealm", "URL"),
    ('OCIRegTokenService "a\\"b"', "OCIRegTokenService", "quotes"),
    ("OCIRegTokenLeeway -1", "OCIRegTokenLeeway", "seconds"),
    ("OCIRegTokenLeeway 3601", "OCIRegTokenLeeway", "seconds"),
    ("OCIRegTokenLeeway soon", "OCIRegTokenLeeway", "seconds"),
    ("Require oci-token team/*", "oci-token", "no arguments"),
])
def test_bad_token_directive(tmp_path, keys, line, directive, words):
    d = keys["dir"]
    if not (d / "p384.pub").exists():
        jwt_openssl.gen_ec(d / "p384.key", "P-384")
        jwt_openssl.public_of(d / "p384.key", d / "p384.pub")
        jwt_openssl.gen_rsa(d / "rsa1024.key", 1024)
        jwt_openssl.public_of(d / "rsa1024.key", d / "rsa1024.pub")
        (d / "garbage.pem").write_text("hello\n")
    line = line.format(ec=keys["ec"], p384=d / "p384.pub", rsa1024=d / "rsa1024.pub",
                       garbage=d / "garbage.pem")
    rc, out = configtest(tmp_path, token_conf("https://auth.example.org/token", keys,
                                              extra=[line]))
    assert rc != 0, out
    assert directive in out and words in out, out


# -- tokens beside Apache's other rules --------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "examples" / "auth-tokens.conf"


def example_location(realm, keys):
    """The <Location /v2> of conf/examples/auth-tokens.conf, with this
    test's token server, names and key."""
    body = EXAMPLE.read_text()
    lines = []
    for line in body.splitlines():
        word = line.split()[0] if line.split() else ""
        if word.startswith("#") or word in ("OCIRegistry", "LimitRequestBody"):
            continue  # the test template has its own
        line = {"OCIRegTokenRealm": f"OCIRegTokenRealm {realm}",
                "OCIRegTokenService": f"OCIRegTokenService {SERVICE}",
                "OCIRegTokenIssuer": f"OCIRegTokenIssuer {ISSUER}",
                "OCIRegTokenPublicKey": f'OCIRegTokenPublicKey "{keys["rsa_crt"]}"',
                }.get(word, line)
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def server_tokens_public(httpd_factory, keys, token_server):
    """The example configuration: anonymous pull of public/*, everything
    else by token."""
    inst = httpd_factory("tokens-example",
                         location_auth=example_location(token_server.realm, keys))
    inst.realm = token_server.realm
    return inst


def test_example_anonymous_pull_beside_tokens(server_tokens_public, keys, repo):
    public = "public/" + repo.replace("/", "-")
    pusher = client(server_tokens_public, rs256(keys, claims([(public, ["pull", "push"])])))
    img = pusher.push_image(public, tag="v1")
    pusher.close()
    anonymous = client(server_tokens_public)
    r = anonymous.get_manifest(public, "v1")
    assert r.status_code == 200 and r.content == img["manifest"]
    # Pushing there, or reading anything else, still takes a token.
    r = anonymous.post(f"/v2/{public}/blobs/uploads/", data=b"")
    assert_refused(r, server_tokens_public, public, "push",
                   f"repository:{public}:pull,push", None)
    r = anonymous.get(f"/v2/{repo}/tags/list")
    assert_refused(r, server_tokens_public, repo, "pull", f"repository:{repo}:pull", None)
    anonymous.close()
    reader = client(server_tokens_public, rs256(keys, claims([(repo, ["pull"])])))
    assert reader.get(f"/v2/{repo}/tags/list").status_code == 404  # allowed, empty
    reader.close()


def test_settings_at_server_level_reach_the_location(httpd_factory, keys, token_server):
    """OCIRegToken* outside any section are the defaults every <Location>
    inherits."""
    settings = [l for l in token_conf(token_server.realm, keys).splitlines()
                if l.startswith("OCIRegToken")]
    inst = httpd_factory("tokens-server-level", global_extra="\n".join(settings),
                         location_auth="AuthType oci-token\nRequire oci-token")
    inst.realm = token_server.realm
    reg = client(inst)
    assert_refused(reg.get("/v2/tok/app/tags/list"), inst, "tok/app", "pull",
                   "repository:tok/app:pull", None)
    reg = client(inst, rs256(keys, claims([("tok/app", ["pull"])])))
    assert reg.get("/v2/tok/app/tags/list").status_code == 404  # allowed, empty
    reg.close()


@pytest.mark.parametrize("left_out", ["OCIRegTokenRealm", "OCIRegTokenService",
                                      "OCIRegTokenIssuer", "OCIRegTokenPublicKey"])
def test_token_mode_without_a_setting_fails_configtest(tmp_path, keys, left_out):
    conf = "\n".join(l for l in token_conf("https://auth.example.org/token", keys).splitlines()
                     if not l.startswith(left_out))
    rc, out = configtest(tmp_path, conf)
    assert rc != 0, out
    assert "OCIREG00475: AuthType oci-token" in out and f"needs {left_out}" in out, out
