/* shm/registry: the shared-memory registry (see registry.h for the interface).
 *
 * Layout of the one MAP_SHARED|MAP_ANONYMOUS mapping, no pointers inside (offsets only):
 *   struct registry (header) | tenant index (uint32, open addressing) | tenant entries |
 *   worker slots | resync lists
 *
 * Who may write what:
 *  - header: the master only (generation, global pause, master counters, folded metrics under
 *    folded_change); alloc_lock and tenant_count by whoever allocates a tenant entry, under the
 *    allocation lock (an owner-pid word, like the tenant locks).
 *  - tenant index and a new entry's id and "used" flag: the allocator, under the allocation
 *    lock; an entry is published (used, then its index slot, both release stores) only after
 *    its id is written, so lookups never lock.
 *  - tenant data: the worker holding the tenant lock, inside the entry's change word.
 *    One exception: reg_release_locks_of, run by the master when it reaps a worker, writes
 *    the "interrupted" error into the entries whose lock that dead worker still holds. No one
 *    else may write them without the lock, and the lock owner is dead, so the master stands in
 *    for it before it frees the lock.
 *    A second exception: reg_tenant_hook_ran_unlocked, run by a hook supervisor (hooks/), writes
 *    last_hook without the lock. That is why every tenant-data writer takes the change word's
 *    counter from even to odd by compare-and-swap (tenant_change_begin): two writers never
 *    overlap, whoever they are.
 *  - tenant request words (pause, reset, resync bits): set by the master (atomic or; a lock
 *    holder whose attempt failed may set reset and resync-all again), taken by the lock holder
 *    (compare-and-swap into "taken" bits, cleared when it is done); the master puts taken bits
 *    back as requests when it reaps a lock holder that died (reg_release_locks_of).
 *  - tenant hook word (hook_pid): the pid of the process running the tenant's exclusive hook,
 *    claimed by compare-and-swap from 0 (or from a pid that no longer names a hook supervisor)
 *    by that process, cleared by it when the hook is done.
 *  - resync lists: written by the master; freed by the lock holder taking them. Each list has
 *    one 64-bit word, owner (tenant index + 1) in the high half and its change counter in the
 *    low half, so that a taker frees a list only if it read its latest contents.
 *  - worker slots: in_use, pid and generation by the master (claim before fork, release after
 *    reap); state and metrics by the worker in the slot, inside the slot's change counter; the
 *    connections gauge by the worker in the slot (an atomic word of its own, reset at claim).
 *
 * Change words: a writer makes the counter (the word's low half) odd before writing and even
 * after (release); a reader copies while the counter is even and retries if it moved. A writer
 * that dies while the counter is odd would make readers spin:
 *  - a tenant-data writer puts its pid in the word's high half with the odd counter (one
 *    compare-and-swap), so that readers and the next writer see a dead writer after a few
 *    yields and even the word at once. The master reaps workers, but a hook supervisor is
 *    reaped by no process of ours: without the pid, every read of the tenant would wait out
 *    REG_WAIT_NS until its next call.
 *  - the master evens a dead worker's slot word when it reaps it.
 * Past REG_WAIT_NS (a writer stopped that long, or a dead writer's pid already reused), readers
 * take the copy as it is and a tenant-data writer takes the word over. */
#include "shm/registry.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lock-free 32-bit atomics are needed in shared memory");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "lock-free 64-bit atomics are needed in shared memory");

#define REG_MAGIC 0x534d5247u          /* "SMRG" */
#define REG_LAYOUT_VERSION 5u
#define REG_MAX_TENANTS_LIMIT 10000000u
#define REG_MAX_WORKERS_LIMIT 4096u
#define REG_ALIGN 64u
/* How long a reader waits for an odd change counter, or a locker for the allocation lock. */
#define REG_WAIT_NS 500000000L

enum {
    REQ_PAUSE = 1u,
    REQ_RESET = 2u,
    REQ_RESYNC_ALL = 4u,
    REQ_RESYNC_TABLES = 8u,
    /* Taken by the lock holder and being carried out (reg_tenant_take_requests) until
     * reg_tenant_requests_done: if the holder dies first, the master puts them back. */
    REQ_RESET_TAKEN = 16u,
    REQ_RESYNC_TAKEN = 32u
};
#define REQ_TAKEABLE (REQ_RESET | REQ_RESYNC_ALL | REQ_RESYNC_TABLES)
#define REQ_TAKEN (REQ_RESET_TAKEN | REQ_RESYNC_TAKEN)

