/* store/sqltext: SQL text pieces shared by the store drivers (see sqltext.h): quoting,
 * identifier checks, default literal checks, the DEFAULT clause's frame, column lists, dropped
 * columns and upsert statements. No I/O but the log line of a default left out. */
#include "store/sqltext.h"

#include <string.h>

#include "common/log.h"

void sqltext_put_quoted(struct buf *sql, const char *name, char open, char close)
{
    buf_putc(sql, open);
    for (const char *p = name; *p; p++) {
        if (*p == close)
            buf_putc(sql, close);
        buf_putc(sql, *p);
    }
    buf_putc(sql, close);
}

void sqltext_put_string(struct buf *sql, const char *s, size_t len)
{
    buf_putc(sql, '\'');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\'')
            buf_putc(sql, '\'');
        buf_putc(sql, s[i]);
    }
    buf_putc(sql, '\'');
}

char *sqltext_meta_table(const char *driver, const char *tenant, struct fault *f)
{
    if (!tenant_valid(tenant)) {
        fault_set(f, FAULT_INTERNAL, "%s: refusing an invalid tenant name", driver);
        return NULL;
    }
    struct buf name = BUF_INIT;
    buf_printf(&name, "%s" SCHEMA_META_SUFFIX, tenant);
    return buf_steal(&name);
}

int sqltext_name_check(const char *driver, const char *name, struct fault *f)
{
    if (ident_valid(name))
        return 0;
    fault_set(f, FAULT_INTERNAL, "%s: refusing an invalid identifier", driver);
    return -1;
}

int sqltext_schema_names_check(const char *driver, const struct table_schema *s,
                               struct fault *f)
{
    if (sqltext_name_check(driver, s->name, f) != 0)
        return -1;
    for (size_t k = 0; k < s->ncolumns; k++)
        if (sqltext_name_check(driver, s->columns[k].name, f) != 0)
            return -1;
    return 0;
}

int sqltext_number_valid(const char *text)
{
    return text && *text && strspn(text, "0123456789.eE+-") == strlen(text);
}

int sqltext_hex_valid(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!text[i] || !strchr("0123456789abcdefABCDEF", text[i]))
            return 0;
    return 1;
}

void sqltext_datetime_space(char *text, size_t len)
{
    if (len > 10 && text[10] == 'T')
        text[10] = ' ';
}

void sqltext_put_default(struct buf *sql, const struct column *col, sqltext_default_fn put_value)
{
    if (!col->has_default)
        return;
    const struct default_expr *d = &col->def;
    int checked = 1;
    switch (d->kind) {
    case DEF_NULL:
        buf_puts(sql, " DEFAULT NULL");
        return;
    case DEF_NUMBER:
        checked = sqltext_number_valid(d->text);
        break;
    case DEF_BINARY:
        checked = sqltext_hex_valid(d->text, d->len);
        break;
    case DEF_STRING:
    case DEF_FUNCTION:
        break;
    }
    if (checked && put_value(sql, col) == 0)
        return;
    log_warn("column %s: default left out of the mirror", col->name);
}

void sqltext_put_columns(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident)
{
    for (size_t k = 0; k < s->ncolumns; k++) {
        if (k)
            buf_puts(sql, ", ");
        put_ident(sql, s->columns[k].name);
    }
}

void sqltext_put_keys(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident)
{
    for (size_t p = 0; p < s->npk; p++) {
        if (p)
            buf_puts(sql, ", ");
        put_ident(sql, s->columns[s->pk[p]].name);
    }
}

void sqltext_put_drop_columns(struct buf *sql, const struct table_schema *old_schema,
                              const struct schema_diff *diff, sqltext_ident_fn put_ident)
{
    for (size_t i = 0; i < diff->ndropped; i++) {
        buf_puts(sql, "ALTER TABLE ");
        put_ident(sql, old_schema->name);
        buf_puts(sql, " DROP COLUMN ");
        put_ident(sql, old_schema->columns[diff->dropped[i]].name);
        buf_puts(sql, ";\n");
    }
}

void sqltext_put_insert(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident)
{
    buf_puts(sql, "INSERT INTO ");
    put_ident(sql, s->name);
    buf_puts(sql, " AS target (");
    sqltext_put_columns(sql, s, put_ident);
    buf_putc(sql, ')');
}

void sqltext_put_on_conflict(struct buf *sql, const struct table_schema *s,
                             sqltext_ident_fn put_ident)
{
    buf_puts(sql, " ON CONFLICT (");
    sqltext_put_keys(sql, s, put_ident);
    size_t nset = 0;
    for (size_t k = 0; k < s->ncolumns; k++) {
        if (s->columns[k].pk_position)
            continue;
        buf_puts(sql, nset++ ? ", " : ") DO UPDATE SET ");
        put_ident(sql, s->columns[k].name);
        buf_puts(sql, " = excluded.");
        put_ident(sql, s->columns[k].name);
    }
    if (!nset)
        buf_puts(sql, ") DO NOTHING");
}
