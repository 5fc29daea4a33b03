#!/usr/bin/env python3
"""somirrord's start and stop: `-t` on good and bad configs; SIGTERM drains, exits 0 and removes
the pid file and status socket; a second somirrord on a live pid file refuses to start; a stale
pid file is taken over; daemon mode, whose start-up warnings reach its log, also when started
with its standard streams closed; SIGUSR1 reopens the
log; SIGINT stops at once; a request still uploading when SIGTERM comes is answered, and so are
requests on connections still waiting in the listening socket's backlog; a daemon
keeps relative paths the starting directory's; a SIGHUP pending when somirrord starts is a reload
once it serves."""
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def run(*args, timeout=30, **kw):
    return subprocess.run((h.program("somirrord"),) + args, capture_output=True, text=True, timeout=timeout, **kw)


def check_test_mode(s):
    good = run("-t", "-c", s.config)
    assert good.returncode == 0 and "configuration ok" in good.stdout, good
    bad_path = os.path.join(s.dir, "bad.yaml")
    h.write_config(s.dir, s.keys, path=bad_path, workers="many", **{"vendor.clock_skew": "soon"})
    bad = run("-t", "-c", bad_path)
    assert bad.returncode == 1, bad
    assert "workers" in bad.stderr and "clock_skew" in bad.stderr, bad.stderr
    # What a start would find wrong beyond the file itself: an unknown user, a mirror
    # directory that cannot be made; checked without making anything.
    precious = os.path.join(s.dir, "precious.db")
    with open(precious, "w") as f:
        f.write("data\n")
    for overrides, needle in (({"user": "no-such-user-here"}, "no-such-user-here: no such user"),
                              ({"store.sqlite.directory": os.path.join(s.dir, "no", "mirrors")},
                               "its parent directory does not exist"),
                              ({"pid_file": s.dir}, "pid_file %s: a directory is there" % s.dir),
                              ({"pid_file": os.path.join(s.dir, "p" * 300)}, "p" * 300 + ": File name too long"),
                              ({"pid_file": os.path.join(precious, "x.pid")}, "x.pid: Not a directory"),
                              ({"status_socket": "/tmp/" + "s" * 120}, "path too long"),
                              ({"listen": "no-such-host.invalid:8080"}, "listen no-such-host.invalid:8080: "),
                              # FreeTDS 1.3 (Debian 12) cannot require encryption: refused, not ignored
                              ({"store": {"driver": "mssql", "mssql": {
                                  "server": "127.0.0.1:1", "user": "sa", "password": "x", "encrypt": "require"}}},
                               "store.mssql.encrypt: require: this FreeTDS db-lib cannot require encryption"),
                              ({"status_socket": precious}, "status_socket %s: a file is there" % precious)):
        unstartable = os.path.join(s.dir, "unstartable.yaml")
        with open(unstartable, "w") as f:
            cfg = h.read_config(s.config)
            for name, value in overrides.items():
                h._set_dotted(cfg, name, value)
            f.write(h.json.dumps(cfg))
        os.chmod(unstartable, 0o600)   # a password in it is warned of, before the error, when others may read it
        r = run("-t", "-c", unstartable)
        assert r.returncode == 1 and needle in r.stderr, r
        assert r.stderr.startswith("somirrord: %s:1:" % unstartable), r.stderr   # where the key is
        assert not os.path.exists(os.path.join(s.dir, "no")), "-t made a directory"
    # Keys that do not load and a user that does not exist: one run says both.
    with open(unstartable, "w") as f:
        cfg = h.read_config(s.config)
        cfg["user"] = "no-such-user-here"
        h._set_dotted(cfg, "application.private_key", os.path.join(s.dir, "no-such-key.pem"))
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", unstartable)
    assert r.returncode == 1 and "no-such-key.pem" in r.stderr and "no-such-user-here: no such user" in r.stderr, r
    # A status socket path that names a file (the last one above): the start refuses, and the
    # file stays.
    with open(unstartable, "w") as f:
        cfg = h.read_config(s.config)
        cfg.update(status_socket=precious, pid_file=os.path.join(s.dir, "other.pid"),
                   listen="127.0.0.1:%d" % h.free_port())
        f.write(h.json.dumps(cfg))
    start = run("-f", "-c", unstartable)
    assert start.returncode == 1 and "something that is not a socket is there" in start.stderr, start
    with open(precious) as f:
        assert f.read() == "data\n", "the status socket's start replaced a file"
    # Likely a mistake but no reason not to start: a warning, and "configuration ok". Missing
    # directories for the log, pid file and socket too: init systems make them before starting.
    doubtful = os.path.join(s.dir, "doubtful.yaml")
    with open(doubtful, "w") as f:
        cfg = h.read_config(s.config)
        h._set_dotted(cfg, "hooks.table_sql", os.path.join(s.dir, "no-sql"))
        h._set_dotted(cfg, "log.file", os.path.join(s.dir, "no", "x.log"))
        h._set_dotted(cfg, "status_socket", os.path.join(s.dir, "no", "s.sock"))
        h._set_dotted(cfg, "state_file", os.path.join(s.dir, "no", "x.state"))
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", doubtful)
    assert r.returncode == 0 and "configuration ok" in r.stdout, r
    assert "warning: hooks.table_sql" in r.stderr and "no-sql is not a directory" in r.stderr, r
    for what in ("log.file %s/no/x.log" % s.dir, "status_socket %s/no/s.sock" % s.dir):
        assert "warning: %s: its directory does not exist (yet): the start fails" % what in r.stderr, r.stderr
    # the state file is written at operator requests only: the start does not need it
    assert ("warning: state_file %s/no/x.state: its directory does not exist (yet): operator pauses and pending "
            "resyncs are not kept across restarts until it is made" % s.dir) in r.stderr, r.stderr
    # SQL Server: a query timeout that would cut a wait for a tenant's lock short
    with open(doubtful, "w") as f:
        cfg = h.read_config(s.config)
        cfg["store"] = {"driver": "mssql", "mssql": {"server": "127.0.0.1:1", "user": "sa", "password": "x",
                                                     "query_timeout": 30}}
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", doubtful)
    assert r.returncode == 0 and "store.mssql.query_timeout 30 s is not above tenants.lock_timeout 60 s" in r.stderr, r
    # ... and a configured collation that is case-sensitive is an error
    with open(doubtful, "w") as f:
        cfg["store"]["mssql"]["collation"] = "Latin1_General_CS_AS"
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", doubtful)
    assert r.returncode == 1 and "store.mssql.collation Latin1_General_CS_AS is case-sensitive" in r.stderr, r
    # A hook whose program cannot be run (here: program and argument written as one item).
    with open(doubtful, "w") as f:
        cfg = h.read_config(s.config)
        h._set_dotted(cfg, "hooks.cycle_completed", ["/bin/echo hi there"])
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", doubtful)
    assert r.returncode == 0 and "warning: hooks.cycle_completed: /bin/echo hi there is not a program" in r.stderr, r
    # A vendor certificate with a short key: trusted, with a warning naming it.
    short_key, short_cert = os.path.join(s.dir, "v1024.key"), os.path.join(s.dir, "v1024.pem")
    h._openssl("req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", short_key, "-out", short_cert,
               "-days", "30", "-subj", "/CN=short")
    short = os.path.join(s.dir, "short.yaml")
    with open(short, "w") as f:
        cfg = h.read_config(s.config)
        cfg["vendor"]["certificates"] = list(cfg["vendor"]["certificates"]) + [short_cert]
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", short)
    assert r.returncode == 0 and "configuration ok" in r.stdout, r
    assert re.search(r"short\.yaml:\d+:\d+: vendor\.certificates\[1\]: .*the key has only 1024 bits", r.stderr), r
    assert "vendor.certificates[0]" not in r.stderr, r
    check_mirror_directory_as_user(s)
    check_reload_as_user(s)
    check_secrets_readable_by_everyone(s)
    missing = run("-t", "-c", os.path.join(s.dir, "absent.yaml"))
    assert missing.returncode == 1 and missing.stderr, missing
    assert run("-v").stdout.startswith("somirrord "), run("-v")
    assert run("-x").returncode == 2