const double reg_duration_bounds[REG_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

/* The last Summary's counts sit in what would be padding (after state, and with last_error
 * 8 bytes shorter than the view's), so the entry keeps its size. */
struct tenant_data {
    int32_t state;
    uint32_t summary_inserted;
    int64_t cycle_started, last_completed, last_call, last_error_at, last_hook_at;
    uint64_t calls, rows_inserted, rows_updated, rows_deleted, bytes;
    uint32_t summary_updated, summary_deleted;
    char last_operation[REG_OPERATION_MAX];
    char last_error[REG_ERROR_STORED];
    char last_hook[REG_HOOK_STORED];
};

/* The registry for 100,000 tenants (62.94 MiB) must stay under 64 MiB: a field added here
 * has to find room, as the Summary's counts did (a smaller entry is fine). */
_Static_assert(sizeof(struct tenant_data) <= 568, "a tenant entry's data grew");

struct tenant_entry {
    _Atomic uint32_t used;
    _Atomic uint32_t lock_owner;
    _Atomic uint32_t requests;
    _Atomic uint32_t hook_pid;         /* exclusive hook running for the tenant, 0 = none */
    _Atomic uint64_t change;           /* writer pid << 32 | change counter */
    char tenant[SM_TENANT_MAX + 1];
    struct tenant_data data;
};

struct worker_data {
    uint32_t generation;
    int32_t state;
    int64_t since;
    char tenant[SM_TENANT_MAX + 1];
    char operation[REG_OPERATION_MAX];
    struct worker_metrics metrics;
    char start_error[REG_START_ERROR_MAX];
};

struct worker_slot {
    _Atomic uint32_t in_use;
    _Atomic int32_t pid;
    _Atomic uint32_t connections;      /* a gauge of its own, outside the change counter */
    _Atomic uint64_t change;           /* change counter only (the master repairs it) */
    struct worker_data data;
};

struct resync_list {
    _Atomic uint64_t word;             /* owner << 32 | change counter */
    char tables[REG_RESYNC_MAX];
};

struct registry {
    uint32_t magic;
    uint32_t layout_version;
    uint64_t mapping_size;
    uint32_t max_tenants, max_workers, index_capacity;
    uint64_t index_offset, tenants_offset, workers_offset, resync_offset;
    _Atomic uint32_t generation;
    _Atomic uint32_t global_paused;
    _Atomic uint32_t alloc_lock;
    _Atomic uint32_t tenant_count;     /* entries reserved, in allocation order */
    _Atomic uint64_t folded_change;
    struct master_counters master;
    struct worker_metrics folded;      /* metrics of released worker slots */
};

/* ---- layout ---- */

static uint64_t align_up(uint64_t n)
{
    return (n + REG_ALIGN - 1) & ~(uint64_t)(REG_ALIGN - 1);
}

static _Atomic uint32_t *index_at(const struct registry *reg)
{
    return (_Atomic uint32_t *)((char *)reg + reg->index_offset);
}

static struct tenant_entry *entry_at(const struct registry *reg, uint32_t idx)
{
    return (struct tenant_entry *)((char *)reg + reg->tenants_offset) + idx;
}

static struct worker_slot *slot_at(const struct registry *reg, int slot)
{
    return (struct worker_slot *)((char *)reg + reg->workers_offset) + slot;
}

static struct resync_list *resync_at(const struct registry *reg, uint32_t i)
{
    return (struct resync_list *)((char *)reg + reg->resync_offset) + i;
}

static uint32_t index_capacity_for(uint32_t max_tenants)
{
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)max_tenants)
        cap *= 2;
    return cap;
}

size_t reg_size_for(uint32_t max_tenants, uint32_t max_workers)
{
    uint64_t size = align_up(sizeof(struct registry));
    size += align_up((uint64_t)index_capacity_for(max_tenants) * sizeof(uint32_t));
    size += align_up((uint64_t)max_tenants * sizeof(struct tenant_entry));
    size += align_up((uint64_t)max_workers * sizeof(struct worker_slot));
    size += align_up((uint64_t)REG_RESYNC_SLOTS * sizeof(struct resync_list));
    return (size_t)size;
}

struct registry *reg_create(uint32_t max_tenants, uint32_t max_workers, char *err, size_t errlen)
{
    if (max_tenants < 1 || max_tenants > REG_MAX_TENANTS_LIMIT) {
        snprintf(err, errlen, "registry: tenants.max must be 1 to %u, got %u",
                 REG_MAX_TENANTS_LIMIT, max_tenants);
        return NULL;
    }
    if (max_workers < 1 || max_workers > REG_MAX_WORKERS_LIMIT) {
        snprintf(err, errlen, "registry: workers must be 1 to %u, got %u",
                 REG_MAX_WORKERS_LIMIT, max_workers);
        return NULL;
    }
    size_t size = reg_size_for(max_tenants, max_workers);
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "registry: cannot map %zu bytes of shared memory: %s", size,
                 strerror(errno));
        return NULL;
    }
    /* The mapping is zero-filled: every lock, counter, flag and string starts at 0 / "". */
    struct registry *reg = map;
    reg->magic = REG_MAGIC;
    reg->layout_version = REG_LAYOUT_VERSION;
    reg->mapping_size = size;
    reg->max_tenants = max_tenants;
    reg->max_workers = max_workers;
    reg->index_capacity = index_capacity_for(max_tenants);
    reg->index_offset = align_up(sizeof(struct registry));
    reg->tenants_offset = reg->index_offset + align_up((uint64_t)reg->index_capacity * sizeof(uint32_t));
    reg->workers_offset = reg->tenants_offset + align_up((uint64_t)max_tenants * sizeof(struct tenant_entry));
    reg->resync_offset = reg->workers_offset + align_up((uint64_t)max_workers * sizeof(struct worker_slot));
    return reg;
}

void reg_destroy(struct registry *reg)
{
    if (reg)
        munmap(reg, (size_t)reg->mapping_size);
}

size_t reg_mapping_size(const struct registry *reg)
{
    return (size_t)reg->mapping_size;
}

uint32_t reg_max_tenants(const struct registry *reg)
{
    return reg->max_tenants;
}

uint32_t reg_max_workers(const struct registry *reg)
{
    return reg->max_workers;
}

/* ---- waiting, change counters, pid locks ---- */

struct waiter {
    unsigned spins;
    struct timespec deadline;
};

static void waiter_start(struct waiter *w)
{
    w->spins = 0;
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_nsec += REG_WAIT_NS;
    if (w->deadline.tv_nsec >= 1000000000L) {
        w->deadline.tv_sec++;
        w->deadline.tv_nsec -= 1000000000L;
    }
}

/* Yields the CPU; 0 while there is time left, -1 once the deadline has passed. */
static int waiter_pause(struct waiter *w)
{
    if (++w->spins < 64)
        return 0;
    sched_yield();
    if (w->spins % 256 != 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > w->deadline.tv_sec ||
        (now.tv_sec == w->deadline.tv_sec && now.tv_nsec >= w->deadline.tv_nsec))
        return -1;
    return 0;
}

