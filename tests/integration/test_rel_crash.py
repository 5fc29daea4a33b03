#!/usr/bin/env python3
"""Fault injection with real processes (design.md "Correctness never rests on the shared-memory
lock alone", "Tenant locks survive a worker that dies holding them"):

- SIGKILL of the worker busy with a 50,000-row RowData, at three moments (as soon as its slot
  says busy; when the mirror's WAL has grown, i.e. inside the transaction; a little later): the
  mirror holds either all of the call's rows and its position or none of them (row count and
  metadata lsn agree), the tenant is usable at once (the next call succeeds, no TenantBusy) and
  `show tenant X json` last_error names the interrupted call.
- SIGKILL of the master: the workers finish the call in hand and exit within a bound (they do
  not serve forever as orphans); a new somirrord starts on the same pid file and status socket
  paths without manual cleanup, and serves.
- A worker orphaned by the master's SIGKILL (also one already draining after a SIGTERM) with
  a request still trickling in exits within shutdown_timeout: no master is left to kill it; so
  does one whose call waits for a lock on its mirror file, which holds up its event loop."""
import os
import signal
import socket
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

ROWS = 50000
LOCK_TIMEOUT = 5


def call_in_thread(p, batches):
    box = {}

    def go():
        try:
            box["resp"] = p.rows(batches)
        except Exception as e:  # noqa: BLE001 - the connection dies with the worker
            box["error"] = e
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th, box


def kill_round(env, phase):
    d = env.daemon
    p = PL.P(env, "kill_%s" % phase)
    p.setup([R.TABLE])
    PL.ok_states(p.rows([R.item_batch(10, 1, lsn=10)]), "baseline RowData")
    before = R.count_and_lsn(p)
    R.check(before == (10, 10), "baseline %r" % (before,))
    wal = p.db_path() + "-wal"
    wal0 = os.path.getsize(wal) if os.path.exists(wal) else 0

    th, box = call_in_thread(p, [R.item_batch(ROWS, 1000, lsn=5000)])
    victim = H.wait_until(lambda: R.busy_worker(d, p.tenant, "RowData") or box or None, 20,
                          interval=0.002, what="a busy worker")
    R.check(isinstance(victim, int), "the call ended before its worker was seen busy: %r" % box)
    if phase == "wal":
        def grown():
            if box:
                return "done"
            return os.path.exists(wal) and os.path.getsize(wal) > wal0 + 256 * 1024
        H.wait_until(grown, 20, interval=0.001, what="the WAL to grow")
    elif phase == "late":
        time.sleep(0.08)
    os.kill(victim, signal.SIGKILL)
    th.join(60)
    R.check(not th.is_alive(), "the killed call's client never returned")
    H.wait_until(lambda: not H.pid_alive(victim), 10, what="the killed worker to go")

    after = R.count_and_lsn(p)
    outcome = "none" if after == before else "all" if after == (10 + ROWS, 5000) else None
    R.check(outcome, "%s: half-applied call: rows/lsn %r (before %r, the call: %d rows, lsn 5000)"
            % (phase, after, before, ROWS))
    answered = "resp" in box and box["resp"].status == 200 and not box["resp"].fault
    if answered:
        R.check(outcome == "all", "answered 200 but rows/lsn %r" % (after,))

    # The tenant is usable at once: no TenantBusy, no waiting for the lock timeout.
    t0 = time.monotonic()
    r = p.rows([R.item_batch(5, 900000, lsn=9000)])
    took = time.monotonic() - t0
    if r.fault:
        raise AssertionError("%s: the call after the kill failed after %.1fs: %r" % (phase, took, r.fault))
    PL.ok_states(r, "RowData after the kill")
    R.check(took < LOCK_TIMEOUT - 1, "%s: the call after the kill took %.1fs (lock not freed?)" % (phase, took))
    R.check(R.count_and_lsn(p)[1] == 9000, "lsn after the next call: %r" % (R.count_and_lsn(p),))

    if not answered:
        t = d.ctl_json("show tenant %s" % p.tenant)["tenant"]
        err = t.get("last_error") or ""
        R.check("interrupt" in err.lower() or str(victim) in err,
                "%s: last_error %r does not mention the interrupted call (worker %d)" % (phase, err, victim))
    print("   phase %s: killed %d, outcome %s%s" % (phase, victim, outcome,
                                                  " (answered before the kill)" if answered else ""))
    d.wait_workers(2, timeout=15)


def check_kill_worker():
    with H.server(workers=2, **{"tenants.lock_timeout": LOCK_TIMEOUT, "log.level": "info"}) as env:
        failures = []
        for phase in ("busy", "wal", "late"):
            try:
                kill_round(env, phase)
            except AssertionError as e:
                failures.append(str(e))
        R.check(env.daemon.alive(), "the master died")
        if failures:
            raise AssertionError("; ".join(failures))


