"""Helpers for the protocol's end-to-end tests (tests/integration/test_proto_*.py), on top of
harness.py: a runner that executes many named checks against one somirrord and reports every
failure (a check failing does not stop the others), per-check tenants so that checks do not
see each other's mirrors, call wrappers that parse answers, and readers of the SQLite mirror.

A check is a function taking a P (below). Its tenant is derived from its name, so each check
starts on a fresh mirror unless it asks for another tenant."""

import os
import re
import socket
import sqlite3
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

NS = H.NS


def _cache_key_loading():
    """harness.make_token loads the vendor's PEM key for every token, and loading an RSA key
    (with its validation) costs ~100 ms: these tests sign thousands of tokens, so the loaded
    key is cached by its PEM bytes."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        return
    original = serialization.load_pem_private_key
    if getattr(original, "_protolib_cached", False):
        return
    cache = {}

    def cached(data, password=None, *args, **kw):
        key = (bytes(data), password)
        if key not in cache:
            cache[key] = original(data, password, *args, **kw)
        return cache[key]
    cached._protolib_cached = True
    serialization.load_pem_private_key = cached


_cache_key_loading()


class Resp:
    """One HTTP answer to a SOAP call."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        self._fault = False

    @property
    def fault(self):
        if self._fault is False:
            try:
                self._fault = H.parse_fault(self.body)
            except Exception:
                self._fault = None
        return self._fault

    @property
    def element(self):
        return H.parse_body(self.body)

    @property
    def states(self):
        if self.fault:
            raise AssertionError("expected an answer, got fault %r (HTTP %d)" % (self.fault, self.status))
        return H.parse_table_states(self.body)

    def __repr__(self):
        return "<HTTP %d %s>" % (self.status, self.body[:600])


def ok_states(resp, what="call"):
    """The TableStates of a successful answer (HTTP 200, no fault)."""
    if resp.status != 200 or resp.fault:
        raise AssertionError("%s failed: %r" % (what, resp))
    return resp.states


def expect_fault(resp, code, faultcode="s:Client", status=500, table=None, column=None, row=None,
                 retryable=False):
    """Asserts resp is a SOAP fault with this code (and, where given, table/column/row)."""
    f = resp.fault
    if not f:
        raise AssertionError("expected fault %s, got %r" % (code, resp))
    problems = []
    if f["code"] != code:
        problems.append("code %r != %r" % (f["code"], code))
    if resp.status != status:
        problems.append("HTTP %d != %d" % (resp.status, status))
    if f["faultcode"] != faultcode:
        problems.append("faultcode %r != %r" % (f["faultcode"], faultcode))
    if f["retryable"] != retryable:
        problems.append("Retryable %r != %r" % (f["retryable"], retryable))
    if not f["children"] or f["children"][0] != "Code" or f["children"][-1] != "Retryable":
        problems.append("MirrorFault children %r (Code first, Retryable last)" % f["children"])
    if table is not None and (f["table"] or "").lower() != table.lower():
        problems.append("Table %r != %r" % (f["table"], table))
    if column is not None and (f["column"] or "").lower() != column.lower():
        problems.append("Column %r != %r" % (f["column"], column))
    if row is not None and f["row"] != row:
        problems.append("Row %r != %r" % (f["row"], row))
    if problems:
        raise AssertionError("fault %s: %s; got %r" % (code, "; ".join(problems), resp))
    ctype = resp.headers.get("content-type", "")
    if not ctype.lower().replace(" ", "").startswith("text/xml;charset=utf-8"):
        raise AssertionError("fault Content-Type %r" % ctype)
    return f


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what or "value", got, want))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def tenant_for(name):
    t = re.sub(r"[^A-Za-z0-9_]", "_", name)
    t = "T" + t[-50:]
    return t


