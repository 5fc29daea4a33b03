#!/usr/bin/env python3
"""Initial load benchmark (`make bench-initial-load`).

(a) contact: ROWS rows (default 200,000) of a 9-column contact table sent as ~1 MB RowData calls
    over one keep-alive connection to a fresh SQLite mirror (every request body is built before
    the clock starts; only the RowData calls are timed), against bench/sqlite_baseline inserting
    the same rows (a TSV in the mirror's stored text forms) into a fresh SQLite file with the
    mirror's own CREATE TABLE (read back from the mirror: same declared types, same key).
    Reports rows/s, MB/s of request bytes, the ratio, the serving worker's peak RSS (VmHWM) and
    the CPU seconds of the worker and of this client.
(b) crm: `somirror-task gen --scale N` + provision, then `somirror-task run --once` as a full
    load into a fresh SQLite mirror: rows/s and MB/s (request bytes from the tenant's status),
    against bench/crm_baseline copying the same stored rows into a fresh SQLite file with a
    plain prepared insert loop (CREATE TABLE statements taken from the mirror).
(c) postgresql: (a) on the PostgreSQL store against bench/pg_copy_baseline (one COPY of the same
    rows, same column types as the mirror's) when tests/integration/pgserver.py can start a
    throwaway PostgreSQL; skipped with a note otherwise.
Each part is repeated --repeat times; the median of each figure is reported."""

import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

BATCH_BYTES = 1_000_000
COLUMNS = [  # name, SQL Server type, nullable
    ("contact_id", "int", False), ("name", "nvarchar(220)", True), ("department", "nvarchar(60)", True),
    ("email", "varchar(200)", True), ("registered", "datetime", False), ("updated", "datetime2(3)", True),
    ("amount", "decimal(18,4)", False), ("active", "bit", False), ("note", "nvarchar(max)", True),
]
PG_CREATE = ('CREATE TABLE contact (contact_id integer NOT NULL PRIMARY KEY, name varchar(220), '
             'department varchar(60), email varchar(200), registered timestamp(3) NOT NULL, '
             'updated timestamp(3), amount numeric(18,4) NOT NULL, active boolean NOT NULL, note text)')


def options(p):
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=int, default=3000, help="somirror-task gen --scale for part (b)")
    p.add_argument("--parts", default="a,b,c", help="which parts to run (a,b,c)")
    p.add_argument("--perf", metavar="FILE", help="perf record -g the serving worker during (a)'s first "
                   "load into FILE (kept) and add the top functions to the notes")


# ---------------------------------------------------------------- the contact rows

WORDS = ("Acme Nordic Global Data Systems Partners & <Sons> Ltd AS GmbH Consulting Logistics Müller "
         "Ødegård Café Société Øst 東京 Software Trading Bergen Oslo \"Quoted\" Hansen O'Brien").split()
DEPTS = ["Sales", "Support", "R&D", "Finance", "Marketing", "Ledelse/Økonomi", "<none>", "IT"]


