/* hooks/hooks: what runs when (see hooks.h): table_sql scripts on the tenant's mirror after a
 * TableSchema or Wipe, the table_changed and cycle_completed programs (started through
 * runner.c), their environment and the SOMIRROR_SUMMARY JSON (jansson).
 *
 * Runs in the worker, inside a call, with the tenant lock held. Shared memory: writes the
 * tenant's last_hook (and last_error for a failure) for table_sql results (lock held); the
 * programs' results are written by their supervisor (runner.c). */
#include "hooks/hooks.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "common/log.h"
#include "common/xalloc.h"

enum {
    KILL_GRACE_MS = 3000,           /* SIGTERM, then this long, then SIGKILL */
    SCRIPT_MAX_BYTES = 1 << 20,     /* a table_sql file larger than this is refused */
    SUMMARY_MAX_BYTES = 100000      /* SOMIRROR_SUMMARY longer than this keeps totals only */
};

#define ALL_TABLES_SCRIPT "*.sql"

struct hooks {
    const struct config *cfg;
    struct registry *reg;
    char **cycle_argv;              /* NULL-terminated copies of the configured argv, or NULL */
    char **changed_argv;
};

static char **argv_copy(const struct cfg_strings *s)
{
    if (s->n == 0)
        return NULL;
    char **argv = xcalloc(s->n + 1, sizeof(*argv));
    for (size_t i = 0; i < s->n; i++)
        argv[i] = s->items[i];
    return argv;
}

struct hooks *hooks_new(const struct config *cfg, struct registry *reg)
{
    struct hooks *h = xcalloc(1, sizeof(*h));
    h->cfg = cfg;
    h->reg = reg;
    h->cycle_argv = argv_copy(&cfg->hooks.cycle_completed);
    h->changed_argv = argv_copy(&cfg->hooks.table_changed);
    return h;
}

void hooks_free(struct hooks *h)
{
    if (!h)
        return;
    free(h->cycle_argv);
    free(h->changed_argv);
    free(h);
}

static char *env_entry(const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *s = xmalloc(len);
    snprintf(s, len, "%s=%s", name, value);
    return s;
}

static void env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

static int timeout_ms(const struct hooks *h)
{
    int s = h->cfg->hooks.timeout > 0 ? h->cfg->hooks.timeout : 60;
    return s > 86400 ? 86400 * 1000 : s * 1000;
}

/* ---- table_sql ---- */

/* One call's scripts: a failure is not hidden by a later success in last_hook, and the
 * directory is read at most once for all the call's tables (when the first table without a
 * file of its exact name looks for one that matches ignoring case). */
struct script_batch {
    int failed;
    int listed;
    int unreadable;    /* listed, but the directory could not be read */
    char **names;      /* the directory's entries, in readdir order */
    size_t nnames;
};

static void script_batch_free(struct script_batch *batch)
{
    for (size_t i = 0; i < batch->nnames; i++)
        free(batch->names[i]);
    free(batch->names);
}

