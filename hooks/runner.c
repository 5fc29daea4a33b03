/* hooks/runner: runs an operator hook program detached from the worker (see hooks.h).
 *
 * Processes: the worker forks an intermediate child that forks the supervisor and exits at
 * once; the worker reaps only that intermediate (a few microseconds), so the supervisor is
 * never the worker's child and the worker's SIGCHLD handling is untouched. The supervisor
 * drops every descriptor it inherited but the log's, resets the worker's signal dispositions,
 * and forks each program into a new session (its own process group), reading its stdout and
 * stderr through pipes until it exits or its time limit passes.
 *
 * Shared memory: the supervisor writes the tenant's last_hook, and last_error for a failed run
 * (reg_tenant_hook_ran_unlocked), and, for an exclusive job, holds the tenant's hook word while
 * it runs. Nothing else. */
#include "hooks/hooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

extern char **environ;

enum {
    LINE_MAX_BYTES = 1024,      /* longer output lines are logged in pieces */
    LINES_MAX = 1000,           /* lines logged per stream and run; the rest is counted */
    DRAIN_MS = 500,             /* output still read after the program exited (its children) */
    TICK_MS = 100
};

/* The signal that asked a supervisor to stop (SIGINT, SIGQUIT or SIGTERM: a ^C or a kill of
 * somirrord's process group reaches it too), or 0. */
static volatile sig_atomic_t stop_signal;

static void record(const struct hook_job *job, int failed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the tenant's last_hook, and its last_error when the run failed (when there is a
 * registry). */
