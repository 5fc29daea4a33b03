/* hooks/hooks: operator extension points (config section hooks).
 *
 *  - hooks.table_sql: a directory of SQL files run on the tenant's mirror, in the store's own
 *    dialect, after a table is Created, Recreated or Altered by TableSchema and after it is
 *    wiped (so indexes exist before a bulk load): first `<table>.sql` (the exact name, else
 *    the one name that matches ignoring case), then the file literally named `*.sql`, run for
 *    every table.
 *    In both, every `{table}` is replaced by the table's quoted name ("contact" for sqlite and
 *    postgresql, [contact] or [schema].[contact] for mssql). Scripts run after the call's
 *    commit, synchronously in the worker under the tenant lock, and must be idempotent (a wipe
 *    runs them again: CREATE INDEX IF NOT EXISTS). A failure is logged and recorded as the
 *    tenant's last_hook; it never fails the sender's call.
 *  - hooks.cycle_completed: a program run after ReplicationCompleted, with SOMIRROR_TENANT,
 *    SOMIRROR_DATABASE and SOMIRROR_SUMMARY ({"tables":[{"name","inserted","updated",
 *    "deleted"}...],"inserted":N,"updated":N,"deleted":N}) added to the environment. At most
 *    one runs per tenant: while one still runs the next is skipped (logged and recorded).
 *  - hooks.table_changed: a program run once per changed table (Created, Altered, Recreated,
 *    Dropped by TableSchema; Wiped by Wipe) with SOMIRROR_TENANT, SOMIRROR_DATABASE,
 *    SOMIRROR_TABLE and SOMIRROR_CHANGE; the tables of one call run one after the other.
 *
 * Programs run without a shell (execve of the configured argv; argv[0] is a path, not looked
 * up in PATH), detached from the worker by a double fork: a supervisor process, no child of
 * the worker, starts the program in a session and process group of its own with stdin
 * /dev/null, logs its stdout (info) and stderr (warn) lines prefixed with the hook's name (the
 * log line names the tenant), and at hooks.timeout (or at a SIGINT, SIGQUIT or SIGTERM of its
 * own) sends SIGTERM to the group, then SIGKILL after a grace period. The worker never waits
 * for a program.
 *
 * Shared memory: the supervisor records each run's result in the tenant's last_hook with
 * reg_tenant_hook_ran_unlocked (it does not hold the tenant lock) and holds the tenant's hook
 * word (reg_tenant_hook_claim/release) while a cycle_completed program runs. The worker
 * records table_sql results with the same function while it holds the lock. */
#ifndef SOMIRROR_HOOKS_HOOKS_H
#define SOMIRROR_HOOKS_HOOKS_H
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proto/types.h"
#include "shm/registry.h"
#include "store/store.h"

struct hooks;   /* one per worker */

/* Never NULL; a config without hooks gives hooks that do nothing. cfg and reg (may be NULL:
 * nothing is recorded) must outlive the hooks. */
struct hooks *hooks_new(const struct config *cfg, struct registry *reg);
void hooks_free(struct hooks *h);

/* After a committed TableSchema, with the call's answers: table_sql for Created, Recreated and
 * Altered tables, then table_changed for Created, Altered, Recreated and Dropped ones. */
void hooks_after_table_schema(struct hooks *h, struct store_tenant *t, const char *tenant,
                              uint32_t idx, const struct table_state *states, size_t n);
/* After a committed Wipe: table_sql, then table_changed (Wiped), for each wiped table. */
void hooks_after_wipe(struct hooks *h, struct store_tenant *t, const char *tenant, uint32_t idx,
                      const struct table_state *states, size_t n);
/* After ReplicationCompleted: cycle_completed with the request's summary. */
void hooks_after_cycle(struct hooks *h, const char *tenant, uint32_t idx,
                       const struct table_summary *summary, size_t n);

/* table_sql for one table, on its own (the two above run it for their tables with one listing
 * of the directory; tests call this). 0 when every script ran or there was none, -1 when one
 * failed (logged, and recorded as last_hook). */
int hooks_run_table_sql(struct hooks *h, struct store_tenant *t, uint32_t idx, const char *table);

/* ---- the runner (hooks/runner.c) ---- */

/* One run of the job's program: label names it in the log and in last_hook
 * ("cycle_completed", "table_changed contact Created"); env holds "NAME=value" strings added
 * to the worker's environment (replacing those of the same name), NULL-terminated. */
struct hook_cmd {
    const char *label;
    char *const *env;
};

struct hook_job {
    const char *name;          /* the hook: "cycle_completed", "table_changed" */
    const char *tenant;        /* named on the log lines */
    struct registry *reg;      /* where results go (last_hook, hook word); NULL: log only */
    uint32_t idx;              /* the tenant's registry index */
    char *const *argv;         /* the program and its arguments, NULL-terminated */
    const struct hook_cmd *cmds;   /* run one after the other */
    size_t ncmds;
    int timeout_ms;            /* per run; then SIGTERM to its process group */
    int kill_grace_ms;         /* after SIGTERM, then SIGKILL */
    int exclusive;             /* at most one exclusive job per tenant (the hook word) */
};

enum hook_start { HOOK_STARTED, HOOK_SKIPPED, HOOK_FAILED };

/* Starts the job in a detached supervisor (double fork) and returns at once. HOOK_SKIPPED: an
 * exclusive job of the tenant still runs (logged and recorded); HOOK_FAILED: fork failed
 * (logged). The job is copied with the process: it need not outlive the call. */
enum hook_start hooks_spawn(const struct hook_job *job);
/* What the supervisor does, in the calling process: claims the hook word (exclusive jobs),
 * runs each command to its end or time limit, records and logs each result. 0 when every run
 * exited 0; -1 otherwise (including skipped). */
int hooks_supervise(const struct hook_job *job);

#endif
