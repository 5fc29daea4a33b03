"""HTTPS listeners: a listener with a tls section serves the protocol over TLS next to a plain
one; TLS 1.0/1.1 and TLS 1.2 suites without forward secrecy are refused (and TLS 1.2 where
tls.min_version is 1.3); tls.ciphers and tls.ciphersuites replace the suites, and a name in
them that matches nothing fails a reload, saying where; new TLS settings apply at a reload also
while a listen change waits for a restart; a session ticket made
by one worker resumes on every worker (the master makes the context, workers inherit it);
pipelined requests past the input's high-water mark are all answered; a handshake still going
on when a worker drains is completed and its request answered; a close ends with close_notify; plain HTTP
sent to the TLS port is answered 400 and failed handshakes are logged;
a call whose TLS client closed properly before a worker got to it is not run. A SIGHUP puts a replaced
certificate into service for new connections, while files changed without one never reach a
respawned worker; a reload with a mismatched, missing or passphrase-protected key fails at
once, saying why, and the old certificate stays; an expired certificate is served with a
warning."""

import datetime
import hashlib
import http.client
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402


def tls_connection(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)


def peer_fingerprint(port):
    conn = tls_connection(port)
    conn.connect()
    # Taken before the answer: a worker draining after a reload closes the connection with it.
    der = conn.sock.getpeercert(binary_form=True)
    conn.request("GET", "/healthz")
    status = conn.getresponse().status
    conn.close()
    return status, hashlib.sha256(der).hexdigest()


def cert_fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def client_context(maximum=None, ciphers=None, minimum=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def handshake(port, context, session=None):
    """A TLS connection, closed again: (version, session, reused), or raises ssl.SSLError."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, session=session) as conn:
            return conn.version(), conn.session, conn.session_reused


def check_policy(port):
    warnings.simplefilter("ignore", DeprecationWarning)   # the old versions, asked for on purpose
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        context = client_context(minimum=version, maximum=version, ciphers="ALL:@SECLEVEL=0")
        try:
            handshake(port, context)
            raise AssertionError("%s was accepted" % version)
        except (ssl.SSLError, ConnectionResetError):
            pass
    for static_rsa in ("AES128-GCM-SHA256", "AES256-SHA"):
        try:
            handshake(port, client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=static_rsa))
            raise AssertionError("TLS 1.2 with %s (no forward secrecy) was accepted" % static_rsa)
        except (ssl.SSLError, ConnectionResetError):
            pass
    assert handshake(port, client_context(maximum=ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"


def accepts_tls12(port, cipher=None):
    """Whether a TLS 1.2 handshake (offering only cipher, when given) succeeds."""
    try:
        return handshake(port, client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher))[0] == "TLSv1.2"
    except (ssl.SSLError, ConnectionResetError):
        return False


def check_tls13_only(port):
    """A listener with tls.min_version 1.3 refuses TLS 1.2."""
    assert not accepts_tls12(port), "TLS 1.2 was accepted by a min_version 1.3 listener"
    assert handshake(port, client_context())[0] == "TLSv1.3"


def openssl_tls13(port, suite):
    """The TLS 1.3 suite agreed by `openssl s_client` offering only suite, or None if refused
    (Python's ssl module cannot choose TLS 1.3 suites)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3",
                        "-ciphersuites", suite], input=b"", capture_output=True, timeout=30)
    found = re.search(rb"Cipher is (\S+)", r.stdout)
    return found.group(1).decode() if r.returncode == 0 and found else None


def check_cipher_settings(port):
    """tls.ciphers and tls.ciphersuites replace the TLS 1.2 list and the TLS 1.3 suites."""
    assert not accepts_tls12(port, "ECDHE-RSA-AES128-GCM-SHA256"), \
        "a TLS 1.2 cipher left out of tls.ciphers was accepted"
    assert accepts_tls12(port, "ECDHE-RSA-AES256-GCM-SHA384")
    assert openssl_tls13(port, "TLS_AES_128_GCM_SHA256") is None, \
        "a TLS 1.3 suite left out of tls.ciphersuites was accepted"
    assert openssl_tls13(port, "TLS_AES_256_GCM_SHA384") == "TLS_AES_256_GCM_SHA384"


