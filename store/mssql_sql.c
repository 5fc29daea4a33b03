/* store/mssql_sql: T-SQL text generation of the SQL Server store driver (see mssql_sql.h):
 * quoting, types, defaults, DDL, metadata statements, the staging table and the set-based apply
 * statements. Pure functions; no I/O; no values in the text. */
#include "store/mssql_sql.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/sqltext.h"

/* ---- names and literals ---- */

void mssql_put_ident(struct buf *b, const char *name)
{
    sqltext_put_quoted(b, name, '[', ']');
}

void mssql_put_table(struct buf *b, const char *schema, const char *table)
{
    if (schema && *schema) {
        mssql_put_ident(b, schema);
        buf_putc(b, '.');
    }
    mssql_put_ident(b, table);
}

static void put_string(struct buf *b, const char *s, size_t len, int national)
{
    if (national)
        buf_putc(b, 'N');
    sqltext_put_string(b, s, len);
}

void mssql_put_nstring(struct buf *b, const char *s, size_t len)
{
    put_string(b, s, len, 1);
}

/* N'[schema].[name]' for OBJECT_ID. */
static void put_object_literal(struct buf *b, const char *schema, const char *name)
{
    struct buf quoted = BUF_INIT;
    mssql_put_table(&quoted, schema, name);
    mssql_put_nstring(b, quoted.data, quoted.len);
    buf_free(&quoted);
}

static void lower_copy(const char *in, size_t max, struct buf *out)
{
    for (size_t i = 0; in[i] && i < max; i++) {
        char c = in[i];
        buf_putc(out, c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c);
    }
}

static uint32_t fnv1a_lower(uint32_t h, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h ^= c;
        h *= 16777619u;
    }
    return h;
}

void mssql_default_name(const char *table, const char *column, char *out, size_t outlen)
{
    uint32_t h = fnv1a_lower(2166136261u, table);
    h ^= '\n';
    h *= 16777619u;
    h = fnv1a_lower(h, column);
    size_t keep = strlen(table) + strlen(column) + 13 > MSSQL_NAME_MAX ? 50 : SIZE_MAX;
    struct buf name = BUF_INIT;
    buf_puts(&name, "DF_");
    lower_copy(table, keep, &name);
    buf_putc(&name, '_');
    lower_copy(column, keep, &name);
    buf_printf(&name, "_%08x", (unsigned)h);
    snprintf(out, outlen, "%s", name.data);
    buf_free(&name);
}

/* ---- types and defaults ---- */

enum mssql_stage mssql_stage_of(enum sql_kind kind)
{
    switch (kind) {
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT: case SQL_BIT:
        return MSSQL_STAGE_INT;
    case SQL_FLOAT: case SQL_REAL:
        return MSSQL_STAGE_FLOAT;
    case SQL_BINARY: case SQL_VARBINARY: case SQL_IMAGE: case SQL_TIMESTAMP:
        return MSSQL_STAGE_BINARY;
    default:
        return MSSQL_STAGE_TEXT;
    }
}

int mssql_kind_may_be_empty(enum sql_kind kind)
{
    return sqltype_is_string(kind) || (sqltype_is_binary(kind) && kind != SQL_TIMESTAMP);
}

/* The column type in the mirror: the sender's, except that SQL Server pads char(n), nchar(n)
 * and binary(n) while the protocol stores shorter values as sent (section 5), so those become
 * their var forms; timestamp/rowversion (never insertable) become binary(8); and xml, which
 * SQL Server would check and rewrite (whitespace, quotes, empty elements) while the protocol
 * stores it as sent and unchecked, becomes nvarchar(max). */
void mssql_put_type(struct buf *b, const struct sql_type *t)
{
    if (t->kind == SQL_TIMESTAMP) {
        buf_puts(b, "binary(8)");
        return;
    }
    if (t->kind == SQL_XML) {
        buf_puts(b, "nvarchar(max)");
        return;
    }
    struct sql_type stored = *t;
    if (stored.kind == SQL_CHAR)
        stored.kind = SQL_VARCHAR;
    else if (stored.kind == SQL_NCHAR)
        stored.kind = SQL_NVARCHAR;
    else if (stored.kind == SQL_BINARY)
        stored.kind = SQL_VARBINARY;
    char text[SQLTYPE_TEXT_MAX];
    sqltype_normal(&stored, text, sizeof(text));
    buf_puts(b, text);
}

