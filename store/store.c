/* store/store: the generic layer of the mirror store (see store.h). Owns the protocol's storage
 * semantics (TableSchema planning against the metadata, Wipe, RowData checks, stale-row
 * skipping, positions, counts, resync, reset), the worker's cache of open tenants (least
 * recently used closed first) and each tenant's cache of parsed stored schemas. Every call is
 * one driver transaction: any failure rolls back and nothing is changed. Operator scripts
 * (hooks.table_sql, store_run_table_script) run outside any call's transaction. */
#include "store/store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/schema.h"
#include "proto/value.h"

enum {
    SCHEMA_CACHE_MAX = 512,   /* parsed schemas kept per tenant before the cache starts over */
    APPLY_CHUNK_ROWS = 1024   /* rows checked and handed to the driver at a time */
};

/* A stored schema parsed once (schema_from_canonical), keyed by table name and hash. */
struct cached_schema {
    struct table_schema schema;   /* name: the metadata's tablename */
};

struct store_tenant {
    struct store *store;
    TAILQ_ENTRY(store_tenant) link;     /* in the store's open tenants, most recently used first */
    int64_t used_ms;                    /* monotonic time of its last use, for store_close_idle */
    char *tenant;
    void *conn;
    struct arena schema_arena;          /* every cached_schema and what it points to */
    struct cached_schema **schemas;
    size_t nschemas, schemas_cap;
};

struct store {
    const struct config *cfg;
    const struct store_driver *driver;
    void *backend;
    TAILQ_HEAD(open_tenants, store_tenant) open;
    size_t nopen, max_open;
    int64_t idle_ms;                    /* store.idle_timeout; 0: never closed for idleness */
    int64_t backend_used_ms;            /* the last tenant opened or dropped */
    /* RowData scratch reused across calls: one chunk of checked rows and their values. */
    struct row_change *chunk_rows;
    size_t chunk_rows_cap;
    struct value *chunk_values;
    size_t chunk_values_cap;
};

static const struct store_driver *driver_for(const struct config *cfg)
{
    switch (cfg->driver) {
    case STORE_SQLITE: return &store_driver_sqlite;
    case STORE_POSTGRESQL: return &store_driver_postgresql;
    case STORE_MSSQL: return &store_driver_mssql;
    }
    return NULL;
}

int store_check(const struct config *cfg, char *err, size_t errlen)
{
    const struct store_driver *driver = driver_for(cfg);
    if (!driver) {
        snprintf(err, errlen, "unknown store driver %d", (int)cfg->driver);
        return -1;
    }
    return driver->backend_check ? driver->backend_check(cfg, err, errlen) : 0;
}

struct store *store_new(const struct config *cfg, char *err, size_t errlen)
{
    const struct store_driver *driver = driver_for(cfg);
    if (!driver) {
        snprintf(err, errlen, "unknown store driver %d", (int)cfg->driver);
        return NULL;
    }
    void *backend = driver->backend_open(cfg, err, errlen);
    if (!backend)
        return NULL;
    struct store *store = xcalloc(1, sizeof(*store));
    store->cfg = cfg;
    store->driver = driver;
    TAILQ_INIT(&store->open);
    store->backend = backend;
    store->max_open = (size_t)(cfg->driver == STORE_SQLITE       ? cfg->sqlite.max_open
                               : cfg->driver == STORE_POSTGRESQL ? cfg->postgresql.max_connections
                                                                 : cfg->mssql.max_connections);
    store->idle_ms = (int64_t)cfg->store_idle_timeout * 1000;
    return store;
}

/* ---- open tenants ---- */

static void tenant_close(struct store *store, struct store_tenant *t)
{
    TAILQ_REMOVE(&store->open, t, link);
    store->nopen--;
    store->driver->tenant_close(t->conn);
    arena_free(&t->schema_arena);
    free(t->schemas);
    free(t->tenant);
    free(t);
}

static struct store_tenant *tenant_find(struct store *store, const char *tenant)
{
    struct store_tenant *t;
    TAILQ_FOREACH(t, &store->open, link)
        if (strcmp(t->tenant, tenant) == 0)
            return t;
    return NULL;
}

