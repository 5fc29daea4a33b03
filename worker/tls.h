/* worker/tls: the TLS server contexts of the listeners, one per TLS listener and config
 * generation. The master builds them when it loads a configuration (so that `-t` and a reload
 * report a bad certificate or key, and a reload that fails keeps the old ones); workers inherit
 * them when they fork and never read the files themselves, so a respawned worker serves the
 * same certificate as its generation, and session tickets made by one worker resume in all. */
#ifndef SOMIRROR_WORKER_TLS_H
#define SOMIRROR_WORKER_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "config/config.h"

/* One server SSL_CTX per cfg->listen entry (NULL for a plain one): TLS 1.2 or later (1.3 with
 * tls.min_version), TLS 1.2 with forward-secret AEAD suites only unless tls.ciphers names
 * others, no renegotiation, no compression. Or NULL with every failure added to errs, each
 * placed at its key and naming the listener, the file or setting and why (an encrypted key is
 * one); an expired certificate is served, with a warning. Key material is never logged. */
SSL_CTX **wrk_tls_contexts_new(const struct config *cfg, struct cfg_errors *errs);
/* Frees the n contexts of wrk_tls_contexts_new (NULL: nothing). */
void wrk_tls_contexts_free(SSL_CTX **contexts, size_t n);

#endif