#define CHANGE_WORD(writer, counter) (((uint64_t)(writer) << 32) | (uint32_t)(counter))

static uint32_t change_counter(uint64_t word)
{
    return (uint32_t)word;
}

/* write_begin and write_end are for words with one writer at a time by construction (a worker
 * slot, the master's folded metrics); they leave the writer half 0. */
static void write_begin(_Atomic uint64_t *change)
{
    uint64_t c = atomic_load_explicit(change, memory_order_relaxed);
    atomic_store_explicit(change, CHANGE_WORD(0, change_counter(c) + 1), memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(_Atomic uint64_t *change)
{
    uint64_t c = atomic_load_explicit(change, memory_order_relaxed);
    atomic_store_explicit(change, CHANGE_WORD(0, change_counter(c) + 1), memory_order_release);
}

/* Evens a counter left odd by a writer that died. */
static void write_repair(_Atomic uint64_t *change)
{
    if (change_counter(atomic_load_explicit(change, memory_order_relaxed)) & 1u)
        write_end(change);
}

/* Whether pid names a live process (EPERM: it exists, owned by someone else). */
static int pid_exists(uint32_t pid)
{
    return pid != 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* For a word seen odd while waiting: if its writer has died, evens it (by compare-and-swap, so
 * only the word as seen: a second repairer or a new writer makes it fail harmlessly). Asked
 * at the first yield and then at each deadline check, not at every spin: it costs a system
 * call. */
static void repair_if_writer_died(const struct waiter *w, _Atomic uint64_t *change, uint64_t seen)
{
    uint32_t writer = (uint32_t)(seen >> 32);
    if ((w->spins != 64 && w->spins % 256 != 0) || writer == 0 || pid_exists(writer))
        return;
    atomic_compare_exchange_strong_explicit(change, &seen,
                                            CHANGE_WORD(0, change_counter(seen) + 1),
                                            memory_order_release, memory_order_relaxed);
}

/* write_begin for a tenant entry's data, which has writers that do not hold the tenant lock
 * (see the file comment): takes the counter from even to odd, with this process's pid, by
 * compare-and-swap, waiting while another writer has it odd. A word whose writer died is
 * evened and then taken; one that stays odd past the wait is taken over as it is (write_end
 * makes it even). */
static void tenant_change_begin(_Atomic uint64_t *change)
{
    uint32_t self = (uint32_t)getpid();
    struct waiter w;
    waiter_start(&w);
    uint64_t c = atomic_load_explicit(change, memory_order_relaxed);
    for (;;) {
        if (!(change_counter(c) & 1u)) {
            if (atomic_compare_exchange_weak_explicit(change, &c,
                                                      CHANGE_WORD(self, change_counter(c) + 1),
                                                      memory_order_acquire, memory_order_relaxed))
                break;
            continue;
        }
        if (waiter_pause(&w) < 0) {
            if (atomic_compare_exchange_weak_explicit(change, &c,
                                                      CHANGE_WORD(self, change_counter(c)),
                                                      memory_order_acquire, memory_order_relaxed))
                break;
            continue;
        }
        repair_if_writer_died(&w, change, c);
        c = atomic_load_explicit(change, memory_order_relaxed);
    }
    atomic_thread_fence(memory_order_release);
}

/* Copies size bytes at src into dst consistently with the change word. */
static void read_consistent(_Atomic uint64_t *change, void *dst, const void *src, size_t size)
{
    struct waiter w;
    waiter_start(&w);
    for (;;) {
        uint64_t before = atomic_load_explicit(change, memory_order_acquire);
        if (!(change_counter(before) & 1u)) {
            memcpy(dst, src, size);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(change, memory_order_relaxed) == before)
                return;
        }
        if (waiter_pause(&w) < 0) {
            memcpy(dst, src, size);   /* the writer is stuck, or died unseen: take what is there */
            return;
        }
        if (change_counter(before) & 1u)
            repair_if_writer_died(&w, change, before);
    }
}

static int pid_lock_try(_Atomic uint32_t *word, pid_t self)
{
    uint32_t expected = 0;
    return atomic_compare_exchange_strong_explicit(word, &expected, (uint32_t)self,
                                                   memory_order_acquire, memory_order_relaxed) ? 0 : 1;
}

static void pid_lock_release(_Atomic uint32_t *word, pid_t self)
{
    uint32_t expected = (uint32_t)self;
    atomic_compare_exchange_strong_explicit(word, &expected, 0, memory_order_release,
                                            memory_order_relaxed);
}

/* The allocation lock is held for a few microseconds; -1 if it stays busy (its holder died
 * and has not been reaped yet). */
static int alloc_lock(struct registry *reg, pid_t self)
{
    struct waiter w;
    waiter_start(&w);
    while (pid_lock_try(&reg->alloc_lock, self) != 0)
        if (waiter_pause(&w) < 0)
            return -1;
    return 0;
}

/* Copies src into dst (size bytes with the NUL) as valid UTF-8: a byte that starts no valid
 * sequence becomes '?', and the text is cut only between characters. What is kept here is
 * shown as JSON, which refuses a string of invalid UTF-8 whole (a database's message in
 * another encoding, a message cut inside a character). */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t at = 0, len = src ? strlen(src) : 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(src + i, len - i, &cp);
        if (at + (n ? n : 1) >= size)
            break;
        if (n == 0) {
            dst[at++] = '?';
            i++;
        } else {
            memcpy(dst + at, src + i, n);
            at += n;
            i += n;
        }
    }
    if (size)
        dst[at] = '\0';
}

/* ---- tenants ---- */

