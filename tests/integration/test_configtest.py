"""Bad configuration fails `apache2 -t` with a message naming the directive."""

import os
import re
import subprocess

import pytest

from httpd_harness import HttpdInstance, module_path

APACHE2 = "/usr/sbin/apache2"


def configtest(tmp_path, **kw):
    inst = HttpdInstance("configtest", tmp_path, **kw)
    inst._prepare_dirs()
    inst.port = 1  # never bound: -t only parses
    inst.conf_path.write_text(inst.render_conf())
    p = subprocess.run([APACHE2, "-t", "-f", str(inst.conf_path)],
                       capture_output=True, text=True, timeout=30, env=inst.env())
    return p.returncode, p.stdout + p.stderr


def test_good_config_passes(tmp_path):
    rc, out = configtest(tmp_path)
    assert rc == 0, out
    assert "Syntax OK" in out


@pytest.mark.parametrize("extra, directive", [
    ("OCIRegStorage bogus /tmp/x", "OCIRegStorage"),
    ("OCIRegStorage filesystem", "OCIRegStorage"),
    ("OCIRegUploadSlots many", "OCIRegUploadSlots"),
    ("OCIRegUploadSlots 0", "OCIRegUploadSlots"),
    ("OCIRegUploadSlots 2000000", "OCIRegUploadSlots"),
    ("<VirtualHost 127.0.0.1:1>\nOCIRegUploadSlots 5\n</VirtualHost>",
     "OCIRegUploadSlots"),
    ("OCIRegUploadExpiry 0", "OCIRegUploadExpiry"),
    ("OCIRegUploadExpiry soon", "OCIRegUploadExpiry"),
    ("OCIRegUploadLease 0", "OCIRegUploadLease"),
    ("OCIRegUploadLease 86401", "OCIRegUploadLease"),
    ("<VirtualHost 127.0.0.1:1>\nOCIRegUploadLease 60\n</VirtualHost>",
     "OCIRegUploadLease"),
    # the test config's Timeout is 30: a lease must outlast it
    ("OCIRegUploadLease 30", "OCIRegUploadLease"),
    ("OCIRegUploadLease 200\nTimeout 300", "OCIRegUploadLease"),
    ("OCIRegUploadEmptyExpiry 0", "OCIRegUploadEmptyExpiry"),
    ("OCIRegUploadEmptyExpiry later", "OCIRegUploadEmptyExpiry"),
    ("OCIRegCatalogScanLimit 0", "OCIRegCatalogScanLimit"),
    ("OCIRegCatalogScanLimit all", "OCIRegCatalogScanLimit"),
    ("<VirtualHost 127.0.0.1:1>\nOCIRegCatalogScanLimit 5\n</VirtualHost>",
     "OCIRegCatalogScanLimit"),
    ("<Location /v2>\nRequire oci-pull\n</Location>", "oci-pull"),
    ("<Location /v2>\nRequire oci-push team/* nosuch:thing\n</Location>",
     "nosuch"),
    ("OCIRegUploadsPerClient -1", "OCIRegUploadsPerClient"),
    ("OCIRegUploadsPerClient lots", "OCIRegUploadsPerClient"),
    ("<VirtualHost 127.0.0.1:1>\nOCIRegUploadsPerClient 5\n</VirtualHost>",
     "OCIRegUploadsPerClient"),
    ("OCIRegUploadsPerRepository 1000001", "OCIRegUploadsPerRepository"),
    ("OCIRegUploadsPerRepository x", "OCIRegUploadsPerRepository"),
    ("OCIRegRecordKey /etc/key", "OCIRegRecordKey"),
    ("OCIRegRecordKey file:/nonexistent/key", "OCIRegRecordKey"),
    ("OCIRegS3AllowInsecure maybe", "OCIRegS3AllowInsecure"),
])
def test_bad_global_directive(tmp_path, extra, directive):
    rc, out = configtest(tmp_path, global_extra=extra)
    assert rc != 0, out
    assert directive in out, out


def test_limits_and_record_key_pass(tmp_path):
    key = tmp_path / "record.key"
    key.write_text(os.urandom(32).hex() + "\n")
    rc, out = configtest(tmp_path, global_extra="\n".join([
        "OCIRegUploadEmptyExpiry 60", "OCIRegUploadsPerClient 0",
        "OCIRegUploadsPerRepository 10", f"OCIRegRecordKey file:{key}"]))
    assert rc == 0, out


def test_short_record_key_fails(tmp_path):
    key = tmp_path / "record.key"
    key.write_bytes(b"short\n")
    rc, out = configtest(tmp_path, global_extra=f"OCIRegRecordKey file:{key}")
    assert rc != 0, out
    assert "OCIRegRecordKey" in out and "16" in out, out


@pytest.mark.parametrize("extra, directive", [
    ("OCIRegistry perhaps", "OCIRegistry"),
    ("OCIRegDeletes sometimes", "OCIRegDeletes"),
    ("OCIRegMirror", "OCIRegMirror"),
    ("OCIRegMirror hub/*", "OCIRegMirror"),
    ("OCIRegMirror hub/* local", "OCIRegMirror"),
    ("OCIRegMirror Hub/* docker.io", "OCIRegMirror"),
    ("OCIRegMirror hub/* ftp://mirror.example.org", "OCIRegMirror"),
    ("OCIRegMirror hub/* http://127.0.0.1:5000", "OCIRegMirror"),
    ("OCIRegMirror hub/* https://mirror.example.org:70000", "OCIRegMirror"),
    ("OCIRegMirror hub/* https://mirror.example.org/Org", "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io sometimes", "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io tag-ttl=soon", "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io ttl=5", "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io credentials=file:/nonexistent/cred",
     "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io credentials=env:NO_SUCH_VAR_A,NO_SUCH_VAR_B",
     "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io credentials=bob:pw", "OCIRegMirror"),
    ("OCIRegMirror hub/* ghcr.io quay.io credentials=env:PATH,PATH",
     "OCIRegMirror"),
    ("OCIRegMirror hub/* docker.io\nOCIRegMirror Off", "OCIRegMirror"),
])
def test_bad_location_directive(tmp_path, extra, directive):
    rc, out = configtest(tmp_path, location_extra=extra)
    assert rc != 0, out
    assert directive in out, out


