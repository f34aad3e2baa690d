"""Bad configuration fails `apache2 -t` with a message naming the directive."""

import os
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
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, LANG="C"))
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
])
def test_bad_global_directive(tmp_path, extra, directive):
    rc, out = configtest(tmp_path, global_extra=extra)
    assert rc != 0, out
    assert directive in out, out


@pytest.mark.parametrize("extra, directive", [
    ("OCIRegistry perhaps", "OCIRegistry"),
    ("OCIRegDeletes sometimes", "OCIRegDeletes"),
])
def test_bad_location_directive(tmp_path, extra, directive):
    rc, out = configtest(tmp_path, location_extra=extra)
    assert rc != 0, out
    assert directive in out, out


def test_registry_without_storage_fails(tmp_path):
    """OCIRegistry On in a vhost whose server has no OCIRegStorage."""
    inst = HttpdInstance("nostorage", tmp_path)
    inst._prepare_dirs()
    inst.port = 1
    conf = inst.render_conf().replace("OCIRegStorage filesystem", "#OCIRegStorage filesystem")
    inst.conf_path.write_text(conf)
    p = subprocess.run([APACHE2, "-t", "-f", str(inst.conf_path)],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "OCIRegStorage" in out, out
