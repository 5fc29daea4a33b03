/* task/tracking: `somirror-task provision`, change tracking for a SQLite source, modelled on SQL
 * Server's: one version counter (_somirror_ct_version), a minimum valid version
 * (_somirror_ct_min_valid), and per tracked table a change table _somirror_ct_<table> holding,
 * for each key changed, its last operation (I, U or D), the version of that change and the
 * version of the insert that began the key's current life (NULL when the key existed before
 * it was first tracked), written by AFTER triggers; a key update is a delete of the old key
 * and an insert of the new one. From these the sender works out each key's op relative to the
 * receiver's position (rowdata.c). Provisioning is idempotent, migrates change tables of the
 * older layout (no insert version) and replaces the triggers. Where a table's tracking had a
 * gap (triggers gone with a rebuilt table) or no longer fits it (its key changed: the change
 * table is made anew), provisioning restarts it: the table's valid-from version
 * (_somirror_ct_valid_from) moves past every change recorded, so that a receiver at a
 * position before it gets a full load, as one below the minimum valid version does.
 * Retention deletes changes at or below current - N and moves the minimum valid version
 * there. */
#include "task/task.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/xalloc.h"

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

/* Bumps the version and records (row's key, op, version). An insert ('I') also records the
 * version as the key's insert version; updates and deletes keep the one recorded. */
static void put_record(struct buf *b, const struct table_schema *t, const char *row, char op)
{
    static const char version[] = "(SELECT v FROM _somirror_ct_version)";
    int insert = op == 'I';
    buf_puts(b, "UPDATE _somirror_ct_version SET v = v + 1; INSERT INTO ");
    ct_put_table(b, t->name);
    buf_puts(b, " (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ", " CT_OP_COLUMN ", " CT_VERSION_COLUMN ", " CT_INSERTED_COLUMN ") VALUES (");
    sql_put_columns(b, t, row, 1);
    buf_printf(b, ", '%c', %s, %s) ON CONFLICT (", op, version, insert ? version : "NULL");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ") DO UPDATE SET " CT_OP_COLUMN " = excluded." CT_OP_COLUMN ", " CT_VERSION_COLUMN
                " = excluded." CT_VERSION_COLUMN);
    if (insert)
        buf_puts(b, ", " CT_INSERTED_COLUMN " = excluded." CT_INSERTED_COLUMN);
    buf_puts(b, "; ");
}

/* Replaces trigger kind (ti, tu, tk, td) of the table. */
static void put_trigger(struct buf *b, const struct table_schema *t, const char *kind,
                        const char *event, int key_changed)
{
    buf_puts(b, "DROP TRIGGER IF EXISTS ");
    put_object_name(b, kind, t->name);
    buf_puts(b, "; CREATE TRIGGER ");
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
        put_record(b, t, "NEW.", 'I');
    } else if (strcmp(event, "DELETE") == 0) {
        put_record(b, t, "OLD.", 'D');
    } else if (key_changed) {
        put_record(b, t, "OLD.", 'D');
        put_record(b, t, "NEW.", 'I');
    } else {
        put_record(b, t, "NEW.", 'U');
    }
    buf_puts(b, "END; ");
}

enum ct_layout { CT_NONE, CT_OLDER, CT_CURRENT };

/* How a table's tracking stands: its change table's layout, whether that table's key is the
 * table's key (as the source's schema has it), and whether all four triggers are there. */
struct ct_check {
    enum ct_layout layout;
    int same_key;
    int triggered;
};

/* Whether table's change table exists, and with the insert version column. */
static enum ct_layout ct_layout(sqlite3 *db, const char *table)
{
    struct buf name = BUF_INIT;
    buf_printf(&name, "%sct_%s", TASK_RESERVED_PREFIX, table);
    sqlite3_stmt *stmt = NULL;
    enum ct_layout layout = CT_NONE;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(max(name = '_somirror_inserted'), 0) "
                               "FROM pragma_table_info(?1)", -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, name.data, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_int(stmt, 0) > 0)
            layout = sqlite3_column_int(stmt, 1) ? CT_CURRENT : CT_OLDER;
    }
    sqlite3_finalize(stmt);
    buf_free(&name);
    return layout;
}

