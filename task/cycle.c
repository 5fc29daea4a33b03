/* task/cycle: one mirroring cycle for one tenant, as protocol section 9 says a sender works:
 * the local setup checked first (source open, every mirrored table tracked, the URL), then
 * Authenticate (a vendor JWT; the answer's SignedApplicationToken checked with the
 * application's public key before anything else in the answer is believed, then
 * doNotReplicate skips the cycle), TableSchema with every mirrored table, then per table the
 * version read first in the rows' snapshot, Wipe and a full load when the returned Lsn is -1 or
 * older than the minimum valid version, else the collapsed changes (an empty batch with only
 * <Lsn> for a quiet table), in calls of about the batch size (each body built on a second
 * thread while the call before it is in flight, a table's first during the last call of the
 * table before it), and ReplicationCompleted.
 * Retryable faults and connection failures are retried with a doubling pause, each retry with
 * a vendor token still in its reuse window. */
#include "task/task.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "proto/soap.h"
#include "proto/token.h"

#define TOKEN_LIFETIME_S 300
#define TOKEN_NOT_BEFORE_S 60
#define TOKEN_REUSE_S 60      /* how long one token serves calls (see cycle_token) */
#define VENDOR_ISSUER "SuperOffice AS"
#define CTX_CLAIM "http://schemes.superoffice.net/identity/ctx"
#define SOAPACTION_PREFIX SOAP_NS "/IMirroringClientService/"

struct cycle {
    const struct cycle_options *opt;
    struct cycle_result *result;
    struct http_client *http;
    struct source src;
    struct buf body;
    struct buf response;
    struct arena arena;          /* the current call's parsed answer */
    char nonce[33];
    char *token;                 /* the vendor token of the calls (cycle_token); c->body, once
                                    built, carries this one */
    int64_t token_renew_ms;      /* monotonic */
};

static int vfail(struct cycle *c, int setup, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static int vfail(struct cycle *c, int setup, const char *fmt, va_list ap)
{
    vsnprintf(c->result->error, sizeof c->result->error, fmt, ap);
    c->result->outcome = CYCLE_FAILED;
    c->result->setup_error = setup;
    return -1;
}

static int fail(struct cycle *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct cycle *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, 0, fmt, ap);
    va_end(ap);
    return -1;
}

/* A failure of the local setup (source, tracking, URL), found before any call. */
static int fail_setup(struct cycle *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_setup(struct cycle *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, 1, fmt, ap);
    va_end(ap);
    return -1;
}

/* A nonce no one can guess: the receiver's SignedApplicationToken signs it, so a guessable
 * one would let an old answer (a doNotReplicate) be replayed; there is no weaker fallback.
 * 0, or -1 when OpenSSL's generator fails. */
static int new_nonce(char out[33])
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return -1;
    for (size_t i = 0; i < sizeof bytes; i++)
        snprintf(out + 2 * i, 3, "%02X", bytes[i]);
    return 0;
}

/* A fresh vendor token (RS256, x5t) for this tenant and application. malloc'd, or NULL. */
static char *make_token(const struct cycle_options *opt, const char *nonce)
{
    time_t now = time(NULL);
    struct buf aud = BUF_INIT;
    buf_printf(&aud, "spn:%s", opt->app_id);
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "sub", opt->tenant,
                               CTX_CLAIM, opt->tenant, "nonce", nonce,
                               "nbf", (json_int_t)(now - TOKEN_NOT_BEFORE_S),
                               "exp", (json_int_t)(now + TOKEN_LIFETIME_S),
                               "iss", VENDOR_ISSUER, "aud", aud.data);
    buf_free(&aud);
    char *text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    char *token = text ? token_sign(opt->vendor_key, opt->vendor_x5t, NULL, text) : NULL;
    free(text);
    return token;
}

