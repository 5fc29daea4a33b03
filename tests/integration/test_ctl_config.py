#!/usr/bin/env python3
"""somirrorctl -c with a configuration that does not load (somirrorctl(8)): it still finds the
top-level status_socket (a YAML syntax error after it, a file that is YAML but not a valid
configuration, a decoy status_socket nested in a section), says on one stderr line which socket
it uses, and keeps its exit codes; with no status_socket to read it fails and says to use -s.
And the status socket answers a line longer than 4096 bytes with an error line and an end of
file, not a connection reset, whatever the client still sends, without holding up other
clients. A step of the daemon's wall clock back leaves uptime counting (monotonic) and no
tenant's last-cycle age negative. A status socket that never answers, or never accepts, is said
to, after -w seconds."""
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import protolib as PL  # noqa: E402

TOO_LONG = b"error: command longer than 4096 bytes\n"


def ctl(*args):
    return subprocess.run([h.program("somirrorctl")] + list(args), capture_output=True, text=True,
                          timeout=20)


def check_used_socket(result, config, socket_path, error):
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "using status_socket %s of %s" % (socket_path, config) in lines[0], result.stderr
    assert error in lines[0], result.stderr


def check_broken_syntax(d):
    """The audit's case: an edit breaks the file, the reload is refused, the operator asks."""
    with open(d.config_path, "a") as f:
        f.write("\nbogus: [\n")
    d.signal(signal.SIGHUP)
    h.wait_until(lambda: d.ctl_json("show info")["reloads_failed"] == 1, what="the failed reload")
    r = ctl("-c", d.config_path, "show", "info")
    assert r.returncode == 0 and r.stdout.startswith("version\t"), r
    check_used_socket(r, d.config_path, d.status_socket, "YAML syntax error")
    r = ctl("-c", d.config_path, "show", "bogus")
    assert r.returncode == 1 and r.stdout.startswith("error: "), r
    d.rewrite_config()


def check_invalid_configuration(s):
    """YAML, but not a valid configuration: unknown and missing keys, a password file that
    cannot be read, and a status_socket nested in a section before the top-level one."""
    config = os.path.join(s.dir, "invalid.yaml")
    with open(config, "w") as f:
        f.write("# block style, as an operator writes it\n"
                "listen: 127.0.0.1:1\n"
                "hooks:\n"
                "  status_socket: %s/decoy.sock\n"
                "store:\n"
                "  driver: postgresql\n"
                "  postgresql:\n"
                "    conninfo: host=nowhere\n"
                "    password_file: %s/no-such-password\n"
                "status_socket: '%s'\n"
                "workers: lots\n" % (s.dir, s.dir, s.daemon.status_socket))
    r = ctl("-c", config, "show", "workers", "json")
    assert r.returncode == 0 and r.stdout.startswith('{"workers":'), r
    check_used_socket(r, config, s.daemon.status_socket, "more errors")


def check_no_socket(s):
    """Nothing to read (the key has no default): exit 1, the errors, and a hint at -s."""
    config = os.path.join(s.dir, "nosocket.yaml")
    with open(config, "w") as f:
        f.write("workers: lots\nlog:\n  status_socket: %s\n" % s.daemon.status_socket)
    for path in (config, os.path.join(s.dir, "absent.yaml")):
        r = ctl("-c", path, "show", "info")
        assert r.returncode == 1 and r.stdout == "", r
        assert "give one with -s SOCKET" in r.stderr.splitlines()[-1], r.stderr
        assert "using status_socket" not in r.stderr, r.stderr
    r = ctl("-c", config, "tables", "Cust1")
    assert r.returncode == 1 and "cannot use the configuration" in r.stderr, r


def check_relative_paths(s):
    """A relative status_socket or mirror directory is this process's current directory's, not
    somirrord's: a failure that may come of it says so."""
    config = os.path.join(s.dir, "relative.yaml")
    cfg = h.read_config(s.config)
    h._set_dotted(cfg, "status_socket", "rel.sock")
    h._set_dotted(cfg, "store.sqlite.directory", "data")
    with open(config, "w") as f:
        f.write(h.json.dumps(cfg))
    elsewhere = os.path.join(s.dir, "elsewhere")
    os.mkdir(elsewhere)
    for args, said in ((["show", "info"], "cannot connect to rel.sock"),
                       (["tables", "Cust1"], "Cust1: no mirror (the mirror directory data: No such file")):
        r = subprocess.run([h.program("somirrorctl"), "-c", config] + args, capture_output=True, text=True,
                           timeout=20, cwd=elsewhere)
        assert r.returncode == 1 and said in r.stderr, r
        assert "a relative path: taken from this current directory" in r.stderr, r
    assert os.listdir(elsewhere) == [], "somirrorctl made %r" % os.listdir(elsewhere)


