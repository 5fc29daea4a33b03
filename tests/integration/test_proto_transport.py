#!/usr/bin/python3
"""Protocol sections 1 and 2 end to end: HTTP transport (paths, SOAPAction, keep-alive,
/healthz, 405, 413 and its log line, Content-Type, framing refused, absolute-form targets,
Content-Encoding 415, two Host headers refused, two SOAPAction headers an UnknownOperation, half-closed clients) and the XML rules (namespaces not prefixes, unknown and
foreign elements, header blocks, DTD/entities refused, entities and CDATA read)."""

import re
import socket
import time

import protolib as L
from protolib import H, NS, eq, check, expect_fault, ok_states

MAX_BYTES = 16384
T = {"name": "t", "columns": [("id", "int", False), ("v", "nvarchar(100)", True)], "pk": ["id"]}
ENV = H.SOAP_NS


def auth_ok(resp):
    check(resp.status == 200 and not resp.fault, "Authenticate failed: %r" % resp)
    a = H.parse_auth(resp.body)
    eq(a.get("IsSuccessful"), "true", "IsSuccessful")
    return a


def ctype_ok(resp):
    ct = resp.headers.get("content-type", "")
    eq(ct.lower().replace(" ", ""), "text/xml;charset=utf-8", "Content-Type")


# ---------------------------------------------------------------- section 1

def any_path(p):
    for path in ("/", "/mirror", "/x/RowData", "/Authenticate?x=1"):
        r = p.call("Authenticate", H.authenticate_body(), path=path)
        auth_ok(r)
        ctype_ok(r)
    p.schema_ok([T])
    r = p.call("RowData", H.row_data_body([{"table": "t", "columns": ["id", "v"],
                                            "rows": [("I", None, ["1", "x"])]}]), path="/x/RowData")
    eq(ok_states(r)[0]["Inserted"], "1", "Inserted via /x/RowData")


def soapaction_forms(p):
    body = H.authenticate_body()
    auth_ok(p.call("Authenticate", body, soapaction=True))                       # quoted
    auth_ok(p.call("Authenticate", body, soapaction=H.ACTION_PREFIX + "Authenticate"))  # unquoted
    auth_ok(p.call("Authenticate", body, soapaction=False))                      # absent
    auth_ok(p.call("Authenticate", body, soapaction='""'))                       # ""
    # An empty header value: operation from the body element.
    data = H.envelope(body, p.token()).encode()
    st, hd, bd = L.raw_http(p.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                            b"SOAPAction: \r\nContent-Length: %d\r\n\r\n" % len(data)
                            + data)
    auth_ok(L.Resp(st, hd, bd))
    # The action decides for a data call too (TableSchema with no header).
    st = ok_states(p.call("TableSchema", H.table_schema_body([T]), soapaction=False))
    eq(st[0]["Change"], "Created", "TableSchema without SOAPAction")
    # Content-Type of the request is not checked.
    st, bd, hd = H.request(p.port, "POST", "/", data, {"Content-Type": "application/octet-stream"})
    auth_ok(L.Resp(st, hd, bd))


def action_mismatch(p):
    r = p.call("TableSchema", H.authenticate_body())   # header TableSchema, body Authenticate
    expect_fault(r, "MalformedRequest")
    r = p.call("Wipe", H.row_data_body([{"table": "t", "columns": ["id", "v"], "rows": []}]))
    expect_fault(r, "MalformedRequest")


def unknown_operation(p):
    r = p.call("Frobnicate", H.authenticate_body())
    expect_fault(r, "UnknownOperation")
    r = p.call("x", '<FrobnicateRequest xmlns="%s"/>' % NS, soapaction=False)
    expect_fault(r, "UnknownOperation")
    r = p.call("x", '<FrobnicateRequest xmlns="%s"/>' % NS, soapaction='""')
    expect_fault(r, "UnknownOperation")


def two_body_elements(p):
    r = p.call("Authenticate", H.authenticate_body() + H.authenticate_body(), soapaction=False)
    expect_fault(r, "MalformedRequest")
    r = p.call("Authenticate", H.authenticate_body() + H.authenticate_body())
    expect_fault(r, "MalformedRequest")