void store_free(struct store *store)
{
    if (!store)
        return;
    while (!TAILQ_EMPTY(&store->open))
        tenant_close(store, TAILQ_FIRST(&store->open));
    store->driver->backend_close(store->backend);
    free(store->chunk_rows);
    free(store->chunk_values);
    free(store);
}

/* The open tenant used least recently (the list's last), or NULL when none is open. */
static struct store_tenant *least_recently_used(struct store *store)
{
    return TAILQ_LAST(&store->open, open_tenants);
}

void store_close_idle(struct store *store, int64_t now_ms)
{
    if (store->idle_ms <= 0)
        return;
    struct store_tenant *last = least_recently_used(store);
    while (last && now_ms - last->used_ms >= store->idle_ms) {   /* the least recently used first */
        struct store_tenant *before = TAILQ_PREV(last, open_tenants, link);
        tenant_close(store, last);
        last = before;
    }
    if (store->driver->backend_idle && now_ms - store->backend_used_ms >= store->idle_ms)
        store->driver->backend_idle(store->backend);
}

/* The tenant's database name (to free), or NULL with f when the tenant's name is invalid. */
static char *tenant_dbname(const struct store *store, const char *tenant, struct fault *f)
{
    if (tenant_valid(tenant))
        return cfg_database_name(store->cfg, tenant);
    fault_set(f, FAULT_INTERNAL, "invalid tenant name");
    return NULL;
}

struct store_tenant *store_tenant(struct store *store, const char *tenant, struct fault *f)
{
    struct store_tenant *t = tenant_find(store, tenant);
    if (t) {
        TAILQ_REMOVE(&store->open, t, link);
        TAILQ_INSERT_HEAD(&store->open, t, link);
        t->used_ms = monotonic_ms();
        return t;
    }
    char *dbname = tenant_dbname(store, tenant, f);
    if (!dbname)
        return NULL;
    if (store->nopen >= store->max_open)
        tenant_close(store, least_recently_used(store));
    void *conn = NULL;
    store->backend_used_ms = monotonic_ms();
    errno = 0;
    int rc = store->driver->tenant_open(store->backend, tenant, dbname, &conn, f);
    /* Short of what each open mirror holds (descriptors at a low limit: each SQLite mirror
     * holds three; the server's connection slots) while other mirrors are open: the least
     * recently used one gives its up and the open is tried once more, rather than fail every
     * new tenant until the idle sweep (or for ever, without one). */
    if ((rc == STORE_OPEN_SHORT || (rc != 0 && fd_shortage(errno))) && store->nopen > 0) {
        struct store_tenant *oldest = least_recently_used(store);
        log_warn("opening the mirror of %s: %s: closing that of %s, the least recently used, and "
                 "trying again", tenant, f->message, oldest->tenant);
        tenant_close(store, oldest);
        fault_clear(f);
        rc = store->driver->tenant_open(store->backend, tenant, dbname, &conn, f);
    }
    free(dbname);
    if (rc != 0)
        return NULL;
    t = xcalloc(1, sizeof(*t));
    t->store = store;
    t->used_ms = store->backend_used_ms;
    t->tenant = xstrdup(tenant);
    t->conn = conn;
    arena_init(&t->schema_arena);
    TAILQ_INSERT_HEAD(&store->open, t, link);
    store->nopen++;
    return t;
}

int store_tenant_exists(struct store *store, const char *tenant, int *exists, struct fault *f)
{
    char *dbname = tenant_dbname(store, tenant, f);
    if (!dbname)
        return -1;
    int rc = store->driver->tenant_exists(store->backend, tenant, dbname, exists, f);
    free(dbname);
    return rc;
}

/* ---- stored schemas ---- */

/* Called at the start of each call, so that pointers handed out during a call stay valid. */
static void schema_cache_trim(struct store_tenant *t)
{
    if (t->nschemas < SCHEMA_CACHE_MAX)
        return;
    arena_free(&t->schema_arena);
    t->nschemas = 0;
}

