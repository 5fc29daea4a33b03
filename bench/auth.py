#!/usr/bin/env python3
"""Authenticate benchmark (`make bench-auth`).

Authenticate calls per second on SENDERS keep-alive connections for SECONDS, with tokens built
before the clock starts (TENANTS tenants, one token each, used round-robin; every tenant's mirror
is provisioned by a warm-up call first). The load comes from wrk (one thread driving every
connection, under a tenth of one core here) when it is installed (`apt-get install wrk`), else from
SENDERS Python processes, which take a fifth of a 2-core machine themselves.
Each Authenticate costs the server one RSA-2048 verify (the vendor's token) and one RSA-2048
sign (the SignedApplicationToken), so the limit is 1/(1/sign_rate + 1/verify_rate), with
sign_rate and verify_rate from `openssl speed -seconds 3 -multi N rsa2048` in the same run, N
the workers (at most the cores): N processes at once, as the workers run. Goal: within 0.8 of that limit. The
senders' own CPU is measured: on a small machine they share the cores with the workers, so the
server's CPU per call (from /proc, master and workers) is reported next to the rate, with the
rate the measured CPU per call allows. With --server-cpus LIST the master and workers run on
those CPUs alone and the senders on the others (sched_setaffinity), and the limit is measured
by as many openssl processes as LIST names, on those same CPUs: what RSA alone allows on the
cores the server has, so that the senders' share of the machine is not counted against it."""

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def options(p):
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--tenants", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="somirrord workers (default: the CPU count)")
    p.add_argument("--perf", metavar="FILE", help="perf record -g the workers into FILE (kept) and "
                   "add the top functions to the notes")
    p.add_argument("--python-senders", action="store_true",
                   help="send with Python processes even when wrk is installed")
    p.add_argument("--server-cpus", metavar="LIST", type=cpu_list,
                   help="run the server on these CPUs (e.g. 0-13) and the senders on the others")


def cpu_list(text):
    """The CPUs of a list like 0-13,15 (as taskset -c takes it), checked against those this
    process may use."""
    import argparse
    cpus = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError("not a CPU list: %r (e.g. 0-13,15)" % text)
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus < usable:
        raise argparse.ArgumentTypeError("%r must name some but not all of the CPUs this process may use (%s)"
                                         % (text, ",".join(map(str, sorted(usable)))))
    return cpus


