/* proto/token: the vendor's SignedToken (a JWS compact RS256 token) checked exactly as protocol
 * section 3 orders it, the SignedApplicationToken of Authenticate (4.1), and, for
 * somirror-task, the signing side of both. OpenSSL for RSA and base64, jansson for JSON.
 * Messages name the failed check and never key material. */
#ifndef SOMIRROR_PROTO_TOKEN_H
#define SOMIRROR_PROTO_TOKEN_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "config/config.h"
#include "config/keys.h"
#include "proto/fault.h"
#include "proto/types.h"

struct token_policy {
    const struct vendor_cert *certs;
    size_t ncerts;
    const char *issuer;
    const char *app_id;                  /* aud must contain "spn:<app_id>" */
    int clock_skew;                      /* seconds */
    const struct cfg_strings *allow;     /* empty: any tenant */
};

struct token_claims {
    char tenant[SM_TENANT_MAX + 1];
    char nonce[129];                     /* "" when absent */
    int64_t exp;
};

/* Checks 2-9 of section 3 on the token text (trimmed by the caller), then, with need_nonce,
 * the nonce claim of 4.1. 0, or -1 with f set (InvalidToken, TokenExpired, WrongIssuer,
 * WrongAudience, TenantNotAllowed) and a message naming the check. */
int token_verify(const char *jwt, size_t len, const struct token_policy *policy, time_t now,
                 int need_nonce, struct token_claims *out, struct fault *f);

/* RS256 JWS compact token over claims_json, with x5t and/or kid in the header when given.
 * Returns a malloc'd string, or NULL. */
char *token_sign(EVP_PKEY *key, const char *x5t, const char *kid, const char *claims_json);

/* SignedApplicationToken: "<nonce>.<yyyyMMddHHmm UTC>.<base64 RSA-SHA256 signature>",
 * appended to out. -1 when the nonce is not in the 4.1 grammar or signing fails. */
int appsign_create(EVP_PKEY *key, const char *nonce, time_t now, struct buf *out);
/* Checks the nonce, that the time is within 15 minutes of now, and the signature. 0, or -1 with
 * err. */
int appsign_verify(EVP_PKEY *public_key, const char *token, const char *nonce, time_t now,
                   char *err, size_t errlen);

/* Longest token text token_verify reads; anything longer is refused as InvalidToken. */
#define TOKEN_MAX_LEN (64 * 1024)

/* The nonce grammar of 4.1: 1 to 128 characters of [A-Za-z0-9_-]. */
int nonce_valid(const char *nonce);

/* RS256 JWS compact token over header_json and claims_json, both used byte for byte (no
 * check that they are JSON). token_sign builds its header and calls this. malloc'd, or NULL. */
char *token_sign_compact(EVP_PKEY *key, const char *header_json, const char *claims_json);

/* RSASSA-PKCS1-v1_5 with SHA-256. sign: 0 with *sig malloc'd (free()), or -1. The key must be
 * RSA. verify: 1 when sig is a valid signature of data by key (an RSA key), else 0. Both leave
 * the OpenSSL error queue empty. */
int rsa_sha256_sign(EVP_PKEY *key, const void *data, size_t len, unsigned char **sig,
                    size_t *siglen);
int rsa_sha256_verify(EVP_PKEY *key, const void *data, size_t len, const unsigned char *sig,
                      size_t siglen);

/* Standard base64 with '=' padding, strict: no whitespace, padding only at the end, length a
 * multiple of 4. encode: malloc'd text. decode: malloc'd bytes, or NULL when in is not such
 * text. (proto/value.h has the lenient, arena-based codec for <B> values.) */
char *base64_padded_encode(const unsigned char *in, size_t len);
unsigned char *base64_padded_decode(const char *in, size_t len, size_t *outlen);

/* base64url without padding (JWS). */
char *base64url_encode(const unsigned char *in, size_t len);   /* malloc'd */
/* Returns malloc'd bytes, or NULL when in is not valid unpadded base64url. */
unsigned char *base64url_decode(const char *in, size_t len, size_t *outlen);

#endif
