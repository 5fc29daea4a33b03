/* worker/tls: the TLS server context of one listener, made once per config generation. The
 * master builds one at config load only to validate the certificate and key (so that `-t` and
 * a reload report a bad pair); each worker builds its own after fork and never shares it. */
#ifndef SOMIRROR_WORKER_TLS_H
#define SOMIRROR_WORKER_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "config/config.h"

/* A server SSL_CTX (TLS 1.2 or later) for a listener with tls_certificate/tls_key set.
 * NULL with err naming the listener and file on failure. Key material is never logged. */
SSL_CTX *wrk_tls_context_new(const struct cfg_listen *where, char *err, size_t errlen);

/* Checks every TLS listener of cfg; each failure is added to errs. Returns the failure count. */
int wrk_tls_check_config(const struct config *cfg, struct cfg_errors *errs);

#endif