def check_secrets_readable_by_everyone(s):
    """A private key or a password file every user may read: a warning naming it and its mode,
    as ssh gives for an unprotected key; configuration ok all the same."""
    exposed_key = os.path.join(s.dir, "exposed-app.pem")
    shutil.copy(s.keys.app_key_pem, exposed_key)
    os.chmod(exposed_key, 0o644)
    password = os.path.join(s.dir, "exposed.pass")
    with open(password, "w") as f:
        f.write("secret\n")
    os.chmod(password, 0o644)
    path = os.path.join(s.dir, "exposed.yaml")
    with open(path, "w") as f:
        cfg = h.read_config(s.config)
        h._set_dotted(cfg, "application.private_key", exposed_key)
        cfg["store"] = {"driver": "postgresql", "postgresql": {"conninfo": "host=/nonexistent",
                                                               "password_file": password}}
        f.write(h.json.dumps(cfg))
    r = run("-t", "-c", path)
    assert r.returncode == 0 and "configuration ok" in r.stdout, r
    for what, file in (("application.private_key", exposed_key), ("store.postgresql.password_file", password)):
        assert re.search(r"warn .*%s: %s is readable by every user \(mode 0644\)" % (re.escape(what), re.escape(file)),
                         r.stderr), (what, r.stderr)
    os.chmod(exposed_key, 0o640)
    os.chmod(password, 0o600)
    r = run("-t", "-c", path)
    assert r.returncode == 0 and "readable by every user" not in r.stderr, r
    check_inline_secrets_readable_by_everyone(s)


