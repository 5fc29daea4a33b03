/* master/status: the status socket (a unix socket served by the master's event loop). A client
 * writes one command line (at most 4096 bytes, ending in '\n'); the master answers through the
 * handler (a longer line: an error line), ends its side, discards what the client still sends
 * until it closes (for a bounded time and amount) and closes. The socket file is created with
 * the configured mode and removed on close. */
#ifndef SOMIRROR_MASTER_STATUS_H
#define SOMIRROR_MASTER_STATUS_H
#include <stddef.h>
#include <event2/event.h>

#include "common/buf.h"

#define STATUS_LINE_MAX 4096

typedef void (*status_handler)(void *arg, const char *line, size_t len, struct buf *answer);

struct status_server;

/* Binds path with mode. A path where a server answers is refused; a stale socket file is
 * replaced. NULL with err on failure. */
struct status_server *status_open(struct event_base *base, const char *path, int mode,
                                  status_handler handler, void *arg, char *err, size_t errlen);
/* The listening socket (so that a forked worker can close its copy). */
int status_fd(const struct status_server *server);
void status_close(struct status_server *server);

#endif
