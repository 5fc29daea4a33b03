#!/usr/bin/python3
"""RowData bodies of 64 KiB and more are applied while they are parsed (proto/rowstream, the
stream_* functions of proto/service.c). The answer and the mirror must be exactly what the
parse-then-apply order gives: each request below is sent once as it is (small: parsed, then
applied) and once padded past the threshold with a comment at its very end (streamed: every row
is applied before the parser reaches the end), and both answers must be byte for byte equal,
with nothing applied on a fault. Then large loads with faults late in the body, and streamed
calls one after the other on one worker."""

import os
import sqlite3
import time

import protolib as L
from protolib import NS, eq, check, expect_fault, ok_states

T = {"name": "t", "columns": [("id", "int", False), ("v", "nvarchar(50)", True), ("w", "int", True)], "pk": ["id"]}
U = {"name": "u", "columns": [("k", "nvarchar(10)", False), ("n", "bigint", True)], "pk": ["k"]}
TC = ["id", "v", "w"]
UC = ["k", "n"]
STREAM_MIN = 64 * 1024
PAD = "<!--" + "p" * (STREAM_MIN + 1024) + "-->"


def body(batches, tail=""):
    return L.H.row_data_body(batches)[:-len("</Batches></RowDataRequest>")] + tail + "</Batches></RowDataRequest>"


def padded(text):
    """The same request, past the threshold, the padding after every row."""
    end = "</RowDataRequest>"
    check(text.endswith(end), "request ends with %s" % end)
    return text[:-len(end)] + PAD + end


STREAMED = "RowData: applying the rows while the body is parsed"


def streamed(p):
    """How many of this check's calls took the streamed path (somirrord logs each at debug)."""
    return sum(1 for line in p.daemon.log().splitlines() if "[%s]" % p.tenant in line and STREAMED in line)


def mirror(p):
    return (p.table_rows("t"), p.table_rows("u"), p.meta()["t"]["lsn"], p.meta()["u"]["lsn"])


def t_rows(first, count, lsn=None):
    return [("I", lsn, [str(i), "v%d" % i, str(i * 2)]) for i in range(first, first + count)]


REQUESTS = [
    # name, the inner body, whether it succeeds
    ("two tables", body([{"table": "t", "columns": TC, "rows": t_rows(1, 5), "lsn": 10},
                         {"table": "u", "columns": UC, "rows": [("I", None, ["a", "1"]), ("I", None, ["b", None])],
                          "lsn": 20}]), True),
    ("invalid value", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3) + [("I", None, ["9", "x", "no"])],
                             "lsn": 10}]), False),
    ("NULL key", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3) + [("I", None, [None, "x", "1"])]}]), False),
    ("unknown table second", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10},
                                   {"table": "nosuch", "columns": ["id"], "rows": [("I", None, ["1"])]}]), False),
    ("blocked table second", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10},
                                   {"table": "credentials", "columns": ["id"], "rows": [("I", None, ["1"])]}]), False),
    ("blocked table after a bad value", body([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "x", "no"])]},
                                              {"table": "credentials", "columns": ["id"], "rows": []}]), False),
    ("column mismatch second", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10},
                                     {"table": "u", "columns": ["k"], "rows": [("I", None, ["a"])]}]), False),
    ("value count", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3)}]).replace("<V>v3</V>", ""), False),
    ("bad op late", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10}],
                         '<Batch><Table>u</Table><Columns><Name>k</Name><Name>n</Name></Columns><Rows>'
                         '<Row op="X"><V>a</V><V>1</V></Row></Rows></Batch>'), False),
    ("unknown element late", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10}],
                                  "<Extra/>"), False),
    ("missing Rows late", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3), "lsn": 10}],
                               '<Batch><Table>u</Table><Columns><Name>k</Name></Columns></Batch>'), False),
    ("rows with lsn", body([{"table": "t", "columns": TC, "rows": t_rows(1, 3, lsn=5), "lsn": 10}]), True),
]


