/* tests/unit/test_token: SignedToken checks of protocol section 3 (each rejection, in order),
 * the nonce of 4.1, the base64 codecs, and the SignedApplicationToken, cross-checked with the
 * openssl command line. Keys and self-signed certificates are generated once per run. */
#include <check.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "proto/token.h"

#define NOW ((time_t)1795688100)          /* 2026-11-26T10:15:00Z */
#define SKEW 300
#define APP_ID "123123123123123123"
#define TENANT "Cust12020"
#define NONCE "6D50C131F468876F5B316273B20B69FE"
#define CTX_CLAIM "http://schemes.superoffice.net/identity/ctx"

static EVP_PKEY *key_a, *key_b, *key_unconfigured;
static struct vendor_cert certs[2];
static struct token_policy policy;

/* Setup runs before Check does, so it reports failures itself. */
static void require(int condition, const char *what)
{
    if (!condition) {
        fprintf(stderr, "test_token: setup failed: %s\n", what);
        exit(EXIT_FAILURE);
    }
}

static void make_cert(EVP_PKEY *key, const char *name, struct vendor_cert *out)
{
    X509 *cert = X509_new();
    require(cert != NULL, "X509_new");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    require(X509_sign(cert, key, EVP_sha256()) > 0, "X509_sign");

    unsigned char sha1[20];
    unsigned int sha1_len;
    require(X509_digest(cert, EVP_sha1(), sha1, &sha1_len) == 1, "X509_digest");
    for (unsigned int i = 0; i < sha1_len; i++)
        sprintf(out->kid + 2 * i, "%02x", sha1[i]);
    char *x5t = base64url_encode(sha1, sha1_len);
    require(strlen(x5t) == 27, "x5t length");
    strcpy(out->x5t, x5t);
    free(x5t);
    out->path = strdup(name);
    out->cert = cert;
    out->public_key = X509_get_pubkey(cert);
}

static void setup_keys(void)
{
    key_a = EVP_RSA_gen(2048);
    key_b = EVP_RSA_gen(2048);
    key_unconfigured = EVP_RSA_gen(2048);
    require(key_a && key_b && key_unconfigured, "EVP_RSA_gen");
    make_cert(key_a, "vendor-a.pem", &certs[0]);
    make_cert(key_b, "vendor-b.pem", &certs[1]);
    policy = (struct token_policy){.certs = certs, .ncerts = 2, .issuer = "SuperOffice AS",
                                   .app_id = APP_ID, .clock_skew = SKEW, .allow = NULL};
}

/* A malloc'd formatted string. */
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text;
    require(vasprintf(&text, fmt, ap) >= 0, "vasprintf");
    va_end(ap);
    return text;
}

/* The example claims of section 3, valid at NOW. */
static json_t *base_claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "sub", TENANT, "nonce", NONCE,
                     CTX_CLAIM, TENANT, "nbf", (json_int_t)(NOW - 60), "exp",
                     (json_int_t)(NOW + 360), "iss", "SuperOffice AS", "aud", "spn:" APP_ID);
}

/* Signs claims (taken over) with key, naming x5t/kid in the header when given. */
static char *sign_claims(json_t *claims, EVP_PKEY *key, const char *x5t, const char *kid)
{
    char *text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    char *token = token_sign(key, x5t, kid, text);
    free(text);
    ck_assert_ptr_nonnull(token);
    return token;
}

/* The base claims with one claim replaced (value taken over) or, value NULL, removed. */
static char *token_with(const char *claim, json_t *value)
{
    json_t *claims = base_claims();
    if (value)
        json_object_set_new(claims, claim, value);
    else
        json_object_del(claims, claim);
    return sign_claims(claims, key_a, certs[0].x5t, NULL);
}

static int verify_at(const char *token, time_t now, int need_nonce, struct token_claims *out,
                     struct fault *f)
{
    fault_clear(f);
    return token_verify(token, strlen(token), &policy, now, need_nonce, out, f);
}

