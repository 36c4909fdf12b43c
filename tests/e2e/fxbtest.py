"""Harness for the end-to-end tests: starts real fxb-server processes (and,
when a test needs to kill it, a private redis-server) and talks to them with
grpcio through the Python modules that the build generates from proto/.

Environment (set by tests/CMakeLists.txt, or by hand when running a file):
  FXB_BUILD_DIR       the build directory (fxb-server, fxb-admin, py/)
  FXB_SOURCE_DIR      the source tree
  FXB_TEST_REDIS_URL  the shared throw-away Redis started by tests/run.sh
"""
import functools
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FXB_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("FXB_BUILD_DIR") or os.path.join(SOURCE_DIR, "build-test")
PY_DIR = os.path.join(BUILD_DIR, "py")
SERVER_BIN = os.path.join(BUILD_DIR, "fxb-server")
ADMIN_BIN = os.path.join(BUILD_DIR, "fxb-admin")
REDIS_URL = os.environ.get("FXB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

# Sanitizer settings as tests/run.sh exports them, for runs outside it.
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:strict_string_checks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
os.environ.setdefault("LSAN_OPTIONS",
                      "suppressions=%s:print_suppressions=0" %
                      os.path.join(SOURCE_DIR, "tests", "lsan.supp"))

# gRPC status codes by number (the server's fxb_code values are the same).
CODE_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raise_nofile(want=None):
    """Raises the soft RLIMIT_NOFILE of this process (inherited by the servers
    it starts) to want, or to the hard limit when want is None or above it.
    Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want is None:
        target = hard
    elif hard == resource.RLIM_INFINITY:
        target = want
    else:
        target = min(hard, want)
    if target == resource.RLIM_INFINITY or soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- generated modules ---------------------------------------------------

_modules = {}


def pb(name):
    """Loads a generated module by its proto path without the suffix, e.g.
    pb("fxb/v1/system") or pb("grpc/health/v1/health"), from FXB_BUILD_DIR/py
    by file path under a unique name: grpc/health/v1/health_pb2.py and
    google/rpc/status_pb2.py would otherwise collide with the installed grpc
    and google packages."""
    name = name[:-6] if name.endswith(".proto") else name
    name = name[:-4] if name.endswith("_pb2") else name
    if name in _modules:
        return _modules[name]
    path = os.path.join(PY_DIR, name + "_pb2.py")
    if not os.path.exists(path):
        raise FileNotFoundError("generated module %s missing (build first)" % path)
    modname = "fxbpb_" + re.sub(r"[^A-Za-z0-9]", "_", name)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    _modules[name] = mod
    return mod


def system_pb():
    return pb("fxb/v1/system")


def diag_pb():
    return pb("fxb/v1/diag")


def reflect_methods(srv):
    """{path: MethodDescriptor} of every method the server offers."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    R = reflection_pb()
    [resp] = list(srv.reflection()(
        iter([R.ServerReflectionRequest(list_services="")]), timeout=20))
    names = [s.name for s in resp.list_services_response.service]
    assert names, "reflection lists no service"
    files = {}
    reqs = [R.ServerReflectionRequest(file_containing_symbol=n) for n in names]
    for r in srv.reflection()(iter(reqs), timeout=20):
        assert r.WhichOneof("message_response") == "file_descriptor_response", \
            r.original_request
        for raw in r.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(fd.name, fd)
    # dependencies the server did not send inline
    missing = {d for fd in files.values() for d in fd.dependency} - set(files)
    while missing:
        name = missing.pop()
        [r] = list(srv.reflection()(
            iter([R.ServerReflectionRequest(file_by_filename=name)]), timeout=20))
        for raw in r.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.name not in files:
                files[fd.name] = fd
                missing |= set(fd.dependency) - set(files)
    pool = descriptor_pool.DescriptorPool()
    added = set()
    while len(added) < len(files):
        progress = False
        for name, fd in files.items():
            if name not in added and set(fd.dependency) <= added:
                pool.Add(fd)
                added.add(name)
                progress = True
        assert progress, "unresolvable imports in %s" % (set(files) - added)
    methods = {}
    for n in names:
        svc = pool.FindServiceByName(n)
        for m in svc.methods:
            methods["/%s/%s" % (n, m.name)] = m
    return methods


def health_pb():
    return pb("grpc/health/v1/health")


def reflection_pb():
    return pb("grpc/reflection/v1alpha/reflection")


def status_pb():
    return pb("google/rpc/status")


def error_details_pb():
    return pb("google/rpc/error_details")


SERVING = 1
NOT_SERVING = 2
SERVICE_UNKNOWN = 3


def decode_status_details(err):
    """(ErrorInfo, LocalizedMessage) carried by an RpcError in the trailing
    metadata grpc-status-details-bin (a google.rpc.Status with Any details);
    either is None when absent. Also checks that Status.code matches the
    call's code."""
    md = dict(err.trailing_metadata() or ())
    raw = md.get("grpc-status-details-bin")
    if raw is None:
        return None, None
    st = status_pb().Status.FromString(raw)
    if st.code != err.code().value[0]:
        raise AssertionError("google.rpc.Status.code %d != call code %s" % (st.code, err.code()))
    ed = error_details_pb()
    info = loc = None
    for any_msg in st.details:
        if any_msg.type_url.endswith("/google.rpc.ErrorInfo"):
            info = ed.ErrorInfo.FromString(any_msg.value)
        elif any_msg.type_url.endswith("/google.rpc.LocalizedMessage"):
            loc = ed.LocalizedMessage.FromString(any_msg.value)
    return info, loc


def status_details_message(err):
    """The google.rpc.Status.message of an RpcError, or None."""
    md = dict(err.trailing_metadata() or ())
    raw = md.get("grpc-status-details-bin")
    return status_pb().Status.FromString(raw).message if raw is not None else None


# --- metrics ---------------------------------------------------------------

_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v):
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse_prometheus(text):
    """Prometheus text format -> {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_txt, value_txt = rest.rsplit("}", 1)
            labels = {}
            pos = 0
            while pos < len(labels_txt):
                m = _LABEL_RE.match(labels_txt, pos)
                if not m or m.end() == pos:
                    raise ValueError("bad label set in %r" % line)
                labels[m.group(1)] = _unescape(m.group(2))
                pos = m.end()
        else:
            name, value_txt = line.split(None, 1)
            labels = {}
        value_txt = value_txt.split()[0]
        out[(name.strip(), frozenset(labels.items()))] = float(value_txt)
    return out


def http_get(url, timeout=5):
    """(status, body text) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def metric(metrics, name, **labels):
    """One value from parsed metrics (0 when the series is absent)."""
    return metrics.get((name, frozenset(labels.items())), 0.0)


