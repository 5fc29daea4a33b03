#!/usr/bin/python3
"""Protocol section 4 (calls of different tenants overlap; the receiver serialises one tenant's
calls) end to end: tenants running whole cycles in parallel end with exact mirrors, and many
parallel RowData calls of one tenant all succeed with the right counts; and a new tenant that
cannot be registered because the registry's allocation lock stays busy is a TenantBusy, not a
TenantLimit (protocol 6: TenantLimit only when the registry of tenants is full)."""

import random
import shutil
import subprocess
import threading

import protolib as L
from protolib import H, eq, check, expect_fault, ok_states

T = {"name": "t", "columns": [("id", "int", False), ("v", "nvarchar(50)", True), ("n", "bigint", True)],
     "pk": ["id"]}
U = {"name": "u", "columns": [("a", "int", False), ("b", "varchar(20)", False), ("x", "float", True)],
     "pk": ["a", "b"]}


def run_threads(targets):
    errors = []

    def wrap(fn):
        def inner():
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        return inner
    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "threads still running")
    if errors:
        raise AssertionError("%d thread(s) failed: %s" % (len(errors), "; ".join(errors[:3])))


def cycle_runner(p, tenant, seed, cycles, expected):
    """Whole cycles on one keep-alive connection, with a model of the mirror in expected."""
    rnd = random.Random(seed)
    model_t, model_u = {}, {}
    lsn = 0

    def go():
        nonlocal lsn
        conn = p.daemon.connection()
        try:
            for cycle in range(cycles):
                p.auth(tenant=tenant, conn=conn)
                st = ok_states(p.schema([T, U], tenant=tenant, conn=conn))
                if cycle == 0:
                    eq([s["Change"] for s in st], ["Created", "Created"], "first cycle")
                    ok_states(p.wipe(["t", "u"], tenant=tenant, conn=conn))
                else:
                    eq([s["Lsn"] for s in st], [str(lsn), str(lsn)], "%s positions at cycle %d" % (tenant, cycle))
                for _ in range(3):
                    rows_t, rows_u = [], []
                    for _ in range(40):
                        lsn += 1
                        k = rnd.randrange(60)
                        if rnd.random() < 0.2:
                            rows_t.append(("D", str(lsn), [str(k)]))
                            model_t.pop(k, None)
                        else:
                            val = (k, "%s-%d" % (tenant, lsn), lsn * 1000003)
                            rows_t.append(("I" if k not in model_t else "U", str(lsn), [str(k), val[1], str(val[2])]))
                            model_t[k] = val
                        a, b = rnd.randrange(5), "b%d" % rnd.randrange(5)
                        if rnd.random() < 0.2:
                            rows_u.append(("D", str(lsn), [str(a), b]))
                            model_u.pop((a, b), None)
                        else:
                            x = lsn / 8.0
                            rows_u.append(("U", str(lsn), [str(a), b, repr(x)]))
                            model_u[(a, b)] = (a, b, x)
                    st = ok_states(p.rows([{"table": "t", "columns": ["id", "v", "n"], "rows": rows_t, "lsn": lsn},
                                           {"table": "u", "columns": ["a", "b", "x"], "rows": rows_u, "lsn": lsn}],
                                          tenant=tenant, conn=conn))
                    eq([(s["Name"], s["Lsn"], s["Skipped"]) for s in st], [("t", str(lsn), "0"), ("u", str(lsn), "0")],
                       "%s RowData" % tenant)
                r = p.completed([("t", 1, 1, 1)], tenant=tenant, conn=conn)
                check(r.status == 200 and not r.fault, "%s ReplicationCompleted: %r" % (tenant, r))
        finally:
            conn.close()
        expected[tenant] = (sorted(model_t.values()), sorted(model_u.values()), lsn)
    return go


def tenants_in_parallel(p):
    expected = {}
    tenants = ["%s_%d" % (p.tenant, i) for i in range(6)]
    run_threads([cycle_runner(p, t, i, 4, expected) for i, t in enumerate(tenants)])
    for t in tenants:
        model_t, model_u, lsn = expected[t]
        eq(p.table_rows("t", "id", tenant=t), model_t, "%s: t" % t)
        eq(p.table_rows("u", "a, b", tenant=t), model_u, "%s: u" % t)
        m = p.meta(tenant=t)
        eq((m["t"]["lsn"], m["u"]["lsn"]), (lsn, lsn), "%s: positions" % t)
    for t in tenants:
        check(p.daemon.ctl_json("show tenant %s" % t)["tenant"]["last_completed"], "%s: last_completed" % t)


