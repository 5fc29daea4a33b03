"""HTTPS listeners: a listener with a tls section serves the protocol over TLS next to a plain
one, and a SIGHUP puts a replaced certificate into service for new connections."""

import hashlib
import http.client
import os
import shutil
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


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


def main():
    plain, secure = harness.free_port(), harness.free_port()
    with harness.server(start=False) as env:
        cert, key = harness.make_tls_pair(env.dir, "first")
        live_cert, live_key = os.path.join(env.dir, "tls.crt"), os.path.join(env.dir, "tls.key")
        shutil.copy(cert, live_cert)
        shutil.copy(key, live_key)
        env.daemon.rewrite_config(listen=["127.0.0.1:%d" % plain, {
            "address": "127.0.0.1:%d" % secure, "tls": {"certificate": live_cert, "key": live_key}}])
        env.daemon.start()

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
        env.daemon.signal(signal.SIGHUP)
        harness.wait_until(lambda: peer_fingerprint(secure)[1] == cert_fingerprint(cert2), 15,
                           what="the renewed certificate in service")
        assert peer_fingerprint(secure)[0] == 200
    print("tls: ok")


if __name__ == "__main__":
    main()
