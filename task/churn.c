/* task/churn: `somirror-task churn`, random inserts, updates and deletes through plain SQL
 * across the source's tables (blocked ones too), so that change tracking has something to
 * record. Deterministic for a seed and a starting database. One transaction. */
#include "task/task.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

struct churn_counts {
    long inserted, updated, deleted, key_updates;
};

/* A value variant for gen_bind_value: mostly random, sometimes a special one. */
static uint64_t random_variant(struct prng *p)
{
    return prng_below(p, 4) == 0 ? prng_below(p, 8) : 16 + prng_below(p, 1000);
}

static int is_integer(const struct column *col)
{
    switch (col->type.kind) {
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT:
        return 1;
    default:
        return 0;
    }
}

static int64_t query_int(sqlite3 *db, const char *sql, int64_t param, int *ok)
{
    sqlite3_stmt *stmt = NULL;
    int64_t value = 0;
    *ok = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK) {
        if (sqlite3_bind_parameter_count(stmt) > 0)
            sqlite3_bind_int64(stmt, 1, param);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            value = sqlite3_column_int64(stmt, 0);
            *ok = 1;
        }
    }
    sqlite3_finalize(stmt);
    return value;
}

/* Runs a prepared statement to its end; SQLITE_CONSTRAINT (a random key that exists) is a
 * no-op, reported as 0. 1 done, 0 nothing done, -1 error. */
static int step_done(sqlite3_stmt *stmt, sqlite3 *db, char *err, size_t errlen)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE)
        return sqlite3_changes(db) > 0;
    if ((rc & 0xFF) == SQLITE_CONSTRAINT)
        return 0;
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    return -1;
}

/* The next free value of the first key column when it is an integer (max + 1). */
static int64_t next_key(sqlite3 *db, const struct table_schema *t)
{
    struct buf sql = BUF_INIT;
    int ok;
    buf_puts(&sql, "SELECT coalesce(max(");
    sql_put_ident(&sql, t->columns[t->pk[0]].name);
    buf_puts(&sql, "), 0) + 1 FROM ");
    sql_put_ident(&sql, t->name);
    int64_t key = query_int(db, sql.data, 0, &ok);
    buf_free(&sql);
    return key;
}

static int churn_insert(sqlite3 *db, const struct table_schema *t, struct prng *p, char *err,
                        size_t errlen)
{
    sqlite3_stmt *stmt = sql_prepare_insert(db, t, err, errlen);
    if (!stmt)
        return -1;
    int64_t key = is_integer(&t->columns[t->pk[0]]) ? next_key(db, t) : 0;
    for (size_t c = 0; c < t->ncolumns; c++) {
        const struct column *col = &t->columns[c];
        if (col->pk_position == 1 && is_integer(col))
            sqlite3_bind_int64(stmt, (int)c + 1, key);
        else if (col->pk_position > 1 && is_integer(col))
            sqlite3_bind_int64(stmt, (int)c + 1, prng_range(p, 1, 20));
        else
            gen_bind_value(stmt, (int)c + 1, col, p, col->pk_position ? 16 : random_variant(p));
    }
    int rc = step_done(stmt, db, err, errlen);
    sqlite3_finalize(stmt);
    return rc;
}

/* Updates one to three non-key columns of the row with this rowid, or (1 in 20, for a single
 * integer key) moves the row to a new key. */
