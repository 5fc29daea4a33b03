"""Shared harness for somirror's integration tests (imported by every tests/integration/*.py).

Environment (set by `make check`): SOMIRROR_BUILDDIR (built programs), SOMIRROR_SRCDIR (the
source tree), SQLITE3 (the sqlite3 command). Run by hand, they default to this file's tree.

What it offers:
  make_keys(dir)                     vendor key + self-signed cert, application key pair (openssl CLI)
  write_config(dir, keys, **over)    a somirrord.yaml (JSON, which YAML reads) on a free port
  Daemon(config)                     start/stop/signal a somirrord, its workers, log, status socket
  server(**over)                     all of the above in one context manager (a temp dir)
  make_token(...)                    a vendor SignedToken (RS256 JWS): python3-cryptography, else openssl
  envelope/soap(...)                 SOAP requests over http.client, keep-alive when given a connection
  *_body(...)                        builders for the five operations' request bodies
  parse_fault / parse_auth / parse_table_states   readers for responses
  skip(reason)                       exit 77 (the automake "skipped" status)
A test never leaves processes behind: Daemon kills its whole process group on exit.
"""

import base64
import contextlib
import grp
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SOMIRROR_SRCDIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILDDIR = os.environ.get("SOMIRROR_BUILDDIR") or SRCDIR
SQLITE3 = os.environ.get("SQLITE3") or "sqlite3"

NS = "http://www.superoffice.com/online/mirroring/0.1"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
ACTION_PREFIX = NS + "/IMirroringClientService/"
OPERATIONS = ("Authenticate", "TableSchema", "Wipe", "RowData", "ReplicationCompleted")
CTX_CLAIM = "http://schemes.superoffice.net/identity/ctx"
DEFAULT_APP_ID = "123123123123123123"
# How long a test's daemon gets to stop on SIGTERM at the end of the test (a graceful stop
# waits a second of quiet, design "Shutdown"), beyond its shutdown_timeout (for which its
# workers may finish calls in hand), before the rest is SIGKILLed.
STOP_GRACE_S = 30 if os.environ.get("SOMIRROR_SANITIZERS") else 10

Keys = namedtuple("Keys", "vendor_key vendor_cert app_key_pem app_pub")


def skip(reason):
    """Skips the test (automake's exit status 77) with a reason on stderr."""
    print("SKIP: " + reason, file=sys.stderr)
    sys.exit(77)


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def program(name):
    """Path of a built program (somirrord, somirrorctl, somirror-task)."""
    path = os.path.join(BUILDDIR, name)
    if not os.access(path, os.X_OK):
        fail("%s is not built in %s" % (name, BUILDDIR))
    return path


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faketime_env(offset_file, monotonic=False):
    """The environment that makes a program's wall clock (and its monotonic one too, with
    monotonic) follow the offset in offset_file ("+0", "-2h"), read anew at every call: libfaketime, which
    contrib/install-deps installs. A sanitizer's allocator reads the clock: under
    AddressSanitizer its first use of a size class does, and libfaketime, not yet set up, then
    calls dlsym, which allocates, and the process hangs in its allocator before main; under
    ThreadSanitizer every thread's allocations do, and libfaketime rereads its offset file into
    static buffers each time, a race between threads that is the allocator's, not the program's.
    allocator_release_to_os_interval_ms=-1 keeps either allocator off the clock."""
    assert os.path.exists(FAKETIME), "libfaketime is not installed (contrib/install-deps installs it)"
    env = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": offset_file, "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "0" if monotonic else "1"}
    # SOMIRROR_SANITIZERS is set by `make check` in a build with --enable-sanitizers (ASan);
    # CI's ThreadSanitizer build sets TSAN_OPTIONS.
    for name, present in (("ASAN_OPTIONS", os.environ.get("SOMIRROR_SANITIZERS")),
                          ("TSAN_OPTIONS", os.environ.get("TSAN_OPTIONS"))):
        if present:
            options = os.environ.get(name)
            env[name] = (options + ":" if options else "") + "allocator_release_to_os_interval_ms=-1"
    return env


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate until it returns something true; returns it, or raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- keys and tokens