/* The type a staged value is CAST to: the column's type, with the deprecated LOB types as
 * their (max) forms (CAST to text/ntext/image is refused). */
static void put_cast_type(struct buf *b, const struct sql_type *t)
{
    switch (t->kind) {
    case SQL_TEXT: buf_puts(b, "varchar(max)"); return;
    case SQL_NTEXT: buf_puts(b, "nvarchar(max)"); return;
    case SQL_IMAGE: buf_puts(b, "varbinary(max)"); return;
    default: mssql_put_type(b, t); return;
    }
}

static int is_unicode(enum sql_kind kind)
{
    return kind == SQL_NCHAR || kind == SQL_NVARCHAR || kind == SQL_NTEXT || kind == SQL_XML;
}

static const char *function_name(enum default_function fn)
{
    switch (fn) {
    case FN_GETDATE: return "getdate()";
    case FN_GETUTCDATE: return "getutcdate()";
    case FN_SYSDATETIME: return "sysdatetime()";
    case FN_SYSUTCDATETIME: return "sysutcdatetime()";
    case FN_SYSDATETIMEOFFSET: return "sysdatetimeoffset()";
    case FN_NEWID: return "newid()";
    case FN_NEWSEQUENTIALID: return "newsequentialid()";
    }
    return NULL;
}

/* Whether a number literal is one T-SQL takes: without an exponent it is a numeric constant
 * of at most 38 digits (more is error 1007); with one, a float constant. */
static int tsql_number_fits(const char *text)
{
    if (strpbrk(text, "eE"))
        return 1;
    size_t digits = 0;
    for (const char *p = text; *p; p++)
        digits += *p >= '0' && *p <= '9';
    return digits <= 38;
}

int mssql_put_default(struct buf *b, const struct column *col)
{
    if (!col->has_default)
        return -1;
    const struct default_expr *d = &col->def;
    switch (d->kind) {
    case DEF_NULL:
        buf_puts(b, "(NULL)");
        return 0;
    case DEF_NUMBER:
        if (!sqltext_number_valid(d->text) || !tsql_number_fits(d->text))
            return -1;
        buf_printf(b, "(%s)", d->text);
        return 0;
    case DEF_STRING:
        buf_putc(b, '(');
        put_string(b, d->text ? d->text : "", d->text ? d->len : 0,
                   d->national || is_unicode(col->type.kind));
        buf_putc(b, ')');
        return 0;
    case DEF_BINARY:
        if (!sqltext_hex_valid(d->text ? d->text : "", d->len))
            return -1;
        buf_printf(b, "(0x%.*s)", (int)d->len, d->text ? d->text : "");
        return 0;
    case DEF_FUNCTION: {
        /* SQL Server takes newsequentialid() only for a uniqueidentifier column (error 302);
         * a string column gets newid()'s GUID text, as the protocol allows either there. */
        enum default_function fn_kind = d->function;
        if (fn_kind == FN_NEWSEQUENTIALID && col->type.kind != SQL_UNIQUEIDENTIFIER)
            fn_kind = FN_NEWID;
        const char *fn = function_name(fn_kind);
        if (!fn)
            return -1;
        buf_printf(b, "(%s)", fn);
        return 0;
    }
    }
    return -1;
}

/* " CONSTRAINT [DF_..] DEFAULT (..)", or nothing. */
static void put_default_clause(struct buf *b, const char *table, const struct column *col)
{
    struct buf expr = BUF_INIT;
    if (mssql_put_default(&expr, col) == 0) {
        char name[MSSQL_NAME_MAX + 1];
        mssql_default_name(table, col->name, name, sizeof(name));
        buf_puts(b, " CONSTRAINT ");
        mssql_put_ident(b, name);
        buf_puts(b, " DEFAULT ");
        buf_puts(b, expr.data);
    }
    buf_free(&expr);
}

void mssql_put_column(struct buf *b, const char *table, const struct column *col)
{
    mssql_put_ident(b, col->name);
    buf_putc(b, ' ');
    mssql_put_type(b, &col->type);
    buf_puts(b, col->nullable ? " NULL" : " NOT NULL");
    put_default_clause(b, table, col);
}

/* ---- tables ---- */

