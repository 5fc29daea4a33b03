"""somirror-task's long-running mode (`run -c task.yaml`, the vendor's operations center in
small): nothing cycles inside the pause window; tenants with an approved, activated application cycle on the schedule; a SIGHUP rereads
the file; a tenant that newly approves the application gets its first cycle at once; a withdrawn
approval stops that tenant's cycles; a deactivated application stops every cycle; SIGTERM stops
the task. A task.yaml that is missing exits 2. A call retried after the vendor token's reuse
window (a minute) carries a freshly signed token (against a scripted receiver). A step of the
wall clock neither stalls nor hurries the schedule (libfaketime). A cycle of many tables is
reported whole by --once --json."""

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

APP = harness.DEFAULT_APP_ID


def write_task_yaml(path, port, approved_t1, approved_t2, activated=True, every="2s", pause=None,
                    retries=None, vendor_key="keys/vendor.key", vendor_cert="keys/vendor.crt"):
    """JSON is YAML: the task config with paths relative to its own directory. retries:
    (tries, backoff_ms)."""
    conf = {
        "vendor": {"key": vendor_key, "certificate": vendor_cert},
        "applications": [{"id": APP, "public_key": "keys/app.pub",
                          "url": "http://127.0.0.1:%d/" % port, "activated": activated}],
        "tenants": [
            {"context": "Sched1", "source": "s1.db", "approved": [APP] if approved_t1 else []},
            {"context": "Sched2", "source": "s2.db", "approved": [APP] if approved_t2 else []},
        ],
        "schedule": {"every": every, "parallel": 2},
    }
    if pause:
        conf["schedule"]["pause"] = pause
    if retries:
        conf["schedule"]["tries"], conf["schedule"]["backoff_ms"] = retries
    with open(path, "w") as f:
        json.dump(conf, f, indent=2)


def calls(env, tenant):
    try:
        return env.daemon.ctl_json("show tenant " + tenant)["tenant"]["calls"]
    except (KeyError, ValueError):
        return 0   # not seen yet: the status answers an error line


def completed(env, tenant):
    try:
        return env.daemon.ctl_json("show tenant " + tenant)["tenant"]["last_completed"] or 0
    except (KeyError, ValueError):
        return 0


