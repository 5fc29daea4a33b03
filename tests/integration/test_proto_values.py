#!/usr/bin/python3
"""Protocol sections 5 and 8 end to end: every accepted value reads back from the SQLite mirror
exactly as sent (in the storage form store/sqlite.c documents), and every value that does not
fit its column fails the call with InvalidValue naming table, column and row."""

import base64
import math

import protolib as L
from protolib import H, NS, eq, check, expect_fault

COLS = [
    ("id", "int", False), ("c_nn", "int", False),
    ("c_bigint", "bigint", True), ("c_int", "int", True), ("c_smallint", "smallint", True),
    ("c_tinyint", "tinyint", True), ("c_bit", "bit", True),
    ("c_dec", "decimal(38,10)", True), ("c_dec184", "decimal(18,4)", True), ("c_num", "numeric(5)", True),
    ("c_money", "money", True), ("c_smallmoney", "smallmoney", True),
    ("c_float", "float", True), ("c_real", "real", True), ("c_float24", "float(24)", True),
    ("c_date", "date", True), ("c_time", "time(7)", True), ("c_time0", "time(0)", True),
    ("c_dt", "datetime", True), ("c_dt2", "datetime2(7)", True), ("c_dt23", "datetime2(3)", True),
    ("c_sdt", "smalldatetime", True), ("c_dto", "datetimeoffset(7)", True),
    ("c_guid", "uniqueidentifier", True),
    ("c_nv", "nvarchar(100)", True), ("c_nvmax", "nvarchar(max)", True), ("c_nv3", "nvarchar(3)", True),
    ("c_vc", "varchar(50)", True), ("c_vc3", "varchar(3)", True), ("c_char", "char(5)", True),
    ("c_ntext", "ntext", True), ("c_xml", "xml", True),
    ("c_vb", "varbinary(100)", True), ("c_vbmax", "varbinary(max)", True), ("c_bin", "binary(4)", True),
    ("c_img", "image", True), ("c_ts", "timestamp", True),
]
NAMES = [c[0] for c in COLS]
TABLE = {"name": "vals", "columns": COLS, "pk": ["id"]}


class Raw:
    """A value element written as is."""

    def __init__(self, xml):
        self.xml = xml


def vxml(v):
    if isinstance(v, Raw):
        return v.xml
    if v is None:
        return "<N/>"
    if isinstance(v, (bytes, bytearray)):
        return "<B>%s</B>" % base64.b64encode(v).decode()
    return "<V>%s</V>" % H._esc(v)


def row_body(rows, table="vals"):
    out = ['<RowDataRequest xmlns="%s"><Batches><Batch><Table>%s</Table><Columns>%s</Columns><Rows>'
           % (NS, table, "".join("<Name>%s</Name>" % n for n in NAMES))]
    for values in rows:
        full = dict(values)
        out.append('<Row op="I">%s</Row>' % "".join(vxml(full.get(n, "0" if n == "c_nn" else None)) for n in NAMES))
    out.append("</Rows></Batch></Batches></RowDataRequest>")
    return "".join(out)


class Ids:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return str(self.n)


IDS = Ids()


def put(p, column, value):
    """Stores value in column of a new row; returns (typeof, value) read back."""
    rid = IDS.next()
    r = p.call("RowData", row_body([{"id": rid, column: value}]))
    if r.status != 200 or r.fault:
        raise AssertionError("%s = %r refused: %r" % (column, value if not isinstance(value, str) or len(value) < 80
                                                      else value[:40] + "...", r))
    got = p.query('SELECT typeof("%s"), "%s" FROM vals WHERE id = ?' % (column, column), (int(rid),))
    eq(len(got), 1, "row %s" % rid)
    return got[0]


def expect(p, column, value, typ, stored=None):
    got = put(p, column, value)
    want = (typ, value if stored is None else stored)
    if got != want:
        short = lambda x: x if not isinstance(x, (str, bytes)) or len(x) < 100 else x[:30] + b"..." if isinstance(x, bytes) else x[:30] + "..."  # noqa: E731
        raise AssertionError("%s: sent %r, read back %r, want %r" % (column, short(value), (got[0], short(got[1])),
                                                                      (want[0], short(want[1]))))


def reject(p, column, value, row_prefix=()):
    rid = IDS.next()
    rows = [{"id": str(1000000 + i)} for i in range(len(row_prefix))] + [{"id": rid, column: value}]
    before = p.query("SELECT count(*) FROM vals")[0][0]
    r = p.call("RowData", row_body(rows))
    try:
        expect_fault(r, "InvalidValue", table="vals", column=column, row=len(rows))
    except AssertionError as e:
        raise AssertionError("%s = %r: %s" % (column, value if not isinstance(value, Raw) else value.xml, e))
    eq(p.query("SELECT count(*) FROM vals")[0][0], before, "rows after a refused value")


