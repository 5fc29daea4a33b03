/* master/master: the master process (see master.h). Owns the loaded config and keys, the
 * listeners, the registry mapping, the status socket, the pid file and the list of children.
 * Signal handlers are libevent's (they only write to its self-pipe); all work happens in the
 * loop. Registry writes: generation, master counters, worker slot claim/pid/release, and the
 * tenant locks of reaped workers (reg_release_locks_of). */
#include "master/master.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#ifdef SOMIRROR_SANITIZERS
#include <sanitizer/lsan_interface.h>
#endif

#include "common/buf.h"
#include "common/clock.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "config/keys.h"
#include "ctl/commands.h"
#include "ctl/statefile.h"
#include "master/daemon.h"
#include "master/listeners.h"
#include "master/pidfile.h"
#include "master/status.h"
#include "master/throttle.h"
#include "shm/registry.h"
#include "store/store.h"
#include "worker/tls.h"
#include "worker/worker.h"

#define DEFAULT_CONFIG SYSCONFDIR "/somirrord.yaml"
#define SPARE_WORKER_SLOTS 8
#define MAX_RESTART_REQUIRED 12   /* note_restart_required names at most 9 */
#define GENERATION_START_MS 10000   /* for a new generation's workers to serve */
#define GENERATION_POLL_MS 5
#define OPEN_FILES_MAX 65536        /* see raise_open_files_limit */

struct child {
    pid_t pid;
    int slot;
    uint32_t generation;
    int64_t started_ms;
    int64_t kill_at_ms;      /* 0: serving; else asked to stop, SIGKILL at this time */
};

struct master {
    const char *config_path;
    struct config *boot_cfg;       /* the config started with: settings that need a restart */
    struct config *cfg;            /* the current config */
    struct keyring *keys;
    struct config *retired_cfg;    /* the previous generation's, freed at the next reload */
    struct keyring *retired_keys;
    SSL_CTX **boot_tls;            /* the first generation's TLS contexts, until the listeners
                                      take them (lsn_swap_tls) */
    struct registry *reg;
    struct event_base *base;
    struct listeners lsn;
    struct status_server *status;
    struct pidfile pidfile;
    int alive_pipe[2];             /* the master holds the write end; EOF tells workers it died */
    uint32_t generation;           /* the serving generation's */
    uint32_t last_generation;      /* the latest started: a failed one's number is not reused */
    uint32_t replacing;            /* while a new generation starts: the serving one, else 0 */
    struct child *children;
    size_t nchildren, children_cap;
    struct throttle throttle;
    int64_t respawn_at_ms;
    struct event *respawn_timer;
    struct event *tick;
    struct event *signal_events[7];
    size_t nsignal_events;
    int stopping;
    int detached;                  /* a daemon: workers give up the standard streams too */
    const char *restart_required[MAX_RESTART_REQUIRED];
    size_t nrestart;
    struct ctl_context ctl;
};

/* ---- command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: somirrord [-f] [-t] [-c FILE] [-v] [-h]\n"
            "  -c, --config FILE  configuration file (default %s)\n"
            "  -f, --foreground   stay in the foreground\n"
            "  -t, --test         check the configuration, keys and paths, then exit\n"
            "                     (0: ok, 1: errors)\n"
            "  -v, --version      print the version\n"
            "  -h, --help         print this help\n",
            DEFAULT_CONFIG);
}

int master_parse_args(int argc, char **argv, struct master_options *opts, char *err, size_t errlen)
{
    *opts = (struct master_options){.config_path = DEFAULT_CONFIG};
    optind = 1;
    opterr = 0;
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'}, {"foreground", no_argument, NULL, 'f'},
        {"test", no_argument, NULL, 't'},         {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:ftvh", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c': opts->config_path = optarg; break;
        case 'f': opts->foreground = 1; break;
        case 't': opts->test_config = 1; break;
        case 'v': opts->show_version = 1; break;
        case 'h': opts->show_help = 1; break;
        case ':':
            snprintf(err, errlen, "option %s needs an argument", argv[optind - 1]);
            return -1;
        default:   /* a long option is named as written ("--foreground=x"), a short one alone */
            if (strncmp(argv[optind - 1], "--", 2) == 0 || !optopt)
                snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
            else
                snprintf(err, errlen, "unknown option -%c", optopt);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument %s", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- configuration generations ---- */

/* Frees what load_generation made: tls holds cfg->nlisten contexts. */
static void free_generation(struct config *cfg, struct keyring *keys, SSL_CTX **tls)
{
    wrk_tls_contexts_free(tls, cfg->nlisten);
    keys_free(keys);
    cfg_free(cfg);
}

/* Loads config and keys and makes the TLS listeners' contexts (one per cfg->listen entry, see
 * wrk_tls_contexts_new). 0, or -1 with every error in errs. */
static int load_generation(const char *path, struct config **cfg, struct keyring **keys,
                           SSL_CTX ***tls, struct cfg_errors *errs)
{
    *keys = NULL;
    *tls = NULL;
    *cfg = cfg_load(path, errs);
    if (!*cfg)
        return -1;
    *keys = keys_load(*cfg, errs);
    *tls = wrk_tls_contexts_new(*cfg, errs);
    if (*keys && *tls)
        return 0;
    free_generation(*cfg, *keys, *tls);
    *cfg = NULL;
    *keys = NULL;
    *tls = NULL;
    return -1;
}

static int strings_differ(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

static size_t worker_slots(int workers)
{
    return (size_t)workers * 3 + SPARE_WORKER_SLOTS;
}

/* Which settings of cfg differ from those somirrord started with and need a restart. */
static void note_restart_required(struct master *m, struct config *cfg)
{
    const struct config *boot = m->boot_cfg;
    m->nrestart = 0;
    if (!lsn_same_addresses(&m->lsn, cfg))
        m->restart_required[m->nrestart++] = "listen";
    if (cfg->tenants_max != boot->tenants_max)
        m->restart_required[m->nrestart++] = "tenants.max";
    if (strings_differ(cfg->status_socket, boot->status_socket))
        m->restart_required[m->nrestart++] = "status_socket";
    if (cfg->status_socket_mode != boot->status_socket_mode)
        m->restart_required[m->nrestart++] = "status_socket_mode";
    if (strings_differ(cfg->pid_file, boot->pid_file))
        m->restart_required[m->nrestart++] = "pid_file";
    if (strings_differ(cfg->user, boot->user))
        m->restart_required[m->nrestart++] = "user";
    if (strings_differ(cfg->group, boot->group))
        m->restart_required[m->nrestart++] = "group";
    if (strings_differ(cfg->log_file, boot->log_file))
        m->restart_required[m->nrestart++] = "log.file";
    /* Two generations overlap while the old one drains: more workers than the registry has
     * slots for wait for a restart, and the count stays as it is until then. */
    if ((size_t)cfg->workers * 2 > reg_max_workers(m->reg)) {
        m->restart_required[m->nrestart++] = "workers";
        cfg->workers = m->cfg->workers;
    }
    for (size_t i = 0; i < m->nrestart; i++)
        log_warn("setting %s changed: it takes effect only after a restart", m->restart_required[i]);
}

static void refresh_ctl(struct master *m)
{
    m->ctl.reg = m->reg;
    m->ctl.cfg = m->cfg;
    m->ctl.pid = getpid();
    m->ctl.started_ms = reg_master_counters(m->reg)->started_ms;
    m->ctl.version = PACKAGE_VERSION;
    m->ctl.generation = m->generation;
    m->ctl.workers = m->cfg->workers;
    m->ctl.restart_required = m->restart_required;
    m->ctl.nrestart = m->nrestart;
    m->ctl.state_file = m->cfg->state_file;
}

/* ---- children ---- */

static struct child *find_child(struct master *m, pid_t pid)
{
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].pid == pid)
            return &m->children[i];
    return NULL;
}

