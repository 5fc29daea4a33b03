/* master/pidfile: the pid file, locked (fcntl F_SETLK) by the master for its whole life. A
 * file that another live process holds locked means somirrord is running: refuse to start.
 * A file without a lock is stale and taken over. */
#ifndef SOMIRROR_MASTER_PIDFILE_H
#define SOMIRROR_MASTER_PIDFILE_H
#include <stddef.h>
#include <sys/types.h>

struct pidfile {
    char *path;
    int fd;
};

/* Opens and locks path (created 0644). -1 with err when it cannot, or when a live process
 * holds it ("already running"). The lock belongs to the calling process: take it after
 * daemonising. */
int pidfile_acquire(struct pidfile *pf, const char *path, char *err, size_t errlen);
/* Writes pid into the locked file (once serving). */
int pidfile_write(struct pidfile *pf, pid_t pid, char *err, size_t errlen);
/* Removes the file and drops the lock. */
void pidfile_release(struct pidfile *pf);

#endif