# --- Redis -----------------------------------------------------------------

def parse_redis_url(url):
    m = re.match(r"redis://(?:[^@/]*@)?([^:/]+)(?::(\d+))?(?:/(\d+))?$", url)
    if not m:
        raise ValueError("unsupported Redis URL in tests: %s" % url)
    return m.group(1), int(m.group(2) or 6379), int(m.group(3) or 0)


def redis_cli(url, *args, check=True):
    """Runs redis-cli against url; returns its stdout (stripped)."""
    host, port, db = parse_redis_url(url)
    r = subprocess.run(["redis-cli", "-h", host, "-p", str(port), "-n", str(db)] + list(args),
                       capture_output=True, text=True, timeout=30)
    if check and (r.returncode != 0 or r.stdout.startswith("ERR")):
        raise AssertionError("redis-cli %s failed: %s %s" % (args, r.stdout, r.stderr))
    return r.stdout.strip()


def redis_url_db(url, db):
    host, port, _ = parse_redis_url(url)
    return "redis://%s:%d/%d" % (host, port, db)


class Redis:
    """A private redis-server on a free port with AOF on in a temporary
    directory, which a test may stop and start again (same port and dir, so
    the data survives)."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fxb-e2e-redis.")
        self.proc = None
        self.url = "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10):
        assert self.proc is None, "redis already running"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--save", "", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited with %s" % self.proc.returncode)
            try:
                if redis_cli(self.url, "ping", check=False) == "PONG":
                    return self
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer on port %d" % self.port)

    def stop(self, timeout=10):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def migrate(self):
        run_admin(["migrate"], redis_url=self.url, check=True)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


# --- processes -------------------------------------------------------------

def run_admin(args, redis_url=None, env=None, check=False, timeout=60):
    """Runs fxb-admin; returns the CompletedProcess (text)."""
    e = dict(os.environ)
    e["FXB_REDIS_URL"] = redis_url or REDIS_URL
    e.update(env or {})
    r = subprocess.run([ADMIN_BIN] + list(args), env=e, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("fxb-admin %s exited %d: %s%s" % (args, r.returncode, r.stdout,
                                                               r.stderr))
    assert_no_sanitizer(r.stderr, "fxb-admin %s" % " ".join(args))
    return r


@functools.lru_cache(maxsize=None)
def latest_schema_version():
    """The newest migration this build knows, from `fxb-admin version`."""
    r = run_admin(["version"], check=True)
    m = re.search(r"\(schema (\d+)\)", r.stdout)
    assert m, "unexpected fxb-admin version output: %r" % r.stdout
    return int(m.group(1))


def assert_no_sanitizer(text, what):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            i = text.index(marker)
            raise AssertionError("%s: sanitizer report (%s):\n%s" %
                                 (what, marker, text[max(0, i - 2000):i + 6000]))


def server_env(listen=None, metrics_listen=None, redis_url=None, data_dir=None, extra=None):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("FXB_") and k not in ("FXB_BUILD_DIR", "FXB_SOURCE_DIR",
                                              "FXB_TEST_REDIS_URL", "FXB_TEST_BUILD_DIR"):
            del e[k]
    e.update({
        "FXB_LISTEN": listen or "127.0.0.1:%d" % free_port(),
        "FXB_METRICS_LISTEN": metrics_listen or "127.0.0.1:%d" % free_port(),
        "FXB_REDIS_URL": redis_url or REDIS_URL,
        "FXB_DATA_DIR": data_dir or tempfile.mkdtemp(prefix="fxb-e2e-data."),
        "FXB_WORKERS": "2",
        "FXB_ENV": "development",
    })
    for k, v in (extra or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def run_server_expect_exit(args=(), extra_env=None, redis_url=None, timeout=30,
                           data_files=None):
    """Runs fxb-server expecting it to exit by itself (bad config, wrong
    schema...). data_files maps paths relative to the data directory to
    the bytes or text to put there first (directories 0700, files 0600, as
    key files must be). Returns (exit code, stdout, stderr)."""
    data_dir = tempfile.mkdtemp(prefix="fxb-e2e-data.")
    try:
        for rel, content in (data_files or {}).items():
            path = os.path.join(data_dir, rel)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        env = server_env(redis_url=redis_url, data_dir=data_dir, extra=extra_env)
        try:
            r = subprocess.run([SERVER_BIN] + list(args), env=env, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("fxb-server %s did not exit within %ss" % (list(args), timeout)) \
                from e
        assert_no_sanitizer(r.stderr, "fxb-server")
        return r.returncode, r.stdout, r.stderr
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


class Server:
    """A running fxb-server, as a context manager.

        with Server(extra_env={...}) as srv:
            srv.unary(...)(req)

    On entry: runs `fxb-admin migrate` (unless migrate=False), starts the
    server on free ports and waits until Health/Check answers. On exit: stops
    it with SIGTERM if still running and asserts that its log holds no
    sanitizer report and that it exited with expect_exit (0 unless the test
    changes it)."""

    def __init__(self, extra_env=None, redis_url=None, migrate=True, args=(), expect_exit=0,
                 start_timeout=20, wait_serving=True, port=None, metrics_port=None,
                 provision_keys=True):
        self.extra_env = dict(extra_env or {})
        self.redis_url = redis_url or REDIS_URL
        self.migrate = migrate
        self.args = list(args)
        self.expect_exit = expect_exit
        self.start_timeout = start_timeout
        self.wait_serving = wait_serving
        self.proc = None
        self.returncode = None
        self.tmp = None
        self._channel = None
        self._channels = []
        self.port = port
        self.metrics_port = metrics_port
        self.provision_keys = provision_keys

    # lifecycle
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="fxb-e2e-srv.")
        if self.migrate:
            run_admin(["migrate"], redis_url=self.redis_url, check=True)
        extra = dict(self.extra_env)
        # FXB_LISTEN / FXB_METRICS_LISTEN in extra_env win (None: leave them
        # unset, e.g. to take them from --config; then pass port=)
        listen = extra.get("FXB_LISTEN", "127.0.0.1:%d" % free_port())
        metrics_listen = extra.get("FXB_METRICS_LISTEN", "127.0.0.1:%d" % free_port())
        extra.setdefault("FXB_LISTEN", listen)
        extra.setdefault("FXB_METRICS_LISTEN", metrics_listen)
        self.port = self.port or int(listen.rsplit(":", 1)[1])
        self.addr = "127.0.0.1:%d" % self.port
        if self.metrics_port is None and metrics_listen not in (None, "off"):
            self.metrics_port = int(metrics_listen.rsplit(":", 1)[1])
        self.env = server_env(redis_url=self.redis_url, data_dir=os.path.join(self.tmp, "data"),
                              extra=extra)
        os.makedirs(self.env["FXB_DATA_DIR"], exist_ok=True)
        if self.provision_keys:
            # as deploy/dev-up.sh does: key files are provisioned, not improvised
            run_admin(["keys", "init"], redis_url=self.redis_url,
                      env={"FXB_DATA_DIR": self.env["FXB_DATA_DIR"]}, check=True)
        self.log_path = os.path.join(self.tmp, "server.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([SERVER_BIN] + self.args, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()
        self.wait_ready(self.start_timeout)
        return self

    def wait_ready(self, timeout):
        """Waits until Health/Check answers (SERVING when wait_serving). Each
        try uses a fresh channel: a channel whose first connect was refused
        backs off for seconds before it tries again."""
        deadline = time.monotonic() + timeout
        h = health_pb()
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("fxb-server exited with %d during start-up:\n%s" %
                                     (self.proc.returncode, self.log()[-4000:]))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError as e:
                last = "connect: %s" % e
                time.sleep(0.05)
                continue
            ch = grpc.insecure_channel(self.addr)
            try:
                check = self.unary("/grpc.health.v1.Health/Check", h.HealthCheckRequest,
                                   h.HealthCheckResponse, channel=ch)
                r = check(h.HealthCheckRequest(), timeout=2, wait_for_ready=True)
                if r.status == SERVING or not self.wait_serving:
                    return
                last = "status %d" % r.status
            except grpc.RpcError as e:
                last = "%s %s" % (e.code(), e.details())
            finally:
                ch.close()
            time.sleep(0.05)
        raise AssertionError("fxb-server not ready within %ss (last: %s):\n%s" %
                             (timeout, last, self.log()[-4000:]))

    def send_signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for the process to exit; returns the exit code (raises on
        timeout after killing it)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError("fxb-server did not exit within %ss:\n%s" %
                                 (timeout, self.log()[-4000:]))
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig and waits for the exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def close_channels(self):
        for ch in self._channels:
            try:
                ch.close()
            except Exception:
                pass
        self._channels = []
        self._channel = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self._cleanup(check=False)
            raise

    def __exit__(self, exc_type, exc, tb):
        self._cleanup(check=exc_type is None)
        return False

    def _cleanup(self, check):
        self.close_channels()
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.stop(timeout=30)
                except AssertionError:
                    if check:
                        raise
            else:
                self.returncode = self.proc.returncode
        if self.proc is not None and hasattr(self, "_log"):
            self._log.close()
        log = self.log() if self.proc is not None else ""
        try:
            if check:
                assert_no_sanitizer(log, "fxb-server")
                if self.expect_exit is not None and self.returncode != self.expect_exit:
                    raise AssertionError("fxb-server exited with %s, expected %s:\n%s" %
                                         (self.returncode, self.expect_exit, log[-4000:]))
            elif log:
                sys.stderr.write("--- fxb-server log (tail) ---\n%s\n" % log[-3000:])
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    # logs
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def log_lines(self):
        """The server's JSON log lines, parsed (non-JSON lines skipped)."""
        out = []
        for line in self.log().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def rpc_lines(self, method=None):
        return [l for l in self.log_lines()
                if l.get("msg") == "rpc" and (method is None or l.get("method") == method)]

    def wait_log(self, pred, timeout=5):
        """Waits until a parsed log line satisfies pred; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for l in self.log_lines():
                if pred(l):
                    return l
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    # gRPC
    def new_channel(self, options=None):
        ch = grpc.insecure_channel(self.addr, options=options or [])
        self._channels.append(ch)
        return ch

    @property
    def channel(self):
        if self._channel is None:
            self._channel = self.new_channel()
        return self._channel

    def unary(self, path, req_cls, resp_cls, channel=None):
        return (channel or self.channel).unary_unary(
            path, request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)

    def unary_stream(self, path, req_cls, resp_cls, channel=None):
        return (channel or self.channel).unary_stream(
            path, request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)

    def stream_unary(self, path, req_cls, resp_cls, channel=None):
        return (channel or self.channel).stream_unary(
            path, request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)

    def stream_stream(self, path, req_cls, resp_cls, channel=None):
        return (channel or self.channel).stream_stream(
            path, request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)

    # shortcuts for the methods every test uses
    def get_info(self, channel=None):
        s = system_pb()
        return self.unary("/fxb.v1.SystemService/GetInfo", s.GetInfoRequest, s.GetInfoResponse,
                          channel)

    def health_check(self, channel=None):
        h = health_pb()
        return self.unary("/grpc.health.v1.Health/Check", h.HealthCheckRequest,
                          h.HealthCheckResponse, channel)

    def health_watch(self, channel=None):
        h = health_pb()
        return self.unary_stream("/grpc.health.v1.Health/Watch", h.HealthCheckRequest,
                                 h.HealthCheckResponse, channel)

    def echo(self, channel=None):
        d = diag_pb()
        return self.unary("/fxb.v1.DiagService/Echo", d.EchoRequest, d.EchoResponse, channel)

    def ticks(self, channel=None):
        d = diag_pb()
        return self.unary_stream("/fxb.v1.DiagService/Ticks", d.TicksRequest, d.Tick, channel)

    def collect(self, channel=None):
        d = diag_pb()
        return self.stream_unary("/fxb.v1.DiagService/Collect", d.CollectPart,
                                 d.CollectResult, channel)

    def chat(self, channel=None):
        d = diag_pb()
        return self.stream_stream("/fxb.v1.DiagService/Chat", d.EchoRequest, d.EchoResponse,
                                  channel)

    def reflection(self, channel=None):
        r = reflection_pb()
        return self.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            r.ServerReflectionRequest, r.ServerReflectionResponse, channel)

    # metrics
    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d" % self.metrics_port

    def metrics_text(self):
        status, body = http_get(self.metrics_url + "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics -> %d %s" % (status, body))
        return body

    def metrics(self):
        return parse_prometheus(self.metrics_text())


def wait_until(pred, timeout=5, interval=0.05):
    """Polls pred until it returns a true value (returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_uuid4(s):
    if not UUID4_RE.match(s or ""):
        return False
    return uuid.UUID(s).version == 4


def initial_md(call):
    """Initial metadata of a future/stream call as a dict."""
    return dict(call.initial_metadata() or ())


# --- a minimal raw HTTP/2 client -------------------------------------------
# For what grpcio refuses to send (header values with bytes outside
# printable ASCII). Request headers go out as HPACK literals without
# indexing (no Huffman); responses are not HPACK-decoded: the caller gets the
# DATA payload (gRPC messages) and the framing events.

def _h2_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _h2_frame(ftype, flags, stream, payload):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
            stream.to_bytes(4, "big") + payload)