def one_tenant_many_calls(p):
    ntables, calls, per_call = 12, 5, 1000
    tables = [{"name": "p%d" % i, "columns": T["columns"], "pk": ["id"]} for i in range(ntables)]
    p.setup(tables)
    results = {}

    def worker(i):
        def go():
            conn = p.daemon.connection()
            try:
                for c in range(calls):
                    lsn = (c + 1) * 10 * per_call
                    rows = [("I", str(lsn - per_call + j + 1), [str(c * per_call + j), "r%d" % j, str(i)])
                            for j in range(per_call)]
                    if c > 0:
                        rows.append(("D", str(lsn), [str((c - 1) * per_call)]))
                        rows.append(("U", str(lsn), [str(c * per_call), "upd", str(i)]))
                    st = ok_states(p.rows([{"table": "p%d" % i, "columns": ["id", "v", "n"], "rows": rows, "lsn": lsn}],
                                          conn=conn))
                    want = (str(lsn), str(per_call), "1" if c > 0 else "0", "1" if c > 0 else "0", "0")
                    got = (st[0]["Lsn"], st[0]["Inserted"], st[0]["Updated"], st[0]["Deleted"], st[0]["Skipped"])
                    eq(got, want, "p%d call %d counts" % (i, c))
                results[i] = True
            finally:
                conn.close()
        return go
    # Two threads per table pair would overlap the same table; the protocol says calls of one
    # tenant never overlap for the same table, so one thread per table.
    run_threads([worker(i) for i in range(ntables)])
    eq(sorted(results), list(range(ntables)), "threads done")
    for i in range(ntables):
        eq(p.query('SELECT count(*) FROM "p%d"' % i)[0][0], calls * per_call - (calls - 1), "p%d rows" % i)
        eq(p.meta()["p%d" % i]["lsn"], calls * 10 * per_call, "p%d lsn" % i)
        eq(p.query('SELECT v FROM "p%d" WHERE id = ?' % i, ((calls - 1) * per_call,))[0][0], "upd", "p%d update" % i)


def set_alloc_lock(p, owner):
    """Sets the registry's allocation lock word (shared by every process) through gdb in one
    worker: owner 1 (init, never reaped) holds it as a stopped allocator would; 0 frees it."""
    out = subprocess.run(["gdb", "-p", str(p.daemon.worker_pids()[0]), "-batch", "-nx", "-ex",
                          "set var worker_http->params->reg->alloc_lock = %d" % owner, "-ex",
                          "print worker_http->params->reg->alloc_lock"],
                         capture_output=True, text=True, timeout=60)
    return "= %d" % owner in out.stdout


def registry_busy_is_not_a_limit(p):
    """A new tenant whose entry cannot be allocated because the allocation lock stays busy (its
    holder stopped or died, not yet reaped) gets the retryable TenantBusy; the registry is not
    full, so neither TenantLimit nor a log line saying it is full. somirrorctl's pause, resync
    and reset of a new tenant say the registry was busy, not that it is full."""
    if not shutil.which("gdb"):
        print("     (skipped: no gdb)")
        return
    p.auth()
    if not set_alloc_lock(p, 1):
        print("     (skipped: gdb cannot set the allocation lock)")
        return
    try:
        for op, body in (("Authenticate", H.authenticate_body()),
                         ("TableSchema", H.table_schema_body([T]))):
            r = p.call(op, body, tenant=p.tenant + "_new")
            expect_fault(r, "TenantBusy", faultcode="s:Server", retryable=True)
        p.auth()   # a registered tenant is served meanwhile
        for command in ("pause %s", "resync %s all", "reset %s"):
            answer = p.daemon.ctl(command % (p.tenant + "_new"))
            check(answer.startswith("error: cannot %s %s_new: the tenant registry was busy"
                                    % (command.split()[0], p.tenant)), "%s: %r" % (command, answer))
    finally:
        check(set_alloc_lock(p, 0), "gdb could not free the allocation lock")
    check("registry is full" not in p.daemon.log(), "the log says the registry is full")
    p.auth(tenant=p.tenant + "_new")


CHECKS = [tenants_in_parallel, one_tenant_many_calls, registry_busy_is_not_a_limit]

if __name__ == "__main__":
    L.run(CHECKS, workers=4)
