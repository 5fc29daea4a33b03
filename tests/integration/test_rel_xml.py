#!/usr/bin/env python3
"""Hostile XML (protocol.md section 2: "DTDs, external entities and entity expansion are refused
(MalformedRequest)"): external entities (file and http, the latter pointed at a listener of this
test that must never be contacted), a plain DTD, an entity-expansion bomb, a quadratic blowup,
100,000 nested elements (in the body and in a foreign header block), a 10 MB attribute value,
invalid UTF-8 bytes. Each is answered MalformedRequest in under 2 s, nothing of /etc/passwd
leaks, the workers stay the same processes and their memory stays bounded (VmRSS growth and
peak VmHWM)."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

NS, SOAP = H.NS, H.SOAP_NS
MAX_SECONDS = 2.0
# Per worker, after everything: a worker keeps up to 32 MiB of freed call memory in each malloc
# arena for the next calls (worker.c, CALL_MEMORY_KEPT), and a large RowData body is parsed by
# two threads, each with an arena of its own: seen 40-46 MB after the 10 MB bodies, about 31 MB
# of it kept before the two threads. Leaks are caught by valgrind and LeakSanitizer (units,
# the fuzz corpora); this bounds what is kept.
RSS_GROWTH_KIB = 48 * 1024
PEAK_KIB = 128 * 1024            # VmHWM per worker (a 10 MB body is parsed; an expansion is not)


def envelope(token, body, prolog="", header_extra="", decl=True):
    head = '<?xml version="1.0" encoding="utf-8"?>' if decl else ""
    return ('%s%s<s:Envelope xmlns:s="%s"><s:Header><SignedToken s:mustUnderstand="1" xmlns="%s">%s'
            '</SignedToken>%s</s:Header><s:Body>%s</s:Body></s:Envelope>'
            % (head, prolog, SOAP, NS, token, header_extra, body))


def auth_with_state(state):
    return '<AuthenticateRequest xmlns="%s"><ClientState>%s</ClientState></AuthenticateRequest>' % (NS, state)


class Canary:
    """A TCP listener that records any connection (an external entity fetched over http)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def payloads(token, canary_port):
    bomb = ['<!DOCTYPE s:Envelope [<!ENTITY l0 "lol">']
    for i in range(1, 11):
        bomb.append('<!ENTITY l%d "%s">' % (i, ("&l%d;" % (i - 1)) * 10))
    bomb.append("]>")
    big = "A" * 100000
    quadratic = '<!DOCTYPE s:Envelope [<!ENTITY q "%s">]>' % big
    deep_body = ('<RowDataRequest xmlns="%s"><Batches>' % NS + "<Batch>" * 100000 + "</Batch>" * 100000 +
                 "</Batches></RowDataRequest>")
    deep_header = ('<x:a xmlns:x="urn:foreign">' + "<x:a>" * 100000 + "</x:a>" * 100000 + "</x:a>")
    huge_attr = ('<RowDataRequest xmlns="%s"><Batches><Batch><Table>item</Table><Columns><Name>id</Name>'
                 '<Name>note</Name><Name>amount</Name></Columns><Rows><Row op="%s"><V>1</V><N/><N/></Row>'
                 '</Rows></Batch></Batches></RowDataRequest>' % (NS, "I" * (10 * 1024 * 1024)))
    huge_lsn = huge_attr.replace('op="' + "I" * (10 * 1024 * 1024) + '"',
                                 'op="I" lsn="%s"' % ("9" * (10 * 1024 * 1024)))
    return [
        ("external entity (file)", "Authenticate", envelope(
            token, auth_with_state("&xxe;"),
            prolog='<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>').encode()),
        ("external entity (http)", "Authenticate", envelope(
            token, auth_with_state("&xxe;"),
            prolog='<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "http://127.0.0.1:%d/xxe">]>' % canary_port).encode()),
        ("external parameter entity", "Authenticate", envelope(
            token, auth_with_state("x"),
            prolog='<!DOCTYPE s:Envelope [<!ENTITY %% p SYSTEM "http://127.0.0.1:%d/dtd"> %%p;]>'
                   % canary_port).encode()),
        ("external DTD", "Authenticate", envelope(
            token, auth_with_state("x"),
            prolog='<!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:%d/ext.dtd">' % canary_port).encode()),
        ("plain DTD", "Authenticate", envelope(token, auth_with_state("x"),
                                               prolog="<!DOCTYPE s:Envelope>").encode()),
        ("internal entity", "Authenticate", envelope(
            token, auth_with_state("&e;"), prolog='<!DOCTYPE s:Envelope [<!ENTITY e "hello">]>').encode()),
        ("entity expansion bomb", "Authenticate", envelope(token, auth_with_state("&l10;"),
                                                           prolog="".join(bomb)).encode()),
        ("quadratic blowup", "Authenticate", envelope(token, auth_with_state("&q;" * 20000),
                                                      prolog=quadratic).encode()),
        ("100,000 nested elements in the body", "RowData", envelope(token, deep_body).encode()),
        ("100,000 nested elements in a foreign header", "Authenticate",
         envelope(token, auth_with_state("x"), header_extra=deep_header).encode()),
        ("10 MB attribute value (op)", "RowData", envelope(token, huge_attr).encode()),
        ("10 MB attribute value (lsn)", "RowData", envelope(token, huge_lsn).encode()),
        ("invalid UTF-8 in text", "Authenticate",
         envelope(token, auth_with_state("ok")).encode().replace(b">ok<", b">\xff\xfe\xc3\x28\xed\xa0\x80<")),
        ("invalid UTF-8 in an element name", "Authenticate",
         envelope(token, auth_with_state("ok")).encode().replace(b"<ClientState>ok</ClientState>",
                                                                 b"<Client\xc0\xafState>ok</Client\xc0\xafState>")),
        # libxml2 2.9 compares each attribute with every one before it (n^2): 200,000 took 23 s.
        ("200,000 attributes on one element, no token", "Authenticate", envelope(
            "", auth_with_state("x")).encode().replace(
                b"<ClientState>", b"<ClientState" + b"".join(b' a%d="1"' % i for i in range(200000)) + b">")),
        ("200,000 namespace declarations", "Authenticate", envelope(
            token, auth_with_state("x")).encode().replace(
                b"<ClientState>", b"<ClientState" + b"".join(b' xmlns:n%d="urn:%d"' % (i, i)
                                                           for i in range(200000)) + b">")),
        ("declared encoding lies (UTF-16)", "Authenticate",
         envelope(token, auth_with_state("ok"), decl=False).encode().join(
             [b'<?xml version="1.0" encoding="UTF-16"?>', b""])),
    ]