void mssql_create_table(struct buf *b, const char *schema, const struct table_schema *s)
{
    buf_puts(b, "CREATE TABLE ");
    mssql_put_table(b, schema, s->name);
    buf_puts(b, " (");
    for (size_t k = 0; k < s->ncolumns; k++) {
        if (k)
            buf_puts(b, ", ");
        mssql_put_column(b, s->name, &s->columns[k]);
    }
    buf_puts(b, ", PRIMARY KEY (");
    sqltext_put_keys(b, s, mssql_put_ident);
    buf_puts(b, "));");
}

void mssql_drop_table(struct buf *b, const char *schema, const char *table)
{
    buf_puts(b, "IF OBJECT_ID(");
    put_object_literal(b, schema, table);
    buf_puts(b, ", N'U') IS NOT NULL DROP TABLE ");
    mssql_put_table(b, schema, table);
    buf_putc(b, ';');
}

void mssql_wipe_table(struct buf *b, const char *schema, const char *table)
{
    buf_puts(b, "TRUNCATE TABLE ");
    mssql_put_table(b, schema, table);
    buf_putc(b, ';');
}

static void put_alter(struct buf *b, const char *schema, const char *table)
{
    buf_puts(b, "ALTER TABLE ");
    mssql_put_table(b, schema, table);
}

/* Appends text as an N'...' literal, with the quoted table name in place of "%T" if it has one. */
static void put_text_with_table(struct buf *b, const char *text, const char *schema, const char *table)
{
    struct buf plain = BUF_INIT;
    const char *at = strstr(text, "%T");
    if (at) {
        buf_append(&plain, text, (size_t)(at - text));
        mssql_put_table(&plain, schema, table);
        buf_puts(&plain, at + 2);
    } else {
        buf_puts(&plain, text);
    }
    mssql_put_nstring(b, plain.data, plain.len);
    buf_free(&plain);
}

/* Appends to @somirror_drop the statements that one catalog query names: prefix, the quoted name
 * (column name) of each row, suffix (both with "%T" for the quoted table), for the rows of
 * "from" (SQL, with "%O" for the table's OBJECT_ID literal and "%C" for the column's name
 * literal). FOR XML PATH concatenates the rows: assigning a variable in a SELECT per row is not
 * guaranteed to run once per row. */
static void put_catalog_drops(struct buf *b, const char *schema, const char *table, const char *column,
                              const char *prefix, const char *name, const char *suffix, const char *from)
{
    struct buf object = BUF_INIT, column_literal = BUF_INIT;
    put_object_literal(&object, schema, table);
    mssql_put_nstring(&column_literal, column, strlen(column));
    buf_puts(b, "SET @somirror_drop += ISNULL((SELECT ");
    put_text_with_table(b, prefix, schema, table);
    buf_printf(b, " + QUOTENAME(%s) + ", name);
    put_text_with_table(b, suffix, schema, table);
    buf_putc(b, ' ');
    for (const char *p = from; *p; p++) {
        if (p[0] == '%' && (p[1] == 'O' || p[1] == 'C'))
            buf_puts(b, *++p == 'O' ? object.data : column_literal.data);
        else
            buf_putc(b, *p);
    }
    buf_puts(b, " FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), N'');\n");
    buf_free(&object);
    buf_free(&column_literal);
}

/* Drops, through @somirror_drop (declared by the caller), a column's default constraint under
 * whatever name it has (an older naming, or an operator's): SQL Server would refuse to drop the
 * column (error 5074) or to add its new default (error 1781) while it is there. For a column
 * that is dropped (dependents), also the indexes and statistics made on it (errors 5074,
 * 4922; an operator's hooks.table_sql scripts make them, and run again after the alteration). */