/* Asserts that token (freed) fails with code and a message starting with prefix. */
static void expect_fault_at(char *token, time_t now, int need_nonce, enum fault_code code,
                            const char *prefix)
{
    struct fault f;
    struct token_claims claims;
    int rc = verify_at(token, now, need_nonce, &claims, &f);
    free(token);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(f.code == code, "got %s (%s), expected %s", fault_code_name(f.code), f.message,
                  fault_code_name(code));
    ck_assert_msg(strncmp(f.message, prefix, strlen(prefix)) == 0, "message \"%s\" lacks \"%s\"",
                  f.message, prefix);
}

static void expect_fault(char *token, enum fault_code code, const char *prefix)
{
    expect_fault_at(token, NOW, 1, code, prefix);
}

/* Asserts that token (freed) passes and returns its claims. */
static struct token_claims expect_ok_at(char *token, time_t now, int need_nonce)
{
    struct fault f;
    struct token_claims claims;
    int rc = verify_at(token, now, need_nonce, &claims, &f);
    free(token);
    ck_assert_msg(rc == 0, "rejected: %s: %s", fault_code_name(f.code), f.message);
    return claims;
}

static struct token_claims expect_ok(char *token)
{
    return expect_ok_at(token, NOW, 1);
}

/* A token of three given parts: header and claims JSON texts, signed by key_a. */
static char *raw_token(const char *header_json, const char *claims_json)
{
    char *token = token_sign_compact(key_a, header_json, claims_json);
    ck_assert_ptr_nonnull(token);
    return token;
}

static char *base_claims_text(void)
{
    json_t *claims = base_claims();
    char *text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    return text;
}

static char *token_with_header(const char *header_json)
{
    char *claims = base_claims_text();
    char *token = raw_token(header_json, claims);
    free(claims);
    return token;
}

static char *valid_token(void)
{
    return sign_claims(base_claims(), key_a, certs[0].x5t, NULL);
}

START_TEST(test_base64url_codec)
{
    static const struct { const char *bytes; const char *text; } vectors[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"\xfb\xff", "-_8"},
    };
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t len = strlen(vectors[i].bytes);
        char *text = base64url_encode((const unsigned char *)vectors[i].bytes, len);
        ck_assert_str_eq(text, vectors[i].text);
        free(text);
        size_t out_len;
        unsigned char *bytes = base64url_decode(vectors[i].text, strlen(vectors[i].text), &out_len);
        ck_assert_ptr_nonnull(bytes);
        ck_assert_uint_eq(out_len, len);
        ck_assert_int_eq(memcmp(bytes, vectors[i].bytes, len), 0);
        free(bytes);
    }
    static const char *const invalid[] = {"Zg==", "Zg=", "Z+8", "Z/8", "Zm9vY", "Zm 9", "Zm9\n"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        size_t out_len;
        ck_assert_msg(base64url_decode(invalid[i], strlen(invalid[i]), &out_len) == NULL,
                      "accepted %s", invalid[i]);
    }
}
END_TEST

START_TEST(test_base64_padded_codec)
{
    char *text = base64_padded_encode((const unsigned char *)"\xfb\xff", 2);
    ck_assert_str_eq(text, "+/8=");
    free(text);
    size_t len;
    unsigned char *bytes = base64_padded_decode("Zm8=", 4, &len);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_eq(len, 2);
    ck_assert_int_eq(memcmp(bytes, "fo", 2), 0);
    free(bytes);
    static const char *const invalid[] = {"Zm8", "Z===", "Zg=a", "-_8=", "Zm8 ", "Zg==Zg=="};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        ck_assert_msg(base64_padded_decode(invalid[i], strlen(invalid[i]), &len) == NULL,
                      "accepted %s", invalid[i]);
}
END_TEST