class P:
    """The per-check view of the daemon: calls as tenant self.tenant by default."""

    def __init__(self, env, name):
        self.env, self.name = env, name
        self.daemon = env.daemon
        self.port = env.daemon.port
        self.tenant = tenant_for(name)
        cfg = env.daemon.cfg
        self.mirror_dir = cfg["store"]["sqlite"]["directory"]

    # -- tokens and calls
    def token(self, tenant=None, **kw):
        return self.env.token(tenant or self.tenant, **kw)

    def call(self, op, body, tenant=None, token=None, conn=None, soapaction=True, path="/",
             raw=None, timeout=60):
        tok = token if token is not None else self.token(tenant)
        st, hd, bd = H.soap(self.port, op, body, tok, soapaction=soapaction, conn=conn, path=path,
                            timeout=timeout, raw_envelope=raw)
        return Resp(st, hd, bd)

    def auth(self, tenant=None, client_state="", conn=None, **tk):
        r = self.call("Authenticate", H.authenticate_body(client_state), tenant=tenant,
                      token=self.token(tenant, **tk) if tk else None, conn=conn)
        if r.status != 200 or r.fault:
            raise AssertionError("Authenticate failed: %r" % r)
        a = H.parse_auth(r.body)
        if a.get("IsSuccessful") != "true":
            raise AssertionError("Authenticate not successful: %r" % a)
        return a

    def schema(self, tables, tenant=None, conn=None):
        return self.call("TableSchema", H.table_schema_body(tables), tenant=tenant, conn=conn)

    def schema_ok(self, tables, tenant=None, conn=None):
        states = ok_states(self.schema(tables, tenant, conn), "TableSchema")
        return states

    def wipe(self, names, tenant=None, conn=None):
        return self.call("Wipe", H.wipe_body(names), tenant=tenant, conn=conn)

    def rows(self, batches, tenant=None, conn=None):
        return self.call("RowData", H.row_data_body(batches), tenant=tenant, conn=conn)

    def rows_ok(self, batches, tenant=None, conn=None):
        return ok_states(self.rows(batches, tenant, conn), "RowData")

    def completed(self, summary=(), tenant=None, conn=None):
        return self.call("ReplicationCompleted", H.replication_completed_body(summary), tenant=tenant,
                         conn=conn)

    def setup(self, tables, tenant=None):
        """Authenticate + TableSchema; asserts every table Created."""
        self.auth(tenant)
        states = self.schema_ok(tables, tenant)
        for s in states[:len(tables)]:
            if s.get("Change") != "Created":
                raise AssertionError("setup: %r" % states)
        return states

    # -- the mirror
    def db_path(self, tenant=None):
        return os.path.join(self.mirror_dir, "Mirror_%s.db" % (tenant or self.tenant))

    def query(self, sql, args=(), tenant=None):
        path = self.db_path(tenant)
        if not os.path.exists(path):
            raise AssertionError("no mirror file %s" % path)
        try:
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
            try:
                return db.execute(sql, args).fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError as e:
            # A WAL database opened read-only needs its -shm file; when the daemon has closed
            # the mirror (and removed it), read it with a normal connection instead.
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise
        db = sqlite3.connect(path, timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def typed(self, table, column, where="", args=(), tenant=None):
        """[(typeof, value)] of one column."""
        return self.query('SELECT typeof("%s"), "%s" FROM "%s" %s' % (column, column, table, where),
                          args, tenant)

    def table_rows(self, table, order="1", tenant=None):
        return self.query('SELECT * FROM "%s" ORDER BY %s' % (table, order), tenant=tenant)

    def meta(self, tenant=None):
        t = tenant or self.tenant
        rows = self.query('SELECT tablename, schema, schemahash, lsn, updated FROM "%s_mirroring"' % t,
                          tenant=t)
        return {r[0].lower(): {"schema": r[1], "hash": r[2], "lsn": r[3], "updated": r[4]} for r in rows}

    def tables(self, tenant=None):
        """User tables of the mirror (lowercased names), metadata table excluded."""
        t = tenant or self.tenant
        rows = self.query("SELECT name FROM sqlite_master WHERE type='table'", tenant=t)
        return sorted(r[0].lower() for r in rows
                      if r[0].lower() != ("%s_mirroring" % t).lower() and not r[0].startswith("sqlite_"))


def run(checks, name=None, **server_overrides):
    """Runs each check (function f(P)) against one somirrord; prints a line per check; exits 1
    if any failed, 0 otherwise."""
    name = name or os.path.basename(sys.argv[0])
    failures = []
    started = time.monotonic()
    with H.server(**server_overrides) as env:
        for fn in checks:
            t0 = time.monotonic()
            try:
                fn(P(env, fn.__name__))
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(fn.__name__)
                print("FAIL %s (%.2fs): %s" % (fn.__name__, time.monotonic() - t0, e), flush=True)
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
            else:
                print("ok   %s (%.2fs)" % (fn.__name__, time.monotonic() - t0), flush=True)
            if not env.daemon.alive():
                print("FAIL: somirrord died; log tail:\n%s" % env.daemon.log()[-3000:], flush=True)
                failures.append("(daemon died)")
                break
    print("%s: %d checks, %d failed (%.1fs)%s" % (name, len(checks), len(failures),
                                                 time.monotonic() - started,
                                                 ": " + ", ".join(failures) if failures else ""))
    sys.exit(1 if failures else 0)


def pipelined_answers(port, requests, timeout=60):
    """Sends requests [(operation, body bytes)] in one write on one connection (HTTP/1.1
    pipelining) and returns their answers [(status, body bytes)], in the order they came."""
    def request(operation, data):
        return (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: \"%s%s\"\r\n"
                b"Content-Length: %d\r\n\r\n" % (H.ACTION_PREFIX.encode(), operation.encode(), len(data)) + data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(request(op, data) for op, data in requests))
        return read_answers(sock, len(requests))


def read_answers(sock, count):
    """The next count answers on sock: [(status, body bytes)] (bodies framed by Content-Length)."""
    f = sock.makefile("rb")
    answers = []
    for _ in range(count):
        status = int(f.readline().split()[1])
        length = 0
        for line in iter(f.readline, b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answers.append((status, f.read(length)))
    return answers


def raw_http(port, data, timeout=10, read_all=True):
    """Sends raw bytes on a new connection; returns (status, headers dict, body bytes) of the
    first answer, reading until the body is complete or the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines or not lines[0].startswith("HTTP/"):
            raise AssertionError("the connection closed without an HTTP answer (got %r)" % buf[:200])
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        while read_all and len(body) < length:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            body += chunk
        return status, headers, body
