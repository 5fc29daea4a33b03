/* proto/service: one mirroring call, from request body to response body (see service.h).
 *
 * Order of checks is protocol section 6's: size (the worker's HTTP layer), envelope, token,
 * operation, body; then the tenant's registry entry and lock, pending operator requests, the
 * store. Registry writes: this file writes the tenant entry only while it holds the tenant's
 * lock, and only this worker's own slot.
 *
 * A large RowData body is applied while it is parsed (stream_rows): the parse runs on helper
 * threads (proto/rowstream; two at once for a body of 128 KiB and more) and this thread checks
 * and applies each row as it is read, in the call's transaction. That starts only where the
 * sequential order would apply the rows too (one token that verifies, RowData, a tenant already
 * registered, its lock free, not paused; the token and the tenant's entry are then not looked
 * up again); the transaction is committed only when the finished request then passes every
 * other check of the sequential order. Any other outcome rolls it back and the call is
 * answered the sequential way, so that its answer is the same whichever path ran. */
#include "proto/service.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "hooks/hooks.h"
#include "proto/fault.h"
#include "proto/rowstream.h"
#include "proto/schema.h"
#include "proto/soap.h"
#include "proto/soap_xml.h"
#include "proto/token.h"
#include "store/store.h"

#define BUILD_NAME "somirrord/" PACKAGE_VERSION
/* Smaller bodies are parsed, then applied: a thread would cost more than it saves. */
#define STREAM_MIN_BYTES (64 * 1024)

struct service {
    const struct config *cfg;
    const struct keyring *keys;
    struct registry *reg;
    int slot;
    struct store *store;
    struct hooks *hooks;
    struct token_policy policy;
    size_t parse_parts;          /* see parse_parts */
};

enum call_phase { PHASE_NEED_LOCK, PHASE_DONE };

struct row_counts {
    uint64_t inserted, updated, deleted, skipped;
};

struct call {
    struct service *svc;
    char peer[96];               /* the client, for the log */
    struct arena arena;
    struct soap_request req;
    struct token_claims claims;
    enum call_phase phase;
    uint32_t tenant_idx;
    double started;              /* monotonic seconds */
    double lock_deadline;
    size_t body_len;
    int http_status;
    int faulted;
    int accounted;
    struct fault fault;          /* the fault answered, when faulted */
    struct table_state *states;  /* RowData answers, for accounting */
    size_t nstates;
    struct buf response;
    /* RowData applied while parsed (stream_rows): the open transaction, the tenant's lock held
     * meanwhile, and the arena its checks allocate in (the parse owns the other one). */
    struct store_rows *streamed;
    int lock_held;
    struct arena stream_arena;
    /* Why a RowData call could not be streamed when its store would not open or begin (a lock
     * held elsewhere, a lost server): run_row_data answers it rather than try, and wait, again. */
    struct fault begin_fault;
};

/* How many parts a large body is read in at once: one parser thread per CPU the worker may run
 * on, up to ROWSTREAM_PARTS_MAX. More parsers than CPUs would only take turns. */
static size_t parse_parts(void)
{
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0)
        return 2;
    int n = CPU_COUNT(&cpus);
    return n < 1 ? 1 : n > ROWSTREAM_PARTS_MAX ? ROWSTREAM_PARTS_MAX : (size_t)n;
}

struct service *service_new(const struct config *cfg, const struct keyring *keys,
                            struct registry *reg, int worker_slot, char *err, size_t errlen)
{
    struct store *store = store_new(cfg, err, errlen);
    if (!store)
        return NULL;
    struct service *svc = xcalloc(1, sizeof(*svc));
    svc->cfg = cfg;
    svc->keys = keys;
    svc->reg = reg;
    svc->slot = worker_slot;
    svc->store = store;
    svc->hooks = hooks_new(cfg, reg);
    svc->policy.certs = keys->certs;
    svc->policy.ncerts = keys->ncerts;
    svc->policy.issuer = cfg->vendor_issuer;
    svc->policy.app_id = cfg->app_id;
    svc->policy.clock_skew = cfg->clock_skew;
    svc->policy.allow = &cfg->tenants_allow;
    svc->parse_parts = parse_parts();
    return svc;
}