static int churn_update(sqlite3 *db, const struct table_schema *t, int64_t rowid, struct prng *p,
                        struct churn_counts *counts, char *err, size_t errlen)
{
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "UPDATE ");
    sql_put_ident(&sql, t->name);
    buf_puts(&sql, " SET ");
    size_t nvalues = t->ncolumns - t->npk;
    const struct column *chosen[3];
    size_t nchosen = 0;
    int key_update = t->npk == 1 && is_integer(&t->columns[t->pk[0]]) &&
                     (nvalues == 0 || prng_below(p, 20) == 0);
    if (key_update) {
        sql_put_ident(&sql, t->columns[t->pk[0]].name);
        buf_printf(&sql, " = %lld", (long long)next_key(db, t));
    } else if (nvalues > 0) {
        size_t want = 1 + prng_below(p, 3);
        for (size_t i = 0; i < want; i++) {
            size_t pick = prng_below(p, t->ncolumns);
            if (t->columns[pick].pk_position == 0)
                chosen[nchosen++] = &t->columns[pick];
        }
        for (size_t c = 0; nchosen == 0 && c < t->ncolumns; c++)
            if (t->columns[c].pk_position == 0)
                chosen[nchosen++] = &t->columns[c];
        for (size_t i = 0; i < nchosen; i++) {
            if (i)
                buf_puts(&sql, ", ");
            sql_put_ident(&sql, chosen[i]->name);
            buf_puts(&sql, " = ?");
        }
    } else {
        buf_free(&sql);
        return 0;
    }
    buf_printf(&sql, " WHERE rowid = %lld", (long long)rowid);
    sqlite3_stmt *stmt = sql_prepare(db, sql.data, err, errlen);
    buf_free(&sql);
    if (!stmt)
        return -1;
    for (size_t i = 0; i < nchosen; i++)
        gen_bind_value(stmt, (int)i + 1, chosen[i], p, random_variant(p));
    int rc = step_done(stmt, db, err, errlen);
    sqlite3_finalize(stmt);
    if (rc > 0 && key_update)
        counts->key_updates++;
    return rc;
}

static int churn_one(sqlite3 *db, const struct table_schema *t, struct prng *p,
                     struct churn_counts *counts, char *err, size_t errlen)
{
    struct buf sql = BUF_INIT;
    int ok;
    buf_puts(&sql, "SELECT count(*) FROM ");
    sql_put_ident(&sql, t->name);
    int64_t rows = query_int(db, sql.data, 0, &ok);
    uint64_t action = rows > 0 ? prng_below(p, 10) : 0;
    int64_t rowid = 0;
    if (action >= 4) {
        buf_reset(&sql);
        buf_puts(&sql, "SELECT rowid FROM ");
        sql_put_ident(&sql, t->name);
        buf_puts(&sql, " ORDER BY rowid LIMIT 1 OFFSET ?1");
        rowid = query_int(db, sql.data, (int64_t)prng_below(p, (uint64_t)rows), &ok);
    }
    int rc;
    if (action < 4) {
        rc = churn_insert(db, t, p, err, errlen);
        counts->inserted += rc > 0;
    } else if (action < 8) {
        rc = ok ? churn_update(db, t, rowid, p, counts, err, errlen) : 0;
        counts->updated += rc > 0;
    } else {
        buf_reset(&sql);
        buf_puts(&sql, "DELETE FROM ");
        sql_put_ident(&sql, t->name);
        buf_printf(&sql, " WHERE rowid = %lld", (long long)rowid);
        rc = ok ? sql_exec(db, sql.data, err, errlen) : 0;
        rc = rc == 0 ? sqlite3_changes(db) > 0 : -1;
        counts->deleted += rc > 0;
    }
    buf_free(&sql);
    return rc;
}

int churn_run(const char *path, long changes, uint64_t seed, char *err, size_t errlen)
{
    struct source src;
    if (source_open(&src, path, 1, err, errlen) != 0)
        return -1;
    if (src.ntables == 0) {
        snprintf(err, errlen, "%s has no tables to change", path);
        source_close(&src);
        return -1;
    }
    struct prng p;
    prng_seed(&p, seed);
    struct churn_counts counts = {0};
    int rc = sql_exec(src.db, "BEGIN IMMEDIATE", err, errlen);
    /* A change that turns out a no-op (a random key that exists) is tried again, a few times. */
    for (long done = 0, attempts = 0; rc == 0 && done < changes && attempts < changes * 4 + 16; attempts++) {
        const struct table_schema *t = &src.tables[prng_below(&p, src.ntables)];
        int step = churn_one(src.db, t, &p, &counts, err, errlen);
        if (step < 0)
            rc = -1;
        done += step > 0;
    }
    rc = sql_finish(src.db, rc, err, errlen);
    source_close(&src);
    if (rc == 0)
        log_info("churn: %s: %ld inserted, %ld updated (%ld key changes), %ld deleted", path,
                 counts.inserted, counts.updated, counts.key_updates, counts.deleted);
    return rc;
}