static void record(const struct hook_job *job, int failed, const char *fmt, ...)
{
    if (!job->reg)
        return;
    char text[REG_HOOK_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    reg_tenant_hook_ran_unlocked(job->reg, job->idx, text, failed, (int64_t)time(NULL));
}

/* ---- output lines ---- */

struct stream {
    int fd;                    /* -1 once closed */
    enum log_level level;
    const char *what;          /* "" for stdout, " (stderr)" */
    char line[LINE_MAX_BYTES + 1];
    size_t len;
    unsigned lines;
    unsigned dropped;
};

static void stream_emit(struct stream *s, const char *label)
{
    if (s->lines >= LINES_MAX) {
        s->dropped++;
    } else {
        s->line[s->len] = '\0';
        for (size_t i = 0; i < s->len; i++)
            if ((unsigned char)s->line[i] < 0x20 && s->line[i] != '\t')
                s->line[i] = '?';
        log_write(s->level, "hook %s%s: %s", label, s->what, s->line);
        s->lines++;
    }
    s->len = 0;
}

/* Reads what is there; 0 while open, -1 at end of file (the descriptor is closed). */
static int stream_read(struct stream *s, const char *label)
{
    char chunk[4096];
    ssize_t got = read(s->fd, chunk, sizeof(chunk));
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (got <= 0) {
        if (s->len)
            stream_emit(s, label);
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    for (ssize_t i = 0; i < got; i++) {
        char c = chunk[i];
        if (c == '\n') {
            if (s->len && s->line[s->len - 1] == '\r')
                s->len--;
            stream_emit(s, label);
        } else {
            s->line[s->len++] = c;
            if (s->len == LINE_MAX_BYTES)
                stream_emit(s, label);
        }
    }
    return 0;
}

static void stream_finish(struct stream *s, const char *label)
{
    if (s->fd >= 0) {
        if (s->len)
            stream_emit(s, label);
        close(s->fd);
        s->fd = -1;
    }
    if (s->dropped)
        log_warn("hook %s%s: %u more lines not logged", label, s->what, s->dropped);
}

/* ---- the program's process ---- */

static int env_name_matches(const char *entry, char *const *add)
{
    for (size_t i = 0; add && add[i]; i++) {
        size_t n = strcspn(add[i], "=");
        if (strncmp(entry, add[i], n) == 0 && entry[n] == '=')
            return 1;
    }
    return 0;
}

/* environ without the names in add, then add. */
static char **build_env(char *const *add)
{
    size_t n = 0, nadd = 0;
    while (environ && environ[n])
        n++;
    while (add && add[nadd])
        nadd++;
    char **env = xcalloc(n + nadd + 1, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_name_matches(environ[i], add))
            env[k++] = environ[i];
    for (size_t i = 0; i < nadd; i++)
        env[k++] = add[i];
    env[k] = NULL;
    return env;
}

/* Every signal's action back to the default but those in ignore (0-terminated): in a new
 * process, before its own code runs, and before unblock_signals. */
static void reset_signals(const int *ignore)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    for (; ignore && *ignore; ignore++)
        signal(*ignore, SIG_IGN);
}

static void unblock_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the program's child: never returns. Reports exec's errno through status_fd. */
static void exec_program(char *const *argv, char **env, int out_fd, int err_fd, int status_fd)
{
    setsid();
    reset_signals(NULL);
    unblock_signals();
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
        dup2(err_fd, STDERR_FILENO) < 0) {
        int e = errno;
        ssize_t w = write(status_fd, &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    execve(argv[0], argv, env);
    int e = errno;
    ssize_t w = write(status_fd, &e, sizeof(e));
    (void)w;
    _exit(127);
}

/* Why execve of path failed, for the log and last_hook: strerror, and for an ENOENT of a file
 * that is there what is missing (a script's #! interpreter, say one written "/bin/sh\r" by an
 * editor with CR LF line ends), which "No such file or directory" of the program itself hides. */
static void exec_failure(const char *path, int e, char *out, size_t outlen)
{
    if (e == ENOENT && access(path, F_OK) == 0)
        snprintf(out, outlen, "%s: its #! interpreter (or loader) was not found", strerror(e));
    else
        snprintf(out, outlen, "%s", strerror(e));
}

/* 1 once reaped; -1 if it cannot be (ECHILD: SIGCHLD is ignored, so it was reaped for us). */
static int reap_child(pid_t pid, int *status)
{
    for (;;) {
        if (waitpid(pid, status, 0) == pid)
            return 1;
        if (errno != EINTR)
            return -1;
    }
}

/* Whether the program has ended, without reaping it: while it is a zombie its pid, which is
 * also its process group's id, cannot be given to another process, so a kill of the group
 * after it ended still reaches only what is left of that group. */
static int child_ended(pid_t pid)
{
    siginfo_t info = {0};
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
        if (errno != EINTR)
            return 1;   /* not ours to wait for any more (cannot happen): stop waiting */
    return info.si_pid == pid;
}

/* Ends what a program left running in its process group (pgid: the program's pid, reaped by
 * now): SIGTERM was sent while the program was still a zombie. The group's processes, ours to
 * reap as far as the supervisor is their subreaper (not those whose parent left the group with
 * a session of its own), get grace_ms to end, then SIGKILL, and as long again to be gone. A
 * signal goes to the group only while it has a process, so never to a reused id. */
static void end_group(pid_t pgid, int grace_ms, const char *label)
{
    int64_t give_up_at = monotonic_ms() + grace_ms;
    int reaped = 0, killed = 0;
    for (;;) {
        siginfo_t info = {0};
        int rc = waitid(P_PGID, (id_t)pgid, &info, WEXITED | WNOHANG);
        if (rc == 0 && info.si_pid != 0) {
            reaped++;
            continue;
        }
        if (rc < 0 && errno == EINTR)
            continue;
        if (kill(-pgid, 0) != 0)
            break;   /* nothing of the group is left */
        if (monotonic_ms() >= give_up_at) {
            if (killed)
                break;   /* a process that is not ours to reap, killed: its parent's zombie */
            log_warn("hook %s: what it left running still runs %d ms after SIGTERM: SIGKILL", label,
                     grace_ms);
            kill(-pgid, SIGKILL);
            killed = 1;
            give_up_at = monotonic_ms() + grace_ms;
            continue;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (reaped)
        log_info("hook %s: %d process%s it left ended with it", label, reaped, reaped == 1 ? "" : "es");
}

/* A program started for a command: its pid (and process group) and its output pipes. */
struct started {
    pid_t pid;
    int out_fd, err_fd;
    int64_t at;
};

/* Forks and execs cmd's program with its output on pipes. 0, or -1 with the failure logged and
 * recorded (exec's own errno comes back on a third pipe, closed empty when exec succeeds). */
static int start_program(const struct hook_job *job, const struct hook_cmd *cmd, const char *label,
                         struct started *run)
{
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, st_pipe[2] = {-1, -1};
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
        pipe2(st_pipe, O_CLOEXEC) != 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (out_pipe[i] >= 0) close(out_pipe[i]);
            if (err_pipe[i] >= 0) close(err_pipe[i]);
            if (st_pipe[i] >= 0) close(st_pipe[i]);
        }
        log_error("hook %s: cannot make pipes: %s", label, strerror(e));
        record(job, 1, "%s: cannot run: %s", label, strerror(e));
        return -1;
    }
    char **env = build_env(cmd->env);
    run->at = monotonic_ms();
    pid_t pid = fork();
    if (pid == 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        close(st_pipe[0]);
        exec_program(job->argv, env, out_pipe[1], err_pipe[1], st_pipe[1]);
    }
    int fork_errno = errno;
    free(env);
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(st_pipe[1]);
    if (pid < 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        close(st_pipe[0]);
        log_error("hook %s: cannot fork: %s", label, strerror(fork_errno));
        record(job, 1, "%s: cannot run: fork: %s", label, strerror(fork_errno));
        return -1;
    }
    int exec_errno = 0;
    ssize_t got;
    do
        got = read(st_pipe[0], &exec_errno, sizeof(exec_errno));
    while (got < 0 && errno == EINTR);
    close(st_pipe[0]);
    if (got == (ssize_t)sizeof(exec_errno)) {
        int status;
        reap_child(pid, &status);
        close(out_pipe[0]);
        close(err_pipe[0]);
        char why[160];
        exec_failure(job->argv[0], exec_errno, why, sizeof(why));
        log_error("hook %s: cannot run %s: %s", label, job->argv[0], why);
        record(job, 1, "%s: cannot run %s: %s", label, job->argv[0], why);
        return -1;
    }
    log_info("hook %s: started %s (pid %ld)", label, job->argv[0], (long)pid);
    run->pid = pid;
    run->out_fd = out_pipe[0];
    run->err_fd = err_pipe[0];
    return 0;
}

/* How a watched program ended. */
struct ending {
    int status;       /* waitpid's */
    int timed_out;    /* ended at the time limit, or by the signal below */
    int stopped_by;   /* the signal that stopped the supervisor, or 0 */
};

/* Logs the program's output until it ends, ending it (SIGTERM, then SIGKILL after the grace)
 * at its time limit or when the supervisor is told to stop, then reaps it and ends what is left
 * of its process group. */
static void watch_program(const struct hook_job *job, const char *label, const struct started *run,
                          struct ending *end)
{
    pid_t pid = run->pid;
    struct stream streams[2] = {
        {.fd = run->out_fd, .level = LOG_LVL_INFO, .what = ""},
        {.fd = run->err_fd, .level = LOG_LVL_WARN, .what = " (stderr)"},
    };
    int64_t deadline = run->at + job->timeout_ms;
    int64_t kill_at = 0, drain_until = 0;
    int exited = 0;
    *end = (struct ending){0};
    for (;;) {
        if (!exited && child_ended(pid)) {
            exited = 1;
            drain_until = monotonic_ms() + DRAIN_MS;
        }
        int64_t now = monotonic_ms();
        if (exited && (streams[0].fd < 0 && streams[1].fd < 0))
            break;
        if (exited && now >= drain_until)
            break;
        if (!exited && !end->timed_out && (now >= deadline || stop_signal)) {
            end->timed_out = 1;
            end->stopped_by = stop_signal;
            if (end->stopped_by)
                log_warn("hook %s: the supervisor got signal %d: SIGTERM to process group %ld", label,
                         end->stopped_by, (long)pid);
            else
                log_warn("hook %s: still running after %d ms: SIGTERM to process group %ld", label,
                         job->timeout_ms, (long)pid);
            kill(-pid, SIGTERM);
            kill_at = now + job->kill_grace_ms;
        }
        if (!exited && end->timed_out && now >= kill_at) {
            log_warn("hook %s: still running %d ms after SIGTERM: SIGKILL", label, job->kill_grace_ms);
            kill(-pid, SIGKILL);
            kill_at = INT64_MAX;
        }
        struct pollfd pfd[2];
        nfds_t np = 0;
        struct stream *which[2];
        for (int i = 0; i < 2; i++)
            if (streams[i].fd >= 0) {
                pfd[np] = (struct pollfd){.fd = streams[i].fd, .events = POLLIN};
                which[np++] = &streams[i];
            }
        int64_t wait = TICK_MS;
        if (!exited && !end->timed_out && deadline - now < wait)
            wait = deadline - now;
        if (!exited && end->timed_out && kill_at != INT64_MAX && kill_at - now < wait)
            wait = kill_at - now;
        if (wait < 0)
            wait = 0;
        if (np == 0) {
            /* Both streams closed but the program runs on: wait for it in ticks. */
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (poll(pfd, np, (int)wait) > 0)
            for (nfds_t i = 0; i < np; i++)
                if (pfd[i].revents)
                    stream_read(which[i], label);
    }
    stream_finish(&streams[0], label);
    stream_finish(&streams[1], label);
    /* Whatever of its group is left (the program is not reaped yet, so the group's id is not
     * another's): a run ends with its program, so that what it started in the background does
     * not pile up run after run, nor outlive the hook word (one run per tenant at a time). */
    kill(-pid, end->timed_out ? SIGKILL : SIGTERM);
    reap_child(pid, &end->status);
    end_group(pid, job->kill_grace_ms, label);
}

/* Logs and records how a command's program ended; 0 for an exit 0. */
static int report_ending(const struct hook_job *job, const char *label, const struct ending *end,
                         long ms)
{
    if (end->stopped_by) {
        log_error("hook %s: killed: its supervisor got signal %d", label, end->stopped_by);
        record(job, 1, "%s: killed, its supervisor got signal %d", label, end->stopped_by);
        return -1;
    }
    if (end->timed_out) {
        log_error("hook %s: killed at its time limit (%d ms)", label, job->timeout_ms);
        record(job, 1, "%s: killed at the time limit (%d s)", label, (job->timeout_ms + 999) / 1000);
        return -1;
    }
    if (WIFEXITED(end->status)) {
        int code = WEXITSTATUS(end->status);
        if (code == 0)
            log_info("hook %s: exit 0 (%ld ms)", label, ms);
        else
            log_warn("hook %s: exit %d (%ld ms)", label, code, ms);
        record(job, code != 0, "%s: exit %d", label, code);
        return code == 0 ? 0 : -1;
    }
    int sig = WIFSIGNALED(end->status) ? WTERMSIG(end->status) : 0;
    log_warn("hook %s: killed by signal %d (%ld ms)", label, sig, ms);
    record(job, 1, "%s: killed by signal %d", label, sig);
    return -1;
}

/* Runs one command to its end or its time limit; logs and records its result. 0: exit 0. */
static int run_command(const struct hook_job *job, const struct hook_cmd *cmd)
{
    const char *label = cmd->label ? cmd->label : job->name;
    struct started run;
    if (start_program(job, cmd, label, &run) != 0)
        return -1;
    struct ending end;
    watch_program(job, label, &run, &end);
    return report_ending(job, label, &end, (long)(monotonic_ms() - run.at));
}

int hooks_supervise(const struct hook_job *job)
{
    pid_t self = getpid();
    if (job->exclusive && job->reg) {
        pid_t holder = 0;
        if (reg_tenant_hook_claim(job->reg, job->idx, self, &holder) != 0) {
            log_warn("hook %s: skipped: the previous run (pid %ld) is still running", job->name,
                     (long)holder);
            record(job, 1, "%s: skipped, previous run still running (pid %ld)", job->name, (long)holder);
            return -1;
        }
    }
    int rc = 0;
    size_t i = 0;
    for (; i < job->ncmds && !stop_signal; i++)
        if (run_command(job, &job->cmds[i]) != 0)
            rc = -1;
    if (i < job->ncmds) {
        /* Stopped before these started (a signal before the first, or while one ran): said,
         * rather than a run that ends without a word and a last_hook of an earlier one. */
        const char *label = job->cmds[i].label ? job->cmds[i].label : job->name;
        int sig = stop_signal;
        log_warn("hook %s: not run (nor the %zu after it): its supervisor got signal %d", label,
                 job->ncmds - i - 1, sig);
        record(job, 1, "%s: not run, its supervisor got signal %d", label, sig);
        rc = -1;
    }
    if (job->exclusive && job->reg)
        reg_tenant_hook_release(job->reg, job->idx, self);
    return rc;
}

/* ---- detaching ---- */

/* Closes every descriptor from 3 up but keep (the log's). */
static void close_inherited(int keep)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536)
            max = 65536;
        for (int fd = 3; fd < max; fd++)
            if (fd != keep)
                close(fd);
        return;
    }
    int own = dirfd(d);
    int fds[256];
    size_t n = 0;
    int more = 1;
    while (more) {
        /* Collect first, close after: closing while reading the directory is unspecified. */
        n = 0;
        more = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (*end || end == e->d_name || fd < 3 || fd == keep || fd == own)
                continue;
            if (n == sizeof(fds) / sizeof(fds[0])) {
                more = 1;
                break;
            }
            fds[n++] = (int)fd;
        }
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
    }
    closedir(d);
}

