"""pytest fixtures: real httpd instances running mod_ocireg.

Instances are session-scoped and started lazily: the default one (`server`)
and variants with OCIRegDeletes Off, OCIRegUploadSlots 2 and Basic auth.
After every test, the error logs of all running instances are scanned for
lines written during the test at level error or worse; such a line fails the
test unless it matches a regex given with @pytest.mark.allow_errors(...).
With a sanitizer build of the module (make SANITIZE=1), any ASan/UBSan report
of any instance fails the test during which it appeared (or the session, for
one written at the last shutdown); nothing can allow it.

Environment:
  OCIREG_MODULE      module to load (default build/mod_ocireg.so)
  OCIREG_KEEP_TMP=1  keep the instances' directories (paths are printed)
  OCIREG_NO_MODULE=1 start httpd without the module (harness self-test)
  OCIREG_BACKENDS    storage backends to run the suite on, comma-separated
                     (default "filesystem,s3"; s3 starts a local Ceph RGW)
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpd_harness import (HttpdInstance, HttpdError, bad_log_lines,  # noqa: E402
                           make_base_dir, htpasswd_file, module_path)
from ocireg_client import Registry  # noqa: E402
from s3_backend import Rgw  # noqa: E402
import secrets_scan  # noqa: E402

# Every response the suite receives is scanned for the S3 keys.
secrets_scan.install()

BACKENDS = [b for b in os.environ.get("OCIREG_BACKENDS", "filesystem,s3").split(",") if b]

AUTH_USER = "tester"
AUTH_PASSWORD = "s3cret-Passw0rd"

_RUNNING = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_errors(*regexes): error-log lines matching any of "
        "these regexes do not fail the test")
    config.addinivalue_line("markers", "skopeo: needs the skopeo binary")


@pytest.fixture(scope="session")
def base_dir():
    d = make_base_dir()
    yield d
    # Every instance has stopped by now (their fixtures use this one).
    reports = _sanitizer_findings()
    secrets_scan.scan_logs(HttpdInstance.created)
    if secrets_scan.hits:
        reports.append("S3 keys leaked:\n" + "\n".join(secrets_scan.hits[:50]))
    if reports:
        os.environ["OCIREG_KEEP_TMP"] = "1"
        pytest.fail("at the end of the session:\n" + "\n".join(reports), pytrace=False)
    if os.environ.get("OCIREG_KEEP_TMP"):
        print(f"\nkept test directory {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def rgw(base_dir):
    """A local Ceph RGW for the S3 backend, for the whole session."""
    r = Rgw(base_dir)
    secrets_scan.register("the S3 secret key", r.secret_key)
    secrets_scan.register("the S3 access key id", r.access_key, access_key=True)
    secrets_scan.ignore_host(f"127.0.0.1:{r.port}")
    try:
        r.start()
    except Exception as e:  # noqa: BLE001
        r.stop()
        pytest.fail(str(e), pytrace=False)
    yield r
    try:
        left = r.multipart_uploads()
    finally:
        r.stop()
    # The registry must not leave multipart uploads behind.
    assert left == [], f"multipart uploads left in the bucket: {left}"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def httpd_factory(base_dir, backend, request):
    """start(name, **options) -> a running HttpdInstance on this session's
    backend; all are stopped at the end of the session."""
    started = []
    s3 = request.getfixturevalue("rgw") if backend == "s3" else None

    def start(name, **kw):
        name = f"{name}-{backend}"
        if s3 is not None and "storage" not in kw:
            kw["storage"] = s3.storage(base_dir, name)
        if os.environ.get("OCIREG_NO_MODULE"):
            kw["with_module"] = False
        elif not module_path().exists():
            pytest.fail(f"{module_path()} does not exist; run `make build` first",
                        pytrace=False)
        inst = HttpdInstance(name, base_dir, **kw)
        try:
            inst.start()
        except HttpdError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(inst)
        _RUNNING.append(inst)
        startup = bad_log_lines(inst.error_log_since(0))
        if startup:
            pytest.fail(f"httpd {name} logged errors at startup:\n" + "\n".join(startup),
                        pytrace=False)
        inst.checked_offset = inst.error_log_size()
        return inst

    yield start
    problems = []
    for inst in started:
        offset = getattr(inst, "checked_offset", 0)
        inst.stop()
        _RUNNING.remove(inst)
        # Shutdown must be clean too (crashes, errors while stopping).
        bad = bad_log_lines(inst.error_log_since(offset))
        if bad:
            problems.append(f"httpd {inst.name}:\n" + "\n".join(bad))
    if problems:
        pytest.fail("error-log lines after the last test / at shutdown:\n"
                    + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def server(httpd_factory):
    return httpd_factory("main")


@pytest.fixture(scope="session")
def reg(server):
    r = Registry(server.base_url)
    yield r
    r.close()


@pytest.fixture(scope="session")
def server_nodelete(httpd_factory):
    return httpd_factory("nodelete", deletes="Off")


@pytest.fixture(scope="session")
def server_slots2(httpd_factory):
    return httpd_factory("slots2", upload_slots=2)


@pytest.fixture(scope="session")
def server_auth(httpd_factory, base_dir):
    pw = htpasswd_file(Path(base_dir) / "htpasswd", AUTH_USER, AUTH_PASSWORD)
    auth = "\n".join([
        "AuthType Basic",
        'AuthName "ocireg test"',
        f'AuthUserFile "{pw}"',
        "Require valid-user",
    ])
    inst = httpd_factory("auth", location_auth=auth)
    inst.user = AUTH_USER
    inst.password = AUTH_PASSWORD
    return inst


_counter = [0]


@pytest.fixture
def repo(request):
    """A repository name unique to the test."""
    _counter[0] += 1
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    base = base[:60].strip("-") or "t"
    return f"it/{base}-{_counter[0]}"


@pytest.fixture(autouse=True)
def _error_log_guard(request):
    for inst in _RUNNING:
        inst.checked_offset = inst.error_log_size()
    yield


def _sanitizer_findings():
    found = []
    for inst in HttpdInstance.created:
        found += [f"[{inst.name}] {f}" for f in inst.sanitizer_findings()]
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when in ("call", "teardown"):
        reports = _sanitizer_findings()
        if reports:
            text = "sanitizer reports:\n" + "\n".join(reports)
            if report.passed:
                report.outcome = "failed"
                report.longrepr = text
            else:
                report.sections.append(("sanitizer", text))
    if call.when != "call" or not report.passed:
        return
    allowed = []
    for m in item.iter_markers("allow_errors"):
        allowed.extend(m.args)
    found = []
    for inst in list(_RUNNING):
        offset = getattr(inst, "checked_offset", 0)
        lines, inst.checked_offset = inst.read_error_log(offset)
        bad = bad_log_lines(lines, allowed)
        if bad:
            found.append(f"[{inst.name}] " + "\n".join(bad))
    if found:
        note = ""
        for inst in _RUNNING:
            if inst.module_changed():
                note = (f"\nNOTE: {module_path()} was rebuilt while httpd {inst.name} was "
                        "running; child crashes may come from that (overwritten in place).")
        report.outcome = "failed"
        report.longrepr = ("unexpected error-log lines during the test:\n"
                           + "\n".join(found) + note)


def pytest_terminal_summary(terminalreporter):
    if not secrets_scan.registered():
        return
    st = secrets_scan.stats
    terminalreporter.write_line(
        f"Secrets check: {st['responses']} responses and {st['log_files']} log files "
        f"({st['log_bytes'] // 1024} KiB) scanned for {', '.join(secrets_scan.registered())}: "
        + (f"{len(secrets_scan.hits)} found" if secrets_scan.hits else "none found"))


# Upstream registries for the pull-through mirror (tests/fixtures/upstream.py):
# Debian's docker-registry on 127.0.0.1, for the whole session. A test that
# stops one starts it again before it ends.
@pytest.fixture(scope="session")
def upstream_anon(base_dir):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
    from upstream import DistributionRegistry, UpstreamError
    try:
        up = DistributionRegistry(base_dir, "upstream-anon").start()
    except UpstreamError as e:
        pytest.fail(str(e), pytrace=False)
    yield up
    up.stop()


UPSTREAM_USER = "mirror-upstream"
UPSTREAM_PASSWORD = "Upstream-Basic-" + os.urandom(8).hex()


@pytest.fixture(scope="session")
def upstream_basic(base_dir):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
    from upstream import DistributionRegistry, UpstreamError
    # The mirror holds it as its upstream credentials: no answer or log
    # line of ours may show it.
    secrets_scan.register("the upstream's Basic password", UPSTREAM_PASSWORD)
    try:
        up = DistributionRegistry(base_dir, "upstream-basic", user=UPSTREAM_USER,
                                  password=UPSTREAM_PASSWORD).start()
    except UpstreamError as e:
        pytest.fail(str(e), pytrace=False)
    yield up
    up.stop()
