/* worker/tls: builds the TLS server contexts of the configured listeners (see tls.h). Owns
 * nothing long-lived: the caller frees what it gets. */
#include "worker/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"

/* TLS 1.2's suites unless tls.ciphers names others: forward secrecy and AEAD only (Mozilla's
 * "intermediate" list). TLS 1.3's are OpenSSL's defaults unless tls.ciphersuites names others;
 * all of them qualify. */
static const char TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

/* The first queued OpenSSL error as text (the reason only: no key material). */
static void openssl_reason(char *out, size_t outlen)
{
    unsigned long code = ERR_get_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    snprintf(out, outlen, "%s", reason ? reason : "unknown OpenSSL error");
    ERR_clear_error();
}

/* An encrypted key would make OpenSSL ask for its passphrase on the terminal, holding the
 * master: refused instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *data)
{
    (void)buf, (void)size, (void)rwflag, (void)data;
    return 0;
}

/* The key file at path read whole into memory (OpenSSL's secure heap, wiped when freed): a
 * BIO, or NULL with why (errno's text, or "not a regular file"). */
static BIO *read_key(const char *path, char *why, size_t whylen)
{
    const char *unreadable;
    FILE *f = fopen_regular(path, &unreadable);
    if (!f) {
        snprintf(why, whylen, "%s", unreadable);
        return NULL;
    }
    BIO *bio = BIO_new(BIO_s_secmem());
    char chunk[4096];
    size_t n;
    while (bio && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        BIO_write(bio, chunk, (int)n);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    int failed = ferror(f) ? errno : 0;
    fclose(f);
    if (!bio || failed) {
        snprintf(why, whylen, "%s", bio ? strerror(failed) : "out of memory");
        BIO_free(bio);
        return NULL;
    }
    return bio;
}

/* Installs the certificate chain of where into ctx; 0, or -1 with why. Warns once it has
 * expired or is not valid yet (still served: a client decides). */
static int use_certificate(SSL_CTX *ctx, const struct cfg_listen *where, char *why, size_t whylen)
{
    /* For the system's reason (OpenSSL gives none), and so that OpenSSL never opens a FIFO. */
    const char *unreadable;
    FILE *f = fopen_regular(where->tls_certificate, &unreadable);
    if (!f) {
        snprintf(why, whylen, "%s", unreadable);
        return -1;
    }
    fclose(f);
    if (SSL_CTX_use_certificate_chain_file(ctx, where->tls_certificate) != 1) {
        /* Not PEM at all, or a certificate OpenSSL's security level refuses (a 512-bit key:
         * "ee key too small"), which is not the same mistake. */
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        if (reason && ERR_GET_LIB(e) != ERR_LIB_PEM)
            snprintf(why, whylen, "a certificate OpenSSL refuses: %s", reason);
        else
            snprintf(why, whylen, "not a PEM certificate (chain)");
        ERR_clear_error();
        return -1;
    }
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    const char *when = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0    ? "expired"
                       : X509_cmp_current_time(X509_get0_notBefore(cert)) > 0 ? "not valid yet"
                                                                              : NULL;
    if (when)
        log_warn("listen %s: tls certificate %s is %s", where->address, where->tls_certificate, when);
    return 0;
}

/* Installs the private key of where into ctx and checks it against the certificate; 0, or -1
 * with why. */
static int use_key(SSL_CTX *ctx, const struct cfg_listen *where, char *why, size_t whylen)
{
    BIO *bio = read_key(where->tls_key, why, whylen);
    if (!bio)
        return -1;
    char exposed[PATH_MAX + 128];
    if (*cfg_secret_exposed(where->tls_key, exposed, sizeof(exposed)))
        log_warn("listen %s: tls key %s", where->address, exposed);
    char *text = NULL;
    long len = BIO_get_mem_data(bio, &text);
    int encrypted = len > 0 && memmem(text, (size_t)len, "ENCRYPTED", 9) != NULL;
    EVP_PKEY *key = encrypted ? NULL : PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    int rc = -1;
    if (encrypted)
        snprintf(why, whylen, "the key is encrypted; somirrord needs it unencrypted");
    else if (!key)
        snprintf(why, whylen, "not a PEM private key");
    else if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1)
        snprintf(why, whylen, "it does not match the certificate");
    else if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        snprintf(why, whylen, "a key of a type or size TLS cannot use");
    else
        rc = 0;
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

/* Sets a cipher list with set (SSL_CTX_set_cipher_list or SSL_CTX_set_ciphersuites); 0, or -1
 * with why. OpenSSL drops the names of a list that match nothing as long as one does, so a
 * misspelt name would pass unseen: each is tried alone first and one that matches nothing is
 * named. Operators ("!x", "-x", "+x") and commands ("@STRENGTH") are not names. */
static int set_ciphers(SSL_CTX *ctx, int (*set)(SSL_CTX *, const char *), const char *list,
                       const char *separators, const char *noun, char *why, size_t whylen)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *name = strtok_r(copy, separators, &save); name && rc == 0;
         name = strtok_r(NULL, separators, &save))
        if (!strchr("!-+@", name[0]) && set(ctx, name) != 1) {
            snprintf(why, whylen, "\"%s\" matches no %s", name, noun);
            rc = -1;
        }
    free(copy);
    if (rc == 0 && set(ctx, list) != 1) {
        snprintf(why, whylen, "no %s left", noun);
        rc = -1;
    }
    ERR_clear_error();
    return rc;
}