START_TEST(test_valid_token_fills_claims)
{
    struct token_claims claims = expect_ok(valid_token());
    ck_assert_str_eq(claims.tenant, TENANT);
    ck_assert_str_eq(claims.nonce, NONCE);
    ck_assert_int_eq(claims.exp, (int64_t)(NOW + 360));
}
END_TEST

START_TEST(test_form_part_count)
{
    char *token = valid_token();
    *strrchr(token, '.') = '\0';                       /* two parts */
    expect_fault(token, FAULT_INVALID_TOKEN, "token form: 2 parts");
    token = valid_token();
    char *four = format("%s.AA", token);
    free(token);
    expect_fault(four, FAULT_INVALID_TOKEN, "token form: 4 parts");
}
END_TEST

START_TEST(test_form_bad_base64url)
{
    char *token = valid_token();
    token[1] = '+';
    expect_fault(token, FAULT_INVALID_TOKEN, "token form: header is not unpadded base64url");
    token = valid_token();
    char *claims_end = strrchr(token, '.');
    char *padded = format("%.*s=%s", (int)(claims_end - token), token, claims_end);
    free(token);
    expect_fault(padded, FAULT_INVALID_TOKEN, "token form: claims is not unpadded base64url");
    token = valid_token();
    char *sig_padded = format("%s=", token);
    free(token);
    expect_fault(sig_padded, FAULT_INVALID_TOKEN, "token form: signature is not unpadded base64url");
}
END_TEST

START_TEST(test_form_header_json)
{
    expect_fault(token_with_header("{\"alg\":\"RS256\""), FAULT_INVALID_TOKEN,
                 "token form: header is not JSON");
    expect_fault(token_with_header("[\"RS256\"]"), FAULT_INVALID_TOKEN,
                 "token form: header is not a JSON object");
    expect_fault(token_with_header("{\"alg\":\"RS256\",\"alg\":\"RS256\"}"), FAULT_INVALID_TOKEN,
                 "token form: header is not JSON");
}
END_TEST

START_TEST(test_form_claims_not_object)
{
    char *token = token_sign(key_a, certs[0].x5t, NULL, "[{\"sub\":\"" TENANT "\"}]");
    ck_assert_ptr_nonnull(token);
    expect_fault(token, FAULT_INVALID_TOKEN, "token form: claims is not a JSON object");
    token = raw_token("{\"alg\":\"RS256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}");
    expect_fault(token, FAULT_INVALID_TOKEN, "token form: claims is not JSON");
}
END_TEST

START_TEST(test_form_too_long)
{
    json_t *claims = base_claims();
    char *filler = malloc(TOKEN_MAX_LEN);
    memset(filler, 'x', TOKEN_MAX_LEN - 1);
    filler[TOKEN_MAX_LEN - 1] = '\0';
    json_object_set_new(claims, "filler", json_string(filler));
    free(filler);
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_INVALID_TOKEN,
                 "token form: longer than");
}
END_TEST

START_TEST(test_alg)
{
    expect_fault(token_with_header("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"), FAULT_INVALID_TOKEN,
                 "alg: HS256 is not RS256");
    expect_fault(token_with_header("{\"alg\":\"none\"}"), FAULT_INVALID_TOKEN,
                 "alg: none is not RS256");
    expect_fault(token_with_header("{\"alg\":256}"), FAULT_INVALID_TOKEN, "alg:");
    expect_fault(token_with_header("{\"typ\":\"JWT\"}"), FAULT_INVALID_TOKEN,
                 "alg: the header has no alg");
    expect_fault(token_with_header("{\"alg\":\"RS256\",\"crit\":[\"exp\"]}"), FAULT_INVALID_TOKEN,
                 "crit:");
    /* The signing input is the header as sent: an extra member is fine. */
    expect_ok(token_with_header("{\"typ\":\"JWT\", \"alg\":\"RS256\", \"cty\":\"x\"}"));
}
END_TEST

