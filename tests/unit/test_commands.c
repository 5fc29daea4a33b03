/* tests/unit/test_commands: unit tests of ctl/commands (every status command, plain and json,
 * malformed lines) and ctl/statefile (pause persistence). */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "ctl/commands.h"
#include "ctl/statefile.h"
#include "shm/registry.h"

static struct registry *reg;
static struct config cfg;
static struct ctl_context ctx;
static char state_dir[64];
static char state_path[128];
static int reload_calls;
static int reload_result;
static const char *const restart_required[] = { "tenants.max", "listen" };

static int fake_reload(void *arg, char *why, size_t whylen)
{
    ck_assert_ptr_eq(arg, &reload_calls);
    reload_calls++;
    if (reload_result != 0)
        snprintf(why, whylen, "a new worker exited with status 1 before it served: %s", "disk");
    return reload_result;
}

static uint32_t tenant(const char *name)
{
    uint32_t idx;
    ck_assert_int_eq(reg_tenant_find(reg, name, 1, &idx, NULL), 0);
    return idx;
}

/* Cust1: a completed cycle with a hook; Cust2: paused; Cust3: an error with a tab in it.
 * Workers: one busy on Cust1, one idle. */
static void setup(void)
{
    char err[256];
    reg = reg_create(16, 4, err, sizeof(err));
    ck_assert_ptr_nonnull(reg);
    int64_t now = (int64_t)time(NULL);
    uint32_t c1 = tenant("Cust1");
    reg_tenant_trylock(reg, c1, 10);
    reg_tenant_cycle_started(reg, c1, now - 60);
    reg_tenant_call_started(reg, c1, "RowData", now - 50);
    reg_tenant_call_done(reg, c1, 100, 3, 2, 12345, NULL, now - 50);
    reg_tenant_cycle_completed(reg, c1, now - 40, &(struct cycle_summary){10, 3, 1});
    reg_tenant_hook_ran(reg, c1, "cycle_completed Cust1: exit 0", 0, now - 39);
    reg_tenant_unlock(reg, c1, 10);
    tenant("Cust2");
    ck_assert_int_eq(reg_set_paused(reg, "Cust2", 1), 0);
    uint32_t c3 = tenant("Cust3");
    reg_tenant_trylock(reg, c3, 11);
    reg_tenant_call_done(reg, c3, 0, 0, 0, 10, "StorageError:\tdisk full", now - 5);
    reg_tenant_unlock(reg, c3, 11);

    int busy = reg_worker_claim(reg, 2), idle = reg_worker_claim(reg, 2);
    reg_worker_set_pid(reg, busy, 2001);
    reg_worker_set_pid(reg, idle, 2002);
    reg_worker_state(reg, busy, WORKER_BUSY, "Cust1", "RowData", now - 1);
    reg_worker_state(reg, idle, WORKER_IDLE, NULL, NULL, now - 2);
    reg_worker_connections(reg, busy, 7);
    reg_worker_call_done(reg, busy, REG_OP_ROWDATA, 0, 0.002, 1000, 100, 3, 2, 2);
    reg_worker_call_done(reg, busy, REG_OP_ROWDATA, 0, 0.2, 500, 0, 0, 0, 0);
    reg_worker_call_done(reg, idle, REG_OP_ROWDATA, 1, 30, 50, 0, 0, 0, 0);
    reg_worker_call_done(reg, idle, REG_OP_AUTHENTICATE, 0, 0.0001, 20, 0, 0, 0, 0);
    reg_master_counters(reg)->worker_restarts = 3;
    reg_master_counters(reg)->reloads_ok = 1;
    reg_master_counters(reg)->reloads_failed = 4;

    snprintf(state_dir, sizeof(state_dir), "/tmp/test_commands.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(state_dir));
    snprintf(state_path, sizeof(state_path), "%s/somirrord.state", state_dir);

    memset(&cfg, 0, sizeof(cfg));
    cfg.path = "/etc/somirror/somirrord.yaml";
    cfg.tenants_max = (int)reg_max_tenants(reg);
    memset(&ctx, 0, sizeof(ctx));
    ctx.reg = reg;
    ctx.cfg = &cfg;
    ctx.pid = 1234;
    ctx.started_ms = monotonic_ms() - 100 * 1000;
    ctx.version = "1.0.0";
    ctx.generation = 2;
    ctx.workers = 4;
    ctx.restart_required = restart_required;
    ctx.nrestart = 2;
    ctx.reload = fake_reload;
    ctx.reload_arg = &reload_calls;
    ctx.state_file = state_path;
    reload_calls = 0;
    reload_result = 0;
}

static void teardown(void)
{
    unlink(state_path);
    rmdir(state_dir);
    reg_destroy(reg);
}

/* Runs one command; the answer is returned (free it) and *rc set. */
static char *run_rc(const char *line, int *rc)
{
    struct buf out = BUF_INIT;
    *rc = ctl_execute(&ctx, line, strlen(line), &out);
    return buf_steal(&out);
}

static char *run_ok(const char *line)
{
    int rc;
    char *answer = run_rc(line, &rc);
    ck_assert_msg(rc == 0, "%s: %s", line, answer);
    return answer;
}

static void expect_error(const char *line, size_t len, const char *fragment)
{
    struct buf out = BUF_INIT;
    buf_puts(&out, "kept|");
    int rc = ctl_execute(&ctx, line, len, &out);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strncmp(out.data, "kept|error: ", 12) == 0, "not an error answer: %s", out.data);
    ck_assert_msg(strstr(out.data, fragment) != NULL, "\"%s\" not in %s", fragment, out.data);
    ck_assert_ptr_eq(strchr(out.data, '\n'), out.data + out.len - 1);   /* one line */
    buf_free(&out);
}

