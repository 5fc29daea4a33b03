#!/usr/bin/python3
"""Protocol sections 4.5 and 7 end to end: ReplicationCompleted (answer, status), and the
operator's pause / resume / resync / reset as a sender sees them on the wire."""

import json
import os
import time

import protolib as L
from protolib import H, NS, eq, check, expect_fault, ok_states

T = {"name": "t", "columns": [("id", "int", False), ("v", "nvarchar(50)", True)], "pk": ["id"]}
U = {"name": "u", "columns": [("id", "int", False), ("v", "nvarchar(50)", True)], "pk": ["id"]}


def fill(p, tenant=None):
    p.rows_ok([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["1", "a"]), ("I", None, ["2", "b"])],
                "lsn": 100},
               {"table": "u", "columns": ["id", "v"], "rows": [("I", None, ["1", "x"])], "lsn": 200}], tenant=tenant)


def ctl_ok(p, command):
    answer = p.daemon.ctl(command)
    check(answer.startswith("ok"), "%s: %r" % (command, answer))
    return answer


def tenant_status(p, tenant=None):
    return p.daemon.ctl_json("show tenant %s" % (tenant or p.tenant))["tenant"]


def replication_completed(p):
    p.setup([T])
    st = tenant_status(p)
    eq(st["last_completed"], None, "last_completed before ReplicationCompleted")
    eq(st["last_summary"], None, "last_summary before ReplicationCompleted")
    before = time.time()
    r = p.completed()
    check(r.status == 200 and not r.fault, "ReplicationCompleted: %r" % r)
    el = r.element
    eq(el.tag, "{%s}ReplicationCompletedResponse" % NS, "answer element")
    eq((list(el), (el.text or "").strip()), ([], ""), "answer is empty")
    ct = r.headers.get("content-type", "").lower().replace(" ", "")
    eq(ct, "text/xml;charset=utf-8", "Content-Type")
    st = tenant_status(p)
    check(isinstance(st["last_completed"], (int, float)) and before - 2 <= st["last_completed"] <= time.time() + 2,
          "last_completed %r" % st["last_completed"])
    eq(st["tenant"], p.tenant, "tenant")
    # With a summary, and an empty Summary element written as <Summary/>.
    r = p.completed([("t", 10, 3, 1), ("u", 0, 0, 0)])
    check(r.status == 200 and not r.fault, "ReplicationCompleted with summary: %r" % r)
    # The cycle's counts are recorded and visible in status (section 4.5): the sender's Summary.
    eq(tenant_status(p)["last_summary"], {"inserted": 10, "updated": 3, "deleted": 1}, "last_summary")
    r = p.call("ReplicationCompleted", '<ReplicationCompletedRequest xmlns="%s"><Summary/></ReplicationCompletedRequest>'
               % NS)
    check(r.status == 200 and not r.fault, "ReplicationCompleted with <Summary/>: %r" % r)
    eq(tenant_status(p)["last_summary"], {"inserted": 0, "updated": 0, "deleted": 0}, "last_summary, empty")
    # The same status also in the list.
    names = [t["tenant"] for t in p.daemon.ctl_json("show tenants")["tenants"]]
    check(p.tenant in names, "tenant not in show tenants: %r" % names)


def pause_resume(p):
    other = p.tenant + "_o"
    p.setup([T, U])
    fill(p)
    p.setup([T], tenant=other)
    ctl_ok(p, "pause %s" % p.tenant)
    eq(tenant_status(p)["paused"], True, "paused in status")
    a = p.auth(client_state="cs")
    eq(json.loads(a["AdditionalInformationJson"] or "null"), {"doNotReplicate": "true"}, "AdditionalInformationJson")
    eq(a["ClientState"], "cs", "ClientState while paused")
    check(H.verify_application_token(p.env.keys.app_pub, a["SignedApplicationToken"],
                                     a["SignedApplicationToken"].split(".")[0]), "token while paused")
    for op, r in (("TableSchema", p.schema([T])),
                  ("Wipe", p.wipe(["t"])),
                  ("RowData", p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["9", "z"])],
                                       "lsn": 999}])),
                  ("ReplicationCompleted", p.completed())):
        try:
            expect_fault(r, "TenantPaused", faultcode="s:Server")
        except AssertionError as e:
            raise AssertionError("%s while paused: %s" % (op, e))
    eq(p.table_rows("t"), [(1, "a"), (2, "b")], "rows while paused")
    eq((p.meta()["t"]["lsn"], p.meta()["u"]["lsn"]), (100, 200), "positions while paused")
    # Another tenant is not affected.
    eq(p.auth(tenant=other)["AdditionalInformationJson"], "", "other tenant's Authenticate")
    ok_states(p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["1", "o"])]}], tenant=other))
    # Resume.
    ctl_ok(p, "resume %s" % p.tenant)
    eq(p.auth()["AdditionalInformationJson"], "", "AdditionalInformationJson after resume")
    st = ok_states(p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["9", "z"])], "lsn": 300}]))
    eq(st[0]["Lsn"], "300", "RowData after resume")
    eq(tenant_status(p)["paused"], False, "paused in status after resume")


def pause_all(p):
    p.setup([T])
    ctl_ok(p, "pause all")
    try:
        for tenant in (p.tenant, p.tenant + "_new"):
            a = p.auth(tenant=tenant)
            eq(json.loads(a["AdditionalInformationJson"] or "null"), {"doNotReplicate": "true"},
               "pause all: %s" % tenant)
        expect_fault(p.schema([T]), "TenantPaused", faultcode="s:Server")
    finally:
        ctl_ok(p, "resume all")
    eq(p.auth()["AdditionalInformationJson"], "", "after resume all")
    ok_states(p.schema([T]))


