/* master/daemon: the classic Unix daemon steps of the master: detaching (double fork, setsid,
 * chdir /, inherited descriptors closed, standard streams to /dev/null) with the starting
 * process waiting for the daemon's word so that its exit status says whether somirrord
 * started, and the privilege drop; and a check run as the service's user in a child
 * (somirrord -t, somirrorctl). */
#ifndef SOMIRROR_MASTER_DAEMON_H
#define SOMIRROR_MASTER_DAEMON_H
#include <stddef.h>

/* Opens /dev/null on each standard stream that somirrord was started without (a starter that
 * closed them, as `somirrord <&- >&- 2>&-` does): else the first files somirrord opens get
 * numbers 0 to 2, which the daemon's and the workers' daemon_null_stdio, and any write to
 * stderr, then take for standard streams (the pid file's lock, the log, a listening socket
 * lost). -1 when /dev/null cannot be opened. */
int daemon_open_stdio(void);
/* Detaches: closes every descriptor the starter left open beyond the standard streams (so
 * nothing may be open that the daemon needs), then forks. Returns in the daemon (grandchild)
 * with *ready_fd open; the starting process waits and exits 0 once daemon_ready is called, 1
 * if the daemon exits first. -1 with err when a fork fails. Error messages written to stderr
 * before daemon_ready still reach the terminal. */
int daemon_detach(int *ready_fd, char *err, size_t errlen);
/* The daemon serves: standard streams go to /dev/null and the starting process exits 0. */
void daemon_ready(int ready_fd);
/* Standard streams to /dev/null (what daemon_ready does first; a daemon's workers, forked
 * before it, do the same). */
void daemon_null_stdio(void);

/* Whether user and group (NULL: the user's primary group) exist: 0, or -1 with err. */
int daemon_check_user(const char *user, const char *group, char *err, size_t errlen);
/* Makes the file open as fd user's, keeping its group, when root owns it and path names it as a
 * plain file with one link (no symlink or hard link to another file): a file the master
 * opened as root and must reopen once it is user. Needs root; -1 with err. */
int daemon_give_to_user(int fd, const char *path, const char *user, const char *group, char *err,
                        size_t errlen);
/* Makes the socket at path (the status socket, just bound as root) belong to user and group
 * (or the user's primary group), so that status_socket_mode's group bits let that group's
 * operators in. Needs root; -1 with err. */
int daemon_give_socket(const char *path, const char *user, const char *group, char *err, size_t errlen);
/* Switches to user (and group, or the user's primary group) with its supplementary groups.
 * Needs root; -1 with err otherwise, or when the user or group is unknown. */
int daemon_drop_privileges(const char *user, const char *group, char *err, size_t errlen);
/* Runs fn(arg, err, errlen), a check that must see what user sees, as user (and group) when
 * this process is root and user is set: in a child process that drops its privileges, so that
 * this one keeps its own; else here. fn returns a status from 0 to 124. Returns that status with
 * what fn wrote in err, or -1 with err when the child could not run or did not end normally. */
int daemon_run_as(const char *user, const char *group,
                  int (*fn)(void *arg, char *err, size_t errlen), void *arg, char *err, size_t errlen);

#endif
