#!/usr/bin/python3
"""Protocol sections 4.3 and 4.4 end to end: Wipe, and RowData's rules (column order, the D-row
key order, idempotence, stale skips, forward-only positions, empty batches, several batches of
one table, atomicity with the fault's location, ColumnMismatch, UnknownTable, BlockedTable,
malformed rows)."""

import protolib as L
from protolib import NS, eq, expect_fault

CONTACT = {"name": "contact", "columns": [("contact_id", "int", False), ("name", "nvarchar(220)", True, "(N'')"),
                                          ("registered", "datetime", False, "(getutcdate())"),
                                          ("amount", "decimal(18,4)", False, "((0))")],
           "pk": ["contact_id"]}
T = {"name": "t", "columns": [("id", "int", False), ("v", "nvarchar(50)", True), ("w", "int", True)], "pk": ["id"]}
U = {"name": "u", "columns": [("k", "nvarchar(10)", False), ("n", "bigint", True)], "pk": ["k"]}
TC = ["id", "v", "w"]
UC = ["k", "n"]
IDENT_MAX = 128   # ^[A-Za-z_][A-Za-z0-9_]{0,127}$ (4.2)
STATE_ELEMENTS = ["Name", "Lsn", "Inserted", "Updated", "Deleted", "Skipped"]


def counts(s):
    return (s["Lsn"], s["Inserted"], s["Updated"], s["Deleted"], s["Skipped"])


def spec_example(p):
    p.setup([CONTACT])
    body = ('<RowDataRequest xmlns="%s"><Batches><Batch><Table>contact</Table>'
            '<Columns><Name>contact_id</Name><Name>name</Name><Name>registered</Name><Name>amount</Name></Columns>'
            '<Rows>'
            '<Row op="I" lsn="884300"><V>1</V><V>Acme &amp; Sons</V><V>2026-11-26T10:15:00.123</V><V>12.5000</V></Row>'
            '<Row op="U" lsn="884301"><V>2</V><N/><V>2026-11-26T10:16:00</V><V>0.0000</V></Row>'
            '<Row op="D" lsn="884305"><V>7</V></Row>'
            '</Rows><Lsn>884305</Lsn></Batch></Batches></RowDataRequest>' % NS)
    r = p.call("RowData", body)
    st = L.ok_states(r)
    eq(len(st), 1, "TableStates")
    eq(list(st[0]), STATE_ELEMENTS, "TableState children in order")
    eq(st[0]["Name"], "contact", "Name")
    eq(counts(st[0]), ("884305", "1", "1", "1", "0"), "Lsn, Inserted, Updated, Deleted, Skipped")
    eq(p.query('SELECT contact_id, name, registered, CAST(amount AS TEXT) FROM contact ORDER BY 1'),
       [(1, "Acme & Sons", "2026-11-26 10:15:00.123", "12.5000"), (2, None, "2026-11-26 10:16:00", "0.0000")],
       "mirror rows")
    eq(p.meta()["contact"]["lsn"], 884305, "metadata lsn")


def column_order_and_delete_keys(p):
    link = {"name": "k2", "columns": [("a", "int", False), ("b", "int", False)], "pk": ["a", "b"]}
    link3 = {"name": "k3", "columns": [("a", "int", False), ("b", "int", False), ("note", "varchar(10)", True)],
             "pk": ["a", "b"]}
    p.setup([link, link3])
    st = p.rows_ok([{"table": "k2", "columns": ["b", "a"],
                     "rows": [("I", None, ["2", "1"]), ("I", None, ["3", "1"]), ("I", None, ["1", "2"])]}])
    eq(counts(st[0])[1], "3", "Inserted")
    eq(p.table_rows("k2", "a, b"), [(1, 2), (1, 3), (2, 1)], "inserted with Columns b,a")
    # D rows: key order (a, b), whatever the Columns order.
    st = p.rows_ok([{"table": "k2", "columns": ["b", "a"], "rows": [("D", None, ["1", "2"])]}])
    eq(counts(st[0])[3], "1", "Deleted")
    eq(p.table_rows("k2", "a, b"), [(1, 3), (2, 1)], "after D of a=1, b=2")
    # Columns in another order than the table, mixed case.
    p.rows_ok([{"table": "K3", "columns": ["Note", "B", "a"], "rows": [("I", None, ["n1", "2", "1"]),
                                                                     ("U", None, [None, "5", "4"])]}])
    eq(p.table_rows("k3", "a"), [(1, 2, "n1"), (4, 5, None)], "k3 rows")
    p.rows_ok([{"table": "k3", "columns": ["note", "b", "a"], "rows": [("D", None, ["4", "5"])]}])
    eq(p.table_rows("k3", "a"), [(1, 2, "n1")], "k3 after delete")