def same_answers(p):
    """Every request: the streamed answer equals the parsed-then-applied one, and so does the
    mirror after it (nothing applied on a fault)."""
    p.setup([T, U])
    empty = mirror(p)
    for name, inner, succeeds in REQUESTS:
        before = streamed(p)
        small = p.call("RowData", inner)
        eq(streamed(p), before, "%s: the small request is parsed, then applied" % name)
        after_small = mirror(p)
        if succeeds:
            ok_states(small, name)
            check(after_small != empty, "%s: applied" % name)
            p.wipe(["t", "u"])
            eq(mirror(p), empty, "%s: wiped" % name)
        else:
            check(small.fault, "%s: a fault expected, got %r" % (name, small))
            eq(after_small, empty, "%s: nothing applied" % name)
        big = p.call("RowData", padded(inner))
        eq(streamed(p), before + 1, "%s: the padded request took the streamed path" % name)
        eq((big.status, big.body), (small.status, small.body), "%s: streamed answer" % name)
        eq(mirror(p), after_small, "%s: mirror after the streamed call" % name)
        if succeeds:
            p.wipe(["t", "u"])


def envelope_faults(p):
    """A body that is not well-formed after its rows, and the header faults, on a big body."""
    p.setup([T])
    rows = t_rows(1, 3000)
    inner = body([{"table": "t", "columns": TC, "rows": rows, "lsn": 10}])
    check(len(inner) > STREAM_MIN, "the body is past the threshold")
    broken = inner.replace("</Batches>", "</Batch>")
    expect_fault(p.call("RowData", broken), "MalformedRequest")
    eq(streamed(p), 1, "the broken body was streamed until its error")
    eq(p.table_rows("t"), [], "nothing applied after the XML error")
    expect_fault(p.call("RowData", inner, token="not.a.token"), "InvalidToken")
    # The same on a body read in parts whose last part tells more events than its parser holds
    # (many small batches after the large one): parsers started after the fault was decided
    # must still stop (they once waited for ever, and the worker with them).
    many = body([{"table": "t", "columns": TC, "rows": t_rows(1, 10000), "lsn": 10}] +
                [{"table": "t", "columns": TC, "rows": t_rows(10001 + k, 1), "lsn": 11 + k} for k in range(2000)])
    for _ in range(5):
        expect_fault(p.call("RowData", many, token="not.a.token", timeout=20), "InvalidToken")
    expect_fault(p.call("RowData", inner, token=p.token(exp=-3600, nbf=-7200)), "TokenExpired")
    expect_fault(p.call("RowData", inner, soapaction='"%sWipe"' % L.H.ACTION_PREFIX), "MalformedRequest")
    eq(p.table_rows("t"), [], "nothing applied after the token and action faults")
    eq(streamed(p), 1, "no streaming without a valid token and RowData")
    eq(p.meta()["t"]["lsn"], -1, "position unchanged")


