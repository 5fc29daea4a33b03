/* store/store: the mirror store. Two layers:
 *  - the generic layer (store.c): the protocol's storage semantics, written once for every
 *    database: TableSchema planning against the metadata, Wipe, RowData value checks,
 *    stale-row skipping, position rules, counts, resync and reset; always one transaction per
 *    call and all-or-nothing;
 *  - a driver per database (sqlite.c, postgresql.c, mssql.c) behind struct store_driver: SQL
 *    dialect, types, quoting, bulk paths. Drivers never see the wire format.
 * A struct store belongs to one worker process (created after fork); nothing here is shared
 * between processes. Correctness rests on the database transaction: each position is written in
 * the same transaction as its rows. */
#ifndef SOMIRROR_STORE_STORE_H
#define SOMIRROR_STORE_STORE_H
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"
#include "config/config.h"
#include "proto/fault.h"
#include "proto/types.h"

/* One row of the <ctx>_mirroring metadata table. */
struct table_meta {
    char *name;          /* tablename as first sent */
    char *canonical;     /* schema: the canonical text of protocol 4.2 */
    char hash[SM_HASH_HEX + 1];
    int64_t lsn;
    int64_t updated;     /* Unix seconds (UTC) of the row's last change */
};

/* A checked row for a driver: op 'I'/'U' with one value per table column in table column
 * order, or 'D' with the primary-key values in key order. */
struct row_change {
    char op;
    const struct value *values;
    long rowno;   /* 1-based among the table's rows in the call: what a fault names */
};

/* How an Altered table differs (filled by the schema planner, proto/schema.h). */
struct schema_diff;

enum { STORE_OPEN_SHORT = -2 };   /* see tenant_open */

struct store_driver {
    const char *name;
    /* Per-worker backend state (server connection settings, caches). */
    void *(*backend_open)(const struct config *cfg, char *err, size_t errlen);
    /* What backend_open would find wrong, checked without changing anything (somirrord -t), as
     * the user the workers run as: 0, 1 with a warning in err, or -1 with err. NULL when
     * there is nothing to check before a server is reached. */
    int (*backend_check)(const struct config *cfg, char *err, size_t errlen);
    void (*backend_close)(void *backend);
    /* Closes what the backend keeps open between tenant opens (a server connection), unused
     * for store.idle_timeout; NULL when it keeps nothing. */
    void (*backend_idle)(void *backend);
    /* Opens the tenant's mirror, creating the database and the metadata table when missing. 0,
     * or -1 with f; STORE_OPEN_SHORT with f where the database refused for want of what each
     * open mirror holds (PostgreSQL: a connection slot), or -1 with errno out of descriptors
     * (fd_shortage): closing another tenant's mirror may then let it open. */
    int (*tenant_open)(void *backend, const char *tenant, const char *dbname, void **conn,
                       struct fault *f);
    void (*tenant_close)(void *conn);
    /* Whether the tenant's mirror database exists (1 or 0 in *exists), making nothing. */
    int (*tenant_exists)(void *backend, const char *tenant, const char *dbname, int *exists,
                         struct fault *f);
    /* Drops the tenant's whole mirror database (reset). The tenant's conn is closed first. */
    int (*tenant_drop)(void *backend, const char *tenant, const char *dbname, struct fault *f);

    /* begin also takes the database-side tenant lock that serialises several hosts. */
    int (*begin)(void *conn, struct fault *f);
    int (*commit)(void *conn, struct fault *f);
    void (*rollback)(void *conn);

    int (*meta_read)(void *conn, struct arena *arena, struct table_meta **out, size_t *n,
                     struct fault *f);
    /* Inserts or replaces the metadata row (updated = now). */
    int (*meta_put)(void *conn, const char *table, const char *canonical, const char *hash,
                    int64_t lsn, struct fault *f);
    int (*meta_delete)(void *conn, const char *table, struct fault *f);

    int (*table_create)(void *conn, const struct table_schema *schema, struct fault *f);
    int (*table_drop)(void *conn, const char *table, struct fault *f);
    /* Changes old into new in place, keeping rows (an Altered change, see diff). Schemas the
     * generic layer rebuilds from the metadata (old_schema here, the schema of rows_apply)
     * have the table name of the metadata row and lowercased column names, and their hash set
     * (drivers may key cached statements by name and hash); table_create and new_schema get
     * the names as sent. */
    int (*table_alter)(void *conn, const struct table_schema *old_schema,
                       const struct table_schema *new_schema, const struct schema_diff *diff,
                       struct fault *f);
    int (*table_wipe)(void *conn, const char *table, struct fault *f);
    /* Applies rows in order (last change of a key wins); I and U are upserts, D of a missing
     * key is no error. May be called several times per batch (the generic layer hands rows
     * over in chunks). table_was_empty: the table's stored Lsn was -1 when the call began (a
     * full load in progress), so drivers may prefer their bulk path; the table may still hold
     * rows from earlier calls of the same load, and the driver must stay correct then. */
    int (*rows_apply)(void *conn, const struct table_schema *schema, const struct row_change *rows,
                      size_t n, int table_was_empty, struct fault *f);
    /* Optional (NULL: never): whether rows_apply would take these rows (a partial chunk) of the
     * table about as cheaply per row as a full chunk (no per-chunk statements to speak of), so
     * that store_rows_flush may hand them over now. */
    int (*small_chunks_ok)(void *conn, const struct table_schema *schema,
                           const struct row_change *rows, size_t n, int table_was_empty);
    /* Runs operator SQL (hooks.table_sql) outside the call's transaction. */
    int (*exec_script)(void *conn, const char *sql, char *err, size_t errlen);
    /* Appends the table's name as this store names and quotes it in SQL (lowercased and
     * shortened by PostgreSQL, schema-qualified by SQL Server), for {table} in operator SQL. */
    void (*put_table)(void *conn, struct buf *sql, const char *table);
    /* The name a table or column takes in this store (out: at least SM_IDENT_MAX + 1 bytes), where
     * it is not the name itself compared case-insensitively (PostgreSQL shortens names past 63
     * bytes): two that become one make the later table Rejected rather than fail the call. NULL:
     * names are kept. */
    void (*stored_name)(char *out, const char *name);
    /* Why this store cannot have a column of this name (PostgreSQL's system columns, xmin...),
     * or NULL: the table is then Rejected with that reason rather than fail the call. NULL: any
     * valid name. */
    const char *(*column_name_refused)(const char *name);
    /* Why this store cannot hold a value that passed the protocol's checks (PostgreSQL: text
     * holding U+0000), or NULL. Asked as each row is checked, so that the first failure of
     * the request is the one answered, skipped rows included. NULL: every such value fits. */
    const char *(*value_refused)(const struct value *v);
};