static size_t serving_workers(const struct master *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation == m->generation && m->children[i].kill_at_ms == 0)
            n++;
    return n;
}

/* The signals the master handles (add_events), and SIGUSR2, which it ignores but its workers
 * handle. */
static const int master_signals[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};

static void signal_set(sigset_t *set, const int *signals, size_t n)
{
    sigemptyset(set);
    for (size_t i = 0; i < n; i++)
        sigaddset(set, signals[i]);
}

/* The signal state somirrord inherits (it survives exec), put right from its first
 * instruction. SIGHUP, SIGUSR1 and SIGUSR2 end a process by default, though none of them asks
 * somirrord to stop: they wait blocked until add_events has set the master's handlers, so that
 * a reload asked for while it starts is done once it serves. An ignored SIGCHLD would have the
 * kernel reap the children whose status somirrord waits for (daemon_run_as's checks). */
static void take_signals(void)
{
    static const int until_handled[] = {SIGHUP, SIGUSR1, SIGUSR2};
    sigset_t set;
    signal_set(&set, until_handled, sizeof(until_handled) / sizeof(until_handled[0]));
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGCHLD, SIG_DFL);
}

static int compare_fds(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* In a new worker: closes every descriptor it must not hold (the status socket and its
 * clients, the pid file, the master's event loop), so that a status client sees its answer
 * end and nothing of the master's outlives it. */
static void close_inherited_fds(const struct master *m)
{
    size_t nkeep = 0;
    int *keep = xcalloc(m->lsn.n + 3, sizeof(*keep));
    for (size_t i = 0; i < m->lsn.n; i++)
        keep[nkeep++] = m->lsn.items[i].fd;
    keep[nkeep++] = m->alive_pipe[0];
    if (log_fd() > STDERR_FILENO)
        keep[nkeep++] = log_fd();
    qsort(keep, nkeep, sizeof(*keep), compare_fds);
    unsigned first = STDERR_FILENO + 1;
    for (size_t i = 0; i < nkeep; i++) {
        if ((unsigned)keep[i] > first)
            close_fd_range(first, (unsigned)keep[i] - 1);
        if ((unsigned)keep[i] + 1 > first)
            first = (unsigned)keep[i] + 1;
    }
    close_fd_range(first, ~0U);
    free(keep);
}

static void become_worker(struct master *m, int slot, const sigset_t *saved_mask)
{
    /* The master's event base must not live on in the worker: libevent allows one base with
     * signal events per process, and the base's epoll instance is shared with the master, so
     * it is first moved to a private one (event_reinit) and then freed, before the descriptors
     * its events watch are closed. */
    event_reinit(m->base);
    event_base_free(m->base);
    m->base = NULL;
    for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
        signal(master_signals[i], SIG_DFL);
    close_inherited_fds(m);
    log_after_fork();
    log_set_level((enum log_level)m->cfg->log_level);   /* its generation's: the master's changes
                                                           only once that generation serves */
    if (m->detached)
        daemon_null_stdio();
    struct wrk_params params = {
        .cfg = m->cfg,
        .keys = m->keys,
        .reg = m->reg,
        .slot = slot,
        .generation = m->generation,
        .listeners = m->lsn.items,
        .nlisteners = m->lsn.n,
        .master_alive_fd = m->alive_pipe[0],
        .master_pid = getppid(),
        .signal_mask = *saved_mask,
    };
    int status = wrk_run(&params);
#ifdef SOMIRROR_SANITIZERS
    __lsan_do_leak_check();   /* _exit skips LeakSanitizer's check at exit */
#endif
    _exit(status);
}

static int spawn_worker(struct master *m)
{
    int slot = reg_worker_claim(m->reg, m->generation);
    if (slot < 0) {
        log_error("cannot start a worker: no free worker slot in the registry");
        return -1;
    }
    sigset_t all, saved;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);
    pid_t pid = fork();
    if (pid == 0)
        become_worker(m, slot, &saved);
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        reg_worker_release(m->reg, slot);
        log_error("cannot start a worker: fork: %s", strerror(fork_errno));
        return -1;
    }
    reg_worker_set_pid(m->reg, slot, pid);
    m->children = xgrow(m->children, &m->children_cap, m->nchildren + 1, sizeof(*m->children));
    m->children[m->nchildren++] = (struct child){
        .pid = pid, .slot = slot, .generation = m->generation, .started_ms = monotonic_ms()};
    log_debug("started worker %ld (generation %u, slot %d)", (long)pid, (unsigned)m->generation, slot);
    return 0;
}

/* SIGTERM when the service stops (health checks answer 503), SIGUSR2 for a generation that a
 * reload replaces; both drain. */
static void ask_to_stop(struct master *m, struct child *c, int sig)
{
    c->kill_at_ms = monotonic_ms() + (int64_t)m->cfg->shutdown_timeout * 1000;
    kill(c->pid, sig);
}

/* Starts the missing workers of the current generation, unless the throttle says wait. */
static void maintain_workers(struct master *m)
{
    if (m->stopping) {
        if (m->nchildren == 0)
            event_base_loopexit(m->base, NULL);
        return;
    }
    int64_t wait_ms = m->respawn_at_ms - monotonic_ms();
    if (wait_ms > 0) {
        struct timeval delay = {wait_ms / 1000, (wait_ms % 1000) * 1000};
        evtimer_add(m->respawn_timer, &delay);
        return;
    }
    while (serving_workers(m) < (size_t)m->cfg->workers) {
        if (spawn_worker(m) < 0) {
            m->respawn_at_ms = monotonic_ms() + throttle_worker_exited(&m->throttle, 0);
            maintain_workers(m);
            return;
        }
    }
}

