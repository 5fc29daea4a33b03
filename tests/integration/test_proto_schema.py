#!/usr/bin/python3
"""Protocol section 4.2 end to end: TableSchema's Created / Unchanged / Altered / Recreated /
Dropped / Rejected, the metadata table (canonical text, the spec's hash vectors, Lsn), and the
malformed requests."""

import protolib as L
from protolib import H, eq, check, expect_fault, ok_states

LINK = {"name": "link", "columns": [("a", "int", False), ("b", "int", False), ("note", "varchar(10)", True)],
        "pk": ["a", "b"]}
LINK_TEXT = "a|int|notnull|\nb|int|notnull|\nnote|varchar(10)|null|\npk|a,b"
LINK_HASH = "82bf0b724101bda6281ff50530eb43b758191951e3e37cbfb9525ca4dc2e4f99"
CONTACT = {"name": "contact", "columns": [("contact_id", "int", False), ("name", "nvarchar(220)", True, "(N'')"),
                                          ("registered", "datetime", False, "(getutcdate())"),
                                          ("amount", "decimal(18,4)", False, "((0))")],
           "pk": ["contact_id"]}
CONTACT_HASH = "41235f1f392599c0f11b842dfa7c699114117e7c98f63364942176d387d38083"


def tbl(name, cols, pk=("id",)):
    return {"name": name, "columns": cols, "pk": list(pk)}


BASE_COLS = [("id", "int", False), ("v", "nvarchar(50)", True), ("w", "int", True)]


def changes(states):
    return [(s["Name"].lower(), s["Change"]) for s in states]


def load(p, name, rows, lsn):
    """Inserts rows (id, v, w) into a table with BASE_COLS and moves its Lsn."""
    p.rows_ok([{"table": name, "columns": ["id", "v", "w"],
                "rows": [("I", None, [str(i), v, w]) for i, v, w in rows], "lsn": lsn}])


def created_unchanged_hashes(p):
    p.auth()
    st = p.schema_ok([LINK, CONTACT])
    eq(changes(st), [("link", "Created"), ("contact", "Created")], "first TableSchema")
    eq([s["Lsn"] for s in st], ["-1", "-1"], "Lsn of created tables")
    check(all("Error" not in s for s in st), "Error element without Rejected: %r" % st)
    eq([list(s) for s in st], [["Name", "Lsn", "Change"]] * 2, "TableState children")
    m = p.meta()
    eq(m["link"]["hash"], LINK_HASH, "schemahash of link (spec vector)")
    eq(m["link"]["schema"], LINK_TEXT, "canonical text of link")
    eq(m["contact"]["hash"], CONTACT_HASH, "schemahash of contact (spec vector)")
    eq((m["link"]["lsn"], m["contact"]["lsn"]), (-1, -1), "metadata lsn")
    check(m["link"]["updated"], "metadata updated is empty")
    eq(p.tables(), ["contact", "link"], "mirror tables")
    # Positions: rows and a batch Lsn, then Unchanged returns the stored Lsn.
    p.rows_ok([{"table": "link", "columns": ["a", "b", "note"], "rows": [("I", None, ["1", "2", "x"])], "lsn": 884211}])
    st = p.schema_ok([LINK, CONTACT])
    eq(changes(st), [("link", "Unchanged"), ("contact", "Unchanged")], "second TableSchema")
    eq([s["Lsn"] for s in st], ["884211", "-1"], "Lsn of unchanged tables")
    # Names and types compare case-insensitively; Nullable any case or 1/0; defaults trimmed.
    body = H.table_schema_body([{"name": "LINK", "columns": [("A", "INT", False), ("b", "Int", False),
                                                             ("Note", "VarChar( 10 )", True)], "pk": ["A", "B"]},
                                CONTACT])
    body = body.replace("<Nullable>false</Nullable>", "<Nullable>FALSE</Nullable>", 1)
    body = body.replace("<Nullable>true</Nullable>", "<Nullable>1</Nullable>", 1)
    body = body.replace("<Default>((0))</Default>", "<Default>  ((0)) </Default>")
    st = ok_states(p.call("TableSchema", body))
    eq(changes(st), [("link", "Unchanged"), ("contact", "Unchanged")], "case-insensitive TableSchema")
    eq(st[0]["Lsn"], "884211", "Lsn after case-insensitive TableSchema")
    eq(p.table_rows("link"), [(1, 2, "x")], "rows kept")


