/* shm/registry: the shared-memory registry that the master and every worker see.
 *
 * One anonymous shared mapping created by the master before the first fork: a header (magic,
 * layout version, sizes, generation, global flags), the tenant table (tenants.max entries) and
 * one slot per worker. No pointers inside; all offsets and fixed arrays.
 *
 * Who writes what:
 *  - a worker writes only its own worker slot;
 *  - a tenant entry's data is written only by the worker holding that tenant's lock;
 *  - allocating a new tenant entry takes the short allocation lock (anyone);
 *  - a hook supervisor (hooks/), which does not hold the lock, writes last_hook (and, for a
 *    failed run, last_error) only, through reg_tenant_hook_ran_unlocked, and the tenant's hook
 *    word (reg_tenant_hook_claim/release);
 *  - the master never writes tenant data: operator requests (pause, resume, resync, reset)
 *    are atomic request words set by the master and carried out by the worker that next holds
 *    the tenant's lock; the master clears the lock word of a worker it reaps (and, standing in
 *    for that dead owner, records the interrupted call in the entry).
 * Readers never lock: every writer bumps a change counter before and after a write (odd while
 * writing), and a reader copies the entry and retries while the counter was odd or moved. A
 * tenant-data writer that dies mid-write is seen dead by its pid, and its counter evened, by the
 * next reader or writer. */
#ifndef SOMIRROR_SHM_REGISTRY_H
#define SOMIRROR_SHM_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/types.h"

enum tenant_state { TENANT_NEW, TENANT_IN_CYCLE, TENANT_IDLE, TENANT_PAUSED, TENANT_ERROR };
/* STARTING from the claim until the worker serves (or fails, see reg_worker_start_failed). */
enum worker_state { WORKER_EMPTY, WORKER_STARTING, WORKER_IDLE, WORKER_BUSY, WORKER_STOPPING };

#define REG_OPERATION_MAX 24
#define REG_ERROR_MAX 256
#define REG_START_ERROR_MAX 128   /* a worker's start error (the log has it whole) */
#define REG_RESYNC_MAX 512      /* comma-separated table names, or "*" for all */
#define REG_HOOK_MAX 256
/* last_hook and last_error as kept in shared memory: longer texts are cut, so that a registry
 * of 100,000 tenants stays under 64 MiB. */
#define REG_HOOK_STORED 200
#define REG_ERROR_STORED 248
/* Resync lists pending at once (tenants with a named-table resync not yet carried out). */
#define REG_RESYNC_SLOTS 256

/* The Summary of a ReplicationCompleted, summed over its tables: the sender's own counts of
 * the cycle. Kept up to UINT32_MAX each. */
struct cycle_summary {
    uint64_t inserted, updated, deleted;
};

/* A consistent copy of one tenant entry. */
struct tenant_view {
    char tenant[SM_TENANT_MAX + 1];
    enum tenant_state state;    /* as shown: paused when a pause is in force */
    int paused;
    int64_t cycle_started;      /* Unix seconds, 0 = never */
    int64_t last_completed;
    struct cycle_summary last_summary;  /* of the last ReplicationCompleted */
    int64_t last_call;
    char last_operation[REG_OPERATION_MAX];
    uint64_t calls;
    uint64_t rows_inserted, rows_updated, rows_deleted;
    uint64_t bytes;
    char last_error[REG_ERROR_MAX];    /* "" = none */
    int64_t last_error_at;
    char last_hook[REG_HOOK_MAX];      /* "" = none; "<hook> <target>: exit 0 at <time>" */
    int64_t last_hook_at;
    uint32_t lock_owner;               /* pid holding the lock, 0 = free */
};

/* What a worker is carrying out for a tenant's pending operator requests. */
struct tenant_requests {
    int reset;
    int resync;                        /* resync_tables applies */
    char resync_tables[REG_RESYNC_MAX];   /* "*" or comma-separated */
};

struct worker_view {
    pid_t pid;
    uint32_t generation;
    enum worker_state state;
    char tenant[SM_TENANT_MAX + 1];    /* "" when idle */
    char operation[REG_OPERATION_MAX];
    int64_t since;                     /* state change time, Unix seconds */
    uint64_t calls;
    uint64_t faults;
    uint64_t bytes;
    uint32_t connections;              /* open client connections */
    char start_error[REG_START_ERROR_MAX];   /* why it could not start serving; "" = none */
};

/* Counters by operation and result, for `metrics` (a worker adds to its own slot only). */
enum reg_op { REG_OP_AUTHENTICATE, REG_OP_TABLESCHEMA, REG_OP_WIPE, REG_OP_ROWDATA,
              REG_OP_REPLICATIONCOMPLETED, REG_OP_OTHER, REG_OP_COUNT };