static void describe_exit(int status, char *out, size_t outlen)
{
    if (WIFEXITED(status))
        snprintf(out, outlen, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, outlen, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, outlen, "ended (status 0x%x)", (unsigned)status);
}

static void child_gone(struct master *m, struct child *c, int status)
{
    char how[128];
    describe_exit(status, how, sizeof(how));
    int freed = reg_release_locks_of(m->reg, c->pid);
    if (freed > 0)
        log_warn("worker %ld held %d tenant lock(s): released", (long)c->pid, freed);
    int expected = c->kill_at_ms != 0 || m->stopping ||
                   (c->generation != m->generation && c->generation != m->replacing);
    if (expected) {
        log_info("worker %ld (generation %u) %s", (long)c->pid, (unsigned)c->generation, how);
    } else {
        int64_t lived = monotonic_ms() - c->started_ms;
        int64_t delay = throttle_worker_exited(&m->throttle, lived);
        reg_master_counters(m->reg)->worker_restarts++;
        m->respawn_at_ms = monotonic_ms() + delay;
        if (delay > 0)
            log_error("worker %ld %s %lld ms after it started; next start in %lld ms", (long)c->pid,
                      how, (long long)lived, (long long)delay);
        else
            log_error("worker %ld %s; starting a new one", (long)c->pid, how);
    }
    reg_worker_release(m->reg, c->slot);
    *c = m->children[--m->nchildren];
}

/* Reaps the children that have ended, without starting others. */
static void reap_ended(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *c = find_child(m, pid);
        if (c)
            child_gone(m, c, status);
    }
}

static void reap_children(struct master *m)
{
    reap_ended(m);
    maintain_workers(m);
}

/* While the master waits for workers (its loop does not run meanwhile). */
static void pause_briefly(void)
{
    struct timespec poll = {0, GENERATION_POLL_MS * 1000000L};
    nanosleep(&poll, NULL);
}

/* Workers of earlier generations keep their registry slots until they have drained, so reloads
 * in quick succession can find too few for a whole new generation: waits for them until
 * deadline. 0, or -1 with why. */
static int wait_for_slots(struct master *m, int64_t deadline, char *why, size_t whylen)
{
    while (m->nchildren + (size_t)m->cfg->workers > reg_max_workers(m->reg)) {
        if (monotonic_ms() >= deadline) {
            snprintf(why, whylen, "%zu workers are serving or still finishing their calls, which leaves "
                                  "the registry no room for %d new ones (reload again once `show workers` "
                                  "lists fewer)", m->nchildren, m->cfg->workers);
            return -1;
        }
        pause_briefly();
        reap_ended(m);
    }
    return 0;
}

/* start_generation's work: the generation's workers forked, then waited for until deadline. */
static int start_workers(struct master *m, int64_t deadline, char *why, size_t whylen)
{
    maintain_workers(m);
    size_t started = serving_workers(m);
    if (started < (size_t)m->cfg->workers) {
        snprintf(why, whylen, "%s", started ? "not every worker could be started (the log says why)"
                                            : "no worker could be started (the log says why)");
        return -1;
    }
    for (;;) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            struct child *c = find_child(m, pid);
            if (!c)
                continue;
            struct worker_view w;
            int failed = c->generation == m->generation && c->kill_at_ms == 0 &&
                         reg_worker_read(m->reg, c->slot, &w) == 0 && w.state == WORKER_STARTING;
            if (failed) {
                char how[128];
                describe_exit(status, how, sizeof(how));
                snprintf(why, whylen, "a new worker %s before it served: %s", how,
                         w.start_error[0] ? w.start_error : "the log says why");
                c->kill_at_ms = INT64_MAX;   /* expected now: not counted as a crash */
            }
            child_gone(m, c, status);
            if (failed)
                return -1;
        }
        size_t starting = 0;
        for (size_t i = 0; i < m->nchildren; i++) {
            struct worker_view w;
            if (m->children[i].generation == m->generation &&
                reg_worker_read(m->reg, m->children[i].slot, &w) == 0 && w.state == WORKER_STARTING)
                starting++;
        }
        if (starting == 0 && serving_workers(m) > 0)
            return 0;
        if (monotonic_ms() >= deadline) {
            snprintf(why, whylen, "the new workers did not serve within %d s", GENERATION_START_MS / 1000);
            return -1;
        }
        pause_briefly();
    }
}

/* Starts the current generation's workers and waits until each is ready (they accept only once
 * the registry names their generation the serving one, see worker.c): the old generation goes
 * on serving meanwhile, so a configuration that passes its checks but whose workers cannot
 * start (a store directory that cannot be made, say) never serves nor replaces one that
 * works. 0, or -1 with why when not every worker could be started, one of the generation ends
 * before it is ready, or they are not ready within GENERATION_START_MS; the master's loop does
 * not run meanwhile. A failure leaves the throttle as it was. */
static int start_generation(struct master *m, char *why, size_t whylen)
{
    int64_t deadline = monotonic_ms() + GENERATION_START_MS;
    if (wait_for_slots(m, deadline, why, whylen) < 0)
        return -1;
    struct throttle throttle_before = m->throttle;
    int64_t respawn_before = m->respawn_at_ms;
    throttle_reset(&m->throttle);
    m->respawn_at_ms = 0;
    if (start_workers(m, deadline, why, whylen) == 0)
        return 0;
    m->throttle = throttle_before;
    m->respawn_at_ms = respawn_before;
    return -1;
}

/* Every worker of another generation than the serving one drains and exits. */
static void stop_other_generations(struct master *m)
{
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation != m->generation && m->children[i].kill_at_ms == 0)
            ask_to_stop(m, &m->children[i], SIGUSR2);
}

/* ---- reload and stop ---- */

/* A warning of check_start or warn_doubtful: on stderr for -t, in the log at a start or reload. */
static void start_warning(int at_reload, const char *text)
{
    if (at_reload)
        log_warn("%s", text);
    else
        fprintf(stderr, "somirrord: warning: %s\n", text);
}

/* What works but is likely a mistake, each said as start_warning says it (logged: in the log,
 * at each start and reload; else on stderr, for -t), so that none hides another. */