def pinned(cpus):
    """A preexec_fn that runs a child on cpus (None: wherever it likes)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def openssl_speed(processes, cpus=None):
    """Aggregate RSA-2048 sign/s and verify/s of `processes` openssl processes running at once
    (-multi): with every core busy a core does less (shared caches, hyperthread siblings, lower
    clocks), and the workers run that way too."""
    argv = ["openssl", "speed", "-seconds", "3"] + (["-multi", str(processes)] if processes > 1 else []) + ["rsa2048"]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=pinned(cpus)).stdout
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] + argv
    for line in out.splitlines():
        m = re.match(r"\s*rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return float(m.group(1)), float(m.group(2)), " ".join(argv), line.strip()
    raise RuntimeError("cannot read openssl speed output:\n" + out[-2000:])


def sender(port, action_prefix, bodies, start_at, stop_at, queue, cpus):
    import http.client
    if cpus:
        os.sched_setaffinity(0, cpus)
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"%sAuthenticate"' % action_prefix}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    calls = faults = 0
    errors = []
    while time.time() < start_at:
        time.sleep(0.001)
    i = 0
    while time.time() < stop_at:
        conn.request("POST", "/", body=bodies[i % len(bodies)], headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        i += 1
        calls += 1
        if resp.status != 200 or b"<IsSuccessful>true</IsSuccessful>" not in body:
            faults += 1
            if len(errors) < 3:
                errors.append(body[:300])
    conn.close()
    queue.put((calls, faults, errors))


# wrk's script: requests round-robin over the envelopes, every answer checked, one line of result.
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local headers = {["Content-Type"] = "text/xml; charset=utf-8", ["SOAPAction"] = '"%(prefix)sAuthenticate"'}
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function init(args) n = id * 7; faults = 0 end
function request() n = n + 1; return wrk.format("POST", "/", headers, bodies[(n %% #bodies) + 1]) end
function response(status, hdrs, body)
  if status ~= 200 or not string.find(body, "<IsSuccessful>true</IsSuccessful>", 1, true) then faults = faults + 1 end
end
function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do f = f + t:get("faults") end
  local e = summary.errors
  -- e.status (answers over 399) are faults that response() counted already
  io.write(string.format("RESULT calls=%%d faults=%%d errors=%%d\\n", summary.requests, f,
                         e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_senders(port, action_prefix, bodies, seconds, connections, work, cpus):
    """Runs wrk; returns (calls, faults, errors, description)."""
    script = os.path.join(work, "auth.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % {"bodies": ",".join("[==[%s]==]" % b.decode() for b in bodies),
                              "prefix": action_prefix})
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", "%gs" % seconds, "-s", script,
                          "http://127.0.0.1:%d/" % port], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, preexec_fn=pinned(cpus)).stdout
    m = re.search(r"RESULT calls=(\d+) faults=(\d+) errors=(\d+)", out)
    if not m:
        raise RuntimeError("cannot read wrk's result:\n" + out[-2000:])
    calls, faults, errors = (int(g) for g in m.groups())
    return calls, faults + errors, "wrk, 1 thread, %d connections" % connections


def python_senders(daemon, h, bodies, args, cpus):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    stop_at = start_at + args.seconds
    shares = [bodies[i::args.senders] or bodies for i in range(args.senders)]
    procs = [ctx.Process(target=sender, args=(daemon.port, h.ACTION_PREFIX, s, start_at, stop_at, queue, cpus))
             for s in shares]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    return procs, queue


def main():
    args = B.parse_args(__doc__.splitlines()[0], options)
    h = B.harness()
    import protolib  # noqa: F401  (caches the loaded vendor key)
    ncpu = os.cpu_count() or 1
    server_cpus = args.server_cpus
    sender_cpus = os.sched_getaffinity(0) - server_cpus if server_cpus else None
    cores = len(server_cpus) if server_cpus else ncpu
    workers = args.workers or cores
    with tempfile.TemporaryDirectory(prefix="smbench-auth", dir=args.workdir) as work:
        keys = h.make_keys(work)
        tenants = ["Auth%03d" % i for i in range(args.tenants)]
        bodies = [h.envelope(h.authenticate_body(), h.make_token(keys.vendor_key, keys.vendor_cert, t, exp=7200)).encode()
                  for t in tenants]
        cfg = B.bench_config(h, os.path.join(work, "d"), keys, workers=workers)
        with h.Daemon(cfg) as daemon:
            daemon.start()
            daemon.wait_workers(workers)
            if server_cpus:   # the workers' threads, and workers forked later, inherit it
                for pid in [daemon.pid] + daemon.worker_pids():
                    os.sched_setaffinity(pid, server_cpus)
            conn = daemon.connection()
            for body in bodies:   # warm-up: provisions every tenant
                status, _, answer = h.soap(daemon.port, "Authenticate", None, None, conn=conn, raw_envelope=body)
                if b"<IsSuccessful>true" not in answer:
                    raise RuntimeError("warm-up Authenticate failed: %r" % answer[:400])
            conn.close()
            pids = [daemon.pid] + daemon.worker_pids()
            use_wrk = shutil.which("wrk") and not args.python_senders
            # perf first: the Python senders start sending when python_senders returns, and the
            # clock must start with them.
            perf = B.perf_start(pids[1:], os.path.abspath(args.perf)) if args.perf else None
            if not use_wrk:
                procs, queue = python_senders(daemon, h, bodies, args, sender_cpus)
            with B.Clock(pids) as clock:
                if use_wrk:
                    calls, faults, senders = wrk_senders(daemon.port, h.ACTION_PREFIX, bodies, args.seconds,
                                                         args.senders, work, sender_cpus)
                else:
                    results = [queue.get() for _ in procs]
                    for p in procs:
                        p.join()
                    calls = sum(r[0] for r in results)
                    faults = sum(r[1] for r in results)
                    senders = "%d Python sender processes" % args.senders
            profile = B.perf_stop(perf, os.path.abspath(args.perf)) if perf else None
        busy = min(workers, cores)
        sign, verify, speed_command, line = openssl_speed(busy, server_cpus)
    rate = calls / clock.wall
    allowed = 1.0 / (1.0 / sign + 1.0 / verify)
    per_core = allowed / busy
    cpu_per_call = clock.server_cpu / max(1, calls)
    ratio = rate / allowed
    placement = ("; server on CPUs %s, senders on the other %d" % (",".join(map(str, sorted(server_cpus))),
                                                                    len(sender_cpus))
                 if server_cpus else "")
    B.report(args, "Authenticate: %s, %d workers, %.0f s%s" % (senders, workers, args.seconds, placement), [
        B.row("Authenticate calls/s", rate, allowed),
        B.row("server CPU per call (ms; ratio = limit/value)", 1000 * cpu_per_call, 1000 / per_core,
              (1 / per_core) / cpu_per_call if cpu_per_call else None),
        B.row("calls per server CPU-second", 1 / cpu_per_call if cpu_per_call else None, per_core),
        B.row("faults", faults, 0, "ok" if faults == 0 else "ERRORS"),
        ("goal: calls/s within 0.8 of the RSA limit", "", "", "met" if ratio >= 0.8 else "MISSED"),
    ], [
        "limit: `%s` in the same run (as many processes at once as workers can run): `%s` -> %.0f sign/s, "
        "%.0f verify/s, 1/(1/sign+1/verify) = %.0f Authenticate/s, %.0f per core (%d workers, %d cores for the server)"
        % (speed_command, line, sign, verify, allowed, per_core, workers, cores),
        "%d calls in %.2f s; server (master+workers) CPU %.2f s = %.0f%% of %d cores; senders' CPU %.2f s "
        "(%.0f%% of the machine)%s" % (calls, clock.wall, clock.server_cpu, 100 * clock.server_cpu / clock.wall / cores,
                                        cores, clock.self_cpu, 100 * clock.self_cpu / clock.wall / ncpu,
                                        ": the senders take cores the workers would use, so the calls/s "
                                        "ratio understates the server; the CPU-per-call ratio does not"
                                        if clock.self_cpu / clock.wall > 0.25 * ncpu and not server_cpus else ""),
        "calls per server CPU-second against the per-core limit: %.2f" % ((1 / cpu_per_call) / per_core
                                                                          if cpu_per_call else 0),
    ] + ([B.profile_note("the workers during the run", profile)] if profile else []))


if __name__ == "__main__":
    main()
