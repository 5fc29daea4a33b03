/* tests/unit/test_registry: unit tests of shm/registry (tenant table, locks, change counters,
 * operator requests, worker slots and metrics folding, size). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"
#include "shm/registry.h"

static struct registry *new_registry(uint32_t tenants, uint32_t workers)
{
    char err[256] = "";
    struct registry *reg = reg_create(tenants, workers, err, sizeof(err));
    ck_assert_msg(reg != NULL, "reg_create: %s", err);
    return reg;
}

static uint32_t tenant(struct registry *reg, const char *ctx)
{
    uint32_t idx = 0;
    ck_assert_int_eq(reg_tenant_find(reg, ctx, 1, &idx, NULL), 0);
    return idx;
}

START_TEST(test_create_limits)
{
    char err[256] = "";
    ck_assert_ptr_null(reg_create(0, 4, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "tenants.max"));
    ck_assert_ptr_null(reg_create(10, 0, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "workers"));
    struct registry *reg = new_registry(10, 3);
    ck_assert_uint_eq(reg_max_tenants(reg), 10);
    ck_assert_uint_eq(reg_max_workers(reg), 3);
    ck_assert_uint_eq(reg_mapping_size(reg), reg_size_for(10, 3));
    ck_assert_uint_eq(reg_master_counters(reg)->reloads_ok, 0);   /* zeroed; the master sets the rest */
    reg_destroy(reg);
}
END_TEST

START_TEST(test_find_create)
{
    struct registry *reg = new_registry(8, 2);
    uint32_t idx = 99;
    int full = 7;
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 0, &idx, &full), -1);
    ck_assert_int_eq(full, 0);
    ck_assert_uint_eq(reg_tenant_count(reg), 0);
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 1, &idx, &full), 0);
    uint32_t first = idx;
    ck_assert_int_eq(reg_tenant_find(reg, "Cust2", 1, &idx, &full), 0);
    ck_assert_uint_ne(idx, first);
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 0, &idx, &full), 0);
    ck_assert_uint_eq(idx, first);
    /* exact compare: no case folding, no prefix match */
    ck_assert_int_eq(reg_tenant_find(reg, "cust1", 0, &idx, NULL), -1);
    ck_assert_int_eq(reg_tenant_find(reg, "Cust", 0, &idx, NULL), -1);
    ck_assert_int_eq(reg_tenant_find(reg, "", 1, &idx, NULL), -1);
    ck_assert_uint_eq(reg_tenant_count(reg), 2);

    struct tenant_view v;
    ck_assert_int_eq(reg_tenant_read(reg, first, &v), 0);
    ck_assert_str_eq(v.tenant, "Cust1");
    ck_assert_int_eq(v.state, TENANT_NEW);
    ck_assert_str_eq(v.last_error, "");
    ck_assert_int_eq(reg_tenant_read(reg, 5, &v), -1);      /* never allocated */
    ck_assert_int_eq(reg_tenant_read(reg, 1000, &v), -1);   /* out of range */
    reg_destroy(reg);
}
END_TEST

START_TEST(test_full_table)
{
    struct registry *reg = new_registry(5, 1);
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "T%d", i);
        tenant(reg, name);
    }
    uint32_t idx;
    int full = 0;
    ck_assert_int_eq(reg_tenant_find(reg, "T5", 1, &idx, &full), -1);
    ck_assert_int_eq(full, 1);
    ck_assert_int_eq(reg_set_paused(reg, "T6", 1), -1);   /* a pause cannot create either */
    full = 0;
    ck_assert_int_eq(reg_tenant_find(reg, "T3", 1, &idx, &full), 0);   /* existing ones still found */
    ck_assert_int_eq(full, 0);
    ck_assert_uint_eq(reg_tenant_count(reg), 5);
    reg_destroy(reg);
}
END_TEST

