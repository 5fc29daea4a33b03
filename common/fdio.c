/* common/fdio: whole writes to a file descriptor, opens that refuse planted links or do not
 * wait on a FIFO, removals at exit, closing inherited descriptors, and what an accept or open
 * error means (see fdio.h). Owns no state. */
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"

static const char symlink_refused[] = "a symbolic link is there (refused)";

/* Opens path with flags, O_NONBLOCK (open itself would wait on a FIFO for its other end) and
 * O_CLOEXEC, then makes the descriptor block as usual. The descriptor with *st, or -1 with
 * *why. */
static int open_without_waiting(const char *path, int flags, mode_t mode, struct stat *st,
                                const char **why)
{
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, mode);
    if (fd < 0) {
        *why = errno == ELOOP && (flags & O_NOFOLLOW) ? symlink_refused : strerror(errno);
        return -1;
    }
    if (fstat(fd, st) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}

const char *link_refusal(const struct stat *st, int regular_only)
{
    if (S_ISLNK(st->st_mode))
        return symlink_refused;
    if (S_ISREG(st->st_mode) && st->st_nlink > 1)
        return "a file with other hard links is there (refused)";
    if (regular_only && !S_ISREG(st->st_mode))
        return "not a regular file (refused)";
    return NULL;
}

int open_refusing_links(const char *path, int flags, mode_t mode, int regular_only, const char **why)
{
    struct stat st;
    int fd = open_without_waiting(path, flags | O_NOFOLLOW, mode, &st, why);
    if (fd < 0)
        return -1;
    if (!(*why = link_refusal(&st, regular_only)))
        return fd;
    close(fd);
    return -1;
}

FILE *fopen_regular(const char *path, const char **why)
{
    struct stat st;
    int fd = open_without_waiting(path, O_RDONLY, 0, &st, why);
    if (fd < 0)
        return NULL;
    FILE *file = NULL;
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        errno = EINVAL;
    } else if (!(file = fdopen(fd, "r"))) {
        *why = strerror(errno);
    }
    if (!file)
        close(fd);
    return file;
}

void unlink_at_exit(const char *what, const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("%s %s is left behind: cannot remove it: %s", what, path, strerror(errno));
}

void close_fd_range(unsigned first, unsigned last)
{
    if (first > last || close_range(first, last, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    unsigned end = max > 0 ? (unsigned)max : 1024;
    for (unsigned fd = first; fd <= last && fd < end; fd++)
        close((int)fd);
}

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