static void script_record(struct hooks *h, uint32_t idx, struct script_batch *batch, int failed,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void script_record(struct hooks *h, uint32_t idx, struct script_batch *batch, int failed,
                          const char *fmt, ...)
{
    if (!h->reg || (batch->failed && !failed))
        return;
    batch->failed |= failed;
    char text[REG_HOOK_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    reg_tenant_hook_ran(h->reg, idx, text, failed, (int64_t)time(NULL));
}

/* Reads the directory's entries into batch, the first time. One that cannot be read is a
 * failure, logged and recorded once (batch->unreadable): a directory the workers' user may not
 * read, or that is gone, would otherwise run no script without a word. */
static void list_scripts(struct hooks *h, uint32_t idx, const char *dir, struct script_batch *batch)
{
    if (batch->listed)
        return;
    batch->listed = 1;
    DIR *d = opendir(dir);
    if (!d) {
        const char *why = strerror(errno);
        batch->unreadable = 1;
        log_error("hook table_sql: cannot read the directory %s: %s", dir, why);
        script_record(h, idx, batch, 1, "table_sql: error: cannot read the directory %s: %s", dir, why);
        return;
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (batch->nnames == cap) {
            cap = cap ? 2 * cap : 16;
            batch->names = xrealloc(batch->names, cap * sizeof(*batch->names));
        }
        batch->names[batch->nnames++] = xstrdup(e->d_name);
    }
    closedir(d);
}

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The table's own script: <dir>/<table>.sql, else the first entry of the directory (in
 * readdir order) whose name matches ignoring case and is a file. Allocated path, or NULL. */
static char *table_script(struct hooks *h, uint32_t idx, const char *dir, const char *table,
                          struct script_batch *batch)
{
    size_t len = strlen(dir) + strlen(table) + 6;
    char *path = xmalloc(len);
    snprintf(path, len, "%s/%s.sql", dir, table);
    if (is_regular(path))
        return path;
    list_scripts(h, idx, dir, batch);
    char want[SM_IDENT_MAX + 8];
    snprintf(want, sizeof(want), "%s.sql", table);
    for (size_t i = 0; i < batch->nnames; i++)
        if (strcasecmp(batch->names[i], want) == 0) {
            snprintf(path, len, "%s/%s", dir, batch->names[i]);
            if (is_regular(path))
                return path;
        }
    free(path);
    return NULL;
}

/* The whole file as a string, or NULL with err. */
static char *read_script(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *text = xmalloc(SCRIPT_MAX_BYTES + 1);
    size_t n = fread(text, 1, SCRIPT_MAX_BYTES + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > SCRIPT_MAX_BYTES) {
        snprintf(err, errlen, failed ? "cannot read" : "larger than %d bytes", SCRIPT_MAX_BYTES);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Runs one script for table; 0 or -1 (logged and recorded). */
static int run_script(struct hooks *h, struct store_tenant *t, uint32_t idx, const char *table,
                      const char *path, struct script_batch *batch)
{
    const char *file = base_name(path);
    /* "contact.sql", or "*.sql (contact)" for the every-table script */
    char what[SM_IDENT_MAX + 32];
    if (strcmp(file, ALL_TABLES_SCRIPT) == 0)
        snprintf(what, sizeof(what), "%s (%s)", ALL_TABLES_SCRIPT, table);
    else
        snprintf(what, sizeof(what), "%s", file);
    char err[512] = "";
    char *sql = read_script(path, err, sizeof(err));
    if (!sql) {
        log_error("hook table_sql %s: %s", path, err);
        script_record(h, idx, batch, 1, "table_sql %s: error: %s", what, err);
        return -1;
    }
    int rc = store_run_table_script(t, table, sql, err, sizeof(err));
    free(sql);
    if (rc != 0) {
        log_error("hook table_sql %s for table %s: %s", path, table, err);
        script_record(h, idx, batch, 1, "table_sql %s: error: %s", what, err);
        return -1;
    }
    log_info("hook table_sql %s for table %s: ok", path, table);
    script_record(h, idx, batch, 0, "table_sql %s: ok", what);
    return 0;
}

static int table_sql(struct hooks *h, struct store_tenant *t, uint32_t idx, const char *table,
                     struct script_batch *batch)
{
    const char *dir = h->cfg->hooks.table_sql;
    if (!dir || !*dir || !t)
        return 0;
    char *own = table_script(h, idx, dir, table, batch);
    int rc = batch->unreadable ? -1 : 0;
    if (own) {
        rc |= run_script(h, t, idx, table, own, batch);
        free(own);
    }
    size_t len = strlen(dir) + sizeof(ALL_TABLES_SCRIPT) + 1;
    char *all = xmalloc(len);
    snprintf(all, len, "%s/%s", dir, ALL_TABLES_SCRIPT);
    if (is_regular(all))
        rc |= run_script(h, t, idx, table, all, batch);
    free(all);
    return rc ? -1 : 0;
}

int hooks_run_table_sql(struct hooks *h, struct store_tenant *t, uint32_t idx, const char *table)
{
    struct script_batch batch = {0};
    int rc = table_sql(h, t, idx, table, &batch);
    script_batch_free(&batch);
    return rc;
}

/* ---- table_changed ---- */

struct table_event {
    const char *table;
    const char *change;
};

static void spawn_table_changed(struct hooks *h, const char *tenant, uint32_t idx,
                                const struct table_event *events, size_t n)
{
    if (!h->changed_argv || n == 0)
        return;
    char *dbname = cfg_database_name(h->cfg, tenant);
    struct hook_cmd *cmds = xcalloc(n, sizeof(*cmds));
    char **labels = xcalloc(n, sizeof(*labels));
    char ***envs = xcalloc(n, sizeof(*envs));
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(events[i].table) + strlen(events[i].change) + 32;
        labels[i] = xmalloc(len);
        snprintf(labels[i], len, "table_changed %s %s", events[i].table, events[i].change);
        envs[i] = xcalloc(5, sizeof(char *));
        envs[i][0] = env_entry("SOMIRROR_TENANT", tenant);
        envs[i][1] = env_entry("SOMIRROR_DATABASE", dbname ? dbname : "");
        envs[i][2] = env_entry("SOMIRROR_TABLE", events[i].table);
        envs[i][3] = env_entry("SOMIRROR_CHANGE", events[i].change);
        cmds[i] = (struct hook_cmd){.label = labels[i], .env = envs[i]};
    }
    struct hook_job job = {
        .name = "table_changed", .tenant = tenant, .reg = h->reg, .idx = idx,
        .argv = h->changed_argv, .cmds = cmds, .ncmds = n,
        .timeout_ms = timeout_ms(h), .kill_grace_ms = KILL_GRACE_MS, .exclusive = 0,
    };
    hooks_spawn(&job);
    for (size_t i = 0; i < n; i++) {
        free(labels[i]);
        env_free(envs[i]);
    }
    free(labels);
    free(envs);
    free(cmds);
    free(dbname);
}

/* The table_sql scripts and table_changed commands after a call that changed tables: a
 * TableSchema call (wiped 0: every created, recreated, altered or dropped table is an event,
 * and created, recreated or altered ones get their scripts: an Altered table may have been
 * rebuilt, without the indexes a script made) or a Wipe (wiped 1: every named table is a
 * "Wiped" event and gets its scripts). */
static void after_tables(struct hooks *h, struct store_tenant *t, const char *tenant,
                         uint32_t idx, const struct table_state *states, size_t n, int wiped)
{
    if (!h)
        return;
    struct script_batch batch = {0};
    struct table_event *events = xcalloc(n ? n : 1, sizeof(*events));
    size_t nevents = 0;
    for (size_t i = 0; i < n; i++) {
        enum table_change c = states[i].change;
        if (!states[i].name || (!wiped && (c == CHANGE_UNCHANGED || c == CHANGE_REJECTED)))
            continue;
        if (wiped || c == CHANGE_CREATED || c == CHANGE_RECREATED || c == CHANGE_ALTERED)
            table_sql(h, t, idx, states[i].name, &batch);
        const char *change = wiped ? "Wiped" : table_change_name(c);
        events[nevents++] = (struct table_event){states[i].name, change};
    }
    script_batch_free(&batch);
    spawn_table_changed(h, tenant, idx, events, nevents);
    free(events);
}

void hooks_after_table_schema(struct hooks *h, struct store_tenant *t, const char *tenant,
                              uint32_t idx, const struct table_state *states, size_t n)
{
    after_tables(h, t, tenant, idx, states, n, 0);
}

void hooks_after_wipe(struct hooks *h, struct store_tenant *t, const char *tenant, uint32_t idx,
                      const struct table_state *states, size_t n)
{
    after_tables(h, t, tenant, idx, states, n, 1);
}

/* ---- cycle_completed ---- */

/* total + count, held at INT64_MAX: a sender's counts go up to it each (protocol counts are
 * int64), so a plain sum of two could overflow, and JSON integers stop there (jansson). */
static int64_t add_count(int64_t total, int64_t count)
{
    return count > INT64_MAX - total ? INT64_MAX : total + count;
}

/* SOMIRROR_SUMMARY: {"tables":[{"name":..,"inserted":..,"updated":..,"deleted":..},...],
 * "inserted":N,"updated":N,"deleted":N}; past SUMMARY_MAX_BYTES the table list is left out
 * and "truncated":true added. */
static char *summary_json(const struct table_summary *summary, size_t n)
{
    json_t *root = json_object();
    json_t *tables = json_array();
    int64_t ins = 0, upd = 0, del = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(summary[i].name ? summary[i].name : ""));
        json_object_set_new(o, "inserted", json_integer(summary[i].inserted));
        json_object_set_new(o, "updated", json_integer(summary[i].updated));
        json_object_set_new(o, "deleted", json_integer(summary[i].deleted));
        json_array_append_new(tables, o);
        ins = add_count(ins, summary[i].inserted);
        upd = add_count(upd, summary[i].updated);
        del = add_count(del, summary[i].deleted);
    }
    json_object_set_new(root, "tables", tables);
    json_object_set_new(root, "inserted", json_integer(ins));
    json_object_set_new(root, "updated", json_integer(upd));
    json_object_set_new(root, "deleted", json_integer(del));
    char *text = json_dumps(root, JSON_COMPACT);
    if (text && strlen(text) > SUMMARY_MAX_BYTES) {
        free(text);
        json_object_set_new(root, "tables", json_array());
        json_object_set_new(root, "truncated", json_true());
        text = json_dumps(root, JSON_COMPACT);
    }
    json_decref(root);
    char *out = xstrdup(text ? text : "{}");
    free(text);
    return out;
}

void hooks_after_cycle(struct hooks *h, const char *tenant, uint32_t idx,
                       const struct table_summary *summary, size_t n)
{
    if (!h || !h->cycle_argv)
        return;
    char *dbname = cfg_database_name(h->cfg, tenant);
    char *json = summary_json(summary, n);
    char *env[4] = {
        env_entry("SOMIRROR_TENANT", tenant),
        env_entry("SOMIRROR_DATABASE", dbname ? dbname : ""),
        env_entry("SOMIRROR_SUMMARY", json),
        NULL,
    };
    struct hook_cmd cmd = {.label = "cycle_completed", .env = env};
    struct hook_job job = {
        .name = "cycle_completed", .tenant = tenant, .reg = h->reg, .idx = idx,
        .argv = h->cycle_argv, .cmds = &cmd, .ncmds = 1,
        .timeout_ms = timeout_ms(h), .kill_grace_ms = KILL_GRACE_MS, .exclusive = 1,
    };
    hooks_spawn(&job);
    for (int i = 0; i < 3; i++)
        free(env[i]);
    free(json);
    free(dbname);
}
