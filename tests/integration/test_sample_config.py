"""The shipped deployment files (contrib/): the sample configuration is valid (`somirrord -t`
accepts it with generated keys) and agrees with the systemd unit, the init script and the
logrotate snippet (one pid file; the pid file and status socket in the runtime directory that
the unit and the init script give to the config's `user`; the state file in persistent storage
that user owns, not in a directory systemd removes at every stop). Then the sample layout runs
under a temporary root, its directories made by the unit's own ExecStartPre commands: as root
with `user: nobody` when run as root (else without a privilege drop), it serves a real cycle,
`somirrorctl -c CONFIG tables CTX` lists the tenant's mirrored tables, a pause is written to the
state file, SIGUSR1 reopens the log, the pid file and socket are removed at exit, and the pause
survives a restart after systemd's removal of the runtime directory."""

import contextlib
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONTRIB = os.path.join(harness.SRCDIR, "contrib")
SAMPLE = os.path.join(CONTRIB, "somirrord.yaml")
UNIT = os.path.join(CONTRIB, "somirrord.service")
INIT = os.path.join(CONTRIB, "somirrord.init")
LOGROTATE = os.path.join(CONTRIB, "somirrord.logrotate")


def run(*args, check=True):
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=120)
    if check and proc.returncode != 0:
        harness.fail("%s exited %d: %s" % (" ".join(args), proc.returncode, proc.stdout))
    return proc


def read(path):
    with open(path) as f:
        return f.read()


def sample_settings(text):
    """The deployment keys of the sample (block style, as shipped)."""
    def key(pattern):
        m = re.search(pattern, text)
        assert m, "the sample config has no %s" % pattern
        return m.group(1).strip('"')
    return {
        "pid_file": key(r"(?m)^pid_file: *(\S+)"),
        "status_socket": key(r"(?m)^status_socket: *(\S+)"),
        "state_file": key(r"(?m)^state_file: *(\S+)"),
        "user": key(r"(?m)^user: *(\S+)"),
        "group": key(r"(?m)^group: *(\S+)"),
        "log_file": key(r"(?m)^log:\n(?:  #.*\n)*  file: *(\S+)"),
        "sqlite_dir": key(r"(?m)^  sqlite:\n(?:    #.*\n)*    directory: *(\S+)"),
    }


def unit_settings(text):
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    values = {}
    for line in service.splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values.setdefault(name, []).append(value)
    return values


def init_default(text, name):
    m = re.search(r"(?m)^%s=\$\{env_\w+:-\$\{%s:-(.*)\}\}$" % (name, name), text)
    assert m, "the init script has no default for %s" % name
    return m.group(1)


def under(path, directory):
    return os.path.commonpath([path, directory]) == directory


