#!/usr/bin/env python3
"""somirror-task against somirrord on the PostgreSQL store (a throwaway PostgreSQL 15 from
pgserver.py; skipped, exit 77, without one): the generated CRM source, whose tables hold every
type of protocol section 5 and one of which is named text (a type's name in PostgreSQL), gets a
full load, then churn and two incremental cycles. After each cycle every mirrored table holds
exactly the source's keys, as many values in each column as the source (nothing NULLed or
lost), and the blocked tables are absent; the metadata's Lsn moves forward. (somirror-task
verify compares SQLite mirrors only; the stored forms per type are test_store's.)"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import pgserver  # noqa: E402

TASK = h.program("somirror-task")
TENANT = "CustPg"
BLOCKED = {"credentials", "userpreference", "winpossize"}


def task(*args):
    proc = subprocess.run((TASK,) + tuple(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    if proc.returncode != 0:
        h.fail("somirror-task %s exited %d\nstdout: %s\nstderr: %s"
               % (" ".join(args), proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:]))
    return proc.stdout


def source_columns(source):
    """{table: [(column, pk_pos)]} of the generated tables, in column order."""
    tables = {}
    with sqlite3.connect(source) as db:
        for table, column, pk_pos in db.execute(
                "SELECT table_name, column_name, pk_pos FROM _somirror_columns ORDER BY table_name, ordinal"):
            tables.setdefault(table, []).append((column, pk_pos))
    return tables


def quoted(name):
    return '"%s"' % name


def table_facts(columns, fetch):
    """(sorted keys as text, [non-NULL count per column]) of one table; fetch(sql) -> rows."""
    keys = [name for name, pos in sorted(columns, key=lambda c: c[1]) if pos > 0]
    key_sql = " || '|' || ".join("CAST(%s AS TEXT)" % quoted(k) for k in keys)
    counts_sql = ", ".join("COUNT(%s)" % quoted(c) for c, _ in columns)
    return fetch(key_sql, counts_sql)


def compare(pg, source, dbname, expect_tables):
    meta = pg.psql('SELECT tablename, lsn FROM "%s_mirroring" ORDER BY 1' % TENANT.lower(), dbname)
    lsns = dict(line.split("|") for line in meta.splitlines())
    assert set(lsns) == expect_tables, (sorted(lsns), sorted(expect_tables))
    columns = source_columns(source)
    with sqlite3.connect(source) as db:
        for table in sorted(expect_tables):
            def from_source(key_sql, counts_sql):
                keys = sorted(r[0] for r in db.execute("SELECT %s FROM %s" % (key_sql, quoted(table))))
                counts = list(db.execute("SELECT %s FROM %s" % (counts_sql, quoted(table))).fetchone())
                return keys, counts

            def from_mirror(key_sql, counts_sql):
                keys = sorted(pg.psql("SELECT %s FROM %s" % (key_sql, quoted(table)), dbname).splitlines())
                counts = [int(n) for n in pg.psql("SELECT %s FROM %s" % (counts_sql, quoted(table)),
                                                  dbname).strip().split("|")]
                return keys, counts

            want_keys, want_counts = table_facts(columns[table], from_source)
            got_keys, got_counts = table_facts(columns[table], from_mirror)
            assert got_keys == want_keys, "%s: keys differ (%d in the mirror, %d in the source; first "\
                "difference %r)" % (table, len(got_keys), len(want_keys),
                                    sorted(set(got_keys) ^ set(want_keys))[:3])
            assert got_counts == want_counts, "%s: values per column %s, source %s (%s)" % (
                table, got_counts, want_counts, [c for c, _ in columns[table]])
    return {t: int(v) for t, v in lsns.items()}


def main():
    pgserver.require()
    with pgserver.PgServer() as pg, tempfile.TemporaryDirectory(prefix="smtaskpg") as work:
        keydir = os.path.join(work, "keys")
        task("keys", "--out", keydir)
        keys = h.Keys(os.path.join(keydir, "vendor.key"), os.path.join(keydir, "vendor.crt"),
                      os.path.join(keydir, "app.xml"), os.path.join(keydir, "app.pub"))
        source = os.path.join(work, "source.db")
        task("gen", "--db", source, "--scale", "60", "--seed", "11")
        task("provision", "--db", source)
        mirrored = set(source_columns(source)) - BLOCKED
        assert "text" in mirrored, sorted(mirrored)
        with h.server(keys=keys, workers=2,
                      **{"store.driver": "postgresql", "store.sqlite": None,
                         "store.postgresql.conninfo": pg.conninfo()}) as env:
            dbname = "Mirror_%s" % TENANT
            base = ["run", "--once", "--url", "http://127.0.0.1:%d/" % env.daemon.port,
                    "--app-id", h.DEFAULT_APP_ID, "--vendor-key", keys.vendor_key,
                    "--vendor-cert", keys.vendor_cert, "--app-public-key", keys.app_pub,
                    "--tenant", TENANT, "--db", source, "--json", "--tries", "1"]

            def run():
                summary = json.loads(task(*base).strip().splitlines()[-1])
                assert summary["result"] == "ok", summary
                return summary

            first = run()
            assert all(t["load"] == "full" for t in first["tables"]), first["tables"]
            lsns = compare(pg, source, dbname, mirrored)
            for seed in ("21", "22"):
                task("churn", "--db", source, "--changes", "200", "--seed", seed)
                summary = run()
                assert all(t["load"] == "changes" for t in summary["tables"]), summary["tables"]
                assert summary["rows"]["I"] + summary["rows"]["U"] + summary["rows"]["D"] > 0, summary
                after = compare(pg, source, dbname, mirrored)
                assert all(after[t] >= lsns[t] for t in lsns) and after != lsns, (lsns, after)
                lsns = after
            assert "error" not in env.daemon.ctl_json("show tenant %s" % TENANT)["tenant"]["state"]
    print("ok")


if __name__ == "__main__":
    main()
