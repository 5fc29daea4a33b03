/* ctl/commands: the status socket's command table and one function per command (see
 * commands.h). Answers are built in the caller's buffer: plain text (a header line, then
 * tab-separated rows), JSON built with jansson, or Prometheus text exposition. The master runs
 * this; it writes only what the master may write in the registry (pause flags and request
 * words) and the operator state file. */
#include "ctl/commands.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "ctl/statefile.h"
#include "proto/schema.h"

#define CTL_WORDS_MAX 8
#define CTL_ERR_MAX 1024
/* How much of an offending word an error message quotes. */
#define CTL_QUOTE_MAX 64

struct command_args {
    char *argv[CTL_WORDS_MAX];   /* the words after the command's own words */
    int argc;
    int json;                    /* a trailing "json" was given */
};

struct command {
    const char *words[2];        /* second word NULL for one-word commands */
    const char *usage;
    const char *help;
    int nargs;                   /* exact number of arguments after the words */
    int takes_json;
    int (*run)(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
               char *err, size_t errlen);
};

/* ---- small helpers ---- */

static void set_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t now_seconds(void)
{
    return (int64_t)time(NULL);
}

/* A plain-text field: "-" for empty, tabs and line breaks turned into spaces. */
static void put_field(struct buf *out, const char *text)
{
    if (!text || !*text) {
        buf_putc(out, '-');
        return;
    }
    for (const char *p = text; *p; p++)
        buf_putc(out, (*p == '\t' || *p == '\n' || *p == '\r') ? ' ' : *p);
}

