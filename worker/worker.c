/* worker/worker: the life of one worker process (see worker.h): its own event loop, signals
 * (SIGTERM: graceful stop of the service; SIGUSR2: graceful stop of this generation, replaced
 * by a reload; SIGUSR1: reopen the log; the master's death: SIGALRM at shutdown_timeout), the
 * master-alive pipe, the service (and the timer that closes its idle store connections), the
 * HTTP layer, and the stop. Writes only its own registry slot. */
#include "worker/worker.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "common/log.h"
#include "proto/service.h"
#include "worker/http.h"

#define ADMISSION_POLL_MS 2

struct worker {
    const struct wrk_params *params;
    struct event_base *base;
    struct wrk_http *http;
    struct event *on_term;
    struct event *on_usr2;
    struct event *on_usr1;
    struct event *on_master_pipe;
    struct event *admission;           /* polls for its generation to be the serving one */
    struct event *idle_sweep;          /* closes store connections left unused */
    struct service *svc;
    int stopping;
};

static void drained(void *arg)
{
    struct worker *w = arg;
    event_base_loopexit(w->base, NULL);
}

static void begin_stop(struct worker *w, const char *why, int shutting_down)
{
    wrk_http_drain(w->http, shutting_down);
    if (w->stopping)
        return;
    w->stopping = 1;
    log_info("worker stopping (%s): finishing the calls in hand", why);
    event_del(w->admission);
}

/* What the kernel sends a worker when its master dies (PR_SET_PDEATHSIG). */
#define MASTER_DEATH_SIGNAL SIGRTMIN

static unsigned orphan_limit_s;   /* shutdown_timeout, for start_orphan_clock */

/* No master is left to SIGKILL a worker that outlives shutdown_timeout (a call blocked in its
 * store, a client still trickling its request in): SIGALRM's default action ends it then, as
 * the master's SIGKILL would, its uncommitted call rolled back by the database. Set from the
 * master's death signal, not by the event loop, which a blocked call holds up. */
static void start_orphan_clock(int sig)
{
    if (orphan_limit_s > 0)
        alarm(orphan_limit_s);
    else
        raise(SIGALRM);
}

/* The master has exited (also while the worker was already draining, after a SIGTERM or a
 * reload): drain as for a stop, within shutdown_timeout. */
static void master_gone(struct worker *w)
{
    event_del(w->on_master_pipe);   /* its end of file would be read again and again */
    log_warn("the master has exited: the worker ends itself if it has not stopped within "
             "shutdown_timeout (%u s)", orphan_limit_s);
    begin_stop(w, "the master has exited", 1);
}

/* The master makes a generation the serving one once every worker of it could start; until
 * then the worker is ready but does not accept, so a generation that fails never serves. */
static void check_admission(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (reg_generation(w->params->reg) == w->params->generation) {
        wrk_http_admit(w->http);
        log_debug("worker of generation %u serving", (unsigned)w->params->generation);
        return;
    }
    struct timeval later = {0, ADMISSION_POLL_MS * 1000};
    evtimer_add(w->admission, &later);
}

static void sweep_idle(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    service_close_idle(w->svc);
}

static void stop_signalled(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGUSR2)
        begin_stop(arg, "replaced by a new generation", 0);
    else
        begin_stop(arg, "SIGTERM", 1);
}

static void usr1_signalled(evutil_socket_t sig, short what, void *arg)
{
    log_reopen();   /* a failure is logged, naming the file */
}

static void master_pipe_readable(evutil_socket_t fd, short what, void *arg)
{
    char byte;
    ssize_t n = read(fd, &byte, 1);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        master_gone(arg);
}

static int add_events(struct worker *w)
{
    w->on_term = evsignal_new(w->base, SIGTERM, stop_signalled, w);
    w->on_usr2 = evsignal_new(w->base, SIGUSR2, stop_signalled, w);
    w->on_usr1 = evsignal_new(w->base, SIGUSR1, usr1_signalled, w);
    w->on_master_pipe = event_new(w->base, w->params->master_alive_fd, EV_READ | EV_PERSIST,
                                  master_pipe_readable, w);
    w->admission = evtimer_new(w->base, check_admission, w);
    w->idle_sweep = event_new(w->base, -1, EV_PERSIST, sweep_idle, w);
    /* A quarter of store.idle_timeout, 1 to 15 s: connections close at most that late. */
    int idle = w->params->cfg->store_idle_timeout;
    struct timeval sweep = {idle / 4 < 1 ? 1 : idle / 4 > 15 ? 15 : idle / 4, 0};
    if (!w->on_term || !w->on_usr2 || !w->on_usr1 || !w->on_master_pipe || !w->admission ||
        !w->idle_sweep || event_add(w->on_term, NULL) < 0 || event_add(w->on_usr2, NULL) < 0 ||
        event_add(w->on_usr1, NULL) < 0 || event_add(w->on_master_pipe, NULL) < 0 ||
        (idle > 0 && event_add(w->idle_sweep, &sweep) < 0))
        return -1;
    return 0;
}

