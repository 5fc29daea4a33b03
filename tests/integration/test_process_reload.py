#!/usr/bin/env python3
"""somirrord reloads (SIGHUP and the `reload` status command): a broken config keeps the old
one running and is counted; a changed allow-list applies in a new generation; a setting that
needs a restart is reported, and fails the reload when a start would refuse it (tenants.max
below the tenants the state file keeps too); log.level
reaches the new workers; reloads back to back each get every worker; a moved state_file gets
the pauses at once; a failed reload leaves a crash loop's restart delay as it was; 20 reloads
under load refuse no connection; a connection accepted just before a reload gets its first
request answered; a large call in progress across a reload is answered in full."""
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def reload_and_wait(d, generation, via_signal=True):
    old = d.worker_pids()
    if via_signal:
        d.signal(signal.SIGHUP)
    else:
        d.ctl("reload")
    h.wait_until(lambda: d.ctl_json("show info")["generation"] == generation, what="generation %d" % generation)
    return d.wait_workers(d.cfg["workers"], timeout=30, exclude=old)


def check_broken_reload(d):
    workers = d.worker_pids()
    good = copy.deepcopy(d.cfg)
    d.rewrite_config(workers="lots", **{"vendor.issuer": ["not", "a", "string"]})
    d.signal(signal.SIGHUP)
    h.wait_until(lambda: d.ctl_json("show info")["reloads_failed"] == 1, what="the failed reload")
    d.wait_log(r"reload of .* failed")
    info = d.ctl_json("show info")
    assert info["generation"] == 1 and info["reloads"] == 0, info
    assert d.worker_pids() == workers and d.healthz()[0] == 200
    d.cfg = good
    d.rewrite_config()


def unusable_store_directory(directory):
    """A store directory that passes the master's checks (it is missing, and may be made) but no
    worker can make: a link to a volume that is not mounted."""
    link = os.path.join(directory, "not-a-directory")
    os.symlink(os.path.join(directory, "unmounted", "mirrors"), link)
    return link


def check_workers_cannot_start(s):
    """A config that passes the master's checks but whose workers cannot start (the store's
    directory cannot be made) is a failed reload: the old generation goes on serving. (One
    that does not pass them fails before any worker starts: check_restart_settings_checked.)"""
    d = s.daemon
    workers = d.worker_pids()
    info = d.ctl_json("show info")
    good = copy.deepcopy(d.cfg)
    d.rewrite_config(**{"store.sqlite.directory": unusable_store_directory(s.dir)})
    answer = d.ctl("reload")
    assert answer.startswith("error: reload failed: a new worker exited with status 1 before it served: ") \
        and "not-a-directory" in answer, answer
    after = d.ctl_json("show info")
    assert after["reloads_failed"] == info["reloads_failed"] + 1, after
    assert (after["generation"], after["reloads"]) == (info["generation"], info["reloads"]), after
    d.wait_log(r"reload of .* failed; still running on the previous configuration: a new worker exited "
               r"with status 1 before it served: .*not-a-directory")
    time.sleep(0.5)   # the failed generation drains away; the old one is untouched
    assert d.worker_pids() == workers, (d.worker_pids(), workers)
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust1")
    assert h.parse_auth(body)["IsSuccessful"] == "true", body
    d.cfg = good
    d.rewrite_config()


def check_too_many_workers(s, generation):
    """More workers than the registry has slots for (two generations overlap) need a restart:
    the count stays as it was, and nothing keeps failing to start."""
    d = s.daemon
    d.rewrite_config(workers=40)
    old = d.worker_pids()
    d.ctl("reload")
    h.wait_until(lambda: d.ctl_json("show info")["generation"] == generation, what="generation %d" % generation)
    d.wait_workers(2, timeout=30, exclude=old)
    info = d.ctl_json("show info")
    assert "workers" in info["restart_required"] and info["workers"] == 2, info
    assert "no free worker slot" not in d.log()
    d.rewrite_config(workers=2)
    reload_and_wait(d, generation + 1, via_signal=False)
    return generation + 1   # the serving one


