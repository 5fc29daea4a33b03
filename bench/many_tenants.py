#!/usr/bin/env python3
"""Many tenants benchmark (`make bench-many-tenants`).

TENANTS tenants (default 1,000) each run one small cycle (Authenticate, TableSchema of one
table, RowData of a few rows, ReplicationCompleted: 4 calls) against one somirrord on the
SQLite store, from SENDERS processes at once (multiprocessing), each on its own keep-alive
connection, every body and token built before the clock starts. Two rounds per setting: the
first cycle of every tenant (it provisions the tenant's mirror file and creates the table) and
a second one (schema Unchanged: the steady state). Repeated with workers at 1, 2 and the CPU
count. Reported: calls/s, the server's CPU per call (utime+stime of the master and the workers
from /proc, before and after), the workers' RSS, the senders' own CPU, faults (must be 0), and
the shared-memory registry's size with tenants.max 100,000 (must be < 64 MiB)."""

import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

SHM_LIMIT = 64 * 1024 * 1024


def options(p):
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--senders", type=int, default=4, help="sender processes")
    p.add_argument("--rows", type=int, default=5, help="rows in each tenant's RowData")
    p.add_argument("--tenants-max", type=int, default=100_000, help="the registry capacity configured")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2,nproc)")


def build_cycles(h, keys, tenants, nrows):
    """{tenant: [(operation, body bytes), ...]} with one token per tenant."""
    import protolib  # noqa: F401  (caches the loaded vendor key: tokens cost ~1 ms, not ~100)
    table = {"name": "item", "pk": ["item_id"], "columns": [
        ("item_id", "int", False), ("name", "nvarchar(100)", True), ("amount", "decimal(18,4)", True),
        ("updated", "datetime2(3)", True)]}
    schema = h.table_schema_body([table])
    rows = [("I", None, [str(i), "item %d &amp; co" % i, "%d.5000" % i, "2026-11-26T10:15:00.123"])
            for i in range(1, nrows + 1)]
    rowdata = h.row_data_body([{"table": "item", "columns": [c[0] for c in table["columns"]],
                                "rows": rows, "lsn": 10}])
    done = h.replication_completed_body([("item", nrows, 0, 0)])
    cycles = {}
    for t in tenants:
        token = h.make_token(keys.vendor_key, keys.vendor_cert, t, exp=7200)
        cycles[t] = [(op, h.envelope(body, token).encode()) for op, body in (
            ("Authenticate", h.authenticate_body()), ("TableSchema", schema), ("RowData", rowdata),
            ("ReplicationCompleted", done))]
    return cycles