START_TEST(test_signature_flipped)
{
    char *token = valid_token();
    char *sig = strrchr(token, '.') + 1;
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    expect_fault(token, FAULT_INVALID_TOKEN, "signature: does not verify");
    /* Other valid claims under the first token's signature. */
    token = valid_token();
    char *other = token_with("sub", NULL);
    char *other_sig = strrchr(other, '.');
    char *spliced = format("%.*s%s", (int)(other_sig - other), other, strrchr(token, '.'));
    free(token);
    free(other);
    expect_fault(spliced, FAULT_INVALID_TOKEN, "signature: does not verify");
}
END_TEST

START_TEST(test_signature_x5t)
{
    expect_ok(sign_claims(base_claims(), key_b, certs[1].x5t, NULL));
    /* x5t names cert B, signed by A: only B is tried. */
    expect_fault(sign_claims(base_claims(), key_a, certs[1].x5t, NULL), FAULT_INVALID_TOKEN,
                 "signature: does not verify with the certificate the x5t names "
                 "(vendor.certificates item 2)");   /* by its place, not its file name */
    expect_fault(sign_claims(base_claims(), key_a, "AAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL),
                 FAULT_INVALID_TOKEN, "signature: the x5t names no configured certificate");
    /* x5t wins over kid. */
    expect_ok(sign_claims(base_claims(), key_a, certs[0].x5t, certs[1].kid));
    expect_fault(token_with_header("{\"alg\":\"RS256\",\"x5t\":7}"), FAULT_INVALID_TOKEN,
                 "signature: the x5t header is not a string");
}
END_TEST

START_TEST(test_signature_kid)
{
    char upper[41];
    for (size_t i = 0; i <= strlen(certs[1].kid); i++)
        upper[i] = (char)toupper((unsigned char)certs[1].kid[i]);
    ck_assert_str_ne(upper, certs[1].kid);
    expect_ok(sign_claims(base_claims(), key_b, NULL, upper));
    expect_fault(sign_claims(base_claims(), key_a, NULL, certs[1].kid), FAULT_INVALID_TOKEN,
                 "signature: does not verify with the certificate the kid names");
    expect_fault(sign_claims(base_claims(), key_a, NULL, "00112233445566778899aabbccddeeff00112233"),
                 FAULT_INVALID_TOKEN, "signature: the kid names no configured certificate");
}
END_TEST

START_TEST(test_signature_each_cert)
{
    expect_ok(sign_claims(base_claims(), key_b, NULL, NULL));   /* second cert matches */
    expect_ok(sign_claims(base_claims(), key_a, NULL, NULL));
    expect_fault(sign_claims(base_claims(), key_unconfigured, NULL, NULL), FAULT_INVALID_TOKEN,
                 "signature: does not verify with any of the 2 configured certificates");
}
END_TEST

START_TEST(test_exp)
{
    expect_fault(token_with("exp", NULL), FAULT_INVALID_TOKEN, "exp: the claim is missing");
    expect_fault(token_with("exp", json_string("1795688100")), FAULT_INVALID_TOKEN,
                 "exp: not a JSON number");
    /* Expired: now == exp + skew. */
    expect_fault_at(token_with("exp", json_integer(NOW)), NOW + SKEW, 1, FAULT_TOKEN_EXPIRED,
                    "token expired at 2026-11-26T10:15:00Z");
    /* Within the skew: now == exp + skew - 1. */
    expect_ok_at(token_with("exp", json_integer(NOW)), NOW + SKEW - 1, 1);
    /* A real number. */
    struct token_claims claims = expect_ok(token_with("exp", json_real((double)NOW + 0.5)));
    ck_assert_int_eq(claims.exp, (int64_t)NOW);
    expect_fault_at(token_with("exp", json_real((double)NOW - SKEW + 0.5)), NOW + 1, 1,
                    FAULT_TOKEN_EXPIRED, "token expired at 2026-11-26T10:10:00Z");
    /* An integer beyond int64 is still a JSON number: far in the future, valid. */
    json_t *without_exp = base_claims();
    json_object_del(without_exp, "exp");
    char *rest = json_dumps(without_exp, JSON_COMPACT);
    json_decref(without_exp);
    struct buf far = BUF_INIT;
    buf_printf(&far, "{\"exp\":99999999999999999999,%s", rest + 1);
    free(rest);
    claims = expect_ok(raw_token("{\"alg\":\"RS256\"}", far.data));
    buf_free(&far);
    ck_assert_int_eq(claims.exp, INT64_MAX);
}
END_TEST

START_TEST(test_nbf)
{
    expect_fault(token_with("nbf", json_integer(NOW + SKEW + 1)), FAULT_TOKEN_EXPIRED,
                 "token not valid before 2026-11-26T10:20:01Z");
    expect_ok(token_with("nbf", json_integer(NOW + SKEW)));
    expect_ok(token_with("nbf", NULL));
    expect_fault(token_with("nbf", json_string("soon")), FAULT_INVALID_TOKEN,
                 "nbf: not a JSON number");
    /* Far outside time_t: reported as the number (found by the token fuzzer under UBSan). */
    expect_fault(token_with("nbf", json_real(11e300)), FAULT_TOKEN_EXPIRED,
                 "token not valid before 1.1e+301 (not a date)");
}
END_TEST

START_TEST(test_iss)
{
    expect_fault(token_with("iss", json_string("Evil AS")), FAULT_WRONG_ISSUER,
                 "iss: \"Evil AS\" is not the configured issuer");
    expect_fault(token_with("iss", NULL), FAULT_WRONG_ISSUER, "iss: the claim is missing");
    expect_fault(token_with("iss", json_integer(1)), FAULT_WRONG_ISSUER, "iss: not a string");
}
END_TEST

START_TEST(test_aud)
{
    expect_ok(token_with("aud", json_string("spn:" APP_ID)));
    expect_ok(token_with("aud", json_pack("[s, s]", "spn:other", "spn:" APP_ID)));
    expect_fault(token_with("aud", NULL), FAULT_WRONG_AUDIENCE, "aud: the claim is missing");
    expect_fault(token_with("aud", json_string("spn:999")), FAULT_WRONG_AUDIENCE,
                 "aud: does not contain spn:" APP_ID);
    expect_fault(token_with("aud", json_string(APP_ID)), FAULT_WRONG_AUDIENCE, "aud: does not");
    expect_fault(token_with("aud", json_pack("[i, i]", 1, 2)), FAULT_WRONG_AUDIENCE,
                 "aud: an element of the array is not a string");
    expect_fault(token_with("aud", json_pack("[s, i]", "spn:" APP_ID, 2)), FAULT_WRONG_AUDIENCE,
                 "aud: an element");
    expect_fault(token_with("aud", json_pack("{s:s}", "spn", APP_ID)), FAULT_WRONG_AUDIENCE,
                 "aud: neither a string nor an array");
}
END_TEST

START_TEST(test_tenant)
{
    ck_assert_str_eq(expect_ok(token_with("sub", NULL)).tenant, TENANT);            /* ctx only */
    ck_assert_str_eq(expect_ok(token_with(CTX_CLAIM, NULL)).tenant, TENANT);        /* sub only */
    expect_fault(token_with("sub", json_string("Cust1")), FAULT_INVALID_TOKEN,
                 "tenant: the ctx claim and sub differ");
    json_t *claims = base_claims();
    json_object_del(claims, "sub");
    json_object_del(claims, CTX_CLAIM);
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_INVALID_TOKEN, "tenant: neither");

    claims = base_claims();
    json_object_del(claims, "sub");
    json_object_set_new(claims, CTX_CLAIM, json_string("Cust-1"));
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_INVALID_TOKEN,
                 "tenant: \"Cust-1\" is not a valid context identifier");

    char name[54];
    memset(name, 'a', 53);
    name[53] = '\0';
    claims = base_claims();
    json_object_del(claims, CTX_CLAIM);
    json_object_set_new(claims, "sub", json_string(name));
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_INVALID_TOKEN, "tenant:");
    name[52] = '\0';
    claims = base_claims();
    json_object_del(claims, CTX_CLAIM);
    json_object_set_new(claims, "sub", json_string(name));
    ck_assert_str_eq(expect_ok(sign_claims(claims, key_a, NULL, NULL)).tenant, name);

    expect_fault(token_with(CTX_CLAIM, json_integer(12020)), FAULT_INVALID_TOKEN,
                 "tenant: the ctx claim is not a string");
}
END_TEST

