"""OCIRegMirror: mirrored names refuse pushes and deletes (405 UNSUPPORTED
naming the repository) unless the rule says `local`; local names and pulls
are as before; upstream credentials never show in a log or an answer.

The rules' upstream is a closed port on loopback: a pull of a mirrored
name asks it, finds it down, and with nothing cached answers 503 (the
mirror's serving itself is tested in test_mirror.py)."""

import json
import os
import uuid

import pytest

import secrets_scan
from httpd_harness import HttpdError, HttpdInstance, bad_log_lines
from ocireg_client import (MT_OCI_MANIFEST, Registry, assert_error, oci_manifest,
                           descriptor, MT_OCI_CONFIG, random_digest, sha256)

# Distinctive values: the session-end scan fails on any trace of them in
# an instance's logs or in any answer (secrets_scan.py).
FILE_PASSWORD = "OCIREG-MIRROR-FILE-PW-" + os.urandom(12).hex()
ENV_PASSWORD = "OCIREG-MIRROR-ENV-PW-" + os.urandom(12).hex()
ENV_USER = "mirror-env-user-" + os.urandom(6).hex()

# Port 1 on loopback: nothing listens there, a connection is refused at
# once.
DOWN = "http://127.0.0.1:1"
RULES = "\n".join([
    f"OCIRegMirror hub/* {DOWN} insecure",
    f"OCIRegMirror both/* {DOWN} local insecure",
    f"OCIRegMirror */cache {DOWN} tag-ttl=60 insecure",
])


@pytest.fixture(scope="module")
def mirror_server(httpd_factory):
    return httpd_factory("mirror-rules", location_extra=RULES)


@pytest.fixture
def mreg(mirror_server):
    r = Registry(mirror_server.base_url)
    yield r
    r.close()


def refused(r, repository, action):
    assert_error(r, 405, "UNSUPPORTED")
    err = r.json()["errors"][0]
    assert err["detail"] == {"repository": repository, "action": action}, err
    assert repository in err["message"]
    assert "POST" not in r.headers.get("Allow", "x")
    assert "PUT" not in r.headers.get("Allow", "x")


def test_push_into_mirrored_name_refused(mreg):
    data = b"not for a mirror"
    d = sha256(data)
    refused(mreg.post(f"/v2/hub/alpine/blobs/uploads/?digest={d}", data=data),
            "hub/alpine", "push")
    refused(mreg.post("/v2/hub/alpine/blobs/uploads/", data=b""), "hub/alpine", "push")
    # An upload URL made up for the name: refused before any session lookup.
    loc = f"/v2/hub/alpine/blobs/uploads/{uuid.uuid4()}"
    refused(mreg.patch(loc, data=data), "hub/alpine", "push")
    refused(mreg.put(f"{loc}?digest={d}", data=data), "hub/alpine", "push")
    refused(mreg.delete(loc), "hub/alpine", "push")
    cfg = b"{}"
    body = oci_manifest(descriptor(MT_OCI_CONFIG, cfg), [])
    r = mreg.put("/v2/hub/alpine/manifests/latest", data=body,
                 headers={"Content-Type": MT_OCI_MANIFEST})
    refused(r, "hub/alpine", "push")
    assert r.headers["Allow"] == "GET, HEAD"
    refused(mreg.delete("/v2/hub/alpine/manifests/latest"), "hub/alpine", "delete")
    refused(mreg.delete(f"/v2/hub/alpine/blobs/{d}"), "hub/alpine", "delete")
    # A pattern that is not a prefix form.
    refused(mreg.post("/v2/team/cache/blobs/uploads/", data=b""), "team/cache", "push")
    # Nothing reached the store: a pull asks the (down) upstream.
    assert_error(mreg.get(f"/v2/hub/alpine/blobs/{d}"), 503, "BLOB_UNKNOWN")
    assert_error(mreg.get("/v2/hub/alpine/manifests/latest"), 503, "MANIFEST_UNKNOWN")


def test_mount_into_mirror_refused_and_out_of_it_allowed(mreg, repo):
    d = mreg.push_blob(repo, b"local blob")
    refused(mreg.post(f"/v2/hub/x/blobs/uploads/?mount={d}&from={repo}", data=b""),
            "hub/x", "push")
    # A mirrored name as the source is a pull: an ordinary session here.
    r = mreg.post(f"/v2/{repo}/blobs/uploads/?mount={random_digest()}&from=hub/x",
                  data=b"")
    assert r.status_code == 202, r.text
    mreg.cancel_upload(mreg.location(r))


def test_local_names_and_local_rules_take_pushes(mreg, repo):
    img = mreg.push_image(repo, tag="v1")
    assert mreg.get_manifest(repo, "v1").content == img["manifest"]
    img = mreg.push_image("both/app", tag="v1")
    assert mreg.get_manifest("both/app", "v1").content == img["manifest"]
    assert mreg.delete(f"/v2/both/app/manifests/{img['digest']}").status_code == 202
    # Names near a pattern that it does not match are local.
    mreg.push_blob("hubble/x", b"local")
    mreg.push_blob("team/cache2", b"local")