/* The parsed schema of a metadata row, or NULL with err when the stored text does not parse. */
static const struct table_schema *stored_schema(struct store_tenant *t, const struct table_meta *m,
                                                char *err, size_t errlen)
{
    for (size_t i = 0; i < t->nschemas; i++) {
        const struct table_schema *s = &t->schemas[i]->schema;
        if (strcmp(s->hash, m->hash) == 0 && ident_equal(s->name, m->name))
            return s;
    }
    struct cached_schema *entry = arena_calloc(&t->schema_arena, 1, sizeof(*entry));
    if (schema_from_canonical(m->name, m->canonical, &t->schema_arena, &entry->schema, err,
                              errlen) != 0)
        return NULL;
    /* keyed by the stored hash, whatever the text hashes to */
    snprintf(entry->schema.hash, sizeof(entry->schema.hash), "%s", m->hash);
    t->schemas = xgrow(t->schemas, &t->schemas_cap, t->nschemas + 1, sizeof(*t->schemas));
    t->schemas[t->nschemas++] = entry;
    return &entry->schema;
}

/* ---- helpers shared by the calls ---- */

static struct table_meta *meta_find(struct table_meta *meta, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (ident_equal(meta[i].name, name))
            return &meta[i];
    return NULL;
}

/* Begins the call's transaction and reads the metadata; first trims the schema cache. */
static int call_begin(struct store_tenant *t, struct arena *arena, struct table_meta **meta,
                      size_t *nmeta, struct fault *f)
{
    schema_cache_trim(t);
    const struct store_driver *driver = t->store->driver;
    if (driver->begin(t->conn, f) != 0) {
        driver->rollback(t->conn);   /* whatever was left open, the next call starts clean */
        return -1;
    }
    if (driver->meta_read(t->conn, arena, meta, nmeta, f) != 0) {
        driver->rollback(t->conn);
        return -1;
    }
    return 0;
}

static int call_end(struct store_tenant *t, int rc, struct fault *f)
{
    if (rc == 0 && t->store->driver->commit(t->conn, f) == 0)
        return 0;
    t->store->driver->rollback(t->conn);
    return -1;
}

static int table_remove(struct store_tenant *t, const char *name, struct fault *f)
{
    const struct store_driver *driver = t->store->driver;
    if (driver->table_drop(t->conn, name, f) != 0)
        return -1;
    return driver->meta_delete(t->conn, name, f);
}

static int table_empty(struct store_tenant *t, const struct table_meta *m, struct fault *f)
{
    const struct store_driver *driver = t->store->driver;
    if (driver->table_wipe(t->conn, m->name, f) != 0)
        return -1;
    return driver->meta_put(t->conn, m->name, m->canonical, m->hash, -1, f);
}

/* ---- TableSchema ---- */

static int table_names_unique(const struct table_schema *tables, size_t n, struct fault *f)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ident_equal(tables[i].name, tables[j].name)) {
                fault_set(f, FAULT_MALFORMED_REQUEST, "table %s is listed twice",
                          tables[j].name);
                return -1;
            }
    return 0;
}

/* Applies one request table against its metadata row m (NULL when the mirror lacks it). */
static int schema_apply_one(struct store_tenant *t, const struct table_schema *req,
                            const struct table_meta *m, struct arena *arena,
                            struct table_state *state, struct fault *f)
{
    const struct store_driver *driver = t->store->driver;
    state->name = req->name;
    state->lsn = -1;
    if (req->reject) {
        state->change = CHANGE_REJECTED;
        state->error = req->reject;
        return m ? table_remove(t, m->name, f) : 0;
    }
    const struct table_schema *old = NULL;
    struct schema_diff diff;
    memset(&diff, 0, sizeof(diff));
    enum table_change change;
    if (m) {
        char err[256];
        old = stored_schema(t, m, err, sizeof(err));
        if (!old)
            log_warn("table %s: stored schema unreadable (%s); recreating it", m->name, err);
    }
    change = (m && !old) ? CHANGE_RECREATED : schema_plan(req, old, arena, &diff);
    state->change = change;
    switch (change) {
    case CHANGE_UNCHANGED:
        state->lsn = m->lsn;
        return 0;
    case CHANGE_ALTERED:
        state->lsn = m->lsn;
        if (driver->table_alter(t->conn, old, req, &diff, f) != 0)
            return -1;
        break;
    case CHANGE_RECREATED:
        if (driver->table_drop(t->conn, m->name, f) != 0)
            return -1;
        if (driver->table_create(t->conn, req, f) != 0)
            return -1;
        break;
    default:
        state->change = CHANGE_CREATED;
        if (driver->table_create(t->conn, req, f) != 0)
            return -1;
        break;
    }
    return driver->meta_put(t->conn, m ? m->name : req->name, req->canonical, req->hash,
                            state->lsn, f);
}