def idempotent(p):
    p.setup([T])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "a", "1"]), ("I", None, ["2", "b", "2"])]}])
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [
        ("I", None, ["1", "a2", None]),      # I of an existing key updates
        ("U", None, ["3", "c", "3"]),        # U of a missing key inserts
        ("D", None, ["9"]),                  # D of a missing key: counted as deleted
        ("D", None, ["2"])]}])
    eq(counts(st[0]), ("-1", "1", "1", "2", "0"), "counts")
    eq(p.table_rows("t"), [(1, "a2", None), (3, "c", 3)], "rows")
    # The same call again changes nothing.
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "a2", None]), ("U", None, ["3", "c", "3"]),
                                                      ("D", None, ["9"]), ("D", None, ["2"])]}])
    eq(p.table_rows("t"), [(1, "a2", None), (3, "c", 3)], "rows after a resend")


def stale_skip(p):
    p.setup([T])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", "90", ["1", "orig", None]), ("I", "95", ["5", "five", None])],
                "lsn": 100}])
    st = p.rows_ok([
        {"table": "t", "columns": TC, "rows": [
            ("U", "100", ["1", "stale100", None]),    # == stored: skipped
            ("U", "50", ["1", "stale50", None]),      # < stored: skipped
            ("D", "99", ["5"]),                       # stale delete: skipped
            ("I", "101", ["2", "new", None]),         # applied
            ("U", None, ["3", "nolsn", None])],       # no lsn: never skipped
         "lsn": 200},
        {"table": "t", "columns": TC, "rows": [("I", "150", ["4", "after", None])]}])  # 150 > 100 (before the call)
    eq(counts(st[0]), ("200", "2", "1", "0", "3"), "counts with skipped rows")
    eq(p.table_rows("t"), [(1, "orig", None), (2, "new", None), (3, "nolsn", None), (4, "after", None),
                           (5, "five", None)], "rows")
    # A skipped row is still checked (rule 5).
    r = p.rows([{"table": "t", "columns": TC, "rows": [("I", "1", ["1", "x", "notanumber"])]}])
    expect_fault(r, "InvalidValue", table="t", column="w", row=1)
    # Rows without lsn are applied even below the position.
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [("U", None, ["1", "full", None])]}])
    eq(counts(st[0]), ("200", "0", "1", "0", "0"), "a row without lsn")
    eq(p.query("SELECT v FROM t WHERE id=1"), [("full",)], "row without lsn applied")


