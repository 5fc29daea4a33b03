/* common/fdio: whole writes to a file descriptor, and what an accept or open error means (see
 * fdio.h). Owns no state. */
#include "common/fdio.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"

int fd_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int accept_shortage(int err, struct log_repeat *r, const char *what, struct timeval *pause)
{
    if (!fd_shortage(err))
        return 0;
    unsigned unlogged;
    if (log_repeat_due(r, monotonic_ms(), &unlogged))
        log_error("%s: accept: %s; accepting again in %d ms (%u more such pauses since the last "
                  "line; one line a minute at most)", what, strerror(err), ACCEPT_SHORTAGE_PAUSE_MS,
                  unlogged);
    *pause = (struct timeval){0, ACCEPT_SHORTAGE_PAUSE_MS * 1000};
    return 1;
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
