#!/usr/bin/env python3
"""tests/integration/test_mssql_tds: test layer 2 of the SQL Server store driver. Starts the TDS
test peer (tests/tds/tds_server.py: a protocol peer, not a database) on 127.0.0.1 and a random
port, runs store calls through store/mssql.c with tests/unit/mssql_probe, and checks the
conversation FreeTDS db-lib had with it: login, provisioning, a TableSchema's DDL and metadata
in one transaction, a RowData's bulk copy into #somirror_x (rows collapsed per key, empty values
flagged, text as UTF-16LE, decimals and dates without the zeros past their digits) followed by the set-based statements and the position, all between
BEGIN and COMMIT; a server error mid-call (StorageError, ROLLBACK sent, nothing applied); a
dropped connection (StorageError, then a new login on the next call); a login failure
(StorageError with the server's message); a failed COMMIT (not reported applied); an operator's
table script in a session of its own. Whether SQL
Server accepts the statements is layer 3's business (test_store against a real server)."""
import contextlib
import os
import subprocess
import sys
import time

SRCDIR = os.environ.get("SOMIRROR_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDDIR = os.environ.get("SOMIRROR_BUILDDIR", ".")
sys.path.insert(0, os.path.join(SRCDIR, "tests", "tds"))
import tds_server  # noqa: E402

PROBE = os.path.join(BUILDDIR, "tests", "unit", "mssql_probe")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


@contextlib.contextmanager
def peer():
    """A TDS test peer on a free port, stopped after the block."""
    s = tds_server.Server().start()
    try:
        yield s
    finally:
        s.stop()


def logins(server):
    return len([e for e in server.events if e["kind"] == "login"])


def probe(server, *steps, env=None):
    p = subprocess.run([PROBE, "127.0.0.1:%d" % server.port, "sa", "s3cret pass"] + list(steps),
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        print(p.stderr)
    return p.stdout.splitlines()


def since(server, start):
    return server.events[start:]


def texts(events):
    return [e.get("text", "") for e in events if e["kind"] in ("sql", "rpc")]


def index_of(items, needle, start=0):
    for i in range(start, len(items)):
        if needle in items[i]:
            return i
    return -1


def test_happy_path():
    with peer() as s:
        out = probe(s, "schema", "rows", "list")
        check(out[:1] == ["schema ok contact:-1:Created:0/0/0"], "schema answer: %r" % out)
        check(len(out) > 1 and out[1].startswith("rows ok contact:10:") and out[1].endswith(":2/1/1"),
              "rows answer: %r" % out)
        check(len(out) > 2 and out[2].startswith("list ok contact:10:"), "list answer: %r" % out)
        login = [e for e in s.events if e["kind"] == "login"]
        check(len(login) == 1 and login[0]["user"] == "sa" and login[0]["password"] == "s3cret pass"
              and login[0]["tds_version"] == "74000004", "login: %r" % login)
        t = texts(s.events)
        check(t[0].startswith("SET XACT_ABORT ON") and "SET TEXTSIZE 2147483647" in t[0],
              "session settings first, (max) values read whole: %r" % t[0])
        check("CREATE DATABASE [Mirror_acme]" in t, "database created")
        check(index_of(t, "DATABASEPROPERTYEX") > t.index("CREATE DATABASE [Mirror_acme]"),
              "waits for ONLINE after CREATE DATABASE")
        check(index_of(t, "USE [Mirror_acme]") > index_of(t, "DATABASEPROPERTYEX"), "USE after online")
        check(index_of(t, "CREATE TABLE [acme_mirroring]") > 0, "metadata table")
        # TableSchema: begin, lock, metadata, DDL, position, commit
        b = t.index("BEGIN TRANSACTION")
        lock = [e for e in s.events if e["kind"] == "rpc" and "sp_getapplock" in e["text"]][0]
        check(("@res", 231, "somirror:acme") in lock["params"], "lock resource bound: %r" % lock)
        ddl = index_of(t, "CREATE TABLE [contact]", b)
        check(t[ddl] == "CREATE TABLE [contact] ([contact_id] int NOT NULL, [name] nvarchar(50) NULL"
              " CONSTRAINT [DF_contact_name_575ae4b0] DEFAULT (N''), [amount] decimal(18,4) NOT NULL"
              " CONSTRAINT [DF_contact_amount_8ff033bf] DEFAULT (0), [registered] datetime2(3) NULL,"
              " [photo] varbinary(10) NULL, PRIMARY KEY ([contact_id]));", "DDL: %r" % t[ddl])
        c = t.index("COMMIT TRANSACTION")
        check(b < index_of(t, "sp_getapplock", b) < index_of(t, "SELECT [tablename]", b) < ddl <
              index_of(t, "[schemahash] = @h", b) < c, "TableSchema order")
        # RowData
        b2 = index_of(t, "BEGIN TRANSACTION", c + 1)
        c2 = index_of(t, "COMMIT TRANSACTION", b2)
        stage = index_of(t, "CREATE TABLE #somirror_x", b2)
        apply_ = index_of(t, "INSERT INTO [contact]", b2)
        meta = index_of(t, "[schemahash] = @h", b2)
        check(b2 < stage < apply_ < meta < c2, "RowData order: %d %d %d %d %d" % (b2, stage, apply_, meta, c2))
        # the bulk copy's row count comes only with NOCOUNT off: off just before it, on again after
        check(t[stage].rstrip().endswith("SET NOCOUNT OFF;") and t[apply_].startswith("SET NOCOUNT ON;"),
              "NOCOUNT around the bulk copy: %r / %r" % (t[stage][-40:], t[apply_][:40]))
        bulks = [e for e in s.events if e["kind"] == "bulk"]
        check(len(bulks) == 1, "one bulk copy")
        rows = bulks[0]["rows"] if bulks else []
        check(rows == [[0, "U", "01000", 2, None, "0".encode("utf-16-le"), None, None],
                       [1, "U", None, 1, "Acme AS".encode("utf-16-le"),
                        "2.2500".encode("utf-16-le"), "2026-01-02T03:04:05.123".encode("utf-16-le"), None],
                       [2, "D", None, 3, None, None, None, None]], "bulk rows: %r" % rows)
        puts = [e for e in s.events if e["kind"] == "rpc" and "[schemahash] = @h" in e["text"]]
        check(puts and ("@l", 38, 10) in puts[-1]["params"] and ("@t", 231, "contact") in puts[-1]["params"],
              "position bound: %r" % (puts[-1]["params"] if puts else None))
        check(all("contact" not in p[2] for e in puts for p in e["params"][:1]), "statement has no values")


def test_server_error_mid_call():
    with peer() as s:
        s.rules.append({"match": r"INSERT INTO \[contact\]",
                        "error": (2627, "Violation of PRIMARY KEY constraint 'PK_x'.")})
        out = probe(s, "schema", "rows", "list")
        check(len(out) == 3 and out[1].startswith("rows fault StorageError:") and "2627" in out[1]
              and "Violation of PRIMARY KEY" in out[1], "error answer: %r" % out)
        check(len(out) == 3 and out[2].startswith("list ok contact:-1:"), "nothing applied: %r" % out)
        t = texts(s.events)
        i = index_of(t, "INSERT INTO [contact]")
        check(i > 0 and index_of(t, "ROLLBACK", i) == i + 1, "ROLLBACK right after the error")
        check(index_of(t, "[schemahash] = @h", i) == -1 or index_of(t, "[schemahash] = @h", i) > index_of(t, "ROLLBACK", i),
              "no position written after the error")
        check(index_of(t, "COMMIT", i) == -1 or index_of(t, "COMMIT", i) > index_of(t, "BEGIN", i + 1),
              "no COMMIT of the failed call")


def test_dropped_connection():
    with peer() as s:
        s.rules.append({"match": r"INSERT INTO \[contact\]", "drop": True, "once": True})
        out = probe(s, "schema", "rows", "rows", "list")
        check(len(out) == 4 and out[1].startswith("rows fault StorageError:"), "dropped: %r" % out)
        check(len(out) == 4 and out[2].startswith("rows ok contact:10:"), "reconnected: %r" % out)
        check(len(out) == 4 and out[3].startswith("list ok contact:10:"), "applied once: %r" % out)
        check(logins(s) == 2, "a second login after the drop: %d" % logins(s))


def test_wide_schema_whole():
    """A canonical schema past 4,000 characters (a table of 200 columns) is written whole: text
    parameters go as nvarchar(max), where nvarchar(4000) cut them without an error."""
    with peer() as s:
        out = probe(s, "wide", "list")
        check(out[:1] == ["wide ok wide:-1:Created:0/0/0"], "wide: %r" % out)
        puts = [e for e in s.events if e["kind"] == "rpc" and "[schemahash] = @h" in e["text"]]
        stored = dict((p[0], p[2]) for p in puts[-1]["params"]) if puts else {}
        schema = stored.get("@s") or ""
        check(len(schema) > 4000 and schema.endswith("\npk|c000") and "c199|nvarchar(100)|null|" in schema,
              "stored schema whole: %d characters, ends %r" % (len(schema), schema[-30:]))


def test_rollback_failure():
    """A connection whose ROLLBACK failed may still hold the transaction: it is closed, and the
    next call logs in anew (its BEGIN would otherwise nest in the old transaction)."""
    with peer() as s:
        s.rules.append({"match": r"INSERT INTO \[contact\]", "error": (2627, "Violation of PRIMARY KEY."),
                        "once": True})
        s.rules.append({"match": r"ROLLBACK", "error": (3903, "The ROLLBACK has no BEGIN."), "once": True})
        out = probe(s, "schema", "rows", "rows")
        check(len(out) == 3 and out[1].startswith("rows fault StorageError:"), "failed call: %r" % out)
        check(len(out) == 3 and out[2].startswith("rows ok contact:10:"), "next call: %r" % out)
        check(logins(s) == 2, "a new login after the failed rollback: %d" % logins(s))


def test_dead_between_calls():
    """A connection that died between calls (a server restart: db-lib finds out only when it
    next sends) is replaced at the next call's BEGIN, and the call succeeds."""
    with peer() as s:
        s.rules.append({"match": r"^BEGIN TRANSACTION", "drop": True, "once": True, "skip": 1})
        out = probe(s, "schema", "rows", "list")
        check(len(out) == 3 and out[1].startswith("rows ok contact:10:"), "the call after the drop: %r" % out)
        check(logins(s) == 2, "a new login at the BEGIN: %d" % logins(s))


def test_collation():
    """New mirror databases take store.mssql.collation; one whose collation is case-sensitive
    (the server's default, say) is refused with what to set, since names and keys must compare
    in any case."""
    with peer() as s:
        out = probe(s, "schema", env={"MSSQL_PROBE_COLLATION": "Latin1_General_100_CI_AS_SC"})
        check(out == ["schema ok contact:-1:Created:0/0/0"], "schema: %r" % out)
        check("CREATE DATABASE [Mirror_acme] COLLATE Latin1_General_100_CI_AS_SC" in texts(s.events),
              "created with the collation: %r" % [t for t in texts(s.events) if "CREATE DATABASE" in t])
    with peer() as s:
        s.collation = "Latin1_General_CS_AS"
        out = probe(s, "schema")
        check(len(out) == 1 and out[0].startswith("schema fault StorageError:") and
              "case-sensitive collation Latin1_General_CS_AS" in out[0] and "ALTER DATABASE" in out[0],
              "case-sensitive: %r" % out)
        check(not any("CREATE TABLE [contact]" in t for t in texts(s.events)), "a table made anyway")


def test_login_failure():
    with peer() as s:
        s.fail_login = (18456, "Login failed for user 'sa'.")
        out = probe(s, "schema")
        check(len(out) == 1 and out[0].startswith("schema fault StorageError:") and "18456" in out[0]
              and "Login failed for user 'sa'." in out[0], "login failure: %r" % out)


def test_commit_failure():
    with peer() as s:
        out = probe(s, "schema")
        check(out == ["schema ok contact:-1:Created:0/0/0"], "schema: %r" % out)
        s.rules.append({"match": r"^COMMIT TRANSACTION", "error": (1205, "Transaction was deadlocked."),
                        "once": True})
        out = probe(s, "rows", "list")
        check(len(out) == 2 and out[0].startswith("rows fault StorageError:") and "1205" in out[0],
              "commit failure: %r" % out)
        check(len(out) == 2 and out[1].startswith("list ok contact:-1:"), "not applied: %r" % out)


def test_exists_makes_nothing():
    """Whether a tenant has a mirror (somirrorctl tables) is asked without creating it."""
    with peer() as s:
        out = probe(s, "exists")
        check(out == ["exists 0"], "exists before: %r" % out)
        check(not any("CREATE DATABASE" in t for t in texts(s.events)), "exists made a database")
        out = probe(s, "schema", "exists")
        check(out[1:] == ["exists 1"], "exists after: %r" % out)


def test_table_script_session():
    """An operator's table script runs in a session of its own: whatever it leaves (SET options,
    USE, an open transaction) goes with that session, closed after it, and the next call logs in
    anew; a script that leaves a transaction open fails."""
    with peer() as s:
        out = probe(s, "schema", "script", "list")
        check(len(out) == 3 and out[1] == "script ok" and out[2].startswith("list ok contact:-1:"),
              "script: %r" % out)
        check(any("UPDATE [contact] SET name = N'x'" in t for t in texts(s.events)), "the script ran")
        check(logins(s) == 2, "a new session after the script: %d logins" % logins(s))
        s.rules.append({"match": r"SELECT @@TRANCOUNT", "columns": [("n", "int", False)], "rows": [(1,)],
                        "once": True})
        out = probe(s, "script")
        check(out == ["script failed: the script left a transaction open: rolled back"], "open transaction: %r" % out)
        # A script that runs on is stopped at hooks.timeout (2 s in the probe), not at the
        # longer store.mssql.query_timeout (10 s), and the calls after it are served.
        s.rules.append({"match": r"UPDATE \[contact\]", "delay": 8, "once": True})
        started = time.monotonic()
        out = probe(s, "script", "list")
        took = time.monotonic() - started
        check(len(out) == 2 and out[0].startswith("script failed: ") and out[1].startswith("list ok"),
              "a script past hooks.timeout: %r" % out)
        check(took < 6, "the script was stopped after %.1f s, not at hooks.timeout" % took)


def main():
    if not os.access(PROBE, os.X_OK):
        print("mssql_probe not built; skipped")
        return 77
    for test in (test_happy_path, test_server_error_mid_call, test_dropped_connection,
                 test_wide_schema_whole, test_rollback_failure, test_dead_between_calls, test_collation,
                 test_login_failure, test_commit_failure, test_table_script_session,
                 test_exists_makes_nothing):
        before = len(failures)
        test()
        print("%s: %s" % (test.__name__, "ok" if len(failures) == before else "FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