def forward_only(p):
    p.setup([T, U])
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [], "lsn": 100}])
    eq(counts(st[0]), ("100", "0", "0", "0", "0"), "empty batch with only an Lsn")
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "a", None])], "lsn": 50}])
    eq(st[0]["Lsn"], "100", "a smaller batch Lsn does not move the position back")
    eq(p.meta()["t"]["lsn"], 100, "metadata lsn")
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [], "lsn": 300},
                    {"table": "u", "columns": UC, "rows": [], "lsn": 7},
                    {"table": "t", "columns": TC, "rows": [], "lsn": 200}])
    eq([(s["Name"], s["Lsn"]) for s in st], [("t", "300"), ("u", "7")], "largest batch Lsn per table")
    eq((p.meta()["t"]["lsn"], p.meta()["u"]["lsn"]), (300, 7), "metadata lsns")
    # Without any batch Lsn, the position stays.
    st = p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", "999", ["2", "b", None])]}])
    eq(st[0]["Lsn"], "300", "row lsn alone does not move the position")
    big = "9223372036854775807"
    st = p.rows_ok([{"table": "u", "columns": UC, "rows": [("I", big, ["x", big])], "lsn": big}])
    eq(st[0]["Lsn"], big, "the largest Lsn")
    # <Rows/> and whitespace around numbers.
    body = ('<RowDataRequest xmlns="%s"><Batches><Batch><Table>t</Table><Columns><Name>id</Name><Name>v</Name>'
            '<Name>w</Name></Columns><Rows/><Lsn> 400 </Lsn></Batch></Batches></RowDataRequest>' % NS)
    eq(L.ok_states(p.call("RowData", body))[0]["Lsn"], "400", "<Rows/> with <Lsn> 400 </Lsn>")


def several_batches(p):
    p.setup([T, U])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["2", "old2", None])]}])
    st = p.rows_ok([
        {"table": "t", "columns": TC, "rows": [("I", None, ["1", "a", None])], "lsn": 10},
        {"table": "u", "columns": UC, "rows": [("I", None, ["k1", "1"])], "lsn": 5},
        {"table": "t", "columns": ["w", "v", "id"], "rows": [("U", None, [None, "b", "1"]), ("D", None, ["2"])],
         "lsn": 11},
        {"table": "t", "columns": TC, "rows": [("I", None, ["2", "c", "9"]), ("U", None, ["1", "last", "1"])]}])
    eq([s["Name"] for s in st], ["t", "u"], "one TableState per table, order of first appearance")
    eq(counts(st[0]), ("11", "2", "2", "1", "0"), "counts of t")
    eq(counts(st[1]), ("5", "1", "0", "0", "0"), "counts of u")
    eq(p.table_rows("t"), [(1, "last", 1), (2, "c", 9)], "last row for a key wins")


def atomicity(p):
    p.setup([T, U])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "keep", None])], "lsn": 10},
               {"table": "u", "columns": UC, "rows": [("I", None, ["k", "1"])], "lsn": 20}])
    before = (p.table_rows("t"), p.table_rows("u"), p.meta()["t"]["lsn"], p.meta()["u"]["lsn"])
    r = p.rows([
        {"table": "t", "columns": TC, "rows": [("I", "11", ["2", "x", None]), ("D", "12", ["1"])], "lsn": 12},
        {"table": "u", "columns": UC, "rows": [("I", None, ["k2", "2"]), ("U", None, ["k", "5"])], "lsn": 30},
        {"table": "t", "columns": ["v", "w", "id"],
         "rows": [("I", None, ["y", "3", "3"]), ("I", None, ["z", "2147483648", "4"])], "lsn": 40}])
    f = expect_fault(r, "InvalidValue", table="t", column="w", row=4)
    eq(f["children"], ["Code", "Table", "Column", "Row", "Retryable"], "MirrorFault children")
    after = (p.table_rows("t"), p.table_rows("u"), p.meta()["t"]["lsn"], p.meta()["u"]["lsn"])
    eq(after, before, "nothing applied after a failing 3rd batch")
    # The row number counts only that table's rows.
    r = p.rows([{"table": "u", "columns": UC, "rows": [("I", None, ["a", "1"])] * 3},
                {"table": "t", "columns": TC, "rows": [("I", None, ["5", "a", None]), ("I", None, ["6", None, "x"])]}])
    expect_fault(r, "InvalidValue", table="t", column="w", row=2)
    eq(p.table_rows("u"), before[1], "u unchanged")