def integers(p):
    p.setup([TABLE])
    for col, lo, hi in (("c_bigint", -9223372036854775808, 9223372036854775807), ("c_int", -2147483648, 2147483647),
                        ("c_smallint", -32768, 32767), ("c_tinyint", 0, 255)):
        for v in (lo, hi, 0):
            expect(p, col, str(v), "integer", v)
    expect(p, "c_int", "-0", "integer", 0)
    expect(p, "c_int", "007", "integer", 7)
    for v, want in (("1", 1), ("0", 0), ("true", 1), ("FALSE", 0), ("True", 1)):
        expect(p, "c_bit", v, "integer", want)


def integers_invalid(p):
    p.setup([TABLE])
    reject(p, "c_int", "2147483648")
    reject(p, "c_int", "-2147483649")
    reject(p, "c_bigint", "9223372036854775808")
    reject(p, "c_smallint", "32768")
    reject(p, "c_tinyint", "-1")
    reject(p, "c_tinyint", "256")
    reject(p, "c_int", "1.0")
    reject(p, "c_int", "+1")
    reject(p, "c_int", " 1")
    reject(p, "c_int", "1e3")
    reject(p, "c_int", Raw("<V/>"))
    reject(p, "c_int", Raw("<V></V>"))
    reject(p, "c_int", Raw("<B>MQ==</B>"))          # <B> for a non-string type
    reject(p, "c_bit", "2")
    reject(p, "c_bit", "yes")
    reject(p, "c_nn", None)                          # <N/> in NOT NULL
    reject(p, "c_int", "x", row_prefix=(1, 2))       # row number: 3rd row


def decimals(p):
    p.setup([TABLE])
    full = "1234567890123456789012345678.1234567890"
    expect(p, "c_dec", full, "text")
    expect(p, "c_dec", "-" + full, "text")
    expect(p, "c_dec", "0.0000000001", "text")
    expect(p, "c_dec184", "123456789012.3456", "text")
    expect(p, "c_dec184", "99999999999999.9999", "text")
    expect(p, "c_dec184", "12.5000", "text")
    expect(p, "c_money", "922337203685477.5807", "text")
    expect(p, "c_money", "-922337203685477.5808", "text")
    expect(p, "c_smallmoney", "214748.3647", "text")
    expect(p, "c_smallmoney", "-214748.3648", "text")
    # A plain integer keeps its value (integer or text form).
    for col, v in (("c_dec184", "42"), ("c_num", "99999"), ("c_dec", "-7")):
        put(p, col, v)
        eq(p.query('SELECT CAST("%s" AS TEXT) FROM vals WHERE id=?' % col, (IDS.n,))[0][0], v, "%s = %s" % (col, v))
    # More fraction digits only when they are zeros; leading zeros are not counted.
    put(p, "c_dec184", "1.123400")
    put(p, "c_dec184", "000000000000012345678901234.5")
    put(p, "c_num", "12345.000")


def decimals_invalid(p):
    p.setup([TABLE])
    reject(p, "c_dec184", "123456789012345.1")        # 15 digits before the point, p-s is 14
    reject(p, "c_dec184", "1.12345")                  # 5 decimals, s is 4
    reject(p, "c_dec", "12345678901234567890123456789.1")  # 29 before the point
    reject(p, "c_num", "123456")
    reject(p, "c_num", "1.5")
    reject(p, "c_dec184", "1.")
    reject(p, "c_dec184", ".5")
    reject(p, "c_dec184", "1e2")
    reject(p, "c_dec184", "abc")
    reject(p, "c_money", "1.12345")
    reject(p, "c_money", "922337203685477.5808")
    reject(p, "c_smallmoney", "214748.3648")


def floats(p):
    p.setup([TABLE])
    for v, want in (("0.1", 0.1), ("1e308", 1e308), ("-1.5E-10", -1.5e-10), ("1.7976931348623157e308", 1.7976931348623157e308),
                    ("5", 5.0), ("5.", 5.0), (".25", 0.25), ("4.9e-324", 4.9e-324)):
        expect(p, "c_float", v, "real", want)
    # SQLite keeps a whole REAL as an integer on disk: -0.0 reads back as 0.0 (README, "SQLite
    # storage forms"). Compared by sign, since 0.0 == -0.0.
    typ, got = put(p, "c_float", "-0.0")
    eq((typ, got, math.copysign(1.0, got)), ("real", 0.0, 1.0), "float -0.0 as SQLite stores it")
    for v, want in (("1.5", 1.5), ("-2.25", -2.25), ("3.4e38", None), ("1", 1.0)):
        typ, got = put(p, "c_real", v)
        eq(typ, "real", "typeof real %s" % v)
        if want is not None:
            eq(got, want, "real %s" % v)
        else:
            check(abs(got - 3.4e38) / 3.4e38 < 1e-6, "real 3.4e38 read back as %r" % got)
    typ, got = put(p, "c_float24", "0.5")
    eq((typ, got), ("real", 0.5), "float(24)")