START_TEST(test_allow_list)
{
    char *allowed_names[] = {"Cust1", TENANT};
    struct cfg_strings allow = {allowed_names, 2};
    policy.allow = &allow;
    expect_ok(valid_token());
    allowed_names[1] = "cust12020";                   /* compared exactly */
    expect_fault(valid_token(), FAULT_TENANT_NOT_ALLOWED, "tenant Cust12020 is not on the allow");
    allow.n = 0;                                      /* empty: any tenant */
    expect_ok(valid_token());
    policy.allow = NULL;
}
END_TEST

START_TEST(test_nonce)
{
    expect_fault(token_with("nonce", NULL), FAULT_INVALID_TOKEN, "nonce: the claim is missing");
    ck_assert_str_eq(expect_ok_at(token_with("nonce", NULL), NOW, 0).nonce, "");
    char nonce[130];
    memset(nonce, 'n', 129);
    nonce[129] = '\0';
    expect_fault(token_with("nonce", json_string(nonce)), FAULT_INVALID_TOKEN, "nonce: not 1 to");
    nonce[128] = '\0';
    ck_assert_str_eq(expect_ok(token_with("nonce", json_string(nonce))).nonce, nonce);
    expect_fault(token_with("nonce", json_string("abc.def")), FAULT_INVALID_TOKEN, "nonce: not 1");
    expect_fault(token_with("nonce", json_string("")), FAULT_INVALID_TOKEN, "nonce: not 1");
    expect_fault(token_with("nonce", json_integer(5)), FAULT_INVALID_TOKEN, "nonce: not a string");
    ck_assert_str_eq(expect_ok(token_with("nonce", json_string("a-b_C9"))).nonce, "a-b_C9");
}
END_TEST