def column_mismatch(p):
    p.setup([T])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "keep", None])], "lsn": 10}])
    for cols, rows in ((["id", "v"], [("I", None, ["2", "a"])]),
                       (["id", "v", "w", "x"], [("I", None, ["2", "a", "1", "1"])]),
                       (["id", "v", "v"], [("I", None, ["2", "a", "b"])]),
                       (["id", "v", "w", "W"], [("I", None, ["2", "a", "1", "1"])]),
                       (["id", "v"], [("D", None, ["1"])])):
        r = p.rows([{"table": "t", "columns": TC, "rows": [("I", None, ["7", "ok", None])], "lsn": 50},
                    {"table": "t", "columns": cols, "rows": rows}])
        expect_fault(r, "ColumnMismatch", table="t")
        eq(p.table_rows("t"), [(1, "keep", None)], "rows after ColumnMismatch %r" % cols)
        eq(p.meta()["t"]["lsn"], 10, "lsn after ColumnMismatch")
    # A name one past the identifier limit (4.2) is named whole, as sent.
    long_name = "c" * (IDENT_MAX + 1)
    f = expect_fault(p.rows([{"table": "t", "columns": TC + [long_name], "rows": []}]), "ColumnMismatch", table="t")
    eq(f["column"], long_name, "Column of a ColumnMismatch")
    # An empty name is named too (protocol 6: Table and Column where they apply).
    f = expect_fault(p.rows([{"table": "t", "columns": TC + [""], "rows": []}]), "ColumnMismatch", table="t")
    eq(f["children"], ["Code", "Table", "Column", "Retryable"], "children of an empty column's ColumnMismatch")


def unknown_and_blocked(p):
    p.setup([T])
    ok = {"table": "t", "columns": TC, "rows": [("I", None, ["1", "x", None])], "lsn": 5}
    expect_fault(p.rows([ok, {"table": "nosuch", "columns": ["id"], "rows": []}]), "UnknownTable", table="nosuch")
    expect_fault(p.rows([ok, {"table": "credentials", "columns": ["id"], "rows": [("I", None, ["1"])]}]),
                 "BlockedTable", table="credentials")
    expect_fault(p.rows([ok, {"table": "Email_Account", "columns": ["id"], "rows": []}]), "BlockedTable")
    eq(p.table_rows("t"), [], "nothing applied")
    eq(p.meta()["t"]["lsn"], -1, "lsn unchanged")
    # A name one past the identifier limit (4.2) is named whole, as sent (RowData and Wipe).
    long_name = "n" * (IDENT_MAX + 1)
    f = expect_fault(p.rows([ok, {"table": long_name, "columns": ["id"], "rows": []}]), "UnknownTable")
    eq(f["table"], long_name, "Table of a RowData UnknownTable")
    f = expect_fault(p.wipe(["t", long_name]), "UnknownTable")
    eq(f["table"], long_name, "Table of a Wipe UnknownTable")
    f = expect_fault(p.wipe([""]), "UnknownTable", table="")
    eq(f["children"], ["Code", "Table", "Retryable"], "children of a Wipe of <Name/>")