static void put_drops(struct buf *b, const char *schema, const char *table, const char *column,
                      int dependents)
{
    buf_puts(b, "SET @somirror_drop = N'';\n");
    put_catalog_drops(b, schema, table, column, "ALTER TABLE %T DROP CONSTRAINT ", "d.name", ";",
                      "FROM sys.default_constraints d JOIN sys.columns c ON c.object_id = d.parent_object_id"
                      " AND c.column_id = d.parent_column_id WHERE d.parent_object_id = OBJECT_ID(%O)"
                      " AND c.name = %C");
    if (dependents) {
        put_catalog_drops(b, schema, table, column, "DROP INDEX ", "i.name", " ON %T;",
                          "FROM sys.indexes i WHERE i.object_id = OBJECT_ID(%O) AND i.is_primary_key = 0"
                          " AND i.is_unique_constraint = 0 AND EXISTS (SELECT 1 FROM sys.index_columns x"
                          " JOIN sys.columns c ON c.object_id = x.object_id AND c.column_id = x.column_id"
                          " WHERE x.object_id = i.object_id AND x.index_id = i.index_id AND c.name = %C)");
        put_catalog_drops(b, schema, table, column, "DROP STATISTICS %T.", "s.name", ";",
                          "FROM sys.stats s WHERE s.object_id = OBJECT_ID(%O) AND s.user_created = 1"
                          " AND EXISTS (SELECT 1 FROM sys.stats_columns x JOIN sys.columns c"
                          " ON c.object_id = x.object_id AND c.column_id = x.column_id"
                          " WHERE x.object_id = s.object_id AND x.stats_id = s.stats_id AND c.name = %C)");
    }
    buf_puts(b, "EXEC sp_executesql @somirror_drop;\n");
}

void mssql_alter_table(struct buf *b, const char *schema, const struct table_schema *old_schema,
                       const struct table_schema *new_schema, const struct schema_diff *diff)
{
    const char *table = old_schema->name;
    if (diff->ndropped || diff->ndefault_changed)
        buf_puts(b, "DECLARE @somirror_drop nvarchar(max);\n");
    for (size_t i = 0; i < diff->nadded; i++) {
        put_alter(b, schema, table);
        buf_puts(b, " ADD ");
        mssql_put_column(b, table, &new_schema->columns[diff->added[i]]);
        buf_puts(b, ";\n");
    }
    for (size_t i = 0; i < diff->ndropped; i++) {
        const char *column = old_schema->columns[diff->dropped[i]].name;
        put_drops(b, schema, table, column, 1);
        put_alter(b, schema, table);
        buf_puts(b, " DROP COLUMN ");
        mssql_put_ident(b, column);
        buf_puts(b, ";\n");
    }
    for (size_t i = 0; i < diff->ndefault_changed; i++) {
        const struct column *col = &new_schema->columns[diff->default_changed[i]];
        put_drops(b, schema, table, col->name, 0);
        struct buf expr = BUF_INIT;
        if (mssql_put_default(&expr, col) == 0) {
            char name[MSSQL_NAME_MAX + 1];
            mssql_default_name(table, col->name, name, sizeof(name));
            put_alter(b, schema, table);
            buf_puts(b, " ADD CONSTRAINT ");
            mssql_put_ident(b, name);
            buf_puts(b, " DEFAULT ");
            buf_puts(b, expr.data);
            buf_puts(b, " FOR ");
            mssql_put_ident(b, col->name);
            buf_puts(b, ";\n");
        }
        buf_free(&expr);
    }
}

/* ---- metadata ---- */

void mssql_meta_create(struct buf *b, const char *schema, const char *meta_table)
{
    buf_puts(b, "IF OBJECT_ID(");
    put_object_literal(b, schema, meta_table);
    buf_puts(b, ", N'U') IS NULL CREATE TABLE ");
    mssql_put_table(b, schema, meta_table);
    buf_puts(b, " ([tablename] nvarchar(128) NOT NULL PRIMARY KEY, [schema] nvarchar(max) NOT NULL,"
                " [schemahash] char(64) NOT NULL, [lsn] bigint NOT NULL,"
                " [updated] datetime2(3) NOT NULL);");
}

void mssql_meta_select(struct buf *b, const char *schema, const char *meta_table)
{
    buf_puts(b, "SELECT [tablename], [schema], [schemahash], [lsn],"
                " CAST(DATEDIFF(day, '19700101', [updated]) AS bigint) * 86400"
                " + DATEDIFF(second, CAST([updated] AS date), [updated]) FROM ");
    mssql_put_table(b, schema, meta_table);
    buf_puts(b, " ORDER BY [tablename];");
}

void mssql_meta_put_sql(struct buf *b, const char *schema, const char *meta_table)
{
    buf_puts(b, "UPDATE ");
    mssql_put_table(b, schema, meta_table);
    buf_puts(b, " SET [schema] = @s, [schemahash] = @h, [lsn] = @l,"
                " [updated] = SYSUTCDATETIME() WHERE [tablename] = @t;"
                " IF @@ROWCOUNT = 0 INSERT INTO ");
    mssql_put_table(b, schema, meta_table);
    buf_puts(b, " ([tablename], [schema], [schemahash], [lsn], [updated])"
                " VALUES (@t, @s, @h, @l, SYSUTCDATETIME());");
}

