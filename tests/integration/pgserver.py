"""A throwaway PostgreSQL 15 server for the PostgreSQL store's integration tests.

PgServer() is a context manager: initdb into a fresh temporary directory, start it with pg_ctl
listening only on a unix socket in that directory (listen_addresses='', no TCP; with tcp=True
also on 127.0.0.1 at a free port, tcp_conninfo(dbname)), fsync off,
and, on exit (also after a failure or an exception), stop it (fast, then immediate) and remove
the directory. Its conninfo is libpq keywords for the superuser and the "postgres" database.
max_connections is the server's (none reserved for superusers, which the tests connect as).
The binaries come from /usr/lib/postgresql/15/bin (SOMIRROR_PG_BINDIR overrides); when root,
they run as the postgres user (runuser -u postgres), which owns the directory. When the
binaries (or the postgres user, as root) are missing, require() exits 77 (skipped) with a
message. Run as a script it starts a server, prints its conninfo and waits for Ctrl-C.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BINDIR = os.environ.get("SOMIRROR_PG_BINDIR") or "/usr/lib/postgresql/15/bin"
PORT = 5432   # names the socket file only: there is no TCP listener (unless tcp=True)


def _skip(reason):
    print("SKIP: " + reason, file=sys.stderr)
    sys.exit(77)


def _free_port():
    """A TCP port of 127.0.0.1 free now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require():
    """Exits 77 when a server cannot be started here."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not os.access(os.path.join(BINDIR, tool), os.X_OK):
            _skip("PostgreSQL 15 is not installed (%s/%s missing)" % (BINDIR, tool))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _skip("running as root and there is no postgres user to run the server")
        if not shutil.which("runuser"):
            _skip("running as root and runuser is missing")


class PgServer:
    """start(), stop(), restart(), conninfo(dbname), psql(sql, dbname); a context manager."""

    def __init__(self, prefix="somirror-pg-", encoding="UTF8", max_connections=100, tcp=False):
        self.encoding = encoding
        self.max_connections = max_connections
        self.tcp = tcp
        self.port = _free_port() if tcp else PORT
        require()
        self.root = None
        self.started = False
        self.prefix = prefix
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    # ---- paths and conninfo
    @property
    def datadir(self):
        return os.path.join(self.root, "data")

    @property
    def socketdir(self):
        return self.root

    @property
    def logfile(self):
        return os.path.join(self.root, "server.log")

    def conninfo(self, dbname="postgres"):
        return "host=%s port=%d user=%s dbname=%s" % (self.socketdir, self.port, self.user, dbname)

    def tcp_conninfo(self, dbname="postgres"):
        assert self.tcp, "started without tcp=True"
        return "host=127.0.0.1 port=%d user=%s dbname=%s" % (self.port, self.user, dbname)

    # ---- running the binaries
    def _run(self, tool, *args, check=True, timeout=120):
        argv = [os.path.join(BINDIR, tool)] + list(args)
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, cwd=self.root)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (tool, proc.returncode,
                                                         proc.stdout.decode(errors="replace"),
                                                         self.log_tail()))
        return proc

    def log_tail(self, lines=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "\n--- server log ---\n" + "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start(self):
        self.root = tempfile.mkdtemp(prefix=self.prefix)
        os.chmod(self.root, 0o700)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", self.datadir, "-U", self.user, "--auth=trust",
                  "--encoding=" + self.encoding, "--locale=C", "--no-sync")
        self.started = True
        self._run("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-o", self._options(), "-w",
                  "-t", "60", "start")
        return self

    def _options(self):
        return ("-c listen_addresses='%s' -c unix_socket_directories='%s' -p %d -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=%d"
                " -c superuser_reserved_connections=0"
                % ("127.0.0.1" if self.tcp else "", self.socketdir, self.port,
                   self.max_connections))

    def restart(self):
        """Restarts the server (fast shutdown: every client connection is cut)."""
        self._run("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-o", self._options(),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self):
        try:
            if self.started:
                proc = self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", "30",
                                 "stop", check=False, timeout=60)
                if proc.returncode != 0:
                    self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop",
                              check=False, timeout=60)
                self.started = False
        finally:
            if self.root:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def psql(self, sql, dbname="postgres"):
        """Runs sql with psql (unaligned, tuples only); returns stdout as text."""
        psql = shutil.which("psql") or os.path.join(BINDIR, "psql")
        proc = subprocess.run([psql, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d",
                               self.conninfo(dbname), "-c", sql],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("psql: %s" % proc.stderr.decode(errors="replace"))
        return proc.stdout.decode()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    with PgServer() as pg:
        print(pg.conninfo(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