START_TEST(test_lock)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Cust1");
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, 1001), 0);
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, 1002), 1);
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, 1001), 1);   /* not reentrant */
    struct tenant_view v;
    reg_tenant_read(reg, idx, &v);
    ck_assert_uint_eq(v.lock_owner, 1001);
    reg_tenant_unlock(reg, idx, 1002);                          /* not the owner: no effect */
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, 1002), 1);
    reg_tenant_unlock(reg, idx, 1001);
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, 1002), 0);
    reg_tenant_unlock(reg, idx, 1002);
    reg_tenant_read(reg, idx, &v);
    ck_assert_uint_eq(v.lock_owner, 0);
    reg_destroy(reg);
}
END_TEST

START_TEST(test_release_locks_of)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t a = tenant(reg, "A1"), b = tenant(reg, "B1"), c = tenant(reg, "C1");
    ck_assert_int_eq(reg_tenant_trylock(reg, a, 4242), 0);
    ck_assert_int_eq(reg_tenant_trylock(reg, b, 4242), 0);
    ck_assert_int_eq(reg_tenant_trylock(reg, c, 5555), 0);
    ck_assert_int_eq(reg_release_locks_of(reg, 4242), 2);
    struct tenant_view v;
    reg_tenant_read(reg, a, &v);
    ck_assert_str_eq(v.last_error, "a call was interrupted (worker 4242 died)");
    ck_assert_int_eq(v.state, TENANT_ERROR);
    ck_assert_int_gt(v.last_error_at, 0);
    ck_assert_uint_eq(v.lock_owner, 0);
    reg_tenant_read(reg, c, &v);
    ck_assert_str_eq(v.last_error, "");
    ck_assert_uint_eq(v.lock_owner, 5555);
    ck_assert_int_eq(reg_release_locks_of(reg, 4242), 0);
    ck_assert_int_eq(reg_tenant_trylock(reg, a, 6000), 0);
    reg_destroy(reg);
}
END_TEST

START_TEST(test_tenant_writes)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Cust1");
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, getpid()), 0);
    reg_tenant_cycle_started(reg, idx, 100);
    reg_tenant_call_started(reg, idx, "RowData", 101);
    reg_tenant_call_done(reg, idx, 5, 2, 1, 300, NULL, 102);
    reg_tenant_call_done(reg, idx, 0, 0, 0, 50, "ColumnMismatch: Columns differ", 103);
    struct tenant_view v;
    reg_tenant_read(reg, idx, &v);
    ck_assert_int_eq(v.state, TENANT_ERROR);
    ck_assert_str_eq(v.last_error, "ColumnMismatch: Columns differ");
    ck_assert_int_eq(v.last_error_at, 103);
    reg_tenant_call_done(reg, idx, 1, 0, 0, 10, NULL, 104);
    reg_tenant_cycle_completed(reg, idx, 105, &(struct cycle_summary){10, 3, (uint64_t)1 << 40});
    char hook[400];
    memset(hook, 'h', sizeof(hook) - 1);
    hook[sizeof(hook) - 1] = '\0';
    reg_tenant_hook_ran(reg, idx, hook, 0, 106);
    reg_tenant_unlock(reg, idx, getpid());
    reg_tenant_read(reg, idx, &v);
    ck_assert_int_eq(v.state, TENANT_IDLE);
    ck_assert_int_eq(v.cycle_started, 100);
    ck_assert_int_eq(v.last_call, 101);
    ck_assert_int_eq(v.last_completed, 105);
    ck_assert_uint_eq(v.last_summary.inserted, 10);
    ck_assert_uint_eq(v.last_summary.updated, 3);
    ck_assert_uint_eq(v.last_summary.deleted, UINT32_MAX);               /* kept up to 2^32-1 */
    ck_assert_str_eq(v.last_operation, "RowData");
    ck_assert_uint_eq(v.calls, 3);
    ck_assert_uint_eq(v.rows_inserted, 6);
    ck_assert_uint_eq(v.rows_updated, 2);
    ck_assert_uint_eq(v.rows_deleted, 1);
    ck_assert_uint_eq(v.bytes, 360);
    ck_assert_str_eq(v.last_error, "ColumnMismatch: Columns differ");   /* kept as history */
    ck_assert_uint_eq(strlen(v.last_hook), REG_HOOK_STORED - 1);       /* cut, not overrun */
    ck_assert_int_eq(v.last_hook_at, 106);
    /* A failed hook is the last error too, and stays so when a later run succeeds; the state is
     * the calls' alone. */
    reg_tenant_hook_ran_unlocked(reg, idx, "table_sql t.sql: error: no such column", 1, 107);
    reg_tenant_hook_ran_unlocked(reg, idx, "table_sql t.sql: ok", 0, 108);
    reg_tenant_read(reg, idx, &v);
    ck_assert_str_eq(v.last_hook, "table_sql t.sql: ok");
    ck_assert_int_eq(v.last_hook_at, 108);
    ck_assert_str_eq(v.last_error, "table_sql t.sql: error: no such column");
    ck_assert_int_eq(v.last_error_at, 107);
    ck_assert_int_eq(v.state, TENANT_IDLE);
    /* Kept as valid UTF-8 (shown as JSON): a byte of another encoding becomes '?', and a text
     * too long is cut between characters, not inside one. */
    reg_tenant_hook_ran_unlocked(reg, idx, "table_sql t.sql: error: caf\xe9", 1, 109);
    reg_tenant_read(reg, idx, &v);
    ck_assert_str_eq(v.last_hook, "table_sql t.sql: error: caf?");
    char wide[REG_HOOK_STORED + 8] = "x";
    for (size_t i = 1; i + 2 < sizeof(wide); i += 2)
        memcpy(wide + i, "\xc3\xa9", 2);
    wide[sizeof(wide) - 1] = '\0';
    reg_tenant_hook_ran_unlocked(reg, idx, wide, 0, 110);
    reg_tenant_read(reg, idx, &v);
    ck_assert_uint_eq(utf8_valid_prefix(v.last_hook, strlen(v.last_hook)), strlen(v.last_hook));
    ck_assert_uint_ge(strlen(v.last_hook), REG_HOOK_STORED - 2);
    reg_destroy(reg);
}
END_TEST

