#!/usr/bin/python3
"""Protocol section 3 and 4.1 end to end: SignedToken checks over the wire (faults on data
calls, IsSuccessful false on Authenticate), the nonce, fault order, and a successful
Authenticate (seven elements, SignedApplicationToken, ClientState, provisioning)."""

import datetime
import os
import re
import time

import protolib as L
from protolib import H, NS, eq, check, expect_fault

AUTH_ELEMENTS = ["IsSuccessful", "ErrorMessage", "SignedApplicationToken", "SupportedInterfaces",
                 "SuperOfficeMirroringBuild", "ClientState", "AdditionalInformationJson"]
STRANGER = "Stranger1"


def data_call(p, token, op="Wipe"):
    body = {"Wipe": H.wipe_body(["t"]),
            "RowData": H.row_data_body([{"table": "t", "columns": ["id"], "rows": []}]),
            "TableSchema": H.table_schema_body([{"name": "t", "columns": [("id", "int", False)], "pk": ["id"]}]),
            "ReplicationCompleted": H.replication_completed_body()}[op]
    return p.call(op, body, token=token)


def auth_raw(p, token, client_state="", header_extra=""):
    raw = None
    if header_extra:
        raw = H.envelope(H.authenticate_body(client_state), token).replace("</s:Header>", header_extra + "</s:Header>")
    if token is None and raw is None:
        raw = H.envelope(H.authenticate_body(client_state), None)
    r = p.call("Authenticate", H.authenticate_body(client_state), token=token or "", raw=raw)
    check(r.status == 200, "Authenticate failure must be HTTP 200: %r" % r)
    check(not r.fault, "Authenticate check failure must not be a fault: %r" % r)
    el = r.element
    eq([c.tag.split("}")[1] for c in el], AUTH_ELEMENTS, "AuthenticateResponse children")
    return H.parse_auth(r.body)


def expect_auth_failure(p, token, code, client_state="state 1", header_extra=""):
    a = auth_raw(p, token, client_state, header_extra)
    eq(a["IsSuccessful"], "false", "IsSuccessful (%s)" % code)
    check(re.match(r"^%s: \S" % code, a["ErrorMessage"]), "ErrorMessage %r does not start with %s: "
          % (a["ErrorMessage"], code))
    eq(a["SignedApplicationToken"], "", "SignedApplicationToken on failure")
    eq(a["AdditionalInformationJson"], "", "AdditionalInformationJson on failure")
    eq(a["ClientState"], client_state, "ClientState echoed on failure")
    check("PRIVATE" not in a["ErrorMessage"] and "BEGIN" not in a["ErrorMessage"], "key material in message")
    return a


def both(p, token, code, faultcode="s:Client", header_extra=""):
    """The token is refused with code on a data call (fault) and on Authenticate (200, false)."""
    for op in ("Wipe", "RowData", "TableSchema", "ReplicationCompleted"):
        if header_extra:
            body = H.wipe_body(["t"])
            raw = H.envelope(body, token).replace("</s:Header>", header_extra + "</s:Header>")
            r = p.call("Wipe", None, raw=raw)
        elif token is None:
            r = p.call("Wipe", None, raw=H.envelope(H.wipe_body(["t"]), None))
        else:
            r = data_call(p, token, op)
        try:
            expect_fault(r, code, faultcode=faultcode)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (op, e))
        if header_extra or token is None:
            break
    expect_auth_failure(p, token, code, header_extra=header_extra)


def missing_token(p):
    both(p, None, "InvalidToken")


def two_tokens(p):
    extra = '<SignedToken xmlns="%s">%s</SignedToken>' % (NS, p.token())
    both(p, p.token(), "InvalidToken", header_extra=extra)


def token_holding_an_element(p):
    """An element inside SignedToken (in the protocol's namespace): InvalidToken, and the rest
    of the request is still read (Authenticate's ClientState is echoed)."""
    both(p, "<x>%s</x>" % p.token(), "InvalidToken")


def expired(p):
    both(p, p.token(exp=-400), "TokenExpired")          # beyond the default 300 s skew
    both(p, p.token(nbf=1000, exp=2000), "TokenExpired")  # not yet valid
    # Within the skew: accepted.
    p.auth(exp=-100)
    p.auth(nbf=200)
    # exp missing or not a number: InvalidToken.
    both(p, p.token(extra={"exp": None}), "InvalidToken")
    both(p, p.token(extra={"exp": str(int(time.time()) + 300)}), "InvalidToken")
    both(p, p.token(extra={"nbf": "0"}), "InvalidToken")


def wrong_issuer(p):
    both(p, p.token(iss="Someone Else"), "WrongIssuer")
    both(p, p.token(iss="superoffice as"), "WrongIssuer")


