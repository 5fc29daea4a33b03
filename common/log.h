/* common/log: the process's log. One destination per process (a file, stderr or syslog),
 * chosen by the master from the config and inherited by workers across fork. Each line has the
 * time, level, pid and, when a call for a tenant is in hand, the tenant. Key material must never
 * be passed to these functions. */
#ifndef SOMIRROR_COMMON_LOG_H
#define SOMIRROR_COMMON_LOG_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* target: "stderr", "syslog" or a file path (opened for append, created 0640).
 * Returns 0, or -1 with a message in err. Until called, logging goes to stderr at info; the
 * first call that opens a file or syslog writes there again the warnings and errors written
 * before it (the first 16), marked "(at start)". */
int log_open(const char *target, enum log_level level, const char *ident, char *err, size_t errlen);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Reopens the log file (SIGUSR1 / logrotate): 1 when reopened, 0 for stderr and syslog (nothing
 * to do), -1 when the file cannot be opened (logged, naming it; the old file stays open). */
int log_reopen(void);
/* In a new process whose inherited descriptors were just closed (a worker, a hook's
 * supervisor): syslog's socket went with them, and glibc, still holding its number, would write
 * to and close whatever descriptor took it next (a worker's epoll instance, a hook's pipe); the
 * connection is made anew. A no-op for a file or stderr, whose descriptor is kept (log_fd). */
void log_after_fork(void);
/* The tenant named on every following line of this process, or NULL for none. */
void log_set_tenant(const char *tenant);
/* The file descriptor lines are written to (for redirecting a daemon's stderr), or -1. */
int log_fd(void);
void log_close(void);

/* A condition that repeats while it lasts (accept failing while descriptors are short): its
 * first line at once, then at most one per LOG_REPEAT_PERIOD_MS, saying how many it stands for.
 * Zero-initialise one per condition. */
#define LOG_REPEAT_PERIOD_MS 60000
struct log_repeat {
    int64_t last_ms;
    unsigned unlogged;
    int logged;
};
/* Whether to log now (now_ms: monotonic); *unlogged gets how many were not logged since the
 * last line. */
int log_repeat_due(struct log_repeat *r, int64_t now_ms, unsigned *unlogged);

/* "error" "warn" "info" "debug" -> level; returns -1 for anything else. */
int log_level_parse(const char *name);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) log_write(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
