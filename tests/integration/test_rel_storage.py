#!/usr/bin/env python3
"""Storage faults under the SQLite store (protocol.md section 6: "StorageError ... retryable",
"A fault never leaves a partial change behind"; design.md: the position is written in the same
transaction as the rows):

- disk full: the sqlite directory is a 8 MiB tmpfs; once it is filled (a filler file), a
  RowData fails with StorageError (retryable), nothing is half-applied (row count and lsn
  unchanged), the worker survives; after the filler is removed the same call succeeds. A
  second somirrord on an ordinary directory keeps serving during the fault. Skipped (77) when
  mounting a tmpfs is not permitted.
- a corrupt mirror file (its middle overwritten with garbage while the daemon is stopped): that
  tenant's calls fault (StorageError or TenantBusy), `show tenant X json` says state "error" with
  the reason in last_error, and another tenant keeps working.
- a locked mirror file (another process holds BEGIN EXCLUSIVE): the same, and once the lock is
  released the tenant works again; an operator resync that failed on the locked file stays
  pending and is carried out at the next call."""
import os
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

RETRYABLE = ("StorageError", "TenantBusy")


def expect_storage_fault(r, what):
    f = r.fault
    R.check(f, "%s: expected a StorageError/TenantBusy fault, got %r" % (what, r))
    R.check(f["code"] in RETRYABLE, "%s: fault code %r (%s), want StorageError or TenantBusy"
            % (what, f["code"], f["message"]))
    R.check(f["retryable"] and f["faultcode"] == "s:Server",
            "%s: %s must be s:Server and Retryable: %r" % (what, f["code"], f))
    return f


def tenant_view(d, tenant):
    return d.ctl_json("show tenant %s" % tenant)["tenant"]


def check_tenant_error(d, tenant, what):
    t = tenant_view(d, tenant)
    R.check(t.get("state") == "error", "%s: show tenant %s state %r, want error (%r)"
            % (what, tenant, t.get("state"), t))
    R.check(t.get("last_error"), "%s: show tenant %s has no last_error" % (what, tenant))
    return t


def check_disk_full():
    with tempfile.TemporaryDirectory(prefix="smrel") as top:
        mnt = os.path.join(top, "small")
        with R.tmpfs(mnt, "8m"):
            with H.server(start=False, workers=2, **{"store.sqlite.directory": mnt}) as env, \
                    H.server(workers=1) as other:
                d = env.daemon
                d.start()
                p = PL.P(env, "diskfull")
                p.setup([R.TABLE])
                PL.ok_states(p.rows([R.item_batch(100, 1, lsn=100)]), "first RowData")
                before = R.count_and_lsn(p)
                workers = d.worker_pids()
                # Fill the file system, then leave a little room (less than the call needs).
                filler = os.path.join(mnt, "filler")
                with open(filler, "wb", buffering=0) as f:   # unbuffered: nothing left to fail at close
                    try:
                        while f.write(b"\0" * 65536):
                            pass
                    except OSError:
                        pass
                size = os.path.getsize(filler)
                os.truncate(filler, max(0, size - 96 * 1024))
                call = [R.item_batch(8000, 1000, lsn=200)]
                q = PL.P(other, "otherfs")
                box = {}

                def other_sender():
                    try:
                        q.setup([R.TABLE])
                        box["r"] = q.rows([R.item_batch(500, 1, lsn=5)])
                    except Exception as e:  # noqa: BLE001
                        box["e"] = e
                th = threading.Thread(target=other_sender, daemon=True)
                th.start()
                r = p.rows(call)
                th.join(30)
                f = expect_storage_fault(r, "RowData on a full disk")
                after = R.count_and_lsn(p)
                R.check(after == before, "half-applied on a full disk: rows/lsn %r, before %r" % (after, before))
                R.check(d.worker_pids() == workers, "workers changed during the fault: %r -> %r"
                        % (workers, d.worker_pids()))
                check_tenant_error(d, p.tenant, "disk full")
                R.check("e" not in box, "the other somirrord failed during the fault: %r" % box.get("e"))
                R.check("r" in box, "the other somirrord did not answer during the fault")
                PL.ok_states(box["r"], "the other somirrord's RowData during the fault")
                # Free space: the same call now succeeds.
                os.unlink(filler)
                st = PL.ok_states(p.rows(call), "RowData after freeing space")
                R.check(R.count_and_lsn(p) == (100 + 8000, 200), "after freeing space: %r (answer %r)"
                        % (R.count_and_lsn(p), st))
                print("   full disk fault: %s: %s" % (f["code"], f["message"]))


def corrupt_middle(path):
    size = os.path.getsize(path)
    start, end = size // 4, size * 3 // 4
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(os.urandom(end - start))