def sender(port, action_prefix, work, start_at, queue):
    """One sender process: runs its cycles on one keep-alive connection; reports counts."""
    import http.client
    calls = faults = 0
    errors = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for cycle in work:
        for op, data in cycle:
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"%s%s"' % (action_prefix, op)}
            try:
                conn.request("POST", "/", body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except Exception as e:  # a broken connection counts as a fault; reconnect
                faults += 1
                errors.append("%s: %r" % (op, e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            calls += 1
            if resp.status != 200 or b"Fault>" in body[:300] or b"<IsSuccessful>false" in body:
                faults += 1
                if len(errors) < 5:
                    errors.append("%s: HTTP %d %r" % (op, resp.status, body[:300]))
    wall = time.perf_counter() - t0
    conn.close()
    queue.put((calls, faults, errors, wall))


def round_(h, daemon, cycles, senders):
    """Runs every tenant's cycle once; returns figures."""
    names = sorted(cycles)
    shares = [[cycles[t] for t in names[i::senders]] for i in range(senders)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=sender, args=(daemon.port, h.ACTION_PREFIX, share, start_at, queue))
             for share in shares]
    pids = [daemon.pid] + daemon.worker_pids()
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    with B.Clock(pids) as clock:
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
    calls = sum(r[0] for r in results)
    faults = sum(r[1] for r in results)
    errors = [e for r in results for e in r[2]][:5]
    return {"calls": calls, "faults": faults, "errors": errors, "wall": clock.wall,
            "calls_s": calls / clock.wall, "server_cpu": clock.server_cpu,
            "cpu_per_call_ms": 1000 * clock.server_cpu / max(1, calls), "client_cpu": clock.self_cpu,
            "clock": clock}


def main():
    args = B.parse_args(__doc__.splitlines()[0], options)
    h = B.harness()
    ncpu = os.cpu_count() or 1
    counts = ([int(x) for x in args.workers.split(",")] if args.workers
              else sorted({1, 2, ncpu}))
    tenants = ["Many%05d" % i for i in range(args.tenants)]
    rows_out, notes = [], []
    with tempfile.TemporaryDirectory(prefix="smbench-many", dir=args.workdir) as work:
        keys = h.make_keys(work)
        t0 = time.perf_counter()
        cycles = build_cycles(h, keys, tenants, args.rows)
        print("built %d cycles in %.1f s" % (len(cycles), time.perf_counter() - t0), flush=True)
        shm = None
        for n in counts:
            directory = os.path.join(work, "w%d" % n)
            cfg = B.bench_config(h, directory, keys, workers=n, **{"tenants.max": args.tenants_max,
                                                                   "tenants.lock_timeout": 60})
            with h.Daemon(cfg) as daemon:
                daemon.start()
                daemon.wait_workers(n)
                shm = B.shared_memory_bytes(daemon)
                first = round_(h, daemon, cycles, args.senders)
                second = round_(h, daemon, cycles, args.senders)
                workers = daemon.worker_pids()
                rss = [B.status_kib(p, "VmRSS") or 0 for p in workers]
                hwm = [B.status_kib(p, "VmHWM") or 0 for p in workers]
                master_rss = B.status_kib(daemon.pid, "VmRSS") or 0
                registered = daemon.ctl_json("show info").get("tenants")
            for label, r in (("first cycles (provisioning)", first), ("second cycles (steady)", second)):
                rows_out.append(B.row("workers=%d, %s: calls/s" % (n, label), r["calls_s"]))
                rows_out.append(B.row("workers=%d, %s: server CPU per call (ms)" % (n, label), r["cpu_per_call_ms"]))
                rows_out.append(B.row("workers=%d, %s: faults" % (n, label), r["faults"], 0,
                                      "ok" if r["faults"] == 0 else "ERRORS"))
                notes.append("workers=%d, %s: %d calls in %.2f s; server CPU %.2f s; senders' CPU %.2f s "
                             "(%.0f%% of the machine's %d cores)%s"
                             % (n, label, r["calls"], r["wall"], r["server_cpu"], r["client_cpu"],
                                100 * r["client_cpu"] / r["wall"] / ncpu, ncpu,
                                "; errors: %s" % r["errors"] if r["errors"] else ""))
            rows_out.append(B.row("workers=%d: worker RSS after (MiB, max of %d)" % (n, n), max(rss) / 1024))
            rows_out.append(B.row("workers=%d: worker peak RSS VmHWM (MiB, max)" % n, max(hwm) / 1024))
            rows_out.append(B.row("workers=%d: master RSS (MiB)" % n, master_rss / 1024))
            notes.append("workers=%d: %s tenants registered (show info)" % (n, registered))
        size, how = shm
        rows_out.append(B.row("shared memory for tenants.max %d (MiB)" % args.tenants_max, size / 2**20,
                              SHM_LIMIT / 2**20, "%s (limit 64 MiB)" % ("ok" if size < SHM_LIMIT else "OVER")))
        notes.append("shared-memory size: %s" % how)
        if ncpu <= 2:
            notes.append("this machine has %d CPUs, so the CPU count adds no setting beyond workers=2; "
                         "the senders (Python) share the same cores: the server CPU per call is the "
                         "figure that carries to a bigger machine. A worker-scaling run on a many-core "
                         "machine was not possible here." % ncpu)
    B.report(args, "Many tenants: %d tenants x 4 calls, %d sender processes, SQLite store"
             % (args.tenants, args.senders), rows_out, notes)


if __name__ == "__main__":
    main()
