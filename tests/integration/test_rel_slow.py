#!/usr/bin/env python3
"""Slow and hostile clients against a real somirrord with small limits (limits.header_timeout
2 s, limits.keepalive_timeout 2 s, limits.request_timeout 3 s):

- slowloris: connections that send their headers one byte a second are closed by the server
  within header_timeout (plus slack), although bytes keep coming, and logged with the client
  (one line a minute per worker);
- slow body: complete headers, then the body one byte a second: closed within request_timeout
  (plus slack);
- during both attacks a real sender's calls succeed promptly (< 2 s);
- 1,000 idle connections do not stop a real sender, and are closed after the idle timeout;
- workers out of file descriptors pause accepting (logged) instead of spinning, and serve once
  descriptors are free;
- a call held on the worker for longer than every timeout (a lock on its mirror) is answered,
  and its connection serves the next call;
- endless headers, a client that sends on without reading its answer, and many bodies with
  their last bytes withheld (with a Content-Length or chunked) take bounded memory;
- bodies paused for the memory budget (over HTTP and HTTPS) never wait for one another, nor for
  clients that pipeline requests without reading the answers: each is answered;
- a client that disconnects in the middle of a RowData body (FIN or RST) leaves nothing behind:
  no rows, no lsn change, the same workers alive and idle, the tenant's next call succeeds;
- a whole RowData whose client closed its connection before a worker got to it is not run."""
import os
import re
import select
import signal
import socket
import ssl
import sqlite3
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

HEADER_TIMEOUT = 2
KEEPALIVE_TIMEOUT = 2
REQUEST_TIMEOUT = 3
SLACK = 3
ATTACK_SECONDS = 10
LIMITS = {"limits.header_timeout": HEADER_TIMEOUT, "limits.keepalive_timeout": KEEPALIVE_TIMEOUT,
          "limits.request_timeout": REQUEST_TIMEOUT, "limits.max_request_bytes": "16MiB",
          "workers": 2, "log.level": "info"}