/* Where the store changes names (stored_name), a request table whose name, or two of whose
 * columns, would become a name already taken (by an earlier table of the request or another
 * table of the mirror) cannot be mirrored: it is Rejected, saying why, before any SQL. */
static void reject_name_clashes(const struct store_driver *driver, struct table_schema *tables,
                                size_t n, const struct table_meta *meta, size_t nmeta,
                                struct arena *arena)
{
    if (!driver->stored_name)
        return;
    char a[SM_IDENT_MAX + 1], b[SM_IDENT_MAX + 1], why[3 * SM_IDENT_MAX + 96];
    for (size_t i = 0; i < n; i++) {
        struct table_schema *s = &tables[i];
        why[0] = '\0';
        for (size_t j = 0; j < s->ncolumns && !why[0]; j++) {
            const char *refused = driver->column_name_refused ? driver->column_name_refused(s->columns[j].name)
                                                              : NULL;
            if (refused)
                snprintf(why, sizeof(why), "column %s: %s", s->columns[j].name, refused);
            driver->stored_name(a, s->columns[j].name);
            for (size_t k = j + 1; k < s->ncolumns && !why[0]; k++) {
                driver->stored_name(b, s->columns[k].name);
                if (strcmp(a, b) == 0)
                    snprintf(why, sizeof(why), "columns %s and %s would both be %s in the %s store",
                             s->columns[j].name, s->columns[k].name, a, driver->name);
            }
        }
        driver->stored_name(a, s->name);
        for (size_t j = 0; j < i + nmeta && !why[0]; j++) {
            const char *other = j < i ? tables[j].name : meta[j - i].name;
            driver->stored_name(b, other);
            if (!ident_equal(other, s->name) && strcmp(a, b) == 0)
                snprintf(why, sizeof(why), "tables %s and %s would both be %s in the %s store", other,
                         s->name, a, driver->name);
        }
        if (why[0] && !s->reject)
            s->reject = arena_strdup(arena, why);
    }
}

static int meta_by_name(const void *a, const void *b)
{
    const struct table_meta *const *ma = a, *const *mb = b;
    return strcasecmp((*ma)->name, (*mb)->name);
}

int store_table_schema(struct store_tenant *t, struct table_schema *tables, size_t n,
                       struct arena *arena, struct table_state **states, size_t *nstates,
                       struct fault *f)
{
    if (n == 0) {
        fault_set(f, FAULT_MALFORMED_REQUEST, "TableSchema lists no tables");
        return -1;
    }
    if (table_names_unique(tables, n, f) != 0)
        return -1;
    struct table_meta *meta;
    size_t nmeta;
    if (call_begin(t, arena, &meta, &nmeta, f) != 0)
        return -1;
    reject_name_clashes(t->store->driver, tables, n, meta, nmeta, arena);
    struct table_state *out = arena_calloc(arena, n + nmeta, sizeof(*out));
    unsigned char *listed = arena_calloc(arena, nmeta + 1, 1);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct table_meta *m = meta_find(meta, nmeta, tables[i].name);
        if (m)
            listed[m - meta] = 1;
        rc = schema_apply_one(t, &tables[i], m, arena, &out[i], f);
    }
    const struct table_meta **dropped = arena_calloc(arena, nmeta + 1, sizeof(*dropped));
    size_t ndropped = 0;
    for (size_t i = 0; i < nmeta; i++)
        if (!listed[i])
            dropped[ndropped++] = &meta[i];
    qsort(dropped, ndropped, sizeof(*dropped), meta_by_name);
    for (size_t i = 0; i < ndropped && rc == 0; i++) {
        rc = table_remove(t, dropped[i]->name, f);
        out[n + i] = (struct table_state){.name = dropped[i]->name, .lsn = -1,
                                          .change = CHANGE_DROPPED};
    }
    if (call_end(t, rc, f) != 0)
        return -1;
    *states = out;
    *nstates = n + ndropped;
    return 0;
}

