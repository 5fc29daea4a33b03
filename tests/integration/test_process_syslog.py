"""log.file: syslog: the master, its workers and the hooks' supervisors log to syslog, and a
process that logs stays whole. glibc's syslog socket, opened by the master, was closed with the
descriptors a new worker (or a hook's supervisor) does not inherit, while glibc kept its number:
a worker's epoll instance took that number and its first log line closed it (the worker died
with the call in hand); a supervisor's pipe took it and the hook's output was lost. Where there
is no /dev/log (or a stale one) and the test runs as root, it binds one for its duration and
reads what is logged; where a syslog daemon has one, only the processes are checked; without
either, it is skipped."""

import os
import re
import signal
import socket
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DEV_LOG = "/dev/log"
TENANT = "SysT"
HOOK = "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do echo \"hookline $i\"; done\n"


def stale(path):
    """Whether path is a socket no one reads (left by a run that was killed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False


class SyslogCatcher:
    """A datagram socket bound at /dev/log for the test, keeping what arrives; removed at the
    end, also when the test is stopped by a signal."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(DEV_LOG)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except OSError:
                return

    def text(self):
        return "\n".join(self.lines)

    def close(self):
        self.sock.close()
        os.unlink(DEV_LOG)


def main():
    if os.path.exists(DEV_LOG) and stale(DEV_LOG) and os.geteuid() == 0:
        os.unlink(DEV_LOG)
    if not os.path.exists(DEV_LOG) and os.geteuid() != 0:
        harness.skip("no %s, and binding one needs root" % DEV_LOG)
    # A running syslog daemon's socket: the processes are checked, what they log cannot be.
    catcher = None if os.path.exists(DEV_LOG) else SyslogCatcher()
    try:
        with harness.server(start=False, workers=2, **{"log.file": "syslog", "log.level": "info"}) as env:
            hook = os.path.join(env.dir, "hook.sh")
            with open(hook, "w") as f:
                f.write(HOOK)
            os.chmod(hook, os.stat(hook).st_mode | stat.S_IXUSR)
            env.daemon.rewrite_config(**{"hooks.cycle_completed": [hook], "hooks.timeout": 5})
            env.daemon.start()
            port = env.daemon.port
            for i in range(4):   # a refused token is a log line in the worker
                status, _, body = harness.soap(port, "Authenticate", harness.authenticate_body(),
                                               env.token(TENANT, iss="wrong issuer"), timeout=10)
                assert status == 200 and harness.parse_auth(body)["IsSuccessful"] == "false", (status, body)
            time.sleep(0.3)
            restarts = env.daemon.ctl_json("show info")["worker_restarts"]
            assert restarts == 0, "%d workers died after logging to syslog" % restarts
            status, _, body = harness.soap(port, "ReplicationCompleted", harness.replication_completed_body(),
                                           env.token(TENANT), timeout=10)
            assert status == 200 and harness.parse_fault(body) is None, body
            harness.wait_until(lambda: env.daemon.ctl_json("show tenant %s" % TENANT)["tenant"].get("last_hook"),
                               10, what="the hook's run")
            hook_run = env.daemon.ctl_json("show tenant %s" % TENANT)["tenant"]["last_hook"]
            assert hook_run.startswith("cycle_completed: exit 0"), hook_run
            if not catcher:
                print("syslog: ok (%s is a syslog daemon's: what was logged not read)" % DEV_LOG)
                return
            harness.wait_until(lambda: len(re.findall(r"hookline \d+", catcher.text())) == 10, 10,
                               what="the hook's ten lines in syslog (got %r)" % re.findall(r"hookline \d+", catcher.text()))
            env.daemon.stop()
            harness.wait_until(lambda: "Authenticate refused" in catcher.text(), 5, what="a worker's line in syslog")
            text = catcher.text()
            assert "somirrord" in text and "started" in text, text[-2000:]
            assert not re.search(r"exited with status [1-9]|killed by", text), \
                "a worker did not exit cleanly:\n" + text[-2000:]
    finally:
        if catcher:
            catcher.close()
    print("syslog: ok")


if __name__ == "__main__":
    main()