/* A plain-text time: ISO 8601 UTC, "-" for never. */
static void put_time(struct buf *out, int64_t t)
{
    if (t <= 0) {
        buf_putc(out, '-');
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    char text[32];
    gmtime_r(&tt, &tm);
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    buf_puts(out, text);
}

static json_t *json_time(int64_t t)
{
    return t > 0 ? json_integer((json_int_t)t) : json_null();
}

static json_t *json_text_or_null(const char *text)
{
    return text && *text ? json_string(text) : json_null();
}

static json_t *json_count(uint64_t n)
{
    return json_integer((json_int_t)n);
}

static void put_json(struct buf *out, json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    buf_puts(out, text);
    buf_putc(out, '\n');
    free(text);
}

/* Validates a tenant argument; with must_exist, also looks it up. */
static int tenant_arg(struct ctl_context *ctx, const char *name, int must_exist, uint32_t *idx,
                      char *err, size_t errlen)
{
    if (!tenant_valid(name)) {
        set_error(err, errlen, "not a tenant name: \"%.*s\" (expected letters, digits and _, at most %d)",
                  CTL_QUOTE_MAX, name, SM_TENANT_MAX);
        return -1;
    }
    uint32_t found;
    if (must_exist && reg_tenant_find(ctx->reg, name, 0, idx ? idx : &found, NULL) != 0) {
        set_error(err, errlen, "unknown tenant %s", name);
        return -1;
    }
    return 0;
}

/* The tenant of reset and resync, which take one: "all" (every tenant for pause and resume) is
 * refused unless a tenant of that name has been seen, rather than registered as a new tenant
 * named all and answered "ok: reset of all", which reads as every tenant's. */
static int one_tenant_arg(struct ctl_context *ctx, const char *command, const char *name, char *err,
                          size_t errlen)
{
    uint32_t idx;
    if (strcmp(name, "all") == 0 && reg_tenant_find(ctx->reg, name, 0, &idx, NULL) != 0) {
        set_error(err, errlen, "%s takes one tenant (all means every tenant for pause and resume only)",
                  command);
        return -1;
    }
    return tenant_arg(ctx, name, 0, NULL, err, errlen);
}

/* ---- tenants ---- */

static const char *const tenant_columns =
    "tenant\tstate\tpaused\tcycle_started\tlast_completed\tlast_call\tlast_operation\tcalls\t"
    "rows_inserted\trows_updated\trows_deleted\tbytes\tlast_error";
static const char *const tenant_detail_columns =
    "\tlast_error_at\tlast_hook\tlast_hook_at\tlock_owner\tlast_summary";

static void put_tenant_row(struct buf *out, const struct tenant_view *v, int detail)
{
    buf_printf(out, "%s\t%s\t%s\t", v->tenant, reg_tenant_state_name(v->state), v->paused ? "yes" : "no");
    put_time(out, v->cycle_started);
    buf_putc(out, '\t');
    put_time(out, v->last_completed);
    buf_putc(out, '\t');
    put_time(out, v->last_call);
    buf_putc(out, '\t');
    put_field(out, v->last_operation);
    buf_printf(out, "\t%llu\t%llu\t%llu\t%llu\t%llu\t", (unsigned long long)v->calls,
               (unsigned long long)v->rows_inserted, (unsigned long long)v->rows_updated,
               (unsigned long long)v->rows_deleted, (unsigned long long)v->bytes);
    put_field(out, v->last_error);
    if (detail) {
        buf_putc(out, '\t');
        put_time(out, v->last_error_at);
        buf_putc(out, '\t');
        put_field(out, v->last_hook);
        buf_putc(out, '\t');
        put_time(out, v->last_hook_at);
        if (v->lock_owner)
            buf_printf(out, "\t%u", v->lock_owner);
        else
            buf_puts(out, "\t-");
        /* The sender's counts of its last completed cycle: inserted/updated/deleted. */
        if (v->last_completed)
            buf_printf(out, "\t%llu/%llu/%llu", (unsigned long long)v->last_summary.inserted,
                       (unsigned long long)v->last_summary.updated,
                       (unsigned long long)v->last_summary.deleted);
        else
            buf_puts(out, "\t-");
    }
    buf_putc(out, '\n');
}

static json_t *tenant_json(const struct tenant_view *v, int detail)
{
    json_t *o = json_object();
    json_object_set_new(o, "tenant", json_string(v->tenant));
    json_object_set_new(o, "state", json_string(reg_tenant_state_name(v->state)));
    json_object_set_new(o, "cycle_started", json_time(v->cycle_started));
    json_object_set_new(o, "last_completed", json_time(v->last_completed));
    json_object_set_new(o, "last_call", json_time(v->last_call));
    json_object_set_new(o, "last_operation", json_text_or_null(v->last_operation));
    json_object_set_new(o, "calls", json_count(v->calls));
    json_object_set_new(o, "rows_inserted", json_count(v->rows_inserted));
    json_object_set_new(o, "rows_updated", json_count(v->rows_updated));
    json_object_set_new(o, "rows_deleted", json_count(v->rows_deleted));
    json_object_set_new(o, "bytes", json_count(v->bytes));
    json_object_set_new(o, "paused", json_boolean(v->paused));
    json_object_set_new(o, "last_error", json_text_or_null(v->last_error));
    json_object_set_new(o, "last_error_at", json_time(v->last_error_at));
    if (detail) {
        json_object_set_new(o, "last_hook", json_text_or_null(v->last_hook));
        json_object_set_new(o, "last_hook_at", json_time(v->last_hook_at));
        json_object_set_new(o, "lock_owner", v->lock_owner ? json_integer(v->lock_owner) : json_null());
        json_t *summary = json_null();
        if (v->last_completed)
            summary = json_pack("{s:o,s:o,s:o}", "inserted", json_count(v->last_summary.inserted),
                                "updated", json_count(v->last_summary.updated), "deleted",
                                json_count(v->last_summary.deleted));
        json_object_set_new(o, "last_summary", summary);
    }
    return o;
}

static int compare_tenant_names(const void *a, const void *b)
{
    return strcmp(((const struct tenant_view *)a)->tenant, ((const struct tenant_view *)b)->tenant);
}

/* Every tenant, sorted by name; *n set. Free the result. */
static struct tenant_view *all_tenants(const struct registry *reg, size_t *n)
{
    uint32_t count = reg_tenant_count(reg);
    struct tenant_view *views = xcalloc(count ? count : 1, sizeof(*views));
    *n = 0;
    for (uint32_t idx = 0; idx < count; idx++)
        if (reg_tenant_read(reg, idx, &views[*n]) == 0)
            (*n)++;
    qsort(views, *n, sizeof(*views), compare_tenant_names);
    return views;
}

static int cmd_show_tenants(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                            char *err, size_t errlen)
{
    size_t n;
    struct tenant_view *views = all_tenants(ctx->reg, &n);
    if (args->json) {
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, tenant_json(&views[i], 0));
        put_json(out, json_pack("{s:o}", "tenants", list));
    } else {
        buf_printf(out, "%s\n", tenant_columns);
        for (size_t i = 0; i < n; i++)
            put_tenant_row(out, &views[i], 0);
    }
    free(views);
    return 0;
}