/* A writer process keeps every written state self-consistent: rows_inserted == rows_updated ==
 * calls, and last_error names last_error_at. A reader must never see a mix of two writes. */
START_TEST(test_seqlock_consistency)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Hammer");
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        if (reg_tenant_trylock(reg, idx, getpid()) != 0)
            _exit(2);
        char error[64];
        for (int64_t k = 1;; k++) {
            snprintf(error, sizeof(error), "error number %lld with some padding text", (long long)k);
            reg_tenant_call_done(reg, idx, 1, 1, 0, 0, error, k);
        }
    }
    struct tenant_view v;
    uint64_t reads = 0, last_calls = 0, changes = 0;
    time_t end = time(NULL) + 2;
    while (time(NULL) < end || changes < 1000) {
        ck_assert_int_eq(reg_tenant_read(reg, idx, &v), 0);
        reads++;
        ck_assert_uint_eq(v.rows_inserted, v.calls);
        ck_assert_uint_eq(v.rows_updated, v.calls);
        if (v.calls) {
            char expected[64];
            snprintf(expected, sizeof(expected), "error number %lld with some padding text",
                     (long long)v.last_error_at);
            ck_assert_str_eq(v.last_error, expected);
            ck_assert_uint_eq((uint64_t)v.last_error_at, v.calls);
        }
        ck_assert_uint_ge(v.calls, last_calls);
        if (v.calls != last_calls)
            changes++;
        last_calls = v.calls;
        if (time(NULL) > end + 25)
            break;   /* a slow host (valgrind on a loaded machine): fewer changes will do */
    }
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    ck_assert_msg(changes >= 100, "the writer made too little progress (%llu changes seen)",
                  (unsigned long long)changes);
    printf("seqlock: %llu reads, %llu changes seen, no torn read\n", (unsigned long long)reads,
           (unsigned long long)changes);
    reg_destroy(reg);
}
END_TEST

