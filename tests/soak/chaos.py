#!/usr/bin/env python3
"""tests/soak/chaos: a chaos soak (`make soak`), never part of `make check`. Several tenants
cycle through somirror-task (churn, then run --once) against a real prefork somirrord on the
SQLite store while the soak, at random moments, SIGKILLs a worker, stops one for a while
(SIGSTOP, SIGCONT), reloads (SIGHUP, the status socket's `reload`), asks a resync, a reset, a
pause and resume, SIGKILLs the master and its workers and starts it again, and kills a sender
in the middle of its cycle; now and then a source gets a column, with a default, between two
cycles (an Altered table, loaded in full). With --tls every other tenant sends over HTTPS. Runs may fail while that happens; what must hold is the end: once
the chaos stops, one more run per tenant succeeds and `somirror-task verify` finds every mirror
EQUAL to its source, and no process of somirrord died of a signal the soak did not send.
Exit 0 when all of that holds, 1 otherwise, each problem named."""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SRCDIR = os.environ.get("SOMIRROR_SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
import harness  # noqa: E402
import sqlite3  # noqa: E402

TASK = harness.program("somirror-task")
# What the chaos does, each as often as it appears here.
ACTIONS = ["kill_worker"] * 4 + ["hup"] * 3 + ["stop_worker"] * 2 + \
    ["reload", "resync", "reset", "pause", "kill_master"]


# Generated tables that get a column now and then (add_column).
ALTERED_TABLES = ("country", "category", "person", "project", "sale")


def task(*args, timeout=600):
    return subprocess.run((TASK,) + tuple(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


class Soak:
    def __init__(self, args, work, keys, env, https_port):
        self.args, self.work, self.keys, self.env = args, work, keys, env
        self.https_port = https_port
        self.tenants = ["Soak%d" % i for i in range(args.tenants)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.problems = []
        self.runs = {"ok": 0, "failed": 0, "sender killed": 0}
        self.chaos = {}

    def source(self, tenant):
        return os.path.join(self.work, tenant + ".db")

    def run_args(self, tenant, rnd):
        d, k = self.env.daemon, self.keys
        over_tls = self.https_port and self.tenants.index(tenant) % 2
        url = ["--url", "https://127.0.0.1:%d/" % self.https_port, "--insecure"] if over_tls else \
            ["--url", "http://127.0.0.1:%d/" % d.port]
        return [TASK, "run", "--once"] + url + [
            "--app-id", harness.DEFAULT_APP_ID, "--vendor-key", k.vendor_key,
            "--vendor-cert", k.vendor_cert, "--app-public-key", k.app_pub, "--tenant", tenant,
            "--db", self.source(tenant), "--json", "--tries", "2",
            "--batch-size", rnd.choice(["4000", "30000", "300000"])]

    def problem(self, text):
        with self.lock:
            self.problems.append(text)
        print("PROBLEM:", text, flush=True)

    def add_column(self, tenant, rnd, serial):
        """A column with a default on a random generated table: SQLite gives the rows it has the
        default, the mirror's Altered table NULL, so the sender must load that table in full."""
        table = rnd.choice(ALTERED_TABLES)
        column = "soak_%d" % serial
        with sqlite3.connect(self.source(tenant)) as db:
            db.execute("ALTER TABLE %s ADD COLUMN %s int DEFAULT 7" % (table, column))
            db.execute("INSERT INTO _somirror_columns VALUES (?, ?, ?, 'int', 1, '((7))', 0)",
                       (table, column, 1000 + serial))

    def cycler(self, n, tenant):
        rnd = random.Random(self.args.seed * 1000 + n)
        serial = 0
        while not self.stop.is_set():
            if rnd.random() < 0.03:
                serial += 1
                self.add_column(tenant, rnd, serial)
            task("churn", "--db", self.source(tenant), "--changes", str(rnd.randint(1, 300)),
                 "--seed", str(rnd.randrange(1 << 30)))
            proc = subprocess.Popen(self.run_args(tenant, rnd), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            killed = False
            if rnd.random() < 0.1:   # the sender dies in the middle of its cycle
                try:
                    proc.wait(rnd.uniform(0.02, 0.5))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    killed = True
            out, err = proc.communicate(timeout=600)
            outcome = "sender killed" if killed else "ok" if proc.returncode == 0 else "failed"
            with self.lock:
                self.runs[outcome] += 1
            if not killed and proc.returncode not in (0, 1):   # 2: a setup error, never expected
                self.problem("%s: run exited %d: %s" % (tenant, proc.returncode, err[-600:]))

    def act(self, what, rnd):
        d = self.env.daemon
        workers = d.worker_pids()
        if what == "kill_worker" and workers:
            os.kill(rnd.choice(workers), signal.SIGKILL)
        elif what == "stop_worker" and workers:
            victim = rnd.choice(workers)
            os.kill(victim, signal.SIGSTOP)
            time.sleep(rnd.uniform(0.1, 3.0))
            os.kill(victim, signal.SIGCONT)
        elif what == "hup":
            d.signal(signal.SIGHUP)
        elif what == "reload":
            d.ctl("reload")
        elif what == "resync":
            d.ctl("resync %s contact" % rnd.choice(self.tenants))
        elif what == "reset":
            d.ctl("reset %s" % rnd.choice(self.tenants))
        elif what == "pause":
            tenant = rnd.choice(self.tenants)
            d.ctl("pause " + tenant)
            time.sleep(rnd.uniform(0.1, 1.5))
            d.ctl("resume " + tenant)
        elif what == "kill_master":
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            d.signal(signal.SIGKILL)
            d.kill_all()
            d.start(timeout=60)

    def chaos_loop(self):
        rnd = random.Random(self.args.seed)
        while not self.stop.wait(rnd.uniform(0.3, 2.0)):
            what = rnd.choice(ACTIONS)
            with self.lock:
                self.chaos[what] = self.chaos.get(what, 0) + 1
            try:
                self.act(what, rnd)
            except (OSError, AssertionError, subprocess.SubprocessError) as e:
                self.problem("chaos %s: %s" % (what, e))

    def settle(self):
        """The end: one run per tenant without chaos, then verify."""
        d = self.env.daemon
        d.wait_healthy(60)
        for tenant in self.tenants:
            d.ctl("resume " + tenant)   # a pause the chaos left behind, were it stopped mid-way
            proc = subprocess.run(self.run_args(tenant, random.Random(0)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=600)
            if proc.returncode != 0:
                self.problem("%s: the run after the chaos exited %d: %s %s" % (
                    tenant, proc.returncode, proc.stdout[-300:], proc.stderr[-600:]))
            mirror = os.path.join(self.env.dir, "mirrors", "Mirror_%s.db" % tenant)
            check = task("verify", "--db", self.source(tenant), "--mirror", mirror, "--tenant", tenant)
            if check.returncode != 0:
                self.problem("%s: verify exited %d: %s %s" % (tenant, check.returncode,
                                                             check.stdout[-1500:], check.stderr[-600:]))
        # Every death by a signal: only SIGKILL (the soak's) is expected.
        for line in d.log().splitlines():
            m = re.search(r"killed by signal (\d+)", line)
            if m and int(m.group(1)) != signal.SIGKILL:
                self.problem("somirrord's log: " + line)

    def go(self):
        threads = [threading.Thread(target=self.cycler, args=(n, t)) for n, t in enumerate(self.tenants)]
        threads.append(threading.Thread(target=self.chaos_loop))
        for t in threads:
            t.start()
        time.sleep(self.args.seconds)
        self.stop.set()
        for t in threads:
            t.join()
        self.settle()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=6)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--scale", type=int, default=40, help="somirror-task gen --scale of each source")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tls", action="store_true", help="an HTTPS listener too, for every other tenant")
    p.add_argument("--keep-log", metavar="FILE", help="copy somirrord's log there at the end")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="somirror-soak") as work:
        keydir = os.path.join(work, "keys")
        task("keys", "--out", keydir).check_returncode()
        keys = harness.Keys(os.path.join(keydir, "vendor.key"), os.path.join(keydir, "vendor.crt"),
                            os.path.join(keydir, "app.xml"), os.path.join(keydir, "app.pub"))
        for n in range(args.tenants):
            source = os.path.join(work, "Soak%d.db" % n)
            task("gen", "--db", source, "--scale", str(args.scale), "--seed", str(n)).check_returncode()
            task("provision", "--db", source).check_returncode()
        with harness.server(keys=keys, start=False, workers=args.workers, shutdown_timeout=5) as env:
            https_port = None
            if args.tls:
                cert, key = harness.make_tls_pair(env.dir)
                https_port = harness.free_port()
                env.daemon.rewrite_config(listen=["127.0.0.1:%d" % env.daemon.port, {
                    "address": "127.0.0.1:%d" % https_port, "tls": {"certificate": cert, "key": key}}])
            env.daemon.start()
            soak = Soak(args, work, keys, env, https_port)
            soak.go()
            if args.keep_log:
                shutil.copy(env.daemon.log_path, args.keep_log)
    print(json.dumps({"runs": soak.runs, "chaos": soak.chaos}))
    print("soak: %s" % ("FAILED, %d problems" % len(soak.problems) if soak.problems else "ok"))
    return 1 if soak.problems else 0


if __name__ == "__main__":
    sys.exit(main())
