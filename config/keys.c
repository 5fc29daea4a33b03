/* config/keys: loads the application's RSA key (PEM, or .NET <RSAKeyValue> XML through libxml2)
 * and the vendor's certificates with their thumbprints, and writes the .NET XML form (see
 * keys.h). Buffers that held key material are cleansed before they are freed; messages name the
 * file and the problem, never key material. */
#include "config/keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"

#define KEY_FILE_MAX (1024 * 1024)
#define RECOMMENDED_BITS 2048

/* The parts of an RSA key in the order .NET writes them. */
enum rsa_part { PART_N, PART_E, PART_P, PART_Q, PART_DP, PART_DQ, PART_QINV, PART_D, PART_COUNT };
#define PUBLIC_PART_COUNT 2

/* How .NET pads a part: to the modulus length, to half of it, or not at all. */
enum part_padding { PAD_MODULUS, PAD_HALF, PAD_NONE };

static const struct {
    const char *element;
    const char *param;
    enum part_padding padding;
} rsa_parts[PART_COUNT] = {
    [PART_N] = {"Modulus", OSSL_PKEY_PARAM_RSA_N, PAD_MODULUS},
    [PART_E] = {"Exponent", OSSL_PKEY_PARAM_RSA_E, PAD_NONE},
    [PART_P] = {"P", OSSL_PKEY_PARAM_RSA_FACTOR1, PAD_HALF},
    [PART_Q] = {"Q", OSSL_PKEY_PARAM_RSA_FACTOR2, PAD_HALF},
    [PART_DP] = {"DP", OSSL_PKEY_PARAM_RSA_EXPONENT1, PAD_HALF},
    [PART_DQ] = {"DQ", OSSL_PKEY_PARAM_RSA_EXPONENT2, PAD_HALF},
    [PART_QINV] = {"InverseQ", OSSL_PKEY_PARAM_RSA_COEFFICIENT1, PAD_HALF},
    [PART_D] = {"D", OSSL_PKEY_PARAM_RSA_D, PAD_MODULUS},
};

static void parts_free(BIGNUM **bn)
{
    for (int i = 0; i < PART_COUNT; i++) {
        BN_clear_free(bn[i]);
        bn[i] = NULL;
    }
}

static void buf_cleanse_free(struct buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->len);
    buf_free(b);
}

/* The whole file into text; -1 with err naming the file. */
static int read_key_file(const char *path, struct buf *text, char *err, size_t errlen)
{
    const char *why;
    FILE *file = fopen_regular(path, &why);
    if (!file) {
        snprintf(err, errlen, "%s: cannot open: %s", path, why);
        return -1;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), file)) > 0 && text->len <= KEY_FILE_MAX)
        buf_append(text, chunk, got);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    int failed = ferror(file);
    int saved_errno = errno;
    fclose(file);
    if (failed)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(saved_errno));
    else if (text->len > KEY_FILE_MAX)
        snprintf(err, errlen, "%s: larger than %d bytes, not a key", path, KEY_FILE_MAX);
    else if (text->len == 0)
        snprintf(err, errlen, "%s: empty file", path);
    else
        return 0;
    buf_cleanse_free(text);
    return -1;
}

static bool looks_like_xml(const struct buf *text)
{
    const char *p = text->data;
    if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (isspace((unsigned char)*p))
        p++;
    return *p == '<';
}

/* ---- .NET XML ---- */

/* A big-endian base64 number (XML blanks allowed anywhere), or NULL. */
static BIGNUM *decode_base64_number(const char *text)
{
    size_t len = strlen(text);
    char *clean = xmalloc(len + 1);
    size_t n = base64_drop_blanks(text, len, clean);
    size_t binlen = BASE64_DECODED_MAX(n);
    unsigned char *bin = xmalloc(binlen);
    size_t decoded;
    BIGNUM *bn = NULL;
    if (n > 0 && base64_decode_into(clean, n, BASE64_PADDED, bin, &decoded) == 0)
        bn = BN_bin2bn(bin, (int)decoded, NULL);
    OPENSSL_cleanse(bin, binlen);
    free(bin);
    OPENSSL_cleanse(clean, len + 1);
    free(clean);
    return bn;
}