#define REG_DURATION_BUCKETS 12        /* 1ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s, +Inf implicit */
/* The buckets' upper bounds in seconds; duration_bucket[op][i] counts calls that took at most
 * reg_duration_bounds[i] and more than the bound before (not cumulative); index
 * REG_DURATION_BUCKETS counts the longer ones. */
extern const double reg_duration_bounds[REG_DURATION_BUCKETS];
/* "Authenticate", "TableSchema", "Wipe", "RowData", "ReplicationCompleted", "other". */
const char *reg_op_name(enum reg_op op);
struct worker_metrics {
    uint64_t calls_ok[REG_OP_COUNT];
    uint64_t calls_fault[REG_OP_COUNT];
    uint64_t duration_bucket[REG_OP_COUNT][REG_DURATION_BUCKETS + 1];
    double duration_sum[REG_OP_COUNT];
    uint64_t rows_inserted, rows_updated, rows_deleted, rows_skipped;
    uint64_t bytes_in;
};

struct registry;

/* Master, before forking: a new mapping. NULL with err on failure. */
struct registry *reg_create(uint32_t max_tenants, uint32_t max_workers, char *err, size_t errlen);
void reg_destroy(struct registry *reg);
/* The mapping size reg_create would use. */
size_t reg_size_for(uint32_t max_tenants, uint32_t max_workers);
size_t reg_mapping_size(const struct registry *reg);
uint32_t reg_max_tenants(const struct registry *reg);
uint32_t reg_max_workers(const struct registry *reg);

/* ---- tenants ---- */
/* Finds ctx; with create, allocates an entry when missing. 0 and *idx; -1 (not found, or the
 * table is full: *full set); REG_ALLOC_BUSY when the lock that allocates entries stayed taken
 * past its wait (its holder stopped, or dead and not yet reaped). */
#define REG_ALLOC_BUSY (-4)
int reg_tenant_find(struct registry *reg, const char *ctx, int create, uint32_t *idx, int *full);
uint32_t reg_tenant_count(const struct registry *reg);
/* Lock-free consistent copy. 0, or -1 for an unused index. */
int reg_tenant_read(const struct registry *reg, uint32_t idx, struct tenant_view *out);

/* The tenant lock: an owner-pid word. 0 = taken (by self), 1 = busy. If the previous owner
 * died without the master having reaped it yet, the lock stays busy until the master clears it. */
int reg_tenant_trylock(struct registry *reg, uint32_t idx, pid_t self);
void reg_tenant_unlock(struct registry *reg, uint32_t idx, pid_t self);
/* Master, on reaping pid: frees every lock pid held and marks those tenants with the error
 * "a call was interrupted (worker <pid> died)"; operator requests pid had taken and not
 * finished are pending again (a resync of named tables as one of every table). Returns how
 * many were freed. */
int reg_release_locks_of(struct registry *reg, pid_t pid);

/* Writes under the tenant lock. */
void reg_tenant_call_started(struct registry *reg, uint32_t idx, const char *operation, int64_t now);
void reg_tenant_cycle_started(struct registry *reg, uint32_t idx, int64_t now);
void reg_tenant_call_done(struct registry *reg, uint32_t idx, uint64_t inserted, uint64_t updated,
                          uint64_t deleted, uint64_t bytes, const char *error /* NULL: ok */, int64_t now);
void reg_tenant_cycle_completed(struct registry *reg, uint32_t idx, int64_t now,
                                const struct cycle_summary *summary);
/* A hook's result into last_hook; a failed one's (failed != 0) into last_error as well, so that
 * a later run's success does not hide it. The tenant's state is left as it is: a hook never
 * fails a call. */
void reg_tenant_hook_ran(struct registry *reg, uint32_t idx, const char *text, int failed, int64_t now);
/* The same write for a process that does not hold the tenant lock (a hook supervisor). */
void reg_tenant_hook_ran_unlocked(struct registry *reg, uint32_t idx, const char *text, int failed,
                                  int64_t now);
/* The tenant's hook word, so that at most one exclusive hook (cycle_completed) runs per tenant.
 * claim: 0 when self now holds it (it was free, already self's, or held by a pid that no
 * longer names a process called REG_HOOK_PROCESS_NAME), 1 when a live one holds it (*holder,
 * when given, set to its pid). release clears it only if self holds it. running: the live
 * holder's pid, or 0. */