START_TEST(test_check_order)
{
    /* Expired and wrong issuer: check 5 comes first. */
    json_t *claims = base_claims();
    json_object_set_new(claims, "iss", json_string("Evil AS"));
    json_object_set_new(claims, "exp", json_integer(NOW - 3600));
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_TOKEN_EXPIRED, "token expired");
    /* Expired and unsigned by any configured key: check 4 comes first. */
    claims = base_claims();
    json_object_set_new(claims, "exp", json_integer(NOW - 3600));
    expect_fault(sign_claims(claims, key_unconfigured, NULL, NULL), FAULT_INVALID_TOKEN,
                 "signature:");
    /* Wrong audience and bad tenant: check 7 first; bad tenant and missing nonce: 8 first. */
    claims = base_claims();
    json_object_set_new(claims, "aud", json_string("spn:1"));
    json_object_set_new(claims, "sub", json_string("x-y"));
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_WRONG_AUDIENCE, "aud:");
    claims = base_claims();
    json_object_del(claims, "nonce");
    json_object_set_new(claims, "sub", json_string("x-y"));
    expect_fault(sign_claims(claims, key_a, NULL, NULL), FAULT_INVALID_TOKEN, "tenant:");
}
END_TEST

/* Runs a shell command in dir; returns its exit status. */
static int run_in(const char *dir, const char *command)
{
    char line[1024];
    snprintf(line, sizeof(line), "cd '%s' && %s >/dev/null 2>&1", dir, command);
    int status = system(line);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(fwrite(data, 1, len, file), len);
    fclose(file);
}