static int part_by_element(const xmlChar *name)
{
    for (int i = 0; i < PART_COUNT; i++)
        if (xmlStrEqual(name, BAD_CAST rsa_parts[i].element))
            return i;
    return -1;
}

/* Reads the children of <RSAKeyValue>; the first `needed` parts must be there. */
static int xml_read_parts(const char *path, xmlNodePtr root, int needed, BIGNUM **bn, char *err,
                          size_t errlen)
{
    for (xmlNodePtr node = root->children; node; node = node->next) {
        if (node->type == XML_COMMENT_NODE || (node->type == XML_TEXT_NODE && xmlIsBlankNode(node)))
            continue;
        int part = node->type == XML_ELEMENT_NODE ? part_by_element(node->name) : -1;
        if (part < 0) {
            snprintf(err, errlen, "%s: unexpected content in <RSAKeyValue>", path);
            return -1;
        }
        if (bn[part]) {
            snprintf(err, errlen, "%s: <%s> appears twice", path, rsa_parts[part].element);
            return -1;
        }
        xmlChar *content = xmlNodeGetContent(node);
        bn[part] = content ? decode_base64_number((const char *)content) : NULL;
        if (content) {
            OPENSSL_cleanse(content, (size_t)xmlStrlen(content));
            xmlFree(content);
        }
        if (!bn[part]) {
            snprintf(err, errlen, "%s: <%s> is not base64", path, rsa_parts[part].element);
            return -1;
        }
    }
    for (int i = 0; i < needed; i++) {
        if (!bn[i]) {
            snprintf(err, errlen, "%s: <%s> is missing", path, rsa_parts[i].element);
            return -1;
        }
    }
    return 0;
}