/* A hook supervisor writes a tenant's data without its lock and is never reaped by the master, so
 * one killed in the middle of a write (SIGKILL, the OOM killer) leaves no one to repair the
 * change word. Readers and the next writer must see that its writer is dead and go on at once,
 * not wait out the registry's wait on every read. The killed writer loops on the write, so most
 * kills land inside one; 30 of them make the stall before the fix all but certain. */
static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

START_TEST(test_writer_killed_mid_write)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Killed");
    double slowest_read = 0, slowest_write = 0;
    for (int round = 0; round < 30; round++) {
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0)
            for (int64_t k = 1;; k++)
                reg_tenant_hook_ran_unlocked(reg, idx, "cycle_completed hook: ok", 0, k);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (seconds_since(&start) < 0.002 + 0.0003 * round)
            ;
        kill(child, SIGKILL);
        int status;
        waitpid(child, &status, 0);
        struct tenant_view v;
        clock_gettime(CLOCK_MONOTONIC, &start);
        ck_assert_int_eq(reg_tenant_read(reg, idx, &v), 0);   /* as the dead writer left it */
        double read = seconds_since(&start);
        clock_gettime(CLOCK_MONOTONIC, &start);
        reg_tenant_call_started(reg, idx, "RowData", 1000 + round);
        double write = seconds_since(&start);
        reg_tenant_read(reg, idx, &v);
        ck_assert_int_eq(v.last_call, 1000 + round);
        slowest_read = read > slowest_read ? read : slowest_read;
        slowest_write = write > slowest_write ? write : slowest_write;
    }
    printf("writer killed mid-write: slowest read %.1f ms, slowest next write %.1f ms\n",
           slowest_read * 1e3, slowest_write * 1e3);
    /* The wait for a live writer is 500 ms; a dead one is seen after a few yields. */
    ck_assert_msg(slowest_read < 0.2, "a read waited %.0f ms for a dead writer", slowest_read * 1e3);
    ck_assert_msg(slowest_write < 0.2, "a write waited %.0f ms for a dead writer",
                  slowest_write * 1e3);
    reg_destroy(reg);
}
END_TEST