def altered_add_nullable(p):
    p.setup([tbl("t", BASE_COLS)])
    load(p, "t", [(1, "a", "10"), (2, "b", None)], 500)
    st = p.schema_ok([tbl("t", BASE_COLS + [("extra", "nvarchar(20)", True)])])
    eq(changes(st), [("t", "Altered")], "add nullable")
    eq(st[0]["Lsn"], "500", "Lsn kept")
    eq(p.query('SELECT id, v, w, extra FROM "t" ORDER BY id'), [(1, "a", 10, None), (2, "b", None, None)], "rows")
    eq(p.meta()["t"]["lsn"], 500, "metadata lsn")
    check(p.meta()["t"]["schema"].endswith("extra|nvarchar(20)|null|\npk|id"), "canonical text %r" % p.meta()["t"]["schema"])
    # The new column is usable.
    p.rows_ok([{"table": "t", "columns": ["extra", "w", "v", "id"], "rows": [("U", None, ["e", "3", "c", "3"])]}])
    eq(p.query('SELECT extra FROM "t" WHERE id=3'), [("e",)], "new column written")
    # A nullable column added with a literal default: existing rows get NULL (as in SQL Server,
    # without WITH VALUES), not the default.
    st = p.schema_ok([tbl("t", BASE_COLS + [("extra", "nvarchar(20)", True), ("n", "int", True, "((5))")])])
    eq(changes(st), [("t", "Altered")], "add nullable with a literal default")
    eq(p.query('SELECT id, n FROM "t" ORDER BY id'), [(1, None), (2, None), (3, None)], "existing rows get NULL")


def altered_add_not_null_default(p):
    p.setup([tbl("t", BASE_COLS)])
    load(p, "t", [(1, "a", "10"), (2, "b", None)], 7)
    cols = BASE_COLS + [("flag", "int", False, "((7))"), ("label", "nvarchar(10)", False, "(N'it''s')")]
    st = p.schema_ok([tbl("t", cols)])
    eq(changes(st), [("t", "Altered")], "add NOT NULL with literal defaults")
    eq(st[0]["Lsn"], "7", "Lsn kept")
    eq(p.query('SELECT id, flag, label FROM "t" ORDER BY id'), [(1, 7, "it's"), (2, 7, "it's")], "defaults in rows")


def altered_drop_and_default(p):
    p.setup([tbl("t", BASE_COLS)])
    load(p, "t", [(1, "a", "10"), (2, "b", "20")], 42)
    st = p.schema_ok([tbl("t", [("id", "int", False), ("v", "nvarchar(50)", True)])])
    eq(changes(st), [("t", "Altered")], "drop a non-key column")
    eq(st[0]["Lsn"], "42", "Lsn kept after drop")
    eq(p.table_rows("t"), [(1, "a"), (2, "b")], "rows after drop")
    old_hash = p.meta()["t"]["hash"]
    st = p.schema_ok([tbl("t", [("id", "int", False), ("v", "nvarchar(50)", True, "(N'dflt')")])])
    eq(changes(st), [("t", "Altered")], "default changed")
    eq(st[0]["Lsn"], "42", "Lsn kept after default change")
    m = p.meta()["t"]
    check(m["hash"] != old_hash and "v|nvarchar(50)|null|(N'dflt')" in m["schema"], "metadata after default: %r" % m)
    eq(p.table_rows("t"), [(1, "a"), (2, "b")], "rows after default change")
    st = p.schema_ok([tbl("t", [("id", "int", False), ("v", "nvarchar(50)", True, "(N'dflt')")])])
    eq(changes(st), [("t", "Unchanged")], "same again")


def recreated(p):
    cases = [
        ("type change", [("id", "int", False), ("v", "nvarchar(60)", True), ("w", "int", True)], ["id"]),
        ("nullability", [("id", "int", False), ("v", "nvarchar(50)", False), ("w", "int", True)], ["id"]),
        ("key change", [("id", "int", False), ("v", "nvarchar(50)", True), ("w", "int", False)], ["id", "w"]),
        ("add and drop", [("id", "int", False), ("v", "nvarchar(50)", True), ("x", "int", True)], ["id"]),
        ("column order", [("id", "int", False), ("w", "int", True), ("v", "nvarchar(50)", True)], ["id"]),
        ("NOT NULL with a function default", BASE_COLS + [("r", "datetime", False, "(getutcdate())")], ["id"]),
    ]
    p.auth()
    for i, (what, cols, pk) in enumerate(cases):
        name = "r%d" % i
        p.schema_ok([tbl(name, BASE_COLS)])
        load(p, name, [(1, "a", "5")], 99)
        st = p.schema_ok([tbl(name, cols, pk)])
        eq(changes(st), [(name, "Recreated")], what)
        eq(st[0]["Lsn"], "-1", what + ": Lsn")
        eq(p.table_rows(name), [], what + ": rows")
        eq(p.meta()[name]["lsn"], -1, what + ": metadata lsn")
        # The new shape works.
        p.rows_ok([{"table": name, "columns": [c[0] for c in cols],
                    "rows": [("I", None, ["1" if c[1] == "int" else ("2026-01-01T00:00:00" if c[1] == "datetime" else "s")
                                          for c in cols])]}])
        eq(len(p.table_rows(name)), 1, what + ": insert after recreate")
        # Only the last request's tables remain: drop this one for the next case.
        p.schema_ok([tbl("keep", BASE_COLS)])