/* The names of a table's key columns as SQLite declares them (a change table's), in key order,
 * lowercased, each followed by a comma. */
static void key_names(sqlite3 *db, const char *table, struct buf *out)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, "SELECT lower(name) FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk",
                           -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
        while (sqlite3_step(stmt) == SQLITE_ROW)
            buf_printf(out, "%s,", (const char *)sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
}

static const char *const trigger_kinds[] = {"ti", "tu", "tk", "td"};

static int triggers_present(sqlite3 *db, const char *table)
{
    sqlite3_stmt *stmt = NULL;
    int present = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND "
                               "tbl_name = ?1 COLLATE NOCASE AND name = ?2 COLLATE NOCASE",
                           -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    struct buf name = BUF_INIT;
    for (size_t i = 0; i < sizeof(trigger_kinds) / sizeof(trigger_kinds[0]); i++) {
        buf_reset(&name);
        buf_printf(&name, "%s%s_%s", TASK_RESERVED_PREFIX, trigger_kinds[i], table);
        sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, name.data, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            present += sqlite3_column_int(stmt, 0) > 0;
        sqlite3_reset(stmt);
    }
    buf_free(&name);
    sqlite3_finalize(stmt);
    return present == (int)(sizeof(trigger_kinds) / sizeof(trigger_kinds[0]));
}

static void schema_key_names(const struct table_schema *t, struct buf *out)
{
    for (size_t i = 0; i < t->npk; i++) {
        for (const char *p = t->columns[t->pk[i]].name; *p; p++)
            buf_putc(out, (char)tolower((unsigned char)*p));
        buf_putc(out, ',');
    }
}

static struct ct_check ct_check(sqlite3 *db, const struct table_schema *t)
{
    struct ct_check check = {.layout = ct_layout(db, t->name)};
    if (check.layout == CT_NONE)
        return check;
    struct buf ct_name = BUF_INIT, table_key = BUF_INIT, ct_key = BUF_INIT;
    buf_printf(&ct_name, "%sct_%s", TASK_RESERVED_PREFIX, t->name);
    schema_key_names(t, &table_key);
    key_names(db, ct_name.data, &ct_key);
    check.same_key = table_key.len > 0 && table_key.len == ct_key.len &&
                     memcmp(table_key.data, ct_key.data, table_key.len) == 0;
    check.triggered = triggers_present(db, t->name);
    buf_free(&ct_name);
    buf_free(&table_key);
    buf_free(&ct_key);
    return check;
}

/* An older change table kept only the op, sticky: I from the insert until the delete. Keys
 * recorded as I take their last change's version as their insert version (a receiver between
 * the two gets one I where U would be exact, which it applies the same); the others, which may
 * have been deleted and inserted again, get none (U where I would be exact, also the same). */
static void put_migration(struct buf *b, const struct table_schema *t)
{
    buf_puts(b, "ALTER TABLE ");
    ct_put_table(b, t->name);
    buf_puts(b, " ADD COLUMN " CT_INSERTED_COLUMN " INTEGER; UPDATE ");
    ct_put_table(b, t->name);
    buf_puts(b, " SET " CT_INSERTED_COLUMN " = " CT_VERSION_COLUMN " WHERE " CT_OP_COLUMN " = 'I'; ");
}

static void put_table_tracking(struct buf *b, const struct table_schema *t)
{
    buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    ct_put_table(b, t->name);
    buf_puts(b, " (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ", " CT_OP_COLUMN " TEXT NOT NULL, " CT_VERSION_COLUMN " INTEGER NOT NULL, "
                CT_INSERTED_COLUMN " INTEGER, PRIMARY KEY (");
    sql_put_columns(b, t, "", 1);
    buf_puts(b, ")); CREATE INDEX IF NOT EXISTS ");
    put_object_name(b, "ix", t->name);
    buf_puts(b, " ON ");
    ct_put_table(b, t->name);
    buf_puts(b, " (" CT_VERSION_COLUMN "); ");
    put_trigger(b, t, "ti", "INSERT", 0);
    put_trigger(b, t, "tu", "UPDATE", 0);
    put_trigger(b, t, "tk", "UPDATE", 1);
    put_trigger(b, t, "td", "DELETE", 0);
}