/* ---- Wipe and resync ---- */

int store_wipe(struct store_tenant *t, char *const *names, size_t n, struct arena *arena,
               struct table_state **states, struct fault *f)
{
    if (n == 0) {
        fault_set(f, FAULT_MALFORMED_REQUEST, "Wipe lists no tables");
        return -1;
    }
    struct table_meta *meta;
    size_t nmeta;
    if (call_begin(t, arena, &meta, &nmeta, f) != 0)
        return -1;
    const struct table_meta **found = arena_calloc(arena, n, sizeof(*found));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (table_refuse_blocked(names[i], &t->store->cfg->block_tables, f) != 0) {
            rc = -1;
        } else if (!(found[i] = meta_find(meta, nmeta, names[i]))) {
            fault_set(f, FAULT_UNKNOWN_TABLE, "table %s is not in the mirror", names[i]);
            fault_at(f, names[i], NULL, 0);
            rc = -1;
        }
    }
    struct table_state *out = arena_calloc(arena, n, sizeof(*out));
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = table_empty(t, found[i], f);
        out[i] = (struct table_state){.name = names[i], .lsn = -1};
    }
    if (call_end(t, rc, f) != 0)
        return -1;
    *states = out;
    return 0;
}

int store_resync(struct store_tenant *t, char *const *names, size_t n, struct fault *f)
{
    struct arena arena;
    arena_init(&arena);
    struct table_meta *meta;
    size_t nmeta;
    if (call_begin(t, &arena, &meta, &nmeta, f) != 0) {
        arena_free(&arena);
        return -1;
    }
    int rc = 0;
    if (!names) {
        for (size_t i = 0; i < nmeta && rc == 0; i++)
            rc = table_empty(t, &meta[i], f);
    }
    for (size_t i = 0; names && i < n && rc == 0; i++) {
        const struct table_meta *m = meta_find(meta, nmeta, names[i]);
        if (m)
            rc = table_empty(t, m, f);
        else
            log_warn("resync: table %s is not in the mirror of %s; ignored", names[i],
                     t->tenant);
    }
    rc = call_end(t, rc, f);
    arena_free(&arena);
    return rc;
}

/* ---- RowData ---- */

/* What one call knows about one table it writes. */
struct call_table {
    const char *name;                  /* as first sent in this call */
    const struct table_meta *meta;
    const struct table_schema *schema;
    int64_t lsn_before;
    int64_t lsn_after;                 /* the largest batch <Lsn> seen, at least lsn_before */
    long rows_seen;                    /* for 1-based row numbers in faults */
    struct table_state *state;
};

/* One batch's columns against its table: target[j] is the table column of Columns entry j,
 * source[k] the Columns entry of table column k. */
struct column_map {
    size_t *target;
    size_t *source;
};

static int call_table_open(struct store_tenant *t, struct table_meta *meta, size_t nmeta,
                           const char *name, struct call_table *ct, struct fault *f)
{
    if (table_refuse_blocked(name, &t->store->cfg->block_tables, f) != 0)
        return -1;
    ct->meta = meta_find(meta, nmeta, name);
    if (!ct->meta) {
        fault_set(f, FAULT_UNKNOWN_TABLE, "table %s is not in the mirror", name);
        fault_at(f, name, NULL, 0);
        return -1;
    }
    char err[256];
    ct->schema = stored_schema(t, ct->meta, err, sizeof(err));
    if (!ct->schema) {
        fault_set(f, FAULT_STORAGE_ERROR, "stored schema of table %s is unreadable: %s", name,
                  err);
        return -1;
    }
    ct->name = name;
    ct->lsn_before = ct->meta->lsn;
    ct->lsn_after = ct->meta->lsn;
    return 0;
}

static size_t column_index(const struct table_schema *s, const char *name)
{
    for (size_t k = 0; k < s->ncolumns; k++)
        if (ident_equal(s->columns[k].name, name))
            return k;
    return SIZE_MAX;
}