static json_t *run_json(const char *line)
{
    char *answer = run_ok(line);
    json_error_t jerr;
    json_t *value = json_loads(answer, 0, &jerr);
    ck_assert_msg(value != NULL, "%s: not JSON (%s): %s", line, jerr.text, answer);
    ck_assert_int_eq(answer[strlen(answer) - 1], '\n');
    free(answer);
    return value;
}

/* Plain answers: the header's columns, then rows with as many tab-separated fields. Returns
 * the rows (not the header), each row a NULL-terminated array of fields. */
struct table {
    char *text;
    char **header;
    char ***rows;
    size_t nrows;
    size_t ncols;
};

static char **split_fields(char *line, size_t *n)
{
    char **fields = calloc(64, sizeof(char *));
    *n = 0;
    for (char *p = line;; p++) {
        fields[(*n)++] = p;
        p = strchr(p, '\t');
        if (!p)
            break;
        *p = '\0';
    }
    return fields;
}

static struct table parse_table(const char *line)
{
    struct table t = { run_ok(line), NULL, NULL, 0, 0 };
    t.rows = calloc(64, sizeof(char **));
    char *save = NULL;
    for (char *l = strtok_r(t.text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        size_t n;
        char **fields = split_fields(l, &n);
        if (!t.header) {
            t.header = fields;
            t.ncols = n;
            continue;
        }
        ck_assert_msg(n == t.ncols, "%s: a row has %zu fields, the header %zu", line, n, t.ncols);
        t.rows[t.nrows++] = fields;
    }
    ck_assert_ptr_nonnull(t.header);
    return t;
}

static const char *field(const struct table *t, size_t row, const char *column)
{
    ck_assert_uint_lt(row, t->nrows);
    for (size_t c = 0; c < t->ncols; c++)
        if (strcmp(t->header[c], column) == 0)
            return t->rows[row][c];
    ck_abort_msg("no column %s", column);
    return NULL;
}

static void free_table(struct table *t)
{
    for (size_t i = 0; i < t->nrows; i++)
        free(t->rows[i]);
    free(t->rows);
    free(t->header);
    free(t->text);
}

START_TEST(test_help)
{
    struct table t = parse_table("help");
    ck_assert_str_eq(t.header[0], "command");
    const char *expected[] = { "help", "show info [json]", "show workers [json]", "show tenants [json]",
                               "show tenant CTX [json]", "metrics", "pause CTX|all", "resume CTX|all",
                               "resync CTX TABLE|all", "reset CTX", "reload" };
    ck_assert_uint_eq(t.nrows, sizeof(expected) / sizeof(expected[0]));
    for (size_t i = 0; i < t.nrows; i++)
        ck_assert_str_eq(t.rows[i][0], expected[i]);
    free_table(&t);
}
END_TEST

START_TEST(test_show_info)
{
    struct table t = parse_table("show info");
    ck_assert_uint_eq(t.nrows, 1);
    ck_assert_str_eq(field(&t, 0, "version"), "1.0.0");
    ck_assert_str_eq(field(&t, 0, "pid"), "1234");
    ck_assert_int_ge(atoi(field(&t, 0, "uptime")), 100);
    ck_assert_str_eq(field(&t, 0, "generation"), "2");
    ck_assert_str_eq(field(&t, 0, "config_file"), "/etc/somirror/somirrord.yaml");
    ck_assert_str_eq(field(&t, 0, "tenants"), "3");
    ck_assert_str_eq(field(&t, 0, "restart_required"), "tenants.max,listen");
    free_table(&t);

    json_t *info = run_json("show info json");
    ck_assert_str_eq(json_string_value(json_object_get(info, "version")), "1.0.0");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "pid")), 1234);
    ck_assert_int_ge(json_integer_value(json_object_get(info, "uptime")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "generation")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(info, "config_file")), "/etc/somirror/somirrord.yaml");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "workers")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "tenants")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "reloads")), 1);
    json_t *restart = json_object_get(info, "restart_required");
    ck_assert_int_eq(json_array_size(restart), 2);
    ck_assert_str_eq(json_string_value(json_array_get(restart, 0)), "tenants.max");
    json_decref(info);

    ctx.cfg = NULL;
    ctx.nrestart = 0;
    info = run_json("show info json");
    ck_assert(json_is_null(json_object_get(info, "config_file")));
    ck_assert_int_eq(json_array_size(json_object_get(info, "restart_required")), 0);
    json_decref(info);
}
END_TEST