class BusyThenRefused(http.server.BaseHTTPRequestHandler):
    """A receiver whose first Authenticate is a retryable TenantBusy fault and whose next ones
    are refused; it keeps the claims of every vendor token it gets in server.claims."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.server.claims.append(harness.vendor_token_claims(body))
        if len(self.server.claims) == 1:
            status, data = 500, harness.fault_envelope("TenantBusy", "busy", True)
        else:
            status, data = 200, harness.envelope(
                '<AuthenticateResponse xmlns="%s"><IsSuccessful>false</IsSuccessful>'
                '<ErrorMessage>InvalidToken: scripted</ErrorMessage><SignedApplicationToken/>'
                '<SupportedInterfaces>1</SupportedInterfaces><SuperOfficeMirroringBuild>'
                'scripted</SuperOfficeMirroringBuild><ClientState/><AdditionalInformationJson/>'
                '</AuthenticateResponse>' % harness.NS).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def retry_gets_a_fresh_token(task, work):
    """A retry after the token's one-minute reuse window carries a newly signed token."""
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BusyThenRefused)
    receiver.claims = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        conf = os.path.join(work, "retry.yaml")
        write_task_yaml(conf, receiver.server_address[1], approved_t1=True, approved_t2=False,
                        retries=(2, 61000))
        proc = subprocess.run([task, "run", "-c", conf, "--once"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        assert proc.returncode == 1, "exit %d: %s" % (proc.returncode, proc.stderr)
        assert len(receiver.claims) == 2, "%d Authenticate calls: %s" % (len(receiver.claims), proc.stderr)
        first, retry = receiver.claims
        assert first["nonce"] == retry["nonce"], (first, retry)
        assert retry["nbf"] >= first["nbf"] + 60, "the retry resent a stale token: %s %s" % (first, retry)
    finally:
        receiver.shutdown()
        receiver.server_close()


def wall_clock_steps(task, work):
    """The schedule keeps time by the monotonic clock: a step of the wall clock two hours back
    (an NTP step, a hardware clock corrected after boot) does not stall the cycles for two hours,
    nor does one forward hurry them. libfaketime steps the wall clock of the task alone."""
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BusyThenRefused)
    receiver.claims = []   # one Authenticate per cycle (tries 1)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    offset = os.path.join(work, "faketime")
    with open(offset, "w") as f:
        f.write("+0\n")
    conf = os.path.join(work, "clock.yaml")
    write_task_yaml(conf, receiver.server_address[1], approved_t1=True, approved_t2=False, every="1s",
                    retries=(1, 0))
    env = dict(os.environ, **harness.faketime_env(offset))
    proc = subprocess.Popen([task, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        harness.wait_until(lambda: len(receiver.claims) >= 2, 20, what="cycles on the schedule")
        for step in ("-2h", "+3h"):
            with open(offset, "w") as f:
                f.write(step + "\n")
            before = len(receiver.claims)
            time.sleep(4)
            cycles = len(receiver.claims) - before
            assert 2 <= cycles <= 6, "%d cycles in 4 s (every 1 s) after the wall clock stepped %s" % (cycles, step)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        receiver.shutdown()
        receiver.server_close()


def long_result_is_whole(task, work, env, keys):
    """run -c --once --json reports a cycle of many tables whole: its result line is longer
    than 64 KiB (400 tables with long names)."""
    source = os.path.join(work, "wide.db")
    db = sqlite3.connect(source)
    for i in range(400):
        db.execute("CREATE TABLE t%03d_%s (id int NOT NULL PRIMARY KEY)" % (i, "x" * 120))
    db.commit()
    db.close()
    subprocess.run([task, "provision", "--db", source], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    conf = os.path.join(work, "wide.yaml")
    with open(conf, "w") as f:
        json.dump({"vendor": {"key": keys.vendor_key, "certificate": keys.vendor_cert},
                   "applications": [{"id": APP, "public_key": keys.app_pub,
                                     "url": "http://127.0.0.1:%d/" % env.daemon.port}],
                   "tenants": [{"context": "Wide1", "source": source, "approved": [APP]}]}, f)
    proc = subprocess.run([task, "run", "-c", conf, "--once", "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, "exit %d: %s" % (proc.returncode, proc.stderr[-2000:])
    cycles = json.loads(proc.stdout)["cycles"]
    assert len(cycles) == 1 and cycles[0]["result"] == "ok" and len(cycles[0]["tables"]) == 400, \
        proc.stdout[:400]


def main():
    task = harness.program("somirror-task")
    with tempfile.TemporaryDirectory(prefix="smsched") as work:
        subprocess.run([task, "keys", "--out", os.path.join(work, "keys")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        keys = harness.Keys(*(os.path.join(work, "keys", n)
                              for n in ("vendor.key", "vendor.crt", "app.xml", "app.pub")))
        for name, seed in (("s1.db", "1"), ("s2.db", "2")):
            db = os.path.join(work, name)
            for args in (["gen", "--db", db, "--scale", "20", "--seed", seed], ["provision", "--db", db]):
                subprocess.run([task] + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with harness.server(keys=keys) as env:
            conf = os.path.join(work, "task.yaml")
            # Inside the nightly pause window nothing cycles.
            now = time.gmtime()
            minute = now.tm_hour * 60 + now.tm_min
            window = "%02d:%02d-%02d:%02d" % ((minute - 2) % 1440 // 60, (minute - 2) % 60,
                                              (minute + 3) % 1440 // 60, (minute + 3) % 60)
            write_task_yaml(conf, env.daemon.port, approved_t1=True, approved_t2=False, pause=window)
            log = open(os.path.join(work, "task.log"), "w")
            proc = subprocess.Popen([task, "run", "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                time.sleep(4)
                assert calls(env, "Sched1") == 0, "a tenant cycled inside the pause window " + window
                write_task_yaml(conf, env.daemon.port, approved_t1=True, approved_t2=False)
                os.kill(proc.pid, signal.SIGHUP)

                # Sched1 cycles, and again on the schedule; Sched2 has not approved the application.
                harness.wait_until(lambda: completed(env, "Sched1"), 30, what="Sched1's first cycle")
                first = completed(env, "Sched1")
                harness.wait_until(lambda: completed(env, "Sched1") > first, 30,
                                   what="Sched1's next scheduled cycle")
                assert calls(env, "Sched2") == 0, "Sched2 cycled without approving the application"

                # Sched2 approves: its first cycle comes at once, not at the next period (an hour).
                write_task_yaml(conf, env.daemon.port, approved_t1=True, approved_t2=True, every="1h")
                os.kill(proc.pid, signal.SIGHUP)
                harness.wait_until(lambda: completed(env, "Sched2"), 10, what="Sched2's first cycle")

                # Sched1 withdraws its approval: its cycles stop while Sched2's go on.
                write_task_yaml(conf, env.daemon.port, approved_t1=False, approved_t2=True)
                os.kill(proc.pid, signal.SIGHUP)
                time.sleep(2.5)   # a Sched1 cycle already started when the HUP came may finish
                frozen = calls(env, "Sched1")
                time.sleep(5)     # more than two schedule periods
                assert calls(env, "Sched1") == frozen, "Sched1 kept cycling after withdrawing approval"
                before = completed(env, "Sched2")
                harness.wait_until(lambda: completed(env, "Sched2") > before, 30,
                                   what="Sched2's scheduled cycles")

                # The application is deactivated: no tenant cycles any more.
                write_task_yaml(conf, env.daemon.port, approved_t1=True, approved_t2=True, activated=False)
                os.kill(proc.pid, signal.SIGHUP)
                time.sleep(2.5)
                frozen = (calls(env, "Sched1"), calls(env, "Sched2"))
                time.sleep(5)
                assert (calls(env, "Sched1"), calls(env, "Sched2")) == frozen, \
                    "cycles went on for a deactivated application"

                # A reload whose vendor key cannot be read (renamed while being replaced) keeps
                # the configuration in use; the scheduler lives on.
                key = os.path.join(work, "keys", "vendor.key")
                os.rename(key, key + ".moved")
                try:
                    os.kill(proc.pid, signal.SIGHUP)
                    harness.wait_until(lambda: "keeping the configuration in use" in open(log.name).read(),
                                       10, what="the failed reload's log line")
                    time.sleep(0.5)
                    assert proc.poll() is None, "somirror-task died (%s) at a reload with its key gone" % proc.returncode
                finally:
                    os.rename(key + ".moved", key)

                os.kill(proc.pid, signal.SIGTERM)
                rc = proc.wait(30)
                assert rc == 0, "somirror-task exited %d on SIGTERM" % rc
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                log.close()
            long_result_is_whole(task, work, env, keys)
        proc = subprocess.run([task, "run", "-c", os.path.join(work, "missing.yaml"), "--once"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert proc.returncode == 2, "a missing task.yaml exited %d" % proc.returncode
        # A task.yaml that loads but whose vendor key or certificate does not: exit 2, saying why.
        conf = os.path.join(work, "badkeys.yaml")
        for key, cert, why in (("keys/missing.key", "keys/vendor.crt", "missing.key"),
                               ("keys/vendor.key", "keys/app.pub", "app.pub")):
            write_task_yaml(conf, 1, approved_t1=True, approved_t2=False, vendor_key=key, vendor_cert=cert)
            proc = subprocess.run([task, "run", "-c", conf, "--once"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=30)
            assert proc.returncode == 2 and why in proc.stderr, (key, cert, proc.returncode, proc.stderr)
        retry_gets_a_fresh_token(task, work)
        wall_clock_steps(task, work)
    print("task schedule: ok")


if __name__ == "__main__":
    main()
