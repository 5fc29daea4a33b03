/* task/tracking: `somirror-task provision`, change tracking for a SQLite source, modelled on SQL
 * Server's: one version counter (_somirror_ct_version), a minimum valid version
 * (_somirror_ct_min_valid), and per tracked table a change table _somirror_ct_<table> holding,
 * for each key changed, its latest operation and version, written by AFTER triggers. Collapse
 * rules per key: insert (after nothing) I; insert after a delete U; update keeps I, else U;
 * delete D (a key inserted and deleted since the last sync is sent as D, which is harmless);
 * a key update is a delete of the old key and an insert of the new one. Retention deletes
 * changes at or below current - N and moves the minimum valid version there. */
#include "task/task.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

#define OP_COLUMN "\"_somirror_op\""
#define VERSION_COLUMN "\"_somirror_version\""

void ct_put_table(struct buf *b, const char *table)
{
    struct buf name = BUF_INIT;
    buf_printf(&name, "%sct_%s", TASK_RESERVED_PREFIX, table);
    sql_put_ident(b, name.data);
    buf_free(&name);
}

static void put_object_name(struct buf *b, const char *kind, const char *table)
{
    struct buf name = BUF_INIT;
    buf_printf(&name, "%s%s_%s", TASK_RESERVED_PREFIX, kind, table);
    sql_put_ident(b, name.data);
    buf_free(&name);
}

/* left"k1" IS right"k1" AND ... over the key columns (left, right: "", "NEW.", "OLD."). */
static void put_key_match(struct buf *b, const struct table_schema *t, const char *left,
                          const char *right)
{
    for (size_t i = 0; i < t->npk; i++) {
        const char *name = t->columns[t->pk[i]].name;
        if (i)
            buf_puts(b, " AND ");
        buf_puts(b, left);
        sql_put_ident(b, name);
        buf_puts(b, " IS ");
        buf_puts(b, right);
        sql_put_ident(b, name);
    }
}

/* Bumps the version and records (row's key, op, version). prior_case: the WHEN clauses that
 * give the op from the key's previous operation (NULL: the op is always D). */
static void put_record(struct buf *b, const struct table_schema *t, const char *row,
                       const char *prior_case)
{
    buf_puts(b, "UPDATE _somirror_ct_version SET v = v + 1; INSERT INTO ");
    ct_put_table(b, t->name);
    buf_puts(b, " (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ", " OP_COLUMN ", " VERSION_COLUMN ") VALUES (");
    sql_put_columns(b, t, row, 1);
    if (prior_case) {
        buf_puts(b, ", (SELECT CASE (SELECT " OP_COLUMN " FROM ");
        ct_put_table(b, t->name);
        buf_puts(b, " WHERE ");
        put_key_match(b, t, "", row);
        buf_printf(b, ") %s END)", prior_case);
    } else {
        buf_puts(b, ", 'D'");
    }
    buf_puts(b, ", (SELECT v FROM _somirror_ct_version)) ON CONFLICT (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ") DO UPDATE SET " OP_COLUMN " = excluded." OP_COLUMN ", " VERSION_COLUMN
                " = excluded." VERSION_COLUMN "; ");
}

static const char op_after_insert[] = "WHEN 'D' THEN 'U' WHEN 'U' THEN 'U' ELSE 'I'";
static const char op_after_update[] = "WHEN 'I' THEN 'I' ELSE 'U'";

static void put_trigger(struct buf *b, const struct table_schema *t, const char *kind,
                        const char *event, int key_changed)
{
    buf_puts(b, "CREATE TRIGGER IF NOT EXISTS ");
    put_object_name(b, kind, t->name);
    buf_printf(b, " AFTER %s ON ", event);
    sql_put_ident(b, t->name);
    if (strcmp(event, "UPDATE") == 0) {
        buf_puts(b, key_changed ? " WHEN NOT (" : " WHEN (");
        put_key_match(b, t, "NEW.", "OLD.");
        buf_puts(b, ")");
    }
    buf_puts(b, " BEGIN ");
    if (strcmp(event, "INSERT") == 0) {
        put_record(b, t, "NEW.", op_after_insert);
    } else if (strcmp(event, "DELETE") == 0) {
        put_record(b, t, "OLD.", NULL);
    } else if (key_changed) {
        put_record(b, t, "OLD.", NULL);
        put_record(b, t, "NEW.", op_after_insert);
    } else {
        put_record(b, t, "NEW.", op_after_update);
    }
    buf_puts(b, "END; ");
}