def not_an_envelope(p):
    for raw in (b"", b"hello", b"<a/>", b"<s:Envelope xmlns:s='%s'><s:Body>" % ENV.encode()):
        st, bd, hd = H.request(p.port, "POST", "/", raw, {"Content-Type": "text/xml; charset=utf-8"})
        expect_fault(L.Resp(st, hd, bd), "MalformedRequest")


def keep_alive_cycle(p):
    conn = p.daemon.connection()
    try:
        auth_ok(p.call("Authenticate", H.authenticate_body(), conn=conn))
        sock = conn.sock
        check(sock is not None, "connection closed after Authenticate")
        ok_states(p.schema([T], conn=conn))
        ok_states(p.wipe(["t"], conn=conn))
        ok_states(p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", "5", ["1", "a"])], "lsn": 5}],
                         conn=conn))
        expect_fault(p.wipe(["nosuch"], conn=conn), "UnknownTable")
        check(conn.sock is sock, "a fault closed the connection")
        expect_fault(p.call("Frobnicate", H.authenticate_body(), conn=conn), "UnknownOperation")
        check(conn.sock is sock, "an UnknownOperation fault closed the connection")
        st = ok_states(p.rows([{"table": "t", "columns": ["id", "v"], "rows": [("I", "6", ["2", "b"])],
                                "lsn": 6}], conn=conn))
        eq(st[0]["Lsn"], "6", "Lsn")
        r = p.completed(conn=conn)
        check(r.status == 200 and not r.fault, "ReplicationCompleted: %r" % r)
        check(conn.sock is sock, "the connection was not kept for the whole cycle")
    finally:
        conn.close()
    eq(p.table_rows("t"), [(1, "a"), (2, "b")], "rows")


def pipelined(p):
    """Two requests in one write (HTTP/1.1 pipelining): the second one's bytes arrive with the
    first one's body, are kept while the first is served, and both are answered, in order."""
    p.setup([T])
    rows = [("I", str(i + 1), [str(i), "y" * 80]) for i in range(100)]
    first = H.envelope(H.row_data_body([{"table": "t", "columns": ["id", "v"], "rows": rows, "lsn": 100}]),
                       p.token()).encode()
    check(8192 < len(first) < MAX_BYTES, "first body %d bytes: not several socket reads" % len(first))
    second = H.envelope(H.authenticate_body("second"), p.token()).encode()
    answers = L.pipelined_answers(p.port, [("RowData", first), ("Authenticate", second)])
    eq(answers[0][0], 200, "first answer's status")
    eq(H.parse_table_states(answers[0][1])[0]["Inserted"], "100", "rows of the first request")
    eq(answers[1][0], 200, "second answer's status")
    eq(H.parse_auth(answers[1][1]).get("ClientState"), "second", "the second request's answer")
    eq(len(p.table_rows("t")), 100, "rows in the mirror")


def healthz_and_405(p):
    st, body, hd = H.request(p.port, "GET", "/healthz")
    eq(st, 200, "GET /healthz")
    check(body.strip() and body.count(b"\n") <= 1, "one-line body: %r" % body)
    # A later HTTP/1.x is answered in HTTP/1.1, the version this server speaks; an earlier
    # version (served by HTTP/1.0's rules) in HTTP/1.0.
    for version, answer in ((b"1.2", b"1.1"), (b"1.10", b"1.1"), (b"0.9", b"1.0"), (b"1.-1", b"1.0")):
        data = answers_until_close(p.port, b"GET /healthz HTTP/%s\r\nHost: x\r\nConnection: close\r\n\r\n" % version)
        check(data is not None and data.startswith(b"HTTP/%s 200 " % answer), "HTTP/%s: %r" % (version.decode(), data))
    st, body, hd = H.request(p.port, "HEAD", "/healthz")
    eq(st, 200, "HEAD /healthz")
    eq(body, b"", "HEAD body")
    for method, path in (("GET", "/"), ("GET", "/mirror"), ("PUT", "/"), ("DELETE", "/x"),
                         ("PUT", "/healthz"), ("POST", "/healthz"), ("PROPFIND", "/"), ("FOO", "/healthz")):
        st, body, hd = H.request(p.port, method, path, b"" if method != "GET" else None)
        if (method, path) == ("POST", "/healthz"):
            # POST to any path is a SOAP call (section 1): an empty body is malformed.
            check(st in (405, 500), "POST /healthz: %d" % st)
            continue
        eq(st, 405, "%s %s" % (method, path))
        eq(hd.get("allow"), "POST", "%s %s Allow" % (method, path))
        check(b"POST" in body and b"SOAP" in body.upper(), "405 body: %r" % body)