static void note_stop(int sig)
{
    stop_signal = sig;
}

static void supervisor_main(const struct hook_job *job)
{
    /* Signals are blocked (hooks_spawn) until the worker's handlers, which write to descriptors
     * closed below, are gone. Operator signals meant for somirrord (reload, log reopen) are not
     * for a supervisor. */
    static const int not_ours[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE, 0};
    reset_signals(not_ours);
    /* A supervisor that a stop signal ended at once would leave its program, in a session of its
     * own, running past hooks.timeout: the program's group is ended first, as at the limit. */
    static const int stops[] = {SIGINT, SIGQUIT, SIGTERM};
    struct sigaction stop = {.sa_handler = note_stop};
    sigemptyset(&stop.sa_mask);
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++)
        sigaction(stops[i], &stop, NULL);
    unblock_signals();
    prctl(PR_SET_NAME, REG_HOOK_PROCESS_NAME);   /* for ps, and for the hook word's check */
    /* What a program leaves running when it exits becomes the supervisor's child, not init's,
     * so that end_group reaps it (run in the caller's process, as the unit tests do, it waits
     * for the group to empty all the same). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    close_inherited(log_fd());
    log_after_fork();   /* syslog's socket went with the rest */
    log_set_tenant(job->tenant);
    hooks_supervise(job);
    _exit(0);
}