#define REG_HOOK_PROCESS_NAME "somirror-hook"   /* what a hook supervisor names itself (comm) */
int reg_tenant_hook_claim(struct registry *reg, uint32_t idx, pid_t self, pid_t *holder);
void reg_tenant_hook_release(struct registry *reg, uint32_t idx, pid_t self);
pid_t reg_tenant_hook_running(const struct registry *reg, uint32_t idx);
/* Takes the pending resync/reset requests (worker, under the lock): they are no longer
 * pending, but taken until reg_tenant_requests_done, so that the master can put them back if
 * the worker dies while carrying them out (reg_release_locks_of). */
void reg_tenant_take_requests(struct registry *reg, uint32_t idx, struct tenant_requests *out);
void reg_tenant_requests_done(struct registry *reg, uint32_t idx);
/* The tenant's requests pending or being carried out, without taking them (master, for the
 * state file). A resync of named tables that a worker has taken shows as one of every table:
 * its names went with the worker. 1 if there is any. */
int reg_tenant_pending(const struct registry *reg, uint32_t idx, struct tenant_requests *out);

/* ---- operator requests (master) ---- */
/* ctx NULL: all tenants (a global flag). A pause for a tenant not yet seen creates its entry.
 * 0; -1 when the table is full (or, for a resume, the tenant is not there); REG_ALLOC_BUSY. */
int reg_set_paused(struct registry *reg, const char *ctx, int paused);
/* Whether a pause is in force for the tenant: its own or the global one. */
int reg_is_paused(const struct registry *reg, uint32_t idx);
int reg_global_paused(const struct registry *reg);
/* The tenant's own pause flag only (what the state file records). */
int reg_tenant_pause_flag(const struct registry *reg, uint32_t idx);
/* table NULL: all tables. A tenant not yet seen gets its entry, as with a pause (a request
 * restored from the state file, or one made after a restart before the tenant called).
 * Returns 0, -1 when the tenant table is full, REG_ALLOC_BUSY (see reg_tenant_find),
 * REG_RESYNC_LIST_FULL when the
 * tenant's pending list has no room for the name, REG_RESYNC_NO_LIST when every one of the
 * REG_RESYNC_SLOTS lists is taken by other tenants (that have not called since).
 * A reset and a resync of all tables are single atomic bits: a worker whose attempt failed may
 * set them again to keep them pending (named tables are the master's to add: a worker keeps a
 * failed resync of named tables pending as one of every table). */
#define REG_RESYNC_LIST_FULL (-2)
#define REG_RESYNC_NO_LIST (-3)
int reg_request_resync(struct registry *reg, const char *ctx, const char *table);
int reg_request_reset(struct registry *reg, const char *ctx);

/* ---- workers ---- */
uint32_t reg_generation(const struct registry *reg);
void reg_set_generation(struct registry *reg, uint32_t generation);   /* master */
/* Master, before fork: claims a free slot for a new worker. -1 when none is free. */
int reg_worker_claim(struct registry *reg, uint32_t generation);
void reg_worker_set_pid(struct registry *reg, int slot, pid_t pid);   /* master after fork */
void reg_worker_release(struct registry *reg, int slot);              /* master after reap */
/* The worker itself: */
void reg_worker_state(struct registry *reg, int slot, enum worker_state state, const char *tenant,
                      const char *operation, int64_t now);
void reg_worker_call_done(struct registry *reg, int slot, enum reg_op op, int fault,
                          double seconds, uint64_t bytes_in, uint64_t inserted, uint64_t updated,
                          uint64_t deleted, uint64_t skipped);
int reg_worker_read(const struct registry *reg, int slot, struct worker_view *out);
/* A worker that cannot start says why in its own slot, for the master to report. */
void reg_worker_start_failed(struct registry *reg, int slot, const char *why);
/* A worker's open client connections: set by the worker in its own slot; the fewest that any
 * other accepting (not stopping) worker of the generation has, UINT32_MAX when there is none
 * (a worker uses it to leave new connections to the others, see worker/http.c). */
void reg_worker_connections(struct registry *reg, int slot, uint32_t n);
uint32_t reg_workers_fewest_connections(const struct registry *reg, int self, uint32_t generation);
/* Sum of every slot's metrics, plus those of exited workers (folded in on release). */
void reg_metrics_sum(const struct registry *reg, struct worker_metrics *out);

/* "new" "in_cycle" "idle" "paused" "error" / "empty" "idle" "busy" "stopping". */
const char *reg_tenant_state_name(enum tenant_state state);
const char *reg_worker_state_name(enum worker_state state);

/* Master-owned counters for status (written only by the master). */
struct master_counters {
    int64_t started_ms;         /* monotonic: uptime does not follow a step of the wall clock */
    uint64_t reloads_ok, reloads_failed;
    uint64_t worker_restarts;
};
struct master_counters *reg_master_counters(struct registry *reg);

#endif
