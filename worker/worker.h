/* worker/worker: one somirrord worker process. After fork the master calls wrk_run, which
 * builds the worker's own event loop on the inherited listening sockets, serves HTTP/SOAP
 * until told to stop (SIGTERM, or the master gone) and returns the process's exit status; one
 * whose master has gone ends itself (SIGALRM) if it has not drained within shutdown_timeout.
 * A worker writes only its own registry slot (state idle/busy/stopping; the service writes
 * the tenant and operation of the call in hand). */
#ifndef SOMIRROR_WORKER_WORKER_H
#define SOMIRROR_WORKER_WORKER_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "config/keys.h"
#include "shm/registry.h"

/* A listening socket opened by the master, with the settings it was opened from. */
struct wrk_listener {
    int fd;
    struct cfg_listen conf;     /* address, host and port only */
    SSL_CTX *tls;               /* the master's, made from the listener's tls settings; NULL for plain HTTP */
};

struct wrk_params {
    const struct config *cfg;
    const struct keyring *keys;
    struct registry *reg;
    int slot;                              /* this worker's registry slot */
    uint32_t generation;
    const struct wrk_listener *listeners;
    size_t nlisteners;
    int master_alive_fd;                   /* read end of the master's pipe: EOF = master gone */
    pid_t master_pid;
    sigset_t signal_mask;                  /* the mask to restore once the worker's handlers are set */
};

/* Runs the worker until it has drained; returns the exit status (0 after a graceful stop). */
int wrk_run(const struct wrk_params *params);

#endif
