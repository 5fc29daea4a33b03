#!/usr/bin/env python3
"""tests/tds/tds_server.py: a TDS 7.4 protocol peer for somirror's tests. It is NOT a database:
it executes nothing. It speaks enough of TDS for FreeTDS db-lib (PRELOGIN without encryption,
LOGIN7, SQL batches, RPC requests, attention, the BULK LOAD stream of bcp), records everything
a client sends (Server.events), and answers from a script: a list of rules (regex on the SQL
text -> an ERROR token with number and message, or a dropped connection, or rows, each after
an optional delay in seconds), in front of
a few built-in answers that let the store driver of store/mssql.c run its conversation:

  - sp_executesql "... DB_ID(@db) ..."        -> 1 once a CREATE DATABASE of that name was seen
  - sp_executesql "... DATABASEPROPERTYEX ..." -> 'ONLINE'
  - sp_executesql "... sp_getapplock ..."      -> 0 (granted)
  - SELECT [tablename] ... (the metadata)      -> the rows kept from the metadata RPCs
  - UPDATE ... [schemahash] ... / DELETE ... WHERE [tablename] = @t (RPC) -> kept/removed
  - select * from <table> (bcp_init)           -> the columns of its last CREATE TABLE seen
  - BEGIN/COMMIT/ROLLBACK TRANSACTION          -> the kept metadata is snapshot/kept/restored
    (a dropped connection restores it too), so "what the server confirmed" can be checked.
Everything else is answered with DONE. Used by tests/integration/test_mssql_tds.py; it can
also run alone (python3 tds_server.py PORT) for poking at with tsql/TDSDUMP.
"""
import re
import socket
import struct
import sys
import threading
import time

PKT_SQL, PKT_RPC, PKT_REPLY, PKT_ATTN, PKT_BULK, PKT_LOGIN7, PKT_PRELOGIN = 1, 3, 4, 6, 7, 16, 18
PACKET_SIZE = 4096
COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])  # Latin1_General_CI_AS
PROC_IDS = {10: "sp_executesql", 13: "sp_prepexec"}


class Dropped(Exception):
    pass


def bvarchar(s):
    data = s.encode("utf-16-le")
    return bytes([len(s)]) + data


def usvarchar(s):
    data = s.encode("utf-16-le")
    return struct.pack("<H", len(s)) + data


def done(status=0, curcmd=0, count=0, token=0xFD):
    return struct.pack("<BHHQ", token, status, curcmd, count)


def error_token(number, message, severity=16, state=1):
    body = (struct.pack("<iBB", number, state, severity) + usvarchar(message) +
            bvarchar("tds_server") + bvarchar("") + struct.pack("<i", 1))
    return struct.pack("<BH", 0xAA, len(body)) + body


def envchange(kind, new, old):
    body = bytes([kind]) + new + old
    return struct.pack("<BH", 0xE3, len(body)) + body


# ---- types (as COLMETADATA describes them) ----

def parse_type(text):
    """'nvarchar(50)' -> (typename, size, precision, scale)"""
    m = re.match(r"\s*(\w+)\s*(?:\(\s*(\w+)\s*(?:,\s*(\d+))?\))?", text)
    name = m.group(1).lower()
    arg = m.group(2)
    size = -1 if arg and arg.lower() == "max" else int(arg) if arg else None
    return name, size, (int(m.group(3)) if m.group(3) else None)