def wrong_audience(p):
    both(p, p.token(app_id="999"), "WrongAudience")
    both(p, p.token(extra={"aud": ["spn:1", "spn:2"]}), "WrongAudience")
    both(p, p.token(extra={"aud": H.DEFAULT_APP_ID}), "WrongAudience")   # without spn:
    p.auth(extra={"aud": ["spn:1", "spn:" + H.DEFAULT_APP_ID]})             # array containing it


def bad_signature(p):
    # Signed with another key than the vendor certificate's.
    tok = H.make_token(p.env.keys.app_key_pem, p.env.keys.vendor_cert, p.tenant)
    both(p, tok, "InvalidToken")
    good = p.token()
    h, c, s = good.split(".")
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    both(p, "%s.%s.%s" % (h, c, flipped), "InvalidToken")
    # Claims changed after signing.
    other = p.token(tenant="OtherTenant1").split(".")[1]
    both(p, "%s.%s.%s" % (h, other, s), "InvalidToken")
    both(p, "not-a-token", "InvalidToken")
    both(p, p.token(alg="RS512"), "InvalidToken")
    both(p, p.token(header_extra={"crit": ["exp"]}), "InvalidToken")
    both(p, good + "=", "InvalidToken")


DIGIT_TENANTS = ["12345", "1Cust"]


def tenant_grammar(p):
    for bad in ("Bad-Tenant", "_x", "a" * 53, "Cust 1", "Cust\u00e91", ""):
        tok = p.token(tenant=bad) if bad else p.token(extra={"sub": None, H.CTX_CLAIM: None}, sub=False,
                                                            ctx_claim=False)
        try:
            both(p, tok, "InvalidToken")
        except AssertionError as e:
            raise AssertionError("tenant %r: %s" % (bad, e))
    both(p, p.token(extra={"sub": "OtherOne"}), "InvalidToken")          # ctx != sub
    p.auth(tenant=p.tenant, sub=False)                                       # ctx only
    p.auth(tenant=p.tenant, ctx_claim=False)                                 # sub only
    p.auth(tenant="A" + "b" * 51)                                            # 52 characters
    # A tenant may start with a digit: its mirror and "<ctx>_mirroring" serve as any other's
    # (the store once refused that table's name as an identifier: Internal, retried forever).
    for digits in DIGIT_TENANTS:
        p.auth(tenant=digits)
        p.schema_ok([{"name": "t", "columns": [("id", "int", False)], "pk": ["id"]}], tenant=digits)
        p.rows_ok([{"table": "t", "columns": ["id"], "rows": [("I", None, ["7"])], "lsn": 3}], tenant=digits)
        eq(p.table_rows("t", tenant=digits), [(7,)], "rows of tenant %s" % digits)
        eq(p.meta(tenant=digits)["t"]["lsn"], 3, "position of tenant %s" % digits)


def allow_list(p):
    both(p, p.token(tenant=STRANGER), "TenantNotAllowed")
    check(not os.path.exists(p.db_path(STRANGER)), "a mirror was provisioned for a refused tenant")
    p.auth()


def nonce(p):
    expect_auth_failure(p, p.token(nonce=None), "InvalidToken")
    for bad in ("a b", "x" * 129, "abc.def", "ab+c", "\u00e9"):
        try:
            expect_auth_failure(p, p.token(nonce=bad), "InvalidToken")
        except AssertionError as e:
            raise AssertionError("nonce %r: %s" % (bad, e))
    for good in ("x", "A" * 128, "a-b_C9"):
        a = p.auth(nonce=good)
        check(a["SignedApplicationToken"].startswith(good + "."), "nonce %r in %r" % (good, a["SignedApplicationToken"]))
    # Data calls do not need a nonce.
    p.auth()
    r = p.call("TableSchema", H.table_schema_body([{"name": "t", "columns": [("id", "int", False)], "pk": ["id"]}]),
               token=p.token(nonce=None))
    L.ok_states(r)


def fault_order(p):
    bad = p.token(iss="Nobody")
    # A bad token and an unknown operation: the token fault.
    expect_fault(p.call("Frobnicate", H.authenticate_body(), token=bad), "WrongIssuer")
    # A bad token and a malformed body: the token fault.
    expect_fault(p.call("Wipe", '<WipeRequest xmlns="%s"><Tables/></WipeRequest>' % NS, token=bad), "WrongIssuer")
    expect_fault(p.call("TableSchema", H.authenticate_body(), token=p.token(exp=-1000)), "TokenExpired")
    # Authenticate with a bad token and a malformed body: the token's refusal (4.1), which echoes
    # ClientState (4.1) though it comes after the body's shape error; with a good token, the
    # body's fault.
    for stray in ('<Stray/>', '<Stray xmlns=""/>'):
        body = '<AuthenticateRequest xmlns="%s">%s<ClientState> cs </ClientState></AuthenticateRequest>' % (NS, stray)
        r = p.call("Authenticate", body, token=bad)
        eq((r.status, H.parse_auth(r.body)["ClientState"]), (200, " cs "), "refusal after %s: ClientState" % stray)
        expect_fault(p.call("Authenticate", body), "MalformedRequest")
    # A broken envelope and a bad token: the envelope fault.
    raw = H.envelope(H.wipe_body(["t"]), bad)[:-5]
    expect_fault(p.call("Wipe", None, raw=raw), "MalformedRequest")
    # A good token, an unknown operation and a bad body: UnknownOperation.
    expect_fault(p.call("Frobnicate", '<WipeRequest xmlns="%s"><Tables/></WipeRequest>' % NS), "UnknownOperation")


