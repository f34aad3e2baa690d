"""Manifests with a subject and the referrers API."""

import os
import re
from urllib.parse import urljoin

import pytest

from ocireg_client import (EMPTY_DESCRIPTOR, EMPTY_JSON, MT_OCI_CONFIG,
                           MT_OCI_INDEX, MT_OCI_MANIFEST, assert_error,
                           artifact_manifest, descriptor, oci_index,
                           oci_manifest, random_digest, sha256)

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


def next_link(r):
    link = r.headers.get("Link")
    if not link:
        return None
    m = re.match(r'^<([^>]+)>;\s*rel="?next"?$', link.strip())
    assert m, link
    return urljoin(r.url, m.group(1))


def push_artifact(reg, repo, artifact_type, subject, annotations=None, tag=None):
    body = artifact_manifest(artifact_type, subject, annotations=annotations)
    d = sha256(body)
    r = reg.put_manifest(repo, tag or d, body, MT_OCI_MANIFEST)
    return body, d, r


@pytest.fixture
def subject_repo(reg, repo):
    reg.push_blob(repo, EMPTY_JSON)
    img = reg.push_image(repo, "base")
    return repo, img


def referrers(reg, repo, digest, query=""):
    r = reg.get(f"/v2/{repo}/referrers/{digest}{query}")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0].strip() == MT_OCI_INDEX
    doc = r.json()
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == MT_OCI_INDEX
    assert isinstance(doc["manifests"], list)
    return r, doc


def test_push_with_subject_sets_oci_subject(reg, subject_repo):
    repo, img = subject_repo
    _, _, r = push_artifact(reg, repo, SBOM, img["descriptor"])
    assert r.headers.get("OCI-Subject") == img["digest"]


def test_push_with_missing_subject_accepted(reg, subject_repo):
    repo, _ = subject_repo
    ghost = {"mediaType": MT_OCI_MANIFEST, "digest": random_digest(), "size": 321}
    body, d, r = push_artifact(reg, repo, SBOM, ghost)
    assert r.status_code == 201
    assert r.headers.get("OCI-Subject") == ghost["digest"]
    _, doc = referrers(reg, repo, ghost["digest"])
    assert [m["digest"] for m in doc["manifests"]] == [d]


def test_referrers_list(reg, subject_repo):
    repo, img = subject_repo
    ann1 = {"org.opencontainers.image.created": "2022-01-01T14:42:55Z",
            "org.example.sbom.format": "json"}
    ann2 = {"org.example.signature.fingerprint": "abcd"}
    b1, d1, _ = push_artifact(reg, repo, SBOM, img["descriptor"], ann1)
    b2, d2, _ = push_artifact(reg, repo, SIG, img["descriptor"], ann2)
    r, doc = referrers(reg, repo, img["digest"])
    by = {m["digest"]: m for m in doc["manifests"]}
    assert set(by) == {d1, d2}
    assert by[d1] == {"mediaType": MT_OCI_MANIFEST, "size": len(b1), "digest": d1,
                      "artifactType": SBOM, "annotations": ann1}
    assert by[d2]["artifactType"] == SIG
    assert by[d2]["annotations"] == ann2
    assert by[d2]["size"] == len(b2)
    assert "Link" not in r.headers


def test_referrers_artifact_type_falls_back_to_config_media_type(reg, subject_repo):
    repo, img = subject_repo
    cfg_data = b'{"kind":"custom config"}'
    reg.push_blob(repo, cfg_data)
    cfg = descriptor("application/vnd.example.config.v1+json", cfg_data)
    body = oci_manifest(cfg, [EMPTY_DESCRIPTOR], subject=img["descriptor"],
                        annotations={"k": "v"})
    d = sha256(body)
    r = reg.put_manifest(repo, d, body, MT_OCI_MANIFEST)
    assert r.headers.get("OCI-Subject") == img["digest"]
    _, doc = referrers(reg, repo, img["digest"])
    (m,) = [m for m in doc["manifests"] if m["digest"] == d]
    assert m["artifactType"] == "application/vnd.example.config.v1+json"
    assert m["annotations"] == {"k": "v"}


def test_referrers_index_with_subject(reg, subject_repo):
    repo, img = subject_repo
    other = reg.push_image(repo)
    body = oci_index([other["descriptor"]], subject=img["descriptor"],
                     annotations={"idx": "1"})
    d = sha256(body)
    r = reg.put_manifest(repo, d, body, MT_OCI_INDEX)
    assert r.headers.get("OCI-Subject") == img["digest"]
    _, doc = referrers(reg, repo, img["digest"])
    (m,) = [m for m in doc["manifests"] if m["digest"] == d]
    assert m["mediaType"] == MT_OCI_INDEX
    assert "artifactType" not in m
    assert m["annotations"] == {"idx": "1"}