def type_info(text):
    """TYPE_INFO bytes and an encoder for a column type written in SQL."""
    name, size, scale = parse_type(text)
    if name in ("int", "bigint", "smallint", "tinyint"):
        n = {"int": 4, "bigint": 8, "smallint": 2, "tinyint": 1}[name]
        fmt = {4: "<i", 8: "<q", 2: "<h", 1: "<B"}[n]
        return bytes([0x26, n]), lambda v: b"\x00" if v is None else bytes([n]) + struct.pack(fmt, int(v))
    if name == "bit":
        return bytes([0x68, 1]), lambda v: b"\x00" if v is None else b"\x01" + bytes([1 if v else 0])
    if name == "float":
        return bytes([0x6D, 8]), lambda v: b"\x00" if v is None else b"\x08" + struct.pack("<d", v)
    if name in ("varbinary", "binary"):
        code = 0xA5 if name == "varbinary" else 0xAD
        if size == -1:
            return bytes([code]) + b"\xff\xff", plp
        return bytes([code]) + struct.pack("<H", size or 1), short_bytes
    if name in ("varchar", "char"):
        code = 0xA7 if name == "varchar" else 0xAF
        enc = lambda v: short_bytes(None if v is None else v.encode("latin-1"))
        if size == -1:
            return bytes([code]) + b"\xff\xff" + COLLATION, lambda v: plp(None if v is None else v.encode("latin-1"))
        return bytes([code]) + struct.pack("<H", size or 1) + COLLATION, enc
    # nvarchar and everything else: text
    if size is None and name not in ("nvarchar", "nchar"):
        size = 64
    if size == -1:
        return b"\xe7\xff\xff" + COLLATION, lambda v: plp(None if v is None else v.encode("utf-16-le"))
    return (b"\xe7" + struct.pack("<H", 2 * (size or 1)) + COLLATION,
            lambda v: short_bytes(None if v is None else str(v).encode("utf-16-le")))


def short_bytes(v):
    return b"\xff\xff" if v is None else struct.pack("<H", len(v)) + v


def plp(v):
    if v is None:
        return b"\xff" * 8
    return struct.pack("<Q", len(v)) + (struct.pack("<I", len(v)) + v if v else b"") + b"\x00" * 4


def colmetadata(columns):
    """columns: [(name, sqltype, nullable)] -> (bytes, encoders)"""
    out = struct.pack("<BH", 0x81, len(columns))
    encoders = []
    for name, sqltype, nullable in columns:
        info, enc = type_info(sqltype)
        out += struct.pack("<IH", 0, 0x0009 if nullable else 0x0008) + info + bvarchar(name)
        encoders.append(enc)
    return out, encoders


def result_set(columns, rows, in_proc=False):
    """A result set; inside an RPC it ends with DONEINPROC (more to come: the return status)."""
    meta, encoders = colmetadata(columns)
    out = meta
    for row in rows:
        out += b"\xd1" + b"".join(enc(v) for enc, v in zip(encoders, row))
    if in_proc:
        return out + done(0x11, 0xC1, len(rows), token=0xFF)
    return out + done(0x10, 0xC1, len(rows))


def parse_create_table(sql):
    """The columns of the CREATE TABLEs in a batch: {table: [(name, type, nullable)]}."""
    tables = {}
    for m in re.finditer(r"CREATE TABLE (\S+) \((.*?)\);", sql, re.S):
        cols = []
        for part in re.split(r",\s*(?=\[)", m.group(2)):
            cm = re.match(r"\[((?:[^\]]|\]\])+)\]\s+(\w+(?:\([^)]*\))?)(.*)", part.strip())
            if cm and not cm.group(1).startswith("PRIMARY"):
                cols.append((cm.group(1).replace("]]", "]"), cm.group(2),
                             "NOT NULL" not in cm.group(3)))
        tables[m.group(1).lower()] = cols
    return tables


# ---- reading what a client sends ----

class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short TDS message")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def bvarchar(self):
        return self.take(2 * self.u8()).decode("utf-16-le")

    def more(self):
        return self.pos < len(self.data)


