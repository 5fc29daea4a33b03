"""somirror-task against a real somirrord, end to end on the SQLite store: generate a CRM-like
source, provision change tracking, full load, verify, churn, incremental cycle, verify; a tampered
mirror fails verify; blocked tables never reach the mirror; a skipped table is dropped from the
mirror on the next cycle; a source whose retention passed the mirror's Lsn gets a full reload; a
cycle interrupted by killing somirrord completes correctly when run again."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile

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


def mirror_tables(path):
    with sqlite3.connect(path) as db:
        return {r[0].lower() for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


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
        task("provision", "--db", source)
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

            # A tampered mirror fails verify, and names what differs.
            tampered = os.path.join(work, "tampered.db")
            with sqlite3.connect(mirror) as live, sqlite3.connect(tampered) as copy:
                live.backup(copy)   # the live mirror is in WAL mode: copy through SQLite
            with sqlite3.connect(tampered) as db:
                db.execute("UPDATE contact SET name = 'tampered' WHERE rowid = (SELECT min(rowid) FROM contact)")
            proc = task("verify", "--db", source, "--mirror", tampered, "--tenant", TENANT, check=False)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert "contact" in proc.stdout + proc.stderr

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