def raw_h2_call(addr, path, message, headers=(), timeout=10):
    """Sends one gRPC request (one message) on a fresh HTTP/2 connection.
    headers: extra (name, value) pairs as bytes, sent unvalidated. Returns a
    dict: messages (list of gRPC message payloads received), end_stream
    (bool), rst (error code or None), goaway (bool), header_blocks (count)."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    block = b""
    base = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", addr.encode()), (b"content-type", b"application/grpc"),
            (b"te", b"trailers")]
    for name, value in base + list(headers):
        block += b"\x00" + _h2_int(len(name), 7) + name + _h2_int(len(value), 7) + value
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"") +
                 _h2_frame(1, 0x4, 1, block) + _h2_frame(0, 0x1, 1, body))
    res = {"messages": [], "end_stream": False, "rst": None, "goaway": False,
           "header_blocks": 0}
    buf = b""
    data = b""
    deadline = time.monotonic() + timeout

    def need(n):
        nonlocal buf
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("raw HTTP/2 call timed out")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk

    try:
        while not (res["end_stream"] or res["rst"] is not None):
            need(9)
            length = int.from_bytes(buf[0:3], "big")
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            need(9 + length)
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            if ftype == 4 and not flags & 0x1:  # SETTINGS: ack it
                sock.sendall(_h2_frame(4, 0x1, 0, b""))
            elif ftype == 6 and not flags & 0x1:  # PING
                sock.sendall(_h2_frame(6, 0x1, 0, payload))
            elif ftype == 7:  # GOAWAY
                res["goaway"] = True
                break
            elif stream == 1 and ftype == 3:  # RST_STREAM
                res["rst"] = int.from_bytes(payload[:4], "big")
            elif stream == 1 and ftype == 0:  # DATA
                if flags & 0x8:
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                data += payload
                if payload:
                    sock.sendall(_h2_frame(8, 0, 0, len(payload).to_bytes(4, "big")) +
                                 _h2_frame(8, 0, 1, len(payload).to_bytes(4, "big")))
                if flags & 0x1:
                    res["end_stream"] = True
            elif stream == 1 and ftype == 1:  # HEADERS
                res["header_blocks"] += 1
                if flags & 0x1:
                    res["end_stream"] = True
    except (ConnectionError, OSError):
        pass
    finally:
        sock.close()
    while len(data) >= 5:
        n = int.from_bytes(data[1:5], "big")
        res["messages"].append(data[5:5 + n])
        data = data[5 + n:]
    return res


class TestCase(unittest.TestCase):
    """Base class: checks that the binaries and generated modules exist."""

    @classmethod
    def setUpClass(cls):
        for path in (SERVER_BIN, ADMIN_BIN, PY_DIR):
            if not os.path.exists(path):
                raise AssertionError("%s missing: build first (FXB_BUILD_DIR=%s)" %
                                     (path, BUILD_DIR))

    def assertRpcError(self, err, code, reason=None, domain="fxb", zh=True):
        """err is an RpcError with the status code and (when given) the
        ErrorInfo reason in grpc-status-details-bin."""
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), code, "details: %r" % (err.details(),))
        if reason is not None:
            info, loc = decode_status_details(err)
            self.assertIsNotNone(info, "no ErrorInfo in grpc-status-details-bin (%s: %s)" %
                                 (err.code(), err.details()))
            self.assertEqual(info.reason, reason, "details: %r" % (err.details(),))
            self.assertEqual(info.domain, domain)
            if zh:
                self.assertIsNotNone(loc, "no LocalizedMessage")
                self.assertEqual(loc.locale, "zh-CN")
                self.assertTrue(loc.message)

    def assertExitCode(self, srv, rc, expected=0):
        """rc (from srv.wait/stop) is expected; otherwise fails with the
        server's log tail (a negative rc is the signal that killed it)."""
        if rc != expected:
            what = ("killed by signal %d" % -rc) if rc is not None and rc < 0 else \
                "exit code %s" % rc
            self.fail("fxb-server %s, expected exit code %s; log tail:\n%s" %
                      (what, expected, srv.log()[-3000:]))

    def assertCallFails(self, fn, code, reason=None, **kw):
        """fn() raises an RpcError with code (and reason). For a stream, let fn
        consume it: lambda: list(call(req))."""
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertRpcError(cm.exception, code, reason, **kw)
        return cm.exception