static void warn_doubtful(const struct config *cfg, int logged)
{
    char why[PATH_MAX + 256];
    struct stat st;
    const struct {
        const char *key;
        const struct cfg_strings *hook;
    } hooks[] = {{"cycle_completed", &cfg->hooks.cycle_completed},
                 {"table_changed", &cfg->hooks.table_changed}};
    if (cfg->hooks.table_sql && (stat(cfg->hooks.table_sql, &st) != 0 || !S_ISDIR(st.st_mode) ||
                                 access(cfg->hooks.table_sql, R_OK | X_OK) != 0)) {
        snprintf(why, sizeof(why), "hooks.table_sql %s is not a directory that can be read: no index "
                 "script runs", cfg->hooks.table_sql);
        start_warning(logged, why);
    }
    for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
        const char *program = hooks[i].hook->n ? hooks[i].hook->items[0] : NULL;
        if (program && (stat(program, &st) != 0 || !S_ISREG(st.st_mode) || access(program, X_OK) != 0)) {
            snprintf(why, sizeof(why), "hooks.%s: %s is not a program that can be run (the program is "
                     "the first item, its arguments the next ones): the hook fails each time",
                     hooks[i].key, program);
            start_warning(logged, why);
        }
    }
    if (cfg->status_socket && (cfg->status_socket_mode & S_IWOTH)) {
        snprintf(why, sizeof(why), "status_socket_mode %04o lets every local user pause, resync and "
                 "reset tenants (a reset drops a mirror) and reload: give the socket's users a group "
                 "instead (0660, with group)", (unsigned)cfg->status_socket_mode);
        start_warning(logged, why);
    }
}

/* What check_made_file checks: the log file or the pid file (opened by the start, as root,
 * refusing planted links), the status socket, or the state file (written only to keep operator
 * state: the start does not need it). */
enum made_file { MADE_LOG, MADE_PID, MADE_SOCKET, MADE_FOR_STATE };

/* Why the start would refuse the log or pid file at path (st: its lstat), or NULL: -t opens it
 * as the start does, without creating it; a reload, no longer root, looks at what is there,
 * so that a link the next start refuses fails the reload. */
static const char *start_refusal(const char *path, const struct stat *st, enum made_file kind,
                                 int at_reload)
{
    int pid = kind == MADE_PID;
    if (at_reload)
        return link_refusal(st, pid);
    const char *why;
    int fd = open_refusing_links(path, pid ? O_RDWR : O_WRONLY | O_APPEND, 0, pid, &why);
    if (fd < 0)
        return why;
    close(fd);
    return NULL;
}

/* Whether a file somirrord makes at path (what: the key naming it) can be made there: path is
 * not a directory (nor, for the status socket, anything but a socket, and short enough): 0, or
 * -1 with err. A directory that does not exist yet is a warning, as the init script and the
 * systemd unit make the usual ones just before the start. */
static int check_made_file(const char *what, const char *path, enum made_file kind, int at_reload,
                           char *err, size_t errlen)
{
    struct sockaddr_un addr;
    struct stat st;
    int socket_only = kind == MADE_SOCKET;
    if (socket_only && strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "%s %s: path too long (at most %zu bytes)", what, path,
                 sizeof(addr.sun_path) - 1);
        return -1;
    }
    int there = lstat(path, &st) == 0;
    if (!there && errno != ENOENT) {   /* a name too long, a file as a directory, no access */
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (there && (socket_only ? !S_ISSOCK(st.st_mode) : S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "%s %s: %s is there", what, path,
                 S_ISDIR(st.st_mode) ? "a directory" : "a file");
        return -1;
    }
    const char *why;
    if (there && (kind == MADE_LOG || kind == MADE_PID) &&
        (why = start_refusal(path, &st, kind, at_reload))) {
        snprintf(err, errlen, "%s %s: %s", what, path, why);
        return -1;
    }
    char *copy = xstrdup(path);
    if (stat(dirname(copy), &st) != 0 || !S_ISDIR(st.st_mode)) {
        char text[PATH_MAX + 192];
        snprintf(text, sizeof(text), "%s %s: its directory does not exist (yet): %s", what, path,
                 kind == MADE_FOR_STATE ? "operator pauses and pending resyncs are not kept across restarts until "
                             "it is made"
                 : at_reload ? "the next start fails unless it is made first"
                             : "the start fails unless it is made first");
        start_warning(at_reload, text);
    }
    free(copy);
    return 0;
}

/* The store's check (the SQLite mirror directory: made and written by the workers), its warning
 * said as check_start says them: 0, or -1 with err. */
static int check_store(int at_reload, const struct config *cfg, char *err, size_t errlen)
{
    int rc = store_check(cfg, err, errlen);
    if (rc > 0)
        start_warning(at_reload, err);
    return rc < 0 ? -1 : 0;
}

struct store_check {
    int at_reload;
    const struct config *cfg;
};

/* check_store for daemon_run_as: status 0, or 1 with err. */
static int store_check_status(void *arg, char *err, size_t errlen)
{
    const struct store_check *c = arg;
    return check_store(c->at_reload, c->cfg, err, errlen) < 0 ? 1 : 0;
}

/* check_store as the user the workers run as. somirrord -t run as root with user: set does it
 * in a child that switches to that user (as root every directory would pass); at a reload the
 * master already runs as that user. */
static int check_store_as_user(int at_reload, const struct config *cfg, char *err, size_t errlen)
{
    struct store_check c = {at_reload, cfg};
    return daemon_run_as(cfg->user, cfg->group, store_check_status, &c, err, errlen) == 0 ? 0 : -1;
}

/* The operator's pauses are never dropped silently: a tenant paused for maintenance must not
 * resume because its state file was damaged. Restores cfg's state file into reg: 0, or -1 with
 * err (what is wrong and what to do), which fails the start. */
