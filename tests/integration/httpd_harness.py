"""Start and stop real httpd instances for the integration tests.

Modelled on httpd's test/pyhttpd: every instance gets its own directory with
its generated configuration, logs, pid file, mutexes, storage and document
root; it listens on 127.0.0.1 on a free port; it is started as
``/usr/sbin/apache2 -f <conf> -DFOREGROUND`` and stopped by SIGTERM to the
PID we started.
"""

import http.client
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from process import stop_process  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_TEMPLATE = REPO_ROOT / "conf" / "test-httpd.conf.in"
APACHE2 = "/usr/sbin/apache2"
RUN_USER = "www-data"
RUN_GROUP = "www-data"

INDEX_HTML = b"<html><body><h1>static content next to the registry</h1></body></html>\n"

# "[Fri Nov 28 03:30:00.123456 2025] [core:error] [pid 12:tid 34] ..."
_LOG_LEVEL_RE = re.compile(r"^\[[^\]]*\] \[([^:\]]*):([a-z0-9]+)\]")
BAD_LEVELS = {"error", "crit", "alert", "emerg"}
# Lines that always mean trouble, whatever their level (a child crashing is
# reported by the parent at notice level).
ALWAYS_BAD = [re.compile(r"AH00052"), re.compile(r"exit signal"),
              re.compile(r"seg ?fault", re.I)]


def module_path():
    """The module under test: $OCIREG_MODULE or build/mod_ocireg.so."""
    env = os.environ.get("OCIREG_MODULE")
    if env:
        return Path(env).resolve()
    return REPO_ROOT / "build" / "mod_ocireg.so"


# Runtimes of a sanitizer build (`make SANITIZE=1`), as `ldd` names them.
_SAN_RUNTIME_RE = re.compile(r"^\s*(lib(?:asan|ubsan)\.so[.\d]*|libclang_rt\.[a-z_]+-[\w]+\.so)"
                             r"\s*=>\s*(\S+)")
# What a sanitizer writes when it finds something.
SANITIZER_TEXT = re.compile(r"runtime error:|AddressSanitizer|UndefinedBehaviorSanitizer|"
                            r"LeakSanitizer")
_san_cache = {}


def sanitizer_runtimes(mod=None):
    """The sanitizer runtime libraries the module links (empty for a normal
    build), ASan's first: apache2 itself is not instrumented, so they must be
    preloaded for the module to load at all."""
    mod = Path(mod or module_path())
    try:
        st = mod.stat()
    except OSError:
        return []
    key = (str(mod), st.st_ino, st.st_mtime_ns)
    if key not in _san_cache:
        out = subprocess.run(["ldd", str(mod)], capture_output=True, text=True).stdout
        libs = [m.group(2) for m in map(_SAN_RUNTIME_RE.match, out.splitlines()) if m]
        libs.sort(key=lambda p: 0 if "asan" in p else 1)
        _san_cache[key] = libs
    return _san_cache[key]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bad_log_lines(lines, allowed=()):
    """Lines at error level or worse (or crash notices) not matching any of
    the allowed regexes."""
    bad = []
    for line in lines:
        m = _LOG_LEVEL_RE.match(line)
        is_bad = bool(m and m.group(2) in BAD_LEVELS)
        if not is_bad and any(p.search(line) for p in ALWAYS_BAD):
            is_bad = True
        if is_bad and not any(re.search(a, line) for a in allowed):
            bad.append(line)
    return bad


def children_of(pid):
    """The processes whose parent is pid (a scan of /proc)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d))
    return kids


def wait_for(cond, timeout=30.0, what="condition"):
    """Polls cond() until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class HttpdError(Exception):
    pass