def main():
    unittest.main(verbosity=2)


# =========================================================================
# Auth helpers (test_auth.py, test_hostile_tokens.py, test_access_matrix.py)
# Additions only: nothing above this line depends on them.
# =========================================================================

import base64 as _b64
import hashlib as _hashlib
import hmac as _hmac
import random as _random

# Servers for auth tests: daily OTP caps high enough for a whole run (every
# test signs in from 127.0.0.1).
AUTH_ENV = {"FXB_OTP_DAILY_IP": "100000", "FXB_OTP_DAILY_PHONE": "1000"}

# Reasons the runtime's access check answers with (handlers use others).
ACCESS_REASONS = frozenset((
    "TOKEN_MISSING", "TOKEN_MALFORMED", "TOKEN_ALG_NOT_ALLOWED", "TOKEN_TYPE_INVALID",
    "TOKEN_KEY_UNKNOWN", "TOKEN_SIGNATURE_INVALID", "TOKEN_EXPIRED", "TOKEN_NOT_YET_VALID",
    "TOKEN_ISSUER_INVALID", "TOKEN_AUDIENCE_INVALID", "TOKEN_CLAIMS_INVALID", "SESSION_REVOKED",
    "STEP_UP_REQUIRED", "ROLE_REQUIRED", "LEVEL_TOO_LOW", "DEPARTMENT_MISMATCH",
    "DELEGATION_NOT_ALLOWED", "GRANT_REVOKED", "GRANT_EXPIRED", "GRANT_NOT_ACTIVE", "OUT_OF_SCOPE"))


