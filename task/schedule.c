/* task/schedule: `somirror-task run -c task.yaml`: a cycle for every (tenant, approved and
 * activated application) pair, each in a forked child (at most schedule.parallel at once),
 * every schedule.every, never starting inside the pause window. SIGHUP rereads the file (a
 * newly approved application is due at once; a withdrawn approval or a deactivated application
 * gets no further cycles); SIGTERM/SIGINT stop after the running cycles. With --once, one cycle
 * of every pair (pause window ignored), then exit. A child reports its result as one JSON line
 * in a temporary file the parent reads when it reaps the child, and a setup error (source,
 * tracking, URL) by its exit status. */
#include "task/task.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "config/keys.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_reload(int sig)
{
    (void)sig;
    reload_requested = 1;
}

/* A loaded configuration with its keys. */
struct loaded {
    struct task_config *cfg;
    EVP_PKEY *vendor_key;
    struct vendor_cert cert;
    EVP_PKEY **app_keys;             /* per cfg->apps entry */
};

struct pair {
    char tenant[SM_TENANT_MAX + 1];
    char app[TASK_APP_ID_MAX + 1];
    int64_t due_ms;                  /* monotonic (a step of the wall clock moves no cycle) */
    int64_t started_ms;              /* the last cycle's start, monotonic; 0 = none yet */
    pid_t pid;                       /* 0 when not running */
    FILE *result;                    /* the child's JSON line */
    int listed;                      /* still in the current configuration */
};

struct scheduler {
    const struct schedule_options *opt;
    struct loaded keys;
    struct pair *pairs;
    size_t npairs, cap;
    size_t running;
    json_t *summary;                 /* --once --json: the results, printed at the end */
    int failures;
    int setup_failures;              /* cycles that failed in their setup (a subset) */
};

static void loaded_free(struct loaded *l)
{
    if (l->cfg && l->app_keys)   /* NULL when the vendor's key or certificate failed */
        for (size_t i = 0; i < l->cfg->napps; i++)
            EVP_PKEY_free(l->app_keys[i]);
    free(l->app_keys);
    EVP_PKEY_free(l->vendor_key);
    if (l->cert.cert)
        keys_cert_free(&l->cert);
    taskconf_free(l->cfg);
    memset(l, 0, sizeof *l);
}

static int loaded_open(struct loaded *l, const char *path)
{
    char err[1024] = "", warning[256] = "";
    memset(l, 0, sizeof *l);
    l->cfg = taskconf_load(path, err, sizeof err);
    if (l->cfg && !(l->vendor_key = keys_load_private(l->cfg->vendor_key, err, sizeof err,
                                                       warning, sizeof warning)))
        goto failed;
    if (warning[0])
        log_warn("%s", warning);
    if (!l->cfg || keys_load_cert(l->cfg->vendor_cert, &l->cert, err, sizeof err) != 0)
        goto failed;
    l->app_keys = xcalloc(l->cfg->napps + 1, sizeof *l->app_keys);
    for (size_t i = 0; i < l->cfg->napps; i++)
        if (!(l->app_keys[i] = keys_load_public(l->cfg->apps[i].public_key, err, sizeof err)))
            goto failed;
    return 0;
failed:
    log_error("%s", err);
    loaded_free(l);
    return -1;
}

static struct pair *find_pair(struct scheduler *s, const char *tenant, const char *app)
{
    for (size_t i = 0; i < s->npairs; i++)
        if (!strcmp(s->pairs[i].tenant, tenant) && !strcmp(s->pairs[i].app, app))
            return &s->pairs[i];
    return NULL;
}

/* When a pair that started a cycle is due again: every_s after that start. */
static int64_t due_after_start(const struct pair *p, const struct task_config *cfg)
{
    return p->started_ms + (int64_t)cfg->every_s * 1000;
}