void service_free(struct service *svc)
{
    if (!svc)
        return;
    hooks_free(svc->hooks);
    store_free(svc->store);
    free(svc);
}

void service_close_idle(struct service *svc)
{
    store_close_idle(svc->store, monotonic_ms());
}

/* ---- answers ---- */

static void answer_fault(struct call *call, const struct fault *f)
{
    buf_reset(&call->response);
    soap_write_fault(&call->response, f);
    call->http_status = fault_http_status(f->code);
    call->faulted = 1;
    call->fault = *f;
    call->phase = PHASE_DONE;
    if (fault_is_server(f->code))
        log_warn("%s fault %s: %s (client %s)", soap_op_name(call->req.op), fault_code_name(f->code),
                 f->message, call->peer);
    else
        log_info("fault %s: %s (client %s)", fault_code_name(f->code), f->message, call->peer);
}

/* Authenticate's own failure form (4.1): HTTP 200, IsSuccessful false. */
static void answer_auth_refused(struct call *call, const struct fault *f)
{
    char message[sizeof(f->message) + 32];
    snprintf(message, sizeof(message), "%s: %s", fault_code_name(f->code), f->message);
    struct auth_answer a = {
        .ok = 0, .error_message = message, .signed_app_token = "", .build = BUILD_NAME,
        .client_state = call->req.client_state, .client_state_len = call->req.client_state_len,
    };
    buf_reset(&call->response);
    soap_write_authenticate(&call->response, &a);
    call->http_status = 200;
    call->faulted = 1;
    call->fault = *f;
    call->phase = PHASE_DONE;
    log_info("Authenticate refused: %s (client %s)", message, call->peer);
}

/* ---- the operations, run with the tenant's lock held ---- */

static int paused(const struct call *call)
{
    return reg_global_paused(call->svc->reg) || reg_is_paused(call->svc->reg, call->tenant_idx);
}