static uint32_t tenant_hash(const char *ctx)
{
    uint32_t h = 2166136261u;                  /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)ctx; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Probes for ctx: 1 with *idx when present; 0 with *free_slot the index slot where it would go. */
static int index_lookup(const struct registry *reg, const char *ctx, uint32_t *idx, uint32_t *free_slot)
{
    _Atomic uint32_t *index = index_at(reg);
    uint32_t mask = reg->index_capacity - 1;
    for (uint32_t i = tenant_hash(ctx) & mask;; i = (i + 1) & mask) {
        uint32_t stored = atomic_load_explicit(&index[i], memory_order_acquire);
        if (stored == 0) {
            *free_slot = i;
            return 0;
        }
        if (strcmp(entry_at(reg, stored - 1)->tenant, ctx) == 0) {
            *idx = stored - 1;
            return 1;
        }
    }
}

/* Under the allocation lock: the entry for ctx, created unless another process did meanwhile. */
static int tenant_insert_locked(struct registry *reg, const char *ctx, uint32_t *idx, int *full)
{
    uint32_t free_slot;
    if (index_lookup(reg, ctx, idx, &free_slot))
        return 0;
    uint32_t n = atomic_load_explicit(&reg->tenant_count, memory_order_relaxed);
    if (n >= reg->max_tenants) {
        if (full)
            *full = 1;
        return -1;
    }
    /* Reserve first: an allocator dying half-way wastes an entry, never reuses one. */
    atomic_store_explicit(&reg->tenant_count, n + 1, memory_order_release);
    struct tenant_entry *e = entry_at(reg, n);
    copy_text(e->tenant, sizeof(e->tenant), ctx);
    e->data.state = TENANT_NEW;
    atomic_store_explicit(&e->used, 1, memory_order_release);
    atomic_store_explicit(&index_at(reg)[free_slot], n + 1, memory_order_release);
    *idx = n;
    return 0;
}

static int tenant_insert(struct registry *reg, const char *ctx, uint32_t *idx, int *full)
{
    pid_t self = getpid();
    if (alloc_lock(reg, self) != 0)
        return REG_ALLOC_BUSY;
    int rc = tenant_insert_locked(reg, ctx, idx, full);
    pid_lock_release(&reg->alloc_lock, self);
    return rc;
}

int reg_tenant_find(struct registry *reg, const char *ctx, int create, uint32_t *idx, int *full)
{
    if (full)
        *full = 0;
    if (!ctx || !*ctx || strlen(ctx) > SM_TENANT_MAX)
        return -1;
    uint32_t free_slot;
    if (index_lookup(reg, ctx, idx, &free_slot))
        return 0;
    if (!create)
        return -1;
    return tenant_insert(reg, ctx, idx, full);
}

uint32_t reg_tenant_count(const struct registry *reg)
{
    struct registry *r = (struct registry *)reg;
    return atomic_load_explicit(&r->tenant_count, memory_order_acquire);
}

static struct tenant_entry *used_entry(const struct registry *reg, uint32_t idx)
{
    if (idx >= reg->max_tenants)
        return NULL;
    struct tenant_entry *e = entry_at(reg, idx);
    return atomic_load_explicit(&e->used, memory_order_acquire) ? e : NULL;
}

int reg_tenant_read(const struct registry *reg, uint32_t idx, struct tenant_view *out)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (!e)
        return -1;
    struct tenant_data data;
    read_consistent(&e->change, &data, &e->data, sizeof(data));
    memset(out, 0, sizeof(*out));
    copy_text(out->tenant, sizeof(out->tenant), e->tenant);
    out->paused = reg_is_paused(reg, idx);
    out->state = out->paused ? TENANT_PAUSED : (enum tenant_state)data.state;
    out->cycle_started = data.cycle_started;
    out->last_completed = data.last_completed;
    out->last_summary = (struct cycle_summary){data.summary_inserted, data.summary_updated,
                                               data.summary_deleted};
    out->last_call = data.last_call;
    copy_text(out->last_operation, sizeof(out->last_operation), data.last_operation);
    out->calls = data.calls;
    out->rows_inserted = data.rows_inserted;
    out->rows_updated = data.rows_updated;
    out->rows_deleted = data.rows_deleted;
    out->bytes = data.bytes;
    copy_text(out->last_error, sizeof(out->last_error), data.last_error);
    out->last_error_at = data.last_error_at;
    copy_text(out->last_hook, sizeof(out->last_hook), data.last_hook);
    out->last_hook_at = data.last_hook_at;
    out->lock_owner = atomic_load_explicit(&e->lock_owner, memory_order_relaxed);
    return 0;
}

int reg_tenant_trylock(struct registry *reg, uint32_t idx, pid_t self)
{
    struct tenant_entry *e = used_entry(reg, idx);
    return e ? pid_lock_try(&e->lock_owner, self) : 1;
}

void reg_tenant_unlock(struct registry *reg, uint32_t idx, pid_t self)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (e)
        pid_lock_release(&e->lock_owner, self);
}

int reg_release_locks_of(struct registry *reg, pid_t pid)
{
    if (pid <= 0)
        return 0;
    int freed = 0;
    uint32_t n = reg_tenant_count(reg);
    for (uint32_t idx = 0; idx < n; idx++) {
        struct tenant_entry *e = used_entry(reg, idx);
        if (!e || atomic_load_explicit(&e->lock_owner, memory_order_acquire) != (uint32_t)pid)
            continue;
        /* The owner is dead: the master writes in its place (see the file comment). */
        tenant_change_begin(&e->change);
        snprintf(e->data.last_error, sizeof(e->data.last_error),
                 "a call was interrupted (worker %ld died)", (long)pid);
        e->data.last_error_at = (int64_t)time(NULL);
        e->data.state = TENANT_ERROR;
        write_end(&e->change);
        /* Operator requests it had taken are pending again, for the next call; the names of
         * a resync of named tables went with it, so every table is resynced. */
        uint32_t taken = atomic_fetch_and_explicit(&e->requests, ~(uint32_t)REQ_TAKEN,
                                                   memory_order_acq_rel);
        atomic_fetch_or_explicit(&e->requests,
                                 (taken & REQ_RESET_TAKEN ? REQ_RESET : 0u) |
                                     (taken & REQ_RESYNC_TAKEN ? REQ_RESYNC_ALL : 0u),
                                 memory_order_release);
        pid_lock_release(&e->lock_owner, pid);
        freed++;
    }
    pid_lock_release(&reg->alloc_lock, pid);
    return freed;
}

