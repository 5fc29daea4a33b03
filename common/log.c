/* common/log: line-oriented logging to a file, stderr or syslog (see log.h). Each line is
 * written with a single write(2) so that lines of several processes appending to one file never
 * interleave. */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/fdio.h"

enum log_target { TARGET_STDERR, TARGET_SYSLOG, TARGET_FILE };

/* Warnings and errors written before the first log_open (a configuration's, at start) go to
 * stderr, which a daemon started by an init system shows no one: they are kept, and written
 * again to the log the first log_open opens. */
enum { EARLY_MAX = 16, EARLY_TEXT = 512 };
static struct {
    enum log_level level;
    char text[EARLY_TEXT];
} early[EARLY_MAX];
static size_t nearly;
static int ever_opened;

static enum log_target target = TARGET_STDERR;
static enum log_level max_level = LOG_LVL_INFO;
static int file_fd = -1;
static char file_path[4096];
static char syslog_ident[64];   /* openlog keeps the pointer */
static char tenant[64];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_repeat_due(struct log_repeat *r, int64_t now_ms, unsigned *unlogged)
{
    if (r->logged && now_ms - r->last_ms < LOG_REPEAT_PERIOD_MS) {
        r->unlogged++;
        return 0;
    }
    *unlogged = r->unlogged;
    r->unlogged = 0;
    r->last_ms = now_ms;
    r->logged = 1;
    return 1;
}

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

/* Opened by root at start, in a directory that may be the service user's: a planted link must
 * not make root create or append to another file, nor hand the workers a descriptor of it. */
static int open_file(const char *path, char *err, size_t errlen)
{
    const char *why;
    int fd = open_refusing_links(path, O_WRONLY | O_APPEND | O_CREAT, 0640, 0, &why);
    if (fd < 0 && err)
        snprintf(err, errlen, "cannot open log file %s: %s", path, why);
    return fd;
}

int log_open(const char *name, enum log_level level, const char *ident, char *err, size_t errlen)
{
    enum log_target next;
    int fd = -1;
    if (strcmp(name, "stderr") == 0) {
        next = TARGET_STDERR;
    } else if (strcmp(name, "syslog") == 0) {
        next = TARGET_SYSLOG;
    } else {
        if (strlen(name) >= sizeof(file_path)) {
            snprintf(err, errlen, "log file path too long");
            return -1;
        }
        fd = open_file(name, err, errlen);
        if (fd < 0)
            return -1;
        next = TARGET_FILE;
    }
    log_close();
    target = next;
    max_level = level;
    if (next == TARGET_FILE) {
        file_fd = fd;
        snprintf(file_path, sizeof(file_path), "%s", name);
    } else if (next == TARGET_SYSLOG) {
        snprintf(syslog_ident, sizeof(syslog_ident), "%s", ident ? ident : "somirror");
        openlog(syslog_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
    if (!ever_opened) {
        ever_opened = 1;
        for (size_t i = 0; i < nearly && next != TARGET_STDERR; i++)
            log_write(early[i].level, "%s (at start)", early[i].text);
        nearly = 0;
    }
    return 0;
}

void log_set_level(enum log_level level)
{
    max_level = level;
}

enum log_level log_get_level(void)
{
    return max_level;
}

int log_reopen(void)
{
    if (target != TARGET_FILE)
        return 0;
    char err[sizeof(file_path) + 128];
    int fd = open_file(file_path, err, sizeof(err));
    if (fd < 0) {
        log_error("%s; keeping the old file open", err);
        return -1;
    }
    /* Keeps the descriptor number other code may hold, and close-on-exec, which dup2 would
     * clear (hook programs must not inherit the log). */
    dup3(fd, file_fd, O_CLOEXEC);
    close(fd);
    return 1;
}

void log_after_fork(void)
{
    if (target != TARGET_SYSLOG)
        return;
    closelog();   /* forgets the number (its close fails: it is closed already) */
    openlog(syslog_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_tenant(const char *name)
{
    snprintf(tenant, sizeof(tenant), "%s", name ? name : "");
}

int log_fd(void)
{
    if (target == TARGET_FILE)
        return file_fd;
    if (target == TARGET_STDERR)
        return STDERR_FILENO;
    return -1;
}

void log_close(void)
{
    if (target == TARGET_FILE && file_fd >= 0)
        close(file_fd);
    if (target == TARGET_SYSLOG)
        closelog();
    file_fd = -1;
    target = TARGET_STDERR;
}

/* Writes text into out (outlen > 0) with every C0 control, DEL and C1 control (as UTF-8,
 * U+0080..U+009F) written as \xNN, cut to fit. Messages carry text a client chose (libxml2's
 * errors quote a request's namespaces and names, a SOAPAction is echoed): a raw newline or
 * carriage return in it would end the line and forge the next one, and an escape sequence would
 * act on the terminal of whoever reads the log. A backslash is written \x5c too (as nginx
 * does), so that a client's "\x0a" cannot pass for an escaped newline: the log reads back
 * unambiguously. */
static size_t put_escaped(char *out, size_t o, unsigned char byte)
{
    static const char hex[] = "0123456789abcdef";
    out[o++] = '\\';
    out[o++] = 'x';
    out[o++] = hex[byte >> 4];
    out[o++] = hex[byte & 15];
    return o;
}

static void escape_controls(const char *text, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
        size_t need = c1 ? 8 : p[0] < 0x20 || p[0] == 0x7f || p[0] == '\\' ? 4 : 1;
        if (o + need >= outlen)
            break;
        if (need == 1) {
            out[o++] = (char)*p;
        } else {
            o = put_escaped(out, o, p[0]);
            if (c1)
                o = put_escaped(out, o, *++p);
        }
    }
    out[o] = '\0';
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    if (level > max_level)
        return;
    int saved_errno = errno;
    char raw[2048], msg[2048];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    escape_controls(raw, msg, sizeof(msg));
    if (!ever_opened && level <= LOG_LVL_WARN && nearly < EARLY_MAX) {
        early[nearly].level = level;
        size_t n = strnlen(msg, EARLY_TEXT - 1);
        memcpy(early[nearly].text, msg, n);
        early[nearly].text[n] = '\0';
        nearly++;
    }
    if (target == TARGET_SYSLOG) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        if (tenant[0])
            syslog(prio[level], "[%s] %s", tenant, msg);
        else
            syslog(prio[level], "%s", msg);
        errno = saved_errno;
        return;
    }
    char line[2304];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%ld]%s%s%s %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], (long)getpid(),
                     tenant[0] ? " [" : "", tenant, tenant[0] ? "]" : "", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    int fd = target == TARGET_FILE ? file_fd : STDERR_FILENO;
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    errno = saved_errno;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}