def check_corrupt_file():
    with H.server(workers=2, **{"tenants.lock_timeout": 3}) as env:
        d = env.daemon
        bad, good = PL.P(env, "corrupt"), PL.P(env, "healthy")
        for p in (bad, good):
            p.setup([R.TABLE])
            PL.ok_states(p.rows([R.item_batch(8000, 1, lsn=50)]), "load")
        R.check(d.stop() == 0, "somirrord did not stop cleanly")
        for suffix in ("-wal", "-shm"):
            R.check(not os.path.exists(bad.db_path() + suffix) or
                    os.path.getsize(bad.db_path() + suffix) == 0 or suffix == "-shm",
                    "the WAL was not checkpointed at stop")
        corrupt_middle(bad.db_path())
        d.start()
        faults = []
        for what, fn in (("Authenticate", lambda: bad.call("Authenticate", H.authenticate_body())),
                         ("TableSchema", lambda: bad.schema([R.TABLE])),
                         ("RowData", lambda: bad.rows([{"table": "item", "columns": R.COLUMNS,
                                                        "rows": [("U", None, [str(i), "new", "1.0"])
                                                                 for i in range(1, 8001, 50)],
                                                        "lsn": 60}]))):
            r = what, fn()
            faults.append(r)
            # Another tenant keeps working between the faults.
            PL.ok_states(good.rows([R.item_batch(1, 100000 + len(faults), lsn=100 + len(faults))]),
                         "the healthy tenant after the corrupt one's %s" % what)
        answered = [(w, r) for w, r in faults if not r.fault and r.status == 200]
        rowdata = faults[-1][1]
        expect_storage_fault(rowdata, "RowData on a corrupt mirror (Authenticate %r, TableSchema %r)"
                             % (faults[0][1].fault and faults[0][1].fault["code"],
                                faults[1][1].fault and faults[1][1].fault["code"]))
        t = check_tenant_error(d, bad.tenant, "corrupt mirror")
        err = t["last_error"].lower()
        R.check("corrupt" in err or "malformed" in err or "not a database" in err,
                "last_error %r does not say the file is corrupt" % t["last_error"])
        R.check(d.alive() and len(d.worker_pids()) == 2, "somirrord or a worker died")
        print("   corrupt mirror: %s (answered: %s)" % (t["last_error"], [w for w, _ in answered]))


def check_unopenable_file():
    """A mirror path the service cannot open (here a directory where the file should be): a
    retryable StorageError that names the file and the system's reason."""
    with H.server(workers=1) as env:
        p = PL.P(env, "unopenable")
        os.makedirs(p.db_path())
        f = expect_storage_fault(p.call("Authenticate", H.authenticate_body()), "an unopenable mirror")
        R.check(p.db_path() in f["message"] and "(Is a directory)" in f["message"],
                "the fault does not name the file and the reason: %r" % f["message"])


def check_locked_file():
    with H.server(workers=2, **{"tenants.lock_timeout": 2}) as env:
        d = env.daemon
        locked, free = PL.P(env, "locked"), PL.P(env, "unlocked")
        for p in (locked, free):
            p.setup([R.TABLE])
            PL.ok_states(p.rows([R.item_batch(100, 1, lsn=10)]), "load")
        before = R.count_and_lsn(locked)
        holder = sqlite3.connect(locked.db_path(), isolation_level=None, timeout=5)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            box = {}
            th = threading.Thread(target=lambda: box.setdefault("r", locked.rows([R.item_batch(50, 500, lsn=20)])),
                                  daemon=True)
            t0 = time.monotonic()
            th.start()
            time.sleep(0.2)
            # While the locked tenant's call waits, another tenant is served promptly.
            t1 = time.monotonic()
            PL.ok_states(free.rows([R.item_batch(10, 1000, lsn=20)]), "the other tenant during the lock")
            R.check(time.monotonic() - t1 < 1.5, "the other tenant waited %.1fs" % (time.monotonic() - t1))
            th.join(30)
            took = time.monotonic() - t0
            R.check("r" in box, "the call on the locked mirror did not answer in 30 s")
            f = expect_storage_fault(box["r"], "RowData on a locked mirror")
            R.check(took < 15, "the locked call took %.1fs" % took)
            t = check_tenant_error(d, locked.tenant, "locked mirror")
            err = t["last_error"].lower()
            R.check("lock" in err or "busy" in err, "last_error %r does not say the file is locked" % t["last_error"])
        finally:
            holder.close()
        R.check(R.count_and_lsn(locked) == before, "changed while locked: %r" % (R.count_and_lsn(locked),))
        PL.ok_states(locked.rows([R.item_batch(50, 500, lsn=20)]), "RowData after the lock is released")
        R.check(R.count_and_lsn(locked) == (150, 20), "after the lock: %r" % (R.count_and_lsn(locked),))
        print("   locked mirror: %s: %s / %s" % (f["code"], f["message"], t["last_error"]))

        # An operator resync of a named table that fails (the file locked again) is not lost:
        # it stays pending, as one of every table, and the next call carries it out.
        R.check(d.ctl("resync %s item" % locked.tenant).startswith("ok"), "resync refused")
        holder = sqlite3.connect(locked.db_path(), isolation_level=None, timeout=5)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            expect_storage_fault(locked.call("Authenticate", H.authenticate_body()),
                                 "Authenticate carrying out a resync on a locked mirror")
        finally:
            holder.close()
        R.check(R.count_and_lsn(locked) == (150, 20), "resynced while locked: %r" % (R.count_and_lsn(locked),))
        locked.auth()
        R.check(R.count_and_lsn(locked) == (0, -1), "after the resync: %r" % (R.count_and_lsn(locked),))


def main():
    R.run_checks([("disk full on a tmpfs", check_disk_full),
                  ("corrupt mirror file", check_corrupt_file),
                  ("unopenable mirror file", check_unopenable_file),
                  ("locked mirror file", check_locked_file)])


if __name__ == "__main__":
    main()
