/* common/fdio: whole writes to a file descriptor, and what an accept or open error means. */
#ifndef SOMIRROR_COMMON_FDIO_H
#define SOMIRROR_COMMON_FDIO_H
#include <stddef.h>

/* Writes all len bytes of data, again after a short write or EINTR. 0, or -1 with errno. */
int write_all(int fd, const char *data, size_t len);
/* Whether err (of accept, open) means the process or the system ran out of descriptors or
 * memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): a shortage that passes, not the request's fault. */
int fd_shortage(int err);

#endif
