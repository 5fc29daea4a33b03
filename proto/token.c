/* proto/token: the vendor's SignedToken (JWS compact, RS256), checked in exactly the order of
 * protocol section 3 and then, for Authenticate, the nonce of 4.1; and the signing side used by
 * somirror-task. Fault messages name the failed check; they never carry key material or the
 * token, and a claim value is only quoted as a short printable excerpt. */
#include "proto/token.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "common/xalloc.h"
#include "proto/schema.h"

#define CTX_CLAIM "http://schemes.superoffice.net/identity/ctx"
#define NONCE_MAX 128
#define EXCERPT_MAX 64

enum { PART_HEADER, PART_CLAIMS, PART_SIGNATURE, PART_COUNT };

static const char *const part_names[PART_COUNT] = {"header", "claims", "signature"};

/* The token taken apart by check 2. */
struct parsed_token {
    size_t signing_input_len;       /* "<header>.<claims>" is the token's first bytes */
    json_t *header;
    json_t *claims;
    unsigned char *signature;
    size_t signature_len;
};

/* A claim value for a message: at most EXCERPT_MAX printable ASCII characters, others '?'. */
static void excerpt(const char *value, char *out, size_t outlen)
{
    size_t n = 0;
    for (; value[n] && n < EXCERPT_MAX && n + 1 < outlen; n++)
        out[n] = (value[n] >= 0x20 && value[n] < 0x7f) ? value[n] : '?';
    out[n] = '\0';
    if (value[n] && n >= 3)
        memcpy(out + n - 3, "...", 3);
}

/* Decodes one base64url part into a JSON object (check 2). */
static json_t *decode_json_part(const char *text, size_t len, int part, struct fault *f)
{
    size_t raw_len;
    unsigned char *raw = base64url_decode(text, len, &raw_len);
    if (!raw) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: %s is not unpadded base64url",
                  part_names[part]);
        return NULL;
    }
    json_error_t err;
    /* Integers as reals: any JSON number is a number here (check 5), also one beyond int64,
     * which jansson would otherwise refuse as "too big integer". */
    json_t *object = json_loadb((const char *)raw, raw_len,
                                JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    free(raw);
    if (!object) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: %s is not JSON: %s", part_names[part],
                  err.text);
        return NULL;
    }
    if (!json_is_object(object)) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: %s is not a JSON object",
                  part_names[part]);
        json_decref(object);
        return NULL;
    }
    return object;
}

/* Check 2: three base64url parts, header and claims JSON objects without duplicate keys. */
static int parse_form(const char *jwt, size_t len, struct parsed_token *parsed, struct fault *f)
{
    if (len > TOKEN_MAX_LEN) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: longer than %d bytes", TOKEN_MAX_LEN);
        return -1;
    }
    const char *start[PART_COUNT];
    size_t part_len[PART_COUNT];
    size_t nparts = 0;
    const char *end = jwt + len;
    for (const char *p = jwt;; p++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (nparts < PART_COUNT) {
            start[nparts] = p;
            part_len[nparts] = (size_t)((dot ? dot : end) - p);
        }
        nparts++;
        if (!dot)
            break;
        p = dot;
    }
    if (nparts != PART_COUNT) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: %zu parts, expected three", nparts);
        return -1;
    }
    parsed->signing_input_len = part_len[PART_HEADER] + 1 + part_len[PART_CLAIMS];
    parsed->header = decode_json_part(start[PART_HEADER], part_len[PART_HEADER], PART_HEADER, f);
    if (!parsed->header)
        return -1;
    parsed->claims = decode_json_part(start[PART_CLAIMS], part_len[PART_CLAIMS], PART_CLAIMS, f);
    if (!parsed->claims)
        return -1;
    parsed->signature = base64url_decode(start[PART_SIGNATURE], part_len[PART_SIGNATURE],
                                         &parsed->signature_len);
    if (!parsed->signature) {
        fault_set(f, FAULT_INVALID_TOKEN, "token form: signature is not unpadded base64url");
        return -1;
    }
    return 0;
}