def test_referrers_filter_artifact_type(reg, subject_repo):
    repo, img = subject_repo
    _, d1, _ = push_artifact(reg, repo, SBOM, img["descriptor"])
    _, d2, _ = push_artifact(reg, repo, SIG, img["descriptor"])
    _, d3, _ = push_artifact(reg, repo, SBOM, img["descriptor"], {"n": "3"})
    r, doc = referrers(reg, repo, img["digest"], f"?artifactType={SBOM}")
    assert sorted(m["digest"] for m in doc["manifests"]) == sorted([d1, d3])
    assert all(m["artifactType"] == SBOM for m in doc["manifests"])
    applied = [x.strip() for x in r.headers.get("OCI-Filters-Applied", "").split(",")]
    assert "artifactType" in applied
    r, doc = referrers(reg, repo, img["digest"], "?artifactType=application/vnd.none")
    assert doc["manifests"] == []
    r, doc = referrers(reg, repo, img["digest"])
    assert len(doc["manifests"]) == 3
    assert "OCI-Filters-Applied" not in r.headers


def test_referrers_unknown_subject_empty(reg, subject_repo):
    repo, _ = subject_repo
    r, doc = referrers(reg, repo, random_digest())
    assert doc["manifests"] == []


def test_referrers_of_subject_in_other_repo_not_listed(reg, subject_repo):
    repo, img = subject_repo
    push_artifact(reg, repo, SBOM, img["descriptor"])
    other = repo + "-other"
    reg.push_image(other, "x")
    _, doc = referrers(reg, other, img["digest"])
    assert doc["manifests"] == []


@pytest.mark.parametrize("digest", ["sha256:xyz", "notadigest", "sha256:" + "A" * 64])
def test_referrers_invalid_digest(reg, subject_repo, digest):
    repo, _ = subject_repo
    r = reg.get(f"/v2/{repo}/referrers/{digest}")
    assert_error(r, 400, "DIGEST_INVALID")


def test_referrers_removed_on_delete(reg, subject_repo):
    repo, img = subject_repo
    _, d1, _ = push_artifact(reg, repo, SBOM, img["descriptor"])
    _, d2, _ = push_artifact(reg, repo, SIG, img["descriptor"])
    assert reg.delete(f"/v2/{repo}/manifests/{d1}").status_code == 202
    _, doc = referrers(reg, repo, img["digest"])
    assert [m["digest"] for m in doc["manifests"]] == [d2]


def test_referrers_pagination(reg, subject_repo):
    repo, img = subject_repo
    pushed = set()
    for i in range(5):
        _, d, _ = push_artifact(reg, repo, SBOM, img["descriptor"], {"i": str(i)})
        pushed.add(d)
    url = f"/v2/{repo}/referrers/{img['digest']}?n=2"
    got, pages = [], 0
    while url:
        r = reg.get(url)
        assert r.status_code == 200
        page = r.json()["manifests"]
        assert len(page) <= 2
        url = next_link(r)
        if url:
            assert len(page) == 2
        got += [m["digest"] for m in page]
        pages += 1
        assert pages < 10
    assert pages == 3
    assert sorted(got) == sorted(pushed)
    assert len(got) == len(set(got))


def test_referrers_pagination_with_filter(reg, subject_repo):
    repo, img = subject_repo
    sboms = set()
    for i in range(3):
        _, d, _ = push_artifact(reg, repo, SBOM, img["descriptor"], {"i": str(i)})
        sboms.add(d)
        push_artifact(reg, repo, SIG, img["descriptor"], {"i": str(i)})
    url = f"/v2/{repo}/referrers/{img['digest']}?n=1&artifactType={SBOM}"
    got = []
    for _ in range(10):
        r = reg.get(url)
        assert r.status_code == 200
        got += [m["digest"] for m in r.json()["manifests"]]
        assert all(m["artifactType"] == SBOM for m in r.json()["manifests"])
        url = next_link(r)
        if not url:
            break
    assert sorted(got) == sorted(sboms)


def test_referrers_tag_schema_manifest_is_plain_index(reg, subject_repo):
    # A client falling back to the tag schema pushes an index by tag; the
    # registry stores it like any other index.
    repo, img = subject_repo
    body, d, _ = push_artifact(reg, repo, SBOM, img["descriptor"])
    tag = img["digest"].replace(":", "-")
    idx = oci_index([{"mediaType": MT_OCI_MANIFEST, "digest": d, "size": len(body),
                      "artifactType": SBOM}])
    reg.put_manifest(repo, tag, idx, MT_OCI_INDEX)
    assert reg.get_manifest(repo, tag).content == idx