def pause_before_first_call(p):
    ctl_ok(p, "pause %s" % p.tenant)
    a = p.auth()
    eq(json.loads(a["AdditionalInformationJson"] or "null"), {"doNotReplicate": "true"}, "paused new tenant")
    check(not os.path.exists(p.db_path()), "a paused tenant's mirror was provisioned")
    ctl_ok(p, "resume %s" % p.tenant)
    eq(p.auth()["AdditionalInformationJson"], "", "after resume")
    check(os.path.exists(p.db_path()), "no mirror after the first Authenticate after the resume")


def resync_waits_for_resume(p):
    """A paused tenant's mirror is left alone: a resync asked for while paused is carried out at
    the first Authenticate after the resume (somirrorctl(8))."""
    p.setup([T, U])
    fill(p)
    ctl_ok(p, "pause %s" % p.tenant)
    ctl_ok(p, "resync %s t" % p.tenant)
    p.auth()
    eq(len(p.table_rows("t")), 2, "t while paused")
    ctl_ok(p, "resume %s" % p.tenant)
    p.auth()
    eq((p.table_rows("t"), p.meta()["t"]["lsn"]), ([], -1), "t after the resume")


def resync_table(p):
    p.setup([T, U])
    fill(p)
    ctl_ok(p, "resync %s t" % p.tenant)
    # Not in the middle of a cycle's data calls: a data call before the next Authenticate does not resync.
    ok_states(p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["3", "c"])], "lsn": 110}]))
    eq(len(p.table_rows("t")), 3, "rows of t before the next Authenticate")
    p.auth()
    eq(p.table_rows("t"), [], "t emptied at the next Authenticate")
    eq(p.meta()["t"]["lsn"], -1, "t lsn after resync")
    eq((p.table_rows("u"), p.meta()["u"]["lsn"]), ([(1, "x")], 200), "u untouched")
    st = ok_states(p.schema([T, U]))
    eq([(s["Name"], s["Change"], s["Lsn"]) for s in st], [("t", "Unchanged", "-1"), ("u", "Unchanged", "200")],
       "TableSchema after resync")
    # Done once: the next Authenticate does not empty t again.
    fill(p)
    p.auth()
    eq(len(p.table_rows("t")), 2, "t after a second Authenticate")
    # resync all.
    ctl_ok(p, "resync %s all" % p.tenant)
    p.auth()
    eq((p.table_rows("t"), p.table_rows("u")), ([], []), "resync all")
    eq((p.meta()["t"]["lsn"], p.meta()["u"]["lsn"]), (-1, -1), "lsns after resync all")


def resync_at_table_schema(p):
    p.setup([T, U])
    fill(p)
    ctl_ok(p, "resync %s u" % p.tenant)
    st = ok_states(p.schema([T, U]))
    eq([(s["Name"], s["Lsn"]) for s in st], [("t", "100"), ("u", "-1")], "resync carried out at TableSchema")
    eq(p.table_rows("u"), [], "u emptied")


def reset(p):
    p.setup([T, U])
    fill(p)
    ctl_ok(p, "reset %s" % p.tenant)
    p.auth()
    check(os.path.exists(p.db_path()), "mirror provisioned again")
    eq(p.meta(), {}, "metadata after reset")
    eq(p.tables(), [], "tables after reset")
    st = ok_states(p.schema([T, U]))
    eq([(s["Name"], s["Change"], s["Lsn"]) for s in st], [("t", "Created", "-1"), ("u", "Created", "-1")],
       "TableSchema after reset")
    fill(p)
    eq(len(p.table_rows("t")), 2, "rows after reset")
    # Done once.
    p.auth()
    eq(len(p.table_rows("t")), 2, "rows after the next Authenticate")


def pending_requests(p):
    with open(p.daemon.pid_file + ".state") as f:
        state = json.load(f)
    return state.get("reset", []), state.get("resync", {})


def requests_survive_restart(p):
    """Section 7 across a restart: a reset or resync asked for is carried out at the tenant's
    next call even when somirrord restarts in between (a source restored from a backup must not
    go on from its stale mirror), also one asked for a tenant not seen since the start; once
    carried out, the state file drops it and the next restart redoes nothing."""
    d, other = p.daemon, p.tenant + "_b"
    p.setup([T, U])
    fill(p)
    p.setup([T, U], tenant=other)
    fill(p, tenant=other)
    eq(d.stop(), 0, "exit status")
    d.start()
    ctl_ok(p, "resync %s u" % other)   # not seen since this start
    ctl_ok(p, "reset %s" % p.tenant)
    eq(pending_requests(p), ([p.tenant], {other: "u"}), "requests in the state file")
    eq(d.stop(), 0, "exit status")
    d.start()
    p.auth()
    eq(p.tables(), [], "tables after the reset asked for before the restart")
    st = ok_states(p.schema([T, U], tenant=other))
    eq([(s["Name"], s["Lsn"]) for s in st], [("t", "100"), ("u", "-1")], "resync asked before the restart")
    eq(p.table_rows("u", tenant=other), [], "u emptied")
    H.wait_until(lambda: pending_requests(p) == ([], {}), 5, what="the state file to drop the requests done")
    ok_states(p.schema([T, U]))
    fill(p)
    eq(d.stop(), 0, "exit status")
    d.start()
    p.auth()
    eq(len(p.table_rows("t")), 2, "rows after a restart with nothing pending")


CHECKS = [replication_completed, pause_resume, pause_all, pause_before_first_call, resync_waits_for_resume,
          resync_table,
          resync_at_table_schema, reset, requests_survive_restart]

if __name__ == "__main__":
    L.run(CHECKS)