def check_cipher_errors(d, port, listen):
    """A cipher name that matches nothing fails the reload, naming the key's line and the name
    (OpenSSL alone would drop it unseen), and the running ciphers stay."""
    tls = listen[-1]["tls"]
    for key, bad, reason in (("ciphers", "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA38",
                              '"ECDHE-RSA-AES256-GCM-SHA38" matches no TLS 1.2 cipher'),
                             ("ciphers", "TLS_AES_256_GCM_SHA384", '"TLS_AES_256_GCM_SHA384" matches no TLS 1.2 cipher'),
                             ("ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_256_GCM",
                              '"TLS_AES_256_GCM" matches no TLS 1.3 suite')):
        good = tls[key]
        tls[key] = bad
        d.rewrite_config(listen=listen)
        with open(d.config_path) as f:
            line = next(n for n, text in enumerate(f, 1) if '"%s": "%s"' % (key, bad) in text)
        answer = d.ctl("reload")
        tls[key] = good
        d.rewrite_config(listen=listen)
        want = r'%s:%d:\d+: listen 127\.0\.0\.1:%d: tls\.%s: %s' % (re.escape(d.config_path), line, port, key,
                                                               re.escape(reason))
        assert answer.startswith("error: reload failed") and re.search(want, answer), (want, answer)
    check_cipher_settings(port)


def check_tls_while_listen_waits(d, port, listen):
    """A new listen address waits for a restart; the listeners that stay still take their new
    TLS settings (and certificates) at the reload."""
    tls = listen[-1]["tls"]
    tls["ciphers"] = "ECDHE-RSA-AES128-GCM-SHA256"
    d.rewrite_config(listen=listen + ["127.0.0.1:%d" % harness.free_port()])
    old = d.worker_pids()
    assert d.ctl("reload").startswith("ok")
    assert "listen" in d.ctl_json("show info")["restart_required"]
    d.wait_workers(len(old), timeout=30, exclude=old)   # only the new generation accepts now
    assert accepts_tls12(port, "ECDHE-RSA-AES128-GCM-SHA256"), \
        "the new tls.ciphers not in service while a listen change waits"
    assert not accepts_tls12(port, "ECDHE-RSA-AES256-GCM-SHA384")
    tls["ciphers"] = "ECDHE-RSA-AES256-GCM-SHA384"
    d.rewrite_config(listen=listen)
    old = d.worker_pids()
    assert d.ctl("reload").startswith("ok")
    assert not d.ctl_json("show info")["restart_required"]
    d.wait_workers(len(old), timeout=30, exclude=old)
    check_cipher_settings(port)
    # The same addresses in another order are no change of listen; TLS settings follow their
    # address.
    d.rewrite_config(listen=list(reversed(listen)))
    old = d.worker_pids()
    assert d.ctl("reload").startswith("ok")
    assert not d.ctl_json("show info")["restart_required"], "reordered listen taken for a change"
    d.wait_workers(len(old), timeout=30, exclude=old)
    check_cipher_settings(port)
    d.rewrite_config(listen=listen)


def check_resumption(port, daemon):
    """TLS 1.2 session tickets: one context for all workers, so every resumption succeeds.
    The connections stay open, so that they are shared out among the workers."""
    context = client_context(maximum=ssl.TLSVersion.TLSv1_2)
    session = handshake(port, context)[1]
    held, busy = [], []
    try:
        while len(busy) < 2 and len(held) < 64:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(raw)
            conn = context.wrap_socket(raw, session=session)
            held[-1] = conn
            assert conn.session_reused, "a session made by one worker did not resume"
            busy = [w for w in daemon.ctl_json("show workers")["workers"] if w["connections"]]
        assert len(busy) >= 2, "64 connections all reached one worker: %s" % busy
    finally:
        for conn in held:
            conn.close()


def pipelined(port, requests, timeout=30):
    """Sends requests on one TLS connection without waiting, reading answers as they come;
    returns how many answers came before the timeout (one thread, one SSL object)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        conn = client_context().wrap_socket(raw)
        conn.setblocking(False)
        out, got, deadline = b"".join(requests), b"", time.monotonic() + timeout
        while got.count(b"HTTP/1.1 200") < len(requests) and time.monotonic() < deadline:
            readable, writable, _ = select.select([conn], [conn] if out else [], [], 0.2)
            if writable:
                try:
                    out = out[conn.send(out[:16384]):]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            while readable or conn.pending():
                readable = None
                try:
                    chunk = conn.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not chunk:
                    return got.count(b"HTTP/1.1 200")
                got += chunk
        return got.count(b"HTTP/1.1 200")


def check_pipelining(port):
    """2,000 pipelined requests, 2 MB, past the input's high-water mark (max_request_bytes is
    64 KiB here), every other one after an empty line (passed over, RFC 9112 2.2): each is
    answered."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1000 + b"\r\n\r\n"
    answered = pipelined(port, [b"\r\n" * (i % 2) + request for i in range(2000)])
    assert answered == 2000, "%d of 2000 pipelined requests answered" % answered