def trickle(port, prefix, payload, result, index):
    """Sends prefix at once, then payload one byte a second; records when the server closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    closed_at = None
    try:
        if prefix:
            s.sendall(prefix)
        for i in range(len(payload)):
            if time.monotonic() - t0 > ATTACK_SECONDS:
                break
            r, _, _ = select.select([s], [], [], 1.0)
            if r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed_at = time.monotonic() - t0
                    break
                # An answer (408/400) is fine; the close is what counts.
                continue
            try:
                s.send(payload[i:i + 1])
            except OSError:
                closed_at = time.monotonic() - t0
                break
    finally:
        s.close()
    result[index] = closed_at


def real_sender(p, rounds, box):
    """Authenticate + RowData calls during an attack; records the slowest."""
    worst = 0.0
    try:
        for i in range(rounds):
            t0 = time.monotonic()
            p.auth()
            PL.ok_states(p.rows([R.item_batch(20, 1 + 100 * i, lsn=10 + i)]), "a real sender's RowData")
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.8)
    except Exception as e:  # noqa: BLE001
        box["error"] = e
    box["worst"] = worst


def slow_attack(env):
    """Runs the slowloris and slow-body attack once (with a real sender during it); returns
    {"hdr": [close times], "body": [close times], "sender": box}."""
    d = env.daemon
    port = d.port
    p = PL.P(env, "sender_under_slowloris")
    p.setup([R.TABLE])
    head = R.post_head(port, 100000)
    results = {}
    threads = []
    for i in range(8):   # slowloris: the header bytes one at a time
        threads.append(threading.Thread(target=trickle, args=(port, b"", head, results, ("hdr", i)), daemon=True))
    for i in range(8):   # slow body: headers at once, then one body byte a second
        threads.append(threading.Thread(target=trickle, args=(port, head, b"<" * 100000, results, ("body", i)),
                                        daemon=True))
    box = {}
    sender = threading.Thread(target=real_sender, args=(p, 6, box), daemon=True)
    for t in threads:
        t.start()
    time.sleep(0.5)
    sender.start()
    for t in threads + [sender]:
        t.join(ATTACK_SECONDS + 10)
    return {"hdr": [results.get(("hdr", i)) for i in range(8)],
            "body": [results.get(("body", i)) for i in range(8)], "sender": box}


def check_sender_during_attack(env, attack):
    box = attack["sender"]
    R.check("error" not in box, "a real sender failed during the attack: %s" % box.get("error"))
    R.check(box.get("worst", 99) <= 2.0, "a real sender's call took %.1fs during the attack" % box.get("worst", 99))
    R.check(env.daemon.alive() and len(env.daemon.worker_pids()) == 2, "somirrord or a worker died")


def check_timeouts_logged(env, what):
    """Each kind of timeout is logged at info with the client, one line a minute per worker."""
    lines = re.findall(r"closing a connection: %s \(client 127\.0\.0\.1:\d+; \d+ more since" % re.escape(what),
                       env.daemon.log())
    R.check(1 <= len(lines) <= 2, "%d log lines for '%s' from 2 workers (want 1 or 2)" % (len(lines), what))


def check_slowloris_closed(env, attack):
    check_timeouts_logged(env, "request headers late (header_timeout)")
    hdr = attack["hdr"]
    R.check(all(c is not None and c <= HEADER_TIMEOUT + SLACK for c in hdr),
            "slowloris connections (headers at 1 byte/s) not closed within %ds (header_timeout %ds): "
            "closed after %r (None: still open after %ds)" % (HEADER_TIMEOUT + SLACK, HEADER_TIMEOUT, hdr,
                                                             ATTACK_SECONDS))


def check_slow_body_closed(env, attack):
    check_timeouts_logged(env, "request not complete within request_timeout")
    body = attack["body"]
    R.check(all(c is not None and c <= REQUEST_TIMEOUT + SLACK for c in body),
            "slow bodies (1 byte/s) not closed within %ds (request_timeout %ds): closed after %r "
            "(None: still open after %ds)" % (REQUEST_TIMEOUT + SLACK, REQUEST_TIMEOUT, body, ATTACK_SECONDS))


def check_idle_connections(env):
    d = env.daemon
    p = PL.P(env, "sender_among_idle")
    p.setup([R.TABLE])
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        time.sleep(0.3)
        t0 = time.monotonic()
        p.auth()
        PL.ok_states(p.rows([R.item_batch(100, 1, lsn=5)]), "RowData among 1,000 idle connections")
        took = time.monotonic() - t0
        R.check(took < 3, "a real sender took %.1fs among 1,000 idle connections" % took)
        # The idle ones are closed by the server after the idle timeout.
        time.sleep(max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + SLACK)
        still = 0
        for s in socks:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                still += 1
                continue
            try:
                if s.recv(1, socket.MSG_PEEK):
                    pass
            except OSError:
                pass
        R.check(still <= 10, "%d of 1,000 idle connections still open %ds after the idle timeout"
                % (still, SLACK))
    finally:
        for s in socks:
            s.close()
    R.check(d.alive() and len(d.worker_pids()) == 2, "somirrord or a worker died")
    p.auth()


def open_files_hard_limit(pid):
    for line in open("/proc/%d/limits" % pid):
        if line.startswith("Max open files"):
            return line.split()[4]
    raise AssertionError("no open-files limit for %d" % pid)


def check_out_of_descriptors(env):
    """Workers out of file descriptors (their limit lowered to what they hold plus a few):
    accept() fails, and instead of retrying at full CPU they pause accepting, say so in the
    log, and serve again once descriptors are free."""
    d = env.daemon
    workers = d.worker_pids()
    hard = {pid: open_files_hard_limit(pid) for pid in workers}
    for pid in workers:   # the soft limit only: raising it back needs no privilege
        held = len(os.listdir("/proc/%d/fd" % pid))
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%s" % (held + 4, hard[pid])], check=True)
    socks = []
    try:
        for _ in range(40):
            socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        before = sum(H.cpu_seconds(pid) for pid in workers)
        time.sleep(2)
        spent = sum(H.cpu_seconds(pid) for pid in workers) - before
        R.check(spent < 0.5, "workers out of descriptors used %.2f s of CPU in 2 s" % spent)
        d.wait_log(r"error .*accept: Too many open files; accepting again in 500 ms")
        # A pause every 500 ms, but at most a line a minute for each listener of a worker.
        lines = d.log().count("accept: Too many open files")
        R.check(lines <= len(workers), "%d accept failure lines from %d workers in 2 s" % (lines, len(workers)))
    finally:
        for s in socks:
            s.close()
        for pid in workers:
            subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%s:%s" % (hard[pid], hard[pid])], check=True)
    H.wait_until(lambda: d.healthz()[0] == 200, 10, what="/healthz after descriptors were freed")
    R.check(d.worker_pids() == workers, "a worker died or was replaced")


def check_long_call_answered(env):
    """A dispatched call has no deadline: held by a write lock on its mirror for longer than
    header_timeout and keepalive_timeout (which are also libevent's inactivity timeout), it
    still gets its answer, and the keep-alive connection goes on."""
    p = PL.P(env, "long_call")
    p.setup([R.TABLE])
    conn = env.daemon.connection(timeout=30)
    hold = max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + SLACK
    box = {}

    def call():
        try:
            box["resp"] = p.rows([R.item_batch(10, 1, lsn=10)], conn=conn)
        except Exception as e:  # noqa: BLE001
            box["error"] = e
    db = sqlite3.connect(p.db_path(), timeout=5, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        sender = threading.Thread(target=call, daemon=True)
        sender.start()
        time.sleep(hold)
        R.check(sender.is_alive(), "the call ended while its mirror was locked: %r" % box)
        db.execute("COMMIT")
    finally:
        db.close()
    sender.join(30)
    R.check("error" not in box, "the held call got no answer after %.1fs: %r"
            % (time.monotonic() - t0, box.get("error")))
    PL.ok_states(box["resp"], "the held call")
    PL.ok_states(p.rows([R.item_batch(10, 100, lsn=20)], conn=conn), "the next call on its connection")
    R.check(R.count_and_lsn(p) == (20, 20), "after both calls: %r" % (R.count_and_lsn(p),))
    conn.close()


def worker_rss_kib(d):
    return max(R.rss_kib(w) for w in d.worker_pids())


def check_flooding_clients_bounded(env):
    """Memory is bounded by the limits, not by what a client sends: endless header lines are cut
    at 64 KiB (HEADERS_MAX), and a client that sends on without reading its answer is read no
    further than a request's worth (limits.max_request_bytes, 16 MiB here). Checked by what the
    worker takes in, and, without sanitizers (whose shadow memory and quarantine make RSS say
    nothing about ours), by its RSS."""
    d = env.daemon
    measure_rss = not os.environ.get("SOMIRROR_SANITIZERS")
    before = worker_rss_kib(d)
    sent_headers = 0
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(200):   # 13 MB of headers
                s.sendall(b"X-Pad: " + b"a" * 65536 + b"\r\n")
                sent_headers += 65545
        except OSError:
            pass   # answered 400 and closed: the point
    R.check(sent_headers < 8 * 1000000, "headers flood: %d bytes of headers taken" % sent_headers)
    if measure_rss:
        R.check(worker_rss_kib(d) < before + 4096, "headers flood: worker RSS %d KiB (was %d)"
                % (worker_rss_kib(d), before))
    p = PL.P(env, "no_reader")
    answer_body = H.envelope(H.authenticate_body("A" * 4000000), p.token()).encode()
    with socket.create_connection(("127.0.0.1", d.port), timeout=3) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(R.post_head(d.port, len(answer_body)).replace(b"RowData", b"Authenticate") + answer_body)
        time.sleep(0.5)
        s.sendall(R.post_head(d.port, 15000000))
        sent = 0
        try:
            while sent < 100 * 1000000:
                s.sendall(b"x" * 1000000)
                sent += 1000000
        except OSError:
            pass   # the worker stopped reading: the send timed out
        grown = worker_rss_kib(d) - before
    R.check(sent < 40 * 1000000, "a client not reading its answer: %d MB taken" % (sent // 1000000))
    if measure_rss:
        R.check(grown < 48 * 1024, "a client not reading its answer: worker RSS grew %d KiB" % grown)
    p.setup([R.TABLE])
    PL.ok_states(p.rows([R.item_batch(5, 1, lsn=1)]), "a call after the floods")


def check_withheld_bodies_bounded(framing):
    """Bodies sent by many clients at once, each with its last bytes withheld (before any token
    is checked), take no more than limits.arriving_request_bytes (8 MiB here) plus one request
    (16 MiB) in a worker, not a body's worth per connection: of 12 connections offering 15 MB
    each, one gets its 15 MB in and the others wait (all of it, 180 MB, before), while small
    requests go through. Chunked bodies too, which evhttp moves out of the connection's input
    chunk by chunk (all of them, 180 MB, were taken before), also when a line starting with a
    NUL byte ends their headers, as it does for evhttp. Its own somirrord, one worker,
    with the default request_timeout, so that no connection is closed meanwhile; closed, the
    next call is served."""
    with H.server(workers=1, **{"limits.max_request_bytes": "16MiB",
                                "limits.arriving_request_bytes": "8MiB"}) as env:
        d = env.daemon
        measure_rss = not os.environ.get("SOMIRROR_SANITIZERS")
        before = R.rss_kib(d.worker_pids()[0])
        socks, sent = [], 0
        chunk = b"x" * 262144
        head = R.post_head(d.port, 16000000)
        piece = chunk
        if framing != "content-length":
            head = head.replace(b"Content-Length: 16000000\r\n", b"Transfer-Encoding: chunked\r\n")
            piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if framing == "chunked, NUL line":
            head = head[:-2] + b"\0\r\n"
        try:
            for _ in range(12):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                socks.append(s)
                s.sendall(head)
                try:
                    for _ in range(15000000 // len(chunk)):
                        s.sendall(piece)
                        sent += len(chunk)
                except OSError:
                    pass   # held: the worker reads no more of it
            grown = R.rss_kib(d.worker_pids()[0]) - before
            # Meanwhile small requests go through: a health check, an Authenticate and a
            # TableSchema.
            started = time.monotonic()
            R.check(d.healthz()[0] == 200, "/healthz while bodies are held")
            PL.P(env, "during_withheld").setup([R.TABLE])
            R.check(time.monotonic() - started < 5, "small calls waited %.1f s behind held bodies"
                    % (time.monotonic() - started))
        finally:
            for s in socks:
                s.close()
        R.check(sent < 40 * 1000000, "withheld bodies: %d MB taken by the worker" % (sent // 1000000))
        if measure_rss:
            R.check(grown < 48 * 1024, "withheld bodies: the worker's RSS grew %d KiB" % grown)
        p = PL.P(env, "after_withheld")
        p.setup([R.TABLE])
        PL.ok_states(p.rows([R.item_batch(5, 1, lsn=1)]), "a call after the withheld bodies")


def answered_within(sock, seconds):
    """Whether an HTTP answer's first bytes come on sock within seconds."""
    sock.settimeout(seconds)
    try:
        return sock.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


HELD_LIMITS = {"limits.max_request_bytes": "1MiB", "limits.arriving_request_bytes": "48KiB",
               "limits.request_timeout": 20}


def bodies_side_by_side(connect, port, what):
    """Two 800 KB bodies past limits.arriving_request_bytes, sent in turn, then the rest of
    each at once (from threads, which a held body blocks): both must be answered within 10 s.
    The socket is left alone while its thread sends (a TLS socket is not for two threads)."""
    length, first = 800000, 300000
    bodies = [connect() for _ in range(2)]
    for s in bodies:
        s.sendall(R.post_head(port, length))
    for s in bodies:   # part of each, in turn: each past HEADERS_MAX and the budget
        s.sendall(b"x" * first)
        time.sleep(0.3)
    rest = [threading.Thread(target=s.sendall, args=(b"x" * (length - first),), daemon=True)
            for s in bodies]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 10
    for i, (s, t) in enumerate(zip(bodies, rest)):
        t.join(max(0, deadline - time.monotonic()))
        R.check(not t.is_alive() and answered_within(s, max(0.1, deadline - time.monotonic())),
                "%s: body %d not answered" % (what, i + 1))
        s.close()


def check_held_bodies_complete():
    """Held bodies never wait for one another, nor for input that cannot drop by itself: two
    bodies sent side by side past limits.arriving_request_bytes (48 KiB here) are both
    answered; so are a body held by the read that completes it and the bodies held after it;
    and so is a 200 KB body sent while two clients pipeline requests without reading the
    answers (their input fills the budget for good). Each used to wait until request_timeout
    (20 s here) closed it unanswered; an answer within 10 s is no such wait."""
    with H.server(workers=1, **HELD_LIMITS) as env:
        port = env.daemon.port
        bodies_side_by_side(lambda: socket.create_connection(("127.0.0.1", port), timeout=5), port,
                            "two bodies side by side")

        # A body held by the very read that completes it (B) is answered, and does not stand
        # for the held bodies (D1, D2) once the one reading in (A) is done.
        def connect_and_send(length, sent):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(R.post_head(port, length) + b"x" * sent)
            time.sleep(0.5)
            return s
        a = connect_and_send(300000, 60000)
        b = connect_and_send(100000, 60000)
        b.sendall(b"x" * 40000)
        R.check(answered_within(b, 10), "a body completed as it was held: not answered")
        held = [connect_and_send(300000, 100000) for _ in range(2)]
        a.sendall(b"x" * 240000)
        R.check(answered_within(a, 10), "the body read in while others were held: not answered")
        for s in held:
            threading.Thread(target=s.sendall, args=(b"x" * 200000,), daemon=True).start()
        for i, s in enumerate(held):
            R.check(answered_within(s, 10), "held body %d after the one read in: not answered" % (i + 1))
        for s in [a, b] + held:
            s.close()

        stuffers = []
        pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            blocked_since = None
            while blocked_since is None or time.monotonic() - blocked_since < 0.5:
                try:
                    s.send(pipelined)
                    blocked_since = None
                except BlockingIOError:
                    blocked_since = blocked_since or time.monotonic()
                    time.sleep(0.01)
            stuffers.append(s)
        try:
            body = socket.create_connection(("127.0.0.1", port), timeout=5)
            body.sendall(R.post_head(port, 200000) + b"x" * 200000)
            R.check(answered_within(body, 10), "a 200 KB body behind clients that do not read: not answered")
            body.close()
        finally:
            for s in stuffers:
                s.close()


def check_held_tls_bodies_complete():
    """The same two bodies over TLS, whose connections are held and let go through libevent's
    OpenSSL bufferevent (a hold pauses its reads of records, a release resumes them)."""
    with H.server(start=False) as env:
        cert, key = H.make_tls_pair(env.dir)
        port = H.free_port()
        env.daemon.rewrite_config(workers=1, listen=["127.0.0.1:%d" % env.daemon.port, {
            "address": "127.0.0.1:%d" % port, "tls": {"certificate": cert, "key": key}}], **HELD_LIMITS)
        env.daemon.start()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        bodies_side_by_side(lambda: context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)),
                            port, "two TLS bodies side by side")