def check_consistency():
    """The sample config, the unit, the init script and logrotate name the same files."""
    s = sample_settings(read(SAMPLE))
    unit = unit_settings(read(UNIT))
    init = read(INIT)
    run_dir = os.path.dirname(s["pid_file"])
    state_dir = os.path.dirname(s["state_file"])

    # One pid file, one runtime directory holding the pid file and the socket.
    assert unit["PIDFile"] == [s["pid_file"]], (unit["PIDFile"], s["pid_file"])
    assert init_default(init, "PIDFILE") == s["pid_file"], init_default(init, "PIDFILE")
    assert os.path.dirname(s["status_socket"]) == run_dir, s
    assert unit["RuntimeDirectory"] == [os.path.relpath(run_dir, "/run")], unit["RuntimeDirectory"]
    # RUN_DIR follows PIDFILE unless set.
    assert init_default(init, "RUN_DIR") == '$(dirname "$PIDFILE")', init_default(init, "RUN_DIR")

    # The state file outlives restarts and reboots: not in /run, not in the directory the unit
    # removes at every stop; with the mirrors, in the directory the unit and the script give the
    # user.
    assert not under(s["state_file"], "/run") and not under(s["state_file"], "/var/run"), s
    for d in unit["RuntimeDirectory"]:   # removed at every stop (no RuntimeDirectoryPreserve)
        assert not under(s["state_file"], os.path.join("/run", d)), (s["state_file"], d)
    # StateDirectory= without User= would give /var/lib/somirror, mirrors and all, to root.
    assert "StateDirectory" not in unit, unit["StateDirectory"]
    assert state_dir == s["sqlite_dir"], (state_dir, s["sqlite_dir"])
    assert init_default(init, "STATE_DIR") == state_dir, init_default(init, "STATE_DIR")

    # No User= (somirrord binds as root, then drops to user:); the directories the dropped user
    # writes are handed to it with full privileges ('+') before the configuration check.
    assert "User" not in unit and "Group" not in unit, "User=/Group= keep somirrord from binding as root"
    pre = unit["ExecStartPre"]
    owned = {}
    for command in pre:
        if command.startswith("+/usr/bin/install -d "):
            words, opts, dirs = shlex.split(command[1:])[2:], {}, []
            while words:
                if words[0] in ("-o", "-g", "-m"):
                    opts[words[0]] = words[1]
                    words = words[2:]
                else:
                    dirs.append(words.pop(0))
            for d in dirs:
                owned[d] = (opts.get("-o"), opts.get("-g"), opts.get("-m"))
    assert owned.get(run_dir) == (s["user"], s["group"], "0755"), owned
    assert owned.get(state_dir) == (s["user"], s["group"], "0750"), owned
    log_lines = [c for c in pre if s["log_file"] in c]
    assert len(log_lines) == 1 and log_lines[0].startswith("+"), pre
    assert "chown -h %s:" % s["user"] in log_lines[0] and "touch %s" % s["log_file"] in log_lines[0], log_lines
    assert init_default(init, "LOG_FILE") == s["log_file"], init_default(init, "LOG_FILE")
    assert init_default(init, "DAEMON_USER") == s["user"], init_default(init, "DAEMON_USER")
    # The checks that were there stay, on the same configuration.
    config = init_default(init, "CONFIG")
    assert pre[-1] == "/usr/sbin/somirrord -t -c %s" % config, pre
    assert unit["ExecStart"] == ["/usr/sbin/somirrord -c %s" % config], unit["ExecStart"]
    assert unit["ExecReload"] == ["/usr/sbin/somirrord -t -c %s" % config, "/usr/bin/somirrorctl -c %s reload" % config]
    assert s["status_socket"], "the unit's reload goes through the status socket"
    assert init_default(init, "DAEMON") == "/usr/sbin/somirrord"

    # logrotate: the same log file, created for the user, and the same pid file.
    rotate = read(LOGROTATE)
    assert rotate.startswith("#") and re.search(r"(?m)^%s \{" % re.escape(s["log_file"]), rotate), rotate
    assert re.search(r"(?m)^\s+create 0640 %s adm$" % s["user"], rotate), rotate
    assert "head -c 32 %s" % s["pid_file"] in rotate, rotate
    return s, pre


def prepare_root(root, pre, settings, user, group):
    """Runs the unit's '+' ExecStartPre commands with the paths moved under root and the
    sample's user (and group) replaced; without a user (not root), just makes the directories."""
    if user is None:
        for path in (settings["pid_file"], settings["state_file"], settings["log_file"]):
            os.makedirs(root + os.path.dirname(path), exist_ok=True)
        os.makedirs(root + settings["sqlite_dir"], exist_ok=True)
        return
    for command in root_commands(root, pre, settings, user, group):
        run("/bin/sh", "-c", command)


def root_commands(root, pre, settings, user, group):
    """The unit's '+' ExecStartPre commands, their paths moved under root and the sample's user
    (and group) replaced."""
    log_group = "adm" if harness.group_exists("adm") else group
    commands = []
    for command in pre:
        if not command.startswith("+"):
            continue
        command = command[1:]
        dirs = {os.path.dirname(settings[k]) for k in ("pid_file", "state_file", "log_file")}
        for path in sorted(dirs | {settings["sqlite_dir"]}, key=len, reverse=True):
            command = command.replace(path, root + path)
        command = command.replace("-o %s " % settings["user"], "-o %s " % user)
        command = command.replace("-g %s " % settings["group"], "-g %s " % group)
        command = command.replace("chown -h %s:adm " % settings["user"], "chown -h %s:%s " % (user, log_group))
        outside = re.search(r"(?<![\w.-])/(run|var|etc|srv|home)/\S*", command)
        assert not outside, "%s would touch %s outside the temporary root" % (command, outside.group(0))
        commands.append(command)
    return commands


