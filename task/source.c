/* task/source: the source SQLite database as somirror-task reads it: its SQL Server schema
 * (the side table _somirror_columns written by gen, or SQLite's declared types), the table
 * filters (reserved prefix, blocked list, skip list) and the SQL helpers every task command
 * uses (quoting, exec, prepare). */
#include "task/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "proto/schema.h"

int task_table_reserved(const char *name)
{
    return strncasecmp(name, TASK_RESERVED_PREFIX, strlen(TASK_RESERVED_PREFIX)) == 0 ||
           strncasecmp(name, "sqlite_", 7) == 0;
}

int task_name_listed(const char *name, const struct cfg_strings *list)
{
    if (!list)
        return 0;
    for (size_t i = 0; i < list->n; i++)
        if (ident_equal(name, list->items[i]))
            return 1;
    return 0;
}

int task_table_mirrored(const char *name, const struct cfg_strings *skip)
{
    return !task_table_reserved(name) && !table_blocked(name, NULL) && !task_name_listed(name, skip);
}

void task_strings_split(const char *text, struct cfg_strings *out)
{
    out->items = NULL;
    out->n = 0;
    size_t cap = 0;
    const char *p = text;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *start = p;
        while (len && (*start == ' ' || *start == '\t')) {
            start++;
            len--;
        }
        while (len && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        if (len) {
            out->items = xgrow(out->items, &cap, out->n + 1, sizeof *out->items);
            out->items[out->n++] = xstrndup(start, len);
        }
        p = end ? end + 1 : NULL;
    }
}

void task_strings_free(struct cfg_strings *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

void sql_put_ident(struct buf *b, const char *name)
{
    buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            buf_putc(b, '"');
        buf_putc(b, *p);
    }
    buf_putc(b, '"');
}

void sql_put_columns(struct buf *b, const struct table_schema *t, const char *prefix, int key_only)
{
    size_t n = key_only ? t->npk : t->ncolumns;
    for (size_t i = 0; i < n; i++) {
        const struct column *col = &t->columns[key_only ? t->pk[i] : i];
        if (i)
            buf_puts(b, ", ");
        buf_puts(b, prefix);
        sql_put_ident(b, col->name);
    }
}

void sql_put_select_in_key_order(struct buf *b, const struct table_schema *t)
{
    buf_puts(b, "SELECT ");
    sql_put_columns(b, t, "", 0);
    buf_puts(b, " FROM ");
    sql_put_ident(b, t->name);
    /* Byte order whatever a column's collation (a mirror's GUID keys are NOCASE), so that a
     * source and its mirror are walked in the same order. */
    for (size_t i = 0; i < t->npk; i++) {
        buf_puts(b, i ? ", " : " ORDER BY ");
        sql_put_ident(b, t->columns[t->pk[i]].name);
        buf_puts(b, " COLLATE BINARY");
    }
}

int sql_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s", message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return -1;
}

int sql_finish(sqlite3 *db, int rc, char *err, size_t errlen)
{
    if (rc == 0)
        return sql_exec(db, "COMMIT", err, errlen);
    char ignored[256];
    sql_exec(db, "ROLLBACK", ignored, sizeof ignored);
    return -1;
}

sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return NULL;
    }
    return stmt;
}

sqlite3_stmt *sql_prepare_insert(sqlite3 *db, const struct table_schema *t, char *err,
                                 size_t errlen)
{
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "INSERT INTO ");
    sql_put_ident(&sql, t->name);
    buf_puts(&sql, " (");
    sql_put_columns(&sql, t, "", 0);
    buf_puts(&sql, ") VALUES (");
    for (size_t c = 0; c < t->ncolumns; c++)
        buf_puts(&sql, c ? ", ?" : "?");
    buf_puts(&sql, ")");
    sqlite3_stmt *stmt = sql_prepare(db, sql.data, err, errlen);
    buf_free(&sql);
    return stmt;
}

const char *sql_storage_type(const struct sql_type *type)
{
    switch (type->kind) {
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT: case SQL_BIT:
        return "INTEGER";
    case SQL_FLOAT: case SQL_REAL:
        return "REAL";
    case SQL_BINARY: case SQL_VARBINARY: case SQL_IMAGE: case SQL_TIMESTAMP:
        return "BLOB";
    default:
        return "TEXT";
    }
}

/* Column descriptions collected while reading, before they are checked into tables. */
struct column_row {
    char *table;
    struct column column;
};

static int table_has(sqlite3 *db, const char *name)
{
    sqlite3_stmt *stmt = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(stmt) == SQLITE_ROW;
    }
    sqlite3_finalize(stmt);
    return found;
}

static char *column_text(struct arena *arena, sqlite3_stmt *stmt, int idx)
{
    const unsigned char *text = sqlite3_column_text(stmt, idx);
    return text ? arena_strdup(arena, (const char *)text) : NULL;
}

/* Rows of (table, column, sql_type, nullable, default, pk_pos) in table and column order. */
static const char side_table_sql[] =
    "SELECT table_name, column_name, sql_type, nullable, default_text, pk_pos "
    "FROM _somirror_columns WHERE table_name IN "
    "(SELECT name FROM sqlite_master WHERE type = 'table') ORDER BY table_name, ordinal";