static EVP_PKEY *key_from_parts(BIGNUM *const *bn, int count, int selection)
{
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;
    bool pushed = builder != NULL;
    for (int i = 0; pushed && i < count; i++)
        pushed = OSSL_PARAM_BLD_push_BN(builder, rsa_parts[i].param, bn[i]) == 1;
    if (pushed && ctx && (params = OSSL_PARAM_BLD_to_param(builder)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &key, selection, params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(builder);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* An RSA key from <RSAKeyValue> XML: the whole key pair, or only its public half. */
static EVP_PKEY *xml_load(const char *path, const struct buf *text, bool private_key, char *err,
                          size_t errlen)
{
    xmlDocPtr doc = xmlReadMemory(text->data, (int)text->len, NULL, NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        snprintf(err, errlen, "%s: not well-formed XML", path);
        return NULL;
    }
    BIGNUM *bn[PART_COUNT] = {NULL};
    EVP_PKEY *key = NULL;
    int count = private_key ? PART_COUNT : PUBLIC_PART_COUNT;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (doc->intSubset || doc->extSubset)
        snprintf(err, errlen, "%s: XML with a DTD is not accepted", path);
    else if (!root || !xmlStrEqual(root->name, BAD_CAST "RSAKeyValue"))
        snprintf(err, errlen, "%s: expected an <RSAKeyValue> document", path);
    else if (xml_read_parts(path, root, count, bn, err, errlen) == 0) {
        key = key_from_parts(bn, count, private_key ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
        if (!key)
            snprintf(err, errlen, "%s: OpenSSL does not accept the <RSAKeyValue> parts", path);
    }
    parts_free(bn);
    xmlFreeDoc(doc);
    return key;
}

/* ---- checks ---- */

static bool mod_equals(const BIGNUM *a, const BIGNUM *m, const BIGNUM *expected, BN_CTX *ctx)
{
    BIGNUM *r = BN_CTX_get(ctx);
    return r && BN_mod(r, a, m, ctx) == 1 && BN_cmp(r, expected) == 0;
}

static bool mod_mul_is_one(const BIGNUM *a, const BIGNUM *b, const BIGNUM *m, BN_CTX *ctx)
{
    BIGNUM *r = BN_CTX_get(ctx);
    return r && BN_mod_mul(r, a, b, m, ctx) == 1 && BN_is_one(r);
}

/* Which relation between the parts of a private key does not hold, or NULL when all do. */
static const char *rsa_mismatch(BIGNUM *const *bn)
{
    BN_CTX *ctx = BN_CTX_new();
    if (!ctx)
        return "cannot be checked (out of memory)";
    BN_CTX_start(ctx);
    BIGNUM *product = BN_CTX_get(ctx), *p1 = BN_CTX_get(ctx), *q1 = BN_CTX_get(ctx);
    const char *problem = NULL;
    if (!q1 || BN_mul(product, bn[PART_P], bn[PART_Q], ctx) != 1 || BN_cmp(product, bn[PART_N]) != 0 ||
        BN_sub(p1, bn[PART_P], BN_value_one()) != 1 || BN_sub(q1, bn[PART_Q], BN_value_one()) != 1)
        problem = "Modulus is not P times Q";
    else if (!mod_equals(bn[PART_D], p1, bn[PART_DP], ctx))
        problem = "DP does not match D and P";
    else if (!mod_equals(bn[PART_D], q1, bn[PART_DQ], ctx))
        problem = "DQ does not match D and Q";
    else if (!mod_mul_is_one(bn[PART_QINV], bn[PART_Q], bn[PART_P], ctx))
        problem = "InverseQ does not match P and Q";
    else if (!mod_mul_is_one(bn[PART_E], bn[PART_D], p1, ctx) ||
             !mod_mul_is_one(bn[PART_E], bn[PART_D], q1, ctx))
        problem = "D does not match Exponent, P and Q";
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return problem;
}

/* The parts of key, as many as it has; returns how many of the first `count` it lacks. */
static int parts_of(const EVP_PKEY *key, int count, BIGNUM **bn)
{
    int missing = 0;
    for (int i = 0; i < count; i++)
        if (EVP_PKEY_get_bn_param(key, rsa_parts[i].param, &bn[i]) != 1)
            missing++;
    return missing;
}

/* 0 when key is an RSA private key whose parts agree; -1 with err otherwise. */
static int check_private(const char *path, const EVP_PKEY *key, char *err, size_t errlen)
{
    if (!EVP_PKEY_is_a(key, "RSA")) {
        snprintf(err, errlen, "%s: not an RSA key (it is %s)", path, EVP_PKEY_get0_type_name(key));
        return -1;
    }
    BIGNUM *bn[PART_COUNT] = {NULL};
    const char *problem = parts_of(key, PART_COUNT, bn) ? "some parts are missing" : rsa_mismatch(bn);
    parts_free(bn);
    if (problem) {
        snprintf(err, errlen, "%s: the key's parts do not match: %s", path, problem);
        return -1;
    }
    return 0;
}

static int no_passphrase(char *buf, int size, int rwflag, void *data)
{
    return -1;
}

/* ---- loading ---- */

/* Into warning, when key has fewer bits than recommended: saying so; else nothing. */
static void short_key_warning(const char *path, const EVP_PKEY *key, char *warning, size_t warnlen)
{
    int bits = EVP_PKEY_get_bits(key);
    if (bits < RECOMMENDED_BITS)
        snprintf(warning, warnlen, "%s: the key has only %d bits; use %d or more", path, bits,
                 RECOMMENDED_BITS);
}

EVP_PKEY *keys_load_private(const char *path, char *err, size_t errlen, char *warning, size_t warnlen)
{
    struct buf text = BUF_INIT;
    EVP_PKEY *key = NULL;
    if (warning && warnlen)
        warning[0] = '\0';
    if (read_key_file(path, &text, err, errlen) != 0)
        return NULL;
    if (looks_like_xml(&text)) {
        key = xml_load(path, &text, true, err, errlen);
    } else if (strstr(text.data, "ENCRYPTED")) {
        snprintf(err, errlen, "%s: the private key is encrypted; somirrord needs it unencrypted", path);
    } else {
        BIO *bio = BIO_new_mem_buf(text.data, (int)text.len);
        key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (!key)
            snprintf(err, errlen, "%s: not a PEM private key or <RSAKeyValue> XML", path);
    }
    buf_cleanse_free(&text);
    ERR_clear_error();
    if (key && check_private(path, key, err, errlen) != 0) {
        EVP_PKEY_free(key);
        return NULL;
    }
    if (key && warning)
        short_key_warning(path, key, warning, warnlen);
    return key;
}

static EVP_PKEY *pem_public_key(const struct buf *text)
{
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_mem_buf(text->data, (int)text->len);
    if (!bio)
        return NULL;
    if (strstr(text->data, "-----BEGIN CERTIFICATE-----")) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        key = cert ? X509_get_pubkey(cert) : NULL;
        X509_free(cert);
    } else {
        OSSL_DECODER_CTX *decoder = OSSL_DECODER_CTX_new_for_pkey(&key, "PEM", NULL, NULL,
                                                                  EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (decoder && OSSL_DECODER_from_bio(decoder, bio) != 1) {
            EVP_PKEY_free(key);
            key = NULL;
        }
        OSSL_DECODER_CTX_free(decoder);
    }
    BIO_free(bio);
    return key;
}

EVP_PKEY *keys_load_public(const char *path, char *err, size_t errlen)
{
    struct buf text = BUF_INIT;
    EVP_PKEY *key = NULL;
    if (read_key_file(path, &text, err, errlen) != 0)
        return NULL;
    if (looks_like_xml(&text)) {
        key = xml_load(path, &text, false, err, errlen);
    } else {
        key = pem_public_key(&text);
        if (!key)
            snprintf(err, errlen, "%s: not a PEM public key, certificate or <RSAKeyValue> XML", path);
    }
    buf_cleanse_free(&text);
    ERR_clear_error();
    if (key && !EVP_PKEY_is_a(key, "RSA")) {
        snprintf(err, errlen, "%s: not an RSA key (it is %s)", path, EVP_PKEY_get0_type_name(key));
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/* kid (lowercase hex) and x5t (base64url without padding) of the certificate's SHA-1. */
static int thumbprints(X509 *cert, struct vendor_cert *out)
{
    unsigned char sha1[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char x5t[BASE64_ENCODED_LEN(sizeof(sha1)) + 1];
    if (X509_digest(cert, EVP_sha1(), sha1, &len) != 1 || len != 20)
        return -1;
    for (unsigned int i = 0; i < len; i++)
        snprintf(out->kid + 2 * i, 3, "%02x", sha1[i]);
    base64_encode_into(sha1, len, BASE64_URL, x5t);
    memcpy(out->x5t, x5t, sizeof(out->x5t));   /* 27 characters and the NUL */
    return 0;
}

int keys_load_cert(const char *path, struct vendor_cert *out, char *err, size_t errlen)
{
    struct buf text = BUF_INIT;
    memset(out, 0, sizeof(*out));
    if (read_key_file(path, &text, err, errlen) != 0)
        return -1;
    BIO *bio = BIO_new_mem_buf(text.data, (int)text.len);
    out->cert = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    buf_free(&text);
    ERR_clear_error();
    if (!out->cert) {
        snprintf(err, errlen, "%s: not a PEM certificate", path);
        return -1;
    }
    out->path = xstrdup(path);
    out->public_key = X509_get_pubkey(out->cert);
    if (!out->public_key || !EVP_PKEY_is_a(out->public_key, "RSA")) {
        snprintf(err, errlen, "%s: the certificate's key is not RSA", path);
        keys_cert_free(out);
        return -1;
    }
    if (thumbprints(out->cert, out) != 0) {
        snprintf(err, errlen, "%s: cannot compute the certificate's SHA-1 thumbprint", path);
        keys_cert_free(out);
        return -1;
    }
    return 0;
}

void keys_cert_free(struct vendor_cert *cert)
{
    free(cert->path);
    X509_free(cert->cert);
    EVP_PKEY_free(cert->public_key);
    memset(cert, 0, sizeof(*cert));
}

/* ---- writing ---- */

static void write_part(FILE *out, enum rsa_part part, const BIGNUM *bn, int modulus_bytes)
{
    int len = rsa_parts[part].padding == PAD_MODULUS ? modulus_bytes
            : rsa_parts[part].padding == PAD_HALF   ? (modulus_bytes + 1) / 2
                                                     : BN_num_bytes(bn);
    if (len == 0)
        len = 1;
    size_t b64len = BASE64_ENCODED_LEN((size_t)len) + 1;
    unsigned char *bin = xmalloc((size_t)len);
    char *b64 = xmalloc(b64len);
    BN_bn2binpad(bn, bin, len);
    base64_encode_into(bin, (size_t)len, BASE64_PADDED, b64);
    fprintf(out, "<%s>%s</%s>", rsa_parts[part].element, b64, rsa_parts[part].element);
    OPENSSL_cleanse(bin, (size_t)len);
    OPENSSL_cleanse(b64, b64len);
    free(bin);
    free(b64);
}

int keys_write_xml(EVP_PKEY *key, int include_private, FILE *out)
{
    if (!EVP_PKEY_is_a(key, "RSA"))
        return -1;
    BIGNUM *bn[PART_COUNT] = {NULL};
    int count = PUBLIC_PART_COUNT;
    if (parts_of(key, PUBLIC_PART_COUNT, bn) != 0) {
        parts_free(bn);
        return -1;
    }
    if (include_private && parts_of(key, PART_COUNT, bn) == 0)
        count = PART_COUNT;
    int modulus_bytes = BN_num_bytes(bn[PART_N]);
    fputs("<RSAKeyValue>", out);
    for (int i = 0; i < count; i++)
        write_part(out, (enum rsa_part)i, bn[i], modulus_bytes);
    fputs("</RSAKeyValue>\n", out);
    parts_free(bn);
    return ferror(out) ? -1 : 0;
}

/* ---- the keyring of a config ---- */

struct keyring *keys_load(const struct config *cfg, struct cfg_errors *errs)
{
    struct keyring *ring = xcalloc(1, sizeof(*ring));
    size_t errors_before = errs->found;
    char err[512], warning[512], where[4200], key[64];
    ring->app_key = keys_load_private(cfg->app_private_key, err, sizeof(err), warning, sizeof(warning));
    cfg_where(cfg, "application.private_key", where, sizeof(where));
    if (!ring->app_key)
        cfg_errors_add(errs, "%s: application.private_key: %s", where, err);
    else if (warning[0])
        log_warn("%s: application.private_key: %s", where, warning);
    if (ring->app_key && *cfg_secret_exposed(cfg->app_private_key, warning, sizeof(warning)))
        log_warn("%s: application.private_key: %s", where, warning);
    ring->certs = xcalloc(cfg->vendor_certificates.n ? cfg->vendor_certificates.n : 1, sizeof(*ring->certs));
    for (size_t i = 0; i < cfg->vendor_certificates.n; i++) {
        struct vendor_cert *cert = &ring->certs[ring->ncerts];
        snprintf(key, sizeof(key), "vendor.certificates[%zu]", i);
        cfg_where(cfg, key, where, sizeof(where));
        if (keys_load_cert(cfg->vendor_certificates.items[i], cert, err, sizeof(err)) != 0) {
            cfg_errors_add(errs, "%s: %s: %s", where, key, err);
            continue;
        }
        ring->ncerts++;
        warning[0] = '\0';
        short_key_warning(cert->path, cert->public_key, warning, sizeof(warning));
        if (warning[0])
            log_warn("%s: %s: %s", where, key, warning);
    }
    if (errs->found != errors_before) {
        keys_free(ring);
        return NULL;
    }
    return ring;
}

void keys_free(struct keyring *keys)
{
    if (!keys)
        return;
    EVP_PKEY_free(keys->app_key);
    for (size_t i = 0; i < keys->ncerts; i++)
        keys_cert_free(&keys->certs[i]);
    free(keys->certs);
    free(keys);
}
