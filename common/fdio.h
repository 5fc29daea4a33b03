/* common/fdio: whole writes to a file descriptor. */
#ifndef SOMIRROR_COMMON_FDIO_H
#define SOMIRROR_COMMON_FDIO_H
#include <stddef.h>

/* Writes all len bytes of data, again after a short write or EINTR. 0, or -1 with errno. */
int write_all(int fd, const char *data, size_t len);

#endif