def auth_pb():
    return pb("fxb/v1/auth")


def random_phone(prefix="139"):
    """A mainland mobile number nobody else in this run uses."""
    return prefix + "".join(_random.choice("0123456789") for _ in range(11 - len(prefix)))


def random_device_id(prefix="dev"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:20])


# --- a tiny RESP client (binary-safe, no redis-py needed) -----------------

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8")
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _RespReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise AssertionError("redis error: %s" % rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError("unexpected RESP reply %r" % line)


def redis_cmds(url, commands):
    """Runs a list of commands (each a list of str/bytes/int) on one
    connection; returns their replies (bytes, ints, lists, None)."""
    host, port, db = parse_redis_url(url)
    with socket.create_connection((host, port), timeout=10) as s:
        rd = _RespReader(s)
        if db:
            s.sendall(_resp_encode(["SELECT", db]))
            rd.read()
        s.sendall(b"".join(_resp_encode(c) for c in commands))
        return [rd.read() for _ in commands]


def redis_cmd(url, *args):
    return redis_cmds(url, [list(args)])[0]


def redis_dump(url, skip=(b"fxb:dev:sms",)):
    """Every key of the database with every string it holds (values, hash
    fields and values, members, stream fields): [(key, [bytes...])]. For
    checking that nothing is kept in clear."""
    keys, cursor = [], b"0"
    while True:
        cursor, batch = redis_cmd(url, "SCAN", cursor, "COUNT", 1000)
        keys.extend(batch)
        if cursor == b"0":
            break
    keys = [k for k in keys if k not in skip]
    types = redis_cmds(url, [["TYPE", k] for k in keys])
    cmds = []
    for k, ty in zip(keys, types):
        cmds.append({b"string": ["GET", k], b"hash": ["HGETALL", k],
                     b"list": ["LRANGE", k, 0, -1], b"set": ["SMEMBERS", k],
                     b"zset": ["ZRANGE", k, 0, -1, "WITHSCORES"],
                     b"stream": ["XRANGE", k, "-", "+"]}.get(ty, ["TYPE", k]))
    out = []

    def flat(v):
        if isinstance(v, list):
            for x in v:
                yield from flat(x)
        elif isinstance(v, bytes):
            yield v
        elif v is not None:
            yield str(v).encode()

    for k, v in zip(keys, redis_cmds(url, cmds) if cmds else []):
        out.append((k, list(flat(v))))
    return out


# --- codes, sign-in -------------------------------------------------------

_CODE_RE = re.compile(r"(?<![0-9])([0-9]{6})(?![0-9])")


def last_code(phone, redis_url=None, timeout=5):
    """The 6-digit code of the newest SMS to phone (bare 11 digits) in the
    development sink (stream fxb:dev:sms). Polls up to timeout seconds."""
    url = redis_url or REDIS_URL
    deadline = time.monotonic() + timeout
    while True:
        entries = redis_cmd(url, "XREVRANGE", "fxb:dev:sms", "+", "-", "COUNT", 200) or []
        for _id, fields in entries:
            f = dict(zip(fields[0::2], fields[1::2]))
            if f.get(b"phone") == phone.encode():
                m = _CODE_RE.search(f.get(b"text", b"").decode("utf-8"))
                if m:
                    return m.group(1)
        if time.monotonic() >= deadline:
            raise AssertionError("no SMS to %s in fxb:dev:sms" % phone)
        time.sleep(0.05)


def server_secret(srv):
    with open(os.path.join(srv.env["FXB_DATA_DIR"], "keys", "server-secret"), "rb") as f:
        return f.read()


def phone_tag(srv, phone):
    """The tag that stands for phone in Redis keys ({p:<tag>}), as
    auth/phone.c computes it: HMAC-SHA256(secret, "fxb/phone" 0x00 phone)."""
    mac = _hmac.new(server_secret(srv), b"fxb/phone\x00" + phone.encode(), _hashlib.sha256)
    return mac.hexdigest()[:16]


def allow_resend(srv, phone):
    """Forgets the 60 s resend marker of phone, so a test can ask for another
    code at once (the marker is shared by every purpose)."""
    redis_cmd(srv.redis_url, "DEL", "{p:%s}:otp:last" % phone_tag(srv, phone))


def auth_call(srv, method, req, token=None, metadata=None, timeout=20, channel=None):
    """Calls /fxb.v1.AuthService/<method> with req, as bearer token when
    given. Request and response classes follow the proto's naming."""
    a = auth_pb()
    resp_cls = {"SendCode": a.SendCodeResponse, "SetPassword": a.SetPasswordResponse,
                "GetMe": a.Account, "ListSessions": a.ListSessionsResponse,
                "SignOut": a.SignOutResponse, "SignOutOthers": a.SignOutResponse}.get(
                    method, a.TokenResponse)
    md = list(metadata or ())
    if token is not None:
        md.append(("authorization", "Bearer " + token))
    fn = srv.unary("/fxb.v1.AuthService/" + method, type(req), resp_cls, channel=channel)
    return fn(req, metadata=md or None, timeout=timeout)


def send_code(srv, phone, purpose=None):
    a = auth_pb()
    req = a.SendCodeRequest(phone=phone)
    if purpose is not None:
        req.purpose = purpose
    return auth_call(srv, "SendCode", req)


class SignedIn:
    """A signed-in device: phone, device_id and the latest TokenResponse."""

    def __init__(self, phone, device_id, resp):
        self.phone = phone
        self.device_id = device_id
        self.resp = resp

    @property
    def access(self):
        return self.resp.access_token

    @property
    def refresh(self):
        return self.resp.refresh_token

    @property
    def sid(self):
        return self.resp.session_id

    @property
    def account_id(self):
        return self.resp.account.account_id

    def md(self):
        return bearer(self.access)


def bearer(token):
    """Call metadata carrying token."""
    return [("authorization", "Bearer " + token)]


def sign_in(srv, phone=None, device_id=None, device_name="测试手机", fresh_code=True):
    """SendCode + SignInWithCode on srv; returns a SignedIn. With fresh_code
    the resend marker is cleared first, so the same phone may sign in again
    (another device) at once."""
    a = auth_pb()
    phone = phone or random_phone()
    device_id = device_id or random_device_id()
    if fresh_code:
        allow_resend(srv, phone)
    send_code(srv, phone)
    code = last_code(phone, srv.redis_url)
    resp = auth_call(srv, "SignInWithCode", a.SignInWithCodeRequest(
        phone=phone, code=code, device=a.Device(device_id=device_id, name=device_name)))
    return SignedIn(phone, device_id, resp)


def set_level(srv, who, level):
    """Sets the assurance level of who's account in the store (as the
    identity service will) and refreshes who's tokens, so the new access
    token carries acr = level."""
    redis_cmd(srv.redis_url, "HSET", "{u:%s}:account" % who.account_id, "level", level)
    who.resp = auth_call(srv, "Refresh", auth_pb().RefreshRequest(refresh_token=who.refresh))
    return who


raise_level = set_level


def make_staff(srv, phone, role, dept=None):
    """fxb-admin staff against srv's store and data keys."""
    args = ["staff", "--phone", phone, "--role", role]
    if dept is not None:
        args += ["--dept", dept]
    return run_admin(args, redis_url=srv.redis_url,
                     env={"FXB_DATA_DIR": srv.env["FXB_DATA_DIR"]}, check=True)


def retry_info(err):
    """The google.rpc.RetryInfo of an RpcError (None when absent)."""
    md = dict(err.trailing_metadata() or ())
    raw = md.get("grpc-status-details-bin")
    if raw is None:
        return None
    for any_msg in status_pb().Status.FromString(raw).details:
        if any_msg.type_url.endswith("/google.rpc.RetryInfo"):
            return error_details_pb().RetryInfo.FromString(any_msg.value)
    return None


def error_reason(err):
    """(code, ErrorInfo reason or None) of an RpcError."""
    info, _ = decode_status_details(err)
    return err.code(), (info.reason if info is not None else None)


# --- JWTs -----------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _b64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return _b64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_decode(token):
    """(header dict, claims dict, signature bytes), not verified."""
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), b64url_decode(s)


