"""httpd's own LimitRequestBody, in front of the module: a 413 with the OCI
JSON body, no server error, and the upload session left consistent."""

import hashlib

import pytest
import requests

from ocireg_client import assert_error


@pytest.fixture(scope="module")
def limited(httpd_factory):
    return httpd_factory("limited", location_extra="LimitRequestBody 1000")


def test_patch_over_limit_with_length(limited):
    base = limited.base_url
    loc = requests.post(base + "/v2/lim/a/blobs/uploads/").headers["Location"]
    r = requests.patch(base + loc, data=b"a" * 2000)
    assert_error(r, 413, "SIZE_INVALID")
    # nothing was taken from the refused body
    st = requests.get(base + loc)
    assert st.status_code == 204
    assert st.headers["Range"] == "0-0"


def test_chunked_patch_over_limit_keeps_a_consistent_session(limited):
    base = limited.base_url
    loc = requests.post(base + "/v2/lim/b/blobs/uploads/").headers["Location"]

    def body():
        for _ in range(4):
            yield b"b" * 600

    r = requests.patch(base + loc, data=body())
    assert_error(r, 413, "SIZE_INVALID")
    st = requests.get(base + loc)
    assert st.status_code == 204
    end = int(st.headers["Range"].split("-")[1])
    kept = 0 if end == 0 else end + 1
    assert kept < 1000
    # the session goes on from where it says it is, to the right blob
    data = b"b" * 2400
    r = requests.patch(base + st.headers["Location"], data=data[kept:kept + 900],
                       headers={"Content-Range": f"{kept}-{kept + 899}"})
    assert r.status_code == 202, r.text
    whole = data[:kept + 900]
    digest = "sha256:" + hashlib.sha256(whole).hexdigest()
    r = requests.put(base + r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    assert requests.get(base + f"/v2/lim/b/blobs/{digest}").content == whole


def test_manifest_over_limit(limited):
    r = requests.put(limited.base_url + "/v2/lim/c/manifests/t", data=b"{" * 2000,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert_error(r, 413, "SIZE_INVALID")
