/* master/daemon: detaching, dropping privileges, and checks run as the service's user (see
 * daemon.h). */
#include "master/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fdio.h"

/* The starting process: waits for the daemon's one byte, exits with what it means. */
static void wait_for_daemon(pid_t intermediate, int ready_read)
{
    char word = 1;
    waitpid(intermediate, NULL, 0);
    while (read(ready_read, &word, 1) < 0 && errno == EINTR)
        ;
    _exit(word == 0 ? 0 : 1);
}

int daemon_open_stdio(void)
{
    /* open takes the lowest free number: fd, as those below are open by then. */
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return -1;
    return 0;
}

int daemon_detach(int *ready_fd, char *err, size_t errlen)
{
    /* Every descriptor but the standard streams (daemon(7)'s first step): one the starter left
     * open, such as the pipe a postinst's debconf holds on fd 3 or a shell's $(...), would be
     * held for the daemon's whole life, and whoever waits for its end would wait for ever.
     * Nothing of the daemon's own is open yet. */
    close_fd_range(STDERR_FILENO + 1, ~0U);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot daemonise: pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t first = fork();
    if (first < 0) {
        snprintf(err, errlen, "cannot daemonise: fork: %s", strerror(errno));
        return -1;
    }
    if (first > 0) {
        close(ready[1]);
        wait_for_daemon(first, ready[0]);
    }
    close(ready[0]);
    setsid();
    pid_t second = fork();
    if (second < 0)
        _exit(1);
    if (second > 0)
        _exit(0);
    if (chdir("/") < 0)
        _exit(1);
    umask(027);
    *ready_fd = ready[1];
    return 0;
}

void daemon_null_stdio(void)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
}

void daemon_ready(int ready_fd)
{
    daemon_null_stdio();
    char ok = 0;
    ssize_t told = write(ready_fd, &ok, 1);   /* fails only when the starter is gone */
    (void)told;
    close(ready_fd);
}

/* The ids of user and group (NULL: the user's primary group); -1 with err when unknown. */
static int user_ids(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                    size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user %s: no such user", user);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            snprintf(err, errlen, "group %s: no such group", group);
            return -1;
        }
        *gid = gr->gr_gid;
    }
    return 0;
}

int daemon_check_user(const char *user, const char *group, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    return user_ids(user, group, &uid, &gid, err, errlen);
}

int daemon_give_to_user(int fd, const char *path, const char *user, const char *group, char *err,
                        size_t errlen)
{
    uid_t uid;
    gid_t gid;
    struct stat opened, named;
    if (user_ids(user, group, &uid, &gid, err, errlen) < 0)
        return -1;
    /* Only the plain file that path names and fd has open: never what a link put there by
     * someone else points to (root would hand it over). */
    if (fstat(fd, &opened) != 0 || lstat(path, &named) != 0 || !S_ISREG(named.st_mode) ||
        named.st_nlink != 1 || named.st_dev != opened.st_dev || named.st_ino != opened.st_ino ||
        named.st_uid != 0)
        return 0;
    if (fchown(fd, uid, (gid_t)-1) < 0) {
        snprintf(err, errlen, "%s: cannot give it to user %s: %s", path, user, strerror(errno));
        return -1;
    }
    return 0;
}

int daemon_give_socket(const char *path, const char *user, const char *group, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (user_ids(user, group, &uid, &gid, err, errlen) < 0)
        return -1;
    if (lchown(path, uid, gid) < 0) {   /* the socket itself, never what a link points to */
        snprintf(err, errlen, "%s: cannot give it to user %s: %s", path, user, strerror(errno));
        return -1;
    }
    return 0;
}

int daemon_run_as(const char *user, const char *group,
                  int (*fn)(void *arg, char *err, size_t errlen), void *arg, char *err, size_t errlen)
{
    enum { DROP_FAILED = 125 };
    err[0] = '\0';
    if (!user || geteuid() != 0)
        return fn(arg, err, errlen);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot run a check as user %s: %s", user, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        int status = daemon_drop_privileges(user, group, err, errlen) < 0 ? DROP_FAILED : fn(arg, err, errlen);
        if (err[0] && write_all(fds[1], err, strlen(err)) != 0)
            status = DROP_FAILED;
        fflush(NULL);
        _exit(status);
    }
    int fork_errno = errno;
    close(fds[1]);
    size_t got = 0;
    while (pid > 0 && got + 1 < errlen) {
        ssize_t n = read(fds[0], err + got, errlen - 1 - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;
    }
    err[got] = '\0';
    close(fds[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) != DROP_FAILED)
        return WEXITSTATUS(status);
    if (got == 0)
        snprintf(err, errlen, "cannot run a check as user %s: %s", user,
                 pid < 0 ? strerror(fork_errno) : "the check failed");
    return -1;
}

int daemon_drop_privileges(const char *user, const char *group, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (user_ids(user, group, &uid, &gid, err, errlen) < 0)
        return -1;
    if (setgid(gid) < 0 || initgroups(user, gid) < 0 || setuid(uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, errlen, "cannot switch to user %s: root could be regained", user);
        return -1;
    }
    return 0;
}