def jwt_encode(header, claims, sign=None):
    """header.claims.signature; sign(signing_input bytes) -> signature bytes
    (None: empty signature)."""
    def part(x):
        return b64url(x if isinstance(x, (bytes, str)) else
                      json.dumps(x, separators=(",", ":"), ensure_ascii=False))
    signing_input = part(header) + "." + part(claims)
    sig = sign(signing_input.encode("ascii")) if sign else b""
    return signing_input + "." + b64url(sig)


def server_key_path(srv):
    """(kid, path of the PEM) of srv's active token signing key."""
    d = os.path.join(srv.env["FXB_DATA_DIR"], "keys", "jwt")
    try:
        with open(os.path.join(d, "active")) as f:
            kid = f.read().strip()
    except FileNotFoundError:
        kid = max(n[:-4] for n in os.listdir(d) if n.endswith(".pem") and not n.startswith("."))
    return kid, os.path.join(d, kid + ".pem")


def public_pem(key_path):
    """The SubjectPublicKeyInfo PEM of an EC private key file (openssl CLI)."""
    r = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout"], capture_output=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("openssl pkey -pubout: %s" % r.stderr.decode())
    return r.stdout


def _der_int(buf, pos):
    assert buf[pos] == 0x02, "DER INTEGER expected"
    n = buf[pos + 1]
    pos += 2
    return int.from_bytes(buf[pos:pos + n], "big"), pos + n