def check_inline_secrets_readable_by_everyone(s):
    """A password written in the configuration file itself (store.mssql.password, a conninfo
    with a password, as a keyword or a URI's user:password@) while every user may read that
    file: the same warning, naming the key; a URI's user@ alone draws none."""
    def postgresql(conninfo):
        return {"driver": "postgresql", "postgresql": {"conninfo": conninfo}}

    for key, store in (("store.mssql.password",
                        {"driver": "mssql", "mssql": {"server": "127.0.0.1:1", "user": "u", "password": "pw-Zq81x"}}),
                       ("store.postgresql.conninfo", postgresql("host=/nonexistent password=pw-Zq81x")),
                       ("store.postgresql.conninfo", postgresql("postgresql://u:pw-Zq81x@/db?host=/nonexistent")),
                       (None, postgresql("postgresql://u@/db?host=/nonexistent"))):
        path = os.path.join(s.dir, "inline.yaml")
        with open(path, "w") as f:
            cfg = h.read_config(s.config)
            cfg["store"] = store
            f.write(h.json.dumps(cfg))
        os.chmod(path, 0o644)
        r = run("-t", "-c", path)
        assert r.returncode == 0 and "configuration ok" in r.stdout, r
        if key is None:   # a URI's user@ alone holds no password
            assert "a password in the configuration file" not in r.stderr, r.stderr
            continue
        assert re.search(r"warn .*inline\.yaml:\d+:\d+: %s: a password in the configuration file: %s is readable by every user \(mode 0644\)"
                         % (re.escape(key), re.escape(path)), r.stderr), (key, r.stderr)
        assert "pw-Zq81x" not in r.stderr, r.stderr
        os.chmod(path, 0o600)
        r = run("-t", "-c", path)
        assert r.returncode == 0 and "readable by every user" not in r.stderr, r


@contextlib.contextmanager
def root_owned_dir(prefix):
    """A directory of root's that every user may look into (0755), removed after: where the
    checks as user: put files of root's and of that user's."""
    base = tempfile.mkdtemp(prefix=prefix)
    try:
        os.chmod(base, 0o755)
        yield base
    finally:
        shutil.rmtree(base)


def check_mirror_directory_as_user(s):
    """As root with user: set, -t checks the SQLite mirror directory as that user, who makes the
    mirror files: one it cannot write in, or make, is a warning (the unit and the init script
    make it and give it to that user, as root, after their own -t), one it owns passes."""
    if os.geteuid() != 0:
        print("check_mirror_directory_as_user: skipped, not root")
        return
    with root_owned_dir("smdir") as base:
        owned = os.path.join(base, "owned")
        os.mkdir(owned)
        pw = pwd.getpwnam("nobody")
        os.chown(owned, pw.pw_uid, pw.pw_gid)
        for directory, code, needle in (
                (base, 0, ": store.sqlite.directory %s: nobody cannot make files there (the workers "
                 "run as that user): the start fails unless it is given to that user first" % base),
                (os.path.join(base, "new"), 0, ": store.sqlite.directory %s/new: nobody cannot make it"
                 % base),
                (owned, 0, None), (os.path.join(owned, "new"), 0, None)):
            path = os.path.join(s.dir, "as-user.yaml")
            with open(path, "w") as f:
                cfg = h.read_config(s.config)
                cfg["user"] = "nobody"
                h._set_dotted(cfg, "store.sqlite.directory", directory)
                # not the running daemon's state file, root's: nobody could not restore it
                cfg["state_file"] = os.path.join(owned, "somirrord.state")
                f.write(h.json.dumps(cfg))
            r = run("-t", "-c", path)
            assert r.returncode == code, (directory, r)
            if needle:
                assert needle in r.stderr and r.stderr.startswith("somirrord: warning: %s:1:" % path), \
                    (directory, r.stderr)
            else:
                assert "sqlite" not in r.stderr, (directory, r.stderr)
        assert not os.path.exists(os.path.join(owned, "new")), "-t made a directory"


