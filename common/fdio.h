/* common/fdio: whole writes to a file descriptor, and what an accept or open error means. */
#ifndef SOMIRROR_COMMON_FDIO_H
#define SOMIRROR_COMMON_FDIO_H
#include <stddef.h>
#include <sys/time.h>

#include "common/log.h"

/* Writes all len bytes of data, again after a short write or EINTR. 0, or -1 with errno. */
int write_all(int fd, const char *data, size_t len);
/* Whether err (of accept, open) means the process or the system ran out of descriptors or
 * memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): a shortage that passes, not the request's fault. */
int fd_shortage(int err);

/* Out of descriptors or memory, accept() fails and the listening socket stays readable:
 * libevent would try again at once, for ever, at full CPU. A listener pauses accepting for
 * ACCEPT_SHORTAGE_PAUSE_MS instead, as nginx does. For err of an accept: 0 when it is the
 * connection's own error (go on accepting); else 1 with *pause set, logged as "<what>: accept:
 * ..." at most once a minute (r: the listener's own). */
#define ACCEPT_SHORTAGE_PAUSE_MS 500
int accept_shortage(int err, struct log_repeat *r, const char *what, struct timeval *pause);

#endif