/* Check 3: alg exactly RS256, no crit. */
static int check_algorithm(const json_t *header, struct fault *f)
{
    const json_t *alg = json_object_get(header, "alg");
    if (!alg) {
        fault_set(f, FAULT_INVALID_TOKEN, "alg: the header has no alg");
        return -1;
    }
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "RS256") != 0) {
        char shown[EXCERPT_MAX + 1] = "(not a string)";
        if (json_is_string(alg))
            excerpt(json_string_value(alg), shown, sizeof(shown));
        fault_set(f, FAULT_INVALID_TOKEN, "alg: %s is not RS256", shown);
        return -1;
    }
    if (json_object_get(header, "crit")) {
        fault_set(f, FAULT_INVALID_TOKEN, "crit: critical header parameters are refused");
        return -1;
    }
    return 0;
}

/* The configured certificate a header parameter (x5t or kid) names, or NULL with f set. */
static const struct vendor_cert *cert_named_by(const json_t *header, const char *param,
                                               const struct token_policy *policy,
                                               struct fault *f)
{
    const json_t *value = json_object_get(header, param);
    if (!json_is_string(value)) {
        fault_set(f, FAULT_INVALID_TOKEN, "signature: the %s header is not a string", param);
        return NULL;
    }
    const char *wanted = json_string_value(value);
    int by_x5t = strcmp(param, "x5t") == 0;
    for (size_t i = 0; i < policy->ncerts; i++) {
        const struct vendor_cert *cert = &policy->certs[i];
        if (by_x5t ? strcmp(cert->x5t, wanted) == 0 : strcasecmp(cert->kid, wanted) == 0)
            return cert;
    }
    fault_set(f, FAULT_INVALID_TOKEN, "signature: the %s names no configured certificate", param);
    return NULL;
}

/* Check 4: the signature, with the certificate x5t or kid names, else with each in turn. */
static int check_signature(const char *jwt, const struct parsed_token *parsed,
                           const struct token_policy *policy, struct fault *f)
{
    const char *selector = json_object_get(parsed->header, "x5t")   ? "x5t"
                           : json_object_get(parsed->header, "kid") ? "kid"
                                                                     : NULL;
    if (selector) {
        const struct vendor_cert *cert = cert_named_by(parsed->header, selector, policy, f);
        if (!cert)
            return -1;
        if (rsa_sha256_verify(cert->public_key, jwt, parsed->signing_input_len,
                              parsed->signature, parsed->signature_len))
            return 0;
        /* By its place in vendor.certificates: the fault goes to an unauthenticated client,
         * which has no business with the server's file names. */
        fault_set(f, FAULT_INVALID_TOKEN,
                  "signature: does not verify with the certificate the %s names (vendor.certificates"
                  " item %zu)", selector, (size_t)(cert - policy->certs) + 1);
        return -1;
    }
    for (size_t i = 0; i < policy->ncerts; i++)
        if (rsa_sha256_verify(policy->certs[i].public_key, jwt, parsed->signing_input_len,
                              parsed->signature, parsed->signature_len))
            return 0;
    fault_set(f, FAULT_INVALID_TOKEN,
              "signature: does not verify with any of the %zu configured certificates",
              policy->ncerts);
    return -1;
}

/* A NumericDate as 2026-11-26T10:15:00Z (or as a number when gmtime cannot show it). */
static void format_date(double date, char *out, size_t outlen)
{
    struct tm tm;
    if (date > -62135596800.0 && date < 253402300800.0) {   /* years 1 to 9999 */
        time_t seconds = (time_t)floor(date);
        if (gmtime_r(&seconds, &tm)) {
            strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
            return;
        }
    }
    snprintf(out, outlen, "%g (not a date)", date);
}