def es256_sign(key_path, data):
    """Raw r||s (64 bytes) ES256 signature of data with the PEM key, made by
    `openssl dgst -sha256 -sign` (DER ECDSA-Sig-Value converted)."""
    r = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=data,
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("openssl dgst -sign: %s" % r.stderr.decode())
    der = r.stdout
    assert der[0] == 0x30, "DER SEQUENCE expected"
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    rr, pos = _der_int(der, pos)
    ss, pos = _der_int(der, pos)
    return rr.to_bytes(32, "big") + ss.to_bytes(32, "big")


def es256_verify(key_path, data, sig):
    """True when sig (raw r||s) is a valid ES256 signature of data under the
    public half of the key (openssl dgst -verify)."""
    def der_int(v):
        b = v.to_bytes(32, "big").lstrip(b"\x00") or b"\x00"
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes([len(b)]) + b
    body = der_int(int.from_bytes(sig[:32], "big")) + der_int(int.from_bytes(sig[32:], "big"))
    der = b"\x30" + bytes([len(body)]) + body
    tmp = tempfile.mkdtemp(prefix="fxb-e2e-jwt.")
    try:
        pub, sigf = os.path.join(tmp, "pub.pem"), os.path.join(tmp, "sig.der")
        with open(pub, "wb") as f:
            f.write(public_pem(key_path))
        with open(sigf, "wb") as f:
            f.write(der)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sigf],
                           input=data, capture_output=True, timeout=30)
        return r.returncode == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def forge_token(srv, claims=None, header=None, key_path=None, base=None, **overrides):
    """A token signed with srv's real private key (or key_path). Claims start
    from base (a real token's claims, e.g. jwt_decode(t)[1]) or a plausible
    set, then claims / overrides replace fields (value None deletes)."""
    kid, path = server_key_path(srv)
    now = int(time.time())
    c = dict(base or {"iss": srv.env.get("FXB_JWT_ISSUER", "https://fxb.xinxiang.gov.cn"),
                      "aud": srv.env.get("FXB_JWT_AUDIENCE", "fxb-app"),
                      "sub": "nobody", "sid": "nosession", "jti": uuid.uuid4().hex,
                      "iat": now, "nbf": now, "exp": now + 600, "auth_time": now,
                      "acr": 1, "roles": ["citizen"]})
    c.update(claims or {})
    c.update(overrides)
    c = {k: v for k, v in c.items() if v is not None}
    h = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    h.update(header or {})
    h = {k: v for k, v in h.items() if v is not None}
    return jwt_encode(h, c, lambda data: es256_sign(key_path or path, data))