START_TEST(test_requests)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Cust1");
    struct tenant_requests r;
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 0);
    ck_assert_int_eq(r.resync, 0);

    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "Contact"), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "person"), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "CONTACT"), 0);   /* merged */
    ck_assert_int_eq(reg_request_reset(reg, "Cust1"), 0);
    /* Seen without taking (the state file), as often as asked. */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(reg_tenant_pending(reg, idx, &r), 1);
        ck_assert_int_eq(r.reset, 1);
        ck_assert_str_eq(r.resync_tables, "Contact,person");
    }
    /* A tenant not yet seen (after a restart) gets its entry, as with a pause; a full tenant
     * table refuses. */
    ck_assert_int_eq(reg_request_resync(reg, "Later1", "Contact"), 0);
    ck_assert_int_eq(reg_request_reset(reg, "Later2"), 0);
    uint32_t later;
    ck_assert_int_eq(reg_tenant_find(reg, "Later2", 0, &later, NULL), 0);
    ck_assert_int_eq(reg_tenant_pending(reg, later, &r), 1);
    ck_assert_int_eq(r.reset, 1);
    ck_assert_int_eq(r.resync, 0);
    ck_assert_int_eq(reg_request_reset(reg, "Fourth"), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Fifth", "Contact"), -1);
    ck_assert_int_eq(reg_request_reset(reg, "Fifth"), -1);
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 1);
    ck_assert_int_eq(r.resync, 1);
    ck_assert_str_eq(r.resync_tables, "Contact,person");
    reg_tenant_take_requests(reg, idx, &r);            /* taken means cleared */
    ck_assert_int_eq(r.reset, 0);
    ck_assert_int_eq(r.resync, 0);

    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "Contact"), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Cust1", NULL), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "appointment"), 0);   /* already all */
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.resync, 1);
    ck_assert_str_eq(r.resync_tables, "*");
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.resync, 0);                     /* the named list went with it */

    /* A list that would overflow is refused, and what was listed survives. */
    char name[128];
    int added = 0, rc = 0;
    for (; rc == 0; added++) {
        snprintf(name, sizeof(name), "t%02d_abcdefghijklmnopqrstuvwxyz", added);
        rc = reg_request_resync(reg, "Cust1", name);
    }
    ck_assert_int_eq(rc, REG_RESYNC_LIST_FULL);
    ck_assert_int_gt(added, 10);
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.resync, 1);
    ck_assert_ptr_nonnull(strstr(r.resync_tables, "t00_abc"));
    ck_assert_int_lt(strlen(r.resync_tables), REG_RESYNC_MAX);
    reg_tenant_requests_done(reg, idx);

    /* Requests taken by a worker that dies before it is done are pending again once the master
     * reaps it (a resync of named tables as one of every table); done ones are not. */
    const pid_t dead = 999999;
    ck_assert_int_eq(reg_request_reset(reg, "Cust1"), 0);
    ck_assert_int_eq(reg_request_resync(reg, "Cust1", "Contact"), 0);
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, dead), 0);
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 1);
    ck_assert_str_eq(r.resync_tables, "Contact");
    ck_assert_int_eq(reg_tenant_pending(reg, idx, &r), 1);   /* taken: still pending, */
    ck_assert_int_eq(r.reset, 1);
    ck_assert_str_eq(r.resync_tables, "*");                  /* its names with the worker */
    ck_assert_int_eq(reg_release_locks_of(reg, dead), 1);
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 1);
    ck_assert_int_eq(r.resync, 1);
    ck_assert_str_eq(r.resync_tables, "*");
    reg_tenant_requests_done(reg, idx);
    ck_assert_int_eq(reg_tenant_trylock(reg, idx, dead), 0);
    ck_assert_int_eq(reg_release_locks_of(reg, dead), 1);
    reg_tenant_take_requests(reg, idx, &r);
    ck_assert_int_eq(r.reset, 0);
    ck_assert_int_eq(r.resync, 0);
    reg_destroy(reg);
}
END_TEST

START_TEST(test_pauses)
{
    struct registry *reg = new_registry(4, 1);
    uint32_t idx = tenant(reg, "Cust1");
    struct tenant_view v;
    ck_assert_int_eq(reg_is_paused(reg, idx), 0);
    ck_assert_int_eq(reg_set_paused(reg, "Cust1", 1), 0);
    ck_assert_int_eq(reg_is_paused(reg, idx), 1);
    ck_assert_int_eq(reg_tenant_pause_flag(reg, idx), 1);
    reg_tenant_read(reg, idx, &v);
    ck_assert_int_eq(v.state, TENANT_PAUSED);
    ck_assert_int_eq(v.paused, 1);
    ck_assert_int_eq(reg_set_paused(reg, "Cust1", 0), 0);
    ck_assert_int_eq(reg_is_paused(reg, idx), 0);
    reg_tenant_read(reg, idx, &v);
    ck_assert_int_eq(v.state, TENANT_NEW);

    /* a pause for a tenant not seen yet creates it; a resume does not */
    ck_assert_int_eq(reg_set_paused(reg, "Later", 0), -1);
    ck_assert_int_eq(reg_set_paused(reg, "Later", 1), 0);
    uint32_t later;
    ck_assert_int_eq(reg_tenant_find(reg, "Later", 0, &later, NULL), 0);
    ck_assert_int_eq(reg_is_paused(reg, later), 1);

    ck_assert_int_eq(reg_set_paused(reg, NULL, 1), 0);
    ck_assert_int_eq(reg_global_paused(reg), 1);
    ck_assert_int_eq(reg_is_paused(reg, idx), 1);
    ck_assert_int_eq(reg_tenant_pause_flag(reg, idx), 0);
    reg_tenant_read(reg, idx, &v);
    ck_assert_int_eq(v.state, TENANT_PAUSED);
    ck_assert_int_eq(reg_set_paused(reg, NULL, 0), 0);
    ck_assert_int_eq(reg_is_paused(reg, idx), 0);
    ck_assert_int_eq(reg_is_paused(reg, later), 1);
    reg_destroy(reg);
}
END_TEST