/* The vendor token for the next call. One signed token serves the calls of its first
 * TOKEN_REUSE_S seconds: signing is an RSA private-key operation (~0.4 ms), and a new one per
 * call was about a seventh of somirror-task's CPU in an incremental cycle. Every attempt of a
 * call (retries included, see renew_body_token) starts with at least
 * TOKEN_LIFETIME_S - TOKEN_REUSE_S of validity. NULL when it cannot be signed; owned by c. */
static const char *cycle_token(struct cycle *c)
{
    int64_t now = monotonic_ms();
    if (!c->token || now >= c->token_renew_ms) {
        free(c->token);
        c->token = make_token(c->opt, c->nonce);
        c->token_renew_ms = now + TOKEN_REUSE_S * 1000;
        if (c->token)
            c->result->tokens++;
    }
    return c->token;
}

/* Puts fresh in c->body in place of old (the first occurrence: the header comes before any
 * row). 0, or -1 when old is not there. */
static int replace_body_token(struct cycle *c, const char *old, const char *fresh)
{
    const char *at = strstr(c->body.data, old);
    if (!at)
        return -1;
    struct buf body = BUF_INIT;
    size_t before = (size_t)(at - c->body.data), old_len = strlen(old);
    buf_append(&body, c->body.data, before);
    buf_puts(&body, fresh);
    buf_append(&body, at + old_len, c->body.len - before - old_len);
    buf_free(&c->body);
    c->body = body;
    return 0;
}

/* Before a retry: when the token c->body carries has outlived its reuse window, signs a new
 * one and puts it in the body in place of the old one. 0, or -1 when it cannot be signed. */
