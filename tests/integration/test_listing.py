"""Tag listing and the catalog: order, n/last pagination, Link headers."""

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from ocireg_client import MT_OCI_MANIFEST, assert_error

LINK_RE = re.compile(r'^<([^>]+)>;\s*rel="?next"?$')


def lexical(tags):
    """The spec's order: case-insensitive; ties broken bytewise."""
    return sorted(tags, key=lambda t: (t.lower(), t))


def next_link(r):
    link = r.headers.get("Link")
    if not link:
        return None
    m = LINK_RE.match(link.strip())
    assert m, f"malformed Link header {link!r}"
    return urljoin(r.url, m.group(1))


TAGS = ["latest", "v1.0", "V1.1", "v2", "Alpha", "alpha", "beta", "_under",
        "0.9", "1.10", "1.9", "ZETA", "gamma-rc.1", "Gamma", "delta_2"]


@pytest.fixture(scope="module")
def tagged(reg):
    repo = "it/listing/tags"
    img = reg.push_image(repo, TAGS[0])
    for t in TAGS[1:]:
        reg.put_manifest(repo, t, img["manifest"], MT_OCI_MANIFEST)
    return repo


def test_tags_list_sorted(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list")
    assert r.status_code == 200
    doc = r.json()
    assert doc["name"] == tagged
    assert doc["tags"] == lexical(TAGS)
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [1, 2, 4, 7, 14])
def test_tags_pagination(reg, tagged, n):
    url = f"/v2/{tagged}/tags/list?n={n}"
    got = []
    pages = 0
    while url:
        r = reg.get(url)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= n
        url = next_link(r)
        if url:
            # Without a Link a short page means the end; with one, exactly n.
            assert len(page) == n
            q = parse_qs(urlsplit(url).query)
            assert q.get("n") == [str(n)]
            assert q.get("last") == [page[-1]]
        got.extend(page)
        pages += 1
        assert pages <= len(TAGS) + 2
    assert got == lexical(TAGS)


def test_tags_n_larger_than_count(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list?n=1000")
    assert r.json()["tags"] == lexical(TAGS)
    assert "Link" not in r.headers


def test_tags_n_exact_count(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list?n={len(TAGS)}")
    assert r.json()["tags"] == lexical(TAGS)
    link = next_link(r)
    if link:
        # A Link to an empty last page is tolerable; it must really be empty.
        assert reg.get(link).json()["tags"] in ([], None)


def test_tags_n_zero(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list?n=0")
    assert r.status_code == 200
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


def test_tags_last(reg, tagged):
    order = lexical(TAGS)
    for i, last in enumerate(order):
        r = reg.get(f"/v2/{tagged}/tags/list?last={last}")
        assert r.status_code == 200
        assert r.json()["tags"] == order[i + 1:], last


def test_tags_n_and_last(reg, tagged):
    order = lexical(TAGS)
    r = reg.get(f"/v2/{tagged}/tags/list?n=3&last={order[4]}")
    assert r.json()["tags"] == order[5:8]


def test_tags_last_not_a_tag(reg, tagged):
    # `last` is a position in the order; it need not be an existing tag.
    order = lexical(TAGS)
    r = reg.get(f"/v2/{tagged}/tags/list?last=b")
    assert r.status_code == 200
    assert r.json()["tags"] == [t for t in order if (t.lower(), t) > ("b", "b")]


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "99999999999999999999"])
def test_tags_bad_n(reg, tagged, n):
    r = reg.get(f"/v2/{tagged}/tags/list?n={n}")
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["tags"]


def test_tags_unknown_repo(reg):
    assert_error(reg.get("/v2/it/listing/none/tags/list"), 404, "NAME_UNKNOWN")


def test_tags_empty_after_delete(reg, repo):
    reg.push_image(repo, "only")
    assert reg.delete(f"/v2/{repo}/manifests/only").status_code == 202
    r = reg.get(f"/v2/{repo}/tags/list")
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.json()["tags"] in ([], None)


def test_tags_many(reg, repo):
    img = reg.push_image(repo, "t0000")
    names = [f"t{i:04d}" for i in range(150)]
    for t in names[1:]:
        reg.put_manifest(repo, t, img["manifest"], MT_OCI_MANIFEST)
    r = reg.get(f"/v2/{repo}/tags/list")
    assert r.json()["tags"] == names
    got, url = [], f"/v2/{repo}/tags/list?n=40"
    while url:
        r = reg.get(url)
        got += r.json()["tags"]
        url = next_link(r)
    assert got == names


# -- catalog ------------------------------------------------------------------

CATALOG_REPOS = ["it/cat/a", "it/cat/a/b", "it/cat/a/b/c", "it/cat/b", "it/cat/z-last",
                 "it/cat/m.n_o"]


@pytest.fixture(scope="module")
def catalog_repos(reg):
    for name in CATALOG_REPOS:
        reg.push_image(name, "v1")
    return CATALOG_REPOS


def test_catalog_lists_nested(reg, catalog_repos):
    r = reg.get("/v2/_catalog")
    assert r.status_code == 200
    repos = r.json()["repositories"]
    for name in catalog_repos:
        assert name in repos
    assert repos == lexical(repos)
    assert len(set(repos)) == len(repos)


def test_catalog_pagination(reg, catalog_repos):
    full = reg.get("/v2/_catalog").json()["repositories"]
    got, url, pages = [], "/v2/_catalog?n=3", 0
    while url:
        r = reg.get(url)
        assert r.status_code == 200
        page = r.json()["repositories"]
        assert len(page) <= 3
        url = next_link(r)
        if url:
            assert len(page) == 3
            assert parse_qs(urlsplit(url).query).get("last") == [page[-1]]
        got += page
        pages += 1
        assert pages < 10000
    # Repositories may have been added meanwhile by nothing else: equal.
    assert got == full


def test_catalog_last(reg, catalog_repos):
    r = reg.get("/v2/_catalog?n=2&last=it/cat/a")
    repos = r.json()["repositories"]
    assert repos == ["it/cat/a/b", "it/cat/a/b/c"]
    assert next_link(r)


def test_catalog_n_zero(reg, catalog_repos):
    r = reg.get("/v2/_catalog?n=0")
    assert r.status_code == 200
    assert r.json()["repositories"] == []
    assert "Link" not in r.headers