def auth_success(p):
    check(not os.path.exists(p.db_path()), "mirror exists before the first Authenticate")
    nonce_value = "6D50C131F468876F5B316273B20B69FE"
    state = "  state with spaces & <special> \"quotes\" 'apos' \u00e9\U0001F600 \t end  "
    r = p.call("Authenticate", H.authenticate_body(state), token=p.token(nonce=nonce_value))
    check(r.status == 200 and not r.fault, "Authenticate: %r" % r)
    el = r.element
    eq([c.tag.split("}")[1] for c in el], AUTH_ELEMENTS, "AuthenticateResponse children in order")
    a = H.parse_auth(r.body)
    eq(a["IsSuccessful"], "true", "IsSuccessful")
    eq(a["ErrorMessage"], "", "ErrorMessage")
    eq(a["SupportedInterfaces"], "1", "SupportedInterfaces")
    check(a["SuperOfficeMirroringBuild"].startswith("somirrord/"), "build %r" % a["SuperOfficeMirroringBuild"])
    eq(a["ClientState"], state, "ClientState verbatim")
    eq(a["AdditionalInformationJson"], "", "AdditionalInformationJson")
    sat = a["SignedApplicationToken"]
    check(H.verify_application_token(p.env.keys.app_pub, sat, nonce_value),
          "SignedApplicationToken does not verify: %r" % sat)
    check(re.search(r"=*$", sat.split(".", 2)[2]) and len(sat.split(".", 2)[2]) % 4 == 0,
          "signature not padded standard base64")
    stamp = datetime.datetime.strptime(sat.split(".")[1], "%Y%m%d%H%M").replace(tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds())
    check(skew < 15 * 60, "SignedApplicationToken time %s is %ds off" % (stamp, skew))
    # Provisioned: the mirror file with an empty metadata table.
    check(os.path.exists(p.db_path()), "no %s after the first Authenticate" % p.db_path())
    eq(p.meta(), {}, "metadata rows")
    # ClientState in CDATA and absent.
    raw = H.envelope('<AuthenticateRequest xmlns="%s"><ClientState><![CDATA[ <a> & b ]]></ClientState>'
                     '</AuthenticateRequest>' % NS, p.token())
    eq(H.parse_auth(p.call("Authenticate", None, raw=raw).body)["ClientState"], " <a> & b ", "CDATA ClientState")
    raw = H.envelope('<AuthenticateRequest xmlns="%s"/>' % NS, p.token())
    a = H.parse_auth(p.call("Authenticate", None, raw=raw).body)
    eq((a["IsSuccessful"], a["ClientState"]), ("true", ""), "no ClientState element")
    # A second Authenticate keeps the mirror.
    p.schema_ok([{"name": "t", "columns": [("id", "int", False)], "pk": ["id"]}])
    p.auth()
    eq(list(p.meta()), ["t"], "metadata after a second Authenticate")


def openssl_signer(p):
    # The harness signs with the openssl command where python3-cryptography is missing (a
    # benchmark machine): the same signature and thumbprint bytes, and the service takes the token.
    keys = p.env.keys
    data = b"header.claims"
    eq(H.sign_sha256(keys.vendor_key, data, with_openssl=True), H.sign_sha256(keys.vendor_key, data, with_openssl=False),
       "openssl dgst -sha256 -sign against python3-cryptography")
    eq(H._cert_der(keys.vendor_cert, with_openssl=True), H._cert_der(keys.vendor_cert, with_openssl=False),
       "certificate DER")
    header, claims, _ = p.token().split(".")
    signature = H.sign_sha256(keys.vendor_key, (header + "." + claims).encode(), with_openssl=True)
    r = p.call("Authenticate", H.authenticate_body("s"), token=header + "." + claims + "." + H.b64url(signature))
    eq(H.parse_auth(r.body)["IsSuccessful"], "true", "Authenticate with an openssl-signed token")


CHECKS = [missing_token, two_tokens, token_holding_an_element, expired, wrong_issuer, wrong_audience, bad_signature, tenant_grammar,
          allow_list, nonce, fault_order, auth_success, openssl_signer]

if __name__ == "__main__":
    allowed = [L.tenant_for(f.__name__) for f in CHECKS] + ["A" + "b" * 51] + DIGIT_TENANTS
    L.run(CHECKS, **{"tenants.allow": allowed})