def large_loads(p):
    """Several big calls: every row lands once, positions move, a resend is skipped, a late bad
    value rolls the whole call back and names its row."""
    p.setup([T, U])
    total = 0
    for call in range(3):
        rows = t_rows(1 + call * 4000, 4000, lsn=1000 + call)
        st = ok_states(p.rows([{"table": "t", "columns": TC, "rows": rows, "lsn": 1000 + call},
                               {"table": "u", "columns": UC, "rows": [("I", None, ["k%d" % call, str(call)])],
                                "lsn": 50 + call}]))
        total += 4000
        eq([(s["Name"], s["Inserted"], s["Lsn"]) for s in st],
           [("t", "4000", str(1000 + call)), ("u", "1", str(50 + call))], "call %d states" % call)
    eq(p.query("SELECT count(*), sum(id), sum(w) FROM t"),
       [(total, total * (total + 1) // 2, total * (total + 1))], "every row once")
    eq(p.meta()["t"]["lsn"], 1002, "position")
    # The last call again: its rows are stale now.
    st = ok_states(p.rows([{"table": "t", "columns": TC, "rows": t_rows(8001, 4000, lsn=1002), "lsn": 1002}]))
    eq((st[0]["Inserted"], st[0]["Skipped"]), ("0", "4000"), "resend skipped")
    # A bad value in the very last row: nothing of the call is kept.
    rows = t_rows(20001, 3999) + [("I", 2000, ["24000", "v", "bad"])]
    expect_fault(p.rows([{"table": "t", "columns": TC, "rows": rows, "lsn": 2000}]), "InvalidValue",
                 table="t", column="w", row=4000)
    eq(p.query("SELECT count(*) FROM t"), [(total,)], "nothing of the faulted call")
    eq(p.meta()["t"]["lsn"], 1002, "position after the fault")
    eq(streamed(p), 5, "every call took the streamed path")


def calls_in_a_row(p):
    """On one keep-alive connection (one worker): a big call given up on at its first row, with
    the parser still far from the end, then big calls that must each apply exactly their own
    rows."""
    p.setup([T])
    conn = p.daemon.connection()
    rows = [("I", None, ["1", "v", "bad"])] + t_rows(2, 3999)
    expect_fault(p.rows([{"table": "t", "columns": TC, "rows": rows, "lsn": 5}], conn=conn), "InvalidValue",
                 table="t", column="w", row=1)
    eq(p.table_rows("t"), [], "nothing of the faulted call")
    for call in range(2):
        st = ok_states(p.rows([{"table": "t", "columns": TC, "rows": t_rows(1 + call * 4000, 4000),
                                "lsn": 10 + call}], conn=conn))
        eq((st[0]["Inserted"], st[0]["Lsn"]), ("4000", str(10 + call)), "call %d states" % call)
    conn.close()
    eq(streamed(p), 3, "every call took the streamed path")
    eq(p.query("SELECT count(*), sum(id), sum(w) FROM t"), [(8000, 8000 * 8001 // 2, 8000 * 8001)],
       "every row once")


def pipelined_large_bodies(p):
    """Two bodies of ~1.6 MB and a small call in one write: the socket holds more than a body
    at a time, so the worker reads ahead of libevent's 4 KiB reads (worker/http.c read_ahead),
    past the end of a body into the next request. Every request is answered in order, each
    applies exactly its own rows."""
    p.setup([T])
    token = p.token()
    first = L.H.envelope(body([{"table": "t", "columns": TC, "rows": t_rows(1, 20000), "lsn": 30}]), token).encode()
    second = L.H.envelope(body([{"table": "t", "columns": TC, "rows": t_rows(20001, 20000), "lsn": 31}]),
                          token).encode()
    check(len(first) > 1024 * 1024 and len(second) > 1024 * 1024,
          "bodies of %d and %d bytes: more than one read ahead each" % (len(first), len(second)))
    third = L.H.envelope(L.H.authenticate_body("third"), token).encode()
    answers = L.pipelined_answers(p.port, [("RowData", first), ("RowData", second), ("Authenticate", third)])
    eq([a[0] for a in answers], [200, 200, 200], "statuses")
    eq([(s["Inserted"], s["Lsn"]) for s in L.H.parse_table_states(answers[0][1])], [("20000", "30")],
       "the first call's rows")
    eq([(s["Inserted"], s["Lsn"]) for s in L.H.parse_table_states(answers[1][1])], [("20000", "31")],
       "the second call's rows")
    eq(L.H.parse_auth(answers[2][1]).get("ClientState"), "third", "the third request's answer")
    eq(p.query("SELECT count(*), sum(id), sum(w) FROM t"), [(40000, 40000 * 40001 // 2, 40000 * 40001)],
       "every row once")


def paused_tenant(p):
    """A big body for a paused tenant is refused whole; after resume it applies."""
    p.setup([T])
    inner = body([{"table": "t", "columns": TC, "rows": t_rows(1, 3000), "lsn": 10}])
    check(p.daemon.ctl("pause %s" % p.tenant).startswith("ok"), "pause")
    expect_fault(p.call("RowData", inner), "TenantPaused", faultcode="s:Server")
    eq(p.table_rows("t"), [], "nothing applied while paused")
    check(p.daemon.ctl("resume %s" % p.tenant).startswith("ok"), "resume")
    ok_states(p.call("RowData", inner))
    eq(p.query("SELECT count(*) FROM t"), [(3000,)], "applied after resume")
    eq(streamed(p), 1, "only the call after resume took the streamed path")


def checkpoint_in_background(p):
    """The SQLite store checkpoints the WAL on the worker's checkpointer thread once a commit
    takes it past 1000 pages: the rows reach the main file with no further call, and the next
    call on the same connection (one worker) still sees and adds to every row."""
    notes = {"name": "notes", "columns": [("id", "int", False), ("text", "nvarchar(max)", True)], "pk": ["id"]}
    p.setup([notes])
    main = p.db_path()
    before = os.path.getsize(main)
    text = "x" * 2000
    conn = p.daemon.connection()
    ok_states(p.rows([{"table": "notes", "columns": ["id", "text"],
                       "rows": [("I", None, [str(i), text]) for i in range(3000)], "lsn": 1}], conn=conn))
    L.H.wait_until(lambda: os.path.getsize(main) > before + 3000 * 2000, timeout=10,
                 what="the rows checkpointed into the main file with no further call")
    ok_states(p.rows([{"table": "notes", "columns": ["id", "text"], "rows": [("I", None, ["5000", "y"])],
                       "lsn": 2}], conn=conn))
    conn.close()
    eq(p.query("SELECT count(*), sum(length(text)) FROM notes"), [(3001, 3000 * 2000 + 1)], "every row")


LOCK_TIMEOUT = 2


def mirror_locked(p):
    """A big call while another writer holds the mirror: the store's begin waits lock_timeout
    once, and that fault is the answer (the sequential path does not try, and wait, again)."""
    p.setup([T])
    inner = body([{"table": "t", "columns": TC, "rows": t_rows(1, 3000), "lsn": 10}])
    other = sqlite3.connect(p.db_path(), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        r = p.call("RowData", inner)
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
    check(r.fault, "answered while the mirror was locked: %r" % r)
    check(LOCK_TIMEOUT - 0.5 <= waited < 1.75 * LOCK_TIMEOUT,
          "waited %.1f s for a %d s lock_timeout (twice: the begin was tried again)" % (waited, LOCK_TIMEOUT))
    eq(p.table_rows("t"), [], "nothing applied")
    ok_states(p.call("RowData", inner))
    eq(p.query("SELECT count(*) FROM t"), [(3000,)], "applied once the lock is gone")


PARTS = "RowData: the body was parsed in %d parts at once"


def in_parts(p):
    """A body with 128 KiB of rows and more is read by several parsers at once (one per CPU, up
    to 4, and one per 128 KiB of rows), each later one from a row end guessed part way through
    the rows (proto/rowstream; every way a split can go is in test_rowstream): every row lands
    once and in order (a later row of a key, in the last part, wins); a guess that falls in a
    comment leaves one parser; an XML error in a later part is answered as a one-piece parse
    answers it (its line)."""
    parts = min(len(os.sched_getaffinity(0)), 4)   # the daemon's CPUs are the test's
    split = lambda: p.daemon.log().count(PARTS % parts)  # noqa: E731
    p.setup([T])
    before = split()
    rows = t_rows(1, 12000) + [("U", None, ["1", "last", "7"])]
    ok_states(p.rows([{"table": "t", "columns": TC, "rows": rows, "lsn": 10}]))
    eq(split(), before + (parts > 1), "read in %d parts" % parts)
    eq(p.query("SELECT count(*), sum(id) FROM t"), [(12000, 12000 * 12001 // 2)], "every row once")
    eq(p.query("SELECT v, w FROM t WHERE id = 1"), [("last", 7)], "the last row of key 1 wins")

    inner = body([{"table": "t", "columns": TC, "rows": t_rows(12001, 3000), "lsn": 11}])
    at = inner.index("<Row", inner.index("<Rows>") + 20000)
    inner = inner[:at] + "<!--" + " </Row>" * 40000 + " -->" + inner[at:]
    ok_states(p.call("RowData", inner))
    eq(split(), before + (parts > 1), "a cut guessed inside a comment: one parser")
    eq(p.query("SELECT count(*), sum(id) FROM t"), [(15000, 15000 * 15001 // 2)], "every row of it once")

    inner = body([{"table": "t", "columns": TC, "rows": t_rows(20001, 12000), "lsn": 12}])
    inner = inner.replace("</Row><Row", "</Row>\n<Row").replace("<V>v31000</V>", "<V>v31000&nosuch;</V>")
    line = inner[:inner.index("&nosuch;")].count("\n") + 1
    check(line == 11000, "the bad row is on line %d" % line)
    aborted = lambda: p.daemon.log().count("the parts of the parse did not join")  # noqa: E731
    before_abort = aborted()
    r = p.call("RowData", inner)
    expect_fault(r, "MalformedRequest")
    check("XML error at line %d:" % line in r.fault["message"], "the line of the one-piece parse: %r" % r.fault)
    eq(aborted(), before_abort + (parts > 1), "a later parser's failure gave up the streamed rows")
    eq(p.query("SELECT count(*) FROM t"), [(15000,)], "nothing of the faulted call")
    eq(p.meta()["t"]["lsn"], 11, "position after the fault")


CHECKS = [same_answers, envelope_faults, large_loads, calls_in_a_row, pipelined_large_bodies, paused_tenant,
          checkpoint_in_background, mirror_locked, in_parts]

if __name__ == "__main__":
    L.run(CHECKS, **{"tenants.lock_timeout": LOCK_TIMEOUT})