void mssql_meta_delete_sql(struct buf *b, const char *schema, const char *meta_table)
{
    buf_puts(b, "DELETE FROM ");
    mssql_put_table(b, schema, meta_table);
    buf_puts(b, " WHERE [tablename] = @t;");
}

/* ---- databases ---- */

void mssql_create_database(struct buf *b, const char *dbname, const char *collation)
{
    buf_puts(b, "CREATE DATABASE ");
    mssql_put_ident(b, dbname);
    if (collation)
        buf_printf(b, " COLLATE %s", collation);
}

void mssql_use_database(struct buf *b, const char *dbname)
{
    buf_puts(b, "USE ");
    mssql_put_ident(b, dbname);
}

/* Single-user first, so that the other workers' sessions do not hold the drop up; should the
 * drop fail all the same, the database is made multi-user again (left single-user, every
 * other connection to it would fail until an operator stepped in) and the error raised. */
void mssql_drop_database(struct buf *b, const char *dbname)
{
    buf_puts(b, "IF DB_ID(@db) IS NOT NULL BEGIN ALTER DATABASE ");
    mssql_put_ident(b, dbname);
    buf_puts(b, " SET SINGLE_USER WITH ROLLBACK IMMEDIATE; BEGIN TRY DROP DATABASE ");
    mssql_put_ident(b, dbname);
    buf_puts(b, "; END TRY BEGIN CATCH ALTER DATABASE ");
    mssql_put_ident(b, dbname);
    buf_puts(b, " SET MULTI_USER; THROW; END CATCH; END");
}

void mssql_create_schema(struct buf *b, const char *schema)
{
    struct buf ddl = BUF_INIT;
    buf_puts(&ddl, "CREATE SCHEMA ");
    mssql_put_ident(&ddl, schema);
    buf_puts(b, "IF SCHEMA_ID(@sch) IS NULL EXEC(");
    mssql_put_nstring(b, ddl.data, ddl.len);
    buf_puts(b, ")");
    buf_free(&ddl);
}

/* ---- staging and apply ---- */

/* The nvarchar a text value is read back as: nvarchar(n) or nvarchar(max). */
static void put_text_type(struct buf *b, const struct sql_type *t)
{
    switch (t->kind) {
    case SQL_CHAR: case SQL_VARCHAR: case SQL_NCHAR: case SQL_NVARCHAR:
        if (t->length != SQL_LEN_MAX && t->length <= 4000)
            buf_printf(b, "nvarchar(%d)", t->length);
        else
            buf_puts(b, "nvarchar(max)");
        return;
    case SQL_TEXT: case SQL_NTEXT: case SQL_XML:
        buf_puts(b, "nvarchar(max)");
        return;
    default:
        buf_puts(b, "nvarchar(64)");
        return;
    }
}

static void put_stage_type(struct buf *b, const struct sql_type *t)
{
    switch (mssql_stage_of(t->kind)) {
    case MSSQL_STAGE_INT:
        buf_puts(b, "bigint");
        return;
    case MSSQL_STAGE_FLOAT:
        buf_puts(b, "float");
        return;
    case MSSQL_STAGE_BINARY:
        if ((t->kind == SQL_BINARY || t->kind == SQL_VARBINARY) && t->length != SQL_LEN_MAX)
            buf_printf(b, "varbinary(%d)", t->length);
        else if (t->kind == SQL_TIMESTAMP)
            buf_puts(b, "varbinary(8)");
        else
            buf_puts(b, "varbinary(max)");
        return;
    case MSSQL_STAGE_TEXT:
        break;
    }
    /* UTF-16LE bytes: twice the characters of put_text_type */
    struct buf text = BUF_INIT;
    put_text_type(&text, t);
    int n = 0;
    if (sscanf(text.data, "nvarchar(%d)", &n) == 1 && n > 0)
        buf_printf(b, "varbinary(%d)", 2 * n);
    else
        buf_puts(b, "varbinary(max)");
    buf_free(&text);
}