/* A write of a tenant's data; only the lock holder calls these (and hook_ran_unlocked).
 * NULL for an unused index. */
static struct tenant_entry *tenant_write_begin(struct registry *reg, uint32_t idx)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (e)
        tenant_change_begin(&e->change);
    return e;
}

void reg_tenant_call_started(struct registry *reg, uint32_t idx, const char *operation, int64_t now)
{
    struct tenant_entry *e = tenant_write_begin(reg, idx);
    if (!e)
        return;
    e->data.last_call = now;
    copy_text(e->data.last_operation, sizeof(e->data.last_operation), operation);
    write_end(&e->change);
}

void reg_tenant_cycle_started(struct registry *reg, uint32_t idx, int64_t now)
{
    struct tenant_entry *e = tenant_write_begin(reg, idx);
    if (!e)
        return;
    e->data.cycle_started = now;
    e->data.state = TENANT_IN_CYCLE;
    write_end(&e->change);
}

void reg_tenant_call_done(struct registry *reg, uint32_t idx, uint64_t inserted, uint64_t updated,
                          uint64_t deleted, uint64_t bytes, const char *error, int64_t now)
{
    struct tenant_entry *e = tenant_write_begin(reg, idx);
    if (!e)
        return;
    e->data.calls++;
    e->data.rows_inserted += inserted;
    e->data.rows_updated += updated;
    e->data.rows_deleted += deleted;
    e->data.bytes += bytes;
    if (error) {
        copy_text(e->data.last_error, sizeof(e->data.last_error), error);
        e->data.last_error_at = now;
        e->data.state = TENANT_ERROR;
    } else if (e->data.state == TENANT_ERROR || e->data.state == TENANT_NEW) {
        e->data.state = TENANT_IN_CYCLE;
    }
    write_end(&e->change);
}

static uint32_t saturated(uint64_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

void reg_tenant_cycle_completed(struct registry *reg, uint32_t idx, int64_t now,
                                const struct cycle_summary *summary)
{
    struct tenant_entry *e = tenant_write_begin(reg, idx);
    if (!e)
        return;
    e->data.last_completed = now;
    e->data.summary_inserted = saturated(summary->inserted);
    e->data.summary_updated = saturated(summary->updated);
    e->data.summary_deleted = saturated(summary->deleted);
    e->data.state = TENANT_IDLE;
    write_end(&e->change);
}

void reg_tenant_hook_ran(struct registry *reg, uint32_t idx, const char *text, int failed, int64_t now)
{
    struct tenant_entry *e = tenant_write_begin(reg, idx);
    if (!e)
        return;
    copy_text(e->data.last_hook, sizeof(e->data.last_hook), text);
    e->data.last_hook_at = now;
    if (failed) {
        copy_text(e->data.last_error, sizeof(e->data.last_error), text);
        e->data.last_error_at = now;
    }
    write_end(&e->change);
}

/* ---- hook runs (hooks/) ---- */

void reg_tenant_hook_ran_unlocked(struct registry *reg, uint32_t idx, const char *text, int failed,
                                  int64_t now)
{
    reg_tenant_hook_ran(reg, idx, text, failed, now);   /* tenant_change_begin excludes other writers */
}

/* Whether pid names a live hook supervisor: a supervisor killed before it cleared the word
 * (SIGKILL, the OOM killer) leaves its pid there, and once any other process has that pid the
 * tenant's hook would be skipped for as long as that one lives. A /proc that cannot be read
 * (mounted hidepid) leaves the pid's existence to decide. */
static int hook_holder_alive(uint32_t pid)
{
    if (!pid_exists(pid))
        return 0;
    char path[64], name[32] = "";
    snprintf(path, sizeof(path), "/proc/%u/comm", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 1;
    int named = fgets(name, sizeof(name), f) != NULL;
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    return !named || strcmp(name, REG_HOOK_PROCESS_NAME) == 0;
}

int reg_tenant_hook_claim(struct registry *reg, uint32_t idx, pid_t self, pid_t *holder)
{
    if (holder)
        *holder = 0;
    struct tenant_entry *e = used_entry(reg, idx);
    if (!e)
        return 1;
    uint32_t seen = atomic_load_explicit(&e->hook_pid, memory_order_acquire);
    for (;;) {
        if (seen != 0 && seen != (uint32_t)self && hook_holder_alive(seen)) {
            if (holder)
                *holder = (pid_t)seen;
            return 1;
        }
        /* Free, or left by a process that died without clearing it. */
        if (atomic_compare_exchange_strong_explicit(&e->hook_pid, &seen, (uint32_t)self,
                                                    memory_order_acq_rel, memory_order_acquire))
            return 0;
    }
}

void reg_tenant_hook_release(struct registry *reg, uint32_t idx, pid_t self)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (e)
        pid_lock_release(&e->hook_pid, self);
}

pid_t reg_tenant_hook_running(const struct registry *reg, uint32_t idx)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (!e)
        return 0;
    uint32_t pid = atomic_load_explicit(&e->hook_pid, memory_order_acquire);
    return hook_holder_alive(pid) ? (pid_t)pid : 0;
}

