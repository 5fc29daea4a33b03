#!/usr/bin/env python3
"""Security properties of a running somirrord (design.md "Deployment", "Status socket";
protocol.md section 3 "The failure message names the failed check, never key material"):

- the status socket is created with mode 0600 (the default status_socket_mode);
- started as root with `user:` set (a system user somirrortest, created here if missing and
  removed again; skipped when that is impossible) and listening on a privileged port, the
  master and every worker run under that user's uid (real, effective, saved) and gid after
  binding, and the daemon still serves; its mirror files are created mode 0640;
- no key material in the log, the daemon's stderr, fault answers or any status output
  (`show info|workers|tenants|tenant X [json]`, `metrics`): neither a base64 body line of the
  application's or the vendor's private key PEM, nor the application key's modulus or private
  exponent (hex or base64), nor the signature part of any token sent (good or bad);
- a client's text cannot forge a log line: controls in it are written as \\xNN."""
import base64
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

USER = "somirrortest"


def check_socket_mode():
    with H.server(workers=1, **{"log.level": "info"}) as s:
        st = os.stat(s.daemon.status_socket)
        R.check(stat.S_ISSOCK(st.st_mode), "the status socket is not a socket")
        R.check(stat.S_IMODE(st.st_mode) == 0o600, "status socket mode %o, want 600" % stat.S_IMODE(st.st_mode))