static char **split_tables(struct arena *arena, const char *list, size_t *n)
{
    size_t count = 1;
    for (const char *p = list; *p; p++)
        count += *p == ',';
    char **names = arena_calloc(arena, count, sizeof(*names));
    *n = 0;
    const char *start = list;
    for (const char *p = list;; p++) {
        if (*p == ',' || *p == '\0') {
            if (p > start)
                names[(*n)++] = arena_strndup(arena, start, (size_t)(p - start));
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return names;
}

/* Carries out the requests taken (see carry_out_requests); 0, or -1 with f. */
static int carry_out(struct call *call, const struct tenant_requests *rq, struct fault *f)
{
    struct service *svc = call->svc;
    const char *tenant = call->claims.tenant;
    if (rq->reset) {
        log_info("operator reset: dropping and provisioning the mirror anew");
        if (store_reset(svc->store, tenant, f) != 0) {
            reg_request_reset(svc->reg, tenant);
            log_error("operator reset failed (%s); it stays pending", f->message);
            return -1;
        }
        /* Done: a worker that dies now must not reset again. A resync asked for with it has
         * nothing left to do: every table is new. */
        reg_tenant_requests_done(svc->reg, call->tenant_idx);
        return 0;
    }
    if (rq->resync) {
        int all = strcmp(rq->resync_tables, "*") == 0;
        size_t n = 0;
        char **names = all ? NULL : split_tables(&call->arena, rq->resync_tables, &n);
        log_info("operator resync of %s", all ? "every table" : rq->resync_tables);
        struct store_tenant *t = store_tenant(svc->store, tenant, f);
        if (!t || store_resync(t, names, n, f) != 0) {
            reg_request_resync(svc->reg, tenant, NULL);
            log_error("operator resync of %s failed (%s); %s", all ? "every table" : rq->resync_tables,
                      f->message, all ? "it stays pending" : "every table is resynced at the next call");
            return -1;
        }
    }
    return 0;
}

/* Operator requests (protocol 7) are carried out at Authenticate and TableSchema only. One
 * that fails stays pending for the next call (setting it again is one atomic bit); the names
 * of a resync of named tables cannot be kept by a worker (the master adds them), so such a
 * resync stays pending as one of every table. If the worker dies meanwhile, the master puts
 * them back (reg_release_locks_of). */
static int carry_out_requests(struct call *call, struct fault *f)
{
    struct tenant_requests rq;
    reg_tenant_take_requests(call->svc->reg, call->tenant_idx, &rq);
    int rc = carry_out(call, &rq, f);
    reg_tenant_requests_done(call->svc->reg, call->tenant_idx);
    return rc;
}

static void run_authenticate(struct call *call, struct fault *f)
{
    struct service *svc = call->svc;
    int dnr = paused(call);
    if (!dnr) {
        if (carry_out_requests(call, f) != 0 || !store_tenant(svc->store, call->claims.tenant, f))
            return;
        reg_tenant_cycle_started(svc->reg, call->tenant_idx, (int64_t)time(NULL));
    }
    struct buf token = BUF_INIT;
    if (appsign_create(svc->keys->app_key, call->claims.nonce, time(NULL), &token) != 0) {
        buf_free(&token);
        fault_set(f, FAULT_INTERNAL, "could not sign the application token");
        return;
    }
    struct auth_answer a = {
        .ok = 1, .error_message = "", .signed_app_token = token.data, .build = BUILD_NAME,
        .client_state = call->req.client_state, .client_state_len = call->req.client_state_len,
        .do_not_replicate = dnr,
    };
    soap_write_authenticate(&call->response, &a);
    buf_free(&token);
}

static int refuse_if_paused(struct call *call, struct fault *f)
{
    if (!paused(call))
        return 0;
    fault_set(f, FAULT_TENANT_PAUSED, "tenant %s is paused by the operator", call->claims.tenant);
    return -1;
}

static int refuse_blocked(const struct call *call, const char *table, struct fault *f)
{
    return table_refuse_blocked(table, &call->svc->cfg->block_tables, f);
}

static void run_table_schema(struct call *call, struct fault *f)
{
    struct service *svc = call->svc;
    if (refuse_if_paused(call, f) != 0 || carry_out_requests(call, f) != 0)
        return;
    struct store_tenant *t = store_tenant(svc->store, call->claims.tenant, f);
    if (!t)
        return;
    for (size_t i = 0; i < call->req.ntables; i++)
        schema_prepare(&call->req.tables[i], call->claims.tenant, &svc->cfg->block_tables,
                       &call->arena);
    struct table_state *states;
    size_t n;
    if (store_table_schema(t, call->req.tables, call->req.ntables, &call->arena, &states, &n, f) != 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (states[i].change != CHANGE_UNCHANGED)
            log_info("table %s: %s%s%s", states[i].name, table_change_name(states[i].change),
                     states[i].error ? ": " : "", states[i].error ? states[i].error : "");
    hooks_after_table_schema(svc->hooks, t, call->claims.tenant, call->tenant_idx, states, n);
    soap_write_table_schema(&call->response, states, n);
}

static void run_wipe(struct call *call, struct fault *f)
{
    struct service *svc = call->svc;
    if (refuse_if_paused(call, f) != 0)
        return;
    for (size_t i = 0; i < call->req.nwipe; i++)
        if (refuse_blocked(call, call->req.wipe_tables[i], f) != 0)
            return;
    struct store_tenant *t = store_tenant(svc->store, call->claims.tenant, f);
    if (!t)
        return;
    struct table_state *states;
    if (store_wipe(t, call->req.wipe_tables, call->req.nwipe, &call->arena, &states, f) != 0)
        return;
    hooks_after_wipe(svc->hooks, t, call->claims.tenant, call->tenant_idx, states, call->req.nwipe);
    soap_write_wipe(&call->response, states, call->req.nwipe);
}

static void run_row_data(struct call *call, struct fault *f)
{
    struct service *svc = call->svc;
    struct store_rows *streamed = call->streamed;
    call->streamed = NULL;
    if (refuse_if_paused(call, f) != 0) {
        if (streamed)
            store_rows_end(streamed, 0, NULL, NULL, f);
        return;
    }
    if (streamed) {   /* every row is in, every batch's table was checked as it came */
        if (store_rows_end(streamed, 1, &call->states, &call->nstates, f) == 0)
            soap_write_row_data(&call->response, call->states, call->nstates);
        return;
    }
    for (size_t i = 0; i < call->req.nbatches; i++)
        if (refuse_blocked(call, call->req.batches[i].table, f) != 0)
            return;
    if (call->begin_fault.code != FAULT_NONE) {
        *f = call->begin_fault;
        return;
    }
    struct store_tenant *t = store_tenant(svc->store, call->claims.tenant, f);
    if (!t)
        return;
    if (store_row_data(t, call->req.batches, call->req.nbatches, &call->arena, &call->states,
                       &call->nstates, f) != 0)
        return;
    soap_write_row_data(&call->response, call->states, call->nstates);
}

static void run_replication_completed(struct call *call, struct fault *f)
{
    if (refuse_if_paused(call, f) != 0)
        return;
    struct cycle_summary sum = {0, 0, 0};
    for (size_t i = 0; i < call->req.nsummary; i++) {
        sum.inserted += (uint64_t)call->req.summary[i].inserted;
        sum.updated += (uint64_t)call->req.summary[i].updated;
        sum.deleted += (uint64_t)call->req.summary[i].deleted;
    }
    reg_tenant_cycle_completed(call->svc->reg, call->tenant_idx, (int64_t)time(NULL), &sum);
    log_info("cycle completed: %zu tables, sender counts %llu inserted, %llu updated, %llu deleted",
             call->req.nsummary, (unsigned long long)sum.inserted, (unsigned long long)sum.updated,
             (unsigned long long)sum.deleted);
    hooks_after_cycle(call->svc->hooks, call->claims.tenant, call->tenant_idx, call->req.summary,
                      call->req.nsummary);
    soap_write_replication_completed(&call->response);
}

static void run_operation(struct call *call)
{
    struct fault f;
    fault_clear(&f);
    buf_reset(&call->response);
    switch (call->req.op) {
    case SOAP_OP_AUTHENTICATE: run_authenticate(call, &f); break;
    case SOAP_OP_TABLESCHEMA: run_table_schema(call, &f); break;
    case SOAP_OP_WIPE: run_wipe(call, &f); break;
    case SOAP_OP_ROWDATA: run_row_data(call, &f); break;
    case SOAP_OP_REPLICATIONCOMPLETED: run_replication_completed(call, &f); break;
    default: fault_set(&f, FAULT_INTERNAL, "operation not dispatched"); break;
    }
    if (f.code != FAULT_NONE) {
        answer_fault(call, &f);
        return;
    }
    call->http_status = 200;
    call->phase = PHASE_DONE;
}

/* ---- accounting ---- */

static enum reg_op registry_op(const struct call *call)
{
    if (call->req.op_fault.code != FAULT_NONE)
        return REG_OP_OTHER;
    switch (call->req.op) {
    case SOAP_OP_AUTHENTICATE: return REG_OP_AUTHENTICATE;
    case SOAP_OP_TABLESCHEMA: return REG_OP_TABLESCHEMA;
    case SOAP_OP_WIPE: return REG_OP_WIPE;
    case SOAP_OP_ROWDATA: return REG_OP_ROWDATA;
    case SOAP_OP_REPLICATIONCOMPLETED: return REG_OP_REPLICATIONCOMPLETED;
    default: return REG_OP_OTHER;
    }
}

static struct row_counts sum_states(const struct call *call)
{
    struct row_counts c = {0, 0, 0, 0};
    for (size_t i = 0; i < call->nstates; i++) {
        c.inserted += (uint64_t)call->states[i].inserted;
        c.updated += (uint64_t)call->states[i].updated;
        c.deleted += (uint64_t)call->states[i].deleted;
        c.skipped += (uint64_t)call->states[i].skipped;
    }
    return c;
}

/* Counts the call in the worker's figures, once; returns its row counts (for the tenant's). */
static struct row_counts account(struct call *call)
{
    struct row_counts c = sum_states(call);
    if (!call->accounted) {
        call->accounted = 1;
        reg_worker_call_done(call->svc->reg, call->svc->slot, registry_op(call), call->faulted,
                             monotonic_seconds() - call->started, call->body_len, c.inserted,
                             c.updated, c.deleted, c.skipped);
    }
    return c;
}

/* ---- RowData applied while parsed ---- */

/* Rolls back what was applied while parsing and lets the tenant's lock go. */
static void stream_abandon(struct call *call)
{
    if (!call->lock_held)
        return;
    if (call->streamed) {
        struct fault ignored;
        fault_clear(&ignored);
        store_rows_end(call->streamed, 0, NULL, NULL, &ignored);
        call->streamed = NULL;
    }
    reg_tenant_unlock(call->svc->reg, call->tenant_idx, getpid());
    call->lock_held = 0;
}

/* Whether the rows may be applied as they come: only where the sequential order would reach
 * the store. Then the lock is held and the transaction open. */
static int stream_begin(struct call *call, const struct rowstream_prologue *pro)
{
    struct service *svc = call->svc;
    if (pro->ntokens != 1 || pro->op != SOAP_OP_ROWDATA || pro->op_fault != FAULT_NONE)
        return 0;
    struct fault f;
    fault_clear(&f);
    if (token_verify(pro->token, pro->token_len, &svc->policy, time(NULL), 0, &call->claims, &f) != 0)
        return 0;
    if (reg_tenant_find(svc->reg, call->claims.tenant, 0, &call->tenant_idx, NULL) != 0 ||
        reg_tenant_trylock(svc->reg, call->tenant_idx, getpid()) != 0)
        return 0;
    call->lock_held = 1;
    struct store_tenant *t = NULL;
    if (!paused(call))
        t = store_tenant(svc->store, call->claims.tenant, &f);
    if (t)
        call->streamed = store_rows_begin(t, &call->stream_arena, &f);
    if (!call->streamed) {
        call->begin_fault = f;   /* FAULT_NONE when paused: that is answered in order */
        stream_abandon(call);
        return 0;
    }
    log_set_tenant(call->claims.tenant);
    log_debug("RowData: applying the rows while the body is parsed");
    log_set_tenant(NULL);
    /* Most of such a call happens here, before call_run: show it as it happens (call_run
     * keeps this start time). */
    reg_worker_state(svc->reg, svc->slot, WORKER_BUSY, call->claims.tenant,
                     soap_op_name(SOAP_OP_ROWDATA), (int64_t)time(NULL));
    return 1;
}

/* The next event. While the parser is behind, the rows checked so far go to the store first
 * (they go in chunks otherwise), so that little is left to write once it ends. */
static const struct rowstream_event *next_event(struct call *call, struct rowstream *rs, int *rc,
                                                struct fault *f)
{
    const struct rowstream_event *ev = rowstream_poll(rs);
    if (ev)
        return ev;
    if (*rc == 0)
        *rc = store_rows_flush(call->streamed, f);
    return rowstream_next(rs);
}

/* Applies the rows as the parser tells them; stops at the first failure (the sequential path
 * then answers it). Returns -1 when the transaction cannot be kept. */
static int stream_rows(struct call *call, struct rowstream *rs)
{
    const struct rowstream_event *ev = rowstream_next(rs);
    if (ev->kind != ROWSTREAM_BATCH || !stream_begin(call, rowstream_prologue(rs)))
        return 0;
    log_set_tenant(call->claims.tenant);
    struct fault f;
    fault_clear(&f);
    struct batch batch = ev->batch;
    int rc = 0;
    for (; ev->kind != ROWSTREAM_END && rc == 0; ev = next_event(call, rs, &rc, &f)) {
        switch (ev->kind) {
        case ROWSTREAM_BATCH:
            batch = ev->batch;   /* a blocked table: store_rows_batch refuses it */
            rc = store_rows_batch(call->streamed, &batch, &f);
            break;
        case ROWSTREAM_ROW:
            rc = store_rows_row(call->streamed, &batch, &ev->row, &f);
            break;
        case ROWSTREAM_BATCH_END:
            rc = store_rows_batch_end(call->streamed, &ev->batch, &f);
            break;
        case ROWSTREAM_ABORT:
            fault_set(&f, FAULT_INTERNAL, "the parts of the parse did not join");
            rc = -1;
            break;
        case ROWSTREAM_END:
            break;
        }
    }
    if (rc != 0)
        log_debug("RowData: applying while parsing stopped (%s); answered after the parse",
                  f.message);
    log_set_tenant(NULL);
    return rc;
}

/* Parses the request; a large one on helper threads, RowData rows applied meanwhile. */
static int parse_request(struct call *call, const char *body, size_t len, const char *soapaction,
                         struct fault *f)
{
    if (!soap_xml_attributes_bounded(body, len, SOAP_XML_ATTRIBUTES_MAX)) {
        fault_set(f, FAULT_MALFORMED_REQUEST, "an element holds more than %d attributes",
                  SOAP_XML_ATTRIBUTES_MAX);
        return -1;
    }
    struct rowstream *rs = NULL;
    if (len >= STREAM_MIN_BYTES)
        rs = rowstream_start(body, len, soapaction, call->svc->parse_parts, &call->arena,
                             &call->req);
    if (!rs)
        return soap_parse_request(body, len, soapaction, &call->arena, &call->req, f);
    /* Given up on at once, not after the rest of the parse: the lock and the transaction go.
     * Also before rowstream_finish: the store may hold rows of a later part's parser whose
     * memory the finish frees when its part is not joined (ROWSTREAM_ABORT). */
    if (stream_rows(call, rs) != 0)
        stream_abandon(call);
    size_t parts = 1;
    int rc = rowstream_finish(rs, f, &parts);
    if (parts > 1)
        log_debug("RowData: the body was parsed in %zu parts at once", parts);
    return rc;
}

/* ---- the call's life ---- */

/* Parses and checks the request up to the tenant's lock, answering any fault. */
static void check_request(struct call *call, const char *body, size_t len, const char *soapaction)
{
    struct service *svc = call->svc;
    struct fault f;
    fault_clear(&f);
    if (parse_request(call, body, len, soapaction, &f) != 0) {
        call->req.op_fault.code = FAULT_MALFORMED_REQUEST;   /* counted as "other" */
        answer_fault(call, &f);
        return;
    }
    int is_auth = call->req.op_fault.code == FAULT_NONE && call->req.op == SOAP_OP_AUTHENTICATE;
    if (call->req.ntokens != 1) {
        fault_set(&f, FAULT_INVALID_TOKEN, "SignedToken: expected exactly one SignedToken header, got %d",
                  call->req.ntokens);
    } else if (call->req.token_has_element) {
        fault_set(&f, FAULT_INVALID_TOKEN, "SignedToken: holds an element, not a token");
    } else if (!call->lock_held) {   /* a streamed call's token was verified as it began */
        token_verify(call->req.token, call->req.token_len, &svc->policy, time(NULL), is_auth,
                     &call->claims, &f);
    }
    if (f.code != FAULT_NONE) {
        if (is_auth)
            answer_auth_refused(call, &f);
        else
            answer_fault(call, &f);
        return;
    }
    log_set_tenant(call->claims.tenant);
    if (call->req.op_fault.code != FAULT_NONE) {
        answer_fault(call, &call->req.op_fault);
    } else if (call->req.body_fault.code != FAULT_NONE) {
        answer_fault(call, &call->req.body_fault);
    } else if (!call->lock_held) {   /* a streamed call holds its tenant's lock already */
        int rc = reg_tenant_find(svc->reg, call->claims.tenant, 1, &call->tenant_idx, NULL);
        if (rc == REG_ALLOC_BUSY) {
            /* The lock that allocates entries stayed busy (its holder stopped or died and is
             * not reaped yet). */
            log_warn("the tenant registry's allocation lock stayed busy: tenant %s not "
                     "registered this time", call->claims.tenant);
            fault_set(&f, FAULT_TENANT_BUSY, "tenant %s could not be registered (the registry "
                      "was busy); try again later", call->claims.tenant);
        } else if (rc != 0) {
            /* Full (the token's tenant name is valid): the registry's capacity, made at start;
             * a reload's tenants.max waits for a restart. */
            log_error("the tenant registry is full (tenants.max %u, as somirrord started): "
                      "tenant %s refused", (unsigned)reg_max_tenants(svc->reg),
                      call->claims.tenant);
            fault_set(&f, FAULT_TENANT_LIMIT, "the registry of tenants is full; try again later");
        }
        if (rc != 0)
            answer_fault(call, &f);
        call->lock_deadline = call->started + svc->cfg->lock_timeout;
    }
    log_set_tenant(NULL);
}

struct call *call_start(struct service *svc, const char *body, size_t len, const char *soapaction,
                        const char *peer)
{
    struct call *call = xcalloc(1, sizeof(*call));
    call->svc = svc;
    snprintf(call->peer, sizeof(call->peer), "%s", peer ? peer : "an unknown client");
    call->started = monotonic_seconds();
    call->body_len = len;
    arena_init(&call->arena);
    arena_init(&call->stream_arena);
    buf_init(&call->response);
    call->phase = PHASE_NEED_LOCK;

    check_request(call, body, len, soapaction);
    /* Rows applied while parsing are kept only for a call that is to run. */
    if (call->phase == PHASE_DONE)
        stream_abandon(call);
    return call;
}

enum call_status call_run(struct call *call)
{
    if (call->phase == PHASE_DONE) {
        account(call);
        return CALL_DONE;
    }
    struct service *svc = call->svc;
    pid_t self = getpid();
    if (!call->lock_held && reg_tenant_trylock(svc->reg, call->tenant_idx, self) != 0) {
        if (monotonic_seconds() < call->lock_deadline)
            return CALL_WAIT;
        struct fault f;
        fault_clear(&f);
        fault_set(&f, FAULT_TENANT_BUSY, "tenant %s is busy with another call (waited %d s)",
                  call->claims.tenant, svc->cfg->lock_timeout);
        log_set_tenant(call->claims.tenant);
        answer_fault(call, &f);
        log_set_tenant(NULL);
        account(call);
        return CALL_DONE;
    }
    const char *op = soap_op_name(call->req.op);
    int64_t now = (int64_t)time(NULL);
    log_set_tenant(call->claims.tenant);
    if (!call->lock_held)   /* a streamed call shows busy since streaming began */
        reg_worker_state(svc->reg, svc->slot, WORKER_BUSY, call->claims.tenant, op, now);
    reg_tenant_call_started(svc->reg, call->tenant_idx, op, now);
    run_operation(call);
    struct row_counts counts = account(call);
    const char *error = NULL;
    char error_text[REG_ERROR_MAX];
    if (call->faulted) {
        snprintf(error_text, sizeof(error_text), "%s: %s: %.200s", op,
                 fault_code_name(call->fault.code), call->fault.message);
        error = error_text;
    }
    reg_tenant_call_done(svc->reg, call->tenant_idx, counts.inserted, counts.updated,
                         counts.deleted, call->body_len, error, (int64_t)time(NULL));
    reg_tenant_unlock(svc->reg, call->tenant_idx, self);
    call->lock_held = 0;
    reg_worker_state(svc->reg, svc->slot, WORKER_IDLE, NULL, NULL, (int64_t)time(NULL));
    log_set_tenant(NULL);
    return CALL_DONE;
}

int call_http_status(const struct call *call)
{
    return call->http_status;
}

const struct buf *call_response(const struct call *call)
{
    return &call->response;
}

void call_free(struct call *call)
{
    if (!call)
        return;
    stream_abandon(call);
    arena_free(&call->arena);
    arena_free(&call->stream_arena);
    buf_free(&call->response);
    free(call);
}