def worker_memory(d):
    return {pid: (R.rss_kib(pid), int(R.proc_status(pid).get("VmHWM", "0 kB").split()[0]))
            for pid in d.worker_pids()}


def main():
    with H.server(workers=2, **{"log.level": "info", "limits.max_request_bytes": "32MiB"}) as env:
        d = env.daemon
        p = PL.P(env, "hostilexml")
        p.setup([R.TABLE])
        # Warm up both workers so that the baseline includes their steady state.
        for _ in range(6):
            p.auth()
            PL.ok_states(p.rows([R.item_batch(200, 1, lsn=None)]), "warm-up")
        workers = d.wait_workers(2)
        base = worker_memory(d)
        canary = Canary()
        checks = []
        try:
            for label, op, data in payloads(p.token(), canary.port):
                def one(op=op, data=data, label=label):
                    t0 = time.monotonic()
                    r = p.call(op, None, raw=data, timeout=30)
                    took = time.monotonic() - t0
                    PL.expect_fault(r, "MalformedRequest")
                    R.check(b"root:" not in r.body, "the answer holds /etc/passwd: %r" % r.body[:300])
                    R.check(took < MAX_SECONDS, "answered after %.2fs (limit %.1fs)" % (took, MAX_SECONDS))
                    R.check(canary.hits == 0, "an external entity was fetched over http (%d connections)"
                            % canary.hits)
                    R.check(d.worker_pids() == workers, "workers changed: %r -> %r" % (workers, d.worker_pids()))
                checks.append((label, one))

            def memory():
                now = worker_memory(d)
                problems = []
                if os.environ.get("SOMIRROR_SANITIZERS"):
                    # ASan's shadow memory and quarantine make RSS say nothing about ours: the
                    # bounds are checked in the normal build; here only that the workers serve.
                    now = {}
                # From the warm workers' steady state: the accept balancing may have left one
                # worker without a warm-up call (seen in CI: 4.7 MB against 9.1 MB).
                rss0 = max(rss for rss, _ in base.values())
                for pid, (rss, hwm) in now.items():
                    if rss - rss0 > RSS_GROWTH_KIB:
                        problems.append("worker %d VmRSS %d kB -> %d kB" % (pid, rss0, rss))
                    if hwm > PEAK_KIB:
                        problems.append("worker %d peak VmHWM %d kB" % (pid, hwm))
                print("   worker memory (VmRSS, VmHWM kB): before %r, after %r" % (base, now))
                R.check(not problems, "; ".join(problems))
                PL.ok_states(p.rows([R.item_batch(5, 10000, lsn=7)]), "a normal call afterwards")
            checks.append(("workers' memory bounded, still serving", memory))
            R.run_checks(checks)
        finally:
            canary.close()


if __name__ == "__main__":
    main()
