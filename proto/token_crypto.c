/* proto/token_crypto: the primitives under tokens and application signatures: strict base64
 * (standard with padding, and unpadded base64url) on OpenSSL's EVP codec, and RSASSA-PKCS1-v1_5
 * SHA-256 signing and verification. No key material is ever written anywhere. */
#include "proto/token.h"

#include <limits.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "common/xalloc.h"

/* Longest input either codec accepts (keeps every length inside an int for OpenSSL). */
#define BASE64_MAX_INPUT ((size_t)INT_MAX / 2)

static int is_base64_core_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Encodes in standard padded base64; with url, translates to base64url and drops padding. */
static char *base64_encode_any(const unsigned char *in, size_t len, int url)
{
    if (len > BASE64_MAX_INPUT / 2)
        return NULL;
    char *text = xmalloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)text, in, (int)len);
    if (url) {
        while (n > 0 && text[n - 1] == '=')
            n--;
        text[n] = '\0';
        for (char *p = text; *p; p++) {
            if (*p == '+')
                *p = '-';
            else if (*p == '/')
                *p = '_';
        }
    }
    return text;
}

/* Decodes strictly. url: the base64url alphabet, no '=' at all, length % 4 != 1. Otherwise:
 * the standard alphabet, length % 4 == 0, at most two '=' and only at the end. The text is
 * brought to padded standard form and handed to EVP_DecodeBlock. */
static unsigned char *base64_decode_any(const char *in, size_t len, int url, size_t *outlen)
{
    if (len > BASE64_MAX_INPUT || len % 4 == 1 || (!url && len % 4 != 0))
        return NULL;
    size_t data_len = len;
    if (!url)
        while (data_len > 0 && len - data_len < 2 && in[data_len - 1] == '=')
            data_len--;
    size_t padded_len = (len + 3) / 4 * 4;
    char *text = xmalloc(padded_len + 1);
    for (size_t i = 0; i < data_len; i++) {
        char c = in[i];
        if (url && c == '-')
            c = '+';
        else if (url && c == '_')
            c = '/';
        else if (!is_base64_core_char(c) && (url || (c != '+' && c != '/'))) {
            free(text);
            return NULL;
        }
        text[i] = c;
    }
    memset(text + data_len, '=', padded_len - data_len);
    text[padded_len] = '\0';

    unsigned char *bytes = xmalloc(padded_len / 4 * 3 + 1);
    int n = EVP_DecodeBlock(bytes, (const unsigned char *)text, (int)padded_len);
    free(text);
    if (n < 0) {
        free(bytes);
        return NULL;
    }
    /* EVP_DecodeBlock counts the bytes the padding stands for; take them off. */
    *outlen = padded_len / 4 * 3 - (padded_len - data_len);
    return bytes;
}

char *base64url_encode(const unsigned char *in, size_t len)
{
    return base64_encode_any(in, len, 1);
}

unsigned char *base64url_decode(const char *in, size_t len, size_t *outlen)
{
    return base64_decode_any(in, len, 1, outlen);
}

char *base64_padded_encode(const unsigned char *in, size_t len)
{
    return base64_encode_any(in, len, 0);
}

unsigned char *base64_padded_decode(const char *in, size_t len, size_t *outlen)
{
    return base64_decode_any(in, len, 0, outlen);
}

static int key_is_rsa(EVP_PKEY *key)
{
    return key != NULL && EVP_PKEY_base_id(key) == EVP_PKEY_RSA;
}

/* A digest context for RSA PKCS#1 v1.5 SHA-256, set up for signing or verifying; NULL on
 * failure. */
static EVP_MD_CTX *rsa_sha256_context(EVP_PKEY *key, int for_signing)
{
    if (!key_is_rsa(key))
        return NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx != NULL &&
             (for_signing ? EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, key)
                          : EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, key)) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    if (!ok) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int rsa_sha256_sign(EVP_PKEY *key, const void *data, size_t len, unsigned char **sig,
                    size_t *siglen)
{
    EVP_MD_CTX *ctx = rsa_sha256_context(key, 1);
    size_t sig_cap = 0;
    unsigned char *signature = NULL;
    int ok = ctx != NULL && EVP_DigestSign(ctx, NULL, &sig_cap, data, len) == 1;
    if (ok) {
        signature = xmalloc(sig_cap);
        ok = EVP_DigestSign(ctx, signature, &sig_cap, data, len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ok) {
        free(signature);
        return -1;
    }
    *sig = signature;
    *siglen = sig_cap;
    return 0;
}

int rsa_sha256_verify(EVP_PKEY *key, const void *data, size_t len, const unsigned char *sig,
                      size_t siglen)
{
    EVP_MD_CTX *ctx = rsa_sha256_context(key, 0);
    int valid = ctx != NULL && EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return valid;
}
