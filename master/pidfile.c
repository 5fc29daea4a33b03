/* master/pidfile: the master's locked pid file (see pidfile.h). */
#include "master/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/xalloc.h"

#define PIDFILE_TRIES 3   /* opens of a pid file that each time is gone once locked */

static int lock_whole_file(int fd, struct flock *probe)
{
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &lock) == 0)
        return 0;
    *probe = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, probe) < 0)
        probe->l_pid = 0;
    return -1;
}

/* Whether path still names the file fd has open. */
static int still_named(int fd, const char *path)
{
    struct stat opened, named;
    return fstat(fd, &opened) == 0 && lstat(path, &named) == 0 && opened.st_dev == named.st_dev &&
           opened.st_ino == named.st_ino;
}

int pidfile_acquire(struct pidfile *pf, const char *path, char *err, size_t errlen)
{
    pf->path = NULL;
    /* Root opens it in a directory the service's user may write (it removes the file at exit):
     * a link planted there must not make root write, create or keep open another file. */
    const char *why;
    for (int tries = 1;; tries++) {
        pf->fd = open_refusing_links(path, O_RDWR | O_CREAT, 0644, 1, &why);
        if (pf->fd < 0) {
            snprintf(err, errlen, "pid file %s: %s", path, why);
            return -1;
        }
        struct flock holder;
        if (lock_whole_file(pf->fd, &holder) < 0) {
            int saved = errno;
            if (saved == EAGAIN || saved == EACCES)
                snprintf(err, errlen, "somirrord is already running (pid %ld holds the pid file %s)",
                         (long)holder.l_pid, path);
            else
                snprintf(err, errlen, "pid file %s: cannot lock: %s", path, strerror(saved));
            close(pf->fd);
            pf->fd = -1;
            return -1;
        }
        /* A somirrord exiting between our open and our lock removed the file we locked, which
         * then keeps no one out and is no pid file: the one at path is locked instead. */
        if (still_named(pf->fd, path))
            break;
        close(pf->fd);
        pf->fd = -1;
        if (tries == PIDFILE_TRIES) {
            snprintf(err, errlen, "pid file %s: removed or replaced each time it was locked", path);
            return -1;
        }
    }
    /* Anyone may read a pid file (kill -HUP $(cat ...)), which the daemon's umask 027 would
     * hide: made so here, while the master is still root (it writes the pid once it is not). A
     * file another user owns keeps its mode. */
    if (fchmod(pf->fd, 0644) < 0 && errno != EPERM)
        log_warn("pid file %s: cannot make it readable by all: %s", path, strerror(errno));
    pf->path = xstrdup(path);
    return 0;
}

int pidfile_write(struct pidfile *pf, pid_t pid, char *err, size_t errlen)
{
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)pid);
    if (ftruncate(pf->fd, 0) < 0 || pwrite(pf->fd, text, (size_t)len, 0) != len) {
        snprintf(err, errlen, "pid file %s: cannot write: %s", pf->path, strerror(errno));
        return -1;
    }
    return 0;
}

void pidfile_release(struct pidfile *pf)
{
    if (pf->fd < 0)
        return;
    unlink_at_exit("pid_file", pf->path);
    close(pf->fd);
    pf->fd = -1;
    free(pf->path);
    pf->path = NULL;
}