static const char base_sql[] =
    "CREATE TABLE IF NOT EXISTS _somirror_ct_version (v INTEGER NOT NULL);"
    "INSERT INTO _somirror_ct_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _somirror_ct_version);"
    "CREATE TABLE IF NOT EXISTS _somirror_ct_min_valid (v INTEGER NOT NULL);"
    "INSERT INTO _somirror_ct_min_valid SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _somirror_ct_min_valid);"
    "CREATE TABLE IF NOT EXISTS _somirror_ct_valid_from (tablename TEXT PRIMARY KEY COLLATE NOCASE, "
    "v INTEGER NOT NULL);";

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

int ct_table_tracked(sqlite3 *db, const struct table_schema *t)
{
    struct ct_check check = ct_check(db, t);
    return check.layout == CT_CURRENT && check.same_key && check.triggered;
}

int64_t ct_valid_from(sqlite3 *db, const char *table)
{
    sqlite3_stmt *stmt = NULL;
    int64_t v = 0;   /* no such table (provisioned before there was one): no restart yet */
    if (sqlite3_prepare_v2(db, "SELECT v FROM _somirror_ct_valid_from WHERE tablename = ?1", -1, &stmt,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    return v;
}

/* Moves the version on once and makes it the valid-from version of the tables of src marked in
 * restarts (counted in *restarted). */
static int restart(struct source *src, const int *restarts, size_t *restarted, char *err,
                   size_t errlen)
{
    *restarted = 0;
    for (size_t i = 0; i < src->ntables; i++)
        *restarted += restarts[i] != 0;
    if (*restarted == 0)
        return 0;
    if (sql_exec(src->db, "UPDATE _somirror_ct_version SET v = v + 1", err, errlen) != 0)
        return -1;
    sqlite3_stmt *stmt = sql_prepare(src->db, "INSERT INTO _somirror_ct_valid_from (tablename, v) "
                                              "VALUES (?1, (SELECT v FROM _somirror_ct_version)) ON "
                                              "CONFLICT (tablename) DO UPDATE SET v = excluded.v",
                                     err, errlen);
    if (!stmt)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < src->ntables; i++) {
        if (!restarts[i])
            continue;
        sqlite3_bind_text(stmt, 1, src->tables[i].name, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(src->db));
            rc = -1;
        }
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Moves the minimum valid version to cutoff (bound), then deletes the changes at or below it. */
static int clean_to(struct source *src, int64_t cutoff, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = sql_prepare(src->db, "UPDATE _somirror_ct_min_valid SET v = ?1", err, errlen);
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, cutoff);
    int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "%s", sqlite3_errmsg(src->db));
    sqlite3_finalize(stmt);
    struct buf sql = BUF_INIT;
    for (size_t i = 0; i < src->ntables; i++) {
        if (!task_table_mirrored(src->tables[i].name, NULL))
            continue;
        buf_puts(&sql, "DELETE FROM ");
        ct_put_table(&sql, src->tables[i].name);
        buf_puts(&sql, " WHERE " CT_VERSION_COLUMN " <= (SELECT v FROM _somirror_ct_min_valid); ");
    }
    if (rc == 0 && sql.len)
        rc = sql_exec(src->db, sql.data, err, errlen);
    buf_free(&sql);
    return rc;
}

static int cleanup(struct source *src, long retention, char *err, size_t errlen)
{
    int64_t current, min_valid;
    if (ct_versions(src->db, &current, &min_valid, err, errlen) != 0)
        return -1;
    int64_t cutoff;
    if (__builtin_sub_overflow(current, (int64_t)retention, &cutoff) || cutoff <= min_valid)
        return 0;   /* (an overflow: a version below every one kept, as only a damaged file has) */
    int rc = clean_to(src, cutoff, err, errlen);
    if (rc == 0)
        log_info("provision: changes up to version %lld cleaned (retention %ld)",
                 (long long)cutoff, retention);
    return rc;
}

/* Drops the tracking triggers made for a table under another name (renamed since, which
 * carries its triggers along): they would record its changes a second time, in the change
 * table of the name they were made for, which nothing reads or cleans any more. */
