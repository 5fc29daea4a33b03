#!/usr/bin/env python3
"""Operator hooks end to end (config section hooks, hooks/hooks.h).

Phase A, every hook healthy: table_sql creates an index (and runs *.sql for every table) when
tables are created or altered, the index is there after a wipe and a full load and after a
rebuild that drops an indexed column; table_changed runs per
changed table (Created, Wiped, Altered, Dropped) and cycle_completed after ReplicationCompleted,
each with its SOMIRROR_* environment and no descriptor of the log, also after a log reopen;
their output lines reach the log; `show tenant` shows the last run.
Phase B, failing and hanging hooks: a failing table_sql script (one that leaves a transaction
open, one that changes the connection: the next call is served as usual; one that would never
end: stopped at hooks.timeout) and a failing or hanging
cycle_completed are reported in `show tenant CTX json` (last_hook); the hanging one is killed
at hooks.timeout and a second run for the tenant is skipped meanwhile, while the sender's
calls keep succeeding at once; what a program leaves running in its process group ends with
its run."""
import glob
import json
import os
import signal
import sqlite3
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TENANT = "Cust1"

CONTACT = {"name": "contact", "pk": ["contact_id"],
           "columns": [("contact_id", "int", False), ("name", "nvarchar(50)", True)]}
CONTACT2 = {"name": "contact", "pk": ["contact_id"],
            "columns": [("contact_id", "int", False), ("name", "nvarchar(50)", True),
                        ("city", "nvarchar(40)", True)]}
PERSON = {"name": "person", "pk": ["person_id"],
          "columns": [("person_id", "int", False), ("firstname", "nvarchar(50)", True)]}
OPENER = {"name": "opener", "pk": ["id"], "columns": [("id", "int", False)]}
READONLY = {"name": "readonly", "pk": ["id"], "columns": [("id", "int", False)]}
SLOW = {"name": "slow", "pk": ["id"], "columns": [("id", "int", False)]}

CYCLE_SH = r"""#!/bin/sh
d="$1"
env | grep '^SOMIRROR_' | sort > "$d/cycle-env.tmp.$$" && mv "$d/cycle-env.tmp.$$" "$d/cycle-env.$$"
echo "cycle hook for $SOMIRROR_TENANT"
echo "cycle hook complains" >&2
case "$(cat "$d/cycle-mode" 2>/dev/null)" in
  fail) exit 4 ;;
  hang) sleep 60 & echo $! > "$d/hang.pid"; wait ;;
  background) sleep 60 > /dev/null 2>&1 & echo $! > "$d/background.pid" ;;
esac
exit 0
"""

CHANGED_SH = r"""#!/bin/sh
d="$1"
f="$d/changed-$SOMIRROR_TABLE-$SOMIRROR_CHANGE"
ls -l /proc/$$/fd > "$f.fds"
env | grep '^SOMIRROR_' | sort > "$f.tmp" && mv "$f.tmp" "$f"
"""


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def write_sql(directory, name, text):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w") as f:
        f.write(text)


def call_ok(s, op, body, conn=None):
    t0 = time.monotonic()
    status, _, resp = s.call(op, body, tenant=TENANT, conn=conn)
    took = time.monotonic() - t0
    assert status == 200 and h.parse_fault(resp) is None, (op, status, resp[:600])
    return resp, took


HOOK_VARS = ("SOMIRROR_TENANT", "SOMIRROR_DATABASE", "SOMIRROR_TABLE", "SOMIRROR_CHANGE",
             "SOMIRROR_SUMMARY")


def env_file(path):
    """The hook variables a hook script wrote (others, like make check's, are inherited)."""
    with open(path) as f:
        env = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return {k: v for k, v in env.items() if k in HOOK_VARS}


def log_reopened(pid, path):
    """Whether process pid holds path open and not the file it was renamed from."""
    fd_dir = "/proc/%d/fd" % pid
    targets = set()
    for fd in os.listdir(fd_dir):
        try:
            targets.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    return path in targets and path + ".1" not in targets


def mirror(s):
    return os.path.join(s.dir, "mirrors", "Mirror_%s.db" % TENANT)