static int cmd_show_tenant(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                           char *err, size_t errlen)
{
    uint32_t idx;
    struct tenant_view v;
    if (tenant_arg(ctx, args->argv[0], 1, &idx, err, errlen) != 0)
        return -1;
    if (reg_tenant_read(ctx->reg, idx, &v) != 0) {
        set_error(err, errlen, "unknown tenant %s", args->argv[0]);
        return -1;
    }
    if (args->json) {
        put_json(out, json_pack("{s:o}", "tenant", tenant_json(&v, 1)));
    } else {
        buf_printf(out, "%s%s\n", tenant_columns, tenant_detail_columns);
        put_tenant_row(out, &v, 1);
    }
    return 0;
}

/* ---- workers and info ---- */

static int cmd_show_workers(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                            char *err, size_t errlen)
{
    json_t *list = args->json ? json_array() : NULL;
    if (!list)
        buf_puts(out, "pid\tgeneration\tstate\ttenant\toperation\tsince\tcalls\tfaults\tbytes\t"
                      "connections\n");
    for (uint32_t slot = 0; slot < reg_max_workers(ctx->reg); slot++) {
        struct worker_view w;
        if (reg_worker_read(ctx->reg, (int)slot, &w) != 0)
            continue;
        if (list) {
            json_array_append_new(list, json_pack("{s:I, s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:I}",
                "pid", (json_int_t)w.pid, "generation", (json_int_t)w.generation,
                "state", reg_worker_state_name(w.state), "tenant", json_text_or_null(w.tenant),
                "operation", json_text_or_null(w.operation), "since", json_time(w.since),
                "calls", json_count(w.calls), "faults", json_count(w.faults),
                "bytes", json_count(w.bytes), "connections", (json_int_t)w.connections));
            continue;
        }
        buf_printf(out, "%ld\t%u\t%s\t", (long)w.pid, w.generation, reg_worker_state_name(w.state));
        put_field(out, w.tenant);
        buf_putc(out, '\t');
        put_field(out, w.operation);
        buf_putc(out, '\t');
        put_time(out, w.since);
        buf_printf(out, "\t%llu\t%llu\t%llu\t%u\n", (unsigned long long)w.calls,
                   (unsigned long long)w.faults, (unsigned long long)w.bytes, w.connections);
    }
    if (list)
        put_json(out, json_pack("{s:o}", "workers", list));
    return 0;
}

