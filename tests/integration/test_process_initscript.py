#!/usr/bin/env python3
"""contrib/somirrord.init: configtest, start, status, reload, stop, with CONFIG, PIDFILE, DAEMON
and the directories it prepares taken from the environment (the defaults file pointed away).
Then, as root, the deployment layout of contrib/somirrord.yaml under a temporary root with
`user: nobody`: start makes the runtime directory (missing, as /run/somirror after a boot), the
state directory and the log file that user's, so that a pause is written to the state file,
reopen-logs reopens the log, stop leaves no pid file or socket behind, and the pause survives a
restart."""
import grp
import json
import os
import pwd
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SCRIPT = os.path.join(h.SRCDIR, "contrib", "somirrord.init")


def init(env, action, **kw):
    return subprocess.run(["/bin/sh", SCRIPT, action], env=env, capture_output=True, text=True,
                          timeout=60, **kw)


def reaches_eof(fd, seconds):
    """Whether the pipe read through fd ends (every writer closed it) within seconds."""
    import select
    deadline = time.time() + seconds
    while time.time() < deadline:
        if select.select([fd], [], [], max(0.0, deadline - time.time()))[0] and not os.read(fd, 4096):
            return True
    return False


def check_actions():
    with tempfile.TemporaryDirectory(prefix="sminit") as directory:
        keys = h.make_keys(directory)
        config = h.write_config(directory, keys)
        daemon = h.Daemon(config)
        env = dict(os.environ, DAEMON=daemon.binary, CONFIG=config, PIDFILE=daemon.pid_file,
                   SOMIRRORCTL=h.program("somirrorctl"), SOMIRRORD_DEFAULTS=os.path.join(directory, "absent"),
                   DAEMON_USER=pwd.getpwuid(os.geteuid()).pw_name,
                   STATE_DIR=os.path.join(directory, "mirrors"), LOG_FILE=daemon.log_path,
                   LOG_GROUP=grp.getgrgid(os.getegid()).gr_name)

        with daemon:
            r = init(env, "configtest")
            assert r.returncode == 0 and "configuration ok" in r.stdout, r
            assert init(env, "status").returncode == 3
            # Started with a pipe's write end open (as a postinst's debconf has fd 3, or a shell's
            # $(...)): the daemon must not keep it, or whoever reads the pipe waits for ever.
            inherited_read, inherited_write = os.pipe()
            r = init(env, "start", pass_fds=(inherited_write,))
            os.close(inherited_write)
            assert r.returncode == 0, r
            assert reaches_eof(inherited_read, 10), "the daemon kept a descriptor it inherited"
            os.close(inherited_read)
            daemon.pid = int(h.wait_until(daemon._pid_from_file, what="the pid file"))
            daemon.pgids.add(daemon.pid)
            daemon.wait_healthy()
            r = init(env, "status")
            assert r.returncode == 0 and str(daemon.pid) in r.stdout, r
            assert init(env, "start").returncode == 0 and h.pid_alive(daemon.pid)

            r = init(env, "reload")
            assert r.returncode == 0 and "ok: reloaded" in r.stdout, r
            assert daemon.ctl_json("show info")["generation"] == 2   # done when reload returns
            # Without somirrorctl, a SIGHUP.
            r = init(dict(env, SOMIRRORCTL=os.path.join(directory, "absent")), "reload")
            assert r.returncode == 0, r
            h.wait_until(lambda: daemon.ctl_json("show info")["generation"] == 3, what="the reload")
            # With a configuration that names no status socket, a SIGHUP too.
            socketless = os.path.join(directory, "socketless.yaml")
            with open(socketless, "w") as f:
                cfg = h.read_config(config)
                del cfg["status_socket"]
                f.write(json.dumps(cfg))
            r = init(dict(env, CONFIG=socketless), "reload")
            assert r.returncode == 0 and "sending SIGHUP" in r.stdout, r
            h.wait_until(lambda: daemon.ctl_json("show info")["generation"] == 4, what="the reload")

            # A broken config: configtest and reload fail, the running one is untouched.
            with open(config, "a") as f:
                f.write("workers: [\n")
            assert init(env, "configtest").returncode == 1
            assert init(env, "reload").returncode == 1
            r = init(env, "restart")   # tests before it stops: the running one goes on
            assert r.returncode == 1 and "Stopping" not in r.stdout and h.pid_alive(daemon.pid), r
            assert len(r.stderr.splitlines()) == 1, r   # the error said once
            assert daemon.ctl_json("show info")["generation"] == 4
            daemon.rewrite_config()

            # The pid file is for anyone to read, though the daemon's umask is 027.
            assert os.stat(daemon.pid_file).st_mode & 0o777 == 0o644
            pid = daemon.pid
            r = init(env, "stop")
            assert r.returncode == 0, r
            assert not h.pid_alive(pid) and not os.path.exists(daemon.pid_file)
            assert init(env, "status").returncode == 3
            # Killed, its pid file left: LSB's 1, "dead and the pid file exists".
            r = init(env, "start")
            assert r.returncode == 0, r
            pid = int(h.wait_until(daemon._pid_from_file, what="the pid file"))
            daemon.pgids.add(pid)   # its workers end with it, and the harness ends any left
            os.kill(pid, 9)
            h.wait_until(lambda: not h.pid_alive(pid), what="the kill")
            r = init(env, "status")
            assert r.returncode == 1 and "is left" in r.stdout, r
            os.unlink(daemon.pid_file)

        # The pid file lies in a directory the service's user writes: a pid in it that names no
        # somirrord (another process, -1 for every process, a link) is never signalled.
        bystander = subprocess.Popen(["sleep", "60"])
        try:
            for text in ("%d\n" % bystander.pid, "junk\n"):
                with open(daemon.pid_file, "w") as f:
                    f.write(text)
                for action in ("status", "stop", "reload", "reopen-logs"):
                    r = init(env, action)
                    assert "not running" in r.stdout and bystander.poll() is None, (text, action, r)
            os.unlink(daemon.pid_file)
            os.symlink("/proc/self/stat", daemon.pid_file)
            assert init(env, "status").returncode == 1
            # -1 (every process) and 1 (init) only in a PID namespace of their own, beside a
            # sleeper: a mistake there hits nothing else.
            if os.geteuid() == 0:
                os.unlink(daemon.pid_file)
                for text in ("-1", "1"):
                    for action in ("stop", "reopen-logs"):
                        r = subprocess.run(
                            ["unshare", "--fork", "--pid", "--mount-proc", "/bin/sh", "-c",
                             "sleep 30 & s=$!; echo '%s' > \"$PIDFILE\"; /bin/sh '%s' %s; sleep 0.2; "
                             "kill -0 $s && echo survived; kill $s" % (text, SCRIPT, action)],
                            env=env, capture_output=True, text=True, timeout=60)
                        assert "survived" in r.stdout, (text, action, r)
        finally:
            bystander.kill()
            bystander.wait()
            os.unlink(daemon.pid_file)