/* Check 5: exp required, exp and nbf JSON numbers; now < exp + skew; now >= nbf - skew. */
static int check_lifetime(const json_t *claims, time_t now, int skew, int64_t *exp_out,
                          struct fault *f)
{
    const json_t *exp = json_object_get(claims, "exp");
    const json_t *nbf = json_object_get(claims, "nbf");
    if (!exp) {
        fault_set(f, FAULT_INVALID_TOKEN, "exp: the claim is missing");
        return -1;
    }
    if (!json_is_number(exp)) {
        fault_set(f, FAULT_INVALID_TOKEN, "exp: not a JSON number");
        return -1;
    }
    if (nbf && !json_is_number(nbf)) {
        fault_set(f, FAULT_INVALID_TOKEN, "nbf: not a JSON number");
        return -1;
    }
    char date[64];
    double expires = json_number_value(exp);
    if (!((double)now < expires + skew)) {
        format_date(expires, date, sizeof(date));
        fault_set(f, FAULT_TOKEN_EXPIRED, "token expired at %s", date);
        return -1;
    }
    if (nbf && !((double)now >= json_number_value(nbf) - skew)) {
        format_date(json_number_value(nbf), date, sizeof(date));
        fault_set(f, FAULT_TOKEN_EXPIRED, "token not valid before %s", date);
        return -1;
    }
    double whole = floor(expires);
    *exp_out = whole >= 9.2e18 ? INT64_MAX : (int64_t)whole;
    return 0;
}

/* Check 6: iss equals the configured issuer. */
static int check_issuer(const json_t *claims, const char *issuer, struct fault *f)
{
    const json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss)) {
        fault_set(f, FAULT_WRONG_ISSUER, "iss: %s", iss ? "not a string" : "the claim is missing");
        return -1;
    }
    if (strcmp(json_string_value(iss), issuer) != 0) {
        char shown[EXCERPT_MAX + 1];
        excerpt(json_string_value(iss), shown, sizeof(shown));
        fault_set(f, FAULT_WRONG_ISSUER, "iss: \"%s\" is not the configured issuer \"%s\"", shown,
                  issuer);
        return -1;
    }
    return 0;
}

/* Check 7: aud is a string, or an array of strings, that contains spn:<app_id>. */
static int check_audience(const json_t *claims, const char *app_id, struct fault *f)
{
    const json_t *aud = json_object_get(claims, "aud");
    char *wanted = xmalloc(strlen(app_id) + 5);
    sprintf(wanted, "spn:%s", app_id);
    int found = 0;
    const char *problem = NULL;
    if (!aud) {
        problem = "the claim is missing";
    } else if (json_is_string(aud)) {
        found = strcmp(json_string_value(aud), wanted) == 0;
    } else if (json_is_array(aud)) {
        size_t i;
        const json_t *item;
        json_array_foreach(aud, i, item) {
            if (!json_is_string(item)) {
                problem = "an element of the array is not a string";
                break;
            }
            found = found || strcmp(json_string_value(item), wanted) == 0;
        }
    } else {
        problem = "neither a string nor an array of strings";
    }
    if (problem)
        fault_set(f, FAULT_WRONG_AUDIENCE, "aud: %s", problem);
    else if (!found)
        fault_set(f, FAULT_WRONG_AUDIENCE, "aud: does not contain %s", wanted);
    free(wanted);
    return problem || !found ? -1 : 0;
}

/* Check 8: the tenant from the ctx claim or sub (equal when both), in the tenant grammar. */
static int check_tenant(const json_t *claims, char *tenant, size_t tenant_size, struct fault *f)
{
    const json_t *ctx = json_object_get(claims, CTX_CLAIM);
    const json_t *sub = json_object_get(claims, "sub");
    if ((ctx && !json_is_string(ctx)) || (sub && !json_is_string(sub))) {
        fault_set(f, FAULT_INVALID_TOKEN, "tenant: the %s claim is not a string",
                  ctx && !json_is_string(ctx) ? "ctx" : "sub");
        return -1;
    }
    if (!ctx && !sub) {
        fault_set(f, FAULT_INVALID_TOKEN, "tenant: neither the ctx claim nor sub is present");
        return -1;
    }
    if (ctx && sub && strcmp(json_string_value(ctx), json_string_value(sub)) != 0) {
        fault_set(f, FAULT_INVALID_TOKEN, "tenant: the ctx claim and sub differ");
        return -1;
    }
    const char *name = json_string_value(ctx ? ctx : sub);
    if (!tenant_valid(name) || strlen(name) >= tenant_size) {
        char shown[EXCERPT_MAX + 1];
        excerpt(name, shown, sizeof(shown));
        fault_set(f, FAULT_INVALID_TOKEN,
                  "tenant: \"%s\" is not a valid context identifier ([A-Za-z0-9][A-Za-z0-9_]{0,51})",
                  shown);
        return -1;
    }
    strcpy(tenant, name);
    return 0;
}