def check_log_link_refused(work, pre, settings, user, group):
    """A log directory the user was once given, and a link planted in it where the log file
    goes: the unit's root command takes the directory back and chowns nothing through the
    link."""
    root = os.path.join(work, "linkroot")
    log_dir = root + os.path.dirname(settings["log_file"])
    os.makedirs(log_dir)
    pw = pwd.getpwnam(user)
    os.chown(log_dir, pw.pw_uid, pw.pw_gid)
    victim = os.path.join(work, "victim")
    open(victim, "w").close()
    os.symlink(victim, root + settings["log_file"])
    log_command = [c for c in root_commands(root, pre, settings, user, group) if "chown" in c]
    assert len(log_command) == 1, log_command
    r = subprocess.run(["/bin/sh", "-c", log_command[0]], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "the unit's log command went on through a link: %s" % r
    assert os.stat(victim).st_uid == 0, "the unit's log command chowned the link's target"
    assert os.stat(log_dir).st_uid == 0, "the log directory stayed the user's"


def main():
    settings, pre = check_consistency()
    with tempfile.TemporaryDirectory(prefix="smsample") as work:
        os.chmod(work, 0o755)   # the dropped user reaches the temporary root through it
        task = harness.program("somirror-task")
        run(task, "keys", "--out", work)
        check_postrotate_trusts_no_pid(work)
        text = read(SAMPLE)
        text = text.replace("/etc/somirror/app.xml", os.path.join(work, "app.xml"))
        text = text.replace("/etc/somirror/vendor.crt", os.path.join(work, "vendor.crt"))
        checked = os.path.join(work, "checked.yaml")
        checked_text = text
        try:
            pwd.getpwnam(settings["user"])
        except KeyError:   # -t checks that the user exists: one that does here
            pw = pwd.getpwnam("nobody")
            checked_text = re.sub(r"(?m)^user: .*$", "user: " + pw.pw_name, checked_text)
            checked_text = re.sub(r"(?m)^group: .*$", "group: " + grp.getgrgid(pw.pw_gid).gr_name, checked_text)
        open(checked, "w").write(checked_text)
        out = run(harness.program("somirrord"), "-t", "-c", checked).stdout
        assert "configuration ok" in out, out
        assert "hooks." not in out, "the sample names a hook that is not there: %s" % out

        # The same file, its paths under a temporary root, its user nobody when we are root.
        root = os.path.join(work, "root")
        user = group = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            user, group = pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name
        port = harness.free_port()
        for old, new in (("127.0.0.1:8080", "127.0.0.1:%d" % port), ("/run/somirror/", root + "/run/somirror/"),
                         ("/var/log/somirror/", root + "/var/log/somirror/"),
                         ("/var/lib/somirror", root + "/var/lib/somirror")):
            text = text.replace(old, new)
        if user:
            text = re.sub(r"(?m)^user: .*$", "user: " + user, text)
            text = re.sub(r"(?m)^group: .*$", "group: " + group, text)
        else:
            text = re.sub(r"(?m)^(user|group): .*\n", "", text)   # no privilege drop possible
        text = re.sub(r"(?m)^workers: .*$", "workers: 2", text)
        config = os.path.join(work, "somirrord.yaml")
        open(config, "w").write(text)
        os.chmod(config, 0o644)
        app_id = re.search(r'(?m)^  id: "([0-9]+)"', text).group(1)
        pid_file, sock = root + settings["pid_file"], root + settings["status_socket"]
        state_file, log_file = root + settings["state_file"], root + settings["log_file"]
        prepare_root(root, pre, settings, user, group)
        if user:
            check_log_link_refused(work, pre, settings, user, group)

        source = os.path.join(work, "source.db")
        run(task, "gen", "--db", source, "--scale", "30", "--seed", "3")
        run(task, "provision", "--db", source)
        ctl = harness.program("somirrorctl")
        proc = start(config, port, log_file)
        try:
            run(task, "run", "--once", "--url", "http://127.0.0.1:%d/" % port, "--app-id", app_id,
                "--vendor-key", os.path.join(work, "vendor.key"),
                "--vendor-cert", os.path.join(work, "vendor.crt"),
                "--app-public-key", os.path.join(work, "app.pub"), "--tenant", "Cust7", "--db", source)
            tables = run(ctl, "-c", config, "tables", "Cust7").stdout
            lines = [l for l in tables.splitlines() if l.strip()]
            assert any(re.match(r"contact\s+\d+\s+[0-9a-f]{64}", l) for l in lines), tables
            assert not any(l.startswith("credentials") for l in lines), tables
            # A resync of a table the mirror lacks is refused before it is sent (the client reads
            # the tables as `tables` does, as the service's user); any case names the table.
            typo = run(ctl, "-c", config, "resync", "Cust7", "contcat", check=False)
            assert typo.returncode == 1 and "has no table contcat" in typo.stdout, typo.stdout
            assert "contact, " in typo.stdout and "nothing requested" in typo.stdout, typo.stdout
            assert "resync of Cust7" not in read(log_file), _tail(log_file)
            resync = run(ctl, "-c", config, "resync", "Cust7", "CONTACT").stdout
            assert resync.startswith("ok: resync of Cust7 (CONTACT)"), resync
            status = run(ctl, "-c", config, "show", "tenant", "Cust7").stdout
            assert "Cust7" in status and "idle" in status, status
            bad = run(ctl, "-c", config, "show", "tenant", "Nobody", check=False)
            assert bad.returncode == 1 and bad.stdout.startswith("error: "), bad.stdout

            # A pause is written to the state file (by the dropped user, in its directory).
            paused = run(ctl, "-c", config, "pause", "Cust7").stdout
            assert paused.startswith("ok"), paused
            assert "Cust7" in json.load(open(state_file))["paused"], read(state_file)
            if user:
                assert os.stat(state_file).st_uid == pwd.getpwnam(user).pw_uid, os.stat(state_file)
            # SIGUSR1 (reopen-logs) reopens the log file, as it is and after logrotate's
            # rename and create (0640 for the user).
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.5)
            assert "cannot open log file" not in read(log_file), _tail(log_file)
            os.rename(log_file, log_file + ".1")
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            if user:
                os.fchown(fd, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
            os.close(fd)
            run("/bin/sh", "-c", postrotate(root + settings["pid_file"]))

            def logged_anew():
                run(ctl, "-c", config, "pause", "Cust7")
                return "paused Cust7" in read(log_file)
            harness.wait_until(logged_anew, 5, interval=0.2, what="a log line in the new log file")
            assert "cannot open log file" not in read(log_file + ".1"), _tail(log_file + ".1")
        finally:
            proc.terminate()
            proc.wait(30)
        assert proc.returncode == 0, proc.returncode
        left = [p for p in (pid_file, sock) if os.path.exists(p)]
        assert not left, "left behind at exit: %s" % left
        # `tables` reads a mirror without the service (as its user when root) and makes none
        # for a tenant that has none.
        assert "contact" in run(ctl, "-c", config, "tables", "Cust7").stdout
        nobody = run(ctl, "-c", config, "tables", "Nobody", check=False)
        assert nobody.returncode == 1 and "Nobody: no mirror" in nobody.stdout, nobody
        mirrors = root + settings["sqlite_dir"]
        assert not [n for n in os.listdir(mirrors) if "Nobody" in n], os.listdir(mirrors)
        if user:
            owners = {n: os.stat(os.path.join(mirrors, n)).st_uid for n in os.listdir(mirrors)}
            assert set(owners.values()) == {pwd.getpwnam(user).pw_uid}, owners

        # systemd removes the runtime directory at stop and ExecStartPre makes it again: the
        # pause is still there.
        shutil.rmtree(os.path.dirname(pid_file))
        prepare_root(root, pre, settings, user, group)
        proc = start(config, port, log_file)
        try:
            status = run(ctl, "-c", config, "show", "tenant", "Cust7").stdout
            assert "paused" in status, status
        finally:
            proc.terminate()
            proc.wait(30)
        assert proc.returncode == 0 and not os.path.exists(pid_file) and not os.path.exists(sock)
    print("sample config: ok (%s)" % ("as user %s" % user if user else "no privilege drop: not root"))


def postrotate(pid_file):
    """logrotate's postrotate script, for a pid file at pid_file."""
    script = re.search(r"(?s)postrotate\n(.*?)\n\s*endscript", read(LOGROTATE)).group(1)
    return script.replace("/run/somirror/somirrord.pid", pid_file)


def survives_in_pid_namespace(pid_text, pid_file, script):
    """Runs script (as root) in a PID namespace of its own beside a sleeper, with pid_text in
    pid_file: whether the sleeper survives. A mistake there (kill -1) hits only that namespace."""
    r = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "/bin/sh", "-c",
                        "sleep 30 & s=$!; echo '%s' > '%s'\n%s\nsleep 0.2; kill -0 $s && echo survived; "
                        "kill $s" % (pid_text, pid_file, script)],
                       capture_output=True, text=True, timeout=60)
    return "survived" in r.stdout