class HttpdInstance:
    """One httpd process with its own configuration and directory."""

    # Every instance made in this session, for the sanitizer checks.
    created = []

    def __init__(self, name, base_dir, *, with_module=True, deletes="On",
                 upload_slots=256, location_auth="Require all granted",
                 location_extra="", global_extra="", storage=None):
        self.name = name
        # None: the filesystem store in our directory; else a dict for the
        # S3 store (endpoint, bucket, prefix, cred_file, part_size, extra).
        self.storage = storage
        self.dir = Path(base_dir) / name
        self.with_module = with_module
        self.deletes = deletes
        self.upload_slots = upload_slots
        self.location_auth = location_auth
        self.location_extra = location_extra
        self.global_extra = global_extra
        self.port = None
        self.proc = None
        self.log_dir = self.dir / "logs"
        self.run_dir = self.dir / "run"
        self.mutex_dir = self.dir / "mutex"
        self.data_dir = self.dir / "data"
        self.doc_root = self.dir / "htdocs"
        self.conf_path = self.dir / "httpd.conf"
        self.error_log = self.log_dir / "error_log"
        self.access_log = self.log_dir / "access_log"
        # Sanitizer reports (one file per process), writable by the children.
        self.san_dir = self.dir / "sanitizer"
        self.san_seen = set()
        self.san_text_offsets = {}
        HttpdInstance.created.append(self)

    # -- setup -----------------------------------------------------------
    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def _prepare_dirs(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for d in (self.dir, self.log_dir, self.run_dir, self.mutex_dir,
                  self.data_dir, self.doc_root, self.san_dir):
            d.mkdir(parents=True)
            d.chmod(0o755)
        (self.doc_root / "index.html").write_bytes(INDEX_HTML)
        (self.doc_root / "index.html").chmod(0o644)
        if os.geteuid() == 0:
            uid = pwd.getpwnam(RUN_USER).pw_uid
            gid = grp.getgrnam(RUN_GROUP).gr_gid
            # The children (www-data) write the storage and may reopen the
            # mutex files; the parent (root) writes logs and the pid file.
            for d in (self.data_dir, self.mutex_dir, self.run_dir, self.san_dir):
                os.chown(d, uid, gid)

    def render_conf(self):
        text = CONF_TEMPLATE.read_text()
        if self.with_module:
            mod = module_path()
            load = f'LoadModule ocireg_module "{mod}"'
        else:
            load = "# mod_ocireg not loaded (harness self-test)"
        if os.geteuid() == 0:
            user_group = f"User {RUN_USER}\nGroup {RUN_GROUP}"
        else:
            user_group = "# not root: children keep our uid"
        values = {
            "SERVER_ROOT": str(self.dir),
            "PORT": str(self.port),
            "RUN_DIR": str(self.run_dir),
            "MUTEX_DIR": str(self.mutex_dir),
            "LOG_DIR": str(self.log_dir),
            "DATA_DIR": str(self.data_dir),
            "DOC_ROOT": str(self.doc_root),
            "UPLOAD_SLOTS": str(self.upload_slots),
            "DELETES": self.deletes,
            "STORAGE": self.storage_conf(),
            "LOAD_OCIREG": load,
            "USER_GROUP": user_group,
            "LOCATION_AUTH": self.location_auth,
            "LOCATION_EXTRA": self.location_extra,
            "GLOBAL_EXTRA": self.global_extra + self._sanitizer_conf(),
        }
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise HttpdError(f"unfilled placeholders in {CONF_TEMPLATE}: {left}")
        return text

    def _sanitizer_conf(self):
        """A sanitizer runtime reads its options from /proc/self/environ, and
        UBSan does so only at its first report, in a child that has become
        www-data and so cannot read that file any more. CoreDumpDirectory has
        httpd mark its children dumpable again (prctl), which lets it."""
        if not (self.with_module and sanitizer_runtimes()):
            return ""
        return f'\nCoreDumpDirectory "{self.san_dir}"\n'

    def storage_conf(self):
        if not self.storage:
            return f'    OCIRegStorage filesystem "{self.data_dir}"'
        s = self.storage
        lines = [f"OCIRegStorage s3 {s['endpoint']}",
                 f"OCIRegS3Bucket {s['bucket']}",
                 f"OCIRegS3Prefix {s['prefix']}",
                 f"OCIRegS3Region {s.get('region', 'us-east-1')}",
                 f"OCIRegS3Credentials file:{s['cred_file']}",
                 f"OCIRegS3PartSize {s.get('part_size', '5M')}",
                 f'OCIRegS3SpoolDir "{self.data_dir}"']
        if s["endpoint"].startswith("http://"):
            # The local RGW (and the fault proxies) speak plain HTTP.
            lines.append("OCIRegS3AllowInsecure On")
        lines += s.get("extra", [])
        return "\n".join("    " + l for l in lines)

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout=20.0, keep_dirs=False):
        """keep_dirs: start again on what a stopped run left (its store)."""
        if self.with_module and not module_path().exists():
            raise HttpdError(f"{module_path()} does not exist; run `make build` first")
        if not keep_dirs:
            self._prepare_dirs()
        self._module_stat = self._stat_module()
        last_err = None
        for _attempt in range(3):
            self.port = free_port()
            self.conf_path.write_text(self.render_conf())
            self._error_offset = 0
            env = self.env()
            self._stdout = open(self.dir / "stdout", "ab")
            self.proc = subprocess.Popen(
                [APACHE2, "-f", str(self.conf_path), "-DFOREGROUND"],
                stdout=self._stdout, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=str(self.dir))
            try:
                self._wait_ready(timeout)
                return self
            except HttpdError as e:
                last_err = e
                self.stop()
                # Another process may have taken our port between probing and
                # binding; try again on a fresh one.
                if "Address already in use" not in self.startup_output():
                    break
        raise last_err

    def env(self):
        """The environment apache2 runs in (also for `apache2 -t`): with a
        sanitizer build, its runtimes preloaded and its reports written to
        san_dir, one file per process, aborting at the first."""
        env = dict(os.environ, LANG="C")
        libs = sanitizer_runtimes() if self.with_module else []
        if libs:
            self.san_dir.mkdir(parents=True, exist_ok=True)
            report = self.san_dir / "report"
            env["LD_PRELOAD"] = " ".join(libs + [env.get("LD_PRELOAD", "")]).strip()
            # httpd frees its pools at exit in ways LeakSanitizer misreads,
            # so leaks are left to the unit tests (and valgrind). httpd's
            # own SIGSEGV handler would hide a crash's stack behind a bare
            # "exit signal Segmentation fault": ASan keeps its handler, and
            # the crash becomes a report with the stack.
            env["ASAN_OPTIONS"] = ":".join([
                "detect_leaks=0", "abort_on_error=1", "halt_on_error=1",
                "strict_string_checks=1", "allow_user_segv_handler=0",
                f"log_path={report}"]
                + [os.environ.get("ASAN_OPTIONS", "")]).strip(":")
            env["UBSAN_OPTIONS"] = ":".join([
                "print_stacktrace=1", "halt_on_error=1", "abort_on_error=1",
                f"log_path={report}"] + [os.environ.get("UBSAN_OPTIONS", "")]).strip(":")
        return env

    def sanitizer_findings(self):
        """Sanitizer reports not returned before: new report files in
        san_dir, and sanitizer text in stdout and the error log (where a
        report lands when its file cannot be written)."""
        found = []
        try:
            files = sorted(p for p in self.san_dir.iterdir() if p.is_file())
        except OSError:
            files = []
        for p in files:
            if p in self.san_seen:
                continue
            self.san_seen.add(p)
            found.append(f"{p}:\n" + p.read_text(errors="replace")[:6000])
        for p in (self.dir / "stdout", self.error_log):
            off = self.san_text_offsets.get(p, 0)
            try:
                with open(p, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1
            self.san_text_offsets[p] = off + cut
            text = data[:cut].decode("utf-8", "replace")
            lines = text.splitlines()
            hits = [i for i, l in enumerate(lines) if SANITIZER_TEXT.search(l)]
            if hits:
                # UBSan writes its report (and stack) to stderr, the error log.
                found.append(f"{p}:\n" + "\n".join(lines[hits[0]:hits[0] + 30]))
        return found

    def _stat_module(self):
        if not self.with_module:
            return None
        try:
            st = module_path().stat()
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def module_changed(self):
        """True when the module file changed since this instance started."""
        return self.with_module and self._stat_module() != self._module_stat

    def startup_output(self):
        out = ""
        for p in (self.dir / "stdout", self.error_log):
            try:
                out += p.read_text(errors="replace")
            except OSError:
                pass
        return out

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HttpdError(
                    f"httpd {self.name} exited with {self.proc.returncode}:\n"
                    + self.startup_output()[-4000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HttpdError(f"httpd {self.name} did not answer within {timeout}s:\n"
                                 + self.startup_output()[-4000:])
            # Poll the condition, not a fixed delay.
            time.sleep(0.05)

    def stop(self, timeout=20.0):
        """A graceful stop (SIGWINCH; GracefulShutdownTimeout bounds it),
        then SIGTERM and SIGKILL for whatever is left. An ungraceful stop
        has the event MPM close the sockets of connections its workers are
        still tearing down, a race in httpd itself that crashes a child now
        and then under ASan."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The parent looks at its stopping children once a second;
            # once they are gone, a SIGTERM ends it at once.
            try:
                os.kill(self.proc.pid, signal.SIGWINCH)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while (time.monotonic() < deadline and self.proc.poll() is None
                   and children_of(self.proc.pid)):
                time.sleep(0.02)
        stop_process(self.proc, timeout)
        self.proc = None
        try:
            self._stdout.close()
        except Exception:
            pass

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- logs --------------------------------------------------------------
    def error_log_size(self):
        try:
            return self.error_log.stat().st_size
        except FileNotFoundError:
            return 0

    def read_error_log(self, offset):
        """(lines written after offset, offset of the end of what was read);
        a trailing partial line is left for the next read."""
        try:
            with open(self.error_log, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], offset
        cut = data.rfind(b"\n") + 1
        data = data[:cut]
        return data.decode("utf-8", "replace").splitlines(), offset + cut

    def error_log_since(self, offset):
        return self.read_error_log(offset)[0]

    def access_log_lines(self):
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_access_log(self, predicate, count, timeout=10.0):
        """Polls the access log until `count` lines satisfy predicate; returns
        the matching lines (access log lines are written after the response
        has gone out, so they may lag the client a little)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.access_log_lines() if predicate(l)]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


def make_base_dir():
    """A tmp dir the children (www-data) can traverse."""
    d = Path(tempfile.mkdtemp(prefix="ocireg-it-"))
    d.chmod(0o755)
    return d


def htpasswd_file(path, user, password):
    """Writes an htpasswd file, with htpasswd(1) when available, else in the
    {SHA} format that mod_authn_file understands."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        subprocess.run([htpasswd, "-bc", str(path), user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        import base64
        import hashlib
        h = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        Path(path).write_text(f"{user}:{{SHA}}{h}\n")
    os.chmod(path, 0o644)
    return path