def answers_until_close(port, data):
    """Sends data on a new connection and reads until the server closes it; returns the bytes,
    or None when it stays open (2 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        got = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return got
                got += chunk
        except socket.timeout:
            return None


def unread_body_closes(p):
    """A method libevent does not know (lowercase counts) gets the 405 as well. libevent reads
    no body for such a method, nor for HEAD or TRACE: when one declares a body, the answer
    closes the connection, or the body would be read as the next request. Without a body the
    connection stays."""
    follow = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for method, path in (("post", "/"), ("HEAD", "/healthz"), ("TRACE", "/")):
        data = answers_until_close(p.port, b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                                   % (method.encode(), path.encode(), len(follow)) + follow)
        check(data is not None, "%s with a body: the connection stayed open" % method)
        head = data.split(b"\r\n\r\n")[0].decode("latin-1").lower()
        check(head.startswith("http/1.1 %d" % (200 if method == "HEAD" else 405)), "%s: %r" % (method, data[:200]))
        check("connection: close" in head, "%s headers: %r" % (method, head))
        eq(data.count(b"HTTP/1.1 "), 1, "%s: answers before the close (the body is not a request)" % method)
    # libevent sends an answer to CONNECT without Content-Length: the close ends its body.
    data = answers_until_close(p.port, b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n" + follow)
    check(data is not None, "CONNECT: the connection stayed open after an unframed answer")
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.lower().startswith(b"http/1.1 405") and b"connection: close" in head.lower(),
          "CONNECT: %r" % head)
    check(b"POST" in body and b"HTTP/1.1" not in body, "CONNECT: 405 body %r (a request sent after it is not answered)" % body)
    # The body may still be on its way when the answer closes the connection: the socket
    # lingers, as after a 413, so that the client's sending meets no reset (which can destroy
    # the answer unread). So too after a framing refused, whose body's end is not known.
    for head in (b"PROPFIND / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (4 << 20),
                 b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"):
        with socket.create_connection(("127.0.0.1", p.port), timeout=30) as s:
            s.sendall(head + b"\r\n")
            answer = s.recv(4096)
            check(answer.startswith((b"HTTP/1.1 405 ", b"HTTP/1.1 501 ")), "%r: %r" % (head, answer[:60]))
            try:
                s.sendall(b"y" * (4 << 20))
                s.shutdown(socket.SHUT_WR)
                rest = s.recv(4096)
            except (BrokenPipeError, ConnectionResetError) as e:
                raise AssertionError("%r: the body sent after the answer met a reset: %r" % (head, e))
            eq(rest, b"", "%r: the end of the connection after the answer and the body" % head)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n" + follow)
        statuses = [status for status, _ in L.read_answers(sock, 2)]
    eq(statuses, [405, 200], "an unknown method without a body, then a request on the same connection")


def ambiguous_framing(p):
    """A request whose length is told twice (two Content-Length, or Transfer-Encoding beside
    one) or by a coding libevent does not read is refused (400, 501) and the connection closed,
    so that no bytes a proxy in front may have framed otherwise are read as a request. Nothing
    is applied: the call is never run."""
    body = H.envelope(H.authenticate_body("framing"), p.token()).encode()
    follow = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    cases = {
        "two lengths": (400, b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), len(body) + len(follow), body + follow)),
        "the same length twice": (400, b"Content-Length: %d\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(body), len(body), body + follow)),
        "chunked and a length": (400, b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(chunked), chunked + follow)),
        "gzip": (501, b"Transfer-Encoding: gzip\r\n\r\n" + body + follow),
        "a signed length": (400, b"Content-Length: +%d\r\n\r\n%s" % (len(body), body + follow)),
        "space before the colon": (400, b"Transfer-Encoding : chunked\r\n\r\n%s" % (chunked + follow)),
    }
    for name, (status, rest) in cases.items():
        data = answers_until_close(p.port, b"POST / HTTP/1.1\r\nHost: x\r\n" + rest)
        check(data is not None, "%s: the connection stayed open" % name)
        head = data.split(b"\r\n\r\n")[0].decode("latin-1").lower()
        check(head.startswith("http/1.1 %d" % status), "%s: %r" % (name, data[:300]))
        check("connection: close" in head, "%s headers: %r" % (name, head))
        eq(data.count(b"HTTP/1.1 "), 1, "%s: answers before the close" % name)
    # A length after a tab (whitespace HTTP allows, which libevent leaves in the value) is one.
    data = answers_until_close(p.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\t%d\r\n"
                               b"Connection: close\r\n\r\n%s" % (len(body), body))
    eq(H.parse_auth(data.partition(b"\r\n\r\n")[2]).get("ClientState"), "framing", "a length after a tab")
    # Chunked in HTTP/1.0, which has no Transfer-Encoding (RFC 9112 6.1): served, but the answer
    # closes the connection, keep-alive asked or not.
    data = answers_until_close(p.port, b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n" + chunked + b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    check(data is not None, "chunked in HTTP/1.0: the connection stayed open")
    eq(H.parse_auth(data.partition(b"\r\n\r\n")[2]).get("ClientState"), "framing", "chunked in HTTP/1.0")
    eq(data.count(b"HTTP/1.0 "), 1, "chunked in HTTP/1.0: answers before the close")
    # One of each, chunked, is a request like any other.
    data = answers_until_close(p.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"Connection: close\r\n\r\n" + chunked)
    eq(H.parse_auth(data.partition(b"\r\n\r\n")[2]).get("ClientState"), "framing", "a chunked call")


def absolute_form(p):
    """A request target in absolute form (RFC 9112 3.2.2: servers must accept it) is answered
    like any other and the connection kept (libevent 2.1 took it for a proxy's request and
    closed the connection after the answer, losing a request pipelined behind it)."""
    body = H.envelope(H.authenticate_body("absolute"), p.token()).encode()
    one = (b"POST http://example.com/mirror HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n"
           % len(body) + body)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(one + one)
        answers = L.read_answers(sock, 2)
        eq([status for status, _ in answers], [200, 200], "two pipelined absolute-form requests")
        eq(H.parse_auth(answers[1][1]).get("ClientState"), "absolute", "the second answer")
        sock.sendall(b"GET http://example.com/healthz HTTP/1.1\r\nHost: example.com\r\n\r\n")
        eq(L.read_answers(sock, 1)[0], (200, b"ok\n"), "/healthz in absolute form, on the same connection")


def content_encoding(p):
    """A body with a content coding is answered 415 saying so (it would fail as XML that does
    not parse, without saying why), and the connection is kept; identity is no coding."""
    body = H.envelope(H.authenticate_body("coded"), p.token()).encode()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Encoding: %s\r\n\r\n"
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(head % (len(body), b"gzip") + body + head % (len(body), b"identity") + body)
        (status, text), (status2, answer) = L.read_answers(sock, 2)
    eq(status, 415, "a gzip Content-Encoding")
    check(b"Content-Encoding" in text, "415 body: %r" % text)
    eq((status2, H.parse_auth(answer).get("ClientState")), (200, "coded"), "Content-Encoding: identity")


def refused_headers(p):
    """Two Host headers (a proxy in front may have routed by the other) are 400 saying why, the
    call not run; its framing is sound, so the connection is kept for the next request. The log
    says so once a minute per worker, however many come. A request
    without Host is served, in HTTP/1.1 too: the protocol asks only for a POST. Two SOAPAction
    headers name no one operation: UnknownOperation, saying what was sent (the first no longer
    wins silently)."""
    body = H.envelope(H.authenticate_body("hosts"), p.token()).encode()
    length = b"Content-Length: %d\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + length + b"\r\n" + body +
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        (status, text), follow = L.read_answers(sock, 2)
    eq(status, 400, "two Host headers")
    check(b"Host" in text, "400 body %r" % text)
    eq(follow, (200, b"ok\n"), "the request after it, on the same connection")
    line = (r"a request was refused with 400: The request has more than one Host header\. "
            r"\(client 127\.0\.0\.1:\d+; \d+ more since the last such line")
    p.daemon.wait_log(line)
    # A client repeating the mistake fills no log: one line a minute per kind and worker (a
    # connection stays on its worker, which may or may not have logged the first).
    before = len(re.findall(line, p.daemon.log()))
    burst = 10
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall((b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + length + b"\r\n" + body) * burst)
        answers = L.read_answers(sock, burst)
    eq([a[0] for a in answers], [400] * burst, "a burst of two-Host requests")
    check(len(re.findall(line, p.daemon.log())) - before <= 1, "the burst logged a line per request")
    for version in (b"1.1", b"1.0"):
        st, hd, bd = L.raw_http(p.port, b"POST / HTTP/%s\r\n" % version + length + b"Connection: close\r\n\r\n"
                                + body)
        eq((st, H.parse_auth(bd).get("ClientState")), (200, "hosts"), "HTTP/%s without Host" % version.decode())
    action = b'SOAPAction: "%sAuthenticate"\r\n' % H.ACTION_PREFIX.encode()
    st, hd, bd = L.raw_http(p.port, b"POST / HTTP/1.1\r\nHost: x\r\n" + action + action + length + b"\r\n" + body)
    resp = L.Resp(st, hd, bd)
    expect_fault(resp, "UnknownOperation")
    check(resp.fault["message"].count("Authenticate") == 2, "fault message: %r" % resp.fault["message"])


def empty_lines_first(p):
    """Empty lines before a request line are passed over (RFC 9112 section 2.2), as nginx does:
    before a connection's first request, after a body (a client that ends it with an extra
    CRLF, on a kept-alive connection), bare LFs, and a CRLF split across two packets."""
    body = H.envelope(H.authenticate_body("blank"), p.token()).encode()
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    st, hd, bd = L.raw_http(p.port, b"\r\n\r\n" + post)
    eq((st, H.parse_auth(bd).get("ClientState")), (200, "blank"), "a request after two empty lines")
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(post + b"\r\n" + health + b"\n\n" + health)
        answers = L.read_answers(sock, 3)
        eq([a[0] for a in answers], [200, 200, 200], "CRLF after a body, LFs before a request")
        for part in (b"\r", b"\n", health):
            sock.sendall(part)
            time.sleep(0.05)
        eq(L.read_answers(sock, 1)[0], (200, b"ok\n"), "a CRLF in two packets, then a request")
        # many, a CRLF across the 64 bytes the server looks at a time
        sock.sendall(b"\n" + b"\r\n" * 40 + health + b"\n" * 63 + b"\r\n" + health)
        eq([a[0] for a in L.read_answers(sock, 2)], [200, 200], "81 and 65 bytes of empty lines")


def half_closed(p):
    """A client that half-closes after its request (nc -N) is taken for gone: the call is not
    run, the answer (if it still reads) is 503 saying so, and the log names the client."""
    body = H.envelope(H.authenticate_body("half"), p.token()).encode()
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        # Corked, the FIN goes in the request's last segment: the server sees both at once.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sock.shutdown(socket.SHUT_WR)
        status, text = L.read_answers(sock, 1)[0]
    eq(status, 503, "a half-closed client's call")
    check(b"half-closed" in text and b"not run" in text, "503 body: %r" % text)
    p.daemon.wait_log(r"the client closed \(or half-closed\) its connection before its call ran: the call "
                      r"is not run \(client 127\.0\.0\.1:\d+\)")


def connection_close(p):
    """A request with Connection: close gets its whole answer before the close (HTTP/1.1)."""
    data = H.envelope(H.authenticate_body("cc"), p.token()).encode()
    st, hd, bd = L.raw_http(p.port, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(data) + data)
    eq(H.parse_auth(bd).get("ClientState"), "cc", "answer with Connection: close")
    st, hd, bd = L.raw_http(p.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    eq(st, 200, "GET /healthz with Connection: close")
    st, hd, bd = L.raw_http(p.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    eq(st, 200, "GET /healthz in HTTP/1.0")
    # The close option in a list of them (RFC 9110 7.6.1) closes too, after one answer.
    data = answers_until_close(p.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n"
                               b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    check(data is not None, "Connection: keep-alive, Close: the connection stayed open")
    eq(data.count(b"HTTP/1.1 200"), 1, "answers before the close")
    check(b"\r\nconnection: close\r\n" in data.lower(), "the answer says it closes: %r" % data)
    # An HTTP/1.0 request that asks for keep-alive, answered with a close (a refused framing, a
    # body left unread): the answer says close alone, not keep-alive beside it. Every answer
    # says its length, HTTP/1.0 ones too.
    for request in (b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: gzip\r\n\r\n",
                    b"HEAD /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello",
                    b"GET /healthz HTTP/1.0\r\n\r\n"):
        data = answers_until_close(p.port, request)
        check(data is not None, "%r: the connection stayed open" % request)
        head = data.partition(b"\r\n\r\n")[0].lower()
        eq(re.findall(rb"\r\nconnection: ([^\r]*)", head), [b"close"] if b"alive" in request.lower() else [],
           "%r: Connection headers" % request)
        check(re.search(rb"\r\ncontent-length: \d+\r\n", head + b"\r\n"), "%r: no Content-Length in %r" % (request, head))


def too_large_answered_early(p):
    """The 413 is decided from Content-Length as soon as the headers are in, without waiting
    for the body (also with Expect: 100-continue, which gets no 100); a client that sends a
    large body anyway gets the 413, not a reset (the socket lingers, reading and dropping)."""
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nSOAPAction: \"%sRowData\"\r\nContent-Length: 1000000\r\n"
            % H.ACTION_PREFIX.encode())
    for expect in (b"", b"Expect: 100-continue\r\n"):
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(head + expect + b"\r\n" + b"<s:Envelope")
            try:
                answer = s.recv(4096)
            except socket.timeout:
                raise AssertionError("no answer to a declared body over the limit (%r) before it was sent" % expect)
        check(answer.startswith(b"HTTP/1.1 413 "), "answer to a declared body over the limit: %r" % answer[:60])
    with socket.create_connection(("127.0.0.1", p.port), timeout=30) as s:
        s.sendall(head.replace(b"1000000", b"%d" % (4 << 20)) + b"\r\n")
        check(s.recv(4096).startswith(b"HTTP/1.1 413 "), "no early 413 before a 4 MiB body")
        try:
            s.sendall(b"y" * (4 << 20))
            s.shutdown(socket.SHUT_WR)
            rest = s.recv(4096)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise AssertionError("the body sent after the 413 met a reset (no lingering close): %r" % e)
        eq(rest, b"", "the end of the connection after the 413 and the body")


def too_large(p):
    p.setup([T])
    rows = [("I", str(i + 1), [str(i), "x" * 90]) for i in range(200)]
    body = H.row_data_body([{"table": "t", "columns": ["id", "v"], "rows": rows, "lsn": 1000}])
    data = H.envelope(body, p.token()).encode()
    check(len(data) > MAX_BYTES, "test body not over the limit")
    st, hd, bd = L.raw_http(p.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                            b"SOAPAction: \"%sRowData\"\r\nContent-Length: %d\r\n\r\n"
                            % (H.ACTION_PREFIX.encode(), len(data)) + data)
    eq(st, 413, "HTTP status over max_request_bytes")
    # libevent answers it alone; the operator still sees it, with the client.
    p.daemon.wait_log(r"a request was refused by the HTTP layer before its body was read \(413: .* \(client "
                      r"127\.0\.0\.1:\d+;")
    too_large_answered_early(p)
    eq(p.table_rows("t"), [], "rows after 413")
    eq(p.meta()["t"]["lsn"], -1, "Lsn after 413")
    # A normal call still works afterwards.
    st = p.rows_ok([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["1", "x"])]}])
    eq(st[0]["Inserted"], "1", "Inserted after 413")


def content_type_answers(p):
    ctype_ok(p.call("Authenticate", H.authenticate_body()))
    ctype_ok(p.schema([T]))
    ctype_ok(p.wipe(["nosuch"]))
    ctype_ok(p.completed())


# ---------------------------------------------------------------- section 2

def raw_env(token, body, env_prefix="s", header_extra=""):
    if env_prefix:
        return ('<%s:Envelope xmlns:%s="%s"><%s:Header><SignedToken xmlns="%s">%s</SignedToken>%s</%s:Header>'
                '<%s:Body>%s</%s:Body></%s:Envelope>' % (env_prefix, env_prefix, ENV, env_prefix, NS, token,
                                                          header_extra, env_prefix, env_prefix, body, env_prefix,
                                                          env_prefix))
    return ('<Envelope xmlns="%s"><Header><SignedToken xmlns="%s">%s</SignedToken>%s</Header>'
            '<Body>%s</Body></Envelope>' % (ENV, NS, token, header_extra, body))


def prefixes(p):
    body = ('<ns0:AuthenticateRequest xmlns:ns0="%s"><ns0:ClientState>st</ns0:ClientState>'
            '</ns0:AuthenticateRequest>' % NS)
    a = auth_ok(p.call("Authenticate", None, raw=raw_env(p.token(), body, "soapenv")))
    eq(a.get("ClientState"), "st", "ClientState with ns0 prefix")
    # The default namespace on the envelope itself, token with a prefix.
    tok = ('<Envelope xmlns="%s"><Header><m:SignedToken xmlns:m="%s">%s</m:SignedToken></Header>'
           '<Body><AuthenticateRequest xmlns="%s"/></Body></Envelope>' % (ENV, NS, p.token(), NS))
    auth_ok(p.call("Authenticate", None, raw=tok))
    auth_ok(p.call("Authenticate", None, raw=raw_env(p.token(), H.authenticate_body(), None), soapaction=False))
    # A TableSchema written with prefixes everywhere.
    ts = H.table_schema_body([T]).replace("<", "<q:").replace("<q:/", "</q:").replace(
        'q:TableSchemaRequest xmlns="', 'q:TableSchemaRequest xmlns:q="')
    st = ok_states(p.call("TableSchema", None, raw=raw_env(p.token(), ts, "S")))
    eq([(s["Name"], s["Change"]) for s in st], [("t", "Created")], "prefixed TableSchema")
    # Token whitespace is trimmed.
    auth_ok(p.call("Authenticate", None, raw=raw_env("\n  %s \n\t" % p.token(), H.authenticate_body())))


def no_namespace_inside_op(p):
    p.setup([T])
    r = p.call("Wipe", '<WipeRequest xmlns="%s"><Tables><Name xmlns="">t</Name></Tables></WipeRequest>' % NS)
    expect_fault(r, "MalformedRequest")
    r = p.call("Wipe", '<w:WipeRequest xmlns:w="%s"><w:Tables><Name>t</Name></w:Tables></w:WipeRequest>' % NS)
    expect_fault(r, "MalformedRequest")
    r = p.call("Wipe", '<WipeRequest xmlns="%s"><Tables><Name>t</Name><Bogus/></Tables></WipeRequest>' % NS)
    expect_fault(r, "MalformedRequest")
    r = p.call("Authenticate", '<AuthenticateRequest xmlns="%s"><ClientState/><Extra/></AuthenticateRequest>' % NS)
    expect_fault(r, "MalformedRequest")


def foreign_namespace_ignored(p):
    p.setup([T])
    body = ('<WipeRequest xmlns="%s"><o:Note xmlns:o="urn:other">x<o:y/></o:Note><Tables><Name>t</Name>'
            '<o:Extra xmlns:o="urn:other">ignored</o:Extra></Tables></WipeRequest>' % NS)
    st = ok_states(p.call("Wipe", body))
    eq([s["Name"] for s in st], ["t"], "Wipe with foreign elements")
    rd = H.row_data_body([{"table": "t", "columns": ["id", "v"], "rows": [("I", None, ["1", "a"])]}])
    rd = rd.replace("<Rows>", '<Rows><z:Hint xmlns:z="urn:z">1</z:Hint>')
    eq(ok_states(p.call("RowData", rd))[0]["Inserted"], "1", "RowData with a foreign element")
    eq(p.table_rows("t"), [(1, "a")], "rows")


def extra_header_blocks(p):
    extra = ('<o:Security xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" '
             's:mustUnderstand="1"><o:UsernameToken><o:Username>x</o:Username></o:UsernameToken></o:Security>'
             '<a:Action xmlns:a="http://www.w3.org/2005/08/addressing" s:mustUnderstand="1">%sAuthenticate</a:Action>'
             % H.ACTION_PREFIX)
    auth_ok(p.call("Authenticate", None, raw=raw_env(p.token(), H.authenticate_body(), "s", extra)))


def dtd_and_entities(p):
    tok = p.token()
    cases = {
        "dtd": '<?xml version="1.0"?><!DOCTYPE x [<!ELEMENT x ANY>]>' + raw_env(tok, H.authenticate_body()),
        "external": ('<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                     + raw_env(tok, '<AuthenticateRequest xmlns="%s"><ClientState>&xxe;</ClientState>'
                                    '</AuthenticateRequest>' % NS)),
        "laughs": ('<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY a "aaaaaaaaaa">'
                   + "".join('<!ENTITY %s "%s">' % (chr(98 + i), ("&%s;" % chr(97 + i)) * 10) for i in range(9))
                   + ']>' + raw_env(tok, '<AuthenticateRequest xmlns="%s"><ClientState>&j;</ClientState>'
                                         '</AuthenticateRequest>' % NS)),
        "undeclared": raw_env(tok, '<AuthenticateRequest xmlns="%s"><ClientState>&foo;</ClientState>'
                                   '</AuthenticateRequest>' % NS),
    }
    for name, raw in cases.items():
        t0 = time.monotonic()
        r = p.call("Authenticate", None, raw=raw)
        elapsed = time.monotonic() - t0
        try:
            expect_fault(r, "MalformedRequest")
        except AssertionError as e:
            raise AssertionError("%s: %s" % (name, e))
        check(elapsed < 3, "%s took %.1fs" % (name, elapsed))
        check(b"root:" not in r.body, "%s: file content leaked" % name)


def entities_and_cdata(p):
    p.setup([T])
    body = H.row_data_body([{"table": "t", "columns": ["id", "v"], "rows": [
        ("I", None, ["1", "@1"]), ("I", None, ["2", "@2"]), ("I", None, ["3", "@3"]),
        ("I", None, ["4", "@4"]), ("I", None, ["5", "@5"]), ("I", None, ["6", "@6"])]}])
    body = (body.replace("<V>@1</V>", "<V>A&amp;B&#x41;&#65;&lt;&gt;&quot;&apos;</V>")
                .replace("<V>@2</V>", "<V>   </V>")
                .replace("<V>@3</V>", "<V><![CDATA[ <x> &amp; ]]></V>")
                .replace("<V>@4</V>", "<V> a<![CDATA[<b>]]>c </V>")
                .replace("<V>@5</V>", "<V>\n\tline\n</V>")
                .replace("<V>@6</V>", "<V>&#x1F600;&#xE9;</V>")
                .replace("<Table>t</Table>", "<Table>\n  t \n</Table>")
                .replace("<Name>id</Name>", "<Name> id</Name>"))
    st = ok_states(p.call("RowData", body))
    eq(st[0]["Inserted"], "6", "Inserted")
    got = dict(p.query('SELECT id, v FROM "t"'))
    eq(got[1], "A&BAA<>\"'", "entities and character references")
    eq(got[2], "   ", "<V>   </V>")
    eq(got[3], " <x> &amp; ", "CDATA verbatim")
    eq(got[4], " a<b>c ", "text and CDATA mixed")
    eq(got[5], "\n\tline\n", "whitespace in <V> verbatim")
    eq(got[6], "\U0001F600\u00e9", "character references beyond the BMP")


CHECKS = [any_path, soapaction_forms, action_mismatch, unknown_operation, two_body_elements, not_an_envelope,
          keep_alive_cycle, pipelined, healthz_and_405, unread_body_closes, ambiguous_framing, absolute_form,
          content_encoding, refused_headers, empty_lines_first, half_closed, connection_close,
          too_large, content_type_answers, prefixes, no_namespace_inside_op, foreign_namespace_ignored, extra_header_blocks,
          dtd_and_entities, entities_and_cdata]

if __name__ == "__main__":
    L.run(CHECKS, **{"limits.max_request_bytes": MAX_BYTES})