extern const struct store_driver store_driver_sqlite;
extern const struct store_driver store_driver_postgresql;
extern const struct store_driver store_driver_mssql;

struct store;
struct store_tenant;

/* Creates the worker's store for cfg->driver. NULL with err on failure. */
struct store *store_new(const struct config *cfg, char *err, size_t errlen);
/* The driver's backend_check: 0, 1 with a warning in err, or -1 with err. */
int store_check(const struct config *cfg, char *err, size_t errlen);
void store_free(struct store *store);

/* The tenant's open mirror, provisioned when missing (cached; at most a bounded number open,
 * the least recently used closed first). The pointer is valid until the next store_tenant,
 * store_reset or store_close_idle call on the same store. */
struct store_tenant *store_tenant(struct store *store, const char *tenant, struct fault *f);
/* Closes the tenants unused for store.idle_timeout, and the backend's own connection when it
 * has opened none for as long, so that a worker holds no server connection between a
 * tenant's cycles (now_ms: monotonic_ms). Between calls only. */
void store_close_idle(struct store *store, int64_t now_ms);
/* Whether tenant has a mirror (*exists 1 or 0), making none (somirrorctl tables); 0, or -1
 * with f set when that cannot be told. */
int store_tenant_exists(struct store *store, const char *tenant, int *exists, struct fault *f);

/* TableSchema: tables are prepared (schema_prepare); answers one table_state per request table
 * in order, then one per dropped table ordered by name, allocated in arena. */
int store_table_schema(struct store_tenant *t, struct table_schema *tables, size_t n,
                       struct arena *arena, struct table_state **states, size_t *nstates,
                       struct fault *f);
/* Wipe: every name must be a mirrored table (UnknownTable otherwise); blocked names are
 * refused by the caller before. */
int store_wipe(struct store_tenant *t, char *const *names, size_t n, struct arena *arena,
               struct table_state **states, struct fault *f);
/* RowData: checks, applies, moves positions; one table_state per table in order of first
 * appearance. */
int store_row_data(struct store_tenant *t, const struct batch *batches, size_t n,
                   struct arena *arena, struct table_state **states, size_t *nstates,
                   struct fault *f);
/* RowData as it arrives, in the same transaction and with the same checks and answers as
 * store_row_data (which is built on these): begin, then for each batch store_rows_batch (its
 * table and columns), store_rows_row for each row, store_rows_batch_end (its Lsn); then
 * store_rows_end, which commits when ok and nothing failed, rolls back otherwise, and frees s.
 * After any failure (f set) only store_rows_end(s, 0, ...) may follow. The rows and batches
 * must stay valid until the next call on s; states are allocated in arena. */
struct store_rows;
struct store_rows *store_rows_begin(struct store_tenant *t, struct arena *arena, struct fault *f);
int store_rows_batch(struct store_rows *s, const struct batch *b, struct fault *f);
int store_rows_row(struct store_rows *s, const struct batch *b, const struct row *row,
                   struct fault *f);
int store_rows_batch_end(struct store_rows *s, const struct batch *b, struct fault *f);
/* Hands the rows checked so far to the database now rather than with the next full chunk,
 * where the driver says small chunks are cheap (else nothing): for a caller that would
 * otherwise wait for more rows. */
int store_rows_flush(struct store_rows *s, struct fault *f);
int store_rows_end(struct store_rows *s, int ok, struct table_state **states, size_t *nstates,
                   struct fault *f);
/* Operator resync: tables emptied and Lsn -1 (names NULL: every table). */
int store_resync(struct store_tenant *t, char *const *names, size_t n, struct fault *f);
/* Operator reset: the tenant's mirror is dropped and provisioned anew. */
int store_reset(struct store *store, const char *tenant, struct fault *f);
/* Operator SQL (hooks.table_sql) for one table, run on the tenant's mirror outside any call's
 * transaction, as the database runs a script (statements in order, no rollback of those
 * already done when one fails). Every "{table}" in sql is replaced by the table's quoted name
 * (table must be a valid identifier). 0, or -1 with the database's message in err. */
int store_run_table_script(struct store_tenant *t, const char *table, const char *sql, char *err,
                           size_t errlen);
/* The metadata rows (somirrorctl tables). */
int store_list_tables(struct store_tenant *t, struct arena *arena, struct table_meta **out,
                      size_t *n, struct fault *f);

#endif