static void free_worker(struct worker *w)
{
    wrk_http_free(w->http);
    if (w->on_term)
        event_free(w->on_term);
    if (w->on_usr2)
        event_free(w->on_usr2);
    if (w->on_usr1)
        event_free(w->on_usr1);
    if (w->on_master_pipe)
        event_free(w->on_master_pipe);
    if (w->admission)
        event_free(w->admission);
    if (w->idle_sweep)
        event_free(w->idle_sweep);
    if (w->base)
        event_base_free(w->base);
}

/* Keeps the memory of finished calls for the next ones instead of giving it back to the
 * kernel. With glibc's defaults a large call's blocks (the body, libxml2's copy of it, the
 * request arena, the parse ring) came from mmap or were trimmed off the heap's top when freed,
 * and the next call faulted them in again page by page: about 430 page faults for each 1 MB
 * RowData call, which made its parse a fifth slower (measured with a loop of
 * soap_parse_request, 8.3-12 ms against 6.6-7.5 ms a call). A worker's memory is bounded by its
 * largest call either way; this keeps up to CALL_MEMORY_KEPT of it free between calls in each
 * malloc arena (glibc gives the parse and checkpointer threads their own): a 200,000-row
 * load's peak RSS went from 24.9 to 28.2 MiB. */
enum { CALL_MEMORY_KEPT = 32 * 1024 * 1024 };   /* glibc's largest mmap threshold (64-bit) */

static void keep_call_memory(void)
{
    if (!mallopt(M_MMAP_THRESHOLD, CALL_MEMORY_KEPT) || !mallopt(M_TRIM_THRESHOLD, CALL_MEMORY_KEPT))
        log_warn("the C library refused to keep freed call memory: large calls will be slower");
}

/* Logs why the worker cannot start and tells the master in its registry slot; 1. */
static int cannot_start(const struct wrk_params *params, const char *why)
{
    log_error("worker cannot start: %s", why);
    reg_worker_start_failed(params->reg, params->slot, why);
    return 1;
}

int wrk_run(const struct wrk_params *params)
{
    struct worker w = {.params = params};
    char err[1024] = "";
    int status = 1;

    /* The master's death starts the clock to shutdown_timeout at once (its pipe's end of file,
     * which stops the worker, waits for the event loop); one that died already sends nothing. */
    orphan_limit_s = (unsigned)params->cfg->shutdown_timeout;
    struct sigaction death = {.sa_handler = start_orphan_clock, .sa_flags = SA_RESTART};
    sigemptyset(&death.sa_mask);
    sigaction(MASTER_DEATH_SIGNAL, &death, NULL);
    signal(SIGALRM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, MASTER_DEATH_SIGNAL);
    if (getppid() != params->master_pid)
        start_orphan_clock(0);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* The SIGQUIT of a ^\ typed to somirrord -f reaches the whole process group: the master
     * stops at once and kills the workers, whose default action would dump core. */
    signal(SIGQUIT, SIG_IGN);
    keep_call_memory();

    struct service *svc = service_new(params->cfg, params->keys, params->reg, params->slot, err, sizeof(err));
    if (!svc)
        return cannot_start(params, err);
    w.svc = svc;
    w.base = event_base_new();
    if (!w.base || add_events(&w) < 0) {
        cannot_start(params, "cannot set up its event loop");
        goto out;
    }
    w.http = wrk_http_new(w.base, params, svc, drained, &w, err, sizeof(err));
    if (!w.http) {
        cannot_start(params, err);
        goto out;
    }
    sigprocmask(SIG_SETMASK, &params->signal_mask, NULL);
    sigset_t orphan_signals;
    sigemptyset(&orphan_signals);
    sigaddset(&orphan_signals, MASTER_DEATH_SIGNAL);
    sigaddset(&orphan_signals, SIGALRM);
    sigprocmask(SIG_UNBLOCK, &orphan_signals, NULL);
    if (getppid() != params->master_pid)
        master_gone(&w);
    reg_worker_state(params->reg, params->slot, WORKER_IDLE, NULL, NULL, (int64_t)time(NULL));
    if (!w.stopping)
        check_admission(-1, 0, &w);
    status = event_base_dispatch(w.base) < 0 ? 1 : 0;
out:
    free_worker(&w);
    service_free(svc);
    return status;
}
