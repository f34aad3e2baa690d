"""Every file in conf/examples/ passes `apache2 -t`.

Each example holds the directives of a registry's <Location /v2> (what
`make run` takes as CONF_EXTRA) and assumes the modules it names are
enabled. The test wraps it in a minimal server configuration that loads
all of them (mod_ocireg from the build under test), includes the example
in a `<Location /v2>` with `OCIRegistry On`, and runs `apache2 -t`.
"""

from pathlib import Path

import subprocess

import pytest

from httpd_harness import APACHE2, REPO_ROOT, HttpdInstance, module_path

EXAMPLES = sorted(p for p in (REPO_ROOT / "conf" / "examples").glob("*")
                  if p.is_file() and not p.name.startswith("."))
DEBIAN_MODULES = Path("/usr/lib/apache2/modules")
# What the examples may use, all from Debian's apache2 package. Loading a
# module an example does not need costs nothing under -t.
MODULES = ["mpm_event", "authz_core", "authz_host", "authz_user", "authz_groupfile",
           "authn_core", "authn_file", "auth_basic", "ldap", "authnz_ldap",
           "env", "setenvif", "headers", "dir", "alias", "rewrite"]


def wrapped(tmp_path, example):
    lines = [f'ServerRoot "{tmp_path}"',
             "ServerName 127.0.0.1",
             "Listen 127.0.0.1:1",  # -t only parses, never binds
             f'PidFile "{tmp_path}/httpd.pid"',
             f'DefaultRuntimeDir "{tmp_path}"',
             f"Mutex file:{tmp_path} default",
             f'ErrorLog "{tmp_path}/error_log"']
    for m in MODULES:
        lines.append(f"LoadModule {m}_module {DEBIAN_MODULES / f'mod_{m}.so'}")
    lines.append(f'LoadModule ocireg_module "{module_path()}"')
    lines += [f'OCIRegStorage filesystem "{tmp_path}/data"',
              "<Location /v2>",
              "    OCIRegistry On",
              f'    Include "{example}"',
              "</Location>"]
    return "\n".join(lines) + "\n"


def test_examples_exist():
    assert any(p.name == "auth-ldap.conf" for p in EXAMPLES), EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_configtest(tmp_path, example):
    missing = [m for m in MODULES if not (DEBIAN_MODULES / f"mod_{m}.so").exists()]
    assert not missing, f"Debian apache2 modules missing: {missing}"
    # Its env() preloads the sanitizer runtimes for a sanitizer build.
    inst = HttpdInstance("conf-example", tmp_path)
    conf = tmp_path / "httpd.conf"
    text = example.read_text()
    if "/etc/apache2/registry-token.pem" in text:
        # Token keys are read at start: a real public key stands in.
        key, pub = tmp_path / "token.key", tmp_path / "token.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(key)], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
                       check=True, capture_output=True)
        example = tmp_path / example.name
        example.write_text(text.replace("/etc/apache2/registry-token.pem", str(pub)))
    if "/etc/apache2/dockerhub.cred" in text:
        # Mirror credentials are read at start: a stand-in file.
        cred = tmp_path / "dockerhub.cred"
        cred.write_text("username = example\npassword = stand-in\n")
        example = tmp_path / example.name
        example.write_text(text.replace("/etc/apache2/dockerhub.cred", str(cred)))
    conf.write_text(wrapped(tmp_path, example))
    p = subprocess.run([APACHE2, "-t", "-f", str(conf)], capture_output=True, text=True,
                       timeout=30, env=inst.env(), cwd=str(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{example.name}:\n{out}"
    assert "Syntax OK" in out, out