def test_mirror_rules_pass_and_keep_credentials_quiet(tmp_path):
    cred = tmp_path / "hub.cred"
    cred.write_text("username = bob\npassword = Mirror-Cred-Not-To-Show\n")
    cred.chmod(0o600)
    rc, out = configtest(tmp_path, location_extra="\n".join([
        f"OCIRegMirror hub/* docker.io credentials=file:{cred} tag-ttl=600",
        "OCIRegMirror ghcr/* https://ghcr.io/org mirror.example.org:8443/org",
        "OCIRegMirror both/* http://127.0.0.1:5000 insecure local",
        'OCIRegMirror "*" docker.io']))
    assert rc == 0, out
    # A credentials file holding something else: refused without quoting it.
    cred.write_text("Mirror-Cred-Not-To-Show\n")
    rc, out = configtest(tmp_path, location_extra=f"OCIRegMirror * docker.io "
                         f"credentials=file:{cred}")
    assert rc != 0 and "OCIRegMirror" in out and str(cred) in out, out
    assert "Mirror-Cred" not in out, out
    rc, out = configtest(tmp_path, location_extra="OCIRegMirror * "
                         "https://bob:Mirror-Cred-Not-To-Show@ghcr.io")
    assert rc != 0 and "OCIRegMirror" in out, out
    assert "Mirror-Cred" not in out, out


def test_registry_without_storage_fails(tmp_path):
    """OCIRegistry On in a vhost whose server has no OCIRegStorage."""
    inst = HttpdInstance("nostorage", tmp_path)
    inst._prepare_dirs()
    inst.port = 1
    conf = inst.render_conf().replace("OCIRegStorage filesystem", "#OCIRegStorage filesystem")
    inst.conf_path.write_text(conf)
    p = subprocess.run([APACHE2, "-t", "-f", str(inst.conf_path)],
                       capture_output=True, text=True, timeout=30, env=inst.env())
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "OCIRegStorage" in out, out


def s3_conf(tmp_path, lines):
    """The test config with its storage replaced by an s3 block."""
    inst = HttpdInstance("s3conf", tmp_path)
    inst._prepare_dirs()
    inst.port = 1
    conf = inst.render_conf()
    conf = re.sub(r'OCIRegStorage filesystem "[^"]*"', "\n".join(lines), conf)
    inst.conf_path.write_text(conf)
    p = subprocess.run([APACHE2, "-t", "-f", str(inst.conf_path)],
                       capture_output=True, text=True, timeout=30, env=inst.env())
    return p.returncode, p.stdout + p.stderr


@pytest.fixture
def cred_file(tmp_path):
    f = tmp_path / "cred"
    f.write_text("access_key = AKIDEXAMPLE\nsecret_key = not-a-real-secret\n")
    f.chmod(0o600)
    return f


def test_s3_good_config_passes(tmp_path, cred_file):
    rc, out = s3_conf(tmp_path, ["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com",
                                 "OCIRegS3Bucket b", f"OCIRegS3Credentials file:{cred_file}",
                                 "OCIRegS3PartSize 64M"])
    assert rc == 0, out
    # the secret never shows up in what httpd says about its configuration
    assert "not-a-real-secret" not in out


@pytest.mark.parametrize("lines, needle", [
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com",
      "OCIRegS3Credentials file:@CRED@"], "OCIRegS3Bucket"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b"],
     "OCIRegS3Credentials"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:/nonexistent/cred"], "OCIRegS3Credentials"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials AKIDEXAMPLE:secret"], "OCIRegS3Credentials"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials env:NO_SUCH_VAR_A,NO_SUCH_VAR_B"], "OCIRegS3Credentials"),
    (["OCIRegStorage s3 acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@"], "OCIRegStorage"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com/bucket", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@"], "OCIRegStorage"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@", "OCIRegS3PartSize 1M"], "OCIRegS3PartSize"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@", "OCIRegS3PartSize lots"], "OCIRegS3PartSize"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@", "OCIRegS3Timeouts 0"], "OCIRegS3Timeouts"),
    (["OCIRegStorage s3 https://acct.r2.cloudflarestorage.com", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@", "OCIRegS3BlobRedirect forever"],
     "OCIRegS3BlobRedirect"),
    # plain http must be asked for
    (["OCIRegStorage s3 http://127.0.0.1:9000", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@"], "OCIRegS3AllowInsecure"),
    (["OCIRegStorage s3 http://127.0.0.1:9000", "OCIRegS3Bucket b",
      "OCIRegS3Credentials file:@CRED@", "OCIRegS3AllowInsecure Off"],
     "OCIRegS3AllowInsecure"),
])
def test_s3_bad_config(tmp_path, cred_file, lines, needle):
    rc, out = s3_conf(tmp_path, [l.replace("@CRED@", str(cred_file)) for l in lines])
    assert rc != 0, out
    assert needle in out, out


def test_s3_plain_http_allowed_explicitly(tmp_path, cred_file):
    rc, out = s3_conf(tmp_path, ["OCIRegStorage s3 http://127.0.0.1:9000",
                                 "OCIRegS3Bucket b", f"OCIRegS3Credentials file:{cred_file}",
                                 "OCIRegS3AllowInsecure On"])
    assert rc == 0, out