static int renew_body_token(struct cycle *c)
{
    if (monotonic_ms() < c->token_renew_ms)
        return 0;
    char *old = c->token;
    c->token = NULL;
    const char *fresh = cycle_token(c);
    int rc = fresh ? replace_body_token(c, old, fresh) : -1;
    free(old);
    return rc;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sends c->body as op and parses the answer into resp (in c->arena). Retries connection
 * failures and retryable faults; anything else fails the cycle. 0 or -1. */
static int call(struct cycle *c, enum soap_op op, struct soap_response *resp)
{
    const struct cycle_options *opt = c->opt;
    struct buf action = BUF_INIT;
    buf_printf(&action, "%s%s", SOAPACTION_PREFIX, soap_op_name(op));
    int delay = opt->backoff_ms, rc = -1;
    for (int attempt = 1;; attempt++) {
        char err[1200] = "";
        int status = 0, retryable = 0;
        c->result->calls++;
        arena_free(&c->arena);
        memset(resp, 0, sizeof *resp);
        if (http_post(c->http, action.data, c->body.data, c->body.len, &status, &c->response,
                      err, sizeof err) != 0) {
            retryable = 1;
        } else if (status == 413) {
            snprintf(err, sizeof err, "RequestTooLarge: the receiver refused a %zu-byte body "
                     "(lower the batch size)", c->body.len);
        } else if (soap_parse_response(c->response.data, c->response.len, op, &c->arena, resp,
                                       err, sizeof err) != 0) {
            char inner[400];   /* the parser's reason, cut to leave room for the rest */
            snprintf(inner, sizeof inner, "%.*s", (int)sizeof inner - 1, err);
            snprintf(err, sizeof err, "unexpected answer (HTTP %d): %s", status, inner);
        } else if (resp->is_fault) {
            retryable = resp->retryable;
            snprintf(err, sizeof err, "%s: %s", fault_code_name(resp->fault.code), resp->fault.message);
        } else {
            rc = 0;
            break;
        }
        if (!retryable || attempt >= opt->tries) {
            fail(c, "%s: %s", soap_op_name(op), err);
            break;
        }
        log_warn("tenant %s: %s failed (%s); attempt %d of %d in %d ms", opt->tenant,
                 soap_op_name(op), err, attempt + 1, opt->tries, delay);
        pause_ms(delay);
        /* Doubled up to TASK_PAUSE_MAX_MS: tries may be up to TASK_TRIES_MAX, and an int doubled
         * that often overflows (a pause of days long before). */
        delay = delay > TASK_PAUSE_MAX_MS / 2 ? TASK_PAUSE_MAX_MS : delay * 2;
        if (renew_body_token(c) != 0) {
            fail(c, "cannot sign the vendor token");
            break;
        }
    }
    buf_free(&action);
    return rc;
}

/* 0 go on, 1 skipped (doNotReplicate), -1 failed. */
static int authenticate(struct cycle *c)
{
    if (new_nonce(c->nonce) != 0)
        return fail(c, "cannot make a nonce: OpenSSL's random generator failed");
    free(c->token);   /* the token carries the nonce */
    c->token = NULL;
    const char *token = cycle_token(c);
    if (!token)
        return fail(c, "cannot sign the vendor token");
    buf_reset(&c->body);
    soap_build_authenticate(&c->body, token, "");
    struct soap_response resp;
    if (call(c, SOAP_OP_AUTHENTICATE, &resp) != 0)
        return -1;
    if (!resp.auth.ok)
        return fail(c, "Authenticate refused: %s", resp.auth.error_message ? resp.auth.error_message : "");
    /* Only an answer from the application's receiver is acted on, doNotReplicate included. */
    char err[256];
    const char *signed_token = resp.auth.signed_app_token ? resp.auth.signed_app_token : "";
    if (appsign_verify(c->opt->app_public_key, signed_token, c->nonce, time(NULL), err, sizeof err) != 0)
        return fail(c, "SignedApplicationToken not accepted: %s (is this the application's receiver?)", err);
    if (resp.auth.do_not_replicate) {
        c->result->outcome = CYCLE_SKIPPED;
        log_info("tenant %s: the receiver asks not to replicate (doNotReplicate): cycle skipped",
                 c->opt->tenant);
        return 1;
    }
    return 0;
}

/* The tables to send: mirrored, not skipped, tracked (by this version's change tables). *out
 * is the caller's to free, also on failure (a setup error). */
static int select_tables(struct cycle *c, struct table_schema **out, size_t *n)
{
    *out = xcalloc(c->src.ntables ? c->src.ntables : 1, sizeof **out);
    *n = 0;
    for (size_t i = 0; i < c->src.ntables; i++) {
        const struct table_schema *t = &c->src.tables[i];
        if (!task_table_mirrored(t->name, c->opt->skip))
            continue;
        if (!ct_table_tracked(c->src.db, t))
            return fail_setup(c, "table %s is not tracked, or its tracking is incomplete or out of "
                              "date (a trigger gone with a rebuilt table, a change table of an older "
                              "layout or key): run somirror-task provision --db %s", t->name,
                              c->opt->db_path);
        (*out)[(*n)++] = *t;
    }
    return *n ? 0 : fail_setup(c, "%s has no table to mirror", c->opt->db_path);
}

static const struct table_state *find_state(const struct soap_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nstates; i++)
        if (resp->states[i].name && strcasecmp(resp->states[i].name, name) == 0)
            return &resp->states[i];
    return NULL;
}

/* How many rows the cursor will send (for the progress line). */
static long count_pending(sqlite3 *db, const struct rowdata_cursor *cursor)
{
    int full = cursor->mode == ROWDATA_FULL;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "SELECT count(*) FROM ");
    if (full) {
        sql_put_ident(&sql, cursor->table->name);
    } else {
        ct_put_table(&sql, cursor->table->name);
        buf_puts(&sql, " WHERE " CT_VERSION_COLUMN " > ?1 AND " CT_VERSION_COLUMN " <= ?2");
    }
    sqlite3_stmt *stmt = NULL;
    long n = 0;
    if (sqlite3_prepare_v2(db, sql.data, -1, &stmt, NULL) == SQLITE_OK) {
        if (!full) {
            sqlite3_bind_int64(stmt, 1, cursor->since);
            sqlite3_bind_int64(stmt, 2, cursor->position);
        }
        if (sqlite3_step(stmt) == SQLITE_ROW)
            n = (long)sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    buf_free(&sql);
    return n;
}