def check_reload_as_user(s):
    """As root with user: set, -t warns of what only that user's view shows: a configuration or
    key that user cannot read (the start works as root, every reload after it fails), and a pid
    file or status socket in a directory that user cannot write (left behind at the stop). A
    layout that user reads and writes gets no such warning."""
    if os.geteuid() != 0:
        print("check_reload_as_user: skipped, not root")
        return
    with root_owned_dir("smasuser") as base:
        pw = pwd.getpwnam("nobody")
        run_dir = os.path.join(base, "run")
        os.mkdir(run_dir)
        os.chown(run_dir, pw.pw_uid, pw.pw_gid)
        keys = h.Keys(*(shutil.copy(k, base) for k in s.keys))
        for k in keys:   # the group's, as the README has it
            os.chown(k, 0, pw.pw_gid)
            os.chmod(k, 0o640)
        config = h.write_config(base, keys, user="nobody", pid_file=os.path.join(run_dir, "s.pid"),
                                status_socket=os.path.join(run_dir, "s.sock"))
        os.chmod(config, 0o644)
        r = run("-t", "-c", config)
        assert r.returncode == 0 and "as user nobody" not in r.stderr and "left behind" not in r.stderr, r

        os.chmod(config, 0o600)
        r = run("-t", "-c", config)
        assert r.returncode == 0 and "configuration ok" in r.stdout, r
        assert ("warning: as user nobody the configuration does not load, so reloads will fail until it does: "
                "%s: cannot open: Permission denied" % config) in r.stderr, r.stderr
        os.chmod(config, 0o644)
        os.chmod(keys.app_key_pem, 0o600)
        r = run("-t", "-c", config)
        assert r.returncode == 0 and "as user nobody the configuration does not load" in r.stderr, r
        assert "application.private_key" in r.stderr and "Permission denied" in r.stderr, r.stderr
        os.chmod(keys.app_key_pem, 0o640)
        # A key readable by everyone is warned of once, not again by the load as the user.
        os.chmod(keys.app_key_pem, 0o644)
        r = run("-t", "-c", config)
        assert r.returncode == 0 and r.stderr.count("application.private_key: %s is readable by every user"
                                                    % keys.app_key_pem) == 1, r.stderr
        os.chmod(keys.app_key_pem, 0o640)

        os.chown(run_dir, 0, 0)
        # Also when somirrord's parent left SIGCHLD ignored (that survives exec): the kernel
        # then reaps the child that checks as the user before its status is read.
        for ignore_sigchld in (None, lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN)):
            r = run("-t", "-c", config, preexec_fn=ignore_sigchld)
            assert r.returncode == 0, r
            for key, name in (("pid_file", "s.pid"), ("status_socket", "s.sock")):
                assert ("%s %s: user nobody cannot write its directory, so it is left behind when somirrord "
                        "stops" % (key, os.path.join(run_dir, name))) in r.stderr, (ignore_sigchld, r.stderr)
        # ... and so it is, said in the log.
        with h.Daemon(config) as daemon:
            daemon.start()
            daemon.stop()
            for key, name in (("pid_file", "s.pid"), ("status_socket", "s.sock")):
                assert ("%s %s is left behind: cannot remove it: Permission denied"
                        % (key, os.path.join(run_dir, name))) in daemon.log(), daemon.log()

        # A hook program and a table_sql directory that root may use and that user may not: -t
        # warns as the start (which checks after the drop) does, not as root sees them.
        program, sql_dir = os.path.join(base, "hook.sh"), os.path.join(base, "sql")
        with open(program, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(program, 0o700)
        os.mkdir(sql_dir, 0o700)
        config = h.write_config(base, keys, user="nobody", **{"hooks.cycle_completed": [program],
                                                              "hooks.table_sql": sql_dir})
        os.chmod(config, 0o644)
        r = run("-t", "-c", config)
        assert r.returncode == 0 and "configuration ok" in r.stdout, r
        assert ("warning: hooks.cycle_completed: %s is not a program that can be run" % program) in r.stderr, r
        assert ("warning: hooks.table_sql %s is not a directory that can be read" % sql_dir) in r.stderr, r

        # A log file that user cannot write (another user's, as after logrotate's create with
        # the wrong owner): SIGUSR1 could not reopen it. -t and the start say so; root's file is
        # given to that user at start, and one that user owns is fine.
        log = os.path.join(run_dir, "s.log")
        config = h.write_config(base, keys, user="nobody", **{"log.file": log})
        os.chmod(config, 0o644)
        os.chown(run_dir, pw.pw_uid, pw.pw_gid)
        unwritable = "log.file %s: user nobody cannot write it" % log
        for owner, warned in ((1, True), (0, False), (pw.pw_uid, False)):
            with open(log, "w"):
                pass
            os.chown(log, owner, 0)
            os.chmod(log, 0o640)
            r = run("-t", "-c", config)
            assert r.returncode == 0 and (unwritable in r.stderr) == warned, (owner, r.stderr)
        os.chown(log, 1, 0)
        with h.Daemon(config) as daemon:
            daemon.start()
            daemon.stop()
        with open(log) as f:
            assert unwritable in f.read()


def check_relative_paths_as_daemon():
    """A daemon works from /, yet relative paths (the -c file's, those in it) stay the starting
    directory's, for its reloads too (somirrord.yaml(5))."""
    with h.server(start=False) as s:
        d = s.daemon
        rel = {"pid_file": "run/somirrord.pid", "status_socket": "run/status.sock",
               "log.file": "somirrord.log", "store.sqlite.directory": "mirrors",
               "application.private_key": os.path.relpath(d.cfg["application"]["private_key"], s.dir),
               "vendor.certificates": [os.path.relpath(c, s.dir) for c in d.cfg["vendor"]["certificates"]]}
        d.rewrite_config(**rel)
        os.makedirs(os.path.join(s.dir, "run"))
        r = subprocess.run([h.program("somirrord"), "-c", os.path.basename(s.config)], cwd=s.dir,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        pid_file = os.path.join(s.dir, "run", "somirrord.pid")
        pid = int(h.wait_until(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(),
                               what="the pid file in the starting directory"))
        d.pgids.add(pid)
        d.pid = pid
        assert h.request(d.port, "GET", "/healthz")[0] == 200
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: "configuration reloaded: generation 2" in open(os.path.join(s.dir, "somirrord.log")).read(),
                     what="the reload (the config found again)")
        st, _, body = h.soap(d.port, "Authenticate", h.authenticate_body(), s.token("Cust1"))
        assert h.parse_auth(body)["IsSuccessful"] == "true", body
        assert os.path.exists(os.path.join(s.dir, "mirrors", "Mirror_Cust1.db"))
        d.signal(signal.SIGTERM)
        h.wait_until(lambda: not h.pid_alive(pid), what="the daemon to stop")
        assert not os.path.exists(pid_file) and not os.path.exists(os.path.join(s.dir, "run", "status.sock"))


def check_drain_waits_for_lingering():
    """A client refused with 413 at its headers and still sending its body when somirrord is
    told to stop: the worker keeps reading and dropping until the client is done (no reset),
    then exits."""
    with h.server(workers=1, **{"limits.max_request_bytes": 4096}) as s:
        d = s.daemon
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
            d.signal(signal.SIGTERM)
            try:
                for _ in range(30):   # 3 s of body, past the drain's quiet second
                    sock.sendall(b"y" * 100000)
                    time.sleep(0.1)
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(4096) == b""
            except (BrokenPipeError, ConnectionResetError) as e:
                raise AssertionError("the stopping worker reset a client after its 413: %r" % e)
        assert d.wait_exit() == 0


def check_backlog_served_at_stop():
    """Connections waiting in the listening socket's backlog when somirrord is told to stop,
    their requests sent, are served by the stopping worker (a call run, a health check told
    503, or 200 if accepted before the worker saw the signal), not reset as the socket's last
    copy closes. The one worker is stopped (SIGSTOP)
    while they connect, so that none is accepted before the SIGTERM."""
    with h.server(workers=1) as s:
        d = s.daemon
        worker = d.wait_workers(1)[0]
        os.kill(worker, signal.SIGSTOP)
        try:
            waiting = []
            for _ in range(4):
                sock = socket.create_connection(("127.0.0.1", d.port), timeout=20)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                waiting.append(sock)
            call = h.envelope(h.authenticate_body("queued"), s.token("Cust1")).encode()
            sock = socket.create_connection(("127.0.0.1", d.port), timeout=20)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(call), call))
            waiting.append(sock)
            d.signal(signal.SIGTERM)
            time.sleep(0.3)   # the master has closed its copy of the socket
        finally:
            os.kill(worker, signal.SIGCONT)
        answers = []
        for sock in waiting:   # a stopping worker's answers close their connections
            answer = b""
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except OSError as e:
                answer += repr(e).encode()
            answers.append(answer)
            sock.close()
        # (The worker may accept one before it sees the SIGTERM: answered 200 then.)
        assert all(a.startswith((b"HTTP/1.1 503 ", b"HTTP/1.1 200 ")) for a in answers[:4]), answers
        assert any(a.startswith(b"HTTP/1.1 503 ") for a in answers[:4]), answers
        assert answers[4].startswith(b"HTTP/1.1 200 ") and b"queued" in answers[4], answers[4][:300]
        assert d.wait_exit() == 0