enum hook_start hooks_spawn(const struct hook_job *job)
{
    if (job->exclusive && job->reg) {
        pid_t holder = reg_tenant_hook_running(job->reg, job->idx);
        if (holder != 0 && holder != getpid()) {
            log_warn("hook %s: skipped: the previous run (pid %ld) is still running", job->name,
                     (long)holder);
            record(job, 1, "%s: skipped, previous run still running (pid %ld)", job->name, (long)holder);
            return HOOK_SKIPPED;
        }
    }
    sigset_t all, saved;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);   /* until the supervisor's own handlers are set */
    pid_t mid = fork();
    if (mid != 0)
        sigprocmask(SIG_SETMASK, &saved, NULL);
    if (mid < 0) {
        int e = errno;
        log_error("hook %s: cannot fork: %s", job->name, strerror(e));
        record(job, 1, "%s: cannot run: fork: %s", job->name, strerror(e));
        return HOOK_FAILED;
    }
    if (mid == 0) {
        pid_t sup = fork();
        if (sup == 0)
            supervisor_main(job);
        _exit(sup < 0 ? 1 : 0);
    }
    int status = 0;
    int got = reap_child(mid, &status);
    /* got < 0 (ECHILD) when SIGCHLD is ignored: the intermediate was reaped for us. */
    if (got == 1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        log_error("hook %s: cannot fork the supervisor", job->name);
        record(job, 1, "%s: cannot run: fork failed", job->name);
        return HOOK_FAILED;
    }
    return HOOK_STARTED;
}