START_TEST(test_show_workers)
{
    struct table t = parse_table("show workers");
    ck_assert_uint_eq(t.nrows, 2);
    ck_assert_str_eq(field(&t, 0, "pid"), "2001");
    ck_assert_str_eq(field(&t, 0, "state"), "busy");
    ck_assert_str_eq(field(&t, 0, "tenant"), "Cust1");
    ck_assert_str_eq(field(&t, 0, "operation"), "RowData");
    ck_assert_str_eq(field(&t, 0, "calls"), "2");
    ck_assert_str_eq(field(&t, 0, "connections"), "7");
    ck_assert_str_eq(field(&t, 1, "connections"), "0");
    ck_assert_str_eq(field(&t, 1, "state"), "idle");
    ck_assert_str_eq(field(&t, 1, "tenant"), "-");
    ck_assert_str_eq(field(&t, 1, "faults"), "1");
    free_table(&t);

    json_t *root = run_json("show workers json");
    json_t *workers = json_object_get(root, "workers");
    ck_assert_int_eq(json_array_size(workers), 2);
    json_t *busy = json_array_get(workers, 0), *idle = json_array_get(workers, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(busy, "pid")), 2001);
    ck_assert_int_eq(json_integer_value(json_object_get(busy, "generation")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(busy, "state")), "busy");
    ck_assert_str_eq(json_string_value(json_object_get(busy, "tenant")), "Cust1");
    ck_assert_str_eq(json_string_value(json_object_get(busy, "operation")), "RowData");
    ck_assert_int_gt(json_integer_value(json_object_get(busy, "since")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(busy, "calls")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(busy, "connections")), 7);
    ck_assert(json_is_null(json_object_get(idle, "tenant")));
    ck_assert(json_is_null(json_object_get(idle, "operation")));
    json_decref(root);
}
END_TEST

START_TEST(test_show_tenants)
{
    struct table t = parse_table("show tenants");
    ck_assert_uint_eq(t.nrows, 3);
    ck_assert_str_eq(t.header[0], "tenant");
    ck_assert_str_eq(field(&t, 0, "tenant"), "Cust1");
    ck_assert_str_eq(field(&t, 0, "state"), "idle");
    ck_assert_str_eq(field(&t, 0, "rows_inserted"), "100");
    ck_assert_str_eq(field(&t, 0, "last_error"), "-");
    ck_assert_str_eq(field(&t, 1, "state"), "paused");
    ck_assert_str_eq(field(&t, 1, "cycle_started"), "-");
    ck_assert_str_eq(field(&t, 2, "state"), "error");
    ck_assert_str_eq(field(&t, 2, "last_error"), "StorageError: disk full");   /* tab flattened */
    ck_assert_uint_eq(strlen(field(&t, 0, "last_completed")), 20);            /* ISO 8601 UTC */
    free_table(&t);

    json_t *root = run_json("show tenants json");
    json_t *list = json_object_get(root, "tenants");
    ck_assert_int_eq(json_array_size(list), 3);
    json_t *c1 = json_array_get(list, 0), *c2 = json_array_get(list, 1), *c3 = json_array_get(list, 2);
    ck_assert_str_eq(json_string_value(json_object_get(c1, "tenant")), "Cust1");
    ck_assert_str_eq(json_string_value(json_object_get(c1, "state")), "idle");
    ck_assert(json_is_integer(json_object_get(c1, "cycle_started")));
    ck_assert(json_is_integer(json_object_get(c1, "last_completed")));
    ck_assert(json_is_integer(json_object_get(c1, "last_call")));
    ck_assert_str_eq(json_string_value(json_object_get(c1, "last_operation")), "RowData");
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "calls")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "rows_inserted")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "rows_updated")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "rows_deleted")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "bytes")), 12345);
    ck_assert(json_is_false(json_object_get(c1, "paused")));
    ck_assert(json_is_null(json_object_get(c1, "last_error")));
    ck_assert_ptr_null(json_object_get(c1, "last_hook"));   /* show tenant only */
    ck_assert(json_is_true(json_object_get(c2, "paused")));
    ck_assert_str_eq(json_string_value(json_object_get(c2, "state")), "paused");
    ck_assert(json_is_null(json_object_get(c2, "cycle_started")));
    ck_assert(json_is_null(json_object_get(c2, "last_operation")));
    ck_assert_str_eq(json_string_value(json_object_get(c3, "last_error")), "StorageError:\tdisk full");
    json_decref(root);
}
END_TEST

