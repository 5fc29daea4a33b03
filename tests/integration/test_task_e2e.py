"""somirror-task against a real somirrord, end to end on the SQLite store: generate a CRM-like
source, provision change tracking, full load, verify, churn, incremental cycle, verify; row ops
are relative to the last cycle (a row inserted in one cycle and updated before the next is U
there; a key deleted and inserted again is I); a tampered mirror, or one whose schema is not
the source's, fails verify; blocked tables never reach the mirror; a skipped table is dropped
from the mirror on the next cycle; a source
whose retention passed the mirror's Lsn gets a full reload; a paused tenant's doNotReplicate is
believed only with a SignedApplicationToken that verifies; setup errors exit 2 before any call;
a connection that fails says why (name, refused, TLS to a plain port); a table rebuilt or
given another key is refused until provisioned again, then loaded in full; provision warns of a
source not in WAL mode (its writers wait while a table is sent); an Altered table's
full load survives a cycle that fails before its rows;
a cycle interrupted by killing somirrord completes correctly when run again; a RowData body
built while a retried call renewed the vendor token is sent with the new token."""

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TASK = harness.program("somirror-task")
TENANT = "Cust4711"
BLOCKED = ("credentials", "userpreference", "winpossize")


def task(*args, check=True):
    proc = subprocess.run((TASK,) + tuple(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        harness.fail("somirror-task %s exited %d\nstdout: %s\nstderr: %s"
                     % (" ".join(args), proc.returncode, proc.stdout, proc.stderr[-4000:]))
    return proc


def source_exec(path, *statements):
    with sqlite3.connect(path) as db:
        for sql in statements:
            db.execute(sql)


def country_rows(summary):
    return next(t for t in summary["tables"] if t["name"] == "country")


def mirror_tables(path):
    with sqlite3.connect(path) as db:
        return {r[0].lower() for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def check_tracking_restarts(env, keys, work):
    """A table rebuilt the SQLite way (its triggers gone with the old one), or given another key,
    is refused by run until provisioned again; provision starts its tracking anew (for another
    key, a change table of that key: the source's writes go on) and the next cycle loads it in
    full. An Altered table is wiped right after TableSchema: a cycle that fails on an earlier
    table still leaves its full load to the next cycle, where TableSchema answers Unchanged.
    verify takes the source's values in the forms the sender reads (a decimal SQLite keeps as
    a REAL, a string column's number or blob, a bit's true or non-zero number, a binary
    column's text or number)."""
    tenant = "Cust4712"
    source = os.path.join(work, "restarts.db")
    mirror = os.path.join(env.dir, "mirrors", "Mirror_%s.db" % tenant)
    source_exec(source, "CREATE TABLE t (id int NOT NULL PRIMARY KEY, k2 int NOT NULL, name nvarchar(20))",
                "CREATE TABLE u (id int NOT NULL PRIMARY KEY, v int)",
                "INSERT INTO t VALUES (1, 1, 'one'), (2, 1, 'two')", "INSERT INTO u VALUES (1, 1), (2, 2)",
                # Declared types only: SQLite's NUMERIC affinity keeps 12.5000 as the REAL 12.5
                # and the xml 123 as an INTEGER, which the sender sends as 12.5000 and 123; a bit's
                # TRUE or 2 goes as TRUE and 1, a varbinary's text or number as its bytes, an
                # nvarchar's blob as its text.
                "CREATE TABLE w (id int NOT NULL PRIMARY KEY, amount decimal(18,4), m money, x xml, "
                "flag bit, raw varbinary(10), label nvarchar(10))",
                "INSERT INTO w VALUES (1, '12.5000', '3.2500', '<a/>', 'TRUE', 'abc', X'6869'), "
                "(2, '7', '1', '123', 2, 123, 'x')")
    # A source in a rollback journal mode: its writers wait while run sends a table.
    assert "not WAL" in task("provision", "--db", source).stderr
    base = ["run", "--once", "--url", "http://127.0.0.1:%d/" % env.daemon.port,
            "--app-id", harness.DEFAULT_APP_ID, "--vendor-key", keys.vendor_key,
            "--vendor-cert", keys.vendor_cert, "--app-public-key", keys.app_pub,
            "--tenant", tenant, "--db", source, "--json", "--tries", "1"]

    def run(args=base):
        summary = json.loads(task(*args).stdout.strip().splitlines()[-1])
        assert summary["result"] == "ok", summary
        return {t["name"]: (t["change"], t["load"]) for t in summary["tables"]}

    def verify():
        proc = task("verify", "--db", source, "--mirror", mirror, "--tenant", tenant, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def rebuild(key):
        source_exec(source, "CREATE TABLE t_new (id int NOT NULL, k2 int NOT NULL, name nvarchar(20), "
                    "PRIMARY KEY (%s))" % key, "INSERT INTO t_new SELECT * FROM t", "DROP TABLE t",
                    "ALTER TABLE t_new RENAME TO t")
        proc = task(*base, check=False)
        assert proc.returncode == 2 and "provision" in proc.stderr, (proc.returncode, proc.stderr[-600:])

    run()
    verify()
    rebuild("id")
    source_exec(source, "INSERT INTO t VALUES (3, 1, 'three')", "DELETE FROM t WHERE id = 1",
                "UPDATE t SET name = 'TWO' WHERE id = 2")
    task("provision", "--db", source)
    assert run()["t"] == ("Unchanged", "full")
    verify()
    rebuild("id, k2")
    task("provision", "--db", source)
    source_exec(source, "INSERT INTO t VALUES (2, 2, 'two-b')")
    assert run()["t"] == ("Recreated", "full")
    verify()

    source_exec(source, "ALTER TABLE u ADD COLUMN extra nvarchar(10) DEFAULT 'x'",
                "UPDATE t SET name = 'longer than twenty characters' WHERE id = 3")
    proc = task(*base, check=False)
    assert proc.returncode == 1 and "InvalidValue" in proc.stderr, (proc.returncode, proc.stderr[-600:])
    source_exec(source, "UPDATE t SET name = 'three' WHERE id = 3")
    assert run()["u"] == ("Unchanged", "full")
    verify()

    # A cycle that stops between a table's Altered answer and its Wipe (here the Wipe never
    # reaches the receiver): the next is answered Unchanged, and the schema the source records
    # the rows as loaded under still has it loaded in full, where it sent only the changes and
    # the rows SQLite gave the added column's default kept NULL in the mirror.
    source_exec(source, "ALTER TABLE t ADD COLUMN prio int DEFAULT 7")
    with wipes_refused(env.daemon.port) as port:
        proc = task(*(base[:base.index("--url") + 1] + ["http://127.0.0.1:%d/" % port] +
                      base[base.index("--url") + 2:]), check=False)
    assert proc.returncode == 1 and "Wipe" in proc.stderr, (proc.returncode, proc.stderr[-600:])
    assert run()["t"] == ("Unchanged", "full")
    verify()
    assert run()["t"] == ("Unchanged", "changes")
    # The same where nothing is recorded yet (a source from before the record; a receiver URL
    # new to it): the Altered table is recorded as loaded under no schema before its Wipe.
    source_exec(source, "DROP TABLE _somirror_loaded_schema", "ALTER TABLE t ADD COLUMN due int DEFAULT 8")
    with wipes_refused(env.daemon.port, 1) as port:
        proxied = [("http://127.0.0.1:%d/" % port) if a == base[base.index("--url") + 1] else a for a in base]
        proc = task(*proxied, check=False)
        assert proc.returncode == 1 and "Wipe" in proc.stderr, (proc.returncode, proc.stderr[-600:])
        assert run(proxied)["t"] == ("Unchanged", "full")
    verify()


CLOSE = "close"


@contextlib.contextmanager
def proxy(port, intercept):
    """An HTTP proxy to 127.0.0.1:port; yields its port. intercept(action, body) sees every
    call first: None forwards it, CLOSE closes the connection unanswered, (status, data)
    answers it."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, headers, data):
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            own = intercept(self.headers.get("SOAPAction", ""), body.decode("utf-8"))
            if own == CLOSE:
                self.close_connection = True
            elif own:
                self.answer(own[0], [("Content-Type", "text/xml; charset=utf-8")], own[1])
            else:
                upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                upstream.request("POST", self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                self.answer(answer.status, answer.getheaders(), data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def wipes_refused(port, count=None):
    """A proxy (see proxy) that closes the connection on every Wipe call (on the first count of
    them when given)."""
    refused = []

    def intercept(action, body):
        if "Wipe" in action and (count is None or len(refused) < count):
            refused.append(action)
            return CLOSE
        return None
    return proxy(port, intercept)


def run_through(env, keys, source, tenant, intercept, extra_env=None):
    """`somirror-task run --once --json` of tenant through a proxy (see proxy) with intercept;
    returns the finished process."""
    with proxy(env.daemon.port, intercept) as port:
        return subprocess.run(
            [TASK, "run", "--once", "--url", "http://127.0.0.1:%d/" % port, "--app-id", harness.DEFAULT_APP_ID,
             "--vendor-key", keys.vendor_key, "--vendor-cert", keys.vendor_cert,
             "--app-public-key", keys.app_pub, "--tenant", tenant, "--db", source, "--json",
             "--batch-size", "4000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
            env=dict(os.environ, **(extra_env or {})))


def renewed_during(env, keys, work, source, tenant, refuse):
    """Runs a full load through a proxy that answers the first RowData for which refuse(count,
    body) holds with a retryable TenantBusy, the task's clocks (wall and monotonic) jumping 90 s
    at that moment, so that the retry signs a new vendor token. Returns the refused call's
    vendor token claims and table, and those of the two RowData calls after it: the retry, and
    the next body, built while the refused call was in flight."""
    offset = os.path.join(work, "faketime-" + tenant)
    with open(offset, "w") as f:
        f.write("+0\n")
    tokens, tables, refused = [], [], []

    def intercept(action, body):
        if "RowData" not in action:
            return None
        tokens.append(harness.vendor_token_claims(body))
        tables.append(body.split("<Table>", 1)[1].split("<", 1)[0])
        if refused or not refuse(len(tokens), body):
            return None
        refused.append(len(tokens) - 1)
        with open(offset, "w") as f:
            f.write("+90\n")
        return 500, harness.fault_envelope("TenantBusy", "scripted", True)

    proc = run_through(env, keys, source, tenant, intercept, harness.faketime_env(offset, monotonic=True))
    assert proc.returncode == 0, "exit %d: %s" % (proc.returncode, proc.stderr[-2000:])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    k = refused[0]
    assert summary["tokens"] == 2 and len(tokens) > k + 2, (summary["tokens"], len(tokens), k)
    assert tokens[k + 1]["nbf"] >= tokens[k]["nbf"] + 60, tokens[k:k + 2]
    mirror = os.path.join(env.dir, "mirrors", "Mirror_%s.db" % tenant)
    verified = task("verify", "--db", source, "--mirror", mirror, "--tenant", tenant)
    assert "EQUAL" in verified.stdout, verified.stdout
    return tokens[k:k + 3], tables[k:k + 3]


def check_next_body_token(env, keys, work, source):
    """somirror-task builds a table's next RowData body while the call before it is in flight,
    and a table's first body during the last call of the table before it. When that call is
    retried past the vendor token's minute of reuse, the retry carries a newly signed token, and
    so does the body built meanwhile, although it was built with the old one."""
    # The second RowData: the body after its retry is of the same table.
    (refused, retry, built), tables = renewed_during(env, keys, work, source, "Renew1",
                                                     lambda count, body: count == 2)
    assert len(set(tables)) == 1, tables
    assert built == retry and built != refused, "the body built during the retried call kept the old token: %s %s" % (
        built, retry)
    # The first table's last RowData (the one with the table's <Lsn>): the body after its retry
    # is the next table's first, opened and built during that call.
    (refused, retry, built), tables = renewed_during(env, keys, work, source, "Renew2",
                                                     lambda count, body: "<Lsn>" in body)
    assert tables[0] == tables[1] != tables[2], tables
    assert built == retry and built != refused, "the first body built during the table before's last call kept the old token: %s %s" % (
        built, retry)


def check_next_table_unopenable(env, keys, work, source):
    """A table's cursor is opened, and its first body built, during the last call of the table
    before it, on the builder thread. When it cannot be opened (the second table is renamed in
    the source once TableSchema is sent), the cycle fails naming it, the table before sent
    whole, and the one that could not be read is not wiped on the receiver."""
    moved, wiped = [], []

    def intercept(action, body):
        if "TableSchema" in action and not moved:
            source_exec(source, "ALTER TABLE associate RENAME TO associate_moved")
            moved.append(True)
        if "Wipe" in action:
            wiped.extend(body.split("<Name>")[1:])
        return None

    tenant = "Moved1"
    try:
        proc = run_through(env, keys, source, tenant, intercept)
    finally:
        if moved:
            source_exec(source, "ALTER TABLE associate_moved RENAME TO associate")
    assert moved and proc.returncode != 0, (moved, proc.returncode, proc.stdout)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["result"] == "failed" and summary["error"].startswith("associate: no such table"), summary
    assert [w.split("<", 1)[0] for w in wiped] == ["appointment"], wiped
    sent = {t["name"]: t["I"] for t in summary["tables"]}
    with sqlite3.connect(source) as db:
        rows = db.execute("SELECT count(*) FROM appointment").fetchone()[0]
    with sqlite3.connect(os.path.join(env.dir, "mirrors", "Mirror_%s.db" % tenant)) as db:
        assert db.execute("SELECT count(*) FROM appointment").fetchone()[0] == rows == sent["appointment"], (
            rows, sent)
    assert summary["calls"] > 4, summary["calls"]   # appointment took several calls
    tables = summary["tables"]
    assert tables[0]["name"] == "appointment" and tables[0]["sent"] is True and \
        isinstance(tables[0]["lsn"], int), tables[0]
    assert all(t["sent"] is False and t["lsn"] is None and t["I"] == 0 for t in tables[1:]), tables


def check_failed_call_summary(env, keys, work, source):
    """A cycle that fails inside a table (its second RowData refused with a fault that is not
    retryable) reports, for that table, the rows of the calls the receiver accepted, which the
    mirror holds, and that it was not sent whole."""
    calls = []

    def intercept(action, body):
        if "RowData" not in action:
            return None
        calls.append(body.split("<Table>", 1)[1].split("<", 1)[0])
        if len(calls) == 2:
            return 500, harness.fault_envelope("MalformedRequest", "scripted", False)
        return None

    tenant = "Refused1"
    proc = run_through(env, keys, source, tenant, intercept)
    assert proc.returncode != 0 and calls[:2] == ["appointment"] * 2, (proc.returncode, calls)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["result"] == "failed" and "MalformedRequest" in summary["error"], summary
    with sqlite3.connect(os.path.join(env.dir, "mirrors", "Mirror_%s.db" % tenant)) as db:
        held = db.execute("SELECT count(*) FROM appointment").fetchone()[0]
    first = summary["tables"][0]
    assert first["name"] == "appointment" and first["sent"] is False and first["lsn"] is None, first
    assert 0 < first["I"] == held == summary["rows"]["I"], (first, held, summary["rows"])


def main():
    with tempfile.TemporaryDirectory(prefix="smtask") as work:
        keydir = os.path.join(work, "keys")
        task("keys", "--out", keydir)
        for name in ("vendor.key", "vendor.crt", "app.pem", "app.pub", "app.xml"):
            assert os.path.exists(os.path.join(keydir, name)), name
        assert os.stat(os.path.join(keydir, "app.pem")).st_mode & 0o077 == 0, "private key readable by others"
        # somirrord takes the application key in the vendor's .NET XML form.
        keys = harness.Keys(os.path.join(keydir, "vendor.key"), os.path.join(keydir, "vendor.crt"),
                            os.path.join(keydir, "app.xml"), os.path.join(keydir, "app.pub"))
        source = os.path.join(work, "source.db")
        task("gen", "--db", source, "--scale", "150", "--seed", "42")
        assert "not WAL" not in task("provision", "--db", source).stderr   # gen makes it WAL
        task("provision", "--db", source)   # idempotent

        with harness.server(keys=keys) as env:
            mirror = os.path.join(env.dir, "mirrors", "Mirror_%s.db" % TENANT)
            base = ["run", "--once", "--url", "http://127.0.0.1:%d/" % env.daemon.port,
                    "--app-id", harness.DEFAULT_APP_ID, "--vendor-key", keys.vendor_key,
                    "--vendor-cert", keys.vendor_cert, "--app-public-key", keys.app_pub,
                    "--tenant", TENANT, "--db", source, "--json"]

            def run(*extra):
                out = task(*(base + list(extra))).stdout
                summary = json.loads(out.strip().splitlines()[-1])
                assert summary["result"] == "ok", summary
                return summary

            def verify(*extra, expect=0):
                proc = task("verify", "--db", source, "--mirror", mirror, "--tenant", TENANT, *extra,
                            check=False)
                assert proc.returncode == expect, "verify exited %d, wanted %d: %s %s" % (
                    proc.returncode, expect, proc.stdout, proc.stderr)
                return proc

            def with_option(name, value):
                """base with the value of option name replaced."""
                i = base.index(name)
                return base[:i + 1] + [value] + base[i + 2:]

            check_next_body_token(env, keys, work, source)
            check_next_table_unopenable(env, keys, work, source)
            check_failed_call_summary(env, keys, work, source)

            # Full load.
            first = run("--batch-size", "200000")
            # One vendor token serves the whole cycle (it is renewed only near its expiry).
            assert first["calls"] > 5 and first["tokens"] == 1, (first["calls"], first["tokens"])
            loads = {t["name"]: t["load"] for t in first["tables"]}
            assert loads and all(v == "full" for v in loads.values()), loads
            assert first["rows"]["I"] > 500, first["rows"]
            verify()
            present = mirror_tables(mirror)
            for name in BLOCKED:
                assert name not in present, "blocked table %s reached the mirror" % name
            assert "contact" in present and "text" in present, present

            # Incremental cycle after churn.
            task("churn", "--db", source, "--changes", "300", "--seed", "7")
            verify(expect=1)   # the mirror is behind the source now
            second = run()
            assert all(t["load"] == "changes" for t in second["tables"]), second["tables"]
            changed = second["rows"]["I"] + second["rows"]["U"] + second["rows"]["D"]
            assert 0 < changed <= 300, second["rows"]
            verify()

            # Ops are relative to the last cycle, in the answers and in the summary.
            source_exec(source, "INSERT INTO country (country_id, name) VALUES (9001, 'new')",
                        "DELETE FROM country WHERE country_id = (SELECT min(country_id) FROM country)")
            gone = sqlite3.connect(source).execute(
                "SELECT country_id FROM _somirror_ct_country WHERE _somirror_op = 'D'").fetchone()[0]
            ops = country_rows(run())
            assert (ops["I"], ops["U"], ops["D"]) == (1, 0, 1), ops
            source_exec(source, "UPDATE country SET name = 'renamed' WHERE country_id = 9001")
            ops = country_rows(run())
            assert (ops["I"], ops["U"], ops["D"]) == (0, 1, 0), ops
            source_exec(source, "INSERT INTO country (country_id, name) VALUES (%d, 'back')" % gone)
            ops = country_rows(run())
            assert (ops["I"], ops["U"], ops["D"]) == (1, 0, 0), ops
            verify()

            # A nullable column added with a default: SQLite gives the source's existing rows the
            # default, the mirror's Altered table gives them NULL (as SQL Server would), so the
            # table is loaded in full.
            source_exec(source, "ALTER TABLE country ADD COLUMN prio INTEGER DEFAULT 7",
                        "INSERT INTO _somirror_columns VALUES ('country', 'prio', 99, 'int', 1, '((7))', 0)")
            altered = {t["name"]: t for t in run()["tables"]}["country"]
            assert (altered["change"], altered["load"]) == ("Altered", "full"), altered
            verify()

            check_tracking_restarts(env, keys, work)

            # A tampered mirror fails verify, and names what differs.
            tampered = os.path.join(work, "tampered.db")
            with sqlite3.connect(mirror) as live, sqlite3.connect(tampered) as copy:
                live.backup(copy)   # the live mirror is in WAL mode: copy through SQLite
            with sqlite3.connect(tampered) as db:
                db.execute("UPDATE contact SET name = 'tampered' WHERE rowid = (SELECT min(rowid) FROM contact)")
            proc = task("verify", "--db", source, "--mirror", tampered, "--tenant", TENANT, check=False)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert "contact" in proc.stdout + proc.stderr
            # The same rows under another schema (a type the source changed, say) differ too.
            with sqlite3.connect(mirror) as live, sqlite3.connect(tampered) as copy:
                live.backup(copy)
            with sqlite3.connect(tampered) as db:
                db.execute('UPDATE "%s_mirroring" SET schema = replace(schema, \'|nvarchar(\', '
                           '\'|varchar(\') WHERE tablename = \'contact\'' % TENANT)
            proc = task("verify", "--db", source, "--mirror", tampered, "--tenant", TENANT, check=False)
            assert proc.returncode == 1 and "contact: DIFFERS: schema" in proc.stdout, proc.stdout + proc.stderr

            # GUID keys in both cases: the mirror's column compares in any case (COLLATE NOCASE),
            # the source's by bytes; verify walks both in the same order.
            guid_rows = [("B1111111-0000-0000-0000-000000000000", 1), ("a2222222-0000-0000-0000-000000000000", 2)]
            guid_src, guid_mirror = os.path.join(work, "guid_src.db"), os.path.join(work, "guid_mirror.db")
            for path, collate in ((guid_src, ""), (guid_mirror, " COLLATE NOCASE")):
                with sqlite3.connect(path) as db:
                    db.execute('CREATE TABLE items (id uniqueidentifier%s NOT NULL PRIMARY KEY, v int)' % collate)
                    db.executemany("INSERT INTO items VALUES (?, ?)", guid_rows)
            with sqlite3.connect(guid_mirror) as db:   # the schema somirrord records
                db.execute('CREATE TABLE "%s_mirroring" (tablename TEXT PRIMARY KEY COLLATE NOCASE, '
                           'schema TEXT NOT NULL)' % TENANT)
                db.execute('INSERT INTO "%s_mirroring" VALUES (?, ?)' % TENANT,
                           ("items", "id|uniqueidentifier|notnull|\nv|int|null|\npk|id"))
            proc = task("verify", "--db", guid_src, "--mirror", guid_mirror, "--tenant", TENANT, check=False)
            assert proc.returncode == 0 and "EQUAL" in proc.stdout, proc.stdout + proc.stderr

            # A skipped table is dropped from the mirror on the next cycle.
            third = run("--skip-tables", "text")
            assert "text" not in mirror_tables(mirror)
            assert any(t["name"] == "text" and t["change"] == "Dropped" for t in third["tables"]) or \
                "text" not in {t["name"] for t in third["tables"]}
            verify("--skip-tables", "text")

            # Retention passed the mirror's position: the next cycle is a full reload.
            task("churn", "--db", source, "--changes", "50", "--seed", "8")
            task("provision", "--db", source, "--retention", "0")
            fourth = run()
            assert {t["name"]: t["load"] for t in fourth["tables"]}.get("contact") == "full", fourth["tables"]
            verify()

            # A paused tenant: doNotReplicate is believed only from the application's receiver.
            other = os.path.join(work, "other")
            task("keys", "--out", other)
            assert env.daemon.ctl("pause " + TENANT).startswith("ok")
            proc = task(*with_option("--app-public-key", os.path.join(other, "app.pub")), check=False)
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            assert proc.returncode == 1 and summary["result"] == "failed", (proc.returncode, summary)
            assert "SignedApplicationToken" in summary["error"], summary
            proc = task(*base, check=False)
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            assert proc.returncode == 0 and summary["result"] == "skipped", (proc.returncode, summary)
            assert env.daemon.ctl("resume " + TENANT).startswith("ok")

            # Help goes to stdout with exit 0, -h as --help (somirror-task(1)); no command is a
            # usage error.
            for flag in ("-h", "--help"):
                proc = task(flag, check=False)
                assert proc.returncode == 0 and proc.stdout.startswith("usage: somirror-task"), \
                    (flag, proc.returncode, proc.stderr)
            proc = task(check=False)
            assert proc.returncode == 2 and proc.stderr.startswith("usage: "), (proc.returncode, proc.stderr)
            # An option the command does not take is a usage error, not ignored (gen with a
            # tenant made the rows of no tenant in particular, and exited 0).
            for args, stray in ((["gen", "--db", os.path.join(work, "stray.db"), "--tenant", "x"], "--tenant"),
                                (base + ["--scale", "5"], "--scale"),
                                (["run", "-c", os.path.join(work, "task.yaml"), "--once", "--url", "x"], "--url"),
                                (["verify", "--db", source, "--mirror", mirror, "--tenant", TENANT,
                                  "--force"], "--force")):
                proc = task(*args, check=False)
                assert proc.returncode == 2 and "%s does not apply" % stray in proc.stderr, \
                    (args, proc.returncode, proc.stderr)
            assert not os.path.exists(os.path.join(work, "stray.db"))

            # keys --force replaces what is there rather than write through it: a link planted in
            # a shared directory does not redirect a key onto another file.
            shared = os.path.join(work, "shared-keys")
            os.mkdir(shared)
            victim = os.path.join(work, "victim")
            with open(victim, "w") as f:
                f.write("precious\n")
            os.symlink(victim, os.path.join(shared, "app.pub"))
            os.symlink(os.path.join(work, "absent"), os.path.join(shared, "app.xml"))
            task("keys", "--out", shared, "--force")
            assert open(victim).read() == "precious\n" and not os.path.exists(os.path.join(work, "absent"))
            for name in ("app.pub", "app.xml"):
                assert not os.path.islink(os.path.join(shared, name)), name

            # Setup errors exit 2, before any call reaches the receiver.
            unprovisioned = os.path.join(work, "unprovisioned.db")
            task("gen", "--db", unprovisioned, "--scale", "2")
            calls = env.daemon.ctl_json("show tenant " + TENANT)["tenant"]["calls"]
            for args in (with_option("--db", os.path.join(work, "missing.db")),
                         with_option("--db", unprovisioned),
                         with_option("--url", "ftp://127.0.0.1/"),
                         with_option("--url", "http://127.0.0.1:0/"),
                         with_option("--tenant", "bad tenant!"),
                         ["gen", "--db", os.path.join(work, "huge.db"), "--scale", "9223372036854775807"]):
                proc = task(*args, check=False)
                assert proc.returncode == 2, "exit %d for %s: %s" % (proc.returncode, args, proc.stderr)
            for size, why in (("0", "expected a size of 1 byte or more"), ("1x", "expected a size like 1MiB"),
                              ("99999999999999999999", "too large a size")):
                proc = task(*(base + ["--batch-size", size]), check=False)
                assert proc.returncode == 2 and '--batch-size: %s, got "%s"' % (why, size) in proc.stderr, \
                    (size, proc.returncode, proc.stderr)
            assert env.daemon.ctl_json("show tenant " + TENANT)["tenant"]["calls"] == calls

            # A body over the receiver's limits.max_request_bytes is answered 413 before it is
            # all sent, and the receiver then ends its side: the sender reads that answer, and
            # says to lower the batch size, where it took the end for "connection closed" in
            # about half the runs.
            with harness.server(keys=keys, **{"limits.max_request_bytes": 65536}) as small:
                for n in range(8):
                    args = with_option("--url", "http://127.0.0.1:%d/" % small.daemon.port)
                    args[args.index("--tenant") + 1] = "Small%d" % n
                    proc = task(*(args + ["--batch-size", "3MiB", "--tries", "1"]), check=False)
                    assert proc.returncode == 1 and "RequestTooLarge" in proc.stderr and \
                        "lower the batch size" in proc.stderr, (n, proc.returncode, proc.stderr[-400:])

            # A failed connection says why: a name that does not resolve, a port that refuses,
            # TLS spoken to a plain HTTP port.
            for url, why in (("http://no-such-host.invalid:%d/" % env.daemon.port, "cannot resolve no-such-host.invalid"),
                             ("http://127.0.0.1:%d/" % harness.free_port(), "cannot connect: Connection refused"),
                             ("https://127.0.0.1:%d/" % env.daemon.port,
                              "TLS handshake failed: wrong version number (is it an https:// server?)")):
                proc = task(*(with_option("--url", url) + ["--tries", "1"]), check=False)
                assert proc.returncode == 1 and why in proc.stderr, (url, proc.returncode, proc.stderr[-600:])

            # A receiver gone while a request is written is an error to report, not a SIGPIPE
            # that ends somirror-task without a word (a chaos soak over HTTPS saw it): SIGPIPE
            # is ignored, seen here while it waits on a listener that never answers.
            with socket.socket() as mute:
                mute.bind(("127.0.0.1", 0))
                mute.listen(1)
                proc = subprocess.Popen([TASK] + with_option("--url", "http://127.0.0.1:%d/" % mute.getsockname()[1]),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    mute.settimeout(30)
                    held, _ = mute.accept()
                    with open("/proc/%d/status" % proc.pid) as f:
                        ignored = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
                    held.close()
                finally:
                    proc.kill()
                    proc.wait()
                assert ignored & (1 << (signal.SIGPIPE - 1)), "somirror-task run does not ignore SIGPIPE"

            # A cycle interrupted by killing somirrord completes correctly when run again.
            task("churn", "--db", source, "--changes", "400", "--seed", "9")
            before = env.daemon.ctl_json("show tenant " + TENANT)["tenant"]["calls"]
            proc = subprocess.Popen([TASK] + base + ["--batch-size", "2000"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            harness.wait_until(
                lambda: env.daemon.ctl_json("show tenant " + TENANT)["tenant"]["calls"] >= before + 4,
                30, interval=0.01, what="the cycle's data calls")
            for pid in env.daemon.worker_pids():
                os.kill(pid, signal.SIGKILL)
            env.daemon.signal(signal.SIGKILL)
            proc.communicate(timeout=120)
            env.daemon.kill_all()
            env.daemon.start()
            run()
            verify()
    print("task end to end: ok")


if __name__ == "__main__":
    main()
