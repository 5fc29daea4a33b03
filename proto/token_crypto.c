/* proto/token_crypto: the primitives under tokens and application signatures: strict base64
 * (standard with padding, and unpadded base64url) in malloc'd buffers over common/base64, and
 * RSASSA-PKCS1-v1_5 SHA-256 signing and verification. No key material is ever written
 * anywhere. */
#include "proto/token.h"

#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "common/base64.h"
#include "common/xalloc.h"

static char *encode_malloc(const unsigned char *in, size_t len, enum base64_form form)
{
    char *text = xmalloc(BASE64_ENCODED_LEN(len) + 1);
    base64_encode_into(in, len, form, text);
    return text;
}

static unsigned char *decode_malloc(const char *in, size_t len, enum base64_form form,
                                    size_t *outlen)
{
    unsigned char *bytes = xmalloc(BASE64_DECODED_MAX(len) + 1);
    if (base64_decode_into(in, len, form, bytes, outlen) != 0) {
        free(bytes);
        return NULL;
    }
    return bytes;
}

char *base64url_encode(const unsigned char *in, size_t len)
{
    return encode_malloc(in, len, BASE64_URL);
}

unsigned char *base64url_decode(const char *in, size_t len, size_t *outlen)
{
    return decode_malloc(in, len, BASE64_URL, outlen);
}

char *base64_padded_encode(const unsigned char *in, size_t len)
{
    return encode_malloc(in, len, BASE64_PADDED);
}

unsigned char *base64_padded_decode(const char *in, size_t len, size_t *outlen)
{
    return decode_malloc(in, len, BASE64_PADDED, outlen);
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
