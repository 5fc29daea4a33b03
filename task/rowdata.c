/* task/rowdata: what somirror-task puts in RowData calls: each source value in the form of
 * protocol section 5 (integers in decimal, decimals as their exact text, floats with %.17g,
 * dates with 'T', binary and text XML cannot carry as <B> base64), the rows of one table (a
 * full load in key order, or the collapsed changes in version order, each key's op worked out
 * relative to the receiver's position) read in one snapshot with the version they lead to,
 * and their cutting into calls of about the batch size. */
#include "task/task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proto/schema.h"
#include "proto/soap.h"
#include "proto/value.h"

/* Result columns of a change query: op, version, insert version, the change table's key,
 * then the row. */
#define CHANGE_OP 0
#define CHANGE_VERSION 1
#define CHANGE_INSERTED 2
#define CHANGE_KEY 3

static void set_text(struct raw_value *out, struct arena *arena, const char *text, size_t len)
{
    if (soap_text_needs_base64(text, len)) {
        out->kind = RAW_BASE64;
        out->data = base64_encode((const unsigned char *)text, len, arena);
        out->len = strlen(out->data);
    } else {
        out->kind = RAW_TEXT;
        out->data = arena_strndup(arena, text, len);
        out->len = len;
    }
}

static void set_printf(struct raw_value *out, struct arena *arena, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_printf(struct raw_value *out, struct arena *arena, const char *fmt, ...)
{
    char text[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    out->kind = RAW_TEXT;
    out->data = arena_strndup(arena, text, (size_t)n);
    out->len = (size_t)n;
}

void rowdata_format_value(const struct column *col, sqlite3_stmt *stmt, int idx,
                          struct arena *arena, struct raw_value *out)
{
    int storage = sqlite3_column_type(stmt, idx);
    enum sql_kind kind = col->type.kind;
    *out = (struct raw_value){.kind = RAW_NULL};   /* nothing here is known to be valid UTF-8 */
    if (storage == SQLITE_NULL)
        return;
    if (sqltype_is_binary(kind)) {
        const void *bytes = sqlite3_column_blob(stmt, idx);
        size_t len = (size_t)sqlite3_column_bytes(stmt, idx);
        out->kind = RAW_BASE64;
        out->data = base64_encode(bytes ? bytes : (const void *)"", len, arena);
        out->len = strlen(out->data);
        return;
    }
    int numeric_storage = storage == SQLITE_INTEGER || storage == SQLITE_FLOAT;
    switch (kind) {
    case SQL_BIT:
        if (numeric_storage) {
            set_printf(out, arena, "%d", sqlite3_column_double(stmt, idx) != 0.0);
            return;
        }
        break;
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT:
        if (storage == SQLITE_INTEGER) {
            set_printf(out, arena, "%lld", (long long)sqlite3_column_int64(stmt, idx));
            return;
        }
        break;
    case SQL_FLOAT: case SQL_REAL:
        if (numeric_storage) {
            set_printf(out, arena, "%.17g", sqlite3_column_double(stmt, idx));
            return;
        }
        break;
    case SQL_DECIMAL: case SQL_NUMERIC: case SQL_MONEY: case SQL_SMALLMONEY:
        /* Exact text is kept as TEXT; a database that rounded it to REAL gets the scale's digits. */
        if (storage == SQLITE_FLOAT) {
            set_printf(out, arena, "%.*f", col->type.scale, sqlite3_column_double(stmt, idx));
            return;
        }
        break;
    default:
        break;
    }
    const char *text = (const char *)sqlite3_column_text(stmt, idx);
    size_t len = (size_t)sqlite3_column_bytes(stmt, idx);
    set_text(out, arena, text ? text : "", len);
    /* SQLite's own date functions write "YYYY-MM-DD HH:MM:SS"; the wire has 'T'. */
    if (out->kind == RAW_TEXT && sqltype_is_temporal(kind) && kind != SQL_TIME && kind != SQL_DATE &&
        len > 10 && out->data[10] == ' ')
        ((char *)out->data)[10] = 'T';
}

int rowdata_open(struct rowdata_cursor *c, sqlite3 *db, const struct table_schema *t,
                 enum rowdata_mode mode, int64_t since, int64_t position, char *err,
                 size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->table = t;
    c->mode = mode;
    c->since = since;
    c->position = position;
    struct buf sql = BUF_INIT;
    if (mode == ROWDATA_FULL) {
        sql_put_select_in_key_order(&sql, t);
    } else {
        buf_puts(&sql, "SELECT ct." CT_OP_COLUMN ", ct." CT_VERSION_COLUMN ", ct."
                       CT_INSERTED_COLUMN ", ");
        sql_put_columns(&sql, t, "ct.", 1);
        buf_puts(&sql, ", ");
        sql_put_columns(&sql, t, "t.", 0);
        buf_puts(&sql, " FROM ");
        ct_put_table(&sql, t->name);
        buf_puts(&sql, " AS ct LEFT JOIN ");
        sql_put_ident(&sql, t->name);
        buf_puts(&sql, " AS t ON ");
        for (size_t i = 0; i < t->npk; i++) {
            const char *name = t->columns[t->pk[i]].name;
            if (i)
                buf_puts(&sql, " AND ");
            buf_puts(&sql, "t.");
            sql_put_ident(&sql, name);
            buf_puts(&sql, " = ct.");
            sql_put_ident(&sql, name);
        }
        buf_puts(&sql, " WHERE ct." CT_VERSION_COLUMN " > ?1 AND ct." CT_VERSION_COLUMN " <= ?2 "
                       "ORDER BY ct." CT_VERSION_COLUMN);
    }
    c->stmt = sql_prepare(db, sql.data, err, errlen);
    buf_free(&sql);
    if (!c->stmt) {
        /* Mostly a column dropped on the source since the cycle read its schema, where SQLite
         * names only the column. (One added meanwhile is sent by the next cycle: Altered, then a
         * full load.) */
        size_t n = strnlen(err, errlen - 1);
        snprintf(err + n, errlen - n, " (were the table's columns changed during the cycle? the next "
                 "cycle sends them)");
        return -1;
    }
    if (mode == ROWDATA_CHANGES) {
        sqlite3_bind_int64(c->stmt, 1, since);
        sqlite3_bind_int64(c->stmt, 2, position);
    }
    return 0;
}

int rowdata_start(struct rowdata_cursor *c, sqlite3 *db, const struct table_schema *t,
                  int64_t since, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (sql_exec(db, "BEGIN", err, errlen) != 0)
        return -1;
    int64_t current, min_valid;
    if (ct_versions(db, &current, &min_valid, err, errlen) != 0 ||
        rowdata_open(c, db, t, since < 0 || since < min_valid || since < ct_valid_from(db, t->name)
                                   ? ROWDATA_FULL : ROWDATA_CHANGES,
                     since, current, err, errlen) != 0) {
        sql_finish(db, -1, err, errlen);
        return -1;
    }
    c->in_transaction = 1;
    return 0;
}

void rowdata_close(struct rowdata_cursor *c)
{
    sqlite3 *db = c->stmt ? sqlite3_db_handle(c->stmt) : NULL;
    sqlite3_finalize(c->stmt);
    c->stmt = NULL;
    if (db && c->in_transaction) {
        char ignored[256];
        sql_finish(db, 0, ignored, sizeof ignored);   /* a read transaction: nothing to lose */
    }
    c->in_transaction = 0;
}

/* The op a receiver at since needs for the change waiting in stmt: D when the row is gone (a
 * key inserted and deleted since then too: harmless), I when the key's current life began
 * after since (inserted, or deleted and inserted again), else U. */
static char change_op(const struct rowdata_cursor *c, int row_column)
{
    const unsigned char *op = sqlite3_column_text(c->stmt, CHANGE_OP);
    /* A row changed and then gone (not possible in one snapshot, but cheap to be safe) is a D. */
    if (!op || op[0] == 'D' ||
        sqlite3_column_type(c->stmt, row_column + (int)c->table->pk[0]) == SQLITE_NULL)
        return 'D';
    int inserted_since = sqlite3_column_type(c->stmt, CHANGE_INSERTED) != SQLITE_NULL &&
                         sqlite3_column_int64(c->stmt, CHANGE_INSERTED) > c->since;
    return inserted_since ? 'I' : 'U';
}

/* Writes the row waiting in the cursor's statement. Returns its version (changes) or 0. */
static int64_t write_row(struct rowdata_cursor *c, struct buf *out, struct raw_value *values,
                         struct arena *arena)
{
    const struct table_schema *t = c->table;
    if (c->mode == ROWDATA_FULL) {
        for (size_t i = 0; i < t->ncolumns; i++)
            rowdata_format_value(&t->columns[i], c->stmt, (int)i, arena, &values[i]);
        soap_build_row(out, 'I', 0, 0, values, t->ncolumns);
        c->inserted++;
        return 0;
    }
    int64_t version = sqlite3_column_int64(c->stmt, CHANGE_VERSION);
    int row_column = CHANGE_KEY + (int)t->npk;
    char op = change_op(c, row_column);
    if (op == 'D') {
        for (size_t i = 0; i < t->npk; i++)
            rowdata_format_value(&t->columns[t->pk[i]], c->stmt, CHANGE_KEY + (int)i, arena, &values[i]);
        soap_build_row(out, 'D', 1, version, values, t->npk);
        c->deleted++;
    } else {
        for (size_t i = 0; i < t->ncolumns; i++)
            rowdata_format_value(&t->columns[i], c->stmt, row_column + (int)i, arena, &values[i]);
        soap_build_row(out, op, 1, version, values, t->ncolumns);
        if (op == 'I')
            c->inserted++;
        else
            c->updated++;
    }
    return version;
}

int rowdata_next_call(struct rowdata_cursor *c, const char *token, size_t batch_size,
                      struct buf *out, char *err, size_t errlen)
{
    const struct table_schema *t = c->table;
    char **names = xcalloc(t->ncolumns, sizeof *names);
    for (size_t i = 0; i < t->ncolumns; i++)
        names[i] = t->columns[i].name;
    struct raw_value *values = xcalloc(t->ncolumns, sizeof *values);
    struct arena arena;
    arena_init(&arena);
    buf_reset(out);
    soap_build_rowdata_begin(out, token);
    soap_build_batch_begin(out, t->name, names, t->ncolumns);
    size_t rows_start = out->len;
    int wrote = 0, rc = 0;
    int64_t last_version = 0;
    for (;;) {
        if (!c->stepped && !c->done) {
            int step = sqlite3_step(c->stmt);
            if (step == SQLITE_ROW) {
                c->stepped = 1;
            } else if (step == SQLITE_DONE) {
                c->done = 1;
            } else {
                snprintf(err, errlen, "reading %s: %s", t->name,
                         sqlite3_errmsg(sqlite3_db_handle(c->stmt)));
                rc = -1;
                break;
            }
        }
        if (c->done || (wrote && out->len - rows_start >= batch_size))
            break;
        last_version = write_row(c, out, values, &arena);
        arena_free(&arena);
        c->stepped = 0;
        wrote = 1;
    }
    if (c->done)
        soap_build_batch_end(out, 1, c->position);
    else
        soap_build_batch_end(out, c->mode == ROWDATA_CHANGES, last_version);
    soap_build_rowdata_end(out);
    arena_free(&arena);
    free(values);
    free(names);
    return rc;
}