static void assert_calls(const struct worker_metrics *m, uint64_t ok, uint64_t fault)
{
    ck_assert_uint_eq(m->calls_ok[REG_OP_ROWDATA], ok);
    ck_assert_uint_eq(m->calls_fault[REG_OP_ROWDATA], fault);
}

START_TEST(test_worker_slots)
{
    struct registry *reg = new_registry(4, 2);
    reg_set_generation(reg, 3);
    ck_assert_uint_eq(reg_generation(reg), 3);
    int s0 = reg_worker_claim(reg, 3);
    int s1 = reg_worker_claim(reg, 3);
    ck_assert_int_ge(s0, 0);
    ck_assert_int_ge(s1, 0);
    ck_assert_int_ne(s0, s1);
    ck_assert_int_eq(reg_worker_claim(reg, 3), -1);
    reg_worker_set_pid(reg, s0, 777);
    reg_worker_state(reg, s0, WORKER_BUSY, "Cust1", "RowData", 50);

    struct worker_view w;
    ck_assert_int_eq(reg_worker_read(reg, s0, &w), 0);
    ck_assert_int_eq(w.pid, 777);
    ck_assert_uint_eq(w.generation, 3);
    ck_assert_int_eq(w.state, WORKER_BUSY);
    ck_assert_str_eq(w.tenant, "Cust1");
    ck_assert_str_eq(w.operation, "RowData");
    ck_assert_int_eq(w.since, 50);
    ck_assert_int_eq(reg_worker_read(reg, 5, &w), -1);

    reg_worker_call_done(reg, s0, REG_OP_ROWDATA, 0, 0.003, 1000, 4, 1, 0, 2);
    reg_worker_call_done(reg, s0, REG_OP_ROWDATA, 1, 20.0, 10, 0, 0, 0, 0);
    reg_worker_call_done(reg, s1, REG_OP_ROWDATA, 0, 0.0005, 5, 1, 0, 0, 0);
    reg_worker_read(reg, s0, &w);
    ck_assert_uint_eq(w.calls, 2);
    ck_assert_uint_eq(w.faults, 1);
    ck_assert_uint_eq(w.bytes, 1010);

    struct worker_metrics before, after;
    reg_metrics_sum(reg, &before);
    assert_calls(&before, 2, 1);
    ck_assert_uint_eq(before.duration_bucket[REG_OP_ROWDATA][0], 1);   /* 0.5 ms */
    ck_assert_uint_eq(before.duration_bucket[REG_OP_ROWDATA][1], 1);   /* 3 ms */
    ck_assert_uint_eq(before.duration_bucket[REG_OP_ROWDATA][REG_DURATION_BUCKETS], 1);
    ck_assert_double_eq_tol(before.duration_sum[REG_OP_ROWDATA], 20.0035, 1e-9);
    ck_assert_uint_eq(before.rows_inserted, 5);
    ck_assert_uint_eq(before.rows_skipped, 2);
    ck_assert_uint_eq(before.bytes_in, 1015);

    /* the worker in s0 exits: its counts are folded, never lost */
    reg_worker_release(reg, s0);
    ck_assert_int_eq(reg_worker_read(reg, s0, &w), -1);
    reg_metrics_sum(reg, &after);
    ck_assert_mem_eq(&before, &after, sizeof(before));
    int again = reg_worker_claim(reg, 4);
    ck_assert_int_eq(again, s0);
    reg_worker_read(reg, again, &w);
    ck_assert_uint_eq(w.calls, 0);
    ck_assert_int_eq(w.pid, 0);
    ck_assert_uint_eq(w.generation, 4);
    reg_worker_call_done(reg, again, REG_OP_ROWDATA, 0, 0.02, 0, 0, 0, 0, 0);
    reg_metrics_sum(reg, &after);
    assert_calls(&after, 3, 1);
    reg_destroy(reg);
}
END_TEST