static int cmd_show_info(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                         char *err, size_t errlen)
{
    const struct master_counters *mc = reg_master_counters(ctx->reg);
    const char *config_file = ctx->cfg ? ctx->cfg->path : NULL;
    int64_t uptime = (monotonic_ms() - ctx->started_ms) / 1000;
    uint32_t tenants = reg_tenant_count(ctx->reg);
    int paused_all = reg_global_paused(ctx->reg);
    if (args->json) {
        json_t *restart = json_array();
        for (size_t i = 0; i < ctx->nrestart; i++)
            json_array_append_new(restart, json_string(ctx->restart_required[i]));
        put_json(out, json_pack("{s:s?, s:I, s:I, s:I, s:o, s:i, s:I, s:I, s:I, s:I, s:b, s:o}",
            "version", ctx->version, "pid", (json_int_t)ctx->pid, "uptime", (json_int_t)uptime,
            "generation", (json_int_t)ctx->generation, "config_file", json_text_or_null(config_file),
            "workers", ctx->workers, "tenants", (json_int_t)tenants,
            "reloads", (json_int_t)mc->reloads_ok, "reloads_failed", (json_int_t)mc->reloads_failed,
            "worker_restarts", (json_int_t)mc->worker_restarts, "paused_all", paused_all,
            "restart_required", restart));
        return 0;
    }
    buf_puts(out, "version\tpid\tuptime\tgeneration\tconfig_file\tworkers\ttenants\treloads\t"
                  "reloads_failed\tworker_restarts\tpaused_all\trestart_required\n");
    put_field(out, ctx->version);
    buf_printf(out, "\t%ld\t%lld\t%u\t", (long)ctx->pid, (long long)uptime, ctx->generation);
    put_field(out, config_file);
    buf_printf(out, "\t%d\t%u\t%llu\t%llu\t%llu\t%s\t", ctx->workers, tenants,
               (unsigned long long)mc->reloads_ok, (unsigned long long)mc->reloads_failed,
               (unsigned long long)mc->worker_restarts, paused_all ? "yes" : "no");
    if (ctx->nrestart == 0)
        buf_putc(out, '-');
    for (size_t i = 0; i < ctx->nrestart; i++)
        buf_printf(out, "%s%s", i ? "," : "", ctx->restart_required[i]);
    buf_putc(out, '\n');
    return 0;
}

/* ---- metrics (Prometheus text exposition format) ---- */

