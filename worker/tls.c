/* worker/tls: builds and checks the TLS server contexts of the configured listeners (see tls.h).
 * Owns nothing long-lived: the caller frees what it gets. */
#include "worker/tls.h"

#include <stdio.h>
#include <openssl/err.h>

/* The first queued OpenSSL error as text (the reason only: no key material). */
static void openssl_reason(char *out, size_t outlen)
{
    unsigned long code = ERR_get_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    snprintf(out, outlen, "%s", reason ? reason : "unknown error");
    ERR_clear_error();
}

SSL_CTX *wrk_tls_context_new(const struct cfg_listen *where, char *err, size_t errlen)
{
    char reason[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        openssl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "listen %s: cannot create a TLS context: %s", where->address, reason);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, where->tls_certificate) != 1) {
        openssl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "listen %s: tls certificate %s: %s", where->address,
                 where->tls_certificate, reason);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, where->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        openssl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "listen %s: tls key %s: %s (or it does not match the certificate)",
                 where->address, where->tls_key, reason);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int wrk_tls_check_config(const struct config *cfg, struct cfg_errors *errs)
{
    int failures = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (!cfg->listen[i].tls_certificate)
            continue;
        char err[1024];
        SSL_CTX *ctx = wrk_tls_context_new(&cfg->listen[i], err, sizeof(err));
        if (!ctx) {
            cfg_errors_add(errs, "%s", err);
            failures++;
        }
        SSL_CTX_free(ctx);
    }
    return failures;
}