def _openssl(*args):
    subprocess.run(("openssl",) + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_keys(directory):
    """Creates the vendor's key and self-signed certificate and the application's key pair."""
    k = Keys(*(os.path.join(directory, n) for n in ("vendor.key", "vendor.crt", "app.pem", "app.pub")))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k.vendor_key,
             "-out", k.vendor_cert, "-days", "365", "-subj", "/CN=SuperOffice test vendor")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k.app_key_pem)
    _openssl("pkey", "-in", k.app_key_pem, "-pubout", "-out", k.app_pub)
    return k


def make_tls_pair(directory, name="server"):
    """A self-signed certificate and key for a TLS listener on 127.0.0.1."""
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "365", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return cert, key


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _cryptography():
    """True where python3-cryptography is installed. Without it (a benchmark machine that has
    only Python's standard library) tokens are made with the openssl command instead: slower
    (a process a token), the same bytes (RSASSA-PKCS1-v1_5 signatures are deterministic)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def _cert_der(cert_path, with_openssl=None):
    """The certificate's DER bytes; with_openssl as for sign_sha256."""
    if with_openssl is None:
        with_openssl = not _cryptography()
    if with_openssl:
        return subprocess.run(["openssl", "x509", "-in", cert_path, "-outform", "DER"], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    with open(cert_path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


def sign_sha256(key_path, data, with_openssl=None):
    """The RS256 signature of data with the PEM private key at key_path; with_openssl None: the
    openssl command only where python3-cryptography is missing."""
    if with_openssl is None:
        with_openssl = not _cryptography()
    if with_openssl:
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=data, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def make_token(vendor_key_path, vendor_cert_path, tenant, app_id=DEFAULT_APP_ID, iss="SuperOffice AS",
               exp=300, nbf=-60, nonce=True, extra=None, x5t=True, kid=None, alg="RS256",
               ctx_claim=True, sub=True, header_extra=None, now=None):
    """A vendor SignedToken. exp/nbf are offsets from now in seconds (nbf None: no nbf claim).
    nonce: True for a random one, a string, or None for none. kid: True for the certificate's
    hex thumbprint, a string, or None. extra: claims added or replacing (value None removes)."""
    now = int(time.time()) if now is None else now
    der = _cert_der(vendor_cert_path)
    header = {"alg": alg, "typ": "JWT"}
    if x5t:
        header["x5t"] = b64url(hashlib.sha1(der).digest())
    if kid:
        header["kid"] = hashlib.sha1(der).hexdigest().upper() if kid is True else kid
    header.update(header_extra or {})
    claims = {"iss": iss, "aud": "spn:" + app_id, "exp": now + exp}
    if nbf is not None:
        claims["nbf"] = now + nbf
    if sub:
        claims["sub"] = tenant
    if ctx_claim:
        claims[CTX_CLAIM] = tenant
    if nonce:
        claims["nonce"] = secrets.token_hex(16).upper() if nonce is True else nonce
    for name, value in (extra or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(sign_sha256(vendor_key_path, signing_input.encode("ascii")))


def verify_application_token(app_pub_path, signed, nonce):
    """Checks a SignedApplicationToken (<nonce>.<yyyyMMddHHmm>.<base64 signature>)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    got_nonce, stamp, signature = signed.split(".", 2)
    if got_nonce != nonce or not re.fullmatch(r"\d{12}", stamp):
        return False
    with open(app_pub_path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    try:
        key.verify(base64.b64decode(signature, validate=True), (got_nonce + "." + stamp).encode(),
                   padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- configuration

def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


_PORTS = random.SystemRandom()   # not the random module's: a test may seed that


def free_port():
    """A port free now, below the kernel's range of ephemeral ports: a daemon restarted on a
    port from that range (a test's kill and start) could find it taken meanwhile as the local
    port of a client's connection (to its other listener, say), as a fixed port never is."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError):
        ephemeral_low = 32768
    for _ in range(100):
        port = _PORTS.randrange(10000, max(ephemeral_low, 10001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below %d" % ephemeral_low)


def _set_dotted(tree, dotted, value):
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    if value is None:
        tree.pop(parts[-1], None)
    else:
        tree[parts[-1]] = value


def config_dict(directory, keys, port=None, **overrides):
    """The default test configuration as a dict. Overrides use dotted names for nested keys
    (pass them as **{"tenants.allow": ["Cust1"]}); a value None removes the key."""
    port = port or free_port()
    cfg = {
        "listen": ["127.0.0.1:%d" % port],
        "workers": 2,
        "pid_file": os.path.join(directory, "somirrord.pid"),
        "status_socket": os.path.join(directory, "status.sock"),
        "log": {"file": os.path.join(directory, "somirrord.log"), "level": "debug"},
        "application": {"id": DEFAULT_APP_ID, "private_key": keys.app_key_pem},
        "vendor": {"certificates": [keys.vendor_cert]},
        "store": {"driver": "sqlite", "sqlite": {"directory": os.path.join(directory, "mirrors")}},
        "shutdown_timeout": 10,
    }
    for name, value in overrides.items():
        _set_dotted(cfg, name, value)
    return cfg


def write_config(directory, keys=None, path=None, **overrides):
    """Writes a somirrord config (JSON is YAML) into directory; returns its path. Keys are
    made when not given. Creates the sqlite directory."""
    keys = keys or make_keys(directory)
    cfg = config_dict(directory, keys, **overrides)
    sqlite_dir = cfg.get("store", {}).get("sqlite", {}).get("directory")
    if sqlite_dir:
        os.makedirs(sqlite_dir, exist_ok=True)
    path = path or os.path.join(directory, "somirrord.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return path


def duration_s(value):
    """The seconds of a duration setting (somirrord.yaml(5): 300, 300s, 5m, 1h)."""
    text = str(value).strip()
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    return int(text[:-1]) * unit if unit else int(text)


def planted_links(directory):
    """What a start refuses to write through (somirrord(8), PRIVILEGES), planted in directory
    for a file they name: (that file, a symbolic link to it for log.file, a second hard link
    to it for pid_file)."""
    other = os.path.join(directory, "other")
    with open(other, "w") as f:
        f.write("precious\n")
    log_link, pid_link = os.path.join(directory, "linked.log"), os.path.join(directory, "linked.pid")
    os.symlink(other, log_link)
    os.link(other, pid_link)
    return other, log_link, pid_link


def read_config(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- the daemon

def _children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def _group_members(pgids):
    """The processes of the process groups pgids that have not exited (zombies, which hold
    nothing, left out)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in pgids:
                members.append(int(entry))
    return members


def _is_somirrord(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"somirrord" in f.read()
    except OSError:
        return False


@contextlib.contextmanager
def unix_clients(path, n):
    """n connections to the Unix socket at path (a status socket), open for the block: a list
    the block may add to; each is closed after it."""
    clients = []
    try:
        for _ in range(n):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(c)
            c.connect(path)
        yield clients
    finally:
        for c in clients:
            c.close()


def cpu_seconds(pid):
    """User and system CPU the process has used."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Daemon:
    """A somirrord under test. Use as a context manager: on exit every process it started is
    killed, whatever happened."""

    def __init__(self, config_path, binary=None):
        self.config_path = config_path
        self.binary = binary or program("somirrord")
        self.cfg = read_config(config_path)
        self.directory = os.path.dirname(os.path.abspath(config_path))
        self.proc = None
        self.pid = None
        self.pgids = set()

    # -- settings
    @property
    def port(self):
        first = self.cfg["listen"]
        first = first[0] if isinstance(first, list) else first
        address = first["address"] if isinstance(first, dict) else first
        return int(address.rsplit(":", 1)[1])

    @property
    def pid_file(self):
        return self.cfg.get("pid_file")

    @property
    def status_socket(self):
        return self.cfg.get("status_socket")

    @property
    def log_path(self):
        return self.cfg.get("log", {}).get("file")

    def rewrite_config(self, **overrides):
        """Changes the config file in place (for a reload); returns the new dict."""
        for name, value in overrides.items():
            _set_dotted(self.cfg, name, value)
        with open(self.config_path, "w") as f:
            json.dump(self.cfg, f, indent=2)
        return self.cfg

    # -- life
    def start(self, foreground=True, extra_args=(), wait=True, timeout=15):
        args = [self.binary, "-c", self.config_path] + (["-f"] if foreground else []) + list(extra_args)
        self.stdout_path = os.path.join(self.directory, "somirrord.out")
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.pgids.add(self.proc.pid)
        if foreground:
            self.pid = self.proc.pid
        else:
            rc = self.proc.wait(timeout)
            if rc != 0:
                raise AssertionError("somirrord (daemon mode) exited %d: %s" % (rc, self.output()))
            self.pid = int(wait_until(self._pid_from_file, timeout, what="the pid file"))
            self.pgids.add(self.pid)
        if wait:
            self.wait_healthy(timeout)
        return self

    def _pid_from_file(self):
        try:
            with open(self.pid_file) as f:
                text = f.read().strip()
        except OSError:
            return None
        return text or None

    def output(self):
        try:
            with open(self.stdout_path, errors="replace") as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    def alive(self):
        if self.proc is not None and self.proc.pid == self.pid:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def wait_healthy(self, timeout=15):
        def healthy():
            if not self.alive():
                raise AssertionError("somirrord exited during start: %s\n%s" % (self.output(), self.log()))
            try:
                return self.healthz()[0] == 200
            except OSError:
                return False
        wait_until(healthy, timeout, what="/healthz")

    def wait_exit(self, timeout=30):
        """Waits for the master to exit; returns its exit status (None in daemon mode)."""
        if self.proc is not None and self.proc.pid == self.pid:
            return self.proc.wait(timeout)
        wait_until(lambda: not pid_alive(self.pid), timeout, what="somirrord to exit")
        return None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill_all(self):
        recorded = self._pid_from_file() if self.pid_file else None
        if recorded and recorded.isdigit() and _is_somirrord(int(recorded)):
            self.pgids.add(int(recorded))   # a daemon started behind our back (init script)
        for pgid in self.pgids:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(5)
        # A killed process lets go of its sockets only once it has exited: a start at once could
        # find the port still taken by a worker of the group (reparented, so not waited for).
        wait_until(lambda: not _group_members(self.pgids), 10, what="the killed processes to exit")

    def __enter__(self):
        return self

    def finish(self, grace=None):
        """Ends the test's daemon as an operator would, with SIGTERM, so that each process
        exits through its own code (under the sanitizers that is when LeakSanitizer checks it),
        then SIGKILLs whatever is left: a master that did not exit within grace seconds
        (by default its shutdown_timeout and STOP_GRACE_S), and any process of its groups
        still there (a hook's child, a daemon started behind our back). Returns what went
        wrong with the stop, or None: a master that did not exit within grace seconds of the
        SIGTERM, or exited with another status than 0."""
        if grace is None:
            grace = duration_s(self.cfg.get("shutdown_timeout", 60)) + STOP_GRACE_S
        problem = None
        if self.pid is not None and self.alive():
            with contextlib.suppress(OSError):
                self.signal(signal.SIGTERM)
            try:
                status = self.wait_exit(grace)
                if status not in (0, None):
                    problem = "exited with status %s at SIGTERM" % status
            except (AssertionError, subprocess.TimeoutExpired):
                problem = "did not exit within %d s of SIGTERM" % grace
        self.kill_all()
        return problem

    def __exit__(self, exc_type, *exc):
        problem = self.finish()
        if problem and exc_type is None:   # a test's own failure says more: it goes first
            raise AssertionError("somirrord %s; its log ends:\n%s" % (problem, self.log()[-3000:]))
        return False

    # -- workers
    def worker_pids(self):
        return _children_of(self.pid)

    def wait_workers(self, count, timeout=15, exclude=()):
        """Waits until exactly count workers run, none of them in exclude; returns their pids."""
        def ready():
            pids = self.worker_pids()
            return pids if len(pids) == count and not set(pids) & set(exclude) else None
        return wait_until(ready, timeout, what="%d workers (have %s)" % (count, self.worker_pids()))

    # -- log and status
    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def wait_log(self, pattern, timeout=10):
        return wait_until(lambda: re.search(pattern, self.log()), timeout, what="log line /%s/" % pattern)

    def ctl(self, command, timeout=10):
        """One status-socket command; returns the whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.status_socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def ctl_json(self, command):
        return json.loads(self.ctl(command + " json"))

    # -- HTTP
    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def healthz(self, method="GET", path="/healthz"):
        return request(self.port, method, path)[:2]


@contextlib.contextmanager
def server(start=True, keys=None, **overrides):
    """A temp dir with keys and a config, and a Daemon (started unless start=False).
    Yields an object with .dir .keys .config .daemon and .token(tenant, **kw)."""
    with tempfile.TemporaryDirectory(prefix="smtest") as directory:
        keys = keys or make_keys(directory)
        config = write_config(directory, keys, **overrides)
        with Daemon(config) as daemon:
            env = ServerEnv(directory, keys, config, daemon)
            if start:
                daemon.start()
            yield env


class ServerEnv:
    def __init__(self, directory, keys, config, daemon):
        self.dir, self.keys, self.config, self.daemon = directory, keys, config, daemon

    def token(self, tenant, **kw):
        return make_token(self.keys.vendor_key, self.keys.vendor_cert, tenant, **kw)

    def call(self, operation, body, tenant="Cust1", conn=None, **kw):
        return soap(self.daemon.port, operation, body, self.token(tenant), conn=conn, **kw)


# ---------------------------------------------------------------- HTTP and SOAP

def request(port, method, path, body=None, headers=None, conn=None, timeout=30):
    """One HTTP request; returns (status, body bytes, headers dict with lowercase names)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        if own:
            conn.close()


def vendor_token_claims(body):
    """The claims of the vendor token a request body carries in its SignedToken header."""
    token = body.split("SignedToken", 1)[1].split(">", 1)[1].split("<", 1)[0].strip()
    claims = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))


def fault_envelope(code, message, retryable):
    """A whole SOAP fault answer, as a receiver sends it (bytes)."""
    return envelope('<s:Fault><faultcode>s:Server</faultcode><faultstring>%s</faultstring><detail>'
                    '<MirrorFault xmlns="%s"><Code>%s</Code><Retryable>%s</Retryable></MirrorFault>'
                    '</detail></s:Fault>' % (_esc(message), NS, code, "true" if retryable else "false")).encode()


def envelope(body_inner_xml, token=None, header_extra=""):
    """A SOAP 1.1 envelope with the SignedToken header (when token is given)."""
    header = ""
    if token is not None:
        header = ('<SignedToken s:mustUnderstand="1" xmlns="%s">%s</SignedToken>' % (NS, token))
    return ('<s:Envelope xmlns:s="%s"><s:Header>%s%s</s:Header><s:Body>%s</s:Body></s:Envelope>'
            % (SOAP_NS, header, header_extra, body_inner_xml))


def soap(port, operation, body_inner_xml, token, soapaction=True, conn=None, path="/",
         timeout=60, raw_envelope=None):
    """Posts one call. soapaction: True (the quoted standard action), False (no header) or the
    exact header text. Returns (status, headers, body bytes); reuses conn for keep-alive."""
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if soapaction is True:
        headers["SOAPAction"] = '"%s%s"' % (ACTION_PREFIX, operation)
    elif soapaction:
        headers["SOAPAction"] = soapaction
    data = raw_envelope if raw_envelope is not None else envelope(body_inner_xml, token)
    if isinstance(data, str):
        data = data.encode("utf-8")
    status, body, hdrs = request(port, "POST", path, data, headers, conn=conn, timeout=timeout)
    return status, hdrs, body


def _esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def authenticate_body(client_state=""):
    state = "<ClientState>%s</ClientState>" % _esc(client_state) if client_state else "<ClientState/>"
    return '<AuthenticateRequest xmlns="%s">%s</AuthenticateRequest>' % (NS, state)


def table_schema_body(tables):
    """tables: [{"name": "contact", "columns": [(name, type, nullable, default_or_None), ...],
    "pk": ["contact_id"]}, ...]"""
    out = ['<TableSchemaRequest xmlns="%s"><Tables>' % NS]
    for t in tables:
        out.append("<Table><Name>%s</Name><Columns>" % _esc(t["name"]))
        for col in t["columns"]:
            name, typ, nullable = col[0], col[1], col[2]
            default = col[3] if len(col) > 3 else None
            out.append("<Column><Name>%s</Name><Type>%s</Type><Nullable>%s</Nullable>%s</Column>" % (
                _esc(name), _esc(typ), "true" if nullable else "false",
                "<Default>%s</Default>" % _esc(default) if default is not None else ""))
        out.append("</Columns><PrimaryKey>%s</PrimaryKey></Table>" %
                   "".join("<Column>%s</Column>" % _esc(c) for c in t["pk"]))
    out.append("</Tables></TableSchemaRequest>")
    return "".join(out)


def wipe_body(names):
    return '<WipeRequest xmlns="%s"><Tables>%s</Tables></WipeRequest>' % (
        NS, "".join("<Name>%s</Name>" % _esc(n) for n in names))


def _value(v):
    if v is None:
        return "<N/>"
    if isinstance(v, (bytes, bytearray)):
        return "<B>%s</B>" % base64.b64encode(v).decode()
    return "<V>%s</V>" % _esc(v)


def row_data_body(batches):
    """batches: [{"table": "contact", "columns": [...], "rows": [(op, lsn_or_None, [values])],
    "lsn": N or None}]. Values: str -> <V>, None -> <N/>, bytes -> <B>."""
    out = ['<RowDataRequest xmlns="%s"><Batches>' % NS]
    for b in batches:
        out.append("<Batch><Table>%s</Table><Columns>%s</Columns><Rows>" % (
            _esc(b["table"]), "".join("<Name>%s</Name>" % _esc(c) for c in b["columns"])))
        for op, lsn, values in b["rows"]:
            out.append('<Row op="%s"%s>%s</Row>' % (op, ' lsn="%s"' % lsn if lsn is not None else "",
                                                   "".join(_value(v) for v in values)))
        out.append("</Rows>")
        if b.get("lsn") is not None:
            out.append("<Lsn>%s</Lsn>" % b["lsn"])
        out.append("</Batch>")
    out.append("</Batches></RowDataRequest>")
    return "".join(out)


def replication_completed_body(summary=()):
    """summary: [(table, inserted, updated, deleted), ...]"""
    return '<ReplicationCompletedRequest xmlns="%s"><Summary>%s</Summary></ReplicationCompletedRequest>' % (
        NS, "".join("<TableSummary><Name>%s</Name><Inserted>%d</Inserted><Updated>%d</Updated>"
                    "<Deleted>%d</Deleted></TableSummary>" % (_esc(n), i, u, d) for n, i, u, d in summary))


def _q(local, ns=NS):
    return "{%s}%s" % (ns, local)


def parse_body(body):
    """The single element in the response's soap Body."""
    root = ET.fromstring(body)
    if root.tag != _q("Envelope", SOAP_NS):
        raise AssertionError("not a SOAP envelope: %r" % body[:200])
    soap_body = root.find(_q("Body", SOAP_NS))
    children = list(soap_body)
    if len(children) != 1:
        raise AssertionError("Body holds %d elements" % len(children))
    return children[0]


def parse_fault(body):
    """A fault as a dict (faultcode, message, code, table, column, row, retryable), or None."""
    element = parse_body(body)
    if element.tag != _q("Fault", SOAP_NS):
        return None
    detail = element.find("detail")
    mf = detail.find(_q("MirrorFault")) if detail is not None else None

    def text(name):
        node = mf.find(_q(name)) if mf is not None else None
        return node.text if node is not None else None
    row = text("Row")
    return {
        "faultcode": element.findtext("faultcode"),
        "message": element.findtext("faultstring"),
        "code": text("Code"),
        "table": text("Table"),
        "column": text("Column"),
        "row": int(row) if row is not None else None,
        "retryable": text("Retryable") == "true",
        "children": [c.tag.split("}")[1] for c in mf] if mf is not None else [],
    }


def parse_auth(body):
    """An AuthenticateResponse as an ordered dict of its children's texts ('' for empty)."""
    element = parse_body(body)
    if element.tag != _q("AuthenticateResponse"):
        raise AssertionError("not an AuthenticateResponse: %r" % body[:300])
    return {c.tag.split("}")[1]: (c.text or "") for c in element}


def parse_table_states(body):
    """The TableState list of a TableSchema/Wipe/RowData response, each a dict of texts."""
    element = parse_body(body)
    tables = element.find(_q("Tables"))
    if tables is None:
        raise AssertionError("no Tables in %r" % body[:300])
    return [{c.tag.split("}")[1]: (c.text or "") for c in state} for state in tables]