def read_type_info(r):
    t = r.u8()
    info = {"type": t}
    if t in (0x30, 0x32, 0x34, 0x38, 0x7F, 0x3B, 0x3E, 0x3D, 0x3A, 0x3C, 0x7A, 0x1F):
        info["fixed"] = {0x30: 1, 0x32: 1, 0x34: 2, 0x38: 4, 0x7F: 8, 0x3B: 4, 0x3E: 8, 0x3D: 8,
                         0x3A: 4, 0x3C: 8, 0x7A: 4, 0x1F: 0}[t]
    elif t in (0x26, 0x68, 0x6D, 0x6E, 0x6F, 0x24):
        info["len"] = r.u8()
    elif t in (0x6A, 0x6C):
        info["len"], info["precision"], info["scale"] = r.u8(), r.u8(), r.u8()
    elif t == 0x28:
        pass
    elif t in (0x29, 0x2A, 0x2B):
        info["scale"] = r.u8()
    elif t in (0xA7, 0xAF, 0xE7, 0xEF):
        info["maxlen"] = r.u16()
        info["collation"] = r.take(5)
    elif t in (0xA5, 0xAD):
        info["maxlen"] = r.u16()
    elif t in (0x23, 0x63, 0x22):
        info["maxlen"] = r.u32()
        if t != 0x22:
            info["collation"] = r.take(5)
    else:
        raise ValueError("type 0x%02x not handled by tds_server" % t)
    return info


def read_plp(r):
    total = struct.unpack("<Q", r.take(8))[0]
    if total == 0xFFFFFFFFFFFFFFFF:
        return None
    out = b""
    while True:
        n = r.u32()
        if n == 0:
            return out
        out += r.take(n)


def decode_value(info, raw):
    t = info["type"]
    if raw is None:
        return None
    if t in (0xE7, 0xEF, 0x63):
        return raw.decode("utf-16-le")
    if t in (0xA7, 0xAF, 0x23):
        return raw.decode("latin-1")
    if t in (0x26, 0x30, 0x34, 0x38, 0x7F):
        return int.from_bytes(raw, "little", signed=t != 0x30 and len(raw) > 1)
    if t in (0x68, 0x32):
        return raw[0]
    if t in (0x6D, 0x3E, 0x3B):
        return struct.unpack("<d" if len(raw) == 8 else "<f", raw)[0]
    return raw


def read_value(r, info, in_row=False):
    t = info["type"]
    if "fixed" in info:
        return decode_value(info, r.take(info["fixed"]))
    if t in (0x26, 0x68, 0x6D, 0x6E, 0x6F, 0x24, 0x6A, 0x6C, 0x28, 0x29, 0x2A, 0x2B):
        n = r.u8()
        return None if n == 0 else decode_value(info, r.take(n))
    if t in (0xA7, 0xAF, 0xE7, 0xEF, 0xA5, 0xAD):
        if info["maxlen"] == 0xFFFF:
            return decode_value(info, read_plp(r))
        n = r.u16()
        return None if n == 0xFFFF else decode_value(info, r.take(n))
    if t in (0x23, 0x63, 0x22):
        if in_row:
            ptrlen = r.u8()
            if ptrlen == 0:
                return None
            r.take(ptrlen + 8)   # text pointer, then an 8-byte timestamp
        n = r.u32()
        return None if n == 0xFFFFFFFF else decode_value(info, r.take(n))
    raise ValueError("value of type 0x%02x" % t)


# ---- the server ----

class Server:
    def __init__(self, host="127.0.0.1", port=0):
        # [{"match": regex, "error": (n, msg)} | {"drop": True} | {"rows": ...}, "once": bool,
        #   "skip": how many matches to let pass first]
        self.rules = []
        self.events = []           # everything received, in order
        self.fail_login = None     # (number, message)
        self.collation = "SQL_Latin1_General_CP1_CI_AS"   # every database's
        self.databases = set()
        self.meta = {}             # tablename -> (schema, hash, lsn)
        self.tables = {}           # lowercased quoted name -> columns (from CREATE TABLE)
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.connections = 0

    def start(self):
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def stop(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass

    def serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=Session(self, conn, self.connections).run,
                             daemon=True).start()

    def record(self, **event):
        with self.lock:
            self.events.append(event)

    def rule_for(self, text):
        with self.lock:
            for rule in self.rules:
                if re.search(rule["match"], text, re.S | re.I):
                    if rule.get("skip"):
                        rule["skip"] -= 1
                        continue
                    if rule.get("once"):
                        self.rules.remove(rule)
                    return rule
        return None