START_TEST(test_show_tenant)
{
    json_t *root = run_json("show tenant Cust1 json");
    json_t *c1 = json_object_get(root, "tenant");
    ck_assert(json_is_object(c1));
    ck_assert_str_eq(json_string_value(json_object_get(c1, "tenant")), "Cust1");
    ck_assert_str_eq(json_string_value(json_object_get(c1, "last_hook")), "cycle_completed Cust1: exit 0");
    ck_assert(json_is_integer(json_object_get(c1, "last_hook_at")));
    ck_assert_int_eq(json_integer_value(json_object_get(c1, "rows_inserted")), 100);
    json_t *summary = json_object_get(c1, "last_summary");
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "inserted")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "updated")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "deleted")), 1);
    json_decref(root);
    root = run_json("show tenant Cust2 json");
    ck_assert(json_is_null(json_object_get(json_object_get(root, "tenant"), "last_hook")));
    ck_assert(json_is_null(json_object_get(json_object_get(root, "tenant"), "last_summary")));
    json_decref(root);

    struct table t = parse_table("show tenant Cust1");
    ck_assert_uint_eq(t.nrows, 1);
    ck_assert_str_eq(field(&t, 0, "last_hook"), "cycle_completed Cust1: exit 0");
    ck_assert_str_eq(field(&t, 0, "lock_owner"), "-");
    ck_assert_str_eq(field(&t, 0, "last_summary"), "10/3/1");
    free_table(&t);

    expect_error("show tenant Nobody\n", 19, "unknown tenant Nobody");
    expect_error("show tenant bad-name\n", 21, "not a tenant name");
    expect_error("show tenant\n", 12, "usage: show tenant CTX [json]");
}
END_TEST

static int has_line(const char *text, const char *line)
{
    size_t len = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += len)
        if ((p == text || p[-1] == '\n') && p[len] == '\n')
            return 1;
    return 0;
}

static int has_prefix_line(const char *text, const char *prefix)
{
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
        if (p == text || p[-1] == '\n')
            return 1;
    return 0;
}

/* Whether " name " (name of len bytes) is in the space-separated list declared. */
static int is_declared(const char *declared, const char *name, size_t len)
{
    char word[160];
    snprintf(word, sizeof(word), " %.*s ", (int)len, name);
    return strstr(declared, word) != NULL;
}

START_TEST(test_metrics)
{
    char *m = run_ok("metrics");
    const char *expected[] = {
        "# TYPE somirror_calls_total counter",
        "somirror_calls_total{operation=\"RowData\",result=\"ok\"} 2",
        "somirror_calls_total{operation=\"RowData\",result=\"fault\"} 1",
        "somirror_calls_total{operation=\"Authenticate\",result=\"ok\"} 1",
        "somirror_calls_total{operation=\"Wipe\",result=\"ok\"} 0",
        "# TYPE somirror_rows_total counter",
        "somirror_rows_total{operation=\"inserted\"} 100",
        "somirror_rows_total{operation=\"updated\"} 3",
        "somirror_rows_total{operation=\"deleted\"} 2",
        "somirror_rows_total{operation=\"skipped\"} 2",
        "somirror_received_bytes_total 1570",
        "# TYPE somirror_call_duration_seconds histogram",
        "somirror_call_duration_seconds_bucket{operation=\"RowData\",le=\"0.001\"} 0",
        "somirror_call_duration_seconds_bucket{operation=\"RowData\",le=\"0.005\"} 1",
        "somirror_call_duration_seconds_bucket{operation=\"RowData\",le=\"0.25\"} 2",
        "somirror_call_duration_seconds_bucket{operation=\"RowData\",le=\"10\"} 2",
        "somirror_call_duration_seconds_bucket{operation=\"RowData\",le=\"+Inf\"} 3",
        "somirror_call_duration_seconds_sum{operation=\"RowData\"} 30.202000",
        "somirror_call_duration_seconds_count{operation=\"RowData\"} 3",
        "somirror_call_duration_seconds_bucket{operation=\"Authenticate\",le=\"0.001\"} 1",
        "# TYPE somirror_tenants gauge",
        "somirror_tenants{state=\"idle\"} 1",
        "somirror_tenants{state=\"paused\"} 1",
        "somirror_tenants{state=\"error\"} 1",
        "somirror_tenants{state=\"new\"} 0",
        "# TYPE somirror_connections gauge",
        "somirror_connections 7",
        "# TYPE somirror_worker_restarts_total counter",
        "somirror_worker_restarts_total 3",
        "# TYPE somirror_reloads_total counter",
        "somirror_reloads_total{result=\"ok\"} 1",
        "somirror_reloads_total{result=\"failed\"} 4",
        "# TYPE somirror_tenant_last_cycle_age_seconds gauge",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        ck_assert_msg(has_line(m, expected[i]), "missing line: %s", expected[i]);
    ck_assert(has_prefix_line(m, "somirror_tenant_last_cycle_age_seconds{tenant=\"Cust1\"} 4"));
    ck_assert(!has_prefix_line(m, "somirror_tenant_last_cycle_age_seconds{tenant=\"Cust2\"}"));

    /* Every sample belongs to a family declared with # TYPE before it. */
    char *copy = strdup(m), *save = NULL, declared[4096] = " ";
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (sscanf(l, "# TYPE %127s", name) == 1) {
            strcat(declared, name);
            strcat(declared, " ");
            continue;
        }
        if (l[0] == '#')
            continue;
        size_t len = strcspn(l, "{ ");
        int ok = is_declared(declared, l, len);
        const char *suffixes[] = { "_bucket", "_sum", "_count" };
        for (size_t i = 0; i < 3; i++) {
            size_t slen = strlen(suffixes[i]);
            if (len > slen && strncmp(l + len - slen, suffixes[i], slen) == 0)
                ok |= is_declared(declared, l, len - slen);
        }
        ck_assert_msg(ok, "sample without # TYPE: %s", l);
        ck_assert_msg(strchr(l, ' ') && strtod(strrchr(l, ' ') + 1, NULL) >= 0, "bad sample: %s", l);
    }
    free(copy);
    free(m);
}
END_TEST