static void make_temp_dir(char *dir, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, size, "%s/test_token.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_temp_dir(const char *dir)
{
    char command[600];
    snprintf(command, sizeof(command), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(command), 0);
}

START_TEST(test_token_signed_by_openssl_cli)
{
    char dir[512];
    make_temp_dir(dir, sizeof(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    ck_assert_int_eq(PEM_write_PrivateKey(file, key_b, NULL, NULL, 0, NULL, NULL), 1);
    fclose(file);

    char *header = base64url_encode((const unsigned char *)"{\"alg\":\"RS256\"}", 15);
    char *claims_json = base_claims_text();
    char *claims = base64url_encode((const unsigned char *)claims_json, strlen(claims_json));
    free(claims_json);
    char *input = format("%s.%s", header, claims);
    free(header);
    free(claims);
    write_file(dir, "input.txt", input, strlen(input));
    ck_assert_int_eq(run_in(dir, "openssl dgst -sha256 -sign key.pem -out sig.bin input.txt"), 0);

    snprintf(path, sizeof(path), "%s/sig.bin", dir);
    file = fopen(path, "rb");
    ck_assert_ptr_nonnull(file);
    unsigned char sig[1024];
    size_t sig_len = fread(sig, 1, sizeof(sig), file);
    fclose(file);
    ck_assert_uint_eq(sig_len, 256);
    char *sig_text = base64url_encode(sig, sig_len);
    char *token = format("%s.%s", input, sig_text);
    free(sig_text);
    free(input);
    ck_assert_str_eq(expect_ok(token).tenant, TENANT);
    remove_temp_dir(dir);
}
END_TEST

START_TEST(test_appsign_roundtrip)
{
    struct buf token = BUF_INIT;
    ck_assert_int_eq(appsign_create(key_a, NONCE, NOW + 59, &token), 0);
    ck_assert_int_eq(strncmp(token.data, NONCE ".202611261015.", strlen(NONCE) + 14), 0);
    /* 2048-bit signature: 256 bytes, 344 characters of padded base64. */
    ck_assert_uint_eq(token.len, strlen(NONCE) + 14 + 344);
    ck_assert_str_eq(token.data + token.len - 2, "==");
    char err[256] = "";
    ck_assert_msg(appsign_verify(certs[0].public_key, token.data, NONCE, NOW, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(appsign_verify(certs[1].public_key, token.data, NONCE, NOW, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "signature does not verify"));
    ck_assert_int_eq(appsign_verify(certs[0].public_key, token.data, "6D50C131", NOW, err,
                                    sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "nonce"));
    /* The signature covers the time: change it and the signature fails. */
    char *tampered = strdup(token.data);
    tampered[strlen(NONCE) + 12] = '6';
    ck_assert_int_eq(appsign_verify(certs[0].public_key, tampered, NONCE, NOW, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "signature does not verify"));
    free(tampered);
    ck_assert_int_eq(appsign_create(key_a, "bad.nonce", NOW, &token), -1);
    buf_free(&token);
}
END_TEST

START_TEST(test_appsign_time_window)
{
    struct buf token = BUF_INIT;
    ck_assert_int_eq(appsign_create(key_a, NONCE, NOW, &token), 0);
    char err[256];
    ck_assert_int_eq(appsign_verify(certs[0].public_key, token.data, NONCE, NOW + 15 * 60, err,
                                    sizeof(err)), 0);
    ck_assert_int_eq(appsign_verify(certs[0].public_key, token.data, NONCE, NOW - 15 * 60, err,
                                    sizeof(err)), 0);
    ck_assert_int_eq(appsign_verify(certs[0].public_key, token.data, NONCE, NOW + 16 * 60, err,
                                    sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "seconds from now"));
    ck_assert_int_eq(appsign_verify(certs[0].public_key, token.data, NONCE, NOW - 16 * 60, err,
                                    sizeof(err)), -1);
    buf_free(&token);

    static const char *const malformed[] = {
        NONCE ".202613261015.AAAA", NONCE ".20261126101.AAAA", NONCE ".2026112610150.AAAA",
        NONCE ".202611261015", NONCE, NONCE ".202611261015.AA",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        ck_assert_msg(appsign_verify(certs[0].public_key, malformed[i], NONCE, NOW, err,
                                     sizeof(err)) == -1, "accepted %s", malformed[i]);
}
END_TEST

START_TEST(test_appsign_verified_by_openssl_cli)
{
    struct buf token = BUF_INIT;
    ck_assert_int_eq(appsign_create(key_a, NONCE, NOW, &token), 0);
    char dir[512];
    make_temp_dir(dir, sizeof(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/pub.pem", dir);
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    ck_assert_int_eq(PEM_write_PUBKEY(file, key_a), 1);
    fclose(file);

    const char *sig = strrchr(token.data, '.') + 1;
    write_file(dir, "data.txt", token.data, (size_t)(sig - 1 - token.data));
    write_file(dir, "sig.b64", sig, strlen(sig));
    ck_assert_int_eq(run_in(dir, "openssl base64 -d -A -in sig.b64 -out sig.bin"), 0);
    ck_assert_int_eq(
        run_in(dir, "openssl dgst -sha256 -verify pub.pem -signature sig.bin data.txt"), 0);
    /* The same check fails on other data, so the pass above means something. */
    write_file(dir, "data.txt", "x", 1);
    ck_assert_int_ne(
        run_in(dir, "openssl dgst -sha256 -verify pub.pem -signature sig.bin data.txt"), 0);
    remove_temp_dir(dir);
    buf_free(&token);
}
END_TEST

static Suite *token_suite(void)
{
    Suite *suite = suite_create("token");
    TCase *codec = tcase_create("codec");
    tcase_add_test(codec, test_base64url_codec);
    tcase_add_test(codec, test_base64_padded_codec);
    suite_add_tcase(suite, codec);

    TCase *verify = tcase_create("verify");
    tcase_set_timeout(verify, 30);
    tcase_add_test(verify, test_valid_token_fills_claims);
    tcase_add_test(verify, test_form_part_count);
    tcase_add_test(verify, test_form_bad_base64url);
    tcase_add_test(verify, test_form_header_json);
    tcase_add_test(verify, test_form_claims_not_object);
    tcase_add_test(verify, test_form_too_long);
    tcase_add_test(verify, test_alg);
    tcase_add_test(verify, test_signature_flipped);
    tcase_add_test(verify, test_signature_x5t);
    tcase_add_test(verify, test_signature_kid);
    tcase_add_test(verify, test_signature_each_cert);
    tcase_add_test(verify, test_exp);
    tcase_add_test(verify, test_nbf);
    tcase_add_test(verify, test_iss);
    tcase_add_test(verify, test_aud);
    tcase_add_test(verify, test_tenant);
    tcase_add_test(verify, test_allow_list);
    tcase_add_test(verify, test_nonce);
    tcase_add_test(verify, test_check_order);
    tcase_add_test(verify, test_token_signed_by_openssl_cli);
    suite_add_tcase(suite, verify);

    TCase *appsign = tcase_create("appsign");
    tcase_set_timeout(appsign, 30);
    tcase_add_test(appsign, test_appsign_roundtrip);
    tcase_add_test(appsign, test_appsign_time_window);
    tcase_add_test(appsign, test_appsign_verified_by_openssl_cli);
    suite_add_tcase(suite, appsign);
    return suite;
}

int main(void)
{
    /* The cross-checks need the openssl command: without it the whole program skips (77)
     * rather than passing checks it did not make. */
    if (system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_token: the openssl command is not in PATH; skipped\n");
        return 77;
    }
    setup_keys();
    SRunner *runner = srunner_create(token_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