def check_user_layout():
    """The sample's layout (/run/somirror, /var/lib/somirror, /var/log/somirror) under a
    temporary root, started by the script as root with user: nobody."""
    pw = pwd.getpwnam("nobody")
    log_group = "adm" if h.group_exists("adm") else grp.getgrgid(pw.pw_gid).gr_name
    with tempfile.TemporaryDirectory(prefix="sminitroot") as top:
        os.chmod(top, 0o755)   # nobody reaches the temporary root through it
        keys = h.make_keys(top)
        for path in keys:
            os.chmod(path, 0o644 if path.endswith((".crt", ".pub")) else 0o600)
        run_dir = os.path.join(top, "run", "somirror")
        state_dir = os.path.join(top, "var", "lib", "somirror")
        log_file = os.path.join(top, "var", "log", "somirror", "somirrord.log")
        config = h.write_config(top, keys, workers=1, user="nobody",
                                pid_file=os.path.join(run_dir, "somirrord.pid"),
                                status_socket=os.path.join(run_dir, "somirrord.sock"),
                                state_file=os.path.join(state_dir, "somirrord.state"),
                                **{"log.file": log_file, "store.sqlite.directory": state_dir})
        os.chmod(config, 0o644)
        assert not os.path.exists(run_dir)   # write_config made state_dir, root's: start fixes it
        daemon = h.Daemon(config)
        env = dict(os.environ, DAEMON=daemon.binary, CONFIG=config, PIDFILE=daemon.pid_file,
                   SOMIRRORCTL=h.program("somirrorctl"), SOMIRRORD_DEFAULTS=os.path.join(top, "absent"),
                   DAEMON_USER="nobody",
                   STATE_DIR=state_dir, LOG_FILE=log_file, LOG_GROUP=log_group)
        state_file = os.path.join(state_dir, "somirrord.state")

        def start():
            r = init(env, "start")
            assert r.returncode == 0, r
            daemon.pid = int(h.wait_until(daemon._pid_from_file, what="the pid file"))
            daemon.pgids.add(daemon.pid)
            daemon.wait_healthy()

        def stop():
            pid = daemon.pid
            r = init(env, "stop")
            assert r.returncode == 0, r
            assert not h.pid_alive(pid)
            left = [p for p in (daemon.pid_file, daemon.status_socket) if os.path.exists(p)]
            assert not left, "left behind at exit: %s" % left

        with daemon:
            start()
            for path, mode in ((run_dir, 0o755), (state_dir, 0o750)):
                st = os.stat(path)
                assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (pw.pw_uid, pw.pw_gid, mode), (path, st)
            st = os.stat(log_file)
            assert (st.st_uid, st.st_gid) == (pw.pw_uid, grp.getgrnam(log_group).gr_gid), st
            master_uid = int(open("/proc/%d/status" % daemon.pid).read().split("\nUid:")[1].split()[0])
            assert master_uid == pw.pw_uid, master_uid

            answer = daemon.ctl("pause Cust1")
            assert answer.startswith("ok"), answer
            assert json.load(open(state_file))["paused"] == ["Cust1"], open(state_file).read()
            r = init(env, "reopen-logs")
            assert r.returncode == 0, r
            assert daemon.ctl("pause Cust1").startswith("ok")
            daemon.wait_log(r"paused Cust1[\s\S]*paused Cust1")
            assert "cannot open log file" not in daemon.log(), daemon.log()[-2000:]
            # The private keys are root's alone: a reload, read as nobody, fails, and says so
            # (configtest, as root, passes); the running configuration stays.
            r = init(env, "reload")
            assert r.returncode != 0 and "reload failed" in r.stdout + r.stderr, r
            assert "Permission denied" in r.stdout + r.stderr, r
            assert daemon.ctl_json("show info")["generation"] == 1
            stop()

            # A log file that is a link (the user could plant one where it writes) is not
            # given to it, and the start refuses it.
            victim = os.path.join(top, "victim")
            with open(victim, "w") as f:
                f.write("root's\n")
            os.rename(log_file, log_file + ".real")
            os.symlink(victim, log_file)
            r = init(env, "start")
            assert r.returncode != 0 and "is a symbolic link: refused" in r.stdout + r.stderr, r
            assert os.stat(victim).st_uid == 0 and open(victim).read() == "root's\n"
            os.unlink(log_file)
            os.rename(log_file + ".real", log_file)

            # After a reboot /run is empty: start makes the runtime directory again.
            os.rmdir(run_dir)
            start()
            assert "paused" in daemon.ctl("show tenant Cust1"), daemon.ctl("show tenant Cust1")
            stop()


def main():
    check_actions()
    if os.geteuid() == 0:
        check_user_layout()
        print("ok")
    else:
        print("ok (the layout with user: not checked: not root)")


if __name__ == "__main__":
    main()