def check_start_fails_with_reason():
    """somirrord serves only once its workers do: a worker that cannot start fails the start,
    with the reason, in the foreground and as a daemon (the starting process exits 1)."""
    with h.server(start=False) as s:
        bad = unusable_store_directory(s.dir)
        s.daemon.rewrite_config(**{"store.sqlite.directory": bad})
        for foreground in (True, False):
            args = [s.daemon.binary, "-c", s.config] + (["-f"] if foreground else [])
            p = subprocess.run(args, capture_output=True, text=True, timeout=30)
            out = p.stdout + p.stderr + s.daemon.log()
            assert p.returncode == 1, (foreground, p.returncode, out)
            assert "before it served" in out and "not-a-directory" in out, out
            assert not os.path.exists(s.daemon.pid_file), "pid file left behind"


def check_allow_list(s):
    d = s.daemon
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust2")
    assert h.parse_auth(body)["IsSuccessful"] == "true", body
    d.rewrite_config(**{"tenants.allow": ["Cust1"], "tenants.max": 500, "status_socket_mode": "0660"})
    reload_and_wait(d, 3)   # 2 was the generation that could not start
    info = d.ctl_json("show info")
    # Each setting that waits is named by its own key.
    assert info["reloads"] == 1, info
    assert info["restart_required"] == ["tenants.max", "status_socket_mode"], info
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust2")
    auth = h.parse_auth(body)
    assert auth["IsSuccessful"] == "false" and auth["ErrorMessage"].startswith("TenantNotAllowed"), auth
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust1")
    assert h.parse_auth(body)["IsSuccessful"] == "true", body


def check_full_registry_after_max_changed():
    """A tenant beyond the registry's capacity gets TenantLimit, and the log names the capacity
    in force: after a reload that raised tenants.max (which waits for a restart), the old one,
    not the new value that does not apply yet."""
    with h.server(workers=1, **{"tenants.max": 1}) as s:
        d = s.daemon
        assert h.parse_auth(s.call("Authenticate", h.authenticate_body(), tenant="Cust1")[2])["IsSuccessful"] == "true"
        d.rewrite_config(**{"tenants.max": 50})
        reload_and_wait(d, 2)
        assert d.ctl_json("show info")["restart_required"] == ["tenants.max"]
        status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust2")
        assert status == 500 and h.parse_fault(body)["code"] == "TenantLimit", (status, body)
        line = d.wait_log(r"tenant registry is full.*Cust2.*").group(0)
        assert re.search(r"full \(tenants\.max (\d+)", line).group(1) == "1", line



def check_max_below_kept_state():
    """A reload that lowers tenants.max (which waits for a restart) below the tenants the state
    file keeps paused fails, saying why, rather than the next start, which could not restore
    them; as many as it keeps are enough, and then no other tenant is paused or given a request
    (which the state file would keep)."""
    with h.server(workers=1) as s:
        d = s.daemon
        for tenant in ("Cust1", "Cust2", "Cust3"):
            s.call("Authenticate", h.authenticate_body(), tenant=tenant)
            assert d.ctl("pause %s" % tenant).startswith("ok"), tenant
        d.rewrite_config(**{"tenants.max": 2})
        answer = d.ctl("reload")
        assert answer.startswith("error: reload failed") and ("tenants.max 2 is below the 3 tenants the state "
                                                              "file keeps") in answer, answer
        d.rewrite_config(**{"tenants.max": 3})
        assert d.ctl("reload").startswith("ok"), d.log()
        assert d.ctl_json("show info")["restart_required"] == ["tenants.max"]
        # The registry keeps its size until the restart, but the state file may keep no more
        # tenants than the new tenants.max: a fourth is refused, a kept one is not.
        for command in ("pause Cust4", "resync Cust4 all", "reset Cust4"):
            answer = d.ctl(command)
            assert answer.startswith("error: cannot %s Cust4: the state file keeps 3 tenants already"
                                     % command.split()[0]), (command, answer)
        assert d.ctl("reset Cust1").startswith("ok")
        assert d.stop() == 0
        d.start()   # ... and the start restores them
        assert d.ctl_json("show tenant Cust3")["tenant"]["paused"] is True


def check_log_level_reaches_workers(d, generation):
    """log.level applies to the new generation's workers too (they used to keep the master's
    level from before the reload), both ways."""
    d.rewrite_config(**{"log.level": "info"})
    reload_and_wait(d, generation + 1)
    d.rewrite_config(**{"log.level": "debug"})
    reload_and_wait(d, generation + 2)
    d.wait_log(r"worker of generation %d serving" % (generation + 2))
    # generation + 1's workers served long before those of generation + 2 started
    assert "worker of generation %d serving" % (generation + 1) not in d.log(), \
        "a worker logged at debug after log.level became info"
    return generation + 2