/* ---- resync lists (written by the master) ---- */

#define RESYNC_WORD(owner, change) (((uint64_t)(owner) << 32) | (uint32_t)(change))
#define RESYNC_OWNER(word) ((uint32_t)((word) >> 32))

static struct resync_list *resync_find(const struct registry *reg, uint32_t owner, uint64_t *word)
{
    for (uint32_t i = 0; i < REG_RESYNC_SLOTS; i++) {
        struct resync_list *l = resync_at(reg, i);
        *word = atomic_load_explicit(&l->word, memory_order_acquire);
        if (RESYNC_OWNER(*word) == owner)
            return l;
    }
    return NULL;
}

static int resync_has_table(const char *list, const char *table)
{
    size_t tlen = strlen(table);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == tlen && strncasecmp(p, table, len) == 0)
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Adds table to the tenant's pending list (master). 0, or REG_RESYNC_LIST_FULL or
 * REG_RESYNC_NO_LIST when no room is left. */
static int resync_add(struct registry *reg, uint32_t idx, const char *table)
{
    uint32_t owner = idx + 1;
    uint64_t word;
    struct resync_list *l = resync_find(reg, owner, &word);
    if (l) {
        if (resync_has_table(l->tables, table))
            return 0;
        size_t used = strlen(l->tables);
        if (used + 1 + strlen(table) >= sizeof(l->tables))
            return REG_RESYNC_LIST_FULL;
        /* Becomes odd only if the taker has not freed it meanwhile. */
        if (atomic_compare_exchange_strong_explicit(&l->word, &word, word + 1,
                                                    memory_order_relaxed, memory_order_relaxed)) {
            atomic_thread_fence(memory_order_release);
            snprintf(l->tables + used, sizeof(l->tables) - used, ",%s", table);
            atomic_store_explicit(&l->word, word + 2, memory_order_release);
            return 0;
        }
    }
    l = resync_find(reg, 0, &word);
    if (!l)
        return REG_RESYNC_NO_LIST;
    if (strlen(table) >= sizeof(l->tables))
        return REG_RESYNC_LIST_FULL;
    copy_text(l->tables, sizeof(l->tables), table);
    atomic_store_explicit(&l->word, RESYNC_WORD(owner, (uint32_t)word + 2), memory_order_release);
    return 0;
}

/* Copies and frees the tenant's pending list (lock holder). "" when there is none. */
static void resync_take(struct registry *reg, uint32_t idx, char *out, size_t outlen)
{
    uint64_t word;
    struct resync_list *l = resync_find(reg, idx + 1, &word);
    out[0] = '\0';
    while (l) {
        if (!(word & 1u)) {
            memcpy(out, l->tables, outlen < sizeof(l->tables) ? outlen : sizeof(l->tables));
            out[outlen - 1] = '\0';
            atomic_thread_fence(memory_order_acquire);
            if (atomic_compare_exchange_strong_explicit(&l->word, &word,
                                                        RESYNC_WORD(0, (uint32_t)word + 2),
                                                        memory_order_acq_rel, memory_order_acquire))
                return;
        } else {
            sched_yield();
            word = atomic_load_explicit(&l->word, memory_order_acquire);
        }
    }
}

void reg_tenant_take_requests(struct registry *reg, uint32_t idx, struct tenant_requests *out)
{
    memset(out, 0, sizeof(*out));
    struct tenant_entry *e = used_entry(reg, idx);
    if (!e)
        return;
    uint32_t bits = atomic_load_explicit(&e->requests, memory_order_acquire), taken;
    do
        taken = (bits & REQ_RESET ? REQ_RESET_TAKEN : 0u) |
                (bits & (REQ_RESYNC_ALL | REQ_RESYNC_TABLES) ? REQ_RESYNC_TAKEN : 0u);
    while (!atomic_compare_exchange_weak_explicit(&e->requests, &bits, (bits & ~REQ_TAKEABLE) | taken,
                                                  memory_order_acq_rel, memory_order_acquire));
    out->reset = (bits & REQ_RESET) != 0;
    if (bits & REQ_RESYNC_TABLES)
        resync_take(reg, idx, out->resync_tables, sizeof(out->resync_tables));
    if (bits & REQ_RESYNC_ALL)
        copy_text(out->resync_tables, sizeof(out->resync_tables), "*");
    out->resync = out->resync_tables[0] != '\0';
}

/* Copies the tenant's pending list without taking it (master: the only writer of lists, so only
 * a taker can change it meanwhile). -1 if there is none, or it was taken during the copy. */
static int resync_peek(const struct registry *reg, uint32_t idx, char *out, size_t outlen)
{
    uint64_t word;
    struct resync_list *l = resync_find(reg, idx + 1, &word);
    if (!l || (word & 1u))
        return -1;
    memcpy(out, l->tables, outlen < sizeof(l->tables) ? outlen : sizeof(l->tables));
    out[outlen - 1] = '\0';
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&l->word, memory_order_relaxed) == word ? 0 : -1;
}

int reg_tenant_pending(const struct registry *reg, uint32_t idx, struct tenant_requests *out)
{
    memset(out, 0, sizeof(*out));
    struct tenant_entry *e = used_entry(reg, idx);
    if (!e)
        return 0;
    uint32_t bits = atomic_load_explicit(&e->requests, memory_order_acquire);
    out->reset = (bits & (REQ_RESET | REQ_RESET_TAKEN)) != 0;
    if ((bits & (REQ_RESYNC_ALL | REQ_RESYNC_TAKEN)) ||
        ((bits & REQ_RESYNC_TABLES) &&
         resync_peek(reg, idx, out->resync_tables, sizeof(out->resync_tables)) != 0))
        copy_text(out->resync_tables, sizeof(out->resync_tables), "*");
    out->resync = out->resync_tables[0] != '\0';
    return out->reset || out->resync;
}