static json_t *load_state_file(void)
{
    json_error_t jerr;
    json_t *state = json_load_file(state_path, 0, &jerr);
    ck_assert_msg(state != NULL, "state file: %s", jerr.text);
    return state;
}

START_TEST(test_pause_resume_statefile)
{
    char *a = run_ok("pause Cust3");
    ck_assert_str_eq(a, "ok: paused Cust3\n");
    free(a);
    free(run_ok("pause NewOne"));             /* not seen yet: created, paused */
    json_t *state = load_state_file();
    ck_assert(json_is_false(json_object_get(state, "paused_all")));
    json_t *paused = json_object_get(state, "paused");
    ck_assert_int_eq(json_array_size(paused), 3);
    ck_assert_str_eq(json_string_value(json_array_get(paused, 0)), "Cust2");
    ck_assert_str_eq(json_string_value(json_array_get(paused, 1)), "Cust3");
    ck_assert_str_eq(json_string_value(json_array_get(paused, 2)), "NewOne");
    json_decref(state);

    free(run_ok("resume Cust2"));
    free(run_ok("pause all"));
    state = load_state_file();
    ck_assert(json_is_true(json_object_get(state, "paused_all")));
    ck_assert_int_eq(json_array_size(json_object_get(state, "paused")), 2);
    json_decref(state);
    a = run_ok("resume Cust3");
    ck_assert_ptr_nonnull(strstr(a, "until resume all"));
    free(a);
    free(run_ok("pause Cust3"));

    /* A fresh registry (a restart) gets the same pauses back. */
    char err[128];
    struct registry *fresh = reg_create(8, 1, err, sizeof(err));
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), 0);
    ck_assert_int_eq(reg_global_paused(fresh), 1);
    uint32_t idx;
    ck_assert_int_eq(reg_tenant_find(fresh, "Cust3", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_tenant_pause_flag(fresh, idx), 1);
    ck_assert_int_eq(reg_tenant_find(fresh, "NewOne", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_tenant_pause_flag(fresh, idx), 1);
    ck_assert_int_eq(reg_tenant_find(fresh, "Cust2", 0, &idx, NULL), -1);
    reg_destroy(fresh);

    free(run_ok("resume all"));
    state = load_state_file();
    ck_assert(json_is_false(json_object_get(state, "paused_all")));
    ck_assert_int_eq(json_array_size(json_object_get(state, "paused")), 0);
    json_decref(state);
    ck_assert_int_eq(reg_global_paused(reg), 0);
    ck_assert_int_eq(reg_tenant_find(reg, "Cust3", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_is_paused(reg, idx), 0);

    expect_error("resume Nobody", 13, "unknown tenant Nobody");
    expect_error("pause -x", 8, "not a tenant name");
    expect_error("pause", 5, "missing arguments; usage: pause CTX|all");
    expect_error("pause a b", 9, "too many arguments");

    /* The pause holds even when the file cannot be written; the answer says so. */
    ctx.state_file = "/nonexistent-dir/somirrord.state";
    expect_error("pause Cust1", 11, "state file was not written");
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_is_paused(reg, idx), 1);
    ctx.state_file = NULL;
    free(run_ok("resume Cust1"));
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

START_TEST(test_statefile_restore_errors)
{
    char err[128];
    struct registry *fresh = reg_create(8, 1, err, sizeof(err));
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), 0);   /* no file: nothing paused */
    ck_assert_uint_eq(reg_tenant_count(fresh), 0);
    write_file(state_path, "{\"paused\": [\"Good1\", \"bad name\", 7]}");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), 0);
    ck_assert_uint_eq(reg_tenant_count(fresh), 1);
    ck_assert_int_eq(reg_global_paused(fresh), 0);
    write_file(state_path, "{\"paused\": [");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "operator state is not JSON"));
    write_file(state_path, "{\"paused_all\": \"yes\"}");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), -1);
    write_file(state_path, "[]");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), -1);
    write_file(state_path, "{\"reset\": {\"Cust1\": 1}}");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), -1);
    write_file(state_path, "{\"resync\": [\"Cust1\"]}");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "operator state: expected"));
    /* Names that are not table names, or a list not a string, resync every table: more than
     * asked, never less. */
    write_file(state_path, "{\"resync\": {\"Odd1\": \"contact,1bad\", \"Odd2\": 5, \"Odd3\": \"\", "
                           "\"bad name\": \"*\"}, \"reset\": [\"bad name\"]}");
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), 0);
    struct tenant_requests r;
    uint32_t idx;
    ck_assert_int_eq(reg_tenant_find(fresh, "Odd1", 0, &idx, NULL), 0);
    reg_tenant_take_requests(fresh, idx, &r);
    ck_assert_str_eq(r.resync_tables, "*");
    for (const char *const *odd = (const char *const[]){"Odd2", "Odd3", NULL}; *odd; odd++) {
        ck_assert_int_eq(reg_tenant_find(fresh, *odd, 0, &idx, NULL), 0);
        reg_tenant_take_requests(fresh, idx, &r);
        ck_assert_str_eq(r.resync_tables, "*");
    }
    ck_assert_uint_eq(reg_tenant_count(fresh), 4);   /* Good1, Odd1, Odd2, Odd3 */
    reg_destroy(fresh);
}
END_TEST