def dropped(p):
    p.setup([tbl("m", BASE_COLS), tbl("zeta", BASE_COLS), tbl("alpha", BASE_COLS), tbl("Beta", BASE_COLS)])
    load(p, "m", [(1, "a", None)], 3)
    st = p.schema_ok([tbl("m", BASE_COLS), tbl("new1", BASE_COLS)])
    eq(changes(st), [("m", "Unchanged"), ("new1", "Created"), ("alpha", "Dropped"), ("beta", "Dropped"),
                     ("zeta", "Dropped")], "dropped tables after the request tables, by name")
    eq([s["Lsn"] for s in st[2:]], ["-1"] * 3, "Lsn of dropped")
    eq(p.tables(), ["m", "new1"], "mirror tables after drops")
    eq(sorted(p.meta()), ["m", "new1"], "metadata rows after drops")
    eq(p.table_rows("m"), [(1, "a", None)], "rows of the kept table")
    expect_fault(p.wipe(["zeta"]), "UnknownTable")


REJECTS = [
    ("geo", [("id", "int", False), ("g", "geography", True)], ["id"]),
    ("credentials", [("id", "int", False)], ["id"]),
    ("sqlite_x", [("id", "int", False)], ["id"]),
    ("_somirror_x", [("id", "int", False)], ["id"]),
    ("nullkey", [("id", "int", True)], ["id"]),
    ("nokey", [("id", "int", False)], []),
    ("keynotcol", [("id", "int", False)], ["other"]),
    ("baddefault", [("id", "int", False), ("v", "int", True, "(foo())")], ["id"]),
    ("baddefault2", [("id", "int", False), ("v", "int", True, "1; DROP TABLE x")], ["id"]),
    ("dupcol", [("id", "int", False), ("V", "int", True), ("v", "int", True)], ["id"]),
    ("badcolname", [("id", "int", False), ("a-b", "int", True)], ["id"]),
    ("bad-name", [("id", "int", False)], ["id"]),
    ("bigdec", [("id", "int", False), ("d", "decimal(39,2)", True)], ["id"]),
    ("bigvarchar", [("id", "int", False), ("d", "varchar(8001)", True)], ["id"]),
    ("charmax", [("id", "int", False), ("d", "char(max)", True)], ["id"]),
    ("bigfloat", [("id", "int", False), ("d", "float(54)", True)], ["id"]),
    ("bigtime", [("id", "int", False), ("d", "time(8)", True)], ["id"]),
    ("bignvarchar", [("id", "int", False), ("d", "nvarchar(4001)", True)], ["id"]),
]


def rejected(p):
    p.auth()
    tables = [tbl("good", BASE_COLS)] + [tbl(n, c, k) for n, c, k in REJECTS] + \
        [tbl("%s_mirroring" % p.tenant, [("id", "int", False)])]
    st = p.schema_ok(tables)
    eq(len(st), len(tables), "one TableState per requested table")
    eq(changes(st)[0], ("good", "Created"), "the good table")
    for s, t in zip(st[1:], tables[1:]):
        eq((s["Name"].lower(), s["Change"], s["Lsn"]), (t["name"].lower(), "Rejected", "-1"), "state of %s" % t["name"])
        check(s.get("Error"), "no Error text for rejected %s: %r" % (t["name"], s))
        eq(list(s), ["Name", "Lsn", "Change", "Error"], "TableState children of a rejected table")
    eq(p.tables(), ["good"], "only the good table created")
    eq(sorted(p.meta()), ["good"], "metadata rows")
    expect_fault(p.wipe(["geo"]), "UnknownTable")
    expect_fault(p.rows([{"table": "geo", "columns": ["id", "g"], "rows": []}]), "UnknownTable")
    expect_fault(p.wipe(["credentials"]), "BlockedTable")
    expect_fault(p.wipe(["CREDENTIALS"]), "BlockedTable")
    expect_fault(p.rows([{"table": "credentials", "columns": ["id"], "rows": [("I", None, ["1"])]}]), "BlockedTable")
    # A mirrored table that is rejected now is dropped (and reported Rejected, not Dropped).
    load(p, "good", [(1, "a", None)], 10)
    st = p.schema_ok([tbl("good", [("id", "int", False), ("g", "geography", True)]), tbl("other", BASE_COLS)])
    eq(changes(st), [("good", "Rejected"), ("other", "Created")], "previously mirrored table rejected")
    check(st[0].get("Error"), "no Error for good")
    eq(p.tables(), ["other"], "rejected table dropped")
    eq(sorted(p.meta()), ["other"], "metadata row of the rejected table removed")
    expect_fault(p.rows([{"table": "good", "columns": ["id", "v", "w"], "rows": []}]), "UnknownTable")
    # A literal default that does not fit its column is left out; the table is created.
    st = p.schema_ok([tbl("other", BASE_COLS), tbl("fitless", [("id", "int", False), ("b", "tinyint", True, "((300))")])])
    eq(changes(st), [("other", "Unchanged"), ("fitless", "Created")], "default that does not fit")