def check_disconnect_mid_body(env):
    d = env.daemon
    p = PL.P(env, "disconnect_mid_body")
    p.setup([R.TABLE])
    PL.ok_states(p.rows([R.item_batch(10, 1, lsn=10)]), "baseline")
    before = R.count_and_lsn(p)
    workers = d.worker_pids()
    body = H.envelope(H.row_data_body([R.item_batch(20000, 1000, lsn=99)]), p.token()).encode()
    for how in ("fin", "rst"):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(R.post_head(d.port, len(body)) + body[:len(body) // 2])
        time.sleep(0.3)
        if how == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)
    H.wait_until(lambda: R.busy_worker(d) is None, 5, what="no worker busy after the disconnects")
    R.check(R.count_and_lsn(p) == before, "rows/lsn changed by a truncated call: %r, before %r"
            % (R.count_and_lsn(p), before))
    R.check(d.worker_pids() == workers and all(H.pid_alive(w) for w in workers),
            "workers changed: %r -> %r" % (workers, d.worker_pids()))
    PL.ok_states(p.rows([R.item_batch(10, 100, lsn=20)]), "the next call")
    R.check(R.count_and_lsn(p) == (20, 20), "after the next call: %r" % (R.count_and_lsn(p),))


def check_gone_client_not_run(env):
    """A whole RowData sent and the connection closed while every worker was held up (SIGSTOP):
    the worker that reads it finds its client gone and does not run it (its sender died, and a
    newer cycle may have run meanwhile); the same call from a client that waits is applied."""
    d = env.daemon
    p = PL.P(env, "gone_client")
    p.setup([R.TABLE])
    PL.ok_states(p.rows([R.item_batch(10, 1, lsn=10)]), "baseline")
    before = R.count_and_lsn(p)
    body = H.envelope(H.row_data_body([R.item_batch(5, 500, lsn=50)]), p.token()).encode()
    workers = d.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
            s.sendall(R.post_head(d.port, len(body)) + body)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    d.wait_log(r"the client closed \(or half-closed\) its connection before its call ran: the call is not run "
               r"\(client 127\.0\.0\.1:\d+\)")
    R.check(R.count_and_lsn(p) == before, "a call whose client had gone was run: %r, before %r"
            % (R.count_and_lsn(p), before))
    PL.ok_states(p.rows([R.item_batch(5, 500, lsn=50)]), "the same call, its client waiting")
    R.check(R.count_and_lsn(p) == (15, 50), "after the call: %r" % (R.count_and_lsn(p),))


def main():
    limit = R.raise_nofile(4096)
    if limit < 1100:
        H.skip("cannot raise the open-file limit to 1,100 (have %d)" % limit)
    with H.server(**LIMITS) as env:
        attack = {}

        def sender():
            attack.update(slow_attack(env))
            check_sender_during_attack(env, attack)
        R.run_checks([("a real sender is served during slowloris and slow bodies", sender),
                      ("slowloris connections time out", lambda: check_slowloris_closed(env, attack)),
                      ("slow bodies time out", lambda: check_slow_body_closed(env, attack)),
                      ("1,000 idle connections", lambda: check_idle_connections(env)),
                      ("out of file descriptors", lambda: check_out_of_descriptors(env)),
                      ("a call held past every timeout is answered", lambda: check_long_call_answered(env)),
                      ("flooding clients take bounded memory", lambda: check_flooding_clients_bounded(env)),
                      ("withheld bodies take bounded memory",
                       lambda: check_withheld_bodies_bounded("content-length")),
                      ("withheld chunked bodies take bounded memory",
                       lambda: check_withheld_bodies_bounded("chunked")),
                      ("withheld chunked bodies after a NUL header line take bounded memory",
                       lambda: check_withheld_bodies_bounded("chunked, NUL line")),
                      ("held bodies never wait for one another", check_held_bodies_complete),
                      ("held TLS bodies never wait for one another", check_held_tls_bodies_complete),
                      ("disconnect in the middle of a body", lambda: check_disconnect_mid_body(env)),
                      ("a call whose client has gone is not run", lambda: check_gone_client_not_run(env))])


if __name__ == "__main__":
    main()