static int restore_state(const struct config *cfg, struct registry *reg, char *err, size_t errlen)
{
    char why[512];
    if (statefile_restore(cfg->state_file, reg, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "%s; the operator's pauses and requests cannot be restored: fix the file, or "
                          "remove it to start with none", why);
    return -1;
}

/* restore_state as the start does it, into a registry made for the check and thrown away, so
 * that -t refuses what the start would (a damaged file, more tenants than tenants.max holds).
 * For daemon_run_as, as the user the master reads it as: status 0, or 1 with err. */
static int state_file_status(void *arg, char *err, size_t errlen)
{
    const struct config *cfg = arg;
    struct registry *reg = reg_create((uint32_t)cfg->tenants_max, (uint32_t)worker_slots(cfg->workers),
                                      err, errlen);
    int rc = reg ? restore_state(cfg, reg, err, errlen) : -1;
    if (reg)
        reg_destroy(reg);
    return rc < 0 ? 1 : 0;
}

/* Whether the tenants that the state file keeps (paused, or with a resync or reset pending: what
 * reg holds now, which the file is written from) are more than tenants_max, whose registry the
 * next start restores them into and then refuses to start (-t says so of the file at hand; a
 * reload says so before the file is written with them). 1 with err, or 0. */
static int state_outgrows(const struct registry *reg, int tenants_max, char *err, size_t errlen)
{
    size_t kept = statefile_kept(reg);
    if (kept <= (size_t)tenants_max)
        return 0;
    snprintf(err, errlen, "tenants.max %d is below the %zu tenants the state file keeps (paused, or "
             "with a resync or reset pending): the next start could not restore them", tenants_max, kept);
    return 1;
}

/* A check of check_start failed on key: err gets where key is written in cfg's file before it,
 * as the loader's own errors say. -1. */
static int failed_at(const struct config *cfg, const char *key, char *err, size_t errlen)
{
    cfg_locate(cfg, key, err, errlen);
    return -1;
}

/* warn_doubtful for daemon_run_as: status 0 (its warnings are on stderr). */
static int doubtful_status(void *arg, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    warn_doubtful(arg, 0);
    return 0;
}

/* warn_doubtful for somirrord -t, as the user the workers run as (whether they can run the hook
 * programs and read the table_sql directory; root can), as the start does it after the drop. */
static void warn_doubtful_as_user(const struct config *cfg)
{
    char err[512];
    if (daemon_run_as(cfg->user, cfg->group, doubtful_status, (void *)cfg, err, sizeof(err)) != 0)
        fprintf(stderr, "somirrord: warning: %s\n", err);
}

/* What a start would find wrong beyond the configuration and keys, checked without changing
 * anything: the user to switch to, the listen addresses, where the log file, pid file, status
 * socket and (for -t) the state file go, whether (for -t) the state file restores (at a reload:
 * whether its tenants fit a changed tenants.max), the store's settings. For -t (m NULL) all of
 * them; for a reload those that differ from the ones in service (which work), so that one a
 * restart would refuse fails the reload instead of the next start. 0, or -1 with err. */
static int check_start(const struct master *m, const struct config *cfg, char *err, size_t errlen)
{
    const struct config *boot = m ? m->boot_cfg : NULL;   /* in service until a restart */
#define CHANGED(in_service, key) (!(in_service) || strings_differ(cfg->key, (in_service)->key))
    int at_reload = m != NULL;
    if (cfg->user && (CHANGED(boot, user) || CHANGED(boot, group)) &&
        daemon_check_user(cfg->user, cfg->group, err, errlen) < 0)
        return failed_at(cfg, "user", err, errlen);
    if ((!m || !lsn_same_addresses(&m->lsn, cfg)) && lsn_check(cfg, err, errlen) < 0)
        return failed_at(cfg, "listen", err, errlen);
    if (cfg_log_to_file(cfg) && CHANGED(boot, log_file) &&
        check_made_file("log.file", cfg->log_file, MADE_LOG, at_reload, err, errlen) < 0)
        return failed_at(cfg, "log.file", err, errlen);
    if (cfg->pid_file && CHANGED(boot, pid_file) &&
        check_made_file("pid_file", cfg->pid_file, MADE_PID, at_reload, err, errlen) < 0)
        return failed_at(cfg, "pid_file", err, errlen);
    if (cfg->status_socket && CHANGED(boot, status_socket) &&
        check_made_file("status_socket", cfg->status_socket, MADE_SOCKET, at_reload, err, errlen) < 0)
        return failed_at(cfg, "status_socket", err, errlen);
    if (cfg->state_file && !m &&   /* at a reload, reload_state_file writes it */
        (check_made_file("state_file", cfg->state_file, MADE_FOR_STATE, at_reload, err, errlen) < 0 ||
         daemon_run_as(cfg->user, cfg->group, state_file_status, (void *)cfg, err, errlen) != 0))
        return failed_at(cfg, "state_file", err, errlen);
    if (m && cfg->state_file && cfg->tenants_max != boot->tenants_max &&
        state_outgrows(m->reg, cfg->tenants_max, err, errlen))
        return failed_at(cfg, "tenants.max", err, errlen);
#undef CHANGED
    return check_store_as_user(at_reload, cfg, err, errlen);
}

static void reload_failed(struct master *m, const char *what)
{
    log_error("reload of %s failed; still running on the previous configuration: %s", m->config_path,
              what);
    reg_master_counters(m->reg)->reloads_failed++;
}

/* A state_file that a reload changes (or that moves with pid_file) gets the operator state now,
 * as there is no telling when the next request will write it: else the next start would find
 * none there. 0, or -1 with why (the reload then fails). */
static int reload_state_file(struct master *m, const struct config *cfg, char *why, size_t whylen)
{
    char problem[512];
    if (!cfg->state_file || !strings_differ(cfg->state_file, m->cfg->state_file))
        return 0;
    if (statefile_save(cfg->state_file, m->reg, problem, sizeof(problem)) == 0)
        return 0;
    snprintf(why, whylen, "state_file: the operator state cannot be written there: %s", problem);
    return -1;
}

/* 0, or -1 with why (for the status command; the log has every error). */
static int reload(struct master *m, char *why, size_t whylen)
{
    if (m->stopping) {
        snprintf(why, whylen, "somirrord is stopping");
        log_warn("reload not done: somirrord is stopping");
        return -1;
    }
    struct cfg_errors errs;
    struct config *cfg;
    struct keyring *keys;
    SSL_CTX **tls;
    cfg_errors_init(&errs);
    if (load_generation(m->config_path, &cfg, &keys, &tls, &errs) < 0) {
        snprintf(why, whylen, "%s%s", errs.n ? errs.messages[0] : "the configuration did not load",
                 errs.n > 1 ? " (and more errors in the log)" : "");
        if (errs.n > 1) {
            reload_failed(m, "these errors:");
            for (size_t i = 0; i < errs.n; i++)
                log_error("  %s", errs.messages[i]);
        } else {
            reload_failed(m, why);
        }
        cfg_errors_free(&errs);
        return -1;
    }
    cfg_errors_free(&errs);
    if (check_start(m, cfg, why, whylen) < 0 || reload_state_file(m, cfg, why, whylen) < 0) {
        free_generation(cfg, keys, tls);
        reload_failed(m, why);
        return -1;
    }
    warn_doubtful(cfg, 1);
    const char *restart_before[MAX_RESTART_REQUIRED];
    size_t nrestart_before = m->nrestart;
    memcpy(restart_before, m->restart_required, sizeof(restart_before));
    note_restart_required(m, cfg);
    /* New TLS settings and certificates for the addresses that stay (new ones wait for a
     * restart). */
    SSL_CTX **old_tls = lsn_swap_tls(&m->lsn, cfg, tls);

    /* The new generation first, on the same listeners; the old one drains once it serves. */
    struct config *old_cfg = m->cfg;
    struct keyring *old_keys = m->keys;
    uint32_t old_generation = m->generation;
    m->cfg = cfg;
    m->keys = keys;
    m->generation = ++m->last_generation;
    m->replacing = old_generation;
    int started = start_generation(m, why, whylen);
    m->replacing = 0;
    if (started < 0) {
        m->cfg = old_cfg;
        m->keys = old_keys;
        m->generation = old_generation;
        stop_other_generations(m);
        m->nrestart = nrestart_before;
        memcpy(m->restart_required, restart_before, sizeof(restart_before));
        free_generation(cfg, keys, lsn_swap_tls(&m->lsn, cfg, old_tls));
        reload_failed(m, why);
        maintain_workers(m);
        return -1;
    }
    reg_set_generation(m->reg, m->generation);   /* its workers accept from now on */
    stop_other_generations(m);
    log_set_level((enum log_level)cfg->log_level);
    if (m->retired_cfg != m->boot_cfg)
        cfg_free(m->retired_cfg);
    keys_free(m->retired_keys);
    wrk_tls_contexts_free(old_tls, cfg->nlisten);
    m->retired_cfg = old_cfg;
    m->retired_keys = old_keys;
    reg_master_counters(m->reg)->reloads_ok++;
    refresh_ctl(m);
    log_info("configuration reloaded: generation %u, %d workers", (unsigned)m->generation, cfg->workers);
    return 0;
}

static int reload_from_status(void *arg, char *why, size_t whylen)
{
    struct master *m = arg;
    log_info("status socket: reloading %s", m->config_path);
    return reload(m, why, whylen);
}

static void stop_gracefully(struct master *m)
{
    if (m->stopping)
        return;
    m->stopping = 1;
    log_info("stopping: workers finish the calls in hand (at most %d s)", m->cfg->shutdown_timeout);
    /* No worker accepts any more: new connection attempts are refused rather than queued. */
    lsn_close(&m->lsn);
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].kill_at_ms == 0)
            ask_to_stop(m, &m->children[i], SIGTERM);
    maintain_workers(m);
}

