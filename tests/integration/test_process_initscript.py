#!/usr/bin/env python3
"""contrib/somirrord.init: configtest, start, status, reload, stop, with CONFIG, PIDFILE and
DAEMON taken from the environment (the defaults file pointed away)."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def main():
    script = os.path.join(h.SRCDIR, "contrib", "somirrord.init")
    with tempfile.TemporaryDirectory(prefix="sminit") as directory:
        keys = h.make_keys(directory)
        config = h.write_config(directory, keys)
        daemon = h.Daemon(config)
        env = dict(os.environ, DAEMON=daemon.binary, CONFIG=config, PIDFILE=daemon.pid_file,
                   SOMIRRORD_DEFAULTS=os.path.join(directory, "absent"))

        def init(action):
            return subprocess.run(["/bin/sh", script, action], env=env, capture_output=True,
                                  text=True, timeout=60)
        with daemon:
            r = init("configtest")
            assert r.returncode == 0 and "configuration ok" in r.stdout, r
            assert init("status").returncode == 3
            r = init("start")
            assert r.returncode == 0, r
            daemon.pid = int(h.wait_until(daemon._pid_from_file, what="the pid file"))
            daemon.pgids.add(daemon.pid)
            daemon.wait_healthy()
            r = init("status")
            assert r.returncode == 0 and str(daemon.pid) in r.stdout, r
            assert init("start").returncode == 0 and h.pid_alive(daemon.pid)

            r = init("reload")
            assert r.returncode == 0, r
            h.wait_until(lambda: daemon.ctl_json("show info")["generation"] == 2, what="the reload")

            # A broken config: configtest and reload fail, the running one is untouched.
            with open(config, "a") as f:
                f.write("workers: [\n")
            assert init("configtest").returncode == 1
            assert init("reload").returncode == 1
            assert daemon.ctl_json("show info")["generation"] == 2
            daemon.rewrite_config()

            pid = daemon.pid
            r = init("stop")
            assert r.returncode == 0, r
            assert not h.pid_alive(pid) and not os.path.exists(daemon.pid_file)
            assert init("status").returncode == 3
    print("ok")


if __name__ == "__main__":
    main()