static int column_mismatch(struct fault *f, const char *table, const char *column,
                           const char *why)
{
    fault_set(f, FAULT_COLUMN_MISMATCH, "table %s: column %s %s", table, column, why);
    fault_at(f, table, column, 0);
    return -1;
}

static int columns_map(const struct table_schema *s, const struct batch *b, struct arena *arena,
                       struct column_map *map, struct fault *f)
{
    map->target = arena_alloc(arena, (b->ncolumns + 1) * sizeof(*map->target));
    map->source = arena_alloc(arena, (s->ncolumns + 1) * sizeof(*map->source));
    for (size_t k = 0; k < s->ncolumns; k++)
        map->source[k] = SIZE_MAX;
    for (size_t j = 0; j < b->ncolumns; j++) {
        size_t k = column_index(s, b->columns[j]);
        if (k == SIZE_MAX)
            return column_mismatch(f, b->table, b->columns[j], "is not a column of the table");
        if (map->source[k] != SIZE_MAX)
            return column_mismatch(f, b->table, b->columns[j], "is listed twice");
        map->source[k] = j;
        map->target[j] = k;
    }
    for (size_t k = 0; k < s->ncolumns; k++)
        if (map->source[k] == SIZE_MAX)
            return column_mismatch(f, b->table, s->columns[k].name, "is missing from Columns");
    return 0;
}

static int row_malformed(struct fault *f, const char *table, long rowno, const char *what)
{
    fault_set(f, FAULT_MALFORMED_REQUEST, "row %ld of table %s: %s", rowno, table, what);
    fault_at(f, table, NULL, rowno);
    return -1;
}

static int value_checked(const struct store_driver *driver, const struct column *col,
                         const struct raw_value *raw, const char *table, const char *column_as_sent,
                         long rowno, struct arena *arena, struct value *out, struct fault *f)
{
    char err[512];
    const char *why = err;
    if (value_check(&col->type, col->nullable, raw, arena, out, err, sizeof(err)) == 0) {
        why = driver->value_refused ? driver->value_refused(out) : NULL;
        if (!why)
            return 0;
    }
    fault_set(f, FAULT_INVALID_VALUE, "row %ld of table %s: column %s: %s", rowno, table,
              column_as_sent, why);
    fault_at(f, table, column_as_sent, rowno);
    return -1;
}

/* Checks one row's values into out (table column order; key order for D). */
static int row_check(const struct store_driver *driver, const struct table_schema *s,
                     const struct batch *b, const struct row *row, long rowno,
                     const struct column_map *map, struct arena *arena, struct value *out,
                     struct fault *f)
{
    if (row->op == 'D') {
        if (row->nvalues != s->npk)
            return row_malformed(f, b->table, rowno, "a D row carries the primary-key values");
        for (size_t p = 0; p < s->npk; p++) {
            size_t k = s->pk[p];
            if (value_checked(driver, &s->columns[k], &row->values[p], b->table,
                              b->columns[map->source[k]], rowno, arena, &out[p], f) != 0)
                return -1;
        }
        return 0;
    }
    if (row->op != 'I' && row->op != 'U')
        return row_malformed(f, b->table, rowno, "op must be I, U or D");
    if (row->nvalues != s->ncolumns)
        return row_malformed(f, b->table, rowno, "value count differs from Columns");
    for (size_t j = 0; j < b->ncolumns; j++) {
        size_t k = map->target[j];
        if (value_checked(driver, &s->columns[k], &row->values[j], b->table, b->columns[j], rowno,
                          arena, &out[k], f) != 0)
            return -1;
    }
    return 0;
}

/* Makes room for one chunk of rows of a table of ncolumns columns. */
static void chunk_reserve(struct store *store, size_t ncolumns)
{
    store->chunk_rows = xgrow(store->chunk_rows, &store->chunk_rows_cap, APPLY_CHUNK_ROWS,
                              sizeof(*store->chunk_rows));
    store->chunk_values = xgrow(store->chunk_values, &store->chunk_values_cap,
                                (size_t)APPLY_CHUNK_ROWS * (ncolumns ? ncolumns : 1),
                                sizeof(*store->chunk_values));
}