def check_postrotate_trusts_no_pid(work):
    """The pid file lies where the service's user writes: a pid in it that names no somirrord
    (another process; -1, every process; 1, init) is not signalled by logrotate."""
    pid_file = os.path.join(work, "planted.pid")
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for text in ("%d\n" % bystander.pid, "x\n"):
            with open(pid_file, "w") as f:
                f.write(text)
            r = run("/bin/sh", "-c", postrotate(pid_file))
            assert r.returncode == 0 and bystander.poll() is None, (text, r.stdout)
    finally:
        bystander.kill()
        bystander.wait()
    if os.geteuid() != 0:
        print("postrotate with -1 and 1: not checked (unshare needs root)")
        return
    for text in ("-1", "1"):
        assert survives_in_pid_namespace(text, pid_file, postrotate(pid_file)), text


def start(config, port, log_file):
    proc = subprocess.Popen([harness.program("somirrord"), "-f", "-c", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def healthy():
        if proc.poll() is not None:
            harness.fail("somirrord exited %d: %s" % (proc.returncode, _tail(log_file)))
        return _healthy(port)
    try:
        harness.wait_until(healthy, 15, what="/healthz")
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise AssertionError("somirrord did not become healthy: %s" % _tail(log_file))
    return proc


def _tail(path):
    try:
        return read(path)[-2000:]
    except OSError:
        return "(no log)"


def _healthy(port):
    try:
        return harness.request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
