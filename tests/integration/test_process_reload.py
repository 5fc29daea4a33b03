#!/usr/bin/env python3
"""somirrord reloads (SIGHUP and the `reload` status command): a broken config keeps the old
one running and is counted; a changed allow-list applies in a new generation; a setting that
needs a restart is reported; 20 reloads under load refuse no connection; a connection accepted
just before a reload gets its first request answered; a large call in progress across a reload
is answered in full."""
import copy
import os
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
    """A store directory no worker can make: its parent is a regular file."""
    blocker = os.path.join(directory, "not-a-directory")
    with open(blocker, "w") as f:
        f.write("x")
    return os.path.join(blocker, "mirrors")


def check_workers_cannot_start(s):
    """A config that passes the master's checks but whose workers cannot start (the store's
    directory cannot be made) is a failed reload: the old generation goes on serving."""
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
    d.rewrite_config(**{"tenants.allow": ["Cust1"], "tenants.max": 500})
    reload_and_wait(d, 3)   # 2 was the generation that could not start
    info = d.ctl_json("show info")
    assert info["reloads"] == 1 and "tenants.max" in info["restart_required"], info
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust2")
    auth = h.parse_auth(body)
    assert auth["IsSuccessful"] == "false" and auth["ErrorMessage"].startswith("TenantNotAllowed"), auth
    status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust1")
    assert h.parse_auth(body)["IsSuccessful"] == "true", body


def check_no_refusal_under_load(d, generation):
    errors, answers, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                answers.append(d.healthz()[0])
            except Exception as e:  # a refused or reset connection is the failure
                errors.append(repr(e))
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            generation += 1
            reload_and_wait(d, generation, via_signal=generation % 2 == 0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert len(answers) > 100 and set(answers) == {200}, (len(answers), set(answers))
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


def main():
    check_start_fails_with_reason()
    with h.server(workers=2) as s:
        d = s.daemon
        check_broken_reload(d)
        check_workers_cannot_start(s)
        check_allow_list(s)
        generation = check_too_many_workers(s, 4)
        generation = check_no_refusal_under_load(d, generation)
        generation = check_fresh_connection_across_reload(d, generation)
        check_large_call_across_reload(s, generation)
        assert d.stop() == 0
    print("ok")


if __name__ == "__main__":
    main()