static void stop_now(struct master *m)
{
    log_info("stopping at once");
    m->stopping = 1;
    for (size_t i = 0; i < m->nchildren; i++)
        kill(m->children[i].pid, SIGKILL);
    while (m->nchildren > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno != EINTR)
            break;
        struct child *c = pid > 0 ? find_child(m, pid) : NULL;
        if (c)
            child_gone(m, c, status);
    }
    event_base_loopexit(m->base, NULL);
}

/* ---- events ---- */

static void signalled(evutil_socket_t sig, short what, void *arg)
{
    struct master *m = arg;
    switch (sig) {
    case SIGHUP: {
        log_info("SIGHUP: reloading %s", m->config_path);
        char why[512];   /* the log has it */
        reload(m, why, sizeof(why));
        break;
    }
    case SIGTERM:
        stop_gracefully(m);
        break;
    case SIGINT:
    case SIGQUIT:
        stop_now(m);
        break;
    case SIGUSR1:
        /* The file started with: a log.file changed by a reload waits for a restart. */
        if (log_reopen() > 0)
            log_info("SIGUSR1: log file %s reopened", m->boot_cfg->log_file);
        for (size_t i = 0; i < m->nchildren; i++)
            kill(m->children[i].pid, SIGUSR1);
        break;
    case SIGCHLD:
        reap_children(m);
        break;
    default:
        break;
    }
}

static void respawn_due(evutil_socket_t fd, short what, void *arg)
{
    maintain_workers(arg);
}

/* Once a second: workers past their shutdown timeout are killed; the state file drops the
 * requests workers have carried out, and is written again after a failed write (one error
 * line per run of failures: the first failure, of a request or of this tick, says it). */
static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct master *m = arg;
    char why[512];
    if (m->cfg->state_file) {
        int behind = statefile_behind();
        int failed = statefile_refresh(m->cfg->state_file, m->reg, why, sizeof(why)) < 0;
        if (failed && !behind)
            log_error("operator state not saved (retried every second): %s", why);
        else if (!failed && behind)
            log_info("operator state saved again in %s", m->cfg->state_file);
    }
    int64_t now = monotonic_ms();
    for (size_t i = 0; i < m->nchildren; i++) {
        struct child *c = &m->children[i];
        if (c->kill_at_ms != 0 && now >= c->kill_at_ms) {
            log_warn("worker %ld did not stop within shutdown_timeout: killing it", (long)c->pid);
            kill(c->pid, SIGKILL);
            c->kill_at_ms = INT64_MAX;
        }
    }
}

static void status_command(void *arg, const char *line, size_t len, struct buf *answer)
{
    struct master *m = arg;
    refresh_ctl(m);
    ctl_execute(&m->ctl, line, len, answer);
}

static int add_events(struct master *m)
{
    static const int handled[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
        struct event *ev = evsignal_new(m->base, handled[i], signalled, m);
        if (!ev || evsignal_add(ev, NULL) < 0)
            return -1;
        m->signal_events[m->nsignal_events++] = ev;
    }
    /* Blocked by take_signals, or by whoever started somirrord (the mask survives
     * exec): delivered from now on, also to the workers, which start from this mask. */
    sigset_t set;
    signal_set(&set, master_signals, sizeof(master_signals) / sizeof(master_signals[0]));
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    m->respawn_timer = evtimer_new(m->base, respawn_due, m);
    m->tick = event_new(m->base, -1, EV_PERSIST, tick, m);
    struct timeval second = {1, 0};
    if (!m->respawn_timer || !m->tick || event_add(m->tick, &second) < 0)
        return -1;
    return 0;
}

/* ---- start and end ---- */

static void report_errors(const struct cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "somirrord: %s\n", errs->messages[i]);
}

/* A startup failure: to the log, and to the terminal when the log is elsewhere. */
static void startup_failed(const struct master *m, const char *what)
{
    log_error("cannot start: %s", what);
    if (m->cfg && strcmp(m->cfg->log_file, "stderr") != 0)
        fprintf(stderr, "somirrord: cannot start: %s\n", what);
}

/* Whether the configuration at path and its keys load, as a reload would load them (by whoever
 * this process is): 0, or -1 with errs. Nothing is kept. */
static int reload_would_load(const char *path, struct cfg_errors *errs)
{
    struct config *cfg;
    struct keyring *keys;
    SSL_CTX **tls;
    /* The load's warnings (a key readable by everyone) are the start's own, said already. */
    enum log_level level = log_get_level();
    log_set_level(LOG_LVL_ERROR);
    int rc = load_generation(path, &cfg, &keys, &tls, errs);
    log_set_level(level);
    if (rc < 0)
        return -1;
    free_generation(cfg, keys, tls);
    return 0;
}