static int chunk_flush(struct store_tenant *t, const struct call_table *ct, size_t *nrows,
                       struct fault *f)
{
    if (*nrows == 0)
        return 0;
    int rc = t->store->driver->rows_apply(t->conn, ct->schema, t->store->chunk_rows, *nrows,
                                          ct->lsn_before == -1, f);
    *nrows = 0;
    if (rc != 0 && !f->names_table)   /* the database refused the table's rows (a trigger...) */
        fault_at(f, ct->name, NULL, 0);
    return rc;
}

static void count_row(struct table_state *state, char op)
{
    if (op == 'I')
        state->inserted++;
    else if (op == 'U')
        state->updated++;
    else
        state->deleted++;
}

/* ---- RowData, a batch and a row at a time ---- */

struct store_rows {
    struct store_tenant *t;
    struct arena *arena;
    struct table_meta *meta;
    size_t nmeta;
    struct call_table **tables;        /* in order of first appearance */
    size_t ntables, tables_cap;
    struct call_table *ct;             /* the open batch's table */
    struct column_map map;             /* the open batch's columns */
    size_t nchunk;                     /* rows checked and not yet handed to the driver */
};

struct store_rows *store_rows_begin(struct store_tenant *t, struct arena *arena, struct fault *f)
{
    struct store_rows *s = xcalloc(1, sizeof(*s));
    s->t = t;
    s->arena = arena;
    if (call_begin(t, arena, &s->meta, &s->nmeta, f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static struct call_table *rows_table(struct store_rows *s, const char *name, struct fault *f)
{
    for (size_t k = 0; k < s->ntables; k++)
        if (ident_equal(s->tables[k]->name, name))
            return s->tables[k];
    struct call_table *ct = arena_calloc(s->arena, 1, sizeof(*ct));
    if (call_table_open(s->t, s->meta, s->nmeta, name, ct, f) != 0)
        return NULL;
    ct->state = arena_calloc(s->arena, 1, sizeof(*ct->state));
    ct->state->name = name;
    s->tables = xgrow(s->tables, &s->tables_cap, s->ntables + 1, sizeof(*s->tables));
    s->tables[s->ntables++] = ct;
    return ct;
}

int store_rows_batch(struct store_rows *s, const struct batch *b, struct fault *f)
{
    s->ct = rows_table(s, b->table, f);
    if (!s->ct || columns_map(s->ct->schema, b, s->arena, &s->map, f) != 0)
        return -1;
    chunk_reserve(s->t->store, s->ct->schema->ncolumns);
    s->nchunk = 0;
    return 0;
}

int store_rows_row(struct store_rows *s, const struct batch *b, const struct row *row,
                   struct fault *f)
{
    struct store *store = s->t->store;
    struct call_table *ct = s->ct;
    const struct table_schema *schema = ct->schema;
    long rowno = ++ct->rows_seen;
    struct value *values = store->chunk_values + s->nchunk * schema->ncolumns;
    if (row_check(store->driver, schema, b, row, rowno, &s->map, s->arena, values, f) != 0)
        return -1;
    if (row->has_lsn && row->lsn <= ct->lsn_before) {
        ct->state->skipped++;
        return 0;
    }
    store->chunk_rows[s->nchunk++] = (struct row_change){.op = row->op, .values = values,
                                                         .rowno = rowno};
    count_row(ct->state, row->op);
    return s->nchunk == APPLY_CHUNK_ROWS ? chunk_flush(s->t, ct, &s->nchunk, f) : 0;
}

int store_rows_flush(struct store_rows *s, struct fault *f)
{
    const struct store_driver *driver = s->t->store->driver;
    if (s->nchunk == 0 || !s->ct || !driver->small_chunks_ok ||
        !driver->small_chunks_ok(s->t->conn, s->ct->schema, s->t->store->chunk_rows, s->nchunk,
                                 s->ct->lsn_before == -1))
        return 0;
    return chunk_flush(s->t, s->ct, &s->nchunk, f);
}

int store_rows_batch_end(struct store_rows *s, const struct batch *b, struct fault *f)
{
    if (chunk_flush(s->t, s->ct, &s->nchunk, f) != 0)
        return -1;
    if (b->has_lsn && b->lsn > s->ct->lsn_after)
        s->ct->lsn_after = b->lsn;
    return 0;
}

/* Moves the positions of the tables whose batches carried a larger Lsn. */
static int rows_positions(struct store_rows *s, struct fault *f)
{
    for (size_t k = 0; k < s->ntables; k++) {
        struct call_table *ct = s->tables[k];
        if (ct->lsn_after > ct->lsn_before &&
            s->t->store->driver->meta_put(s->t->conn, ct->meta->name, ct->meta->canonical,
                                          ct->meta->hash, ct->lsn_after, f) != 0)
            return -1;
        ct->state->lsn = ct->lsn_after;
    }
    return 0;
}

int store_rows_end(struct store_rows *s, int ok, struct table_state **states, size_t *nstates,
                   struct fault *f)
{
    int rc = call_end(s->t, ok ? rows_positions(s, f) : -1, f);
    if (rc == 0 && states) {
        *states = arena_calloc(s->arena, s->ntables ? s->ntables : 1, sizeof(**states));
        for (size_t k = 0; k < s->ntables; k++)
            (*states)[k] = *s->tables[k]->state;
        *nstates = s->ntables;
    }
    free(s->tables);
    free(s);
    return rc;
}

int store_row_data(struct store_tenant *t, const struct batch *batches, size_t n,
                   struct arena *arena, struct table_state **states, size_t *nstates,
                   struct fault *f)
{
    if (n == 0) {
        fault_set(f, FAULT_MALFORMED_REQUEST, "RowData has no batches");
        return -1;
    }
    struct store_rows *s = store_rows_begin(t, arena, f);
    if (!s)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct batch *b = &batches[i];
        rc = store_rows_batch(s, b, f);
        for (size_t r = 0; r < b->nrows && rc == 0; r++)
            rc = store_rows_row(s, b, &b->rows[r], f);
        if (rc == 0)
            rc = store_rows_batch_end(s, b, f);
    }
    return store_rows_end(s, rc == 0, states, nstates, f);
}

/* ---- operator actions ---- */

int store_reset(struct store *store, const char *tenant, struct fault *f)
{
    char *dbname = tenant_dbname(store, tenant, f);
    if (!dbname)
        return -1;
    struct store_tenant *open = tenant_find(store, tenant);
    if (open)
        tenant_close(store, open);
    store->backend_used_ms = monotonic_ms();
    int rc = store->driver->tenant_drop(store->backend, tenant, dbname, f);
    free(dbname);
    if (rc != 0)
        return -1;
    return store_tenant(store, tenant, f) ? 0 : -1;
}

int store_list_tables(struct store_tenant *t, struct arena *arena, struct table_meta **out,
                      size_t *n, struct fault *f)
{
    if (call_begin(t, arena, out, n, f) != 0)
        return -1;
    return call_end(t, 0, f);
}

/* ---- operator scripts (hooks.table_sql) ---- */

int store_run_table_script(struct store_tenant *t, const char *table, const char *sql, char *err,
                           size_t errlen)
{
    const struct store_driver *driver = t->store->driver;
    if (!driver->exec_script) {
        snprintf(err, errlen, "the %s store cannot run operator SQL", driver->name);
        return -1;
    }
    if (!ident_valid(table)) {
        snprintf(err, errlen, "invalid table name");
        return -1;
    }
    struct buf quoted = BUF_INIT;
    driver->put_table(t->conn, &quoted, table);
    static const char token[] = "{table}";
    struct buf text = BUF_INIT;
    for (const char *p = sql;;) {
        const char *hit = strstr(p, token);
        if (!hit) {
            buf_puts(&text, p);
            break;
        }
        buf_append(&text, p, (size_t)(hit - p));
        buf_append(&text, quoted.data, quoted.len);
        p = hit + sizeof(token) - 1;
    }
    int rc = driver->exec_script(t->conn, text.data ? text.data : "", err, errlen);
    buf_free(&text);
    buf_free(&quoted);
    return rc;
}