def malformed(p):
    p.setup([tbl("t", BASE_COLS)])
    load(p, "t", [(1, "a", None)], 5)
    for body in ('<TableSchemaRequest xmlns="%s"><Tables/></TableSchemaRequest>' % H.NS,
                 '<TableSchemaRequest xmlns="%s"></TableSchemaRequest>' % H.NS,
                 H.table_schema_body([tbl("t", BASE_COLS), tbl("t", BASE_COLS)]),
                 H.table_schema_body([tbl("t", BASE_COLS), tbl("T", BASE_COLS)]),
                 H.table_schema_body([tbl("t", BASE_COLS)]).replace("<Type>int</Type>", "", 1)):
        expect_fault(p.call("TableSchema", body), "MalformedRequest")
        eq(p.tables(), ["t"], "tables after a malformed TableSchema")
        eq(p.meta()["t"]["lsn"], 5, "lsn after a malformed TableSchema")
        eq(p.table_rows("t"), [(1, "a", None)], "rows after a malformed TableSchema")


def create_sql(p, table="t"):
    """The mirror's CREATE TABLE statement of table."""
    return p.query("SELECT sql FROM sqlite_master WHERE name = ?", (table,))[0][0]


def key_default(p):
    # A single integer key becomes the rowid (INTEGER PRIMARY KEY) and keeps its default (section
    # 8: defaults are mirrored), when created and when altered.
    p.setup([tbl("t", [("id", "int", False, "((0))"), ("v", "nvarchar(50)", True, "(N'x')")])])
    check('"id" INTEGER NOT NULL PRIMARY KEY DEFAULT 0' in create_sql(p) and "DEFAULT 'x'" in create_sql(p),
          "defaults when created: %s" % create_sql(p))
    p.rows_ok([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["1", "a"])], "lsn": 5}])
    st = p.schema_ok([tbl("t", [("id", "int", False, "((7))"), ("v", "nvarchar(50)", True, "(N'x')")])])
    eq(changes(st), [("t", "Altered")], "the key's default changed")
    check('"id" INTEGER NOT NULL PRIMARY KEY DEFAULT 7' in create_sql(p), "after Altered: %s" % create_sql(p))
    eq(p.table_rows("t"), [(1, "a")], "rows after the key's default changed")


def default_line_breaks(p):
    # Whitespace between a default's tokens may be a line break (section 4.2), and a string may
    # hold one: the table is created with the default, and is Unchanged the next time (its
    # stored canonical text, which holds the line breaks, is read back whole).
    t = tbl("t", [("id", "int", False), ("v", "nvarchar(20)", True, "(\n N'a\nb'\n)")])
    eq(changes(p.schema_ok([t])), [("t", "Created")], "created")
    check("DEFAULT 'a\nb'" in create_sql(p), "the mirror's default: %s" % create_sql(p))
    eq(changes(p.schema_ok([t])), [("t", "Unchanged")], "the same again")
    t2 = tbl("t", [("id", "int", False), ("v", "nvarchar(20)", True, "(N'c')")])
    eq(changes(p.schema_ok([t2])), [("t", "Altered")], "default changed")


CHECKS = [created_unchanged_hashes, altered_add_nullable, altered_add_not_null_default, altered_drop_and_default,
          key_default, default_line_breaks, recreated, dropped, rejected, malformed]

if __name__ == "__main__":
    L.run(CHECKS)