def floats_invalid(p):
    p.setup([TABLE])
    for v in ("NaN", "nan", "inf", "Infinity", "-inf", "1e309", "0x1p3", "1,5", "", "e5", "1e"):
        reject(p, "c_float", v if v else Raw("<V/>"))
    reject(p, "c_real", "3.5e38")
    reject(p, "c_real", "-3.5e38")


def temporal(p):
    p.setup([TABLE])
    for col, v, want in (
            ("c_date", "0001-01-01", "0001-01-01"), ("c_date", "9999-12-31", "9999-12-31"),
            ("c_date", "2024-02-29", "2024-02-29"),
            ("c_time", "23:59:59.1234567", "23:59:59.1234567"), ("c_time", "00:00:00", "00:00:00"),
            ("c_time0", "12:34:56", "12:34:56"),
            ("c_dt", "2026-11-26T10:15:00.997", "2026-11-26 10:15:00.997"),
            ("c_dt", "2026-11-26T10:15:00.990", "2026-11-26 10:15:00.990"),
            ("c_dt", "1753-01-01T00:00:00", "1753-01-01 00:00:00"),
            ("c_dt", "9999-12-31T23:59:59.997", "9999-12-31 23:59:59.997"),
            ("c_dt2", "2026-11-26T10:15:00.1234567", "2026-11-26 10:15:00.1234567"),
            ("c_dt2", "0001-01-01T00:00:00", "0001-01-01 00:00:00"),
            ("c_dt2", "9999-12-31T23:59:59.9999999", "9999-12-31 23:59:59.9999999"),
            ("c_dt23", "2026-11-26T10:15:00.120", "2026-11-26 10:15:00.120"),
            ("c_sdt", "2079-06-06T23:59:00", "2079-06-06 23:59:00"),
            ("c_sdt", "1900-01-01T00:00:00", "1900-01-01 00:00:00"),
            ("c_dto", "2026-11-26T10:15:00.1234567-05:30", "2026-11-26 10:15:00.1234567-05:30"),
            ("c_dto", "2026-11-26T10:15:00+14:00", "2026-11-26 10:15:00+14:00"),
            ("c_dto", "2026-11-26T10:15:00.5-14:00", "2026-11-26 10:15:00.5-14:00")):
        expect(p, col, v, "text", want)
    # Zeros past the type's digits are allowed in any number (section 5), and every digit is kept:
    # longer than any value without them, so these test the store's room for date/time text.
    zeros = "0" * 60
    for col, v in (("c_dto", "2026-01-01T10:15:00.1234567%s+05:30" % zeros),
                   ("c_dto", "2026-01-01T10:15:00.1234567%s-05:30" % zeros),
                   ("c_dt2", "2026-01-01T10:15:00.1234567%s" % zeros), ("c_dt23", "2026-01-01T10:15:00.120%s" % zeros),
                   ("c_time", "12:00:00.1234567%s" % zeros), ("c_dt", "2026-01-01T10:15:00.997%s" % zeros)):
        expect(p, col, v, "text", v.replace("T", " "))


def temporal_invalid(p):
    p.setup([TABLE])
    for col, v in (("c_date", "2023-02-29"), ("c_date", "2023-13-01"), ("c_date", "0000-12-31"),
                   ("c_date", "2023-1-01"), ("c_date", "20230101"),
                   ("c_time", "12:00:00.12345678"), ("c_time", "24:00:00"), ("c_time", "12:60:00"),
                   ("c_time0", "12:00:00.1"),
                   ("c_dt", "2026-11-26T10:15:00.998"), ("c_dt", "2026-11-26T10:15:00.001"),
                   ("c_dt", "1752-12-31T23:59:59"), ("c_dt", "2026-11-26"),
                   ("c_dt2", "2026-11-26T10:15:00.12345678"), ("c_dt23", "2026-11-26T10:15:00.1234"),
                   ("c_sdt", "2026-01-01T10:00:30"), ("c_sdt", "2079-06-07T00:00:00"),
                   ("c_dto", "2026-11-26T10:15:00+14:01"), ("c_dto", "2026-11-26T10:15:00"),
                   ("c_dto", "2026-11-26T10:15:00-05:60")):
        reject(p, col, v)
    reject(p, "c_date", Raw("<V/>"))


