/* common/fdio: whole writes to a file descriptor, and what an accept or open error means (see
 * fdio.h). Owns no state. */
#include "common/fdio.h"

#include <errno.h>
#include <unistd.h>

int fd_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}
