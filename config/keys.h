/* config/keys: the application's RSA key and the vendor's certificates, loaded once per config
 * generation (start and reload) and read-only afterwards. Key material never reaches a log:
 * errors name the file and what is wrong with it, nothing more. */
#ifndef SOMIRROR_CONFIG_KEYS_H
#define SOMIRROR_CONFIG_KEYS_H
#include <stddef.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config/config.h"

struct vendor_cert {
    char *path;
    X509 *cert;
    EVP_PKEY *public_key;
    char kid[41];        /* lowercase hex SHA-1 of the DER certificate (compare case-insensitively) */
    char x5t[28];        /* base64url SHA-1 of the DER certificate, no padding (27 chars) */
};

struct keyring {
    EVP_PKEY *app_key;              /* the application's private key */
    struct vendor_cert *certs;
    size_t ncerts;
};

/* Private key from PEM (PKCS#1 or PKCS#8) or .NET <RSAKeyValue> XML (detected by content).
 * Not RSA, unparsable, or parts that do not match (n != p*q): NULL with err naming the file.
 * Shorter than 2048 bits: loaded, with a warning written to *warning (may be NULL). */
EVP_PKEY *keys_load_private(const char *path, char *err, size_t errlen, char *warning, size_t warnlen);
/* Public key from PEM (SubjectPublicKeyInfo or PKCS#1), a PEM certificate, or <RSAKeyValue>
 * XML with only Modulus and Exponent (or a full private one). */
EVP_PKEY *keys_load_public(const char *path, char *err, size_t errlen);
/* A PEM certificate, with its thumbprints. Returns 0, or -1 with err. */
int keys_load_cert(const char *path, struct vendor_cert *out, char *err, size_t errlen);
void keys_cert_free(struct vendor_cert *cert);

/* Writes key in the .NET <RSAKeyValue> form (private parts when it has them and
 * include_private is set), base64 big-endian, padded to .NET's fixed lengths. */
int keys_write_xml(EVP_PKEY *key, int include_private, FILE *out);

/* Loads everything cfg names; every failure goes to errs (named by file). NULL on any error. */
struct keyring *keys_load(const struct config *cfg, struct cfg_errors *errs);
void keys_free(struct keyring *keys);

#endif