/* Installs where's TLS 1.2 ciphers and TLS 1.3 suites into ctx; 0, or -1 with *key the setting
 * at fault and why. */
static int use_ciphers(SSL_CTX *ctx, const struct cfg_listen *where, const char **key, char *why,
                       size_t whylen)
{
    if (set_ciphers(ctx, SSL_CTX_set_cipher_list, where->tls_ciphers ? where->tls_ciphers : TLS12_CIPHERS,
                    ":, ", "TLS 1.2 cipher", why, whylen) != 0) {
        *key = "tls.ciphers";
        return -1;
    }
    if (where->tls_ciphersuites &&
        set_ciphers(ctx, SSL_CTX_set_ciphersuites, where->tls_ciphersuites, ":", "TLS 1.3 suite", why,
                    whylen) != 0) {
        *key = "tls.ciphersuites";
        return -1;
    }
    return 0;
}

/* A server SSL_CTX for a TLS listener (see tls.h), or NULL with err naming the listener, the
 * file or setting and why, and *key the listener's key at fault ("tls.key"). */
static SSL_CTX *context_new(const struct cfg_listen *where, const char **key, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    *key = "tls";
    if (!ctx) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "listen %s: cannot create a TLS context: %s", where->address, why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, where->tls_min_version == TLS_FROM_1_3 ? TLS1_3_VERSION
                                                                                : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_dh_auto(ctx, 1);   /* the DHE suites need parameters: OpenSSL's, by key size */
    if (use_ciphers(ctx, where, key, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "listen %s: %s: %s", where->address, *key, why);
    } else if (use_certificate(ctx, where, why, sizeof(why)) != 0) {
        *key = "tls.certificate";
        snprintf(err, errlen, "listen %s: tls certificate %s: %s", where->address,
                 where->tls_certificate, why);
    } else if (use_key(ctx, where, why, sizeof(why)) != 0) {
        *key = "tls.key";
        snprintf(err, errlen, "listen %s: tls key %s: %s", where->address, where->tls_key, why);
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX **wrk_tls_contexts_new(const struct config *cfg, struct cfg_errors *errs)
{
    SSL_CTX **contexts = xcalloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(*contexts));
    int failures = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (!cfg->listen[i].tls_certificate)
            continue;
        char err[1024], place[64], where[4200];
        const char *key;
        contexts[i] = context_new(&cfg->listen[i], &key, err, sizeof(err));
        if (!contexts[i]) {
            snprintf(place, sizeof(place), "listen[%zu].%s", i, key);
            cfg_errors_add(errs, "%s: %s", cfg_where(cfg, place, where, sizeof(where)), err);
            failures++;
        }
    }
    if (failures == 0)
        return contexts;
    wrk_tls_contexts_free(contexts, cfg->nlisten);
    return NULL;
}

void wrk_tls_contexts_free(SSL_CTX **contexts, size_t n)
{
    if (!contexts)
        return;
    for (size_t i = 0; i < n; i++)
        SSL_CTX_free(contexts[i]);
    free(contexts);
}
