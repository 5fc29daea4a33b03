#!/usr/bin/env python3
"""Malformed operator input (design.md "Status socket", "Configuration"):

- `somirrord -t` on broken files (YAML syntax, not a mapping, NUL and binary bytes, an empty
  file, a YAML alias bomb, 100,000 nested sequences, wrong types, an unknown key, a garbage key
  file, a missing key file) exits 1 with a clear message on stderr (naming the key or the
  line), in bounded time, never with a signal;
- the status socket given junk lines, a 5000-byte line, NUL bytes, control characters, bytes
  that are not UTF-8, unknown commands, bad tenant names, too many words, 1 MiB without a
  newline, and idle connections: every answer is one line starting "error: ", the master keeps
  answering (a good command right after), and the master and workers are the same processes;
  a client that closes in the middle of its line has nothing run;
- somirrorctl with bad arguments and junk commands: a non-zero exit and an error message."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import rellib as R  # noqa: E402

CONFIG_SECONDS = 10


def somirrord_t(path):
    t0 = time.monotonic()
    try:
        r = subprocess.run([H.program("somirrord"), "-t", "-c", path], capture_output=True, timeout=CONFIG_SECONDS)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - t0
    return r, time.monotonic() - t0


def config_cases(s):
    good = open(s.config).read()

    def variant(**over):
        c = H.read_config(s.config)
        for k, v in over.items():
            H._set_dotted(c, k, v)
        import json
        return json.dumps(c)
    garbage_key = os.path.join(s.dir, "garbage.pem")
    with open(garbage_key, "wb") as f:
        f.write(b"-----BEGIN PRIVATE KEY-----\n" + os.urandom(300) + b"\n-----END PRIVATE KEY-----\n")
    bomb = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        bomb.append("&a%d [%s]" % (i, ", ".join(["*a%d" % (i - 1)] * 10)))
    return [
        ("YAML syntax error", good[:len(good) // 2] + "\n  [unclosed: {\n", ("line", "yaml", "YAML")),
        ("not a mapping", "- a\n- b\n", ("mapping", "top")),
        ("NUL bytes", good.replace('"workers"', '"wor\x00kers"'), ("",)),
        ("binary bytes", os.urandom(2000).decode("latin-1"), ("",)),
        ("empty file", "", ("listen",)),
        ("YAML alias bomb", "tenants:\n  allow: [%s]\n" % ", ".join(bomb), ("more than 64 aliases",)),
        ("100,000 nested sequences", "listen: " + "[" * 100000 + "]" * 100000 + "\n", ("",)),
        ("workers -1", variant(workers=-1), ("workers",)),
        ("listen not an address", variant(listen=["no-port-here"]), ("listen",)),
        ("size with a bad suffix", variant(**{"limits.max_request_bytes": "12XB"}), ("max_request_bytes",)),
        ("duration a list", variant(**{"limits.header_timeout": [1, 2]}), ("header_timeout",)),
        ("unknown key", variant(**{"frobnicate": 1}), ("frobnicate",)),
        ("garbage private key", variant(**{"application.private_key": garbage_key}), ("private_key", "key")),
        ("missing certificate", variant(**{"vendor.certificates": [os.path.join(s.dir, "nope.crt")]}),
         ("nope.crt", "certificates")),
        ("5000-byte key name", variant(**{"k" * 5000: 1}), ("",)),
        ("PostgreSQL conninfo with a typo", variant(**{"store": {"driver": "postgresql", "postgresql": {
            "conninfo": "hots=/tmp dbname=x"}}}), ('conninfo: invalid connection option "hots"',)),
    ]


def check_configs(s):
    problems = []
    for label, text, words in config_cases(s):
        path = os.path.join(s.dir, "broken.yaml")
        with open(path, "w", encoding="latin-1") as f:
            f.write(text)
        r, took = somirrord_t(path)
        if r is None:
            problems.append("%s: somirrord -t still running after %ds (killed)" % (label, CONFIG_SECONDS))
            continue
        err = r.stderr.decode(errors="replace")
        if r.returncode != 1:
            problems.append("%s: exit %d (want 1)%s" % (label, r.returncode,
                                                       " (killed by a signal)" if r.returncode < 0 else ""))
            continue
        if not err.strip():
            problems.append("%s: no message on stderr" % label)
        elif not any(w.lower() in err.lower() for w in words):
            problems.append("%s: message %r names none of %r" % (label, err[:300], words))
        if len(err) > 20000:
            problems.append("%s: a %d-byte message" % (label, len(err)))
        if took > 5:
            problems.append("%s: took %.1fs" % (label, took))
    R.check(not problems, "; ".join(problems))


def raw_status(path, data, timeout=10, shut=True):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(path)
        try:
            c.sendall(data)
            if shut:
                c.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def check_status_junk(s):
    d = s.daemon
    master, workers = d.pid, d.worker_pids()
    cases = [
        ("junk words", b"asdf qwer\n", "unknown command"),
        ("empty line", b"\n", ""),
        ("blank line", b"   \t \n", ""),
        ("5000-byte line", b"show " + b"x" * 5000 + b"\n", "4096"),
        ("5000-byte line, no newline", b"y" * 5000, "4096"),
        ("NUL bytes", b"show\x00 info\n", "NUL"),
        ("only NULs", b"\x00" * 100 + b"\n", "NUL"),
        ("control characters", b"show \x1b[31minfo\n", "control"),
        ("bytes that are not UTF-8", b"\xff\xfe\xc3\x28 info\n", ""),
        ("unknown second word", b"show everything\n", ""),
        ("bad tenant name", b"show tenant ../../etc/passwd json\n", "tenant"),
        ("tenant 5000 characters", b"show tenant " + b"T" * 4000 + b"\n", ""),
        ("format string", b"show tenant %s%s%s%n%n json\n", "tenant"),
        ("too many words", b"show " + b"a " * 100 + b"\n", ""),
        ("too many arguments", b"reset a b c\n", ""),
        ("missing argument", b"pause\n", ""),
        ("1 MiB without a newline", b"z" * (1 << 20), "4096"),
        ("CRLF junk", b"\r\n\r\n", ""),
    ]
    problems = []
    for label, data, word in cases:
        try:
            out = raw_status(d.status_socket, data)
        except OSError as e:
            problems.append("%s: %s" % (label, e))
            continue
        lines = out.splitlines()
        if len(lines) != 1 or not lines[0].startswith("error: "):
            problems.append("%s: answer %r (want one line starting 'error: ')" % (label, out[:200]))
        elif word and word.lower() not in out.lower():
            problems.append("%s: answer %r does not mention %r" % (label, out[:200], word))
        if "%n" in label and "%n" not in out and "%s" not in out and "error" not in out:
            problems.append("%s: answer %r" % (label, out))
        try:
            info = d.ctl_json("show info")
            if info.get("pid") != master:
                problems.append("%s: show info pid %r" % (label, info.get("pid")))
        except Exception as e:  # noqa: BLE001
            problems.append("%s: the next good command failed: %s" % (label, e))
    R.check(not problems, "; ".join(problems))
    R.check(d.alive() and d.pid == master, "the master changed or died")
    R.check(d.worker_pids() == workers, "workers changed: %r -> %r" % (workers, d.worker_pids()))


def check_status_idle(s):
    d = s.daemon
    with H.unix_clients(d.status_socket, 50) as idle:
        half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        half.connect(d.status_socket)
        half.sendall(b"show inf")    # half a command, then silence
        idle.append(half)
        t0 = time.monotonic()
        info = d.ctl_json("show info")
        R.check(time.monotonic() - t0 < 2, "show info took %.1fs behind idle clients" % (time.monotonic() - t0))
        R.check(info["pid"] == d.pid, "show info: %r" % info)
        R.check(d.healthz()[0] == 200, "/healthz")


def check_status_cut_short(s):
    """A client that closes its socket in the middle of a command line (no newline, its writing
    side not ended first: it died) has nothing run: "pause Cut" of "pause CutShort" pauses no
    tenant. One that ends its writing side instead is answered."""
    d = s.daemon
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(d.status_socket)
        c.sendall(b"pause Cut")
    H.wait_until(lambda: "status socket: a client closed" in d.log() or "paused Cut" in d.log(), 10,
                 what="the cut command's log line")
    tenants = [t["tenant"] for t in d.ctl_json("show tenants")["tenants"]]
    R.check("Cut" not in tenants, "the cut command was run: tenants %r" % tenants)
    d.wait_log(r"status socket: a client closed its connection before its command line ended")
    out = raw_status(d.status_socket, b"pause Cut")
    R.check(out == "ok: paused Cut\n", "a command ended by the end of the writing side: %r" % out)
    R.check(raw_status(d.status_socket, b"resume Cut").startswith("ok"), "resume Cut")


def check_ctl(s):
    ctl = H.program("somirrorctl")
    cases = [
        ([ctl, "-s", s.daemon.status_socket, "frobnicate"], "unknown command"),
        ([ctl, "-s", s.daemon.status_socket, "show", "tenant", "a/b"], "tenant"),
        ([ctl, "-s", s.daemon.status_socket, "show", "x" * 5000], ""),
        ([ctl, "-s", s.daemon.status_socket, "show", "in\tfo"], ""),
        ([ctl, "-s", os.path.join(s.dir, "absent.sock"), "show", "info"], ""),
        ([ctl, "-c", os.path.join(s.dir, "absent.yaml"), "show", "info"], ""),
        ([ctl, "-s", s.daemon.status_socket], ""),
        ([ctl, "-Z"], ""),
    ]
    problems = []
    for argv, word in cases:
        r = subprocess.run(argv, capture_output=True, timeout=20)
        out = (r.stdout + r.stderr).decode(errors="replace")
        label = " ".join(a if len(a) < 40 else a[:20] + "..." for a in argv[1:])
        if r.returncode == 0 or r.returncode < 0:
            problems.append("%s: exit %d, output %r" % (label, r.returncode, out[:200]))
        elif not out.strip():
            problems.append("%s: no message" % label)
        elif word and word not in out:
            problems.append("%s: output %r does not mention %r" % (label, out[:200], word))
    # A newline inside an argument must not smuggle a second command.
    r = subprocess.run([ctl, "-s", s.daemon.status_socket, "show", "info\npause all"], capture_output=True,
                       timeout=20)
    info = s.daemon.ctl_json("show info")
    if info.get("paused_all") not in (False, "no", 0, None):
        subprocess.run([ctl, "-s", s.daemon.status_socket, "resume", "all"], capture_output=True, timeout=20)
        problems.append("an argument with a newline smuggled 'pause all' (exit %d)" % r.returncode)
    R.check(info["pid"] == s.daemon.pid, "the master changed")
    R.check(not problems, "; ".join(problems))


def main():
    with H.server(workers=2, **{"log.level": "info"}) as s:
        R.run_checks([("somirrord -t on broken configs", lambda: check_configs(s)),
                      ("status socket junk", lambda: check_status_junk(s)),
                      ("status socket idle clients", lambda: check_status_idle(s)),
                      ("status socket command cut short", lambda: check_status_cut_short(s)),
                      ("somirrorctl bad input", lambda: check_ctl(s))])


if __name__ == "__main__":
    main()