/* Check 9: with an allow list, the tenant is on it (compared exactly). */
static int check_allowed(const char *tenant, const struct cfg_strings *allow, struct fault *f)
{
    if (!allow || allow->n == 0)
        return 0;
    for (size_t i = 0; i < allow->n; i++)
        if (strcmp(allow->items[i], tenant) == 0)
            return 0;
    fault_set(f, FAULT_TENANT_NOT_ALLOWED, "tenant %s is not on the allow list", tenant);
    return -1;
}

int nonce_valid(const char *nonce)
{
    static const char nonce_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    size_t len = strlen(nonce);
    return len >= 1 && len <= NONCE_MAX && strspn(nonce, nonce_chars) == len;
}

/* The nonce claim of 4.1: required with need_nonce; copied to out when valid. */
static int take_nonce(const json_t *claims, int need_nonce, char *out, size_t outlen,
                      struct fault *f)
{
    const json_t *nonce = json_object_get(claims, "nonce");
    const char *problem = NULL;
    if (!nonce)
        problem = "the claim is missing";
    else if (!json_is_string(nonce))
        problem = "not a string";
    else if (!nonce_valid(json_string_value(nonce)) || json_string_length(nonce) >= outlen)
        problem = "not 1 to 128 characters of [A-Za-z0-9_-]";
    else
        strcpy(out, json_string_value(nonce));
    if (problem && need_nonce) {
        fault_set(f, FAULT_INVALID_TOKEN, "nonce: %s", problem);
        return -1;
    }
    return 0;
}

int token_verify(const char *jwt, size_t len, const struct token_policy *policy, time_t now,
                 int need_nonce, struct token_claims *out, struct fault *f)
{
    struct parsed_token parsed = {0};
    struct token_claims claims = {0};
    int ok = parse_form(jwt, len, &parsed, f) == 0 &&
             check_algorithm(parsed.header, f) == 0 &&
             check_signature(jwt, &parsed, policy, f) == 0 &&
             check_lifetime(parsed.claims, now, policy->clock_skew, &claims.exp, f) == 0 &&
             check_issuer(parsed.claims, policy->issuer, f) == 0 &&
             check_audience(parsed.claims, policy->app_id, f) == 0 &&
             check_tenant(parsed.claims, claims.tenant, sizeof(claims.tenant), f) == 0 &&
             check_allowed(claims.tenant, policy->allow, f) == 0 &&
             take_nonce(parsed.claims, need_nonce, claims.nonce, sizeof(claims.nonce), f) == 0;
    json_decref(parsed.header);
    json_decref(parsed.claims);
    free(parsed.signature);
    if (!ok)
        return -1;
    if (out)
        *out = claims;
    return 0;
}

char *token_sign_compact(EVP_PKEY *key, const char *header_json, const char *claims_json)
{
    struct buf token = BUF_INIT;
    char *header = base64url_encode((const unsigned char *)header_json, strlen(header_json));
    char *claims = base64url_encode((const unsigned char *)claims_json, strlen(claims_json));
    buf_printf(&token, "%s.%s", header, claims);
    free(header);
    free(claims);
    unsigned char *sig;
    size_t sig_len;
    if (rsa_sha256_sign(key, token.data, token.len, &sig, &sig_len) != 0) {
        buf_free(&token);
        return NULL;
    }
    char *sig_text = base64url_encode(sig, sig_len);
    free(sig);
    buf_printf(&token, ".%s", sig_text);
    free(sig_text);
    return buf_steal(&token);
}

char *token_sign(EVP_PKEY *key, const char *x5t, const char *kid, const char *claims_json)
{
    json_t *header = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    if (x5t)
        json_object_set_new(header, "x5t", json_string(x5t));
    if (kid)
        json_object_set_new(header, "kid", json_string(kid));
    char *header_json = json_dumps(header, JSON_COMPACT);
    json_decref(header);
    if (!header_json)
        return NULL;
    char *token = token_sign_compact(key, header_json, claims_json);
    free(header_json);
    return token;
}
