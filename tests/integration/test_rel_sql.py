#!/usr/bin/env python3
"""SQL injection and quoting (protocol.md 4.2 "checked before any SQL is built from the request",
"never pastes the text"; section 8 "every accepted value reads back exactly as sent"), on the
SQLite store and, when tests/integration/pgserver.py can start a PostgreSQL here, on the
PostgreSQL store (that part is skipped otherwise):

- table and column names built to break quoting ("a\"b", "x]y", "Robert'); DROP TABLE
  contact;--", backquotes, semicolons, spaces, 129 characters, reserved prefixes) are Rejected by
  the identifier rules, and nothing else of the mirror is touched (the good tables of the same
  call are created, the target tables of the attacks still exist, the metadata is intact);
- defaults such as N'x'');DROP TABLE t;--' are stored as the literal value (a row inserted
  directly into the mirror without that column gets exactly that text);
- values with quotes, backslashes, SQL comments, dollar quotes, placeholders, NULs and
  control characters (via <B>) round-trip exactly, including as primary-key values (insert,
  update and delete by such keys)."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

BAD_NAMES = ['a"b', "x]y", "Robert'); DROP TABLE contact;--", "t;DROP TABLE t", "a b", "`x`",
             "[y]", "x--", "a'b", "sel\\ect", "n" * 129, "sqlite_master", "_somirror_x", "1abc", "",
             "t\u00e9", "a\u200bb", "$$x$$", "a/*c*/b"]

EVIL_DEFAULTS = [
    ("d1", "(N'x'');DROP TABLE t;--')", "x');DROP TABLE t;--"),
    ("d2", "('a''b')", "a'b"),
    ("d3", "(N'\\')", "\\"),
    ("d4", "('\"; DROP TABLE t; --')", "\"; DROP TABLE t; --"),
    ("d5", "('$$; DROP TABLE t; $$')", "$$; DROP TABLE t; $$"),
    ("d6", "((N'x'' || (SELECT 1) || '''))", "x' || (SELECT 1) || '"),
    ("d7", "('')", ""),
    ("d8", "(N'/* c */ -- d')", "/* c */ -- d"),
]

EVIL_VALUES = ["it's", 'say "hi"', "back\\slash", "\\'", "'); DROP TABLE t;--", "\"; DROP TABLE t; --",
               "$$ $tag$ $$", "%s %d ?1 ? :name @p", "x'' OR ''1''=''1", "\u00e9\u00e8 \u4e2d\u6587 \U0001f600",
               "line1\nline2\n\ttab", "   ", "NULL", "E'\\x00'", "a" * 5000]
# Carried by <B> (XML 1.0 cannot carry these characters).
B_VALUES = ["nul\x00in the middle", "\x00", "ctl \x01\x08\x0b\x1f", "\x00'); DROP TABLE t;--"]


def schema_attack(p, reader, text_nul):
    bad_tables = [{"name": n, "columns": [("id", "int", False)], "pk": ["id"]} for n in BAD_NAMES]
    bad_tables.append({"name": "%s_mirroring" % p.tenant, "columns": [("id", "int", False)], "pk": ["id"]})
    bad_columns = [{"name": "badcol%d" % i, "columns": [("id", "int", False), (n, "int", True)], "pk": ["id"]}
                   for i, n in enumerate(BAD_NAMES) if n not in ("sqlite_master", "_somirror_x")]
    good = [
        {"name": "contact", "columns": [("contact_id", "int", False), ("name", "nvarchar(50)", True)],
         "pk": ["contact_id"]},
        {"name": "t", "columns": [("id", "int", False)] +
         [(c, "nvarchar(100)", False, d) for c, d, _ in EVIL_DEFAULTS], "pk": ["id"]},
        {"name": "v", "columns": [("k", "nvarchar(4000)", False), ("txt", "nvarchar(max)", True),
                                  ("bin", "varbinary(max)", True)], "pk": ["k"]},
    ]
    p.auth()
    tables = good + bad_tables + bad_columns
    states = PL.ok_states(p.schema(tables), "TableSchema with hostile names")
    by_order = states[:len(tables)]
    problems = []
    for t, st in zip(tables, by_order):
        want = "Created" if t in good else "Rejected"
        if st.get("Change") != want:
            problems.append("%r: %s (%s), want %s" % (t["name"], st.get("Change"), st.get("Error"), want))
    R.check(not problems, "; ".join(problems))
    R.check(set(reader.tables()) == {"contact", "t", "v"}, "mirror tables %r" % (reader.tables(),))
    R.check(set(reader.meta_tables()) == {"contact", "t", "v"}, "metadata rows %r" % (reader.meta_tables(),))
    # A second call with only the bad ones: Rejected again, nothing dropped but what is unlisted.
    states = PL.ok_states(p.schema(good + bad_tables[:3]), "TableSchema again")
    R.check(all(s.get("Change") == "Unchanged" for s in states[:3]), "good tables: %r" % states[:3])
    R.check(set(reader.tables()) == {"contact", "t", "v"}, "mirror tables after: %r" % (reader.tables(),))


def defaults_attack(p, reader):
    got = reader.insert_key_only("t", "id", 99, [c for c, _, _ in EVIL_DEFAULTS])
    problems = ["%s: default %s gave %r, want %r" % (c, d, got.get(c), want)
                for c, d, want in EVIL_DEFAULTS if got.get(c) != want]
    R.check(not problems, "; ".join(problems))
    R.check("t" in reader.tables(), "table t is gone")


def values_roundtrip(p, reader, text_nul):
    rows = []
    expect = {}
    for i, v in enumerate(EVIL_VALUES):
        key = "k%d %s" % (i, v[:100])
        rows.append(("I", None, [key, v, None]))
        expect[key] = (v, None)
    for i, v in enumerate(B_VALUES):
        key = "b%d '%d\"" % (i, i)
        raw = v.encode("utf-8")
        rows.append(("I", None, [key, raw if text_nul else "x", raw]))
        expect[key] = (v if text_nul else "x", raw)
    # Keys that are themselves hostile, with an update and a delete by key.
    for i, v in enumerate(["it's", "'); DROP TABLE v;--", "\\", "a\"b"]):
        rows.append(("I", None, [v, "first", None]))
        rows.append(("U", None, [v, "second " + v, b"\x00\xff'"]))
        expect[v] = ("second " + v, b"\x00\xff'")
    rows.append(("I", None, ["gone ' key", "x", None]))
    rows.append(("D", None, ["gone ' key"]))
    PL.ok_states(p.rows([{"table": "v", "columns": ["k", "txt", "bin"], "rows": rows, "lsn": 42}]),
                 "RowData with hostile values")
    got = reader.values("v", "k", ["txt", "bin"])
    problems = []
    for key, want in expect.items():
        if got.get(key) != want:
            problems.append("%r: got %r, want %r" % (key, got.get(key), want))
    extra = set(got) - set(expect)
    if extra:
        problems.append("unexpected keys %r" % sorted(extra))
    R.check(not problems, "; ".join(problems[:8]))
    R.check({"contact", "t", "v"} <= set(reader.tables()), "a table is gone: %r" % (reader.tables(),))
    # Deleting by a hostile key deletes exactly that row.
    PL.ok_states(p.rows([{"table": "v", "columns": ["k", "txt", "bin"],
                          "rows": [("D", None, ["'); DROP TABLE v;--"])], "lsn": 43}]), "delete")
    got2 = reader.values("v", "k", ["txt", "bin"])
    R.check(set(got) - set(got2) == {"'); DROP TABLE v;--"}, "delete by a hostile key removed %r"
            % sorted(set(got) - set(got2)))


class SqliteReader:
    def __init__(self, p):
        self.p = p

    def tables(self):
        return self.p.tables()

    def meta_tables(self):
        return sorted(self.p.meta())

    def insert_key_only(self, table, key, value, columns):
        db = sqlite3.connect(self.p.db_path(), timeout=30)
        try:
            db.execute('INSERT INTO "%s" ("%s") VALUES (?)' % (table, key), (value,))
            db.commit()
            row = db.execute('SELECT %s FROM "%s" WHERE "%s" = ?' % (", ".join('"%s"' % c for c in columns),
                                                                     table, key), (value,)).fetchone()
            db.execute('DELETE FROM "%s" WHERE "%s" = ?' % (table, key), (value,))
            db.commit()
        finally:
            db.close()
        return dict(zip(columns, row))

    def values(self, table, key, columns):
        rows = self.p.query('SELECT "%s", %s FROM "%s"' % (key, ", ".join('"%s"' % c for c in columns), table))
        out = {}
        for r in rows:
            vals = tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in r[1:])
            out[r[0]] = vals
        return out


class PgReader:
    def __init__(self, p, pg):
        self.p, self.pg = p, pg
        self.db = "Mirror_%s" % p.tenant

    def q(self, sql):
        return [line.split("|") for line in self.pg.psql(sql, dbname=self.db).splitlines() if line]

    def tables(self):
        rows = self.q("SELECT lower(table_name) FROM information_schema.tables WHERE table_schema = "
                      "current_schema() AND table_type = 'BASE TABLE'")
        return sorted(r[0] for r in rows if r[0] != ("%s_mirroring" % self.p.tenant).lower())

    def meta_tables(self):
        name = self.q("SELECT table_name FROM information_schema.tables WHERE lower(table_name) = lower('%s_mirroring')"
                      % self.p.tenant)
        R.check(name, "no metadata table %s_mirroring" % self.p.tenant)
        return sorted(r[0].lower() for r in self.q('SELECT tablename FROM "%s"' % name[0][0]))

    def insert_key_only(self, table, key, value, columns):
        sel = ", ".join("coalesce(encode(convert_to(\"%s\", 'UTF8'), 'hex'), 'NULL')" % c for c in columns)
        self.q('INSERT INTO "%s" ("%s") VALUES (%d)' % (table, key, value))
        rows = self.q('SELECT %s FROM "%s" WHERE "%s" = %d' % (sel, table, key, value))
        self.q('DELETE FROM "%s" WHERE "%s" = %d' % (table, key, value))
        row = [None if h == "NULL" else bytes.fromhex(h).decode() for h in rows[-1]]
        return dict(zip(columns, row))

    def values(self, table, key, columns):
        def enc(c):
            return ("coalesce(encode(\"%s\", 'hex'), 'NULL')" % c if c == "bin" else
                    "coalesce(encode(convert_to(\"%s\", 'UTF8'), 'hex'), 'NULL')" % c)
        rows = self.q('SELECT %s, %s FROM "%s"' % (enc(key), ", ".join(enc(c) for c in columns), table))
        out = {}
        for r in rows:
            vals = []
            for c, h in zip(columns, r[1:]):
                if h == "NULL":
                    vals.append(None)
                else:
                    b = bytes.fromhex(h)
                    vals.append(b if c == "bin" else b.decode())
            out[bytes.fromhex(r[0]).decode()] = tuple(vals)
        return out


def suite(env, reader_factory, prefix, text_nul):
    p = R.P(env, prefix + "sql")
    reader = reader_factory(p)
    return [
        (prefix + "hostile table and column names are Rejected", lambda: schema_attack(p, reader, text_nul)),
        (prefix + "hostile defaults stored as literals", lambda: defaults_attack(p, reader)),
        (prefix + "hostile values round-trip exactly", lambda: values_roundtrip(p, reader, text_nul)),
    ]


def pg_available():
    try:
        import pgserver  # noqa: F401
    except ImportError:
        return None, "tests/integration/pgserver.py is missing"
    try:
        pgserver.require()
    except SystemExit:
        return None, "pgserver.require(): PostgreSQL cannot be started here"
    return pgserver, None


def main():
    checks = []
    with H.server(workers=2, **{"log.level": "info"}) as env:
        checks += suite(env, SqliteReader, "sqlite: ", True)
        pgserver, why = pg_available()
        if pgserver is None:
            def pg_skipped():
                raise R.Skip(why)
            checks.append(("postgresql: the same checks", pg_skipped))
            R.run_checks(checks)
            return
        try:
            pg = pgserver.PgServer().__enter__()
        except Exception as e:  # noqa: BLE001
            def pg_failed(e=e):
                raise R.Skip("PostgreSQL did not start: %s" % str(e)[-300:])
            checks.append(("postgresql: the same checks", pg_failed))
            R.run_checks(checks)
            return
        try:
            with H.server(workers=2, **{"log.level": "info", "store.driver": "postgresql", "store.sqlite": None,
                                        "store.postgresql.conninfo": pg.conninfo()}) as penv:
                # PostgreSQL text cannot hold NUL: NULs go through the binary column only there.
                checks += suite(penv, lambda p: PgReader(p, pg), "postgresql: ", False)
                R.run_checks(checks)
        finally:
            pg.__exit__(None, None, None)


if __name__ == "__main__":
    main()
