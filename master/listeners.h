/* master/listeners: the listening sockets, opened once by the master before it drops
 * privileges and held open for its whole life (across reloads), so that a connection attempt
 * is never refused; workers accept on inherited copies. */
#ifndef SOMIRROR_MASTER_LISTENERS_H
#define SOMIRROR_MASTER_LISTENERS_H
#include <stddef.h>

#include "config/config.h"
#include "worker/worker.h"

struct listeners {
    struct wrk_listener *items;   /* conf strings are owned copies */
    size_t n;
};

/* Opens every cfg->listen entry (SO_REUSEADDR, non-blocking, backlog 511; IPv6 sockets are
 * IPv6-only so that "[::]:p" and "0.0.0.0:p" can both be listed), with no TLS context yet
 * (lsn_swap_tls). -1 with err on failure, nothing left open. */
int lsn_open(const struct config *cfg, struct listeners *out, char *err, size_t errlen);
/* For -t: whether every listen address of cfg resolves (nothing is bound). 0, or -1 with err. */
int lsn_check(const struct config *cfg, char *err, size_t errlen);
/* Whether cfg lists exactly the addresses that are open, in any order (otherwise a restart is
 * needed). */
int lsn_same_addresses(const struct listeners *lsn, const struct config *cfg);
/* Puts cfg's TLS contexts (one per cfg->listen entry, as wrk_tls_contexts_new makes them) in
 * service for the workers started next, on the open listeners whose addresses cfg lists (the
 * first entry of an address listed twice), and returns contexts, which now hold the previous
 * ones there: to free (cfg->nlisten of them), or to swap back with the same cfg. */
SSL_CTX **lsn_swap_tls(struct listeners *lsn, const struct config *cfg, SSL_CTX **contexts);
void lsn_close(struct listeners *lsn);

#endif