#define RELOAD_FAILS "as user %s the configuration does not load, so reloads will fail until it does"

/* A reload reads the configuration and keys as the user somirrord switched to: said at start
 * rather than at the first SIGHUP, when the operator expects it to work. */
static void warn_if_reload_would_fail(const struct master *m)
{
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    if (reload_would_load(m->config_path, &errs) < 0) {
        log_warn(RELOAD_FAILS ":", m->cfg->user);
        for (size_t i = 0; i < errs.n; i++)
            log_warn("  %s", errs.messages[i]);
    }
    cfg_errors_free(&errs);
}

/* A log file that the user somirrord runs as cannot write, so that the SIGUSR1 after logrotate
 * moved it could not reopen it (one root owns is given to that user at start). 1 with why, or 0. */
static int log_not_reopenable(const struct config *cfg, char *why, size_t whylen)
{
    struct stat st;
    if (!cfg_log_to_file(cfg) || stat(cfg->log_file, &st) != 0 || st.st_uid == 0 ||
        access(cfg->log_file, W_OK) == 0)
        return 0;
    int e = errno;
    const struct passwd *pw = getpwuid(getuid());   /* cfg->user, unless not started as root */
    snprintf(why, whylen, "log.file %s: user %s cannot write it (%s), so SIGUSR1 (logrotate) cannot "
             "reopen it", cfg->log_file, pw ? pw->pw_name : "(unnamed)", strerror(e));
    return 1;
}

struct as_user_check {
    const char *config_path;
    const struct config *cfg;
};

/* Whether the master can remove what it made in path's directory at exit, no longer root. */
static int removable_at_exit(const char *path)
{
    char *copy = xstrdup(path);
    int ok = access(dirname(copy), W_OK | X_OK) == 0 || errno == ENOENT;
    free(copy);
    return ok;
}

/* For daemon_run_as, as the service's user: what somirrord -t run as root cannot see itself,
 * the warnings the start logs (the configuration and keys a reload reads as that user) and
 * what the master, no longer root, cannot do at exit. Status 0, or 1 with the warnings. */
static int as_user_status(void *arg, char *err, size_t errlen)
{
    const struct as_user_check *c = arg;
    struct buf text = BUF_INIT;
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    if (reload_would_load(c->config_path, &errs) < 0) {
        buf_printf(&text, RELOAD_FAILS ": %s", c->cfg->user, errs.n ? errs.messages[0] : "");
        if (errs.found > 1)
            buf_printf(&text, " (and %zu more)", errs.found - 1);
    }
    cfg_errors_free(&errs);
    char why[1024];
    if (log_not_reopenable(c->cfg, why, sizeof(why)))
        buf_printf(&text, "%s%s", text.len ? "; " : "", why);
    const struct {
        const char *key, *path;
    } made[] = {{"pid_file", c->cfg->pid_file}, {"status_socket", c->cfg->status_socket}};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
        if (made[i].path && !removable_at_exit(made[i].path))
            buf_printf(&text, "%s%s %s: user %s cannot write its directory, so it is left behind "
                       "when somirrord stops", text.len ? "; " : "", made[i].key, made[i].path,
                       c->cfg->user);
    snprintf(err, errlen, "%s", text.len ? text.data : "");
    int status = text.len ? 1 : 0;
    buf_free(&text);
    return status;
}

/* somirrord -t run as root with user: set: the warnings that only that user's view shows, on
 * stderr. */
static void warn_as_user(const char *config_path, const struct config *cfg)
{
    if (!cfg->user || geteuid() != 0)
        return;
    struct as_user_check c = {config_path, cfg};
    char err[2048];
    if (daemon_run_as(cfg->user, cfg->group, as_user_status, &c, err, sizeof(err)) != 0)
        fprintf(stderr, "somirrord: warning: %s\n", err);
}

/* What the state file put in force at start, so that tenants that do not mirror after a
 * restart have their reason in the log. */
static void log_restored_state(const struct master *m)
{
    size_t paused = 0, pending = 0;
    uint32_t n = reg_tenant_count(m->reg);
    for (uint32_t idx = 0; idx < n; idx++) {
        struct tenant_requests req;
        paused += reg_tenant_pause_flag(m->reg, idx) != 0;
        pending += reg_tenant_pending(m->reg, idx, &req) != 0;
    }
    int all = reg_global_paused(m->reg);
    if (all || paused || pending)
        log_info("operator state restored from %s: %s%zu tenants paused, %zu with a resync or reset "
                 "pending (somirrorctl show tenants)", m->cfg->state_file,
                 all ? "pause all in force, " : "", paused, pending);
}

static int open_resources(struct master *m, char *err, size_t errlen)
{
    const struct config *cfg = m->cfg;
    if (cfg->pid_file && pidfile_acquire(&m->pidfile, cfg->pid_file, err, errlen) < 0)
        return -1;
    m->base = event_base_new();
    if (!m->base) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    if (lsn_open(cfg, &m->lsn, err, errlen) < 0)
        return -1;
    wrk_tls_contexts_free(lsn_swap_tls(&m->lsn, cfg, m->boot_tls), cfg->nlisten);
    m->boot_tls = NULL;
    if (pipe2(m->alive_pipe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fcntl(m->alive_pipe[0], F_SETFL, O_NONBLOCK);
    m->reg = reg_create((uint32_t)cfg->tenants_max, (uint32_t)worker_slots(cfg->workers), err, errlen);
    if (!m->reg)
        return -1;
    if (cfg->status_socket) {
        m->status = status_open(m->base, cfg->status_socket, cfg->status_socket_mode, status_command,
                                m, err, errlen);
        if (!m->status)
            return -1;
    }
    if (cfg->user) {
        if (geteuid() != 0)
            log_warn("user %s is set but somirrord was not started as root: it runs as it is", cfg->user);
        else if (cfg_log_to_file(cfg) &&
                 daemon_give_to_user(log_fd(), cfg->log_file, cfg->user, cfg->group, err, errlen) < 0)
            return -1;
        else if (cfg->status_socket &&
                 daemon_give_socket(cfg->status_socket, cfg->user, cfg->group, err, errlen) < 0)
            return -1;
        else if (daemon_drop_privileges(cfg->user, cfg->group, err, errlen) < 0)
            return -1;
        else
            warn_if_reload_would_fail(m);
    }
    char why[1024];
    if (log_not_reopenable(cfg, why, sizeof(why)))
        log_warn("%s", why);
    if (cfg->state_file && restore_state(cfg, m->reg, err, errlen) < 0)
        return -1;
    log_restored_state(m);
    if (add_events(m) < 0) {
        snprintf(err, errlen, "cannot set up signal handling");
        return -1;
    }
    return 0;
}

static void release_resources(struct master *m)
{
    for (size_t i = 0; i < m->nsignal_events; i++)
        event_free(m->signal_events[i]);
    if (m->respawn_timer)
        event_free(m->respawn_timer);
    if (m->tick)
        event_free(m->tick);
    status_close(m->status);
    lsn_close(&m->lsn);
    if (m->pidfile.fd >= 0)
        pidfile_release(&m->pidfile);
    if (m->reg)
        reg_destroy(m->reg);
    for (int i = 0; i < 2; i++)
        if (m->alive_pipe[i] >= 0)
            close(m->alive_pipe[i]);
    if (m->base)
        event_base_free(m->base);
    if (m->boot_tls)   /* not handed over (-t, or a start that failed first) */
        wrk_tls_contexts_free(m->boot_tls, m->boot_cfg->nlisten);
    if (m->retired_cfg != m->boot_cfg)
        cfg_free(m->retired_cfg);
    if (m->cfg != m->boot_cfg)
        cfg_free(m->cfg);
    cfg_free(m->boot_cfg);
    keys_free(m->retired_keys);
    keys_free(m->keys);
    free(m->children);
}

/* Each connection takes a descriptor, and a shell's soft limit (often 1024) is far below what
 * the hard limit allows: the soft limit is raised towards the hard one, for the master and so
 * for its workers, up to OPEN_FILES_MAX (hook programs inherit it, and some close every
 * descriptor up to the limit). A systemd unit sets it (contrib/somirrord.service). */
static void raise_open_files_limit(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return;
    rlim_t want = lim.rlim_max < OPEN_FILES_MAX ? lim.rlim_max : OPEN_FILES_MAX;
    if (lim.rlim_cur >= want)
        return;
    rlim_t was = lim.rlim_cur;
    lim.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &lim) == 0)
        log_info("open files limit raised from %llu to %llu", (unsigned long long)was,
                 (unsigned long long)want);
}