static const char declared_sql[] =
    "SELECT m.name, c.name, c.type, NOT c.\"notnull\", NULL, c.pk "
    "FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS c "
    "WHERE m.type = 'table' ORDER BY m.name, c.cid";

/* Adds the table of columns [first, end) to src, or leaves it out with a warning. */
static void add_table(struct source *src, size_t *cap, struct column_row *rows, size_t first,
                      size_t end)
{
    char *name = rows[first].table;
    if (task_table_reserved(name))
        return;
    if (!ident_valid(name)) {
        log_warn("source: table \"%s\" left out: not a valid identifier", name);
        return;
    }
    struct table_schema t = {0};
    t.name = name;
    t.ncolumns = end - first;
    t.columns = arena_calloc(&src->arena, t.ncolumns, sizeof *t.columns);
    for (size_t i = 0; i < t.ncolumns; i++) {
        struct column *col = &t.columns[i];
        char err[256];
        *col = rows[first + i].column;
        if (!ident_valid(col->name)) {
            log_warn("source: table %s left out: column \"%s\" is not a valid identifier", name,
                     col->name);
            return;
        }
        if (sqltype_parse(col->type_text, &col->type, err, sizeof err) != 0) {
            log_warn("source: table %s left out: column %s: %s", name, col->name, err);
            return;
        }
        if (col->pk_position > 0)
            t.npk++;
    }
    if (t.npk == 0) {
        log_warn("source: table %s left out: it has no primary key", name);
        return;
    }
    t.pk = arena_calloc(&src->arena, t.npk, sizeof *t.pk);
    t.pk_names = arena_calloc(&src->arena, t.npk, sizeof *t.pk_names);
    for (size_t i = 0; i < t.ncolumns; i++) {
        int pos = t.columns[i].pk_position;
        if (pos > 0 && (size_t)pos <= t.npk && !t.pk_names[pos - 1]) {
            t.pk[pos - 1] = i;
            t.pk_names[pos - 1] = t.columns[i].name;
        } else if (pos > 0) {
            log_warn("source: table %s left out: key positions are not 1..%zu", name, t.npk);
            return;
        }
    }
    src->tables = xgrow(src->tables, cap, src->ntables + 1, sizeof *src->tables);
    src->tables[src->ntables++] = t;
}

static int load_schema(struct source *src, char *err, size_t errlen)
{
    int side = table_has(src->db, "_somirror_columns");
    sqlite3_stmt *stmt = sql_prepare(src->db, side ? side_table_sql : declared_sql, err, errlen);
    if (!stmt)
        return -1;
    struct column_row *rows = NULL;
    size_t nrows = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        rows = xgrow(rows, &cap, nrows + 1, sizeof *rows);
        struct column_row *r = &rows[nrows++];
        memset(r, 0, sizeof *r);
        r->table = column_text(&src->arena, stmt, 0);
        r->column.name = column_text(&src->arena, stmt, 1);
        r->column.type_text = column_text(&src->arena, stmt, 2);
        r->column.nullable = sqlite3_column_int(stmt, 3) != 0;
        r->column.default_text = column_text(&src->arena, stmt, 4);
        r->column.pk_position = sqlite3_column_int(stmt, 5);
        if (!r->table || !r->column.name || !r->column.type_text)
            nrows--;
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "reading the schema: %s", sqlite3_errmsg(src->db));
        free(rows);
        return -1;
    }
    size_t tcap = 0;
    for (size_t first = 0; first < nrows;) {
        size_t end = first + 1;
        while (end < nrows && strcmp(rows[end].table, rows[first].table) == 0)
            end++;
        add_table(src, &tcap, rows, first, end);
        first = end;
    }
    free(rows);
    return 0;
}

int task_sqlite_open(const char *path, int flags, sqlite3 **db, char *err, size_t errlen)
{
    if (sqlite3_open_v2(path, db, flags, NULL) == SQLITE_OK)
        return 0;
    int sys = *db ? sqlite3_system_errno(*db) : 0;
    snprintf(err, errlen, "%s: %s%s%s%s", path, *db ? sqlite3_errmsg(*db) : "cannot open",
             sys ? " (" : "", sys ? strerror(sys) : "", sys ? ")" : "");
    sqlite3_close(*db);
    *db = NULL;
    return -1;
}

int source_open(struct source *src, const char *path, int writable, char *err, size_t errlen)
{
    memset(src, 0, sizeof *src);
    arena_init(&src->arena);
    int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    if (task_sqlite_open(path, flags, &src->db, err, errlen) != 0) {
        source_close(src);
        return -1;
    }
    sqlite3_busy_timeout(src->db, 10000);
    char inner[512];
    if (load_schema(src, inner, sizeof inner) != 0) {
        snprintf(err, errlen, "%s: %s", path, inner);
        source_close(src);
        return -1;
    }
    return 0;
}

void source_close(struct source *src)
{
    if (src->db)
        sqlite3_close(src->db);
    free(src->tables);
    arena_free(&src->arena);
    memset(src, 0, sizeof *src);
}

const struct table_schema *source_find(const struct source *src, const char *name)
{
    for (size_t i = 0; i < src->ntables; i++)
        if (ident_equal(src->tables[i].name, name))
            return &src->tables[i];
    return NULL;
}
