"""Helpers for the reliability and security tests (tests/integration/test_rel_*.py), on top of
harness.py and protolib.py: a runner of named checks that reports every failure and lets a
check skip itself, readers of worker processes (pids, VmRSS, uids), a 50,000-row RowData
builder, raw socket helpers for hostile clients, and tmpfs mounting with cleanup."""

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402,F401
import protolib as PL  # noqa: E402,F401


class Skip(Exception):
    """Raised by a check that cannot run here (reported as SKIP, not as a failure)."""


def run_checks(checks, name=None):
    """checks: [(label, callable)]; each runs in turn, failures are collected. Exits 1 when any
    failed, 77 when every check skipped, 0 otherwise."""
    name = name or os.path.basename(sys.argv[0])
    failures, skipped = [], []
    started = time.monotonic()
    for label, fn in checks:
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            skipped.append(label)
            print("SKIP %s: %s" % (label, e), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(label)
            print("FAIL %s (%.2fs): %s" % (label, time.monotonic() - t0, e), flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            print("ok   %s (%.2fs)" % (label, time.monotonic() - t0), flush=True)
    print("%s: %d checks, %d failed, %d skipped (%.1fs)%s" % (
        name, len(checks), len(failures), len(skipped), time.monotonic() - started,
        ": " + ", ".join(failures) if failures else ""), flush=True)
    if failures:
        sys.exit(1)
    if skipped and len(skipped) == len(checks):
        sys.exit(77)
    sys.exit(0)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---------------------------------------------------------------- processes

def proc_status(pid):
    """/proc/<pid>/status as a dict (empty when the process is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def rss_kib(pid):
    value = proc_status(pid).get("VmRSS", "0 kB").split()[0]
    return int(value)


def uids(pid):
    """(real, effective, saved, fs) uids of a process."""
    return tuple(int(x) for x in proc_status(pid).get("Uid", "").split())


def busy_worker(daemon, tenant=None, operation=None):
    """The pid of a worker whose slot says busy (on that tenant/operation when given), or None."""
    try:
        workers = daemon.ctl_json("show workers")["workers"]
    except (OSError, ValueError):
        return None
    for w in workers:
        if w.get("state") != "busy":
            continue
        if tenant and w.get("tenant") != tenant:
            continue
        if operation and w.get("operation") != operation:
            continue
        return w["pid"]
    return None


def raise_nofile(want):
    """Raises the open-file limit to at least want; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- tables and rows

TABLE = {"name": "item", "columns": [("id", "int", False), ("note", "nvarchar(200)", True),
                                     ("amount", "decimal(18,4)", True)], "pk": ["id"]}
COLUMNS = ["id", "note", "amount"]


def item_rows(count, first_id=1, pad=60):
    filler = "x" * pad
    return [("I", None, [str(first_id + i), "row %d %s" % (first_id + i, filler), "%d.5000" % i])
            for i in range(count)]


def item_batch(count, first_id=1, lsn=None, pad=60):
    return {"table": "item", "columns": COLUMNS, "rows": item_rows(count, first_id, pad), "lsn": lsn}


def count_and_lsn(p, tenant=None):
    """(rows in item, stored lsn of item) read from the SQLite mirror."""
    n = p.query('SELECT count(*) FROM "item"', tenant=tenant)[0][0]
    return n, p.meta(tenant)["item"]["lsn"]


# ---------------------------------------------------------------- raw clients

def post_head(port, length, extra=""):
    return ("POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/xml; charset=utf-8\r\n"
            "SOAPAction: \"%sRowData\"\r\nContent-Length: %d\r\n%s\r\n" %
            (port, H.ACTION_PREFIX, length, extra)).encode()


def closed_by_peer(sock, timeout):
    """Waits up to timeout for the peer to close (EOF or reset); returns (closed, seconds,
    bytes received)."""
    t0 = time.monotonic()
    got = b""
    sock.settimeout(0.2)
    while time.monotonic() - t0 < timeout:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return True, time.monotonic() - t0, got
        if not chunk:
            return True, time.monotonic() - t0, got
        got += chunk
    return False, time.monotonic() - t0, got


# ---------------------------------------------------------------- mounts

@contextlib.contextmanager
def tmpfs(path, size="2m"):
    """Mounts a tmpfs of the given size on path (raises Skip when mounting is not permitted);
    unmounts it (lazily if busy) on exit."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip("cannot mount a tmpfs: %s" % (r.stderr.strip() or r.returncode))
    try:
        yield path
    finally:
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


class P(PL.P):
    """protolib.P that also works on a store other than SQLite (no mirror directory)."""

    def __init__(self, env, name):
        sqlite = env.daemon.cfg.get("store", {}).get("sqlite") or {}
        if "directory" in sqlite:
            super().__init__(env, name)
            return
        self.env, self.name = env, name
        self.daemon = env.daemon
        self.port = env.daemon.port
        self.tenant = PL.tenant_for(name)
        self.mirror_dir = None