void reg_tenant_requests_done(struct registry *reg, uint32_t idx)
{
    struct tenant_entry *e = used_entry(reg, idx);
    if (e)
        atomic_fetch_and_explicit(&e->requests, ~(uint32_t)REQ_TAKEN, memory_order_release);
}

/* ---- operator requests (master) ---- */

int reg_set_paused(struct registry *reg, const char *ctx, int paused)
{
    if (!ctx) {
        atomic_store_explicit(&reg->global_paused, paused ? 1u : 0u, memory_order_release);
        return 0;
    }
    uint32_t idx;
    int rc = reg_tenant_find(reg, ctx, paused, &idx, NULL);
    if (rc != 0)
        return rc;
    struct tenant_entry *e = entry_at(reg, idx);
    if (paused)
        atomic_fetch_or_explicit(&e->requests, REQ_PAUSE, memory_order_release);
    else
        atomic_fetch_and_explicit(&e->requests, ~(uint32_t)REQ_PAUSE, memory_order_release);
    return 0;
}

int reg_tenant_pause_flag(const struct registry *reg, uint32_t idx)
{
    struct tenant_entry *e = used_entry(reg, idx);
    return e && (atomic_load_explicit(&e->requests, memory_order_acquire) & REQ_PAUSE) != 0;
}

int reg_global_paused(const struct registry *reg)
{
    struct registry *r = (struct registry *)reg;
    return atomic_load_explicit(&r->global_paused, memory_order_acquire) != 0;
}

int reg_is_paused(const struct registry *reg, uint32_t idx)
{
    return reg_global_paused(reg) || reg_tenant_pause_flag(reg, idx);
}

int reg_request_resync(struct registry *reg, const char *ctx, const char *table)
{
    uint32_t idx;
    int found = reg_tenant_find(reg, ctx, 1, &idx, NULL);
    if (found != 0)
        return found;
    struct tenant_entry *e = entry_at(reg, idx);
    if (!table) {
        atomic_fetch_or_explicit(&e->requests, REQ_RESYNC_ALL, memory_order_release);
        return 0;
    }
    if (atomic_load_explicit(&e->requests, memory_order_acquire) & REQ_RESYNC_ALL)
        return 0;
    int rc = resync_add(reg, idx, table);
    if (rc != 0)
        return rc;
    atomic_fetch_or_explicit(&e->requests, REQ_RESYNC_TABLES, memory_order_release);
    return 0;
}

int reg_request_reset(struct registry *reg, const char *ctx)
{
    uint32_t idx;
    int rc = reg_tenant_find(reg, ctx, 1, &idx, NULL);
    if (rc != 0)
        return rc;
    atomic_fetch_or_explicit(&entry_at(reg, idx)->requests, REQ_RESET, memory_order_release);
    return 0;
}

/* ---- workers ---- */

uint32_t reg_generation(const struct registry *reg)
{
    struct registry *r = (struct registry *)reg;
    return atomic_load_explicit(&r->generation, memory_order_acquire);
}

void reg_set_generation(struct registry *reg, uint32_t generation)
{
    atomic_store_explicit(&reg->generation, generation, memory_order_release);
}

static struct worker_slot *valid_slot(const struct registry *reg, int slot)
{
    if (slot < 0 || (uint32_t)slot >= reg->max_workers)
        return NULL;
    struct worker_slot *s = slot_at(reg, slot);
    return atomic_load_explicit(&s->in_use, memory_order_acquire) ? s : NULL;
}

int reg_worker_claim(struct registry *reg, uint32_t generation)
{
    for (uint32_t i = 0; i < reg->max_workers; i++) {
        struct worker_slot *s = slot_at(reg, (int)i);
        if (atomic_load_explicit(&s->in_use, memory_order_acquire))
            continue;
        write_begin(&s->change);
        memset(&s->data, 0, sizeof(s->data));
        s->data.generation = generation;
        s->data.state = WORKER_STARTING;
        s->data.since = (int64_t)time(NULL);
        write_end(&s->change);
        atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
        atomic_store_explicit(&s->connections, 0, memory_order_relaxed);
        atomic_store_explicit(&s->in_use, 1, memory_order_release);
        return (int)i;
    }
    return -1;
}

void reg_worker_set_pid(struct registry *reg, int slot, pid_t pid)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (s)
        atomic_store_explicit(&s->pid, (int32_t)pid, memory_order_release);
}

static void metrics_add(struct worker_metrics *sum, const struct worker_metrics *m)
{
    for (int op = 0; op < REG_OP_COUNT; op++) {
        sum->calls_ok[op] += m->calls_ok[op];
        sum->calls_fault[op] += m->calls_fault[op];
        sum->duration_sum[op] += m->duration_sum[op];
        for (int b = 0; b <= REG_DURATION_BUCKETS; b++)
            sum->duration_bucket[op][b] += m->duration_bucket[op][b];
    }
    sum->rows_inserted += m->rows_inserted;
    sum->rows_updated += m->rows_updated;
    sum->rows_deleted += m->rows_deleted;
    sum->rows_skipped += m->rows_skipped;
    sum->bytes_in += m->bytes_in;
}

void reg_worker_release(struct registry *reg, int slot)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (!s)
        return;
    /* One change of folded_change covers the fold and the clearing, so a reader of the sum
     * never counts the slot twice or not at all. */
    write_begin(&reg->folded_change);
    write_repair(&s->change);
    write_begin(&s->change);
    metrics_add(&reg->folded, &s->data.metrics);
    memset(&s->data, 0, sizeof(s->data));
    write_end(&s->change);
    atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->in_use, 0, memory_order_release);
    write_end(&reg->folded_change);
}

