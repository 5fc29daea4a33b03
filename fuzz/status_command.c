/* fuzz/status_command: fuzz target for the status socket's commands (ctl_execute in
 * ctl/commands.h). Each input is a sequence of command lines (split at '\n', each passed with
 * its newline, as the master passes what it read), executed in order against a fresh small
 * registry (shm/registry.h) holding three tenants and two workers with fixed times, and a
 * ctl_context without reload or state file. Every answer must be either success or a single
 * "error: " line; the target aborts otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "ctl/commands.h"
#include "shm/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW INT64_C(1795688100)     /* 2026-11-26T10:15:00Z */

static const char *const restart_required[] = { "tenants.max" };
static volatile size_t sink;

static uint32_t add_tenant(struct registry *reg, const char *name)
{
    uint32_t idx = 0;
    if (reg_tenant_find(reg, name, 1, &idx, NULL) != 0) {
        fprintf(stderr, "fuzz/status_command: cannot add tenant %s\n", name);
        abort();
    }
    return idx;
}

/* Cust1: a completed cycle with a hook; Cust2: paused; Cust3: an error. One busy worker, one idle. */
static struct registry *make_registry(void)
{
    char err[256];
    struct registry *reg = reg_create(8, 2, err, sizeof(err));
    if (!reg) {
        fprintf(stderr, "fuzz/status_command: reg_create: %s\n", err);
        abort();
    }
    uint32_t c1 = add_tenant(reg, "Cust1");
    reg_tenant_trylock(reg, c1, 10);
    reg_tenant_cycle_started(reg, c1, FUZZ_NOW - 60);
    reg_tenant_call_started(reg, c1, "RowData", FUZZ_NOW - 50);
    reg_tenant_call_done(reg, c1, 100, 3, 2, 12345, NULL, FUZZ_NOW - 50);
    reg_tenant_cycle_completed(reg, c1, FUZZ_NOW - 40, &(struct cycle_summary){10, 3, 1});
    reg_tenant_hook_ran(reg, c1, "cycle_completed Cust1: exit 0", 0, FUZZ_NOW - 39);
    reg_tenant_unlock(reg, c1, 10);
    add_tenant(reg, "Cust2");
    reg_set_paused(reg, "Cust2", 1);
    uint32_t c3 = add_tenant(reg, "Cust3");
    reg_tenant_trylock(reg, c3, 11);
    reg_tenant_call_done(reg, c3, 0, 0, 0, 10, "StorageError:\tdisk full", FUZZ_NOW - 5);
    reg_tenant_unlock(reg, c3, 11);

    int busy = reg_worker_claim(reg, 1), idle = reg_worker_claim(reg, 1);
    if (busy < 0 || idle < 0) {
        fprintf(stderr, "fuzz/status_command: reg_worker_claim failed\n");
        abort();
    }
    reg_worker_set_pid(reg, busy, 2001);
    reg_worker_set_pid(reg, idle, 2002);
    reg_worker_state(reg, busy, WORKER_BUSY, "Cust1", "RowData", FUZZ_NOW - 1);
    reg_worker_state(reg, idle, WORKER_IDLE, NULL, NULL, FUZZ_NOW - 2);
    reg_worker_call_done(reg, busy, REG_OP_ROWDATA, 0, 0.002, 1000, 100, 3, 2, 2);
    reg_worker_call_done(reg, idle, REG_OP_AUTHENTICATE, 1, 30, 50, 0, 0, 0, 0);
    reg_master_counters(reg)->started_ms = monotonic_ms() - 3600 * 1000;
    reg_master_counters(reg)->reloads_ok = 1;
    return reg;
}

static void execute(struct ctl_context *ctx, const char *line, size_t len, struct buf *out)
{
    buf_reset(out);
    int rc = ctl_execute(ctx, line, len, out);
    if (rc != 0 && rc != 1) {
        fprintf(stderr, "fuzz/status_command: ctl_execute returned %d\n", rc);
        abort();
    }
    if (rc == 1 && (out->len < 8 || strncmp(out->data, "error: ", 7) != 0 ||
                    memchr(out->data, '\n', out->len) != out->data + out->len - 1)) {
        fprintf(stderr, "fuzz/status_command: an error answer is not one \"error: \" line\n");
        abort();
    }
    sink += out->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        log_set_level(LOG_LVL_ERROR);
        initialised = 1;
    }
    struct registry *reg = make_registry();
    struct ctl_context ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.reg = reg;
    ctx.cfg = NULL;
    ctx.pid = 4242;
    ctx.started_ms = monotonic_ms() - 3600 * 1000;
    ctx.version = "1.0.0";
    ctx.generation = 1;
    ctx.workers = 2;
    ctx.restart_required = restart_required;
    ctx.nrestart = 1;
    ctx.reload = NULL;
    ctx.state_file = NULL;

    struct buf out = BUF_INIT;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        execute(&ctx, p, len, &out);
        p += len;
    }
    if (size == 0)
        execute(&ctx, "", 0, &out);
    buf_free(&out);
    reg_destroy(reg);
    return 0;
}