static void show_progress(const struct cycle_table *ct, long total, double started, int last)
{
    long sent = (long)(ct->inserted + ct->updated + ct->deleted);
    double elapsed = monotonic_seconds() - started;
    fprintf(stderr, "\r  %-32s %9ld rows %9.0f rows/s %5.1f%%%s", ct->name, sent,
            elapsed > 0 ? (double)sent / elapsed : 0.0,
            total > 0 ? 100.0 * (double)sent / (double)total : 100.0, last ? "\n" : "");
    fflush(stderr);
}

static int wipe_tables(struct cycle *c, char *const *names, size_t n)
{
    const char *token = cycle_token(c);
    if (!token)
        return fail(c, "cannot sign the vendor token");
    buf_reset(&c->body);
    soap_build_wipe(&c->body, token, names, n);
    struct soap_response resp;
    return call(c, SOAP_OP_WIPE, &resp);
}

/* The next RowData body of a table, built while the call before it is in flight: reading the
 * source and writing the XML cost about half as much CPU as the receiver's work on the call,
 * and neither waits for the other any more. Until it is joined, the builder has the cursor,
 * the source connection and its own copy of the token to itself; the cycle's thread sends. */
struct next_body {
    struct rowdata_cursor *cursor;
    size_t batch_size;
    char *token;               /* the token the body carries (owned) */
    struct buf body;
    int rc;
    char err[512];
    int64_t inserted, updated, deleted;   /* the cursor's counts with this body's rows */
};

static void *build_next_body(void *arg)
{
    struct next_body *n = arg;
    n->rc = rowdata_next_call(n->cursor, n->token, n->batch_size, &n->body, n->err, sizeof n->err);
    n->inserted = n->cursor->inserted;
    n->updated = n->cursor->updated;
    n->deleted = n->cursor->deleted;
    return NULL;
}

/* The token the next body is to carry: a copy, as the cycle's own may be renewed while the
 * body is built. */
static void next_body_token(struct next_body *n, const char *token)
{
    free(n->token);
    n->token = xstrdup(token);
}

/* Starts work(arg) on a thread of its own (signals stay with the cycle's thread). 1 started;
 * 0 when no thread could be started: the caller does the work itself. */
