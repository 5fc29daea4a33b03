"""log.file: syslog: the master and its workers log to syslog, and a worker that logs stays
alive. glibc's syslog socket, opened by the master, was closed with a new worker's inherited
descriptors while glibc kept its number; the worker's epoll instance took that number, and its
first log line closed it, so the worker died with the call in hand. Needs /dev/log: when there
is none and the test runs as root, it binds one for its duration and reads what arrives (the
master's and the workers' lines are then checked too); otherwise it is skipped."""

import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DEV_LOG = "/dev/log"


class SyslogCatcher:
    """A datagram socket bound at /dev/log for the test, keeping what arrives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(DEV_LOG)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except OSError:
                return

    def close(self):
        self.sock.close()
        os.unlink(DEV_LOG)


def main():
    catcher = None
    if not os.path.exists(DEV_LOG):
        if os.geteuid() != 0:
            harness.skip("no %s, and binding one needs root" % DEV_LOG)
        catcher = SyslogCatcher()
    try:
        with harness.server(start=False, workers=2, **{"log.file": "syslog", "log.level": "info"}) as env:
            env.daemon.start()
            for i in range(4):   # a refused token is a log line in the worker
                status, _, body = harness.soap(env.daemon.port, "Authenticate", harness.authenticate_body(),
                                               env.token("SysT", iss="wrong issuer"), timeout=10)
                assert status == 200 and harness.parse_auth(body)["IsSuccessful"] == "false", (status, body)
            time.sleep(0.3)
            restarts = env.daemon.ctl_json("show info")["worker_restarts"]
            assert restarts == 0, "%d workers died after logging to syslog" % restarts
            env.daemon.stop()
            if catcher:
                harness.wait_until(lambda: any("Authenticate refused" in line for line in catcher.lines), 5,
                                   what="a worker's line in syslog")
                text = "\n".join(catcher.lines)
                assert "somirrord" in text and "started" in text, text[-2000:]
                assert not re.search(r"exited with status [1-9]|killed by", text), \
                    "a worker did not exit cleanly:\n" + text[-2000:]
    finally:
        if catcher:
            catcher.close()
    print("syslog: ok")


if __name__ == "__main__":
    main()
