#!/usr/bin/env python3
"""somirrord's processes: N workers run; a worker killed with SIGKILL is replaced (counted in
`show info`) and the service still answers; /healthz, HEAD, 405 routing; keep-alive reuse; a
burst of connections is shared among the workers; a mirror unused for store.idle_timeout is
closed; a worker holds none of the master's own descriptors, also where close_range fails."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


CLOSE_RANGE_REFUSED = r"""
#include <errno.h>
int close_range(unsigned int first, unsigned int last, int flags)
{
    (void)first; (void)last; (void)flags;
    errno = ENOSYS;
    return -1;
}
"""


def descriptors(pid):
    """What each of pid's descriptors names (a path, "socket:[inode]", "pipe:[inode]"), a list."""
    return [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]


def unix_socket_inode(path):
    with open("/proc/net/unix") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path:
                return "socket:[%s]" % fields[6]
    raise AssertionError("no unix socket at %s" % path)


def check_workers_hold_only_their_descriptors():
    """A worker keeps, of the master's descriptors, the listening sockets, the read end of the
    master's pipe and the log only: not the pid file, the status socket, nor the pipe's write
    end (by whose end workers see the master gone). Also where close_range fails: a kernel
    before 5.9, or a container whose seccomp profile refuses it, made here with a library that
    answers ENOSYS to every close_range (built with the C compiler; skipped without one). A
    worker holding the status socket made a restart after the master died refuse to start
    ("another process is serving it") for as long as the old workers drained."""
    with h.server(start=False, workers=1) as s:
        shim = os.path.join(s.dir, "close_range_enosys.so")
        with open(shim[:-3] + ".c", "w") as f:
            f.write(CLOSE_RANGE_REFUSED)
        try:
            subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-o", shim, shim[:-3] + ".c"],
                           check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.CalledProcessError) as e:
            print("close_range check skipped: cannot build its library: %s" % e)
            return
        os.environ["LD_PRELOAD"] = shim
        try:
            s.daemon.start()
        finally:
            del os.environ["LD_PRELOAD"]
        d = s.daemon
        (worker,) = d.wait_workers(1)
        held, master_held = descriptors(worker), descriptors(d.pid)
        assert d.pid_file not in held and unix_socket_inode(d.status_socket) not in held, held
        for pipe in {t for t in held if t.startswith("pipe:") and t in master_held}:
            assert held.count(pipe) == 1, ("both ends of the master's pipe", held)



