#!/usr/bin/env python3
"""Hostile SignedTokens over the wire (protocol.md section 3): wrong part counts, bad base64url,
JSON that is not an object, invalid or deeply nested JSON, a 60 KB header, NUL bytes, huge
numbers, claims of the wrong type (signed with the vendor key, so that the claim checks are
reached), a 60 KB HTTP header. Each is refused with the token fault the spec names (on RowData
as a fault; on Authenticate as IsSuccessful false), in bounded time, and afterwards the workers
are the same processes (no crash, no respawn) and a good token still works."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import protolib as PL  # noqa: E402
import rellib as R  # noqa: E402

TOKEN_CODES = ("InvalidToken", "TokenExpired", "WrongIssuer", "WrongAudience")


def signer(env):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    with open(env.keys.vendor_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)

    def sign(header, claims):
        """header/claims: dicts (JSON-encoded) or raw bytes; returns a correctly signed JWS."""
        def enc(part):
            return H.b64url(part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode())
        signing_input = enc(header) + "." + enc(claims)
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + H.b64url(sig)
    return sign


def cases(p, sign):
    now = int(time.time())
    good = p.token()
    h, c, s = good.split(".")
    hdr = {"alg": "RS256", "typ": "JWT"}
    claims = {"iss": "SuperOffice AS", "aud": "spn:" + H.DEFAULT_APP_ID, "exp": now + 300, "nbf": now - 60,
              "sub": p.tenant, H.CTX_CLAIM: p.tenant, "nonce": "ABC123"}

    def with_claims(**kw):
        out = dict(claims)
        out.update(kw)
        return out
    any_token = TOKEN_CODES
    return [
        ("empty token", "", "InvalidToken"),
        ("one part", h, "InvalidToken"),
        ("two parts", h + "." + c, "InvalidToken"),
        ("four parts", good + "." + s, "InvalidToken"),
        ("empty parts", "..", "InvalidToken"),
        ("many dots", "." * 5000, "InvalidToken"),
        ("base64 with + and /", good.replace("-", "+").replace("_", "/") + "+/", "InvalidToken"),
        ("base64 padding", h + "==." + c + "." + s, "InvalidToken"),
        ("non-base64 bytes", "!!!$$$.%%%^^^.***", "InvalidToken"),
        ("impossible base64 length", h[:5] + "." + c + "." + s, "InvalidToken"),
        ("header a JSON array", sign([1, 2, 3], claims), "InvalidToken"),
        ("header a JSON string", sign(b'"RS256"', claims), "InvalidToken"),
        ("header JSON null", sign(b"null", claims), "InvalidToken"),
        ("claims a JSON number", sign(hdr, b"12345"), "InvalidToken"),
        ("claims not JSON", sign(hdr, b"{not json"), "InvalidToken"),
        ("claims truncated UTF-8", sign(hdr, b'{"sub":"\xc3'), "InvalidToken"),
        ("claims with a NUL", sign(hdr, json.dumps(with_claims(sub=p.tenant + "\u0000x", **{
            H.CTX_CLAIM: p.tenant + "\u0000x"})).encode()), "InvalidToken"),
        ("claims deeply nested", sign(hdr, b'{"x":' + b"[" * 100000 + b"]" * 100000 + b"}"), any_token),
        ("duplicate claims", sign(hdr, ('{"iss":"SuperOffice AS","iss":"Evil"' + json.dumps(claims)[1:]).encode()),
         "InvalidToken"),
        ("60 KB header, bad signature", H.b64url(json.dumps(dict(hdr, pad="P" * 60000)).encode()) + "." + c + "." + s,
         "InvalidToken"),
        ("60 KB header, signed", sign(dict(hdr, pad="P" * 60000), claims), None),
        ("1 MB signature", h + "." + c + "." + "A" * (1 << 20), "InvalidToken"),
        ("exp a string", sign(hdr, with_claims(exp=str(now + 300))), "InvalidToken"),
        ("exp an object", sign(hdr, with_claims(exp={"v": now + 300})), "InvalidToken"),
        ("exp huge", sign(hdr, b'{"exp":1e999999,' + json.dumps(claims)[1:].replace('"exp"', '"e"').encode()),
         any_token),
        ("exp negative huge", sign(hdr, with_claims(exp=-(1 << 70))), any_token),
        ("nbf an array", sign(hdr, with_claims(nbf=[now])), "InvalidToken"),
        ("iss a number", sign(hdr, with_claims(iss=42)), ("WrongIssuer", "InvalidToken")),
        ("aud a number", sign(hdr, with_claims(aud=123123123123123123)), ("WrongAudience", "InvalidToken")),
        ("aud an array of objects", sign(hdr, with_claims(aud=[{"spn": H.DEFAULT_APP_ID}])),
         ("WrongAudience", "InvalidToken")),
        ("sub an array", sign(hdr, dict(with_claims(sub=[p.tenant]), **{H.CTX_CLAIM: [p.tenant]})), "InvalidToken"),
        ("ctx a number", sign(hdr, dict(with_claims(), **{H.CTX_CLAIM: 12345, "sub": 12345})), "InvalidToken"),
        ("tenant 10,000 characters", sign(hdr, dict(with_claims(sub="T" * 10000), **{H.CTX_CLAIM: "T" * 10000})),
         "InvalidToken"),
        ("alg a number", sign(dict(hdr, alg=256), claims), "InvalidToken"),
        ("x5t an object", sign(dict(hdr, x5t={"a": 1}), claims), "InvalidToken"),
        ("kid 60 KB", sign(dict(hdr, kid="A" * 60000), claims), "InvalidToken"),
    ]


def main():
    with H.server(workers=2, **{"log.level": "info"}) as env:
        d = env.daemon
        p = PL.P(env, "hostiletokens")
        p.setup([R.TABLE])
        workers = d.wait_workers(2)
        sign = signer(env)
        checks = []
        for label, token, codes in cases(p, sign):
            def one(token=token, codes=codes):
                codes_ = (codes,) if isinstance(codes, str) else codes
                t0 = time.monotonic()
                r = p.call("RowData", H.row_data_body([R.item_batch(1, 1, lsn=1)]), token=token, timeout=20)
                if codes is None:
                    R.check(r.status in (200, 500), "HTTP %d" % r.status)
                else:
                    f = r.fault
                    R.check(f and f["code"] in codes_, "RowData: want %s, got %r" % ("/".join(codes_), r))
                    a = p.call("Authenticate", H.authenticate_body("st"), token=token, timeout=20)
                    R.check(a.status == 200, "Authenticate: HTTP %d %r" % (a.status, a.body[:300]))
                    auth = H.parse_auth(a.body)
                    R.check(auth["IsSuccessful"] == "false" and auth["ErrorMessage"].split(":")[0] in codes_,
                            "Authenticate: %r" % auth)
                    R.check(len(auth["ErrorMessage"]) < 2000, "ErrorMessage of %d bytes" % len(auth["ErrorMessage"]))
                R.check(time.monotonic() - t0 < 4, "took %.1fs" % (time.monotonic() - t0))
                R.check(d.worker_pids() == workers, "workers changed: %r -> %r" % (workers, d.worker_pids()))
            checks.append((label, one))

        def http_header_60k():
            headers = {"Content-Type": "text/xml", "SOAPAction": '"%sRowData"' % H.ACTION_PREFIX,
                       "X-Junk": "J" * 60000}
            try:
                st, body, _ = H.request(d.port, "POST", "/", H.envelope(
                    H.row_data_body([R.item_batch(1, 1, lsn=1)]), "x.y.z").encode(), headers, timeout=10)
            except OSError:
                st = None   # a closed connection is an acceptable refusal
            R.check(st in (None, 400, 413, 431, 500), "a 60 KB HTTP header: HTTP %r" % st)
            R.check(d.worker_pids() == workers, "workers changed: %r -> %r" % (workers, d.worker_pids()))
        checks.append(("60 KB HTTP header", http_header_60k))

        def still_works():
            p.auth()
            PL.ok_states(p.rows([R.item_batch(3, 1, lsn=5)]), "a good token afterwards")
            R.check(d.worker_pids() == workers, "workers changed: %r -> %r" % (workers, d.worker_pids()))
        checks.append(("a good token still works, same workers", still_works))
        R.run_checks(checks)


if __name__ == "__main__":
    main()
