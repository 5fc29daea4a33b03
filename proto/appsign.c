/* proto/appsign: the SignedApplicationToken of Authenticate (protocol 4.1),
 * "<nonce>.<yyyyMMddHHmm UTC>.<standard base64 of RSASSA-PKCS1-v1_5 SHA-256 over
 * "<nonce>.<time>">": made by somirrord with the application's key, checked by somirror-task
 * with the public key. Errors never carry key material. */
#include "proto/token.h"

#include <stdio.h>
#include <string.h>

#define APPSIGN_TIME_LEN 12            /* yyyyMMddHHmm */
#define APPSIGN_WINDOW (15 * 60)       /* seconds either side of now */

/* The token's time field for when; 0, or -1 when gmtime cannot express it. */
static int format_minute(time_t when, char out[APPSIGN_TIME_LEN + 1])
{
    struct tm tm;
    if (!gmtime_r(&when, &tm))
        return -1;
    return strftime(out, APPSIGN_TIME_LEN + 1, "%Y%m%d%H%M", &tm) == APPSIGN_TIME_LEN ? 0 : -1;
}

/* Reads exactly twelve digits yyyyMMddHHmm naming a real UTC minute. 0, or -1. */
static int parse_minute(const char *text, size_t len, time_t *out)
{
    if (len != APPSIGN_TIME_LEN || strspn(text, "0123456789") < APPSIGN_TIME_LEN)
        return -1;
    int field[5];
    static const int width[5] = {4, 2, 2, 2, 2};
    const char *p = text;
    for (int i = 0; i < 5; i++) {
        field[i] = 0;
        for (int d = 0; d < width[i]; d++)
            field[i] = field[i] * 10 + (*p++ - '0');
    }
    struct tm tm = {.tm_year = field[0] - 1900, .tm_mon = field[1] - 1, .tm_mday = field[2],
                    .tm_hour = field[3], .tm_min = field[4]};
    time_t when = timegm(&tm);
    char canonical[APPSIGN_TIME_LEN + 1];
    /* timegm normalises out-of-range fields; a real minute formats back to the same text. */
    if (when == (time_t)-1 || format_minute(when, canonical) != 0 ||
        memcmp(canonical, text, APPSIGN_TIME_LEN) != 0)
        return -1;
    *out = when;
    return 0;
}

int appsign_create(EVP_PKEY *key, const char *nonce, time_t now, struct buf *out)
{
    char minute[APPSIGN_TIME_LEN + 1];
    if (!nonce_valid(nonce) || format_minute(now, minute) != 0)
        return -1;
    struct buf signed_text = BUF_INIT;
    buf_printf(&signed_text, "%s.%s", nonce, minute);
    unsigned char *sig;
    size_t sig_len;
    if (rsa_sha256_sign(key, signed_text.data, signed_text.len, &sig, &sig_len) != 0) {
        buf_free(&signed_text);
        return -1;
    }
    char *sig_text = base64_padded_encode(sig, sig_len);
    free(sig);
    buf_printf(out, "%s.%s", signed_text.data, sig_text);
    free(sig_text);
    buf_free(&signed_text);
    return 0;
}

int appsign_verify(EVP_PKEY *public_key, const char *token, const char *nonce, time_t now,
                   char *err, size_t errlen)
{
    const char *time_dot = strchr(token, '.');
    const char *sig_dot = time_dot ? strchr(time_dot + 1, '.') : NULL;
    if (!sig_dot) {
        snprintf(err, errlen, "SignedApplicationToken: not <nonce>.<time>.<signature>");
        return -1;
    }
    size_t nonce_len = (size_t)(time_dot - token);
    if (strlen(nonce) != nonce_len || memcmp(token, nonce, nonce_len) != 0) {
        snprintf(err, errlen, "SignedApplicationToken: the nonce is not the one sent");
        return -1;
    }
    time_t when;
    if (parse_minute(time_dot + 1, (size_t)(sig_dot - time_dot - 1), &when) != 0) {
        snprintf(err, errlen, "SignedApplicationToken: the time is not yyyyMMddHHmm");
        return -1;
    }
    double offset = difftime(when, now);
    if (offset > APPSIGN_WINDOW || offset < -APPSIGN_WINDOW) {
        snprintf(err, errlen,
                 "SignedApplicationToken: the time is %.0f seconds from now (limit %d)", offset,
                 APPSIGN_WINDOW);
        return -1;
    }
    size_t sig_len;
    unsigned char *sig = base64_padded_decode(sig_dot + 1, strlen(sig_dot + 1), &sig_len);
    if (!sig) {
        snprintf(err, errlen, "SignedApplicationToken: the signature is not padded base64");
        return -1;
    }
    int valid = rsa_sha256_verify(public_key, token, (size_t)(sig_dot - token), sig, sig_len);
    free(sig);
    if (!valid) {
        snprintf(err, errlen,
                 "SignedApplicationToken: the signature does not verify with the application's "
                 "public key");
        return -1;
    }
    return 0;
}