def malformed(p):
    p.setup([T])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "keep", None])], "lsn": 10}])
    good = '<Row op="I"><V>2</V><V>a</V><N/></Row>'
    bad_rows = [
        '<Row op="I"><V>2</V><V>a</V></Row>',                      # too few values
        '<Row op="I"><V>2</V><V>a</V><N/><N/></Row>',              # too many
        '<Row op="D"><V>1</V><V>a</V></Row>',                      # D with more than the key
        '<Row op="D"></Row>',
        '<Row op="X"><V>2</V><V>a</V><N/></Row>',
        '<Row op="i"><V>2</V><V>a</V><N/></Row>',
        '<Row><V>2</V><V>a</V><N/></Row>',
        '<Row op="I" lsn="abc"><V>2</V><V>a</V><N/></Row>',
        '<Row op="I" lsn="-1"><V>2</V><V>a</V><N/></Row>',
        '<Row op="I" lsn="9223372036854775808"><V>2</V><V>a</V><N/></Row>',
        '<Row op="I" lsn=""><V>2</V><V>a</V><N/></Row>',
        '<Row op="I" lsn="1.5"><V>2</V><V>a</V><N/></Row>',
    ]
    head = ('<RowDataRequest xmlns="%s"><Batches><Batch><Table>t</Table><Columns><Name>id</Name><Name>v</Name>'
            '<Name>w</Name></Columns><Rows>' % NS)
    tail = '</Rows><Lsn>99</Lsn></Batch></Batches></RowDataRequest>'
    for row in bad_rows:
        r = p.call("RowData", head + good + row + tail)
        try:
            expect_fault(r, "MalformedRequest")
        except AssertionError as e:
            raise AssertionError("%s: %s" % (row, e))
    for body in ('<RowDataRequest xmlns="%s"><Batches/></RowDataRequest>' % NS,
                 '<RowDataRequest xmlns="%s"/>' % NS,
                 head.replace("<Table>t</Table>", "") + good + tail,
                 head.replace("<Columns><Name>id</Name><Name>v</Name><Name>w</Name></Columns>", "") + good + tail,
                 head.replace("<Rows>", "") + tail.replace("</Rows>", ""),
                 head + good + '</Rows><Lsn>x</Lsn></Batch></Batches></RowDataRequest>'):
        expect_fault(p.call("RowData", body), "MalformedRequest")
    eq(p.table_rows("t"), [(1, "keep", None)], "nothing applied")
    eq(p.meta()["t"]["lsn"], 10, "lsn unchanged")


def wipe(p):
    p.setup([T, U])
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "a", None])], "lsn": 100},
               {"table": "u", "columns": UC, "rows": [("I", None, ["k", "1"])], "lsn": 200}])
    # Refused wipes change nothing.
    expect_fault(p.wipe([]), "MalformedRequest")
    expect_fault(p.wipe(["t", "credentials"]), "BlockedTable")
    expect_fault(p.wipe(["t", "nosuch"]), "UnknownTable")
    eq((len(p.table_rows("t")), p.meta()["t"]["lsn"]), (1, 100), "t after refused wipes")
    r = p.wipe(["T"])
    st = L.ok_states(r)
    eq(L.H.parse_body(r.body).tag, "{%s}WipeResponse" % NS, "answer element")
    eq([(s["Name"].lower(), s["Lsn"]) for s in st], [("t", "-1")], "Wipe answer")
    eq(list(st[0]), ["Name", "Lsn"], "Wipe TableState children")
    eq(p.table_rows("t"), [], "t emptied")
    eq(p.meta()["t"]["lsn"], -1, "t lsn")
    eq((len(p.table_rows("u")), p.meta()["u"]["lsn"]), (1, 200), "u untouched")
    eq(sorted(s["Name"] for s in L.ok_states(p.wipe(["t", "u"]))), ["t", "u"], "Wipe of two tables")
    eq((p.table_rows("u"), p.meta()["u"]["lsn"]), ([], -1), "u wiped")
    # Schema kept: rows can be loaded again, and TableSchema says Unchanged with Lsn -1.
    p.rows_ok([{"table": "t", "columns": TC, "rows": [("I", None, ["1", "a", None])], "lsn": 5}])
    st = p.schema_ok([T, U])
    eq([(s["Name"], s["Change"], s["Lsn"]) for s in st], [("t", "Unchanged", "5"), ("u", "Unchanged", "-1")],
       "TableSchema after wipes")


CHECKS = [spec_example, column_order_and_delete_keys, idempotent, stale_skip, forward_only, several_batches,
          atomicity, column_mismatch, unknown_and_blocked, malformed, wipe]

if __name__ == "__main__":
    L.run(CHECKS)