void reg_worker_state(struct registry *reg, int slot, enum worker_state state, const char *tenant,
                      const char *operation, int64_t now)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (!s)
        return;
    write_begin(&s->change);
    s->data.state = (int32_t)state;
    copy_text(s->data.tenant, sizeof(s->data.tenant), tenant);
    copy_text(s->data.operation, sizeof(s->data.operation), operation);
    s->data.since = now;
    write_end(&s->change);
}

static int duration_bucket(double seconds)
{
    for (int b = 0; b < REG_DURATION_BUCKETS; b++)
        if (seconds <= reg_duration_bounds[b])
            return b;
    return REG_DURATION_BUCKETS;
}

void reg_worker_call_done(struct registry *reg, int slot, enum reg_op op, int fault,
                          double seconds, uint64_t bytes_in, uint64_t inserted, uint64_t updated,
                          uint64_t deleted, uint64_t skipped)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (!s)
        return;
    if ((unsigned)op >= REG_OP_COUNT)
        op = REG_OP_OTHER;
    if (!(seconds >= 0))
        seconds = 0;
    struct worker_metrics *m = &s->data.metrics;
    write_begin(&s->change);
    if (fault)
        m->calls_fault[op]++;
    else
        m->calls_ok[op]++;
    m->duration_bucket[op][duration_bucket(seconds)]++;
    m->duration_sum[op] += seconds;
    m->bytes_in += bytes_in;
    m->rows_inserted += inserted;
    m->rows_updated += updated;
    m->rows_deleted += deleted;
    m->rows_skipped += skipped;
    write_end(&s->change);
}

int reg_worker_read(const struct registry *reg, int slot, struct worker_view *out)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (!s)
        return -1;
    struct worker_data data;
    read_consistent(&s->change, &data, &s->data, sizeof(data));
    memset(out, 0, sizeof(*out));
    out->pid = (pid_t)atomic_load_explicit(&s->pid, memory_order_acquire);
    out->generation = data.generation;
    out->state = (enum worker_state)data.state;
    copy_text(out->tenant, sizeof(out->tenant), data.tenant);
    copy_text(out->operation, sizeof(out->operation), data.operation);
    out->since = data.since;
    for (int op = 0; op < REG_OP_COUNT; op++) {
        out->calls += data.metrics.calls_ok[op] + data.metrics.calls_fault[op];
        out->faults += data.metrics.calls_fault[op];
    }
    out->bytes = data.metrics.bytes_in;
    out->connections = atomic_load_explicit(&s->connections, memory_order_relaxed);
    copy_text(out->start_error, sizeof(out->start_error), data.start_error);
    return 0;
}

void reg_worker_start_failed(struct registry *reg, int slot, const char *why)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (!s)
        return;
    write_begin(&s->change);
    copy_text(s->data.start_error, sizeof(s->data.start_error), why);
    write_end(&s->change);
}

void reg_worker_connections(struct registry *reg, int slot, uint32_t n)
{
    struct worker_slot *s = valid_slot(reg, slot);
    if (s)
        atomic_store_explicit(&s->connections, n, memory_order_relaxed);
}

uint32_t reg_workers_fewest_connections(const struct registry *reg, int self, uint32_t generation)
{
    uint32_t fewest = UINT32_MAX;
    for (uint32_t i = 0; i < reg->max_workers; i++) {
        struct worker_slot *s = slot_at(reg, (int)i);
        if ((int)i == self || !atomic_load_explicit(&s->in_use, memory_order_acquire))
            continue;
        struct worker_data head;   /* generation and state only, not the metrics behind them */
        read_consistent(&s->change, &head, &s->data, offsetof(struct worker_data, since));
        if (head.generation != generation || head.state == WORKER_STOPPING ||
            head.state == WORKER_STARTING)
            continue;   /* not accepting */
        uint32_t n = atomic_load_explicit(&s->connections, memory_order_relaxed);
        if (n < fewest)
            fewest = n;
    }
    return fewest;
}

void reg_metrics_sum(const struct registry *reg, struct worker_metrics *out)
{
    /* Only the master folds, and the master is also who asks for the sum. */
    struct registry *r = (struct registry *)reg;
    for (;;) {
        uint64_t before = atomic_load_explicit(&r->folded_change, memory_order_acquire);
        if (!(change_counter(before) & 1u)) {
            memcpy(out, &r->folded, sizeof(*out));
            for (uint32_t i = 0; i < r->max_workers; i++) {
                struct worker_slot *s = valid_slot(r, (int)i);
                if (!s)
                    continue;
                struct worker_metrics m;
                read_consistent(&s->change, &m, &s->data.metrics, sizeof(m));
                metrics_add(out, &m);
            }
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&r->folded_change, memory_order_relaxed) == before)
                return;
        }
        sched_yield();
    }
}

struct master_counters *reg_master_counters(struct registry *reg)
{
    return &reg->master;
}

/* ---- names ---- */

const char *reg_op_name(enum reg_op op)
{
    static const char *const names[REG_OP_COUNT] = {
        "Authenticate", "TableSchema", "Wipe", "RowData", "ReplicationCompleted", "other"
    };
    return (unsigned)op < REG_OP_COUNT ? names[op] : "other";
}

const char *reg_tenant_state_name(enum tenant_state state)
{
    static const char *const names[] = { "new", "in_cycle", "idle", "paused", "error" };
    return (unsigned)state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}

const char *reg_worker_state_name(enum worker_state state)
{
    static const char *const names[] = { "empty", "starting", "idle", "busy", "stopping" };
    return (unsigned)state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}