def strings(p):
    p.setup([TABLE])
    expect(p, "c_guid", "6F9619FF-8B86-D011-B42D-00C04FC964FF", "text")
    expect(p, "c_guid", "6f9619ff-8b86-d011-b42d-00c04fc964ff", "text")
    special = "\U0001F600 <tag attr=\"x\"> & 'apos' \u00e9\u4e2d ]]> \t"
    expect(p, "c_nv", special, "text")
    big = ("a\u00e9\U0001F600 <&> " * 8000)[:102400]
    expect(p, "c_nvmax", big, "text")
    eq(len(put(p, "c_ntext", big)[1]), len(big), "ntext 100 KB")
    expect(p, "c_nv3", "a\U0001F600", "text")     # 3 UTF-16 units
    expect(p, "c_nv3", "abc", "text")
    expect(p, "c_vc3", "a\u00e9", "text")         # 3 bytes
    expect(p, "c_char", "ab", "text")             # not padded
    expect(p, "c_xml", "<a b='1'>x &amp; y</a>", "text")
    # Empty string and NULL.
    expect(p, "c_nv", Raw("<V/>"), "text", "")
    expect(p, "c_vc", Raw("<V></V>"), "text", "")
    expect(p, "c_nv", None, "null")
    # A string sent as <B>: UTF-8 with control characters.
    expect(p, "c_nv", "a\x01b\x1f\r\n\u00e9".encode("utf-8"), "text", "a\x01b\x1f\r\n\u00e9")
    expect(p, "c_vc", b"", "text", "")
    # <B> with whitespace inside.
    expect(p, "c_nv", Raw("<B>aGVs\n bG8=</B>"), "text", "hello")


def strings_invalid(p):
    p.setup([TABLE])
    reject(p, "c_nv3", "ab\U0001F600")         # 4 UTF-16 units
    reject(p, "c_nv3", "abcd")
    reject(p, "c_vc3", "\u00e9\u00e9")         # 4 bytes
    reject(p, "c_char", "abcdef")
    reject(p, "c_guid", "6F9619FF-8B86-D011-B42D-00C04FC964F")
    reject(p, "c_guid", "{6F9619FF-8B86-D011-B42D-00C04FC964FF}")
    reject(p, "c_guid", "6F9619FF8B86D011B42D00C04FC964FF")
    reject(p, "c_guid", "6F9619FF-8B86-D011-B42D-00C04FC964FG")
    reject(p, "c_guid", Raw("<V/>"))
    reject(p, "c_nv", Raw("<B>//79</B>"))       # bytes ff fe fd: not UTF-8
    reject(p, "c_nv", Raw("<B>!!!!</B>"))       # bad base64
    reject(p, "c_vc3", "abcd".encode())         # too long as <B> too


def binary(p):
    p.setup([TABLE])
    data = bytes(range(256))[:100]
    expect(p, "c_vb", data, "blob")
    expect(p, "c_vb", b"\x00", "blob")
    big = bytes(range(256)) * 400
    expect(p, "c_vbmax", big, "blob")
    expect(p, "c_img", b"\x89PNG\r\n\x1a\n", "blob")
    expect(p, "c_bin", b"\x01", "blob")         # not padded
    expect(p, "c_ts", b"\x00\x00\x00\x00\x00\x01\x02\x03", "blob")
    expect(p, "c_vb", Raw("<B>AAEC\nAw==</B>"), "blob", b"\x00\x01\x02\x03")
    expect(p, "c_vb", b"", "blob")


def binary_invalid(p):
    p.setup([TABLE])
    reject(p, "c_vb", "0x0102")                 # <V> for a binary type
    reject(p, "c_vb", Raw("<V/>"))
    reject(p, "c_vb", Raw("<B>A</B>"))
    reject(p, "c_vb", bytes(101))
    reject(p, "c_bin", b"12345")
    reject(p, "c_ts", b"1234567")
    reject(p, "c_ts", b"123456789")
    reject(p, "c_int", Raw("<B>AQID</B>"))


def max_past_10mb(p):
    # The (max) types have no length limit but the body's (protocol section 5): values longer
    # than the 10 MB a libxml2 tree's text node may hold arrive whole, as <V> and as <B>.
    p.setup([TABLE])
    text = ("x\u00e9\U0001F600 <&> " * 1100000)[:10500000]
    expect(p, "c_nvmax", text, "text")
    data = bytes(range(256)) * 32000        # 8,192,000 bytes: 10.9 MB of base64
    expect(p, "c_vbmax", data, "blob")


CHECKS = [integers, integers_invalid, decimals, decimals_invalid, floats, floats_invalid, temporal, temporal_invalid,
          strings, strings_invalid, binary, binary_invalid, max_past_10mb]

if __name__ == "__main__":
    L.run(CHECKS)