class Session:
    def __init__(self, server, sock, number):
        self.server, self.sock, self.number = server, sock, number
        self.snapshot = None

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Dropped()
            out += chunk
        return out

    def read_message(self):
        payload, kind = b"", None
        while True:
            header = self.recv_exact(8)
            kind, status, length = header[0], header[1], struct.unpack(">H", header[2:4])[0]
            payload += self.recv_exact(length - 8)
            if status & 1:
                return kind, payload

    def send(self, payload, kind=PKT_REPLY):
        step = PACKET_SIZE - 8
        chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self.sock.sendall(struct.pack(">BBHHBB", kind, 1 if last else 0, len(chunk) + 8, 0,
                                          (i + 1) & 0xFF, 0) + chunk)

    def run(self):
        srv = self.server
        try:
            while True:
                kind, payload = self.read_message()
                if kind == PKT_PRELOGIN:
                    self.prelogin()
                elif kind == PKT_LOGIN7:
                    if not self.login(payload):
                        break
                elif kind == PKT_SQL:
                    self.sql(payload)
                elif kind == PKT_RPC:
                    self.rpc(payload)
                elif kind == PKT_BULK:
                    self.bulk(payload)
                elif kind == PKT_ATTN:
                    srv.record(kind="attention", session=self.number)
                    self.send(done(0x20))
                else:
                    srv.record(kind="unknown", packet=kind, session=self.number)
                    self.send(done())
        except (Dropped, ConnectionError, OSError):
            pass
        finally:
            if self.snapshot is not None:
                srv.meta = self.snapshot      # an open transaction dies with its connection
                self.snapshot = None
            srv.record(kind="closed", session=self.number)
            try:
                self.sock.close()
            except OSError:
                pass

    def prelogin(self):
        options = [(0x00, bytes([16, 0, 0x07, 0xD0, 0, 0])), (0x01, b"\x02"), (0x02, b"\x00"),
                   (0x04, b"\x00")]
        head, body = b"", b""
        offset = 5 * len(options) + 1
        for token, data in options:
            head += struct.pack(">BHH", token, offset + len(body), len(data))
            body += data
        self.send(head + b"\xff" + body)

    def login(self, payload):
        def field(at):
            off, n = struct.unpack("<HH", payload[at:at + 4])
            return payload[off:off + 2 * n]
        user = field(40).decode("utf-16-le")
        pw = bytes((((b ^ 0xA5) & 0x0F) << 4) | ((b ^ 0xA5) >> 4) for b in field(44))
        tds_version = struct.unpack("<I", payload[4:8])[0]
        self.server.record(kind="login", session=self.number, user=user,
                           password=pw.decode("utf-16-le"), app=field(48).decode("utf-16-le"),
                           tds_version="%08x" % tds_version)
        if self.server.fail_login:
            number, message = self.server.fail_login
            self.send(error_token(number, message, severity=14) + done(0x02))
            return False
        ack = bytes([1]) + bytes([0x74, 0, 0, 4]) + bvarchar("tds_server") + bytes([16, 0, 0, 0])
        out = (envchange(1, bvarchar("master"), bvarchar("master")) +
               envchange(7, bytes([5]) + COLLATION, b"\x00") +
               struct.pack("<BH", 0xAD, len(ack)) + ack +
               envchange(4, bvarchar(str(PACKET_SIZE)), bvarchar(str(PACKET_SIZE))) + done())
        self.send(out)
        return True

    @staticmethod
    def skip_headers(payload):
        total = struct.unpack("<I", payload[:4])[0]
        return total if 4 <= total <= len(payload) else 0

    def apply_rule(self, text, default):
        rule = self.server.rule_for(text)
        if rule is None:
            return default()
        if rule.get("delay"):
            time.sleep(rule["delay"])
        if rule.get("drop"):
            raise Dropped()
        if "error" in rule:
            number, message = rule["error"]
            return error_token(number, message) + done(0x02)
        if "rows" in rule:
            return result_set(rule["columns"], rule["rows"])
        return default()

    def transaction(self, text):
        srv = self.server
        for m in re.finditer(r"\b(BEGIN TRAN\w*|COMMIT TRAN\w*|ROLLBACK TRAN\w*)", text, re.I):
            word = m.group(1).upper()
            if word.startswith("BEGIN"):
                self.snapshot = dict(srv.meta)
            elif word.startswith("COMMIT"):
                self.snapshot = None
            elif self.snapshot is not None:
                srv.meta = self.snapshot
                self.snapshot = None

    def sql(self, payload):
        text = payload[self.skip_headers(payload):].decode("utf-16-le")
        srv = self.server
        srv.record(kind="sql", session=self.number, text=text)

        def default():
            self.transaction(text)
            for m in re.finditer(r"CREATE DATABASE \[((?:[^\]]|\]\])+)\]", text):
                srv.databases.add(m.group(1).replace("]]", "]"))
            for name, cols in parse_create_table(text).items():
                srv.tables[name] = cols
            if re.match(r"\s*SELECT \[tablename\]", text):
                rows = [(k, v[0], v[1], v[2], 0) for k, v in sorted(srv.meta.items())]
                return result_set([("tablename", "nvarchar(128)", False),
                                   ("schema", "nvarchar(max)", False),
                                   ("schemahash", "varchar(64)", False),
                                   ("lsn", "bigint", False), ("updated", "bigint", True)], rows)
            m = re.search(r"select \* from (\S+)", text, re.I)
            if m and m.group(1).lower() in srv.tables:
                meta, _ = colmetadata(srv.tables[m.group(1).lower()])
                return meta + done(0x10, 0xC1, 0)
            return done()
        self.send(self.apply_rule(text, default))

    def rpc(self, payload):
        r = Reader(payload, self.skip_headers(payload))
        n = r.u16()
        name = PROC_IDS.get(r.u16(), "?") if n == 0xFFFF else r.take(2 * n).decode("utf-16-le")
        r.u16()
        params = []
        while r.more():
            pname = r.bvarchar()
            r.u8()
            info = read_type_info(r)
            params.append((pname, info["type"], read_value(r, info)))
        srv = self.server
        values = {p[0]: p[2] for p in params}
        stmt = values.get("@stmt", "") or ""
        srv.record(kind="rpc", session=self.number, proc=name, params=params, text=stmt)

        def default():
            out = b""
            if "DB_ID(@db) IS NULL THEN 0" in stmt:
                out = result_set([("", "int", True)],
                                 [(1 if values.get("@db") in srv.databases else 0,)], True)
            elif "DATABASEPROPERTYEX" in stmt:
                value = srv.collation if "'Collation'" in stmt else "ONLINE"
                out = result_set([("", "nvarchar(128)", True)], [(value,)], True)
            elif "sp_getapplock" in stmt:
                out = result_set([("", "int", True)], [(0,)], True)
            elif "[schemahash] = @h" in stmt:
                srv.meta[values["@t"]] = (values["@s"], values["@h"], values["@l"])
            elif "WHERE [tablename] = @t" in stmt and stmt.startswith("DELETE"):
                srv.meta.pop(values["@t"], None)
            return out + struct.pack("<Bi", 0x79, 0) + done(0, 0xE0, 0, token=0xFE)
        self.send(self.apply_rule(stmt or name, default))

    def bulk(self, payload):
        r = Reader(payload)
        columns, rows = [], []
        while r.more():
            token = r.u8()
            if token == 0x81:
                for _ in range(r.u16()):
                    r.u32()
                    r.u16()
                    info = read_type_info(r)
                    if info["type"] in (0x23, 0x63, 0x22):
                        for _ in range(r.u8()):
                            r.take(2 * r.u16())
                    columns.append((r.bvarchar(), info))
            elif token == 0xD1:
                rows.append([read_value(r, info, in_row=True) for _, info in columns])
            elif token == 0xFD:
                r.take(12)
            else:
                raise ValueError("bulk token 0x%02x" % token)
        srv = self.server
        srv.record(kind="bulk", session=self.number, columns=[c[0] for c in columns], rows=rows)
        self.send(self.apply_rule("BULK LOAD", lambda: done(0x10, 0, len(rows))))


def main():
    server = Server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 1433).start()
    print("tds_server listening on 127.0.0.1:%d" % server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