/* The connections gauge, and the fewest among the other accepting workers of a generation. */
START_TEST(test_worker_connections)
{
    struct registry *reg = new_registry(4, 4);
    int a = reg_worker_claim(reg, 5), b = reg_worker_claim(reg, 5), c = reg_worker_claim(reg, 5);
    int old = reg_worker_claim(reg, 4);
    /* Claimed workers are starting, not accepting, until they serve. */
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), UINT32_MAX);
    struct worker_view w;
    ck_assert_int_eq(reg_worker_read(reg, b, &w), 0);
    ck_assert_int_eq(w.state, WORKER_STARTING);
    for (int slot = 0; slot < 4; slot++)
        reg_worker_state(reg, slot, WORKER_IDLE, NULL, NULL, 1);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), 0);
    reg_worker_connections(reg, a, 9);
    reg_worker_connections(reg, b, 4);
    reg_worker_connections(reg, c, 6);
    reg_worker_connections(reg, old, 1);   /* another generation: not counted */
    ck_assert_int_eq(reg_worker_read(reg, a, &w), 0);
    ck_assert_uint_eq(w.connections, 9);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), 4);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, b, 5), 6);   /* itself left out */
    reg_worker_state(reg, b, WORKER_STOPPING, NULL, NULL, 1);          /* not accepting */
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), 6);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, old, 4), UINT32_MAX);
    reg_worker_release(reg, c);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), UINT32_MAX);
    ck_assert_int_eq(reg_worker_claim(reg, 5), c);                     /* reset at claim */
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), UINT32_MAX);
    reg_worker_state(reg, c, WORKER_IDLE, NULL, NULL, 1);
    ck_assert_uint_eq(reg_workers_fewest_connections(reg, a, 5), 0);
    /* A worker that cannot start says why, in its own slot. */
    reg_worker_start_failed(reg, c, "store.sqlite.directory: no such directory");
    ck_assert_int_eq(reg_worker_read(reg, c, &w), 0);
    ck_assert_str_eq(w.start_error, "store.sqlite.directory: no such directory");
    reg_destroy(reg);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(reg_op_name(REG_OP_REPLICATIONCOMPLETED), "ReplicationCompleted");
    ck_assert_str_eq(reg_tenant_state_name(TENANT_IN_CYCLE), "in_cycle");
    ck_assert_str_eq(reg_worker_state_name(WORKER_STOPPING), "stopping");
    ck_assert_str_eq(reg_worker_state_name(WORKER_STARTING), "starting");
    ck_assert_double_eq(reg_duration_bounds[REG_DURATION_BUCKETS - 1], 10.0);
}
END_TEST

START_TEST(test_size_100k)
{
    size_t size = reg_size_for(100000, 1024);
    printf("registry for 100,000 tenants and 1024 workers: %zu bytes (%.2f MiB)\n", size,
           size / 1048576.0);
    ck_assert_uint_lt(size, (size_t)64 << 20);
    struct registry *reg = new_registry(100000, 64);
    char name[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof(name), "Cust%d", i);
        tenant(reg, name);
    }
    uint32_t idx;
    int full = 0;
    ck_assert_int_eq(reg_tenant_find(reg, "Cust99999", 0, &idx, NULL), 0);
    ck_assert_int_eq(reg_tenant_find(reg, "Extra", 1, &idx, &full), -1);
    ck_assert_int_eq(full, 1);
    reg_destroy(reg);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_create_limits);
    tcase_add_test(tc, test_find_create);
    tcase_add_test(tc, test_full_table);
    tcase_add_test(tc, test_lock);
    tcase_add_test(tc, test_release_locks_of);
    tcase_add_test(tc, test_tenant_writes);
    tcase_add_test(tc, test_seqlock_consistency);
    tcase_add_test(tc, test_writer_killed_mid_write);
    tcase_add_test(tc, test_requests);
    tcase_add_test(tc, test_pauses);
    tcase_add_test(tc, test_worker_slots);
    tcase_add_test(tc, test_worker_connections);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_size_100k);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