static int start_builder(void *(*work)(void *), void *arg, pthread_t *thread)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = pthread_create(thread, NULL, work, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

/* Makes the built body the one to send (c->body), carrying the token cycle_token gives now:
 * one signed meanwhile (the reuse window passed, or a retry of the call before renewed it)
 * replaces the token it was built with. 0, or -1 failed. */
static int take_next_body(struct cycle *c, struct next_body *n)
{
    if (n->rc != 0)
        return fail(c, "%s", n->err);
    struct buf built = n->body;
    n->body = c->body;
    c->body = built;
    const char *token = cycle_token(c);
    if (!token)
        return fail(c, "cannot sign the vendor token");
    if (strcmp(token, n->token) != 0 && replace_body_token(c, n->token, token) != 0)
        return fail(c, "%s: the RowData body lost its vendor token", n->cursor->table->name);
    return 0;
}

/* One table's rows on their way: its cursor, in a read transaction of its own on the source,
 * and its next body. A table's cursor is opened and its first body built during the last call
 * of the table before it (open_table), by the builder, which closes that table's cursor first:
 * both use the one source connection. */
struct table_send {
    const struct table_schema *t;
    int64_t since;             /* the receiver's position (rowdata_start) */
    sqlite3 *db;
    struct rowdata_cursor cursor;
    int open;                  /* the cursor's read transaction is open: rowdata_close owed */
    int opened;                /* open_table ran: next has the first body, or why not */
    struct next_body next;     /* next.cursor is &cursor */
    struct table_send *before; /* open_table closes its cursor first (NULL: none) */
};

static void *open_table(void *arg)
{
    struct table_send *ts = arg;
    if (ts->before && ts->before->open) {
        rowdata_close(&ts->before->cursor);
        ts->before->open = 0;
    }
    char err[sizeof ts->next.err / 2];   /* with the name (at most 128 characters) it fits */
    if (rowdata_start(&ts->cursor, ts->db, ts->t, ts->since, err, sizeof err) != 0) {
        snprintf(ts->next.err, sizeof ts->next.err, "%.250s: %s", ts->t->name, err);
        ts->next.rc = -1;
    } else {
        ts->open = 1;
        build_next_body(&ts->next);
    }
    ts->opened = 1;
    return NULL;
}

static void table_send_free(struct table_send *ts)
{
    if (ts->open)
        rowdata_close(&ts->cursor);
    free(ts->next.token);
    buf_free(&ts->next.body);
}

/* wiped: the table was Altered, and emptied on the receiver with the others (since -1).
 * following: the table sent after it (NULL: none), opened during its last call. */
static int send_table(struct cycle *c, struct table_send *ts, int wiped, struct cycle_table *ct,
                      struct table_send *following)
{
    const struct cycle_options *opt = c->opt;
    /* The version first, in the rows' snapshot: nothing committed while the rows are read is
     * missed, and no change is cleaned away between the two. */
    if (!ts->opened) {
        const char *token = cycle_token(c);
        if (!token)
            return fail(c, "cannot sign the vendor token");
        next_body_token(&ts->next, token);
        open_table(ts);
    }
    if (!ts->open)
        return fail(c, "%s", ts->next.err);
    struct rowdata_cursor *cursor = &ts->cursor;
    int64_t current = cursor->position;
    ct->full_load = cursor->mode == ROWDATA_FULL;
    ct->lsn = current;
    if (!ct->full_load && ts->since > current)
        log_warn("tenant %s: table %s: the receiver is at %lld, ahead of the source (%lld): was "
                 "the source restored? The operator should reset the tenant", opt->tenant,
                 ts->t->name, (long long)ts->since, (long long)current);
    struct soap_response resp;
    int rc = ct->full_load && !wiped ? wipe_tables(c, &ts->t->name, 1) : 0;
    long total = opt->progress ? count_pending(ts->db, cursor) : 0;
    double started_at = monotonic_seconds();
    long calls = 0;
    while (rc == 0) {
        if (take_next_body(c, &ts->next) != 0) {
            rc = -1;
            break;
        }
        int64_t inserted = ts->next.inserted, updated = ts->next.updated,
                deleted = ts->next.deleted;
        int last = cursor->done, started = 0;
        pthread_t builder;
        if (!last) {
            next_body_token(&ts->next, c->token);
            started = start_builder(build_next_body, &ts->next, &builder);
        } else if (following) {
            next_body_token(&following->next, c->token);
            following->before = ts;
            started = start_builder(open_table, following, &builder);
        }
        rc = call(c, SOAP_OP_ROWDATA, &resp);
        if (started)
            pthread_join(builder, NULL);
        else if (!last && rc == 0)
            build_next_body(&ts->next);
        calls++;
        if (rc == 0) {
            ct->inserted = inserted;
            ct->updated = updated;
            ct->deleted = deleted;
        }
        if (opt->progress)
            show_progress(ct, total, started_at, rc != 0 || last);
        if (last)
            break;
    }
    ct->sent = rc == 0;
    if (rc == 0 && !opt->progress)
        log_info("tenant %s: table %s: %s, %lld inserted, %lld updated, %lld deleted, %ld calls, "
                 "position %lld", opt->tenant, ts->t->name, ct->full_load ? "full load" : "changes",
                 (long long)ct->inserted, (long long)ct->updated, (long long)ct->deleted, calls,
                 (long long)current);
    return rc;
}

/* What TableSchema's answer decides, kept past the calls that follow (the answer itself lives
 * in c->arena only until the next call). Indexed like c->result->tables. */
struct load_plan {
    int64_t *lsns;                  /* the Lsn each table's rows are read from; -1: in full */
    char **wipe;                    /* the tables wiped at once, before any rows */
    size_t nwipe;
    struct loaded_entry *untold;    /* recorded as loaded under no schema before the Wipe */
    size_t nuntold;
    struct loaded_entry *record;    /* the schemas recorded as loaded under after the Wipe */
    size_t nrecord;
};

static void plan_free(struct load_plan *plan)
{
    free(plan->lsns);
    free(plan->wipe);
    free(plan->untold);
    free(plan->record);
}

/* Plans one table the receiver accepted: whether it is loaded in full, and what the source
 * records of the schema its rows on the receiver are loaded under (task/loaded.c). */
static void plan_table(struct cycle *c, struct load_plan *plan, const struct table_schema *t,
                       const struct table_state *state, struct cycle_table *ct)
{
    const struct cycle_options *opt = c->opt;
    /* The receiver's rows were loaded under another schema than this one: the cycle answered
     * Altered for it stopped before its Wipe (below), so this one is answered Unchanged. None
     * recorded: a table new to this receiver, or a source older than the record, taken as
     * loaded under this schema. */
    struct loaded_entry *entry = &plan->record[plan->nrecord];
    char was[SM_HASH_HEX + 1];
    loaded_hash(t, entry->hash);
    int recorded = loaded_lookup(c->src.db, opt->url, opt->tenant, t->name, was) == 0;
    int stale = recorded && strcmp(was, entry->hash) != 0;
    int altered = state->change == CHANGE_ALTERED;
    /* Answered Altered with no record that tells (none: a source from before the record, a URL
     * new to it; or this schema's already): the rows are recorded as loaded under none before
     * the Wipe, else a cycle stopped before it would leave nothing to tell the next. */
    if (altered && !stale) {
        struct loaded_entry *none = &plan->untold[plan->nuntold++];
        none->table = t->name;
        none->owed = 1;
        loaded_hash_none(none->hash);
    }
    if (!recorded || stale || altered) {
        entry->table = t->name;
        entry->owed = stale || altered;
        plan->nrecord++;
    }
    /* Altered keeps the mirror's rows and gives an added nullable column NULL in them, as SQL
     * Server does; this source (SQLite) gave them the column's default, and the last cycle may
     * have read rows without a column added while it ran, at a version that covers their
     * changes. A full load sends the rows as the source has them. */
    if (altered || (state->change == CHANGE_UNCHANGED && stale)) {
        if (!altered)
            log_info("tenant %s: table %s: the receiver's rows were loaded under an earlier "
                     "schema (a cycle stopped between its Altered answer and its Wipe): loaded "
                     "in full", opt->tenant, t->name);
        /* Loaded in full, and wiped below: also what the summary of a cycle that fails before
         * its rows says. */
        plan->wipe[plan->nwipe++] = t->name;
        ct->full_load = 1;
    }
    plan->lsns[c->result->ntables] = ct->full_load ? -1 : state->lsn;
}

/* TableSchema with tables, and the plan its answer makes; the result's tables are the ones the
 * receiver accepted. */
static int plan_load(struct cycle *c, const struct table_schema *tables, size_t ntables,
                     struct load_plan *plan)
{
    const char *token = cycle_token(c);
    if (!token)
        return fail(c, "cannot sign the vendor token");
    buf_reset(&c->body);
    soap_build_table_schema(&c->body, token, tables, ntables);
    struct soap_response resp;
    if (call(c, SOAP_OP_TABLESCHEMA, &resp) != 0)
        return -1;
    plan->lsns = xcalloc(ntables, sizeof *plan->lsns);
    plan->wipe = xcalloc(ntables, sizeof *plan->wipe);
    plan->untold = xcalloc(ntables, sizeof *plan->untold);
    plan->record = xcalloc(ntables, sizeof *plan->record);
    c->result->tables = xcalloc(ntables, sizeof *c->result->tables);
    for (size_t i = 0; i < ntables; i++) {
        const struct table_state *state = find_state(&resp, tables[i].name);
        if (!state)
            return fail(c, "TableSchema: the answer has no state for table %s", tables[i].name);
        if (state->change == CHANGE_REJECTED) {
            log_warn("tenant %s: table %s rejected by the receiver: %s", c->opt->tenant,
                     tables[i].name, state->error ? state->error : "");
            continue;
        }
        struct cycle_table *ct = &c->result->tables[c->result->ntables];
        snprintf(ct->name, sizeof ct->name, "%s", tables[i].name);
        ct->change = table_change_name(state->change);
        plan_table(c, plan, &tables[i], state, ct);
        c->result->ntables++;
    }
    return 0;
}

/* The planned Wipe, then each table's rows. The tables loaded in full are wiped at once, before
 * any table's rows: the receiver then keeps Lsn -1 for them, so that a cycle that fails later
 * still leaves their full load to the next one, where TableSchema answers Unchanged. Only then
 * is their schema recorded as the one their rows are loaded under (the others' Lsn -1 or rows
 * say so already). */
static int load(struct cycle *c, const struct load_plan *plan)
{
    const struct cycle_options *opt = c->opt;
    loaded_record(opt->db_path, opt->url, opt->tenant, plan->untold, plan->nuntold);
    int rc = plan->nwipe > 0 ? wipe_tables(c, plan->wipe, plan->nwipe) : 0;
    if (rc == 0)
        loaded_record(opt->db_path, opt->url, opt->tenant, plan->record, plan->nrecord);
    size_t n = c->result->ntables;
    struct table_send *sends = xcalloc(n ? n : 1, sizeof *sends);
    for (size_t i = 0; i < n; i++) {
        struct table_send *ts = &sends[i];
        ts->t = source_find(&c->src, c->result->tables[i].name);
        ts->since = plan->lsns[i];
        ts->db = c->src.db;
        ts->next.cursor = &ts->cursor;
        ts->next.batch_size = opt->batch_size;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct cycle_table *ct = &c->result->tables[i];
        rc = send_table(c, &sends[i], ct->full_load, ct, i + 1 < n ? &sends[i + 1] : NULL);
        c->result->inserted += ct->inserted;
        c->result->updated += ct->updated;
        c->result->deleted += ct->deleted;
    }
    for (size_t i = 0; i < n; i++)
        table_send_free(&sends[i]);
    free(sends);
    return rc;
}

static int complete(struct cycle *c)
{
    const char *token = cycle_token(c);
    if (!token)
        return fail(c, "cannot sign the vendor token");
    struct table_summary *summary = xcalloc(c->result->ntables + 1, sizeof *summary);
    for (size_t i = 0; i < c->result->ntables; i++) {
        summary[i].name = c->result->tables[i].name;
        summary[i].inserted = c->result->tables[i].inserted;
        summary[i].updated = c->result->tables[i].updated;
        summary[i].deleted = c->result->tables[i].deleted;
    }
    buf_reset(&c->body);
    soap_build_replication_completed(&c->body, token, summary, c->result->ntables);
    free(summary);
    struct soap_response resp;
    return call(c, SOAP_OP_REPLICATIONCOMPLETED, &resp);
}

/* TableSchema with tables, then their rows, then ReplicationCompleted. */
static int replicate(struct cycle *c, const struct table_schema *tables, size_t ntables)
{
    struct load_plan plan = {0};
    int rc = plan_load(c, tables, ntables, &plan);
    if (rc == 0)
        rc = load(c, &plan);
    plan_free(&plan);
    return rc == 0 ? complete(c) : -1;
}

int cycle_run(const struct cycle_options *opt, struct cycle_result *result)
{
    memset(result, 0, sizeof *result);
    struct cycle c = {.opt = opt, .result = result};
    double started = monotonic_seconds();
    buf_init(&c.body);
    buf_init(&c.response);
    arena_init(&c.arena);
    char err[512];
    struct table_schema *tables = NULL;
    size_t ntables = 0;
    int rc;
    if (source_open(&c.src, opt->db_path, 0, err, sizeof err) != 0) {
        rc = fail_setup(&c, "%s", err);
    } else if (select_tables(&c, &tables, &ntables) != 0) {
        rc = -1;
    } else if (!(c.http = http_client_new(opt->url, opt->timeout_s, opt->insecure, err, sizeof err))) {
        rc = fail_setup(&c, "%s", err);
    } else {
        rc = authenticate(&c);
        if (rc == 0)
            rc = replicate(&c, tables, ntables);
    }
    free(tables);
    result->seconds = monotonic_seconds() - started;
    if (rc < 0)
        log_error("tenant %s: cycle failed: %s", opt->tenant, result->error);
    else if (result->outcome == CYCLE_OK)
        log_info("tenant %s: cycle completed: %zu tables, %lld inserted, %lld updated, %lld deleted, "
                 "%ld calls, %ld vendor tokens, %.1f s", opt->tenant, result->ntables,
                 (long long)result->inserted, (long long)result->updated, (long long)result->deleted,
                 result->calls, result->tokens, result->seconds);
    http_client_free(c.http);
    if (c.src.db)
        source_close(&c.src);
    arena_free(&c.arena);
    buf_free(&c.body);
    buf_free(&c.response);
    free(c.token);
    return rc < 0 ? -1 : 0;
}

void cycle_result_free(struct cycle_result *result)
{
    free(result->tables);
    result->tables = NULL;
    result->ntables = 0;
}

const char *cycle_outcome_name(enum cycle_outcome outcome)
{
    static const char *const names[] = {[CYCLE_OK] = "ok", [CYCLE_SKIPPED] = "skipped",
                                        [CYCLE_FAILED] = "failed"};
    return names[outcome];
}

/* A cycle's error as JSON text: what the receiver said may have been cut inside a character
 * to fit a buffer, and jansson refuses text that is not UTF-8 (the whole summary with it). */
static json_t *error_text(const char *error)
{
    return json_stringn(error, utf8_valid_prefix(error, strlen(error)));
}

char *cycle_result_json(const struct cycle_result *result, const char *tenant, const char *app_id)
{
    json_t *tables = json_array();
    for (size_t i = 0; i < result->ntables; i++) {
        const struct cycle_table *t = &result->tables[i];
        json_array_append_new(tables, json_pack("{s:s, s:s, s:s, s:b, s:o, s:I, s:I, s:I}",
                                                "name", t->name,
                                                "change", t->change ? t->change : "",
                                                "load", t->full_load ? "full" : "changes",
                                                "sent", t->sent,
                                                "lsn", t->sent ? json_integer(t->lsn) : json_null(),
                                                "I", (json_int_t)t->inserted,
                                                "U", (json_int_t)t->updated,
                                                "D", (json_int_t)t->deleted));
    }
    json_t *summary = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:I, s:I}, s:I, s:I, s:f}",
                                "tenant", tenant, "application", app_id,
                                "result", cycle_outcome_name(result->outcome),
                                "error", result->outcome == CYCLE_FAILED ? error_text(result->error) : json_null(),
                                "tables", tables,
                                "rows", "I", (json_int_t)result->inserted, "U", (json_int_t)result->updated,
                                "D", (json_int_t)result->deleted,
                                "calls", (json_int_t)result->calls, "tokens", (json_int_t)result->tokens,
                                "seconds", result->seconds);
    char *text = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
    json_decref(summary);
    return text;
}