def check_started_without_standard_streams():
    """A daemon started with its standard streams closed (somirrord <&- >&- 2>&-): the files
    it opens must not take their numbers, which it later points at /dev/null (the ready pipe:
    the starter said it failed; the log file: nothing logged; the pid file: its lock lost,
    so a second somirrord got past it)."""
    def close_streams():
        for fd in (0, 1, 2):
            os.close(fd)

    with h.server(start=False, workers=1) as s:
        d = s.daemon
        starter = subprocess.run([d.binary, "-c", s.config], preexec_fn=close_streams, timeout=30)
        pid = h.wait_until(d._pid_from_file, what="the pid file")
        d.pid = int(pid)
        d.pgids.add(d.pid)
        assert starter.returncode == 0, "the starter exited %d though somirrord runs" % starter.returncode
        assert d.healthz()[0] == 200
        d.wait_log(r"somirrord \S+ started \(pid %d" % d.pid)
        second = run("-f", "-c", s.config)
        assert second.returncode == 1 and "already running" in second.stderr, second


def check_damaged_state_file():
    """A state file that does not load fails the start, saying why: the operator's pauses are
    never dropped silently. One that is not a file fails it at once."""
    with h.server(start=False) as s:
        state = os.path.join(s.dir, "somirrord.state")
        with open(state, "w") as f:
            f.write('{"paused": ["Cust1"')
        s.daemon.rewrite_config(state_file=state)
        r = run("-f", "-c", s.config)
        assert r.returncode == 1 and "operator state is not JSON" in r.stderr and \
            "remove it to start with none" in r.stderr, r
        # somirrord -t (the init script's and the unit's check before a start) says the same,
        # where the key is written, rather than "configuration ok".
        t = run("-t", "-c", s.config)
        assert t.returncode == 1 and "configuration ok" not in t.stdout, t
        assert t.stderr.startswith("somirrord: %s:" % s.config) and "operator state is not JSON" in t.stderr and \
            "remove it to start with none" in t.stderr, t
        # ... and a file with more tenants than tenants.max holds
        with open(state, "w") as f:
            f.write('{"paused": ["Cust1", "Cust2"]}')
        s.daemon.rewrite_config(state_file=state, **{"tenants.max": 1})
        for args in (("-f", "-c", s.config), ("-t", "-c", s.config)):
            r = run(*args)
            assert r.returncode == 1 and "the tenant table is full (tenants.max)" in r.stderr, r
        # Nor one that is not a file: a FIFO is refused at once, by -t and by the start, where
        # it was waited on for ever (the start before any worker served).
        os.unlink(state)
        os.mkfifo(state, 0o600)
        for args in (("-t", "-c", s.config), ("-f", "-c", s.config)):
            r = run(*args, timeout=15)
            assert r.returncode == 1 and "%s: cannot read the operator state: not a regular file" % state \
                in r.stderr, r