static int serve(struct master *m, int foreground)
{
    char err[1024];
    int ready_fd = -1;
    if (!foreground && strcmp(m->cfg->log_file, "stderr") == 0)
        fprintf(stderr, "somirrord: warning: log.file is stderr, which a daemon closes once it serves: "
                        "nothing will be logged (set log.file to a file or syslog, or run with -f)\n");
    if (!foreground && daemon_detach(&ready_fd, err, sizeof(err)) < 0) {
        fprintf(stderr, "somirrord: %s\n", err);
        return 1;
    }
    if (log_open(m->cfg->log_file, (enum log_level)m->cfg->log_level, "somirrord", err, sizeof(err)) < 0) {
        fprintf(stderr, "somirrord: %s\n", err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);   /* meant for workers only */
    raise_open_files_limit();
    if (open_resources(m, err, sizeof(err)) < 0) {
        startup_failed(m, err);
        return 1;
    }
    reg_master_counters(m->reg)->started_ms = monotonic_ms();
    m->generation = m->last_generation = 1;
    reg_set_generation(m->reg, m->generation);
    refresh_ctl(m);
    m->ctl.reload = reload_from_status;
    m->ctl.reload_arg = m;
    /* Serving means workers that serve: until then the starting process waits, and a worker
     * that cannot start fails the start with its reason. */
    m->detached = ready_fd >= 0;
    if (start_generation(m, err, sizeof(err)) < 0) {
        startup_failed(m, err);
        stop_now(m);
        return 1;
    }
    if (m->pidfile.fd >= 0 && pidfile_write(&m->pidfile, getpid(), err, sizeof(err)) < 0) {
        startup_failed(m, err);
        stop_now(m);
        return 1;
    }
    if (ready_fd >= 0)
        daemon_ready(ready_fd);
    log_info("somirrord %s started (pid %ld, %d workers, %zu listeners)", PACKAGE_VERSION,
             (long)getpid(), m->cfg->workers, m->lsn.n);
    warn_doubtful(m->cfg, 1);
    event_base_dispatch(m->base);
    log_info("somirrord stopped");
    return 0;
}

/* somirrord -t on a configuration whose keys or certificates did not load (their errors are
 * said): when the file itself loads, what a start would find wrong beyond it is said too (an
 * unknown user, a listen address that does not resolve ...), so that one run tells every
 * error, not the next one at each try. */
static void test_beyond_keys(const char *config_path)
{
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(config_path, &errs);   /* its errors are said already */
    char err[1024];
    if (cfg && check_start(NULL, cfg, err, sizeof(err)) < 0)
        fprintf(stderr, "somirrord: %s\n", err);
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

int master_main(int argc, char **argv)
{
    struct master_options opts;
    char err[512];
    take_signals();
    if (daemon_open_stdio() < 0) {
        fprintf(stderr, "somirrord: cannot open /dev/null: %s\n", strerror(errno));
        return 1;
    }
    if (master_parse_args(argc, argv, &opts, err, sizeof(err)) < 0) {
        fprintf(stderr, "somirrord: %s\n", err);
        usage(stderr);
        return 2;
    }
    if (opts.show_help) {
        usage(stdout);
        return 0;
    }
    if (opts.show_version) {
        printf("somirrord %s\n", PACKAGE_VERSION);
        return 0;
    }

    /* Relative paths (the configuration's own, those in it) are the starting directory's,
     * also for a daemon, which works from /, and for its reloads. */
    char *start_dir = getcwd(NULL, 0);
    cfg_set_base_directory(start_dir);
    struct buf config_path = BUF_INIT;
    if (start_dir && opts.config_path[0] != '/')
        buf_printf(&config_path, "%s/%s", start_dir, opts.config_path);
    else
        buf_puts(&config_path, opts.config_path);
    free(start_dir);
    struct master m = {.config_path = config_path.data, .pidfile = {.fd = -1}, .alive_pipe = {-1, -1}};
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    int status = 1;
    if (load_generation(m.config_path, &m.cfg, &m.keys, &m.boot_tls, &errs) < 0) {
        report_errors(&errs);
        cfg_errors_free(&errs);
        if (opts.test_config)
            test_beyond_keys(m.config_path);
        goto out;
    }
    cfg_errors_free(&errs);
    m.boot_cfg = m.cfg;
    if (opts.test_config) {
        if (check_start(NULL, m.cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "somirrord: %s\n", err);
        } else {
            warn_as_user(m.config_path, m.cfg);
            warn_doubtful_as_user(m.cfg);
            printf("configuration ok\n");
            status = 0;
        }
    } else {
        status = serve(&m, opts.foreground);
    }
    release_resources(&m);
out:
    buf_free(&config_path);
    cfg_set_base_directory(NULL);
    return status;
}