def make_rows(n, seed=4711):
    """Rows as lists of wire texts (None for NULL), deterministic."""
    rnd = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        name = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 5)))[:200]
        dept = rnd.choice(DEPTS) if rnd.random() < 0.9 else None
        email = "user%d.%s@example%d.com" % (i, rnd.choice(("post", "info", "sales")), rnd.randint(1, 999))
        y, mo, d = rnd.randint(1995, 2026), rnd.randint(1, 12), rnd.randint(1, 28)
        h, mi, s = rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59)
        registered = "%04d-%02d-%02dT%02d:%02d:%02d.%02d%s" % (y, mo, d, h, mi, s, rnd.randint(0, 99),
                                                              rnd.choice("037"))
        updated = ("%04d-%02d-%02dT%02d:%02d:%02d.%03d" % (y, mo, d, (h + 1) % 24, mi, s, rnd.randint(0, 999))
                   if rnd.random() < 0.8 else None)
        amount = "%s%d.%04d" % ("-" if rnd.random() < 0.1 else "", rnd.randint(0, 99_999_999), rnd.randint(0, 9999))
        active = "1" if rnd.random() < 0.7 else "0"
        note = (" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 60))) if rnd.random() < 0.85 else None)
        rows.append([str(i), name, dept, email, registered, updated, amount, active, note])
    return rows


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def row_xml(values):
    return '<Row op="I">' + "".join("<N/>" if v is None else "<V>" + esc(v) + "</V>" for v in values) + "</Row>"


def rowdata_bodies(h, rows, token, table="contact"):
    """~BATCH_BYTES RowData envelopes (bytes), the last batch carrying the table's Lsn."""
    head = ('<RowDataRequest xmlns="%s"><Batches><Batch><Table>%s</Table><Columns>%s</Columns><Rows>'
            % (h.NS, table, "".join("<Name>%s</Name>" % c[0] for c in COLUMNS)))
    bodies, part, size = [], [], 0
    for i, values in enumerate(rows):
        x = row_xml(values)
        part.append(x)
        size += len(x)
        if size >= BATCH_BYTES or i == len(rows) - 1:
            tail = "</Rows>%s</Batch></Batches></RowDataRequest>" % ("<Lsn>1000</Lsn>" if i == len(rows) - 1 else "")
            bodies.append(h.envelope(head + "".join(part) + tail, token).encode("utf-8"))
            part, size = [], 0
    return bodies


def stored_text(column_type, value):
    """The mirror's stored text form of a wire value (TSV and COPY text format)."""
    if value is None:
        return "\\N"
    if column_type in ("datetime", "datetime2(3)"):
        return value.replace("T", " ")
    return value


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for values in rows:
            f.write("\t".join(stored_text(c[1], v) for c, v in zip(COLUMNS, values)) + "\n")


def post(h, conn, operation, data):
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": '"%s%s"' % (h.ACTION_PREFIX, operation)}
    conn.request("POST", "/", body=data, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200 or b"Fault>" in body[:400] or b"<IsSuccessful>false" in body:
        raise RuntimeError("%s: HTTP %d %r" % (operation, resp.status, body[:600]))
    return body


def load_contact(h, daemon, token, rows_bodies, nrows, perf_out=None, server_cpu=None):
    """One full load of the contact table for the token's tenant; returns a dict of figures.
    server_cpu: a function giving a database server's CPU seconds, read around the RowData
    calls alone (its figure is "server_cpu")."""
    schema = h.table_schema_body([{"name": "contact", "pk": ["contact_id"],
                                   "columns": [(n, t, nl) for n, t, nl in COLUMNS]}])
    conn = daemon.connection(timeout=600)
    post(h, conn, "Authenticate", h.envelope(h.authenticate_body(), token).encode())
    post(h, conn, "TableSchema", h.envelope(schema, token).encode())
    post(h, conn, "Wipe", h.envelope(h.wipe_body(["contact"]), token).encode())
    workers = daemon.worker_pids()
    perf = None
    if perf_out:
        worker = B.served_worker(daemon)
        perf = subprocess.Popen(["perf", "record", "-g", "-o", perf_out, "-p", str(worker)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    server_cpu_before = server_cpu() if server_cpu else None
    with B.Clock(workers) as clock:
        for body in rows_bodies:
            post(h, conn, "RowData", body)
    server_cpu_used = server_cpu() - server_cpu_before if server_cpu else None
    profile = None
    if perf:
        perf.send_signal(2)
        perf.wait(60)
        profile = B.perf_top(perf_out)
    post(h, conn, "ReplicationCompleted", h.envelope(h.replication_completed_body(), token).encode())
    conn.close()
    worker = B.served_worker(daemon)
    return {"seconds": clock.wall, "rows_s": nrows / clock.wall,
            "mb_s": sum(len(b) for b in rows_bodies) / clock.wall / 1e6,
            "bytes": sum(len(b) for b in rows_bodies), "calls": len(rows_bodies),
            "worker": worker, "hwm": B.status_kib(worker, "VmHWM") if worker else None,
            "worker_cpu": max(clock.cpu.values()) if clock.cpu else None,
            "client_cpu": clock.self_cpu, "clock": clock, "profile": profile,
            "server_cpu": server_cpu_used}


def part_a(args, h, keys, work, rows, bodies_for, notes, results):
    tsv = os.path.join(work, "contact.tsv")
    write_tsv(tsv, rows)
    cfg = B.bench_config(h, os.path.join(work, "a"), keys, workers=1)
    runs, base, base_cpu = [], [], []

    def baseline(r):
        dbfile = os.path.join(work, "baseline-%s.db" % r)
        out = B.run([B.program(args, "bench/sqlite_baseline"), dbfile, tsv, create,
                     "INSERT INTO contact VALUES (%s)" % ",".join("?" * len(COLUMNS))]).stdout.split()
        base.append(int(out[0]) / float(out[1]))
        base_cpu.append(B.per_second(int(out[0]), float(out[2])))

    with h.Daemon(cfg) as daemon:
        daemon.start()
        for r in range(args.repeat):
            tenant = "BenchA%d" % r
            token = h.make_token(keys.vendor_key, keys.vendor_cert, tenant, exp=7200)
            bodies = bodies_for(token)
            perf_out = os.path.abspath(args.perf) if args.perf and r == 0 else None
            got = load_contact(h, daemon, token, bodies, len(rows), perf_out)
            mirror = os.path.join(work, "a", "mirrors", "Mirror_%s.db" % tenant)
            with sqlite3.connect(mirror) as db:
                count = db.execute("SELECT count(*) FROM contact").fetchone()[0]
                create = db.execute("SELECT sql FROM sqlite_master WHERE name = 'contact'").fetchone()[0]
            if count != len(rows):
                raise RuntimeError("mirror holds %d rows, sent %d" % (count, len(rows)))
            runs.append(got)
            if r == 0:   # the baseline takes the table as the first load made it: two after it
                baseline("first")
            baseline(r)
            got["paired"] = got["rows_s"] / ((base[-2] + base[-1]) / 2)
            got["rows_cpu_s"] = B.per_second(len(rows), got["worker_cpu"])
            os.unlink(mirror)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(mirror + suffix):
                    os.unlink(mirror + suffix)
            print("  (a) run %d: %.0f rows/s (%.2f s), baseline %.0f rows/s" % (r + 1, got["rows_s"],
                  got["seconds"], base[-1]), flush=True)
    med = lambda key: B.median(x[key] for x in runs)  # noqa: E731
    ratio = med("rows_s") / statistics.median(base)
    paired = med("paired")
    ratio_cpu = med("rows_cpu_s") / B.median(base_cpu)
    results.append(("a", ratio))
    results.append(("a-cpu", ratio_cpu))
    rows_out = [
        B.row("rows", len(rows)),
        B.row("request bytes (MB, %d RowData calls)" % runs[0]["calls"], runs[0]["bytes"] / 1e6),
        B.row("load time (s, median)", med("seconds")),
        B.row("rows/s (wall)", med("rows_s"), statistics.median(base)),
        ("ratio per load against the two baseline runs next to it (median)", "", "",
         "%.2f" % paired),
        B.row("rows per CPU-second (worker vs baseline process)", med("rows_cpu_s"), B.median(base_cpu)),
        B.row("MB/s (request bytes, wall)", med("mb_s")),
        B.row("worker peak RSS VmHWM (MiB)", max(x["hwm"] for x in runs) / 1024),
        B.row("worker CPU per load (s)", med("worker_cpu")),
        B.row("client CPU per load (s)", med("client_cpu")),
        ("goal: ratio >= 0.6 (protocol) / >= 0.8 (benchmarks)", "", "",
         "%s / %s" % ("met" if ratio >= 0.6 else "MISSED", "met" if ratio >= 0.8 else "MISSED")),
    ]
    profile = runs[0].get("profile")
    if profile:
        notes = notes + ["perf record -g of the serving worker during run 1, top functions by self "
                         "time:\n\n  ```\n" + "\n".join("  " + l for l in profile) + "\n  ```"]
    B.report(args, "Initial load (a): contact, %d rows, SQLite store" % len(rows), rows_out, notes + [
        "baseline: bench/sqlite_baseline, same rows as TSV in the mirror's stored forms, the mirror's "
        "own CREATE TABLE (`%s`), one transaction, WAL, synchronous=NORMAL" % create.replace("\n", " "),
        "runs (rows/s): " + ", ".join("%.0f" % x["rows_s"] for x in runs) +
        "; baseline (two after the first load, then one after each): " + ", ".join("%.0f" % x for x in base) +
        "; ratio per load: " + ", ".join("%.2f" % x["paired"] for x in runs) +
        " (the host's speed moves by up to 1.7x from one second to the next: a load and the "
        "baselines around it share more of its moments than the medians do)",
        B.client_note(runs[len(runs) // 2]["clock"]),
        "the worker reads each 1 MB body in up to %d parts at once (one parser thread per CPU it may "
        "run on, up to 4)" % min(len(os.sched_getaffinity(0)), 4),
    ])


def pg_copy_baseline(args, pg, tsv, db, per_call=None):
    """bench/pg_copy_baseline's rows/s into a new database db (per_call: rows per transaction),
    and the server's CPU seconds over its run, after a CHECKPOINT."""
    pg.psql('CREATE DATABASE "%s"' % db)
    pg.psql("CHECKPOINT")
    server_cpu = B.command_cpu_seconds("postgres")
    out = B.run([B.program(args, "bench/pg_copy_baseline"), pg.conninfo(db), PG_CREATE,
                 "COPY contact FROM STDIN", tsv] + ([str(per_call)] if per_call else [])).stdout.split()
    return int(out[0]) / float(out[1]), B.command_cpu_seconds("postgres") - server_cpu


def part_c(args, h, keys, work, rows, bodies_for, notes, results):
    try:
        import pgserver
    except ImportError:
        B.report(args, "Initial load (c): PostgreSQL", [("skipped", "-", "-", "-")],
                 ["tests/integration/pgserver.py is not there"])
        return
    try:
        pgserver.require()
    except SystemExit:
        B.report(args, "Initial load (c): PostgreSQL", [("skipped", "-", "-", "-")],
                 ["PostgreSQL 15 is not installed here (pgserver.require())"])
        return
    tsv = os.path.join(work, "contact.tsv")
    write_tsv(tsv, rows)
    os.chmod(work, 0o755)
    runs, base, base_server_cpu, calls_base = [], [], [], []
    with pgserver.PgServer() as pg:
        # Each load leaves a loaded table that autovacuum would vacuum and analyse during the loads
        # after it, on the CPUs they share, and its pages dirty in shared_buffers (128 MB), which
        # the next load would write out as it takes their buffers: autovacuum is off, and every
        # load and baseline starts after a CHECKPOINT, so that each runs alike.
        pg.psql("ALTER SYSTEM SET autovacuum = off")
        pg.psql("SELECT pg_reload_conf()")
        os.makedirs(os.path.join(work, "c"), exist_ok=True)
        cfg = B.bench_config(h, os.path.join(work, "c"), keys, workers=1,
                             **{"store": {"driver": "postgresql", "postgresql": {"conninfo": pg.conninfo()}}})
        with h.Daemon(cfg) as daemon:
            daemon.start()
            for r in range(args.repeat):
                tenant = "BenchC%d" % r
                token = h.make_token(keys.vendor_key, keys.vendor_cert, tenant, exp=7200)
                pg.psql("CHECKPOINT")
                got = load_contact(h, daemon, token, bodies_for(token), len(rows),
                                   server_cpu=lambda: B.command_cpu_seconds("postgres"))
                count = pg.psql("SELECT count(*) FROM contact", dbname="Mirror_%s" % tenant).strip()
                if int(count) != len(rows):
                    raise RuntimeError("PostgreSQL mirror holds %s rows, sent %d" % (count, len(rows)))
                runs.append(got)
                rows_s, cpu = pg_copy_baseline(args, pg, tsv, "baseline%d" % r)
                base.append(rows_s)
                base_server_cpu.append(cpu)
                per_call = -(-len(rows) // got["calls"])
                calls_base.append(pg_copy_baseline(args, pg, tsv, "calls%d" % r, per_call)[0])
                print("  (c) run %d: %.0f rows/s (%.2f s), COPY baseline %.0f rows/s, in call-sized "
                      "transactions %.0f rows/s" % (r + 1, got["rows_s"], got["seconds"], base[-1],
                                                   calls_base[-1]), flush=True)
    med = lambda key: B.median(x[key] for x in runs)  # noqa: E731
    ratio = med("rows_s") / statistics.median(base)
    results.append(("c", ratio))
    B.report(args, "Initial load (c): contact, %d rows, PostgreSQL store" % len(rows), [
        B.row("rows/s", med("rows_s"), statistics.median(base)),
        B.row("rows/s against the COPY in call-sized transactions", med("rows_s"),
              statistics.median(calls_base)),
        B.row("MB/s (request bytes)", med("mb_s")),
        B.row("worker peak RSS VmHWM (MiB)", max(x["hwm"] for x in runs) / 1024),
        B.row("worker CPU per load (s)", med("worker_cpu")),
        B.row("client CPU per load (s)", med("client_cpu")),
        B.row("PostgreSQL server CPU per load (s)", med("server_cpu"), B.median(base_server_cpu), "-"),
        ("goal: ratio >= 0.6 / >= 0.8", "", "", "%s / %s" % ("met" if ratio >= 0.6 else "MISSED",
                                                             "met" if ratio >= 0.8 else "MISSED")),
    ], notes + [
        "PostgreSQL server CPU: every postgres process's, the sessions that ended included, over "
        "the RowData calls, and over the baseline program's run (its connection and CREATE TABLE "
        "too); autovacuum off, a CHECKPOINT before each load and each baseline run",
        "PostgreSQL 15 from tests/integration/pgserver.py (unix socket, fsync=off, "
        "synchronous_commit=off) on this machine; baseline: bench/pg_copy_baseline, one COPY of "
        "the same rows in one transaction into `%s`" % PG_CREATE,
        "COPY in call-sized transactions: bench/pg_copy_baseline with the rows per call of the load "
        "(%d calls), each in its own transaction as the store runs a call (BEGIN with an advisory "
        "lock, SAVEPOINT, COPY, RELEASE, COMMIT; not the store's metadata read), one after the "
        "other: what committing every call costs the server by itself" % runs[0]["calls"],
        "runs (rows/s): " + ", ".join("%.0f" % x["rows_s"] for x in runs) +
        "; baseline: " + ", ".join("%.0f" % x for x in base) +
        "; call-sized transactions: " + ", ".join("%.0f" % x for x in calls_base),
    ])


def task(args, *argv):
    return B.run([B.program(args, "somirror-task")] + list(argv), timeout=3600)


def part_b(args, h, work, notes, results):
    import json
    keydir = os.path.join(work, "taskkeys")
    task(args, "keys", "--out", keydir)
    keys = h.Keys(*(os.path.join(keydir, n) for n in ("vendor.key", "vendor.crt", "app.xml", "app.pub")))
    source = os.path.join(work, "source.db")
    t0 = time.perf_counter()
    task(args, "gen", "--db", source, "--scale", str(args.scale), "--seed", "42")
    task(args, "provision", "--db", source)
    print("  (b) gen --scale %d: %.1f s" % (args.scale, time.perf_counter() - t0), flush=True)
    cfg = B.bench_config(h, os.path.join(work, "b"), keys, workers=2)
    runs, base, base_cpu = [], [], []
    with h.Daemon(cfg) as daemon:
        daemon.start()
        for r in range(args.repeat):
            tenant = "BenchB%d" % r
            argv = [B.program(args, "somirror-task"), "run", "--once", "--url",
                    "http://127.0.0.1:%d/" % daemon.port, "--app-id", h.DEFAULT_APP_ID,
                    "--vendor-key", keys.vendor_key, "--vendor-cert", keys.vendor_cert,
                    "--app-public-key", keys.app_pub, "--tenant", tenant, "--db", source, "--json"]
            workers = daemon.worker_pids()
            with B.Clock(workers) as clock:
                proc = B.run(argv, timeout=3600)
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            if summary["result"] != "ok":
                raise RuntimeError("run: %s" % summary)
            status = daemon.ctl_json("show tenant " + tenant)["tenant"]
            rows = summary["rows"]["I"]
            mirror = os.path.join(work, "b", "mirrors", "Mirror_%s.db" % tenant)
            dest = os.path.join(work, "crm_baseline%d.db" % r)
            out = B.run([B.program(args, "bench/crm_baseline"), mirror, dest]).stdout.split()
            if int(out[0]) != rows:
                notes.append("baseline copied %s rows, the load sent %d" % (out[0], rows))
            runs.append({"rows": rows, "seconds": summary["seconds"], "wall": clock.wall,
                         "rows_s": rows / summary["seconds"], "mb_s": status["bytes"] / summary["seconds"] / 1e6,
                         "bytes": status["bytes"], "calls": summary["calls"], "tables": int(out[2]),
                         "worker_cpu": clock.server_cpu, "task_cpu": clock.self_cpu})
            base.append(int(out[0]) / float(out[1]))
            base_cpu.append(B.per_second(int(out[0]), float(out[3])))
            runs[-1]["rows_cpu_s"] = B.per_second(rows, clock.server_cpu)
            print("  (b) run %d: %d rows in %.2f s = %.0f rows/s; baseline %.0f rows/s; worker CPU %.2f s, "
                  "task CPU %.2f s" % (r + 1, rows, summary["seconds"], runs[-1]["rows_s"], base[-1],
                                       clock.server_cpu, clock.self_cpu), flush=True)
            for p in (mirror, mirror + "-wal", mirror + "-shm", dest, dest + "-wal", dest + "-shm"):
                if os.path.exists(p):
                    os.unlink(p)
    med = lambda key: B.median(x[key] for x in runs)  # noqa: E731
    ratio = med("rows_s") / statistics.median(base)
    ratio_cpu = med("rows_cpu_s") / B.median(base_cpu)
    results.append(("b", ratio))
    results.append(("b-cpu", ratio_cpu))
    B.report(args, "Initial load (b): generated CRM tables (gen --scale %d), SQLite store" % args.scale, [
        B.row("rows (%d tables)" % runs[0]["tables"], runs[0]["rows"]),
        B.row("request bytes (MB, %d calls)" % runs[0]["calls"], runs[0]["bytes"] / 1e6),
        B.row("run seconds (median, somirror-task summary)", med("seconds")),
        B.row("rows/s (wall)", med("rows_s"), statistics.median(base)),
        B.row("rows per CPU-second (workers vs baseline process)", med("rows_cpu_s"), B.median(base_cpu)),
        B.row("MB/s (request bytes, wall)", med("mb_s")),
        B.row("workers' CPU per load (s)", med("worker_cpu")),
        B.row("somirror-task CPU per load (s)", med("task_cpu")),
        ("goal: ratio >= 0.6 / >= 0.8", "", "", "%s / %s" % ("met" if ratio >= 0.6 else "MISSED",
                                                             "met" if ratio >= 0.8 else "MISSED")),
    ], notes + [
        "baseline: bench/crm_baseline copying the loaded mirror's rows (stored forms, the mirror's "
        "CREATE TABLE statements) into a fresh file, one prepared INSERT loop in one transaction",
        "the run includes somirror-task's own work (reading the source, building XML, signing a "
        "token) on the same 2 cores: task CPU %.2f s against the workers' %.2f s"
        % (med("task_cpu"), med("worker_cpu")),
        "runs (rows/s): " + ", ".join("%.0f" % x["rows_s"] for x in runs) +
        "; baseline: " + ", ".join("%.0f" % x for x in base),
    ])


def main():
    args = B.parse_args(__doc__.splitlines()[0], options)
    h = B.harness()
    parts = set(args.parts.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="smbench-load", dir=args.workdir) as work:
        notes = []
        if parts & {"a", "c"}:
            keys = h.make_keys(work)
            t0 = time.perf_counter()
            rows = make_rows(args.rows)
            cache = {}

            def bodies_for(token):
                if token not in cache:
                    cache.clear()
                    cache[token] = rowdata_bodies(h, rows, token)
                return cache[token]
            print("built %d rows in %.1f s" % (len(rows), time.perf_counter() - t0), flush=True)
            if "a" in parts:
                part_a(args, h, keys, work, rows, bodies_for, notes, results)
        if "b" in parts:
            part_b(args, h, work, [], results)
        if "c" in parts:
            part_c(args, h, keys, work, rows, bodies_for, [], results)
    print("ratios: " + ", ".join("%s %.2f" % r for r in results))


if __name__ == "__main__":
    main()
