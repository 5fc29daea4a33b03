/* proto/schema: a table as a sender describes it, checked against the rules of protocol 4.2
 * (schema_prepare), its canonical text and SHA-256 hash (schema_canonicalize), and the way
 * back from the stored canonical text (schema_from_canonical). */
#include "proto/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/log.h"
#include "proto/value.h"

static void reject(struct table_schema *t, struct arena *arena, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(struct table_schema *t, struct arena *arena, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    t->reject = arena_strdup(arena, message);
}

static void quote_text(const char *text, char *out, size_t outlen)
{
    utf8_shorten(text, strlen(text), VALUE_QUOTE_CHARS, out, outlen);
}

/* A NULL default belongs to nullable columns only; literals and functions per default_fits. */
static int column_default_fits(const struct column *c)
{
    return c->def.kind == DEF_NULL ? c->nullable : default_fits(&c->def, &c->type);
}

static ssize_t find_column(const struct table_schema *t, const char *name)
{
    for (size_t k = 0; k < t->ncolumns; k++)
        if (ident_equal(t->columns[k].name, name))
            return (ssize_t)k;
    return -1;
}

static int name_reserved(const char *name, const char *tenant)
{
    if (ident_has_prefix(name, "sqlite_") || ident_has_prefix(name, "_somirror_"))
        return 1;
    size_t tenant_len = tenant ? strlen(tenant) : 0;
    return tenant && strlen(name) == tenant_len + sizeof(SCHEMA_META_SUFFIX) - 1 &&
           ident_has_prefix(name, tenant) && ident_equal(name + tenant_len, SCHEMA_META_SUFFIX);
}

/* Names, duplicates and types of the columns. 0, or -1 with t->reject set. */
static int check_columns(struct table_schema *t, struct arena *arena)
{
    char quoted[VALUE_QUOTE_MAX], err[256];
    if (t->ncolumns == 0) {
        reject(t, arena, "column shape: no columns");
        return -1;
    }
    /* SQL Server's own limit (4.2: "with SQL Server's limits"), within what every store holds
     * (PostgreSQL 1600, SQLite 2000): a wider table would fail at creation, retryably. */
    if (t->ncolumns > SQL_COLUMNS_MAX) {
        reject(t, arena, "column shape: %zu columns, more than SQL Server's %d", t->ncolumns,
               SQL_COLUMNS_MAX);
        return -1;
    }
    for (size_t k = 0; k < t->ncolumns; k++) {
        struct column *c = &t->columns[k];
        if (!ident_valid(c->name)) {
            quote_text(c->name ? c->name : "", quoted, sizeof(quoted));
            reject(t, arena, "name: invalid column name '%s'", quoted);
            return -1;
        }
        if (find_column(t, c->name) != (ssize_t)k) {
            reject(t, arena, "column shape: duplicate column %s", c->name);
            return -1;
        }
        if (sqltype_parse(c->type_text, &c->type, err, sizeof(err))) {
            reject(t, arena, "column shape: %s", err);
            return -1;
        }
        c->pk_position = 0;
    }
    return 0;
}

/* The primary key: present, every column listed once, in Columns and NOT NULL. */
static int check_primary_key(struct table_schema *t, struct arena *arena)
{
    if (t->npk == 0) {
        reject(t, arena, "primary key: table has no primary key");
        return -1;
    }
    t->pk = arena_calloc(arena, t->npk, sizeof(*t->pk));
    for (size_t k = 0; k < t->npk; k++) {
        const char *name = t->pk_names[k];
        ssize_t index = ident_valid(name) ? find_column(t, name) : -1;
        if (index < 0) {
            char quoted[VALUE_QUOTE_MAX];
            quote_text(name ? name : "", quoted, sizeof(quoted));
            reject(t, arena, "primary key: column %s is not in Columns", quoted);
            return -1;
        }
        struct column *c = &t->columns[index];
        if (c->pk_position) {
            reject(t, arena, "primary key: column %s is listed twice", name);
            return -1;
        }
        if (c->nullable) {
            reject(t, arena, "primary key: column %s is nullable", name);
            return -1;
        }
        c->pk_position = (int)k + 1;
        t->pk[k] = (size_t)index;
    }
    return 0;
}

static char *trimmed_copy(const char *text, struct arena *arena)
{
    static const char space[] = " \t\r\n";
    const char *start = text + strspn(text, space);
    size_t len = strlen(start);
    while (len > 0 && strchr(space, start[len - 1]))
        len--;
    return arena_strndup(arena, start, len);
}

/* Parses every default; one that does not parse rejects the table, one that does not fit its
 * column is left out with a warning. */
static int check_defaults(struct table_schema *t, struct arena *arena)
{
    char quoted[VALUE_QUOTE_MAX], err[256], type_text[SQLTYPE_TEXT_MAX];
    for (size_t k = 0; k < t->ncolumns; k++) {
        struct column *c = &t->columns[k];
        c->has_default = 0;
        if (c->default_text)
            c->default_text = trimmed_copy(c->default_text, arena);   /* "" when empty */
        if (!c->default_text || !*c->default_text) {
            c->default_text = NULL;   /* an empty <Default/> is no default */
            continue;
        }
        quote_text(c->default_text, quoted, sizeof(quoted));
        if (default_parse(c->default_text, arena, &c->def, err, sizeof(err))) {
            reject(t, arena, "default: column %s: cannot parse %s (%s)", c->name, quoted, err);
            return -1;
        }
        c->has_default = column_default_fits(c);
        if (!c->has_default) {
            sqltype_normal(&c->type, type_text, sizeof(type_text));
            log_warn("table %s: default %s of column %s does not fit %s%s; the mirror leaves "
                     "it out", t->name, quoted, c->name, type_text,
                     c->nullable ? "" : " not null");
        }
    }
    return 0;
}

void schema_prepare(struct table_schema *t, const char *tenant, const struct cfg_strings *blocked,
                    struct arena *arena)
{
    t->reject = NULL;
    t->canonical = NULL;
    t->hash[0] = '\0';
    if (!ident_valid(t->name)) {
        reject(t, arena, "name: invalid table name");
        return;
    }
    if (name_reserved(t->name, tenant)) {
        reject(t, arena, "name: reserved table name");
        return;
    }
    if (table_blocked(t->name, blocked)) {
        reject(t, arena, "blocked: table is on the blocked list");
        return;
    }
    if (check_columns(t, arena) || check_primary_key(t, arena) || check_defaults(t, arena))
        return;
    schema_canonicalize(t, arena);
}

static void hash_text(const char *text, char hex[SM_HASH_HEX + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_Digest(text, strlen(text), digest, &digest_len, EVP_sha256(), NULL);
    for (unsigned k = 0; k < digest_len && k * 2 < SM_HASH_HEX; k++)
        snprintf(hex + 2 * k, 3, "%02x", digest[k]);
    hex[SM_HASH_HEX] = '\0';
}

static void put_lower(struct buf *b, const char *s)
{
    for (; *s; s++)
        buf_putc(b, *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s);
}

void schema_canonicalize(struct table_schema *t, struct arena *arena)
{
    struct buf text = BUF_INIT;
    for (size_t k = 0; k < t->ncolumns; k++) {
        const struct column *c = &t->columns[k];
        put_lower(&text, c->name);
        buf_putc(&text, '|');
        sqltype_canonical_text(c->type_text, &c->type, &text);
        buf_printf(&text, "|%s|", c->nullable ? "null" : "notnull");
        if (c->default_text)
            buf_puts(&text, c->default_text);
        buf_putc(&text, '\n');
    }
    buf_puts(&text, "pk|");
    for (size_t k = 0; k < t->npk; k++) {
        if (k > 0)
            buf_putc(&text, ',');
        put_lower(&text, t->pk_names[k]);
    }
    t->canonical = arena_strndup(arena, text.data, text.len);
    buf_free(&text);
    hash_text(t->canonical, t->hash);
}

/* Splits s at the first sep (replaced by NUL); returns what follows, or NULL. */
static char *split_at(char *s, char sep)
{
    char *at = strchr(s, sep);
    if (!at)
        return NULL;
    *at = '\0';
    return at + 1;
}

static int column_from_line(char *line, struct arena *arena, struct column *c, char *err,
                            size_t errlen)
{
    char *type = split_at(line, '|');
    char *null = type ? split_at(type, '|') : NULL;
    char *def = null ? split_at(null, '|') : NULL;
    char parse_err[256];
    memset(c, 0, sizeof(*c));
    if (!def || !ident_valid(line) || (strcmp(null, "null") != 0 && strcmp(null, "notnull") != 0)) {
        snprintf(err, errlen, "malformed column line in stored schema");
        return -1;
    }
    c->name = ident_lower(line, arena);
    c->type_text = type;
    c->nullable = strcmp(null, "null") == 0;
    if (sqltype_parse(type, &c->type, parse_err, sizeof(parse_err))) {
        snprintf(err, errlen, "stored schema, column %s: %s", c->name, parse_err);
        return -1;
    }
    if (*def) {
        c->default_text = def;
        if (default_parse(def, arena, &c->def, parse_err, sizeof(parse_err))) {
            snprintf(err, errlen, "stored schema, column %s: default: %s", c->name, parse_err);
            return -1;
        }
        c->has_default = column_default_fits(c);
    }
    return 0;
}

/* Whether the default of a stored column line (after its third '|') is whole: none, or one
 * that parses. A default may hold line breaks (whitespace between tokens, or inside a string),
 * and so continue on the canonical text's next lines. */
static int line_default_whole(const char *line)
{
    const char *def = line;
    for (int bar = 0; bar < 3; bar++) {
        def = strchr(def, '|');
        if (!def)
            return 1;   /* malformed: column_from_line says so */
        def++;
    }
    if (!*def)
        return 1;
    /* A trial parse in an arena of its own: the caller's holds the cached schema. */
    struct arena scratch;
    arena_init(&scratch);
    struct default_expr parsed;
    char err[64];
    int whole = default_parse(def, &scratch, &parsed, err, sizeof(err)) == 0;
    arena_free(&scratch);
    return whole;
}

static int key_from_line(char *line, struct arena *arena, struct table_schema *out, char *err,
                         size_t errlen)
{
    char *names = strncmp(line, "pk|", 3) == 0 ? line + 3 : NULL;
    if (!names || !*names) {
        snprintf(err, errlen, "stored schema has no key line");
        return -1;
    }
    out->npk = 1;
    for (const char *p = names; *p; p++)
        out->npk += *p == ',';
    out->pk_names = arena_calloc(arena, out->npk, sizeof(*out->pk_names));
    out->pk = arena_calloc(arena, out->npk, sizeof(*out->pk));
    for (size_t k = 0; k < out->npk; k++) {
        char *next = split_at(names, ',');
        ssize_t index = find_column(out, names);
        if (index < 0 || out->columns[index].pk_position) {
            snprintf(err, errlen, "stored schema has a bad key column");
            return -1;
        }
        out->pk_names[k] = out->columns[index].name;
        out->pk[k] = (size_t)index;
        out->columns[index].pk_position = (int)k + 1;
        names = next;
    }
    return 0;
}

int schema_from_canonical(const char *name, const char *canonical, struct arena *arena,
                          struct table_schema *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->name = arena_strdup(arena, name);
    out->canonical = arena_strdup(arena, canonical);
    char *lines = arena_strdup(arena, canonical);
    size_t nlines = 1;
    for (const char *p = lines; *p; p++)
        nlines += *p == '\n';
    if (nlines < 2) {
        snprintf(err, errlen, "stored schema has no columns");
        return -1;
    }
    out->columns = arena_calloc(arena, nlines - 1, sizeof(*out->columns));
    /* Column lines, then the key line, which is the last: a column's default that does not
     * parse yet takes in the next line (not the last) with its line break. */
    char *line = lines, *next = split_at(line, '\n');
    while (next) {
        char *after = split_at(next, '\n');
        while (after && !line_default_whole(line)) {
            next[-1] = '\n';
            next = after;
            after = split_at(next, '\n');
        }
        if (column_from_line(line, arena, &out->columns[out->ncolumns++], err, errlen))
            return -1;
        line = next;
        next = after;
    }
    if (key_from_line(line, arena, out, err, errlen))
        return -1;
    hash_text(out->canonical, out->hash);
    return 0;
}