/* Marks the pairs of the current configuration; new ones are due now. */
static void sync_pairs(struct scheduler *s)
{
    const struct task_config *cfg = s->keys.cfg;
    for (size_t i = 0; i < s->npairs; i++)
        s->pairs[i].listed = 0;
    for (size_t t = 0; t < cfg->ntenants; t++) {
        const struct task_tenant *tenant = &cfg->tenants[t];
        for (size_t a = 0; a < tenant->approved.n; a++) {
            const struct task_app *app = taskconf_app(cfg, tenant->approved.items[a]);
            if (!app || !app->activated)
                continue;
            struct pair *p = find_pair(s, tenant->context, app->id);
            if (!p) {
                s->pairs = xgrow(s->pairs, &s->cap, s->npairs + 1, sizeof *s->pairs);
                p = &s->pairs[s->npairs++];
                memset(p, 0, sizeof *p);
                snprintf(p->tenant, sizeof p->tenant, "%s", tenant->context);
                snprintf(p->app, sizeof p->app, "%s", app->id);
                p->due_ms = monotonic_ms();
                log_info("tenant %s: application %s approved: first cycle now", p->tenant, p->app);
            } else if (p->started_ms) {
                /* a changed period applies at once */
                p->due_ms = due_after_start(p, cfg);
            }
            p->listed = 1;
        }
    }
    /* Pairs no longer listed are forgotten once their running cycle (if any) is reaped. */
    size_t kept = 0;
    for (size_t i = 0; i < s->npairs; i++) {
        if (!s->pairs[i].listed && !s->pairs[i].pid) {
            log_info("tenant %s: application %s no longer approved or active: no more cycles",
                     s->pairs[i].tenant, s->pairs[i].app);
            continue;
        }
        s->pairs[kept++] = s->pairs[i];
    }
    s->npairs = kept;
}

static void fill_cycle_options(const struct loaded *l, const struct task_tenant *tenant,
                               const struct task_app *app, EVP_PKEY *app_key, int progress,
                               struct cycle_options *o)
{
    memset(o, 0, sizeof *o);
    o->url = app->url;
    o->app_id = app->id;
    o->tenant = tenant->context;
    o->db_path = tenant->source;
    o->vendor_key = l->vendor_key;
    o->vendor_x5t = l->cert.x5t;
    o->app_public_key = app_key;
    o->batch_size = tenant->batch_size;
    o->skip = &tenant->skip_tables;
    o->progress = progress;
    o->tries = l->cfg->tries;
    o->backoff_ms = l->cfg->backoff_ms;
    o->timeout_s = l->cfg->timeout_s;
    o->insecure = l->cfg->insecure;
}

int schedule_one(const struct cycle_options *opt, int json, FILE *json_out)
{
    struct cycle_result result;
    log_set_tenant(opt->tenant);
    int rc = cycle_run(opt, &result);
    if (json) {
        char *text = cycle_result_json(&result, opt->tenant, opt->app_id);
        fprintf(json_out, "%s\n", text ? text : "{}");
        fflush(json_out);
        free(text);
    }
    int status = rc == 0 ? 0 : result.setup_error ? TASK_EXIT_USAGE : TASK_EXIT_FAILED;
    cycle_result_free(&result);
    return status;
}