def check_state_file_as_user():
    """As root with user: set, -t restores the state file as that user, as the start does once
    it is no longer root: one that only root can read fails -t as it fails the start."""
    if os.geteuid() != 0:
        print("check_state_file_as_user: skipped, not root")
        return
    with root_owned_dir("smstate") as base:
        state = os.path.join(base, "somirrord.state")
        with open(state, "w") as f:
            f.write('{"paused": ["Cust1"]}')
        mirrors = os.path.join(base, "mirrors")
        os.mkdir(mirrors)
        pw = pwd.getpwnam("nobody")
        os.chown(mirrors, pw.pw_uid, pw.pw_gid)
        with h.server(start=False) as s:
            s.daemon.rewrite_config(user="nobody", state_file=state, **{"store.sqlite.directory": mirrors})
            for mode, code in ((0o600, 1), (0o644, 0)):
                os.chmod(state, mode)
                r = run("-t", "-c", s.config)
                assert r.returncode == code, (oct(mode), r)
                assert code == 0 or "%s: cannot read the operator state: Permission denied" % state in r.stderr, r


def check_restored_state_logged():
    """A start that restores pauses or pending requests from the state file says so in the log,
    so that tenants that do not mirror after a restart have a reason there; one with nothing to
    restore says nothing."""
    with h.server(start=False) as s:
        state = os.path.join(s.dir, "somirrord.state")
        with open(state, "w") as f:
            f.write('{"paused_all": true, "paused": ["Cust1", "Cust2"], "reset": ["Cust3"], '
                    '"resync": {"Cust1": "*"}}')
        s.daemon.rewrite_config(state_file=state)
        s.daemon.start()
        s.daemon.wait_log(r"info \[%d\] operator state restored from %s: pause all in force, 2 tenants "
                          r"paused, 2 with a resync or reset pending" % (s.daemon.pid, re.escape(state)))
        assert s.daemon.stop() == 0
    with h.server() as s:
        s.daemon.wait_log(r"started")
        assert "operator state restored" not in s.daemon.log(), s.daemon.log()