static void metric_header(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_calls(struct buf *out, const struct worker_metrics *m)
{
    metric_header(out, "somirror_calls_total", "counter", "Mirroring calls answered, by operation and result.");
    for (int op = 0; op < REG_OP_COUNT; op++) {
        buf_printf(out, "somirror_calls_total{operation=\"%s\",result=\"ok\"} %llu\n",
                   reg_op_name(op), (unsigned long long)m->calls_ok[op]);
        buf_printf(out, "somirror_calls_total{operation=\"%s\",result=\"fault\"} %llu\n",
                   reg_op_name(op), (unsigned long long)m->calls_fault[op]);
    }
    metric_header(out, "somirror_rows_total", "counter", "Rows received in RowData calls, by what was done with them.");
    const struct { const char *name; uint64_t value; } rows[] = {
        { "inserted", m->rows_inserted }, { "updated", m->rows_updated },
        { "deleted", m->rows_deleted }, { "skipped", m->rows_skipped },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        buf_printf(out, "somirror_rows_total{operation=\"%s\"} %llu\n", rows[i].name,
                   (unsigned long long)rows[i].value);
    metric_header(out, "somirror_received_bytes_total", "counter", "Request body bytes received.");
    buf_printf(out, "somirror_received_bytes_total %llu\n", (unsigned long long)m->bytes_in);
}

static void metrics_durations(struct buf *out, const struct worker_metrics *m)
{
    metric_header(out, "somirror_call_duration_seconds", "histogram", "Time to answer a call, by operation.");
    for (int op = 0; op < REG_OP_COUNT; op++) {
        uint64_t cumulative = 0;
        for (int b = 0; b <= REG_DURATION_BUCKETS; b++) {
            cumulative += m->duration_bucket[op][b];
            if (b < REG_DURATION_BUCKETS)
                buf_printf(out, "somirror_call_duration_seconds_bucket{operation=\"%s\",le=\"%g\"} %llu\n",
                           reg_op_name(op), reg_duration_bounds[b], (unsigned long long)cumulative);
            else
                buf_printf(out, "somirror_call_duration_seconds_bucket{operation=\"%s\",le=\"+Inf\"} %llu\n",
                           reg_op_name(op), (unsigned long long)cumulative);
        }
        buf_printf(out, "somirror_call_duration_seconds_sum{operation=\"%s\"} %.6f\n", reg_op_name(op),
                   m->duration_sum[op]);
        buf_printf(out, "somirror_call_duration_seconds_count{operation=\"%s\"} %llu\n", reg_op_name(op),
                   (unsigned long long)cumulative);
    }
}

static void metrics_tenants(struct buf *out, const struct registry *reg)
{
    size_t n;
    struct tenant_view *views = all_tenants(reg, &n);
    uint64_t by_state[TENANT_ERROR + 1] = { 0 };
    for (size_t i = 0; i < n; i++)
        if ((unsigned)views[i].state <= TENANT_ERROR)
            by_state[views[i].state]++;
    metric_header(out, "somirror_tenants", "gauge", "Tenants in the registry, by state.");
    for (int s = TENANT_NEW; s <= TENANT_ERROR; s++)
        buf_printf(out, "somirror_tenants{state=\"%s\"} %llu\n", reg_tenant_state_name(s),
                   (unsigned long long)by_state[s]);
    /* Tenant names are [A-Za-z0-9_] only: nothing to escape in the label. */
    metric_header(out, "somirror_tenant_last_cycle_age_seconds", "gauge",
                  "Seconds since the tenant's last completed cycle (tenants that completed one).");
    /* By the wall clock, as the completion time is kept: after a step back, 0 rather than
     * negative. */
    int64_t now = now_seconds();
    for (size_t i = 0; i < n; i++)
        if (views[i].last_completed > 0)
            buf_printf(out, "somirror_tenant_last_cycle_age_seconds{tenant=\"%s\"} %lld\n", views[i].tenant,
                       (long long)(now > views[i].last_completed ? now - views[i].last_completed : 0));
    free(views);
}

static int cmd_metrics(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                       char *err, size_t errlen)
{
    struct worker_metrics m;
    const struct master_counters *mc = reg_master_counters(ctx->reg);
    reg_metrics_sum(ctx->reg, &m);
    metrics_calls(out, &m);
    metrics_durations(out, &m);
    metrics_tenants(out, ctx->reg);
    uint64_t connections = 0;
    for (uint32_t slot = 0; slot < reg_max_workers(ctx->reg); slot++) {
        struct worker_view w;
        if (reg_worker_read(ctx->reg, (int)slot, &w) == 0)
            connections += w.connections;
    }
    metric_header(out, "somirror_connections", "gauge", "Client connections open in the workers.");
    buf_printf(out, "somirror_connections %llu\n", (unsigned long long)connections);
    metric_header(out, "somirror_worker_restarts_total", "counter", "Workers started again after one exited unexpectedly.");
    buf_printf(out, "somirror_worker_restarts_total %llu\n", (unsigned long long)mc->worker_restarts);
    metric_header(out, "somirror_reloads_total", "counter", "Configuration reloads, by result.");
    buf_printf(out, "somirror_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)mc->reloads_ok);
    buf_printf(out, "somirror_reloads_total{result=\"failed\"} %llu\n", (unsigned long long)mc->reloads_failed);
    return 0;
}

/* ---- operator requests ---- */

/* Records the pauses and pending requests in the state file, when there is one. */
static int persist_state(struct ctl_context *ctx, const char *done, char *err, size_t errlen)
{
    char why[CTL_ERR_MAX / 2];
    if (!ctx->state_file || statefile_save(ctx->state_file, ctx->reg, why, sizeof(why)) == 0)
        return 0;
    log_error("operator state not saved: %s", why);
    set_error(err, errlen, "%s (in force now), but the state file was not written: %s; it is tried "
              "again each second, and a restart before it is written loses the change", done, why);
    return -1;
}

/* Said after an answer whose change only the state file would have kept across a restart. */
static const char *unsaved_note(const struct ctl_context *ctx)
{
    return ctx->state_file ? "" : " (no state_file is set: this lasts until the next restart)";
}

/* Whether the state file has room for one more tenant: a reload may lower tenants.max (the
 * registry keeps its size until a restart), and the next start could not restore more tenants
 * than it holds. 0, or -1 with err. */
static int state_room(struct ctl_context *ctx, const char *command, const char *tenant, char *err,
                      size_t errlen)
{
    if (!ctx->state_file || !ctx->cfg || statefile_keeps(ctx->reg, tenant))
        return 0;
    size_t kept = statefile_kept(ctx->reg);
    if (kept < (size_t)ctx->cfg->tenants_max)
        return 0;
    set_error(err, errlen, "cannot %s %s: the state file keeps %zu tenants already (paused, or with a "
              "resync or reset pending), as many as tenants.max %d lets the next start restore",
              command, tenant, kept, ctx->cfg->tenants_max);
    return -1;
}

/* Why the registry gave tenant no entry (rc, its answer): its allocation lock stayed taken (by
 * a worker stopped or dead and not yet reaped), as a call is then told TenantBusy, or it is
 * full. -1 with err. */
static int no_entry(const char *command, const char *tenant, int rc, char *err, size_t errlen)
{
    if (rc == REG_ALLOC_BUSY)
        set_error(err, errlen, "cannot %s %s: the tenant registry was busy (its allocation lock "
                  "stayed taken); try again", command, tenant);
    else
        set_error(err, errlen, "cannot %s %s: the tenant table is full (tenants.max)", command, tenant);
    return -1;
}

static int cmd_pause(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                     char *err, size_t errlen)
{
    const char *target = args->argv[0];
    int all = strcmp(target, "all") == 0;
    if (!all && (tenant_arg(ctx, target, 0, NULL, err, errlen) != 0 ||
                 state_room(ctx, "pause", target, err, errlen) != 0))
        return -1;
    int rc = reg_set_paused(ctx->reg, all ? NULL : target, 1);
    if (rc != 0)
        return no_entry("pause", target, rc, err, errlen);
    char done[128];
    snprintf(done, sizeof(done), "paused %s", all ? "all tenants" : target);
    if (persist_state(ctx, done, err, errlen) != 0)
        return -1;
    log_info("status socket: %s", done);
    buf_printf(out, "ok: %s%s\n", done, unsaved_note(ctx));
    return 0;
}

static int cmd_resume(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                      char *err, size_t errlen)
{
    const char *target = args->argv[0];
    int all = strcmp(target, "all") == 0;
    char done[160];
    if (all) {
        reg_set_paused(ctx->reg, NULL, 0);
        uint32_t n = reg_tenant_count(ctx->reg);
        for (uint32_t idx = 0; idx < n; idx++) {
            struct tenant_view v;
            if (reg_tenant_pause_flag(ctx->reg, idx) && reg_tenant_read(ctx->reg, idx, &v) == 0)
                reg_set_paused(ctx->reg, v.tenant, 0);
        }
        snprintf(done, sizeof(done), "resumed all tenants");
    } else {
        if (tenant_arg(ctx, target, 1, NULL, err, errlen) != 0)
            return -1;
        reg_set_paused(ctx->reg, target, 0);
        snprintf(done, sizeof(done), "resumed %s%s", target,
                 reg_global_paused(ctx->reg) ? " (every tenant stays paused until resume all)" : "");
    }
    if (persist_state(ctx, done, err, errlen) != 0)
        return -1;
    log_info("status socket: %s", done);
    buf_printf(out, "ok: %s\n", done);
    return 0;
}

static int cmd_resync(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                      char *err, size_t errlen)
{
    const char *tenant = args->argv[0], *table = args->argv[1];
    int all = strcmp(table, "all") == 0;
    if (one_tenant_arg(ctx, "resync", tenant, err, errlen) != 0 ||
        state_room(ctx, "resync", tenant, err, errlen) != 0)
        return -1;
    if (!all && !ident_valid(table)) {
        set_error(err, errlen, "not a table name: \"%.*s\"", CTL_QUOTE_MAX, table);
        return -1;
    }
    int rc = reg_request_resync(ctx->reg, tenant, all ? NULL : table);
    if (rc == REG_RESYNC_NO_LIST) {
        set_error(err, errlen, "the %d lists of tables waiting for a resync are all taken, by tenants "
                  "that have not called since they were asked for; use resync %s all (it needs none)",
                  REG_RESYNC_SLOTS, tenant);
        return -1;
    }
    if (rc == REG_RESYNC_LIST_FULL) {
        set_error(err, errlen, "too many tables already wait for a resync of %s; use resync %s all",
                  tenant, tenant);
        return -1;
    }
    if (rc != 0)
        return no_entry("resync", tenant, rc, err, errlen);
    char done[SM_TENANT_MAX + SM_IDENT_MAX + 32];
    snprintf(done, sizeof(done), "resync of %s (%s) requested", tenant, all ? "all tables" : table);
    if (persist_state(ctx, done, err, errlen) != 0)
        return -1;
    log_info("status socket: %s", done);
    if (all)
        buf_printf(out, "ok: resync of %s (all tables) at its next Authenticate or TableSchema%s\n", tenant,
                   unsaved_note(ctx));
    else   /* only the store knows the tables, and the master does not wait for one */
        buf_printf(out, "ok: resync of %s (%s) at its next Authenticate or TableSchema; a table its mirror "
                        "does not have is ignored then, with a warning in the log (`somirrorctl -c FILE "
                        "tables %s` lists them)%s\n", tenant, table, tenant, unsaved_note(ctx));
    return 0;
}

static int cmd_reset(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                     char *err, size_t errlen)
{
    const char *tenant = args->argv[0];
    if (one_tenant_arg(ctx, "reset", tenant, err, errlen) != 0 ||
        state_room(ctx, "reset", tenant, err, errlen) != 0)
        return -1;
    int rc = reg_request_reset(ctx->reg, tenant);
    if (rc != 0)
        return no_entry("reset", tenant, rc, err, errlen);
    char done[SM_TENANT_MAX + 32];
    snprintf(done, sizeof(done), "reset of %s requested", tenant);
    if (persist_state(ctx, done, err, errlen) != 0)
        return -1;
    log_info("status socket: %s", done);
    buf_printf(out, "ok: reset of %s at its next Authenticate or TableSchema%s\n", tenant,
               unsaved_note(ctx));
    return 0;
}

static int cmd_reload(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                      char *err, size_t errlen)
{
    if (!ctx->reload) {
        set_error(err, errlen, "reload is not available here");
        return -1;
    }
    char why[512] = "";
    if (ctx->reload(ctx->reload_arg, why, sizeof(why)) != 0) {
        set_error(err, errlen, "reload failed: %s; still running on the previous configuration",
                  why[0] ? why : "the log says why");
        return -1;
    }
    buf_puts(out, "ok: reloaded\n");
    return 0;
}

static int cmd_help(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                    char *err, size_t errlen);

static const struct command commands[] = {
    { { "help", NULL }, "help", "this list", 0, 0, cmd_help },
    { { "show", "info" }, "show info [json]", "version, pid, uptime, generation, counters", 0, 1, cmd_show_info },
    { { "show", "workers" }, "show workers [json]", "one row per worker process", 0, 1, cmd_show_workers },
    { { "show", "tenants" }, "show tenants [json]", "one row per tenant", 0, 1, cmd_show_tenants },
    { { "show", "tenant" }, "show tenant CTX [json]", "one tenant, with its last hook", 1, 1, cmd_show_tenant },
    { { "metrics", NULL }, "metrics", "counters in Prometheus text format", 0, 0, cmd_metrics },
    { { "pause", NULL }, "pause CTX|all", "refuse the tenant's cycles (all: every tenant)", 1, 0, cmd_pause },
    { { "resume", NULL }, "resume CTX|all", "lift a pause (all: the global one and every tenant's)", 1, 0, cmd_resume },
    { { "resync", NULL }, "resync CTX TABLE|all", "empty the table(s) and set Lsn -1 at the next cycle", 2, 0, cmd_resync },
    { { "reset", NULL }, "reset CTX", "drop the tenant's mirror and provision it anew at the next cycle", 1, 0, cmd_reset },
    { { "reload", NULL }, "reload", "reload the configuration (like SIGHUP)", 0, 0, cmd_reload },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int cmd_help(struct ctl_context *ctx, const struct command_args *args, struct buf *out,
                    char *err, size_t errlen)
{
    buf_puts(out, "command\tdescription\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        buf_printf(out, "%s\t%s\n", commands[i].usage, commands[i].help);
    return 0;
}

/* ---- parsing ---- */

/* Splits the line into words in text (a copy). 0, or -1 with err. */
static int split_words(const char *line, size_t len, char *text, char **words, int *nwords,
                       char *err, size_t errlen)
{
    if (len > CTL_LINE_MAX) {
        set_error(err, errlen, "command too long (%zu bytes; at most %d)", len, CTL_LINE_MAX);
        return -1;
    }
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0') {
            set_error(err, errlen, "the command contains a NUL byte");
            return -1;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            set_error(err, errlen, "the command contains a control character (0x%02x)", c);
            return -1;
        }
    }
    memcpy(text, line, len);
    text[len] = '\0';
    *nwords = 0;
    char *save = NULL;
    for (char *w = strtok_r(text, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (*nwords == CTL_WORDS_MAX) {
            set_error(err, errlen, "too many words in the command; try help");
            return -1;
        }
        words[(*nwords)++] = w;
    }
    if (*nwords == 0) {
        set_error(err, errlen, "empty command; try help");
        return -1;
    }
    return 0;
}

static const struct command *find_command(char **words, int nwords, char *err, size_t errlen)
{
    int first_known = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcasecmp(words[0], c->words[0]) != 0)
            continue;
        first_known = 1;
        if (!c->words[1] || (nwords > 1 && strcasecmp(words[1], c->words[1]) == 0))
            return c;
    }
    if (first_known)
        set_error(err, errlen, "%s what? try help", words[0]);
    else
        set_error(err, errlen, "unknown command \"%.*s\"; try help", CTL_QUOTE_MAX, words[0]);
    return NULL;
}

int ctl_execute(struct ctl_context *ctx, const char *line, size_t len, struct buf *out)
{
    char err[CTL_ERR_MAX] = "";
    char text[CTL_LINE_MAX + 1];
    char *words[CTL_WORDS_MAX];
    int nwords = 0;
    const struct command *c = NULL;
    struct command_args args = { .argc = 0 };
    size_t mark = out->len;
    int rc = split_words(line, len, text, words, &nwords, err, sizeof(err));
    if (rc == 0 && !(c = find_command(words, nwords, err, sizeof(err))))
        rc = -1;
    if (rc == 0) {
        int skip = c->words[1] ? 2 : 1;
        args.argc = nwords - skip;
        memcpy(args.argv, words + skip, (size_t)args.argc * sizeof(char *));
        if (c->takes_json && args.argc > c->nargs && strcasecmp(args.argv[args.argc - 1], "json") == 0) {
            args.json = 1;
            args.argc--;
        }
        if (args.argc != c->nargs) {
            set_error(err, sizeof(err), "%s arguments; usage: %s",
                      args.argc > c->nargs ? "too many" : "missing", c->usage);
            rc = -1;
        }
    }
    if (rc == 0)
        rc = c->run(ctx, &args, out, err, sizeof(err));
    if (rc == 0)
        return 0;
    out->len = mark;
    if (out->data)
        out->data[mark] = '\0';
    buf_printf(out, "error: %s\n", err[0] ? err : "the command failed");
    return 1;
}