START_TEST(test_resync_reset)
{
    uint32_t idx;
    struct tenant_requests r;
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 0, &idx, NULL), 0);
    char *a = run_ok("resync Cust1 Contact");
    ck_assert_ptr_nonnull(strstr(a, "ok: resync of Cust1 (Contact)"));
    ck_assert_ptr_nonnull(strstr(a, "a table its mirror does not have is ignored then"));   /* a typo */
    free(a);
    free(run_ok("resync Cust1 person"));
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.resync, 1);
    ck_assert_str_eq(r.resync_tables, "Contact,person");
    ck_assert_int_eq(r.reset, 0);
    free(run_ok("resync Cust1 all"));
    free(run_ok("reset Cust1"));
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_str_eq(r.resync_tables, "*");
    ck_assert_int_eq(r.reset, 1);
    expect_error("resync Cust1 1bad", 17, "not a table name");
    expect_error("resync Cust1", 12, "usage: resync CTX TABLE|all");
    expect_error("reset Cust1 now", 15, "too many arguments");
    reg_tenant_requests_done(reg, idx);
    /* all is every tenant for pause and resume only: reset all and resync all TABLE are
     * refused, not answered "ok: reset of all" for a new tenant named all */
    uint32_t count = reg_tenant_count(reg);
    expect_error("reset all", 9, "reset takes one tenant");
    expect_error("resync all contact", 18, "resync takes one tenant");
    expect_error("RESET all", 9, "reset takes one tenant");
    ck_assert_int_ne(reg_tenant_find(reg, "all", 0, &idx, NULL), 0);
    ck_assert_uint_eq(reg_tenant_count(reg), count);
    /* ... but a tenant that called and is named all can be named */
    ck_assert_int_eq(reg_tenant_find(reg, "all", 1, &idx, NULL), 0);
    free(run_ok("reset all"));
    free(run_ok("resync all contact"));
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 1);
    reg_tenant_requests_done(reg, idx);
}
END_TEST

/* Resyncs and resets not yet carried out are in the state file, so that a restart keeps them
 * (a tenant restored from a backup must not go on from its stale mirror), also for tenants not
 * seen since the start; once a worker has carried them out, the file drops them. */