def check_planted_links_at_test():
    """A log file that is a symbolic link, or a pid file with another hard link, makes the start
    refuse (somirrord(8), PRIVILEGES): -t refuses it too, naming the key, not "configuration ok"."""
    with h.server(start=False) as s:
        other, log_file, pid_file = h.planted_links(s.dir)
        for overrides, needle in (({"log.file": log_file}, "log.file %s: a symbolic link is there (refused)" % log_file),
                                  ({"pid_file": pid_file},
                                   "pid_file %s: a file with other hard links is there (refused)" % pid_file)):
            s.daemon.rewrite_config(**overrides)
            start = run("-f", "-c", s.config)
            assert start.returncode == 1 and "(refused)" in start.stderr, start
            r = run("-t", "-c", s.config)
            assert r.returncode == 1 and "configuration ok" not in r.stdout, r
            assert r.stderr.startswith("somirrord: %s:" % s.config) and needle in r.stderr, r
            s.daemon.rewrite_config(**{"log.file": os.path.join(s.dir, "somirrord.log"),
                                       "pid_file": os.path.join(s.dir, "somirrord.pid")})
        with open(other) as f:
            assert f.read() == "precious\n"


def check_status_socket_for_everyone():
    """A status socket that every local user may write (status_socket_mode 0666) lets anyone
    reset a tenant, dropping its mirror: -t warns (and the start and each reload log it)."""
    with h.server(start=False) as s:
        s.daemon.rewrite_config(status_socket_mode="0666")
        r = run("-t", "-c", s.config)
        assert r.returncode == 0 and "configuration ok" in r.stdout, r
        assert "warning: status_socket_mode 0666 lets every local user" in r.stderr, r
        # ... also when another doubt is said (a hook's program missing): each is said
        s.daemon.rewrite_config(**{"hooks.cycle_completed": [os.path.join(s.dir, "no-such-hook")]})
        r = run("-t", "-c", s.config)
        assert r.returncode == 0 and "warning: hooks.cycle_completed: " in r.stderr and \
            "warning: status_socket_mode 0666 lets every local user" in r.stderr, r
        s.daemon.rewrite_config(status_socket_mode="0660", **{"hooks.cycle_completed": None})
        r = run("-t", "-c", s.config)
        assert r.returncode == 0 and "status_socket_mode" not in r.stderr, r


def holds_open(pid, path):
    """Whether process pid has path open."""
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == path:
                return True
        except OSError:   # closed meanwhile
            pass
    return False


def check_log_reopen():
    """SIGUSR1 (logrotate): the new log file says it was reopened; a log file that cannot be
    reopened is said once per process, in the file kept open."""
    with h.server() as s:
        d = s.daemon
        # A log.file changed by a reload waits for a restart: SIGUSR1 reopens, and names, the
        # file in service. (The config is put back unreloaded: d.log() reads the file it names.)
        d.rewrite_config(**{"log.file": d.log_path + ".next"})
        before = d.worker_pids()
        answer = d.ctl("reload")
        assert answer.startswith("ok"), answer
        d.wait_workers(len(before), timeout=30, exclude=before)   # the previous generation gone
        d.rewrite_config(**{"log.file": d.log_path[:-len(".next")]})
        rotated = d.log_path + ".1"
        os.rename(d.log_path, rotated)
        d.signal(signal.SIGUSR1)
        d.wait_log(r"info \[%d\] SIGUSR1: log file %s reopened" % (d.pid, re.escape(d.log_path)))
        pids = [d.pid] + d.worker_pids()
        h.wait_until(lambda: all(holds_open(pid, d.log_path) for pid in pids), what="every process reopened")
        os.rename(d.log_path, rotated)
        os.mkdir(d.log_path)   # cannot be opened as a file
        d.signal(signal.SIGUSR1)
        h.wait_until(lambda: open(rotated).read().count("keeping the old file open") == len(pids),
                     what="one line per process")
        time.sleep(0.3)
        with open(rotated) as f:
            text = f.read()
        assert text.count("keeping the old file open") == len(pids), text
        assert "cannot reopen the log file" not in text, text
        os.rmdir(d.log_path)


def check_reload_asked_during_start():
    """SIGHUP's default action ends a process: one that comes before the master's handlers are
    in place waits for them (blocked), then is carried out as a reload. Deterministically: the
    SIGHUP is pending, and blocked, when somirrord is started, as a parent that blocked it
    leaves it (the mask survives exec); somirrord must unblock it itself once it can handle it,
    or it would never reload on SIGHUP."""
    def pending_hup():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        os.kill(os.getpid(), signal.SIGHUP)

    with h.server(start=False) as s:
        d = s.daemon
        d.proc = subprocess.Popen([d.binary, "-f", "-c", s.config], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=pending_hup)
        d.pid = d.proc.pid
        d.pgids.add(d.pid)
        d.wait_healthy()
        h.wait_until(lambda: d.ctl_json("show info")["reloads"] == 1, what="the reload asked for")
        assert d.alive() and d.ctl_json("show info")["generation"] == 2
        assert d.stop() == 0