static void start_cycle(struct scheduler *s, struct pair *p)
{
    const struct task_config *cfg = s->keys.cfg;
    const struct task_tenant *tenant = NULL;
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (!strcmp(cfg->tenants[i].context, p->tenant))
            tenant = &cfg->tenants[i];
    const struct task_app *app = taskconf_app(cfg, p->app);
    p->started_ms = monotonic_ms();
    p->due_ms = due_after_start(p, cfg);
    p->result = tmpfile();
    if (!tenant || !app || !p->result) {
        log_error("tenant %s: cannot start a cycle", p->tenant);
        if (p->result)
            fclose(p->result);
        p->result = NULL;
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("tenant %s: fork: %s", p->tenant, strerror(errno));
        fclose(p->result);
        p->result = NULL;
        return;
    }
    if (pid == 0) {
        signal(SIGHUP, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        struct cycle_options o;
        EVP_PKEY *app_key = s->keys.app_keys[app - cfg->apps];
        fill_cycle_options(&s->keys, tenant, app, app_key, isatty(STDERR_FILENO) && cfg->parallel == 1, &o);
        _exit(schedule_one(&o, 1, p->result));
    }
    p->pid = pid;
    s->running++;
}

/* The child's JSON line, whole (a cycle of many tables is longer than any fixed buffer), without
 * its newline; or, when it wrote none, a failed result saying so. */
static void read_result(const struct pair *p, struct buf *line)
{
    char chunk[4096];
    size_t n;
    rewind(p->result);
    while ((n = fread(chunk, 1, sizeof chunk, p->result)) > 0)
        buf_append(line, chunk, n);
    while (line->len && line->data[line->len - 1] == '\n')
        line->data[--line->len] = '\0';
    if (!line->len)
        buf_printf(line, "{\"tenant\":\"%s\",\"application\":\"%s\",\"result\":\"failed\","
                   "\"error\":\"the cycle process ended abnormally\"}", p->tenant, p->app);
}

static void reap(struct scheduler *s, int block)
{
    int status;
    pid_t pid;
    while (s->running && (pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
        block = 0;
        for (size_t i = 0; i < s->npairs; i++) {
            struct pair *p = &s->pairs[i];
            if (p->pid != pid)
                continue;
            p->pid = 0;
            s->running--;
            int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            s->failures += !ok;
            s->setup_failures += WIFEXITED(status) && WEXITSTATUS(status) == TASK_EXIT_USAGE;
            struct buf line = BUF_INIT;
            read_result(p, &line);
            fclose(p->result);
            p->result = NULL;
            if (s->opt->json && s->summary)
                json_array_append_new(s->summary, json_loads(line.data, 0, NULL));
            else if (s->opt->json) {
                printf("%s\n", line.data);
                fflush(stdout);
            }
            buf_free(&line);
        }
    }
}

static int in_pause_window(const struct task_config *cfg)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return taskconf_paused(cfg, tm.tm_hour * 60 + tm.tm_min);
}

int schedule_run(const struct schedule_options *opt)
{
    struct scheduler s = {.opt = opt};
    if (loaded_open(&s.keys, opt->config_path) != 0)
        return TASK_EXIT_USAGE;
    if (opt->once && opt->json)
        s.summary = json_array();
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload;
    sigaction(SIGHUP, &sa, NULL);
    sync_pairs(&s);
    size_t started = 0;
    while (!stop_requested || s.running) {
        if (reload_requested && !opt->once) {
            reload_requested = 0;
            struct loaded fresh;
            if (loaded_open(&fresh, opt->config_path) == 0) {
                loaded_free(&s.keys);
                s.keys = fresh;
                sync_pairs(&s);
                log_info("reloaded %s", opt->config_path);
            } else {
                log_error("reload of %s failed: keeping the configuration in use", opt->config_path);
            }
        }
        int64_t now_ms = monotonic_ms();
        int paused = !opt->once && in_pause_window(s.keys.cfg);
        for (size_t i = 0; !stop_requested && !paused && i < s.npairs; i++) {
            struct pair *p = &s.pairs[i];
            if (s.running >= (size_t)s.keys.cfg->parallel)
                break;
            /* --once: one cycle per pair, even when it outlasts the period */
            if (!p->pid && p->listed && p->due_ms <= now_ms && !(opt->once && p->started_ms)) {
                start_cycle(&s, p);
                started++;
            }
        }
        if (opt->once && started >= s.npairs && !s.running)
            break;
        if (opt->once) {
            reap(&s, 1);
        } else {
            sleep(1);
            reap(&s, 0);
            sync_pairs(&s);
        }
    }
    if (s.summary) {
        json_t *all = json_pack("{s:o, s:s}", "cycles", s.summary, "result", s.failures ? "failed" : "ok");
        char *text = json_dumps(all, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(all);
    }
    if (opt->once)
        log_info("run --once: %zu cycles, %d failed", started, s.failures);
    loaded_free(&s.keys);
    free(s.pairs);
    return s.setup_failures ? TASK_EXIT_USAGE : s.failures ? TASK_EXIT_FAILED : 0;
}
