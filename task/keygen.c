/* task/keygen: `somirror-task keys`, the key files a test or demo deployment needs: the
 * vendor's signing key and self-signed certificate (somirrord's vendor.certificates, the task's
 * --vendor-key/--vendor-cert) and the application's key pair (somirrord's
 * application.private_key as PEM or .NET XML, the task's --app-public-key). RSA 2048 through
 * the OpenSSL API; private keys are written 0600. */
#include "task/task.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "config/keys.h"

#define KEY_BITS 2048
#define CERT_DAYS (10 * 365)
#define VENDOR_CN "somirror test vendor"

enum key_file_form { FORM_PRIVATE_PEM, FORM_PUBLIC_PEM, FORM_CERT_PEM, FORM_PRIVATE_XML };

static EVP_PKEY *generate_rsa(void)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    if (ctx && EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, KEY_BITS) > 0)
        EVP_PKEY_keygen(ctx, &key);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *cert = X509_new();
    unsigned char serial[8];
    int ok = cert && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
        BN_free(bn);
    }
    X509_NAME *name = ok ? X509_get_subject_name(cert) : NULL;
    ok = ok && X509_set_version(cert, 2) &&
         X509_gmtime_adj(X509_getm_notBefore(cert), 0) &&
         X509_gmtime_adj(X509_getm_notAfter(cert), (long)CERT_DAYS * 86400) &&
         X509_set_pubkey(cert, key) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)VENDOR_CN, -1, -1, 0) &&
         X509_set_issuer_name(cert, name) &&
         X509_sign(cert, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int write_file(const char *dir, const char *name, enum key_file_form form, EVP_PKEY *key,
                      X509 *cert, int force, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int private_part = form == FORM_PRIVATE_PEM || form == FORM_PRIVATE_XML;
    /* --force replaces the file rather than write through it: what is at the path may be a link
     * that someone who can write in dir put there. */
    if (force && unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot replace: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, private_part ? 0600 : 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (use --force to replace it)" : "");
        return -1;
    }
    if (private_part)
        fchmod(fd, 0600);
    FILE *f = fdopen(fd, "w");
    int ok = f != NULL;
    switch (form) {
    case FORM_PRIVATE_PEM:
        ok = ok && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
        break;
    case FORM_PUBLIC_PEM:
        ok = ok && PEM_write_PUBKEY(f, key);
        break;
    case FORM_CERT_PEM:
        ok = ok && PEM_write_X509(f, cert);
        break;
    case FORM_PRIVATE_XML:
        ok = ok && keys_write_xml(key, 1, f) == 0;
        break;
    }
    if (f)
        ok = fclose(f) == 0 && ok;
    else
        close(fd);
    if (!ok) {
        snprintf(err, errlen, "%s: could not be written", path);
        return -1;
    }
    return 0;
}

int keygen_run(const char *dir, int force, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    EVP_PKEY *vendor = generate_rsa(), *app = generate_rsa();
    X509 *cert = vendor ? self_signed(vendor) : NULL;
    int rc = -1;
    if (!vendor || !app || !cert)
        snprintf(err, errlen, "RSA key or certificate generation failed");
    else if (write_file(dir, "vendor.key", FORM_PRIVATE_PEM, vendor, NULL, force, err, errlen) == 0 &&
             write_file(dir, "vendor.crt", FORM_CERT_PEM, vendor, cert, force, err, errlen) == 0 &&
             write_file(dir, "app.pem", FORM_PRIVATE_PEM, app, NULL, force, err, errlen) == 0 &&
             write_file(dir, "app.pub", FORM_PUBLIC_PEM, app, NULL, force, err, errlen) == 0 &&
             write_file(dir, "app.xml", FORM_PRIVATE_XML, app, NULL, force, err, errlen) == 0)
        rc = 0;
    X509_free(cert);
    EVP_PKEY_free(vendor);
    EVP_PKEY_free(app);
    return rc;
}