class Hammer:
    """Health checks from threads until stopped: every answer and every failure (a refused or
    reset connection) is kept."""

    def __init__(self, d, threads=1):
        self.answers, self.errors, self.stop = [], [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(d,)) for _ in range(threads)]

    def run(self, d):
        while not self.stop.is_set():
            try:
                self.answers.append(d.healthz()[0])
            except Exception as e:  # a refused or reset connection is the failure
                self.errors.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def check(self, least):
        assert not self.errors, self.errors[:5]
        assert len(self.answers) >= least and set(self.answers) == {200}, \
            (len(self.answers), set(self.answers))


def check_reloads_back_to_back(d, generation):
    """Reloads in quick succession each get a whole generation: a new one waits for earlier
    generations' draining workers to give up their registry slots, rather than start short of
    workers (and later reloads fail for want of slots). Requests keep coming meanwhile, so that
    the draining workers have connections to finish."""
    with Hammer(d) as hammer:
        for _ in range(12):
            answer = d.ctl("reload", timeout=30)
            assert answer.startswith("ok"), answer
            generation += 1
            serving = [w for w in d.ctl_json("show workers")["workers"] if w["generation"] == generation]
            assert len(serving) == 2, (generation, d.ctl_json("show workers"))
    hammer.check(1)
    assert "no free worker slot" not in d.log(), d.log()[-3000:]
    return generation


def check_state_file_moved(s, generation):
    """A state_file changed by a reload gets the operator's pauses at once, so that the next
    start finds them (no pause or resume may come to write it before)."""
    d = s.daemon
    assert d.ctl("pause Cust1").startswith("ok")
    moved = os.path.join(s.dir, "moved.state")
    d.rewrite_config(state_file=moved)
    assert d.ctl("reload").startswith("ok")
    with open(moved) as f:
        assert json.load(f)["paused"] == ["Cust1"], open(moved).read()
    assert d.ctl("resume Cust1").startswith("ok")
    return generation + 1


def check_restart_settings_checked(s):
    """A setting that waits for a restart, changed to something the start would refuse, fails
    the reload, saying why, rather than the next start; so does a state_file that cannot be
    written."""
    d = s.daemon
    # links planted where the start refuses them (somirrord(8), PRIVILEGES)
    _, log_link, pid_link = h.planted_links(s.dir)
    cases = (({"user": "no-such-user-here"}, "user no-such-user-here: no such user"),
             ({"pid_file": s.dir}, "pid_file %s: a directory is there" % s.dir),
             ({"log.file": log_link}, "log.file %s: a symbolic link is there (refused)" % log_link),
             ({"pid_file": pid_link}, "pid_file %s: a file with other hard links is there (refused)" % pid_link),
             ({"status_socket": os.path.join(s.dir, "x" * 120)}, "path too long"),
             ({"listen": "no-such-host.invalid:8080"}, "listen no-such-host.invalid:8080: "),
             ({"state_file": s.dir}, "state_file: the operator state cannot be written there"),
             ({"store.sqlite.directory": os.path.join(s.dir, "somirrord.log", "mirrors")},
              "mirrors: Not a directory"))
    info = d.ctl_json("show info")
    for change, reason in cases:
        good = copy.deepcopy(d.cfg)
        d.rewrite_config(**change)
        d.cfg = good   # what the daemon goes on running on
        answer = d.ctl("reload")
        d.rewrite_config()
        assert answer.startswith("error: reload failed") and reason in answer, (change, answer)
    after = d.ctl_json("show info")
    assert after["reloads_failed"] == info["reloads_failed"] + len(cases), after
    assert (after["generation"], after["restart_required"]) == (info["generation"], info["restart_required"]), after