def check_teardown_waits_for_shutdown_timeout():
    """A test that ends with a request still arriving: its daemon stops as configured, its
    worker waiting shutdown_timeout (the harness's 10 s) for the call in hand, then exits 0;
    the harness's teardown waits for that, rather than failing the test as a stop that hung."""
    with h.server() as s:
        d = s.daemon
        client = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        time.sleep(0.5)   # read by a worker: a request arriving, which the stop waits for
    client.close()


def main():
    check_teardown_waits_for_shutdown_timeout()
    check_restored_state_logged()
    check_state_file_as_user()
    check_planted_links_at_test()
    check_status_socket_for_everyone()
    check_log_reopen()
    check_reload_asked_during_start()
    check_relative_paths_as_daemon()
    check_started_without_standard_streams()
    check_damaged_state_file()
    check_drain_waits_for_lingering()
    check_backlog_served_at_stop()
    with h.server() as s:
        d = s.daemon
        check_test_mode(s)
        # The SIGQUIT of a ^\ typed to somirrord -f reaches every process of its group: the
        # master stops at once and kills its workers, which ignore SIGQUIT rather than dump core.
        for pid in d.worker_pids():
            with open("/proc/%d/status" % pid) as f:
                ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
            assert ignored & (1 << (signal.SIGQUIT - 1)), "worker %d does not ignore SIGQUIT" % pid
        with open(d.pid_file) as f:
            assert int(f.read()) == d.pid
        assert os.path.exists(d.status_socket)

        # A second instance on the same pid file refuses, naming the running one.
        second = run("-f", "-c", s.config)
        assert second.returncode == 1, second
        assert "already running" in second.stderr + h.Daemon(s.config).log(), second.stderr
        assert d.alive() and d.healthz()[0] == 200

        # SIGUSR1: the log file is reopened (logrotate moved it away).
        rotated = d.log_path + ".1"
        os.rename(d.log_path, rotated)
        d.signal(signal.SIGUSR1)
        h.wait_until(lambda: os.path.exists(d.log_path), what="a new log file")

        # SIGTERM with a request half uploaded whose body then pauses for longer than the
        # drain's quiet second: it is still answered; then exit 0, pid file and status socket
        # gone.
        body = h.envelope(h.authenticate_body("late"), s.token("Cust1")).encode()
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body[:100])
            time.sleep(0.3)
            d.signal(signal.SIGTERM)
            time.sleep(2.5)
            sock.sendall(body[100:])
            answer = b""
            while b"</s:Envelope>" not in answer:
                chunk = sock.recv(65536)
                assert chunk, "closed without an answer: %r" % answer
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"late" in answer, answer[:300]
        assert d.wait_exit() == 0
        assert not os.path.exists(d.pid_file) and not os.path.exists(d.status_socket)
        h.wait_until(lambda: not d.worker_pids(), what="workers to exit")

        # A stale pid file (no process holds its lock) is taken over; daemon mode.
        with open(d.pid_file, "w") as f:
            f.write("999999\n")
        # The daemon's configuration warns (a short vendor key) before its log is open: the
        # warning reaches the log as well as the starting terminal.
        d.rewrite_config(**{"vendor.certificates": list(d.cfg["vendor"]["certificates"])
                            + [os.path.join(s.dir, "v1024.pem")]})
        d.start(foreground=False)
        assert d.pid != 999999 and len(d.wait_workers(2)) == 2
        d.wait_log(r"warn .*vendor\.certificates\[1\]: .*1024 bits.* \(at start\)")
        workers = d.worker_pids()
        # SIGINT: immediate stop, workers killed, pid file removed.
        d.signal(signal.SIGINT)
        d.wait_exit()
        h.wait_until(lambda: not any(h.pid_alive(p) for p in workers), what="workers to die")
        assert not os.path.exists(d.pid_file)
        assert "log.file is stderr" not in d.output(), d.output()
        # A daemon whose log would go to the stderr it closes says so while it still can.
        d.rewrite_config(**{"log.file": "stderr"})
        d.start(foreground=False)
        assert "warning: log.file is stderr, which a daemon closes once it serves" in d.output(), d.output()
        d.signal(signal.SIGTERM)
        d.wait_exit()
    print("ok")


if __name__ == "__main__":
    main()
