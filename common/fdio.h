/* common/fdio: whole writes to a file descriptor, opens that refuse planted links or do not
 * wait on a FIFO, removals at exit, closing inherited descriptors, and what an accept or open
 * error means. */
#ifndef SOMIRROR_COMMON_FDIO_H
#define SOMIRROR_COMMON_FDIO_H
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include "common/log.h"

/* Writes all len bytes of data, again after a short write or EINTR. 0, or -1 with errno. */
int write_all(int fd, const char *data, size_t len);
/* Opens path (flags, and mode for O_CREAT; O_NOFOLLOW and O_CLOEXEC added) where someone
 * else may write its directory, so that a link planted there must not make us create, write
 * or keep open another file: a symbolic link, a file with other hard links and, with
 * regular_only, anything but a regular file are refused. Opened without blocking, so that a
 * FIFO put there cannot hold the caller; the descriptor blocks once returned. The descriptor,
 * or -1 with *why (a phrase for "<what> <path>: <why>"). */
int open_refusing_links(const char *path, int flags, mode_t mode, int regular_only, const char **why);
/* What open_refusing_links refuses, of a file looked at without opening it (st from lstat of
 * its path): a phrase as its *why, or NULL when it would open it. */
const char *link_refusal(const struct stat *st, int regular_only);
/* Opens path to read (following links, close-on-exec) if it is a regular file: a
 * configuration, key, certificate or password file. A FIFO put there is refused at once
 * rather than waited on (open would wait for a writer, and a reloading master with it). The
 * stream, or NULL with *why ("not a regular file", errno EINVAL; or errno's text). */
FILE *fopen_regular(const char *path, const char **why);
/* Removes what this process made at path (what: the key naming it, for the log) as it exits;
 * a failure other than "already gone" is logged as a warning, since the file stays behind
 * (a directory the user the process now runs as cannot write). */
void unlink_at_exit(const char *what, const char *path);
/* Closes the descriptors first to last (~0U: all from first), by close_range where it works;
 * where it does not (Linux before 5.9, or a seccomp filter that refuses it, as older container
 * runtimes' default profiles do) one by one, up to the open files limit. */
void close_fd_range(unsigned first, unsigned last);
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