@pytest.mark.allow_errors("OCIREG00553")
def test_pulls_of_mirrored_names_ask_upstream(mreg):
    r = mreg.get("/v2/hub/alpine/manifests/3.19")
    assert_error(r, 503, "MANIFEST_UNKNOWN")
    assert r.headers["Retry-After"] == "30"
    assert "unavailable" in r.json()["errors"][0]["message"]
    # Listings answer from what is cached: nothing.
    assert mreg.get("/v2/hub/alpine/tags/list", check=False).status_code == 404


def test_nested_location_replaces_rules(httpd_factory):
    """A section's own OCIRegMirror lines replace those it inherits;
    `OCIRegMirror Off` leaves it none."""
    inst = httpd_factory("mirror-nested", location_extra=RULES, global_extra="\n".join([
        "<Location /v2/hub/own>", "    OCIRegMirror Off", "</Location>",
        "<Location /v2/team>", "    OCIRegMirror team/app quay.io", "</Location>"]))
    reg = Registry(inst.base_url)
    try:
        reg.push_blob("hub/own/app", b"pushed where the mirror is off")
        refused(reg.post("/v2/hub/other/blobs/uploads/", data=b""), "hub/other", "push")
        refused(reg.post("/v2/team/app/blobs/uploads/", data=b""), "team/app", "push")
        # /v2/team replaced the outer rules: */cache is not mirrored there.
        reg.push_blob("team/cache", b"local under /v2/team")
    finally:
        reg.close()


def test_refusal_after_access_rules(httpd_factory, base_dir):
    """The access rules run first: an anonymous client refused a push gets
    401, not news of the mirror."""
    from httpd_harness import htpasswd_file
    from pathlib import Path
    pw = htpasswd_file(Path(base_dir) / "mirror-htpasswd", "pusher", "pusher-pw")
    auth = "\n".join(["AuthType Basic", 'AuthName "m"', f'AuthUserFile "{pw}"',
                      "<RequireAny>", "Require oci-pull *",
                      "Require oci-push * user:pusher", "</RequireAny>"])
    inst = httpd_factory("mirror-auth", location_auth=auth, location_extra=RULES)
    anon = Registry(inst.base_url)
    user = Registry(inst.base_url, auth=("pusher", "pusher-pw"))
    try:
        assert_error(anon.post("/v2/hub/a/blobs/uploads/", data=b""), 401, "UNAUTHORIZED")
        refused(user.post("/v2/hub/a/blobs/uploads/", data=b""), "hub/a", "push")
    finally:
        anon.close()
        user.close()


@pytest.fixture(scope="module")
def credential_instance(base_dir):
    """Rules with credentials from a file and from the environment, logging
    everything the module can say."""
    secrets_scan.register("the mirror's file password", FILE_PASSWORD)
    secrets_scan.register("the mirror's environment password", ENV_PASSWORD)
    secrets_scan.register("the mirror's environment user", ENV_USER, access_key=True)
    cred = os.path.join(base_dir, "mirror-hub.cred")
    with open(cred, "w") as f:
        f.write(f"# Docker Hub\nusername = mirror-file-user\npassword = {FILE_PASSWORD}\n")
    os.chmod(cred, 0o600)   # read by httpd while root
    # The upstreams are down (no credentials ever leave for a real
    # registry); test_mirror.py sends real ones to real upstreams.
    rules = "\n".join([
        f"OCIRegMirror hub/* {DOWN} credentials=file:{cred} insecure",
        f"OCIRegMirror ghcr/* {DOWN} credentials=env:OCIREG_T_MUSER,OCIREG_T_MPASS "
        "insecure",
    ])
    inst = HttpdInstance("mirror-creds", base_dir, location_extra=rules,
                         global_extra="LogLevel debug ocireg:trace8")
    saved = {k: os.environ.get(k) for k in ("OCIREG_T_MUSER", "OCIREG_T_MPASS")}
    os.environ["OCIREG_T_MUSER"] = ENV_USER
    os.environ["OCIREG_T_MPASS"] = ENV_PASSWORD
    try:
        inst.start()
    except HttpdError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield inst
    inst.stop()
    before = len(secrets_scan.hits)
    secrets_scan.scan_logs([inst])
    assert secrets_scan.hits[before:] == []


def test_credentials_stay_out_of_logs_and_answers(credential_instance):
    inst = credential_instance
    reg = Registry(inst.base_url)
    try:
        for name in ("hub/alpine", "ghcr/org/app"):
            refused(reg.post(f"/v2/{name}/blobs/uploads/", data=b""), name, "push")
            refused(reg.delete(f"/v2/{name}/manifests/latest"), name, "delete")
            assert_error(reg.get(f"/v2/{name}/manifests/latest"), 503, "MANIFEST_UNKNOWN")
        reg.push_blob("local/app", b"local")
    finally:
        reg.close()
    assert bad_log_lines(inst.error_log_since(0), ["OCIREG00553"]) == []
    log = inst.error_log.read_text(errors="replace")
    assert "OCIREG00550" in log     # the refusals were logged, without credentials
    for secret in (FILE_PASSWORD, ENV_PASSWORD, ENV_USER, "mirror-file-user"):
        assert secret not in log
    assert secrets_scan.find(log, "") == []