START_TEST(test_requests_statefile)
{
    free(run_ok("reset Cust2"));
    free(run_ok("resync Cust1 Contact"));
    free(run_ok("resync Cust1 person"));
    free(run_ok("resync Unseen1 all"));
    free(run_ok("reset Unseen2"));
    json_t *state = load_state_file();
    json_t *reset = json_object_get(state, "reset"), *resync = json_object_get(state, "resync");
    ck_assert_int_eq(json_array_size(reset), 2);
    ck_assert_str_eq(json_string_value(json_array_get(reset, 0)), "Cust2");
    ck_assert_str_eq(json_string_value(json_array_get(reset, 1)), "Unseen2");
    ck_assert_int_eq(json_object_size(resync), 2);
    ck_assert_str_eq(json_string_value(json_object_get(resync, "Cust1")), "Contact,person");
    ck_assert_str_eq(json_string_value(json_object_get(resync, "Unseen1")), "*");
    json_decref(state);

    /* A restart: the same requests, pending. */
    char err[256];
    struct registry *fresh = reg_create(8, 1, err, sizeof(err));
    ck_assert_int_eq(statefile_restore(state_path, fresh, err, sizeof(err)), 0);
    struct tenant_requests r;
    uint32_t idx;
    ck_assert_int_eq(reg_tenant_find(fresh, "Cust1", 0, &idx, NULL), 0);
    reg_tenant_take_requests(fresh, idx, &r);
    ck_assert_int_eq(r.reset, 0);
    ck_assert_str_eq(r.resync_tables, "Contact,person");
    ck_assert_int_eq(reg_tenant_find(fresh, "Unseen2", 0, &idx, NULL), 0);
    reg_tenant_take_requests(fresh, idx, &r);
    ck_assert_int_eq(r.reset, 1);
    ck_assert_int_eq(r.resync, 0);
    reg_destroy(fresh);

    /* Nothing carried out: the file is left as it is. */
    struct stat before;
    ck_assert_int_eq(stat(state_path, &before), 0);
    ck_assert_int_eq(unlink(state_path), 0);
    ck_assert_int_eq(statefile_refresh(state_path, reg, err, sizeof(err)), 0);
    ck_assert_int_eq(access(state_path, F_OK), -1);
    /* Taken by a worker and done: the next refresh writes the file without them. */
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 0, &idx, NULL), 0);
    reg_tenant_take_requests(reg, idx, &r);
    reg_tenant_requests_done(reg, idx);
    ck_assert_int_eq(statefile_refresh(state_path, reg, err, sizeof(err)), 0);
    state = load_state_file();
    ck_assert_ptr_null(json_object_get(json_object_get(state, "resync"), "Cust1"));
    ck_assert_int_eq(json_object_size(json_object_get(state, "resync")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(state, "reset")), 2);
    json_decref(state);
    const char *rest[] = {"Cust2", "Unseen1", "Unseen2"};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(reg_tenant_find(reg, rest[i], 0, &idx, NULL), 0);
        reg_tenant_take_requests(reg, idx, &r);
        reg_tenant_requests_done(reg, idx);
    }
    ck_assert_int_eq(statefile_refresh(state_path, reg, err, sizeof(err)), 0);
    state = load_state_file();
    ck_assert_int_eq(json_array_size(json_object_get(state, "reset")), 0);
    ck_assert_int_eq(json_object_size(json_object_get(state, "resync")), 0);
    json_decref(state);

    /* The request holds even when the file cannot be written; the answer says so. */
    ctx.state_file = "/nonexistent-dir/somirrord.state";
    expect_error("reset Cust3", 11, "state file was not written");
    ck_assert_int_eq(reg_tenant_find(reg, "Cust3", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_tenant_pending(reg, idx, &r), 1);
    /* A write that failed (the directory missing, a full disk) is made again by the next
     * refresh once it can be: the pause and the request are in the file then. */
    char later[600];
    snprintf(later, sizeof(later), "%s/later", state_dir);
    char later_file[700];
    snprintf(later_file, sizeof(later_file), "%s/somirrord.state", later);
    ctx.state_file = later_file;
    expect_error("pause Cust2", 11, "state file was not written");
    ck_assert_int_eq(statefile_behind(), 1);
    ck_assert_int_eq(statefile_refresh(later_file, reg, err, sizeof(err)), -1);
    ck_assert_int_eq(mkdir(later, 0700), 0);
    ck_assert_int_eq(statefile_refresh(later_file, reg, err, sizeof(err)), 0);
    ck_assert_int_eq(statefile_behind(), 0);
    json_error_t jerr;
    state = json_load_file(later_file, 0, &jerr);
    ck_assert_ptr_nonnull(state);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(state, "paused"), 0)), "Cust2");
    ck_assert_int_eq(json_array_size(json_object_get(state, "reset")), 1);   /* Cust3's, above */
    json_decref(state);
    free(run_ok("resume Cust2"));
    unlink(later_file);
    rmdir(later);
    /* No state file at all: the answers say that a restart forgets. */
    ctx.state_file = NULL;
    const char *unsaved[] = {"reset Cust3", "resync Cust3 all", "resync Cust3 person", "pause Cust3"};
    for (size_t i = 0; i < 4; i++) {
        char *a = run_ok(unsaved[i]);
        ck_assert_msg(strstr(a, "(no state_file is set: this lasts until the next restart)\n"), "%s", a);
        free(a);
    }
    free(run_ok("resume Cust3"));
}
END_TEST

/* Named-table resyncs of tenants that never call again can take every shared list: the
 * answer says so, rather than blame the tenant asked for, and resync all still works. */