def sqlite_names(s, kind):
    with sqlite3.connect(mirror(s)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def last_hook(s, field="last_hook"):
    t = s.daemon.ctl_json("show tenant %s" % TENANT)["tenant"]
    return t.get(field) or ""


def wait_last_hook(s, prefix, timeout=15):
    return h.wait_until(lambda: last_hook(s).startswith(prefix), timeout,
                        what="last_hook %r (now %r)" % (prefix, last_hook(s)))


def setup(s, **hooks):
    """Writes the hook scripts into the server's directory, configures and starts it."""
    out = os.path.join(s.dir, "out")
    os.makedirs(out)
    write_script(os.path.join(s.dir, "cycle.sh"), CYCLE_SH)
    write_script(os.path.join(s.dir, "changed.sh"), CHANGED_SH)
    overrides = {"hooks.cycle_completed": [os.path.join(s.dir, "cycle.sh"), out]}
    for key, value in hooks.items():
        overrides["hooks." + key] = value
    s.daemon.rewrite_config(**overrides)
    s.daemon.start()
    return out


def phase_a(keys):
    with h.server(start=False, keys=keys) as s:
        sql_dir = os.path.join(s.dir, "sql")
        write_sql(sql_dir, "contact.sql", "CREATE INDEX IF NOT EXISTS ix_contact_name ON {table}(name);\n")
        write_sql(sql_dir, "*.sql", "CREATE TABLE IF NOT EXISTS hook_seen(t TEXT PRIMARY KEY);\n"
                                    "INSERT OR IGNORE INTO hook_seen VALUES ('{table}');\n")
        out = os.path.join(s.dir, "out")
        setup(s, table_sql=sql_dir, table_changed=[os.path.join(s.dir, "changed.sh"), out], timeout=10)
        d = s.daemon

        body, _ = call_ok(s, "Authenticate", h.authenticate_body())
        assert h.parse_auth(body)["IsSuccessful"] == "true", body
        body, _ = call_ok(s, "TableSchema", h.table_schema_body([CONTACT, PERSON]))
        assert [st["Change"] for st in h.parse_table_states(body)] == ["Created", "Created"], body

        # table_sql ran after the commit, before the answer.
        assert "ix_contact_name" in sqlite_names(s, "index"), sqlite_names(s, "index")
        with sqlite3.connect(mirror(s)) as db:
            seen = sorted(r[0] for r in db.execute("SELECT t FROM hook_seen"))
        assert seen == ['"contact"', '"person"'], seen

        # table_changed, once per created table, with its environment.
        for table in ("contact", "person"):
            path = os.path.join(out, "changed-%s-Created" % table)
            h.wait_until(lambda: os.path.exists(path), 10, what=path)
            env = env_file(path)
            assert env == {"SOMIRROR_TENANT": TENANT, "SOMIRROR_DATABASE": "Mirror_" + TENANT,
                           "SOMIRROR_TABLE": table, "SOMIRROR_CHANGE": "Created"}, env

        # A log reopen (logrotate) before the next hooks: they get no descriptor of the log.
        os.rename(d.log_path, d.log_path + ".1")
        d.signal(signal.SIGUSR1)
        h.wait_until(lambda: all(log_reopened(pid, d.log_path) for pid in d.worker_pids()), 10,
                     what="every worker's log reopened")

        # A full load: Wipe (table_sql again, table_changed Wiped), then rows.
        call_ok(s, "Wipe", h.wipe_body(["contact"]))
        h.wait_until(lambda: os.path.exists(os.path.join(out, "changed-contact-Wiped")), 10,
                     what="table_changed Wiped")
        for change in ("Created", "Wiped"):
            with open(os.path.join(out, "changed-contact-%s.fds" % change)) as f:
                fds = f.read()
            assert "somirrord.log" not in fds, (change, fds)
        rows = [("I", None, [str(i), "name %d" % i]) for i in range(1, 201)]
        body, _ = call_ok(s, "RowData", h.row_data_body([{"table": "contact", "columns": ["contact_id", "name"],
                                                          "rows": rows, "lsn": 1000}]))
        assert h.parse_table_states(body)[0]["Inserted"] == "200", body
        with sqlite3.connect(mirror(s)) as db:
            assert db.execute("SELECT count(*) FROM contact").fetchone()[0] == 200
            plan = " ".join(str(r) for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT contact_id FROM contact WHERE name = 'name 7'"))
        assert "ix_contact_name" in sqlite_names(s, "index")
        assert "ix_contact_name" in plan, plan

        # cycle_completed, detached, with the summary.
        before = time.monotonic()
        call_ok(s, "ReplicationCompleted", h.replication_completed_body([("contact", 200, 0, 0),
                                                                          ("person", 0, 0, 0)]))
        files = h.wait_until(lambda: glob.glob(os.path.join(out, "cycle-env.[0-9]*")), 10,
                             what="cycle_completed to run")
        env = env_file(files[0])
        assert env["SOMIRROR_TENANT"] == TENANT and env["SOMIRROR_DATABASE"] == "Mirror_" + TENANT, env
        summary = json.loads(env["SOMIRROR_SUMMARY"])
        assert summary["inserted"] == 200 and summary["updated"] == 0 and summary["deleted"] == 0, summary
        assert [t["name"] for t in summary["tables"]] == ["contact", "person"], summary
        assert summary["tables"][0] == {"name": "contact", "inserted": 200, "updated": 0, "deleted": 0}
        wait_last_hook(s, "cycle_completed: exit 0")
        assert time.monotonic() - before < 10
        d.wait_log(r"\[%s\] hook cycle_completed: cycle hook for %s" % (TENANT, TENANT))
        d.wait_log(r"warn .*\[%s\] hook cycle_completed \(stderr\): cycle hook complains" % TENANT)
        tenant = d.ctl_json("show tenant %s" % TENANT)["tenant"]
        assert tenant["last_hook_at"], tenant
        assert tenant["last_error"] is None, tenant   # no hook failed
        assert "cycle_completed: exit 0" in d.ctl("show tenant %s" % TENANT)

        # Altered and Dropped reach table_changed; table_sql runs again for the Altered table.
        with sqlite3.connect(mirror(s)) as db:
            db.execute("DROP INDEX ix_contact_name")
        body, _ = call_ok(s, "TableSchema", h.table_schema_body([CONTACT2]))
        changes = {st["Name"]: st["Change"] for st in h.parse_table_states(body)}
        assert changes == {"contact": "Altered", "person": "Dropped"}, changes
        for name in ("changed-contact-Altered", "changed-person-Dropped"):
            h.wait_until(lambda: os.path.exists(os.path.join(out, name)), 10, what=name)
        assert env_file(os.path.join(out, "changed-person-Dropped"))["SOMIRROR_CHANGE"] == "Dropped"
        assert "ix_contact_name" in sqlite_names(s, "index")
        # A column an index uses (here the operator's own) is dropped: the table is rebuilt, its
        # rows kept, and the script's index made again.
        with sqlite3.connect(mirror(s)) as db:
            db.execute("CREATE INDEX ix_city ON contact(city)")
        body, _ = call_ok(s, "TableSchema", h.table_schema_body([CONTACT]))
        assert h.parse_table_states(body)[0]["Change"] == "Altered", body
        assert "ix_contact_name" in sqlite_names(s, "index") and "ix_city" not in sqlite_names(s, "index")
        with sqlite3.connect(mirror(s)) as db:
            assert db.execute("SELECT count(*) FROM contact").fetchone()[0] == 200
        assert d.stop() == 0


def phase_b(keys):
    with h.server(start=False, keys=keys) as s:
        sql_dir = os.path.join(s.dir, "sql")
        write_sql(sql_dir, "person.sql", "CREATE INDEX ix_bad ON {table}(no_such_column);\n")
        write_sql(sql_dir, "opener.sql", "BEGIN; CREATE INDEX ix_open ON {table}(id);\n")
        write_sql(sql_dir, "contact.sql", "CREATE INDEX ix_contact_name ON {table}(name);\n")
        write_sql(sql_dir, "readonly.sql", "PRAGMA query_only = ON;\n")
        write_sql(sql_dir, "slow.sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                  "SELECT count(*) FROM c;\n")
        out = setup(s, table_sql=sql_dir, timeout=1)
        d = s.daemon
        call_ok(s, "Authenticate", h.authenticate_body())

        # A failing table_sql script: the call succeeds, the failure is shown.
        body, _ = call_ok(s, "TableSchema", h.table_schema_body([PERSON]))
        assert h.parse_table_states(body)[0]["Change"] == "Created", body
        hook = last_hook(s)
        assert hook.startswith("table_sql person.sql: error: ") and "no_such_column" in hook, hook
        d.wait_log(r"error .*hook table_sql .*person\.sql for table person: .*no_such_column")
        assert "person" in sqlite_names(s, "table")
        # ... and stays the tenant's last error when a later hook succeeds.
        call_ok(s, "TableSchema", h.table_schema_body([PERSON, CONTACT]))
        assert last_hook(s) == "table_sql contact.sql: ok", last_hook(s)
        assert last_hook(s, "last_error") == hook, last_hook(s, "last_error")
        tenant = d.ctl_json("show tenant %s" % TENANT)["tenant"]
        assert tenant["state"] != "error", tenant   # the calls succeeded

        # A script that leaves a transaction open: rolled back and a failure, and the tenant's
        # next call is not refused for it.
        call_ok(s, "TableSchema", h.table_schema_body([PERSON, OPENER]))
        d.wait_log(r"hook table_sql .*opener\.sql for table opener: the script left a transaction open")
        assert "ix_open" not in sqlite_names(s, "index")
        call_ok(s, "RowData", h.row_data_body([{"table": "opener", "columns": ["id"],
                                                "rows": [("I", None, ["1"])], "lsn": 2}]))

        # A script that changes the connection (query_only): it goes with the connection, and
        # the tenant's next call writes (on the same worker: one keep-alive connection).
        conn = d.connection()
        call_ok(s, "TableSchema", h.table_schema_body([PERSON, OPENER, READONLY]), conn=conn)
        call_ok(s, "RowData", h.row_data_body([{"table": "readonly", "columns": ["id"],
                                                "rows": [("I", None, ["1"])], "lsn": 3}]), conn=conn)
        conn.close()

        # A script that would never end: stopped at hooks.timeout (1 s), the call answered.
        _, took = call_ok(s, "TableSchema", h.table_schema_body([PERSON, OPENER, READONLY, SLOW]))
        assert took < 5, took
        assert last_hook(s) == "table_sql slow.sql: error: stopped after hooks.timeout (1 s)", last_hook(s)

        # A failing cycle_completed.
        with open(os.path.join(out, "cycle-mode"), "w") as f:
            f.write("fail\n")
        _, took = call_ok(s, "ReplicationCompleted", h.replication_completed_body())
        assert took < 2, took
        wait_last_hook(s, "cycle_completed: exit 4")

        # A hanging one: killed at hooks.timeout (1 s, then SIGTERM); a second run meanwhile is
        # skipped; the sender's calls answer at once throughout.
        with open(os.path.join(out, "cycle-mode"), "w") as f:
            f.write("hang\n")
        started = time.monotonic()
        _, took = call_ok(s, "ReplicationCompleted", h.replication_completed_body())
        assert took < 1, took
        pid_path = os.path.join(out, "hang.pid")
        h.wait_until(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(), 5, what="hang.pid")
        sleeper = int(open(pid_path).read())
        call_ok(s, "Authenticate", h.authenticate_body())
        _, took = call_ok(s, "RowData", h.row_data_body([{"table": "person", "columns": ["person_id", "firstname"],
                                                          "rows": [("I", None, ["1", "Ann"])], "lsn": 5}]))
        assert took < 1, took
        _, took = call_ok(s, "ReplicationCompleted", h.replication_completed_body())
        assert took < 1, took
        assert time.monotonic() - started < 1, "the second ReplicationCompleted came too late to overlap"
        d.wait_log(r"hook cycle_completed: skipped: the previous run \(pid \d+\) is still running")
        wait_last_hook(s, "cycle_completed: killed at the time limit (1 s)", 15)
        killed_after = time.monotonic() - started
        assert 0.9 < killed_after < 10, killed_after
        d.wait_log(r"hook cycle_completed: still running after 1000 ms: SIGTERM")
        h.wait_until(lambda: not h.pid_alive(sleeper), 5, what="the hook's sleep to be killed")

        # A program that exits leaving a process running in its group: that process ends with
        # the run (SIGTERM), rather than pile up run after run.
        with open(os.path.join(out, "cycle-mode"), "w") as f:
            f.write("background\n")
        call_ok(s, "ReplicationCompleted", h.replication_completed_body())
        wait_last_hook(s, "cycle_completed: exit 0")
        pid_path = os.path.join(out, "background.pid")
        h.wait_until(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(), 5,
                     what="background.pid")
        left = int(open(pid_path).read())
        h.wait_until(lambda: not h.pid_alive(left), 5, what="the program's background sleep to end")
        d.wait_log(r"hook cycle_completed: 1 process it left ended with it")

        # The next cycle runs again.
        os.unlink(os.path.join(out, "cycle-mode"))
        call_ok(s, "ReplicationCompleted", h.replication_completed_body())
        wait_last_hook(s, "cycle_completed: exit 0")
        assert last_hook(s, "last_error").startswith("cycle_completed: killed at the time limit"), \
            last_hook(s, "last_error")
        assert d.stop() == 0


def main():
    with h.server(start=False) as base:   # one set of keys for both phases
        keys = base.keys
        phase_a(keys)
        phase_b(keys)
    print("ok")


if __name__ == "__main__":
    main()