static void put_renamed_trigger_drops(struct buf *sql, sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'", -1,
                           &stmt, NULL) != SQLITE_OK)
        return;
    struct buf own = BUF_INIT;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);
        const char *table = (const char *)sqlite3_column_text(stmt, 1);
        for (size_t i = 0; name && table && i < sizeof(trigger_kinds) / sizeof(trigger_kinds[0]); i++) {
            buf_reset(&own);
            buf_printf(&own, "%s%s_", TASK_RESERVED_PREFIX, trigger_kinds[i]);
            if (strncasecmp(name, own.data, own.len) != 0)
                continue;
            if (strcasecmp(name + own.len, table) != 0) {
                buf_puts(sql, "DROP TRIGGER ");
                sql_put_ident(sql, name);
                buf_puts(sql, "; ");
            }
            break;
        }
    }
    buf_free(&own);
    sqlite3_finalize(stmt);
}

/* The tracking SQL of every mirrored table (counted in *tracked); change tables of the older
 * layout are migrated first (counted in *migrated), and one whose key is no longer the table's
 * is made anew. restarts[i] says whether table i's tracking starts (again) here: it had none,
 * a trigger was gone, or its change table was made anew. */
static void put_tracking(struct buf *sql, const struct source *src, size_t *tracked,
                         size_t *migrated, int *restarts)
{
    *tracked = *migrated = 0;
    put_renamed_trigger_drops(sql, src->db);
    for (size_t i = 0; i < src->ntables; i++) {
        const struct table_schema *t = &src->tables[i];
        if (!task_table_mirrored(t->name, NULL))
            continue;
        struct ct_check check = ct_check(src->db, t);
        if (check.layout != CT_NONE && !check.same_key) {
            buf_puts(sql, "DROP TABLE ");
            ct_put_table(sql, t->name);
            buf_puts(sql, "; ");
            check.layout = CT_NONE;
        }
        if (check.layout == CT_OLDER) {
            put_migration(sql, t);
            (*migrated)++;
        }
        put_table_tracking(sql, t);
        restarts[i] = check.layout == CT_NONE || !check.triggered;
        (*tracked)++;
    }
}

/* Warns when the source is not in WAL mode: a cycle holds a read transaction while a table's
 * calls go out, and in the rollback-journal modes no writer can commit meanwhile. The journal
 * mode is the owner's to choose (WAL needs shared memory, so not a network file system). */
static void warn_unless_wal(sqlite3 *db, const char *path)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(stmt, 0);
        if (mode && strcasecmp(mode, "wal") != 0)
            log_warn("provision: %s is in journal mode %s, not WAL: while run sends a table, the "
                     "source's writers cannot commit (they wait, then fail with SQLITE_BUSY); PRAGMA "
                     "journal_mode = WAL lets them go on", path, mode);
    }
    sqlite3_finalize(stmt);
}

int ct_provision(const char *path, long retention, char *err, size_t errlen)
{
    struct source src;
    if (source_open(&src, path, 1, err, errlen) != 0)
        return -1;
    if (sql_exec(src.db, "BEGIN IMMEDIATE", err, errlen) != 0) {
        source_close(&src);
        return -1;
    }
    struct buf sql = BUF_INIT;
    buf_puts(&sql, base_sql);
    size_t tracked, migrated, restarted = 0;
    int *restarts = xcalloc(src.ntables ? src.ntables : 1, sizeof *restarts);
    put_tracking(&sql, &src, &tracked, &migrated, restarts);
    int rc = sql_exec(src.db, sql.data, err, errlen);
    if (rc == 0)
        rc = restart(&src, restarts, &restarted, err, errlen);
    if (rc == 0 && retention >= 0)
        rc = cleanup(&src, retention, err, errlen);
    rc = sql_finish(src.db, rc, err, errlen);
    if (rc == 0)
        warn_unless_wal(src.db, path);
    free(restarts);
    buf_free(&sql);
    source_close(&src);
    if (rc == 0)
        log_info("provision: %s: %zu tables tracked (%zu started or started again: a full load at "
                 "their next cycle), %zu change tables migrated to insert versions", path, tracked,
                 restarted, migrated);
    return rc;
}