START_TEST(test_resync_lists_all_taken)
{
    char err[256], line[160];
    struct registry *many = reg_create(REG_RESYNC_SLOTS + 1, 4, err, sizeof(err));
    ck_assert_ptr_nonnull(many);
    struct registry *fixture = ctx.reg;
    ctx.reg = many;
    cfg.tenants_max = (int)reg_max_tenants(many);
    for (int i = 0; i <= REG_RESYNC_SLOTS; i++) {
        uint32_t idx;
        snprintf(line, sizeof(line), "Gone%d", i);
        ck_assert_int_eq(reg_tenant_find(many, line, 1, &idx, NULL), 0);
    }
    for (int i = 0; i < REG_RESYNC_SLOTS; i++) {
        snprintf(line, sizeof(line), "resync Gone%d item", i);
        free(run_ok(line));
    }
    snprintf(line, sizeof(line), "resync Gone%d item", REG_RESYNC_SLOTS);
    expect_error(line, strlen(line), "lists of tables waiting for a resync are all taken");
    snprintf(line, sizeof(line), "resync Gone%d all", REG_RESYNC_SLOTS);
    free(run_ok(line));
    char long_name[101];   /* with a digit, 102 bytes and a comma: 4 more fit Gone0's 512 */
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof(line), "resync Gone0 %s%d", long_name, i);
        free(run_ok(line));
    }
    int full = 0;
    for (int i = 4; i < 8 && !full; i++) {
        snprintf(line, sizeof(line), "resync Gone0 %s%d", long_name, i);
        int rc;
        char *answer = run_rc(line, &rc);
        full = rc != 0 && strstr(answer, "too many tables already wait for a resync of Gone0") != NULL;
        free(answer);
    }
    ck_assert_msg(full, "Gone0's list never filled");
    ctx.reg = fixture;
    cfg.tenants_max = (int)reg_max_tenants(fixture);
    reg_destroy(many);
}
END_TEST

START_TEST(test_reload)
{
    char *a = run_ok("reload");
    ck_assert_str_eq(a, "ok: reloaded\n");
    free(a);
    ck_assert_int_eq(reload_calls, 1);
    reload_result = -1;
    expect_error("reload", 6, "reload failed: a new worker exited with status 1 before it served: disk");
    ck_assert_int_eq(reload_calls, 2);
    ctx.reload = NULL;
    expect_error("reload", 6, "not available");
}
END_TEST

START_TEST(test_malformed)
{
    char *line = malloc(CTL_LINE_MAX + 2);
    memset(line, 'a', CTL_LINE_MAX + 1);
    line[CTL_LINE_MAX + 1] = '\0';
    expect_error(line, CTL_LINE_MAX + 1, "too long");
    memcpy(line, "help", 4);
    memset(line + 4, ' ', CTL_LINE_MAX - 5);
    line[CTL_LINE_MAX - 1] = '\n';
    struct buf out = BUF_INIT;
    ck_assert_int_eq(ctl_execute(&ctx, line, CTL_LINE_MAX, &out), 0);   /* exactly at the limit */
    buf_free(&out);
    free(line);

    expect_error("show info\0json\n", 15, "NUL byte");
    expect_error("show\x01info", 9, "control character");
    expect_error("", 0, "empty command");
    expect_error("   \n", 4, "empty command");
    expect_error("frobnicate\n", 11, "unknown command \"frobnicate\"");
    expect_error("show\n", 5, "show what?");
    expect_error("show things\n", 12, "show what?");
    expect_error("help me\n", 8, "too many arguments");
    expect_error("show tenants json json\n", 23, "too many arguments");
    expect_error("metrics json\n", 13, "too many arguments");
    expect_error("a b c d e f g h i\n", 18, "too many words");

    /* case-insensitive command words, CRLF, tabs between words */
    json_t *info = run_json("SHOW\tInfo JSON\r\n");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "pid")), 1234);
    json_decref(info);
    /* answers are appended to what the buffer holds */
    buf_init(&out);
    buf_puts(&out, "before\n");
    ck_assert_int_eq(ctl_execute(&ctx, "help\n", 5, &out), 0);
    ck_assert(strncmp(out.data, "before\ncommand\t", 15) == 0);
    buf_free(&out);
}
END_TEST

static Suite *commands_suite(void)
{
    Suite *s = suite_create("commands");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_show_info);
    tcase_add_test(tc, test_show_workers);
    tcase_add_test(tc, test_show_tenants);
    tcase_add_test(tc, test_show_tenant);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_pause_resume_statefile);
    tcase_add_test(tc, test_statefile_restore_errors);
    tcase_add_test(tc, test_requests_statefile);
    tcase_add_test(tc, test_resync_reset);
    tcase_add_test(tc, test_resync_lists_all_taken);
    tcase_add_test(tc, test_reload);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(commands_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