def check_slow_handshake_across_drain(port, daemon):
    """A TLS 1.2 handshake whose client takes 2 s before its second flight, begun (ClientHello
    sent) just before a reload: the draining worker completes it and answers the request sent
    right after it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(maximum=ssl.TLSVersion.TLSv1_2).wrap_bio(incoming, outgoing)
    flights = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        def flight():
            """One step of the handshake, its output sent (after a pause but the first); True
            once done."""
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = outgoing.read()
            if data:
                if flights:
                    time.sleep(2)
                flights.append(len(data))
                raw.sendall(data)
            return done
        flight()                               # the ClientHello, at once
        generation = daemon.ctl_json("show info")["generation"]
        daemon.signal(signal.SIGHUP)
        done = False
        while not done:                        # the client's second flight, 2 s later
            chunk = raw.recv(65536)
            assert chunk, "the connection was closed during the handshake"
            incoming.write(chunk)
            done = flight()
        tls.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.sendall(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = raw.recv(65536)
            assert chunk, "the connection was closed before its answer (after %r)" % answer
            incoming.write(chunk)
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    harness.wait_until(lambda: daemon.ctl_json("show info")["generation"] > generation, 15,
                       what="the reload")


def check_close_notify(port):
    """An answer framed by the close (Connection: close) ends with TLS's close_notify, so that
    the client can tell it from a cut connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        conn = client_context().wrap_socket(raw, suppress_ragged_eofs=False)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ssl.SSLEOFError:
            raise AssertionError("the connection was closed without close_notify after %r" % answer)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def check_failed_handshakes(port, daemon):
    """Plain HTTP sent to the TLS port is answered 400 saying so, and logged; a handshake that
    fails is logged with the client and the reason; a TCP connection that sends nothing (a
    health check) is not logged."""
    logged_before = len(daemon.log())
    status, _, body = PL.raw_http(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert (status, body) == (400, b"This port speaks HTTPS: the request was plain HTTP.\n"), (status, body)
    daemon.wait_log(r"info .*tls handshake with 127\.0\.0\.1:\d+ failed: plain HTTP sent to a TLS port")
    socket.create_connection(("127.0.0.1", port), timeout=10).close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")   # a handshake record that holds no ClientHello
        while raw.recv(4096):
            pass
    daemon.wait_log(r"info .*tls handshake with 127\.0\.0\.1:\d+ failed: (?!plain)")
    failures = re.findall(r"tls handshake with \S+ failed", daemon.log()[logged_before:])
    assert len(failures) == 2, "the health check's connection was logged, or a failure twice: %r" % failures


def check_gone_client(env, port):
    """A TLS sender that sends a whole RowData and closes properly (close_notify, then FIN)
    while the workers are held up: its call is not run when a worker gets to it."""
    p = PL.P(env, "tlsgone")
    p.setup([R.TABLE])
    PL.ok_states(p.rows([R.item_batch(10, 1, lsn=10)]), "baseline")
    before = R.count_and_lsn(p)
    body = harness.envelope(harness.row_data_body([R.item_batch(300, 500, lsn=50)]), p.token()).encode()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = client_context().wrap_socket(raw)
    workers = env.daemon.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        conn.sendall(R.post_head(port, len(body)) + body)
        conn.setblocking(False)
        try:
            conn.unwrap()   # sends close_notify; the server's own is never read
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        conn.close()        # the socket is conn's now (wrap_socket detached raw)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    env.daemon.wait_log(r"the client closed \(or half-closed\) its connection before its call ran")
    assert R.count_and_lsn(p) == before, "a call whose TLS client had gone was run: %r" % (R.count_and_lsn(p),)


def expired_pair(directory):
    """A self-signed certificate that expired in 2021, and its key (None without
    python3-cryptography, which contrib/install-deps installs)."""
    try:
        from cryptography import x509
    except ImportError:
        return None
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2021, 1, 1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "expired.crt"), os.path.join(directory, "expired.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def check_files_read_by_the_master_only(env, secure, live_cert, live_key, serving):
    """Files changed without a reload never reach a worker, not even a respawned one; a reload
    with a bad key fails at once and says why."""
    d = env.daemon
    d.wait_workers(2, timeout=30)   # the previous generation gone
    _, key3 = harness.make_tls_pair(env.dir, "third")
    shutil.copy(key3, live_key)   # a half-done renewal: the new key, the old certificate
    workers = d.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    d.wait_workers(len(workers), timeout=30, exclude=workers)
    d.wait_healthy()
    assert peer_fingerprint(secure) == (200, serving), "a respawned worker read the files"
    assert "does not match" not in d.log(), d.log()[-2000:]

    encrypted = os.path.join(env.dir, "encrypted.key")
    subprocess.run(["openssl", "pkey", "-in", key3, "-aes256", "-passout", "pass:secret",
                    "-out", encrypted], check=True, capture_output=True)
    cases = (("mismatch", key3, "does not match the certificate"),
             ("missing", None, "No such file or directory"),
             ("encrypted", encrypted, "the key is encrypted"))
    for name, key, reason in cases:
        if key:
            shutil.copy(key, live_key)
        elif os.path.exists(live_key):
            os.unlink(live_key)
        started = time.monotonic()
        answer = d.ctl("reload")
        assert answer.startswith("error: reload failed") and "tls key %s" % live_key in answer \
            and reason in answer, (name, answer)
        assert time.monotonic() - started < 5, (name, "the reload took too long")
        assert peer_fingerprint(secure) == (200, serving), name
    # A certificate OpenSSL's security level refuses (a 512-bit key) is told as such, not as a
    # file that is no PEM.
    weak_key = os.path.join(env.dir, "weak.key")
    harness._openssl("req", "-x509", "-newkey", "rsa:512", "-nodes", "-keyout", weak_key, "-out", live_cert,
                     "-days", "30", "-subj", "/CN=127.0.0.1")
    shutil.copy(weak_key, live_key)
    answer = d.ctl("reload")
    assert answer.startswith("error: reload failed") and "a certificate OpenSSL refuses: ee key too small" in answer, \
        answer
    assert peer_fingerprint(secure) == (200, serving), "weak certificate"


def main():
    plain, secure, tls13, ciphers = (harness.free_port() for _ in range(4))
    with harness.server(start=False) as env:
        cert, key = harness.make_tls_pair(env.dir, "first")
        live_cert, live_key = os.path.join(env.dir, "tls.crt"), os.path.join(env.dir, "tls.key")
        shutil.copy(cert, live_cert)
        shutil.copy(key, live_key)
        listen = ["127.0.0.1:%d" % plain, {
            "address": "127.0.0.1:%d" % secure, "tls": {"certificate": live_cert, "key": live_key}}, {
            "address": "127.0.0.1:%d" % tls13,
            "tls": {"certificate": live_cert, "key": live_key, "min_version": "1.3"}}, {
            "address": "127.0.0.1:%d" % ciphers,
            "tls": {"certificate": live_cert, "key": live_key, "ciphers": "ECDHE-RSA-AES256-GCM-SHA384",
                    "ciphersuites": "TLS_AES_256_GCM_SHA384"}}]
        env.daemon.rewrite_config(workers=2, listen=listen, **{"limits.max_request_bytes": 65536})
        env.daemon.start()
        check_policy(secure)
        check_tls13_only(tls13)
        check_cipher_settings(ciphers)
        check_cipher_errors(env.daemon, ciphers, listen)
        check_tls_while_listen_waits(env.daemon, ciphers, listen)
        check_resumption(secure, env.daemon)
        check_pipelining(secure)
        check_close_notify(secure)
        check_failed_handshakes(secure, env.daemon)
        check_gone_client(env, secure)

        status, seen = peer_fingerprint(secure)
        assert status == 200, status
        assert seen == cert_fingerprint(cert), "the TLS listener does not serve the configured certificate"

        # A whole Authenticate over TLS, on a keep-alive connection.
        conn = tls_connection(secure)
        for _ in range(2):
            code, _, body = harness.soap(secure, "Authenticate", harness.authenticate_body("over tls"),
                                         env.token("TlsCust"), conn=conn)
            assert code == 200, body
            answer = harness.parse_auth(body)
            assert answer["IsSuccessful"] == "true", answer
        conn.close()
        # The plain listener still speaks plain HTTP.
        assert harness.request(plain, "GET", "/healthz")[0] == 200

        # A renewed certificate: replaced on disk, then SIGHUP.
        cert2, key2 = harness.make_tls_pair(env.dir, "second")
        shutil.copy(cert2, live_cert)
        shutil.copy(key2, live_key)
        os.chmod(live_key, 0o644)   # every user may read it: served, with a warning
        env.daemon.signal(signal.SIGHUP)
        harness.wait_until(lambda: peer_fingerprint(secure)[1] == cert_fingerprint(cert2), 15,
                           what="the renewed certificate in service")
        env.daemon.wait_log(r"warn .*listen 127\.0\.0\.1:%d: tls key %s is readable by every user "
                            r"\(mode 0644\)" % (secure, re.escape(live_key)))
        assert peer_fingerprint(secure)[0] == 200
        check_slow_handshake_across_drain(secure, env.daemon)
        check_files_read_by_the_master_only(env, secure, live_cert, live_key, cert_fingerprint(cert2))

        # An expired certificate is served (a client decides), with a warning.
        expired = expired_pair(env.dir)
        if not expired:
            print("tls: ok (the expired certificate not tried: no python3-cryptography)")
            return
        expired_cert, expired_key = expired
        shutil.copy(expired_cert, live_cert)
        shutil.copy(expired_key, live_key)
        assert env.daemon.ctl("reload").startswith("ok"), env.daemon.log()[-2000:]
        assert peer_fingerprint(secure) == (200, cert_fingerprint(expired_cert))
        env.daemon.wait_log(r"warn .*tls certificate %s is expired" % live_cert)
    print("tls: ok")


if __name__ == "__main__":
    main()