def main():
    with h.server(workers=3) as s:
        d = s.daemon
        workers = d.wait_workers(3)
        info = d.ctl_json("show info")
        assert info["workers"] == 3 and info["generation"] == 1, info
        listed = sorted(w["pid"] for w in d.ctl_json("show workers")["workers"])
        assert listed == workers, (listed, workers)

        # Routing (protocol.md section 1).
        assert d.healthz() == (200, b"ok\n"), d.healthz()
        assert d.healthz("HEAD")[0] == 200
        status, body, headers = h.request(d.port, "GET", "/")
        assert status == 405 and headers.get("allow") == "POST", (status, headers)
        assert b"POST" in body and b"SOAP" in body, body
        status, _, headers = h.request(d.port, "PUT", "/healthz", body=b"x")
        assert status == 405 and headers.get("allow") == "POST", status

        # Keep-alive: one connection, several calls, a fault does not close it.
        conn = d.connection()
        for _ in range(3):
            status, hdrs, body = s.call("Authenticate", h.authenticate_body("state-1"), conn=conn)
            assert status == 200, (status, body)
            assert hdrs["content-type"] == "text/xml; charset=utf-8", hdrs
            assert h.parse_auth(body)["IsSuccessful"] == "true", body
            status, _, body = h.soap(d.port, "Wipe", h.wipe_body([]), s.token("Cust1"), conn=conn)
            assert status == 500 and h.parse_fault(body)["code"] == "MalformedRequest", body
        conn.close()

        # A burst of connections is shared out: a worker takes one connection per turn of its
        # loop and pauses once it has more than the least loaded other worker (libevent would
        # accept the whole backlog in the first worker to run, and keep-alive senders would then
        # all sit on it). Three connections on three workers: one each (seen in 40 of 40
        # bursts here, also with both cores busy; pausing only from two ahead gave 2/1/0 in 10
        # of 10, and the senders sharing a worker ran at half speed). One burst in five may
        # lose the race against the 5 ms pause on a loaded machine.
        def connections_per_worker():
            return sorted(w["connections"] for w in d.ctl_json("show workers")["workers"])

        def burst(n):
            """n connections opened at once, then a call on each (so each has its worker)."""
            conns = [d.connection() for _ in range(n)]
            for c in conns:
                c.connect()
            for c in conns:
                status, _, body = s.call("Authenticate", h.authenticate_body(), conn=c)
                assert status == 200, (status, body)
            return conns
        even = 0
        for _ in range(5):
            trio = burst(3)
            even += connections_per_worker() == [1, 1, 1]
            for c in trio:
                c.close()
            h.wait_until(lambda: connections_per_worker() == [0, 0, 0], 10, what="the trio's connections closed")
        assert even >= 4, "3 connections on 3 workers were one each in only %d of 5 bursts" % even
        before = {w["pid"]: w["calls"] for w in d.ctl_json("show workers")["workers"]}
        conns = burst(12)
        served = [w["calls"] - before.get(w["pid"], 0) for w in d.ctl_json("show workers")["workers"]]
        assert sum(served) == 12 and all(n > 0 for n in served) and max(served) <= 6, served
        # Every open connection is counted (show workers, metrics), and counted out once closed.
        def open_connections():
            return sum(w["connections"] for w in d.ctl_json("show workers")["workers"])
        h.wait_until(lambda: open_connections() == 12, 10, what="12 open connections counted")
        assert "somirror_connections 12\n" in d.ctl("metrics")
        for c in conns:
            c.close()
        h.wait_until(lambda: open_connections() == 0, 10, what="open connections back to 0")
        assert "somirror_connections 0\n" in d.ctl("metrics")

        # A worker killed outright is replaced; the others are untouched.
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        replaced = d.wait_workers(3, exclude=[victim])
        assert set(workers[1:]) <= set(replaced), (workers, replaced)
        d.wait_log(r"worker %d was killed by signal 9" % victim)
        assert d.ctl_json("show info")["worker_restarts"] == 1
        for _ in range(6):
            status, _, body = s.call("Authenticate", h.authenticate_body())
            assert status == 200 and h.parse_auth(body)["IsSuccessful"] == "true", body
        assert d.stop() == 0
    check_idle_mirrors_closed()
    check_workers_hold_only_their_descriptors()
    print("ok")


def open_mirror_files(pids, name):
    """How many descriptors of the processes pids name the mirror file name."""
    n = 0
    for pid in pids:
        fd_dir = "/proc/%d/fd" % pid
        for fd in os.listdir(fd_dir):
            try:
                n += os.readlink(os.path.join(fd_dir, fd)).endswith("/" + name)
            except OSError:
                pass
    return n


def check_idle_mirrors_closed():
    """store.idle_timeout: a worker closes a tenant's mirror once it has gone unused that long."""
    with h.server(workers=1, **{"store.idle_timeout": 2}) as s:
        status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust1")
        assert status == 200 and h.parse_auth(body)["IsSuccessful"] == "true", body
        workers = s.daemon.worker_pids()
        assert open_mirror_files(workers, "Mirror_Cust1.db") == 1
        h.wait_until(lambda: open_mirror_files(workers, "Mirror_Cust1.db") == 0, 10,
                     what="the idle mirror closed")
        check_idle_mirror_readable(os.path.join(s.dir, "mirrors", "Mirror_Cust1.db"))
        status, _, body = s.call("Authenticate", h.authenticate_body(), tenant="Cust1")
        assert status == 200 and h.parse_auth(body)["IsSuccessful"] == "true", body
        assert open_mirror_files(workers, "Mirror_Cust1.db") == 1   # opened again


def check_idle_mirror_readable(path):
    """A closed mirror keeps its -wal and -shm files, so that a reader who may read the files
    but not write the directory (the service's group, a report job; here nobody, given read
    access) can open it read-only; without them it could not make them."""
    for suffix in ("-wal", "-shm"):
        assert os.path.exists(path + suffix), "the idle mirror's %s file is gone" % suffix
    if os.geteuid() != 0:
        print("check_idle_mirror_readable: reader part skipped, not root")
        return
    directory = os.path.dirname(path)
    for d in (directory, os.path.dirname(directory)):
        os.chmod(d, 0o755)   # root's: nobody reads, cannot write
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    reader = ("import sqlite3, sys; c = sqlite3.connect('file:%s?mode=ro', uri=True); "
              "print(c.execute('SELECT count(*) FROM sqlite_master').fetchone()[0])" % path)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                        "-c", reader], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and int(r.stdout) > 0, r


if __name__ == "__main__":
    main()