def check_failed_reload_keeps_backoff(s):
    """Workers that keep dying at start are started again after a growing delay; a reload whose
    own workers cannot start either leaves that delay as it was, not back at 100 ms."""
    d = s.daemon
    mirrors = d.cfg["store"]["sqlite"]["directory"]
    shutil.rmtree(mirrors)
    os.symlink(os.path.join(s.dir, "unmounted"), mirrors)   # passes the checks; no worker starts
    for pid in d.worker_pids():
        os.kill(pid, signal.SIGKILL)
    delays = lambda: [int(n) for n in re.findall(r"next start in (\d+) ms", d.log())]
    h.wait_until(lambda: max(delays() or [0]) >= 800, 30, what="the restart delay growing")
    answer = d.ctl("reload")
    assert answer.startswith("error: reload failed: a new worker exited"), answer
    seen = len(delays())   # after the answer: an old worker's death during the reload is not it
    h.wait_until(lambda: len(delays()) > seen, 30, what="a restart after the failed reload")
    assert delays()[seen] >= 800, delays()
    os.unlink(mirrors)
    os.makedirs(mirrors)
    d.ctl("reload")
    d.wait_workers(2, timeout=30)
    assert d.healthz()[0] == 200


def check_no_refusal_under_load(d, generation):
    with Hammer(d, threads=3) as hammer:
        for _ in range(20):
            generation += 1
            reload_and_wait(d, generation, via_signal=generation % 2 == 0)
    hammer.check(101)
    return generation


def check_fresh_connection_across_reload(d, generation):
    """Connections the workers accepted just before a reload, idle since, still get their first
    request answered: an old worker waits for them as for request bytes (it had exited at once
    when nothing had arrived for a second, closing them unanswered)."""
    time.sleep(1.2)   # every worker quiet for longer than its drain wait
    conns = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(d.cfg["workers"])]
    time.sleep(0.3)   # accepted by the old workers
    d.signal(signal.SIGHUP)
    time.sleep(0.3)   # the old workers are draining
    for c in conns:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: somirror\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = c.recv(4096)
            assert data, "closed without an answer after %r" % answer
            answer += data
        assert answer.startswith(b"HTTP/1.1 200"), answer
        c.close()
    h.wait_until(lambda: d.ctl_json("show info")["generation"] == generation + 1, what="the reload")
    return generation + 1


def check_large_call_across_reload(s, generation):
    d = s.daemon
    schema = h.table_schema_body([{"name": "contact", "pk": ["contact_id"], "columns": [
        ("contact_id", "int", False), ("name", "nvarchar(220)", True)]}])
    status, _, body = s.call("TableSchema", schema)
    assert status == 200, body
    rows = 60000
    batch = {"table": "contact", "columns": ["contact_id", "name"], "lsn": 900,
             "rows": [("I", None, [str(i), "name number %d with some text" % i]) for i in range(rows)]}
    result = {}

    def big_call():
        result["answer"] = s.call("RowData", h.row_data_body([batch]))
    t = threading.Thread(target=big_call)
    t.start()
    time.sleep(0.3)
    d.signal(signal.SIGHUP)
    t.join(120)
    status, _, body = result["answer"]
    assert status == 200, body[:500]
    state = h.parse_table_states(body)[0]
    assert state["Inserted"] == str(rows) and state["Lsn"] == "900", state
    h.wait_until(lambda: d.ctl_json("show info")["generation"] == generation + 1, what="the reload")


def check_reload_from_status_logged():
    """A reload asked on the status socket is logged as asked there, as SIGHUP's is."""
    with h.server(workers=1) as s:
        d = s.daemon
        assert d.ctl("reload").startswith("ok")
        d.wait_log(r"info \[%d\] status socket: reloading %s" % (d.pid, re.escape(d.config_path)))


def main():
    check_reload_from_status_logged()
    check_start_fails_with_reason()
    with h.server(workers=2) as s:
        d = s.daemon
        check_broken_reload(d)
        check_workers_cannot_start(s)
        check_allow_list(s)
        generation = check_too_many_workers(s, 4)
        generation = check_log_level_reaches_workers(d, generation)
        generation = check_reloads_back_to_back(d, generation)
        generation = check_state_file_moved(s, generation)
        check_restart_settings_checked(s)
        generation = check_no_refusal_under_load(d, generation)
        generation = check_fresh_connection_across_reload(d, generation)
        check_large_call_across_reload(s, generation)
        assert d.stop() == 0
    with h.server(workers=2) as s:
        check_failed_reload_keeps_backoff(s)
    check_full_registry_after_max_changed()
    check_max_below_kept_state()
    print("ok")


if __name__ == "__main__":
    main()