def answer_of(sock):
    """Everything until the end of file (a reset raises)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def check_long_lines(d):
    """Lines past the limit, one more than the socket buffers hold, sent by a client that never
    ends its writing side: the error line, then the end of file."""
    for size in (5000, 600000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(d.status_socket)
            sock.sendall(b"x" * size + b"\n")
            answer = answer_of(sock)
            assert answer == TOO_LONG, (size, answer[:100])
    # A client that sent too much and then keeps its connection open holds up no one.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.settimeout(10)
        idle.connect(d.status_socket)
        idle.sendall(b"y" * 8000)
        started = time.monotonic()
        r = ctl("-s", d.status_socket, "show", "info")
        assert r.returncode == 0 and time.monotonic() - started < 2, r
        assert answer_of(idle) == TOO_LONG


def check_socket_mode():
    """status_socket_mode is the socket's mode exactly: made so by the umask at bind, not by a
    chmod of the path afterwards (which a link put there meanwhile would redirect)."""
    for mode in (0o660, 0o640):
        with h.server(workers=1, status_socket_mode="0%o" % mode) as s:
            got = stat.S_IMODE(os.lstat(s.daemon.status_socket).st_mode)
            assert got == mode, "status socket mode %o, want %o" % (got, mode)


def check_out_of_descriptors():
    """The master out of descriptors while status clients pile up: accepting pauses (no loop at
    full CPU on the readable socket, no flood of lines), and the socket answers again once
    clients leave."""
    with h.server(workers=1, start=False) as s:
        d = s.daemon
        limited = os.path.join(s.dir, "somirrord-48-fds")
        with open(limited, "w") as f:
            f.write("#!/bin/sh\nexec prlimit --nofile=48:48 %s \"$@\"\n" % d.binary)
        os.chmod(limited, 0o755)
        d.binary = limited
        d.start()
        with h.unix_clients(d.status_socket, 60):
            h.wait_until(lambda: "status socket %s: accept: Too many open files" % d.status_socket in d.log(),
                         5, what="the accept failure's line")
            before = h.cpu_seconds(d.pid)
            time.sleep(2)
            used = h.cpu_seconds(d.pid) - before
            assert used < 0.5, "the master used %.2f s of CPU in 2 s out of descriptors" % used
            assert d.log().count("accept: Too many open files") == 1, d.log()[-2000:]
        h.wait_until(lambda: ctl("-s", d.status_socket, "show", "info").returncode == 0, 10,
                     what="the status socket to answer again")


def check_wall_clock_step():
    """The master's wall clock steps two hours back (libfaketime, the daemon alone; an NTP step):
    show info's uptime still counts from the start, and the tenant's last-cycle age in metrics
    is 0, not negative."""
    with h.server(workers=1, start=False) as s:
        d = s.daemon
        offset = os.path.join(s.dir, "faketime")
        with open(offset, "w") as f:
            f.write("+0\n")
        stepped = os.path.join(s.dir, "somirrord-faketime")
        with open(stepped, "w") as f:
            f.write("#!/bin/sh\n%s exec %s \"$@\"\n"
                    % (" ".join("%s=%s" % (k, shlex.quote(v)) for k, v in h.faketime_env(offset).items()),
                       shlex.quote(d.binary)))
        os.chmod(stepped, 0o755)
        d.binary = stepped
        d.start()
        p = PL.P(s, "clock")
        p.auth()
        assert p.completed().status == 200
        with open(offset, "w") as f:
            f.write("-2h\n")
        uptime = d.ctl_json("show info")["uptime"]
        assert 0 <= uptime < 600, "uptime %s after the wall clock stepped back 2 h" % uptime
        ages = [line for line in d.ctl("metrics").splitlines()
                if line.startswith('somirror_tenant_last_cycle_age_seconds{tenant="%s"}' % p.tenant)]
        assert len(ages) == 1 and float(ages[0].split()[-1]) >= 0, ages


def check_one_word_arguments(s):
    """An argument that holds a line break or a space is refused (exit 2) before anything is
    sent: joined into the command line it would be another command, or other words."""
    d = s.daemon
    for arg in ("Cust1\nreset Cust9", "Cust1 all", "Cust1\t", ""):
        r = ctl("-s", d.status_socket, "pause", arg)
        assert r.returncode == 2 and "argument 2 is not one word" in r.stderr, (arg, r)
    # Also before resync looks for the table in the mirror.
    r = ctl("-c", d.config_path, "resync", "Cust1", "contact\nreset Cust9")
    assert r.returncode == 2 and "argument 3 is not one word" in r.stderr, r
    tenants = d.ctl_json("show tenants")
    assert not any(t.get("state") == "paused" for t in tenants.get("tenants", [])), tenants


def check_command_words_any_case(s):
    """somirrorctl's own command words (tables, and resync, whose table it checks first) are read
    in any case, as the status socket reads every command word."""
    table = {"name": "contact", "columns": [("contact_id", "int", False)], "pk": ["contact_id"]}
    for op, body in (("Authenticate", h.authenticate_body()), ("TableSchema", h.table_schema_body([table]))):
        status, _, answer = s.call(op, body, tenant="Case1")
        assert status == 200, answer
    r = ctl("-c", s.config, "TABLES", "Case1")
    assert r.returncode == 0 and r.stdout.startswith("table\t") and "\ncontact\t" in r.stdout, r
    r = ctl("-c", s.config, "Resync", "Case1", "contcat")
    assert r.returncode == 1 and "has no table contcat" in r.stderr and r.stdout == "", r


def check_unanswered():
    """somirrorctl against a socket that takes the command and never answers (a master that
    hangs): the wait ends after -w seconds (60 by default), saying so, not as "Resource
    temporarily unavailable" (the errno of the receive timeout); -w takes whole seconds from 1
    to 86400, and refuses anything else before sending."""
    with tempfile.TemporaryDirectory(prefix="smctl") as directory:
        path = os.path.join(directory, "hung.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            started = time.monotonic()
            proc = subprocess.run([h.program("somirrorctl"), "-s", path, "-w", "1", "show", "info"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
            waited = time.monotonic() - started
        assert proc.returncode == 1 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
        assert re.fullmatch(r"somirrorctl: no answer from \S+hung\.sock within 1 s \([^)]*\)\n",
                            proc.stderr), proc.stderr
        assert 0.9 < waited < 10, waited
        # A master that hangs stops accepting: once the listen backlog is full, connect waits
        # too, within -w all the same.
        path = os.path.join(directory, "full.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(0)
            queued = []
            while True:
                queued.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                queued[-1].setblocking(False)
                try:
                    queued[-1].connect(path)
                except BlockingIOError:
                    break
            started = time.monotonic()
            proc = subprocess.run([h.program("somirrorctl"), "-s", path, "-w", "1", "show", "info"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
            waited = time.monotonic() - started
            for q in queued:
                q.close()
        assert proc.returncode == 1 and re.fullmatch(
            r"somirrorctl: no answer from \S+full\.sock within 1 s \([^)]*\)\n", proc.stderr), proc
        assert 0.9 < waited < 10, waited
        for bad in ("0", "-1", "+5", " 5", "5s", "86401", "99999999999999999999", ""):
            proc = subprocess.run([h.program("somirrorctl"), "-s", path, "-w", bad, "show", "info"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
            assert proc.returncode == 2 and "-w: expected whole seconds from 1 to 86400" in proc.stderr, \
                (bad, proc.returncode, proc.stderr)


def check_help_and_version():
    """-h/--help and -V/--version, in either spelling, as somirrord and somirror-task take them."""
    for flag in ("-h", "--help"):
        r = ctl(flag)
        assert r.returncode == 0 and r.stdout.startswith("usage: somirrorctl"), (flag, r)
    for flag in ("-V", "--version"):
        r = ctl(flag)
        assert r.returncode == 0 and re.fullmatch(r"somirrorctl \S+\n", r.stdout), (flag, r)
    r = ctl("--bogus")
    assert r.returncode == 2 and "usage:" in r.stderr, r


def main():
    check_help_and_version()
    check_wall_clock_step()
    check_socket_mode()
    check_out_of_descriptors()
    with h.server(workers=1) as s:
        check_broken_syntax(s.daemon)
        check_invalid_configuration(s)
        check_no_socket(s)
        check_relative_paths(s)
        check_long_lines(s.daemon)
        check_one_word_arguments(s)
        check_command_words_any_case(s)
        assert s.daemon.stop() == 0
    check_unanswered()
    print("ok")


if __name__ == "__main__":
    main()