def check_kill_master():
    with H.server(workers=2, **{"log.level": "info"}) as env:
        d = env.daemon
        p = PL.P(env, "killmaster")
        p.setup([R.TABLE])
        workers = d.wait_workers(2)
        th, box = call_in_thread(p, [R.item_batch(ROWS, 1, lsn=777)])
        H.wait_until(lambda: R.busy_worker(d, p.tenant) or box, 20, interval=0.002, what="a busy worker")
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(10)
        th.join(60)
        # The call in hand is finished and answered.
        R.check(R.count_and_lsn(p) in ((0, -1), (ROWS, 777)), "half-applied: %r" % (R.count_and_lsn(p),))
        R.check("resp" in box, "the call in hand when the master died was not answered: %r" % box.get("error"))
        PL.ok_states(box["resp"], "the call in hand when the master died")
        R.check(R.count_and_lsn(p) == (ROWS, 777), "rows/lsn %r" % (R.count_and_lsn(p),))
        # Orphaned workers must go, within a bound.
        try:
            H.wait_until(lambda: not any(H.pid_alive(w) for w in workers), 15,
                         what="the orphaned workers to exit")
        except AssertionError:
            alive = [w for w in workers if H.pid_alive(w)]
            serving = False
            try:
                serving = d.healthz()[0] == 200
            except OSError:
                pass
            raise AssertionError("workers %s still alive 15 s after the master's SIGKILL%s" %
                                 (alive, " and still serving /healthz" if serving else ""))
        # A new somirrord on the same paths, no cleanup.
        d2 = H.Daemon(env.config)
        with d2:
            try:
                d2.start(timeout=15)
            except AssertionError as e:
                raise AssertionError("a new somirrord on the same pid file and socket did not start: "
                                     "%s" % str(e)[-600:])
            PL.P(env, "afterrestart").auth()
            with open(d2.pid_file) as f:
                R.check(int(f.read()) == d2.pid, "the pid file does not name the new master")
            R.check(d2.ctl_json("show info")["pid"] == d2.pid, "the status socket is not the new master's")


ORPHAN_SHUTDOWN_TIMEOUT = 2


def orphan_round(env, term_first):
    """One client sends a request a byte at a time (request_timeout is far off) while the
    master is SIGKILLed (after a SIGTERM when term_first): the worker holding it must exit
    within shutdown_timeout, as the master would have killed it then."""
    d = env.daemon
    d.start()
    worker = d.wait_workers(1)[0]
    body = H.envelope(H.authenticate_body(), env.token("Orphan")).encode()
    head = ("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: \"%sAuthenticate\"\r\n"
            "Content-Length: %d\r\n\r\n" % (H.ACTION_PREFIX, len(body))).encode()
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(head + body[:10])
        time.sleep(0.3)
        if term_first:
            d.signal(signal.SIGTERM)
            time.sleep(0.3)
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(5)
        killed = time.monotonic()
        sent = 10
        while H.pid_alive(worker) and time.monotonic() - killed < ORPHAN_SHUTDOWN_TIMEOUT + 10:
            try:
                s.sendall(body[sent:sent + 1])
            except OSError:
                break
            sent += 1
            time.sleep(0.2)
        took = time.monotonic() - killed
    R.check(not H.pid_alive(worker), "%s: the orphaned worker %d still runs %.0f s after the master's "
            "SIGKILL (shutdown_timeout %d s)" % ("after SIGTERM" if term_first else "serving", worker, took,
                                                  ORPHAN_SHUTDOWN_TIMEOUT))
    R.check(took < ORPHAN_SHUTDOWN_TIMEOUT + 4, "the orphaned worker took %.1f s to exit" % took)
    d.wait_log(r"warn \[%d\] the master has exited: the worker ends itself" % worker)


def orphan_blocked_round(env):
    """The worker's call waits in SQLite for a lock another process holds on the mirror file
    (tenants.lock_timeout is far off) when the master is SIGKILLed: its event loop, held up, runs
    no timer, yet the worker must exit within shutdown_timeout."""
    d = env.daemon
    d.start()
    worker = d.wait_workers(1)[0]
    p = PL.P(env, "OrphanBlocked")
    p.setup([R.TABLE])
    holder = sqlite3.connect(p.db_path(), isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        th, box = call_in_thread(p, [R.item_batch(10, 1, lsn=10)])
        H.wait_until(lambda: R.busy_worker(d, p.tenant, "RowData") or box or None, 20, interval=0.01,
                     what="the call waiting for the mirror's lock")
        R.check(not box, "the call on the locked mirror ended: %r" % box)
        time.sleep(0.3)
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(5)
        killed = time.monotonic()
        H.wait_until(lambda: not H.pid_alive(worker), ORPHAN_SHUTDOWN_TIMEOUT + 10, interval=0.05,
                     what="the orphaned worker, its call waiting for a lock, to exit")
        took = time.monotonic() - killed
        th.join(10)
    finally:
        holder.close()
    R.check(took < ORPHAN_SHUTDOWN_TIMEOUT + 4, "the orphaned worker took %.1f s to exit" % took)


def check_orphan_bounded():
    with H.server(start=False, workers=1, shutdown_timeout=ORPHAN_SHUTDOWN_TIMEOUT,
                  **{"limits.request_timeout": 120, "tenants.lock_timeout": 120, "log.level": "info"}) as env:
        for term_first in (False, True):
            orphan_round(env, term_first)
        orphan_blocked_round(env)


def main():
    R.run_checks([("SIGKILL of the busy worker mid-RowData", check_kill_worker),
                  ("SIGKILL of the master", check_kill_master),
                  ("an orphaned worker exits within shutdown_timeout", check_orphan_bounded)])


if __name__ == "__main__":
    main()