static void put_table_tracking(struct buf *b, const struct table_schema *t)
{
    buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    ct_put_table(b, t->name);
    buf_puts(b, " (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ", " OP_COLUMN " TEXT NOT NULL, " VERSION_COLUMN " INTEGER NOT NULL, PRIMARY KEY (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ")); CREATE INDEX IF NOT EXISTS ");
    put_object_name(b, "ix", t->name);
    buf_puts(b, " ON ");
    ct_put_table(b, t->name);
    buf_puts(b, " (" VERSION_COLUMN "); ");
    put_trigger(b, t, "ti", "INSERT", 0);
    put_trigger(b, t, "tu", "UPDATE", 0);
    put_trigger(b, t, "tk", "UPDATE", 1);
    put_trigger(b, t, "td", "DELETE", 0);
}

static const char base_sql[] =
    "CREATE TABLE IF NOT EXISTS _somirror_ct_version (v INTEGER NOT NULL);"
    "INSERT INTO _somirror_ct_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _somirror_ct_version);"
    "CREATE TABLE IF NOT EXISTS _somirror_ct_min_valid (v INTEGER NOT NULL);"
    "INSERT INTO _somirror_ct_min_valid SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _somirror_ct_min_valid);";

int ct_versions(sqlite3 *db, int64_t *current, int64_t *min_valid, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = sql_prepare(db, "SELECT (SELECT max(v) FROM _somirror_ct_version), "
                                         "(SELECT max(v) FROM _somirror_ct_min_valid)", err, errlen);
    if (!stmt) {
        snprintf(err, errlen, "change tracking is not set up (run somirror-task provision)");
        return -1;
    }
    int rc = sqlite3_step(stmt) == SQLITE_ROW ? 0 : -1;
    if (rc == 0) {
        *current = sqlite3_column_int64(stmt, 0);
        *min_valid = sqlite3_column_int64(stmt, 1);
    } else {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    return rc;
}

int ct_table_tracked(sqlite3 *db, const char *table)
{
    struct buf name = BUF_INIT;
    buf_printf(&name, "%sct_%s", TASK_RESERVED_PREFIX, table);
    sqlite3_stmt *stmt = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, name.data, -1, SQLITE_STATIC);
        found = sqlite3_step(stmt) == SQLITE_ROW;
    }
    sqlite3_finalize(stmt);
    buf_free(&name);
    return found;
}

static int cleanup(struct source *src, long retention, char *err, size_t errlen)
{
    int64_t current, min_valid;
    if (ct_versions(src->db, &current, &min_valid, err, errlen) != 0)
        return -1;
    int64_t cutoff = current - retention;
    if (cutoff <= min_valid)
        return 0;
    struct buf sql = BUF_INIT;
    for (size_t i = 0; i < src->ntables; i++) {
        if (!task_table_mirrored(src->tables[i].name, NULL))
            continue;
        buf_puts(&sql, "DELETE FROM ");
        ct_put_table(&sql, src->tables[i].name);
        buf_printf(&sql, " WHERE " VERSION_COLUMN " <= %lld; ", (long long)cutoff);
    }
    buf_printf(&sql, "UPDATE _somirror_ct_min_valid SET v = %lld;", (long long)cutoff);
    int rc = sql_exec(src->db, sql.data, err, errlen);
    buf_free(&sql);
    if (rc == 0)
        log_info("provision: changes up to version %lld cleaned (retention %ld)",
                 (long long)cutoff, retention);
    return rc;
}

int ct_provision(const char *path, long retention, char *err, size_t errlen)
{
    struct source src;
    if (source_open(&src, path, 1, err, errlen) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "BEGIN IMMEDIATE; ");
    buf_puts(&sql, base_sql);
    size_t tracked = 0;
    for (size_t i = 0; i < src.ntables; i++) {
        if (!task_table_mirrored(src.tables[i].name, NULL))
            continue;
        put_table_tracking(&sql, &src.tables[i]);
        tracked++;
    }
    int rc = sql_exec(src.db, sql.data, err, errlen);
    if (rc == 0 && retention >= 0)
        rc = cleanup(&src, retention, err, errlen);
    rc = sql_finish(src.db, rc, err, errlen);
    buf_free(&sql);
    source_close(&src);
    if (rc == 0)
        log_info("provision: %s: %zu tables tracked", path, tracked);
    return rc;
}