def privileged_port():
    for port in range(980, 600, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise R.Skip("no free privileged port")


def ensure_user():
    """(pw entry, created) for the test user; Skip when it cannot be had."""
    if os.geteuid() != 0:
        raise R.Skip("not root: cannot test the privilege drop")
    try:
        return pwd.getpwnam(USER), False
    except KeyError:
        pass
    r = subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", USER], capture_output=True, text=True)
    if r.returncode != 0:
        raise R.Skip("cannot create user %s: %s" % (USER, r.stderr.strip()))
    try:
        return pwd.getpwnam(USER), True
    except KeyError:
        raise R.Skip("useradd succeeded but %s is unknown" % USER)


def check_user_drop():
    pw, created = ensure_user()
    try:
        with tempfile.TemporaryDirectory(prefix="smrelsec") as top:
            os.chmod(top, 0o755)
            run_dir = os.path.join(top, "run")
            os.makedirs(run_dir)
            keys = H.make_keys(top)              # keys stay root's, 0600: read before the drop
            for k in keys:
                os.chmod(k, 0o600)
            port = privileged_port()
            cfg = H.write_config(run_dir, keys, port=port, workers=2, user=USER,
                                 **{"log.level": "info", "store.sqlite.directory": os.path.join(run_dir, "mirrors")})
            for root, dirs, files in os.walk(run_dir):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
            os.chown(run_dir, pw.pw_uid, pw.pw_gid)
            with H.Daemon(cfg) as d:
                try:
                    d.start(timeout=20)
                except AssertionError as e:
                    raise AssertionError("somirrord with user: %s did not start: %s" % (USER, str(e)[-800:]))
                workers = d.wait_workers(2)
                problems = []
                for role, pid in [("master", d.pid)] + [("worker", w) for w in workers]:
                    u = R.uids(pid)
                    g = tuple(int(x) for x in R.proc_status(pid).get("Gid", "").split())
                    if not u or any(x != pw.pw_uid for x in u):
                        problems.append("%s %d Uid %r, want all %d" % (role, pid, u, pw.pw_uid))
                    if not g or any(x != pw.pw_gid for x in g):
                        problems.append("%s %d Gid %r, want all %d" % (role, pid, g, pw.pw_gid))
                    groups = R.proc_status(pid).get("Groups", "").split()
                    if "0" in groups:
                        problems.append("%s %d keeps supplementary group 0" % (role, pid))
                R.check(not problems, "; ".join(problems))
                env = H.ServerEnv(top, keys, cfg, d)
                p = PL.P(env, "dropped")
                p.setup([R.TABLE])
                PL.ok_states(p.rows([R.item_batch(10, 1, lsn=3)]), "RowData as %s" % USER)
                st = os.stat(p.db_path())
                R.check(stat.S_IMODE(st.st_mode) == 0o640, "mirror file mode %o, want 640" % stat.S_IMODE(st.st_mode))
                R.check(st.st_uid == pw.pw_uid, "mirror file owned by uid %d, want %d" % (st.st_uid, pw.pw_uid))
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(p.db_path() + suffix):
                        mode = stat.S_IMODE(os.stat(p.db_path() + suffix).st_mode)
                        R.check(mode & 0o007 == 0, "%s mode %o is world-accessible" % (suffix, mode))
                sock = os.stat(d.status_socket)
                R.check(stat.S_IMODE(sock.st_mode) == 0o600, "status socket mode %o, want 600" % stat.S_IMODE(sock.st_mode))
                R.check((sock.st_uid, sock.st_gid) == (pw.pw_uid, pw.pw_gid),
                        "status socket owned by %d:%d, want %s's (status_socket_mode names its group)"
                        % (sock.st_uid, sock.st_gid, USER))
                R.check(d.ctl_json("show info")["pid"] == d.pid, "status socket")
                ctl = os.path.join(top, "somirrorctl")   # the build directory may be closed to the user
                shutil.copy(H.program("somirrorctl"), ctl)
                os.chmod(ctl, 0o755)
                as_user = subprocess.run(["runuser", "-u", USER, "--", ctl, "-s", d.status_socket, "show", "info"],
                                         capture_output=True, text=True)
                R.check(as_user.returncode == 0, "somirrorctl as %s: %s" % (USER, as_user.stderr.strip()))
                # The log file the master made as root is the user's, so SIGUSR1 can reopen it.
                R.check(os.stat(d.log_path).st_uid == pw.pw_uid, "log file not given to %s" % USER)
                d.signal(signal.SIGUSR1)
                time.sleep(0.5)
                R.check("keeping the old file open" not in d.log() and "cannot reopen" not in d.log(),
                        "SIGUSR1 could not reopen the log as %s" % USER)
                # The keys are root's: a reload (read as the user) would fail, and the start said so.
                R.check(re.search(r"as user %s the configuration does not load, so reloads will fail" % USER,
                                  d.log()), "no warning that reloads would fail")
                for k in keys:
                    os.chown(k, pw.pw_uid, pw.pw_gid)
                d.signal(signal.SIGHUP)
                d.wait_log(r"configuration reloaded: generation 2")
                R.check(d.stop() == 0, "somirrord as %s did not stop cleanly" % USER)
                R.check(not os.path.exists(d.pid_file), "the pid file is left behind")
                # A log path that is a link to a file of root's (the user could plant one in a
                # directory it writes): the start refuses it; the file is neither written nor
                # handed over.
                precious = os.path.join(top, "precious")
                with open(precious, "w") as f:
                    f.write("root's\n")
                os.chmod(precious, 0o600)
                os.remove(d.log_path)
                os.symlink(precious, d.log_path)
                try:
                    d.start(timeout=20)
                    R.check(False, "somirrord started with its log file a link")
                except AssertionError as e:
                    R.check("a symbolic link is there (refused)" in str(e), str(e)[-600:])
                R.check(os.stat(precious).st_uid == 0, "a linked log target was given to %s" % USER)
                with open(precious) as f:
                    R.check(f.read() == "root's\n", "a linked log target was written")
    finally:
        if created:
            subprocess.run(["userdel", USER], capture_output=True)


def key_needles(keys, tokens):
    from cryptography.hazmat.primitives import serialization
    needles = {}
    for path in (keys.app_key_pem, keys.vendor_key):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if len(line) >= 40 and not line.startswith("-----"):
                    needles["%s PEM line %s" % (os.path.basename(path), line[:12])] = line
    with open(keys.app_key_pem, "rb") as f:
        priv = serialization.load_pem_private_key(f.read(), password=None).private_numbers()
    for label, n in (("modulus", priv.public_numbers.n), ("private exponent", priv.d), ("prime p", priv.p)):
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        hx = raw.hex()
        needles[label + " hex"] = hx[16:80]
        needles[label + " HEX"] = hx[16:80].upper()
        needles[label + " base64"] = base64.b64encode(raw).decode()[8:60]
        needles[label + " decimal"] = str(n)[10:60]
    for i, tok in enumerate(tokens):
        sig = tok.rsplit(".", 1)[-1]
        if len(sig) >= 40:
            needles["signature of token %d" % i] = sig[10:60]
    return needles


def check_no_key_material():
    with H.server(workers=2, **{"log.level": "debug"}) as s:
        d = s.daemon
        p = PL.P(s, "secrets")
        tokens = []
        answers = []

        def tok(**kw):
            t = p.token(**kw)
            tokens.append(t)
            return t
        answers.append(p.call("Authenticate", H.authenticate_body("s"), token=tok()))
        p.setup([R.TABLE])
        answers.append(p.call("RowData", H.row_data_body([R.item_batch(5, 1, lsn=1)]), token=tok()))
        # Failing tokens: a wrong signature, expired, wrong issuer, wrong audience, bad claims.
        good = tok()
        h, c, sig = good.split(".")
        bad_sig = h + "." + c + "." + sig[::-1]
        tokens.append(bad_sig)
        for t in (bad_sig, tok(exp=-4000, nbf=-5000), tok(iss="Mallory"), tok(app_id="999"),
                  tok(extra={"sub": "Other"})):
            answers.append(p.call("RowData", H.row_data_body([R.item_batch(1, 1, lsn=1)]), token=t))
            answers.append(p.call("Authenticate", H.authenticate_body("s"), token=t))
        # A broken envelope that carries a good token (truncated in the Body, then a bad tag).
        broken = H.envelope(H.row_data_body([R.item_batch(2, 1, lsn=1)]), good)
        answers.append(p.call("RowData", None, raw=broken[:-40].encode()))
        answers.append(p.call("RowData", None, raw=broken.replace("<Rows>", "<Rows><Row op=>").encode()))
        outputs = {"log": d.log(), "stderr": d.output()}
        for cmd in ("show info", "show workers", "show tenants", "show tenant %s" % p.tenant, "metrics", "help"):
            outputs[cmd] = d.ctl(cmd)
            if cmd.startswith("show"):
                outputs[cmd + " json"] = d.ctl(cmd + " json")
        for i, a in enumerate(answers):
            outputs["answer %d" % i] = a.body.decode(errors="replace")
        R.check(len(outputs["log"]) > 200, "the log is (nearly) empty: %r" % outputs["log"][:200])
        # Refusals and faults name the client, for an operator tracing a misbehaving sender.
        R.check(re.search(r"Authenticate refused: WrongIssuer: .* \(client 127\.0\.0\.1:\d+\)", outputs["log"]),
                "a refusal's log line does not name the client")
        R.check(re.search(r"fault WrongAudience: .* \(client 127\.0\.0\.1:\d+\)", outputs["log"]),
                "a fault's log line does not name the client")
        needles = key_needles(s.keys, tokens)
        leaks = ["%s in %s" % (what, where) for what, needle in needles.items()
                 for where, text in outputs.items() if needle in text]
        R.check(not leaks, "key material leaked: " + "; ".join(leaks[:10]))


def check_log_not_forged():
    """Text a client chose (here a namespace libxml2 quotes in its error, sent without any
    token) cannot end a log line and forge the next: its controls are written as \\xNN."""
    forged = "2026-11-27T00:00:00.000Z error [1] forged: the mirror store is corrupted"
    with H.server(workers=1) as s:
        p = PL.P(s, "forge")
        for body in ('<junk xmlns="urn:x&#10;%s"/>' % forged, '<junk xmlns="urn:x&#13;%s"/>' % forged,
                     '<junk xmlns="urn:c1\u009b31m"/>'):
            answer = p.call("Authenticate", None, raw=body.encode())
            R.check(answer.status == 500, "a broken body answered %s" % answer.status)
        # A terminal's escape sequence in the SOAPAction, which the UnknownOperation fault quotes.
        answer = p.call("Authenticate", H.authenticate_body(), soapaction="\x1b[2Jevil")
        R.check(answer.fault, "an unknown SOAPAction answered %r" % answer)
        H.wait_until(lambda: "evil" in s.daemon.log() and "urn:c1" in s.daemon.log(), what="the refusals' log lines")
        log = s.daemon.log()
        R.check(not any(line.startswith(forged[:24]) for line in log.splitlines()),
                "a client forged a log line:\n" + log[-600:])
        for escaped in ("urn:x\\x0a2026-11-27", "urn:x\\x0d2026-11-27", "urn:c1\\xc2\\x9b31m", "\\x1b[2Jevil"):
            R.check(escaped in log, "%s is not in the log:\n%s" % (escaped, log[-800:]))
        R.check("\x1b" not in log and "\u009b" not in log,
                "a terminal control reached the log:\n" + log[-600:])


def main():
    R.run_checks([("status socket mode 0600", check_socket_mode),
                  ("user: drops master and workers after binding; mirror files 0640", check_user_drop),
                  ("no key material in logs, status or faults", check_no_key_material),
                  ("client text cannot forge log lines", check_log_not_forged)])


if __name__ == "__main__":
    main()