void mssql_stage_create(struct buf *b, const struct table_schema *s)
{
    buf_printf(b, "CREATE TABLE " MSSQL_STAGE_TABLE " ([__seq] int NOT NULL,"
                  " [__op] char(1) NOT NULL, [__e] varchar(%zu) NULL",
               s->ncolumns ? s->ncolumns : 1);
    for (size_t k = 0; k < s->ncolumns; k++) {
        buf_printf(b, ", [c%zu] ", k + 1);
        put_stage_type(b, &s->columns[k].type);
        buf_puts(b, " NULL");
    }
    buf_puts(b, ");");
}

/* The value of table column k from staging row s, as the column's type. */
static void put_value(struct buf *b, const struct table_schema *s, size_t k)
{
    const struct sql_type *t = &s->columns[k].type;
    if (mssql_kind_may_be_empty(t->kind)) {
        buf_printf(b, "CASE WHEN SUBSTRING(s.[__e], %zu, 1) = '1' THEN CAST(%s AS ", k + 1,
                   sqltype_is_binary(t->kind) ? "0x" : "N''");
        put_cast_type(b, t);
        buf_puts(b, ") ELSE ");
    }
    if (mssql_stage_of(t->kind) == MSSQL_STAGE_TEXT) {
        buf_printf(b, "CAST(CAST(s.[c%zu] AS ", k + 1);
        put_text_type(b, t);
        buf_puts(b, ") AS ");
    } else {
        buf_printf(b, "CAST(s.[c%zu] AS ", k + 1);
    }
    put_cast_type(b, t);
    buf_putc(b, ')');
    if (mssql_kind_may_be_empty(t->kind))
        buf_puts(b, " END");
}

/* t.[key1] = <value 1> AND ... */
static void put_key_match(struct buf *b, const struct table_schema *s)
{
    for (size_t p = 0; p < s->npk; p++) {
        if (p)
            buf_puts(b, " AND ");
        buf_puts(b, "t.");
        mssql_put_ident(b, s->columns[s->pk[p]].name);
        buf_puts(b, " = ");
        put_value(b, s, s->pk[p]);
    }
}

void mssql_stage_apply(struct buf *b, const char *schema, const struct table_schema *s,
                       int upserts, int deletes)
{
    buf_puts(b, "WITH d AS (SELECT ROW_NUMBER() OVER (PARTITION BY ");
    for (size_t p = 0; p < s->npk; p++) {
        if (p)
            buf_puts(b, ", ");
        put_value(b, s, s->pk[p]);
    }
    buf_puts(b, " ORDER BY s.[__seq] DESC) AS [__rn] FROM " MSSQL_STAGE_TABLE
                " AS s) DELETE FROM d WHERE [__rn] > 1;\n");
    if (upserts) {
        size_t nset = 0;
        for (size_t k = 0; k < s->ncolumns; k++) {
            if (s->columns[k].pk_position)
                continue;
            buf_puts(b, nset++ ? ", " : "UPDATE t SET ");
            mssql_put_ident(b, s->columns[k].name);
            buf_puts(b, " = ");
            put_value(b, s, k);
        }
        if (nset) {
            buf_puts(b, " FROM ");
            mssql_put_table(b, schema, s->name);
            buf_puts(b, " AS t INNER JOIN " MSSQL_STAGE_TABLE " AS s ON ");
            put_key_match(b, s);
            buf_puts(b, " WHERE s.[__op] = 'U';\n");
        }
        buf_puts(b, "INSERT INTO ");
        mssql_put_table(b, schema, s->name);
        buf_puts(b, " (");
        sqltext_put_columns(b, s, mssql_put_ident);
        buf_puts(b, ") SELECT ");
        for (size_t k = 0; k < s->ncolumns; k++) {
            if (k)
                buf_puts(b, ", ");
            put_value(b, s, k);
        }
        buf_puts(b, " FROM " MSSQL_STAGE_TABLE " AS s WHERE s.[__op] = 'U' AND NOT EXISTS"
                    " (SELECT 1 FROM ");
        mssql_put_table(b, schema, s->name);
        buf_puts(b, " AS t WHERE ");
        put_key_match(b, s);
        buf_puts(b, ");\n");
    }
    if (deletes) {
        buf_puts(b, "DELETE t FROM ");
        mssql_put_table(b, schema, s->name);
        buf_puts(b, " AS t INNER JOIN " MSSQL_STAGE_TABLE " AS s ON ");
        put_key_match(b, s);
        buf_puts(b, " WHERE s.[__op] = 'D';\n");
    }
    buf_puts(b, "DROP TABLE " MSSQL_STAGE_TABLE ";");
}
