/* proto/defexpr: the default-constraint grammar of protocol 4.2 (SQL Server's own expression
 * text, so a small recursive-descent reader rather than a data-format parser) and whether a
 * parsed default can be the default of a column of a given type. */
#include "proto/schema.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proto/value.h"

static const struct {
    const char *name;
    enum default_function function;
} default_functions[] = {
    {"getdate", FN_GETDATE},
    {"getutcdate", FN_GETUTCDATE},
    {"sysdatetime", FN_SYSDATETIME},
    {"sysutcdatetime", FN_SYSUTCDATETIME},
    {"sysdatetimeoffset", FN_SYSDATETIMEOFFSET},
    {"newid", FN_NEWID},
    {"newsequentialid", FN_NEWSEQUENTIALID},
};

enum { WORD_QUOTE_MAX = 40 };

/* Where the reader is, and where it reports a failure. */
struct reader {
    const char *p;
    struct arena *arena;
    char *err;
    size_t errlen;
};

static int fail(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_space(struct reader *r)
{
    while (isspace((unsigned char)*r->p))
        r->p++;
}

static int word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* [0-9]+(.[0-9]*)? | .[0-9]+, then an optional exponent; sign is '+', '-' or 0. */
static int read_number(struct reader *r, char sign, struct default_expr *out)
{
    const char *start = r->p;
    size_t digits = 0;
    for (; isdigit((unsigned char)*r->p); r->p++)
        digits++;
    if (*r->p == '.')
        for (r->p++; isdigit((unsigned char)*r->p); r->p++)
            digits++;
    if (digits == 0)
        return fail(r, "expected a number");
    if (*r->p == 'e' || *r->p == 'E') {
        r->p++;
        if (*r->p == '+' || *r->p == '-')
            r->p++;
        if (!isdigit((unsigned char)*r->p))
            return fail(r, "number with an empty exponent");
        while (isdigit((unsigned char)*r->p))
            r->p++;
    }
    size_t len = (size_t)(r->p - start);
    size_t sign_len = sign ? 1 : 0;
    char *text = arena_alloc(r->arena, sign_len + len + 1);
    if (sign)
        text[0] = sign;
    memcpy(text + sign_len, start, len);
    text[sign_len + len] = '\0';
    out->kind = DEF_NUMBER;
    out->text = text;
    out->len = sign_len + len;
    return 0;
}

/* '...' with '' for a quote inside; r->p is at the opening quote. */
static int read_string(struct reader *r, int national, struct default_expr *out)
{
    const char *start = ++r->p;
    char *text = arena_alloc(r->arena, strlen(start) + 1);
    size_t len = 0;
    for (;;) {
        if (*r->p == '\0')
            return fail(r, "unterminated string");
        if (*r->p == '\'') {
            if (r->p[1] != '\'')
                break;
            r->p++;
        }
        text[len++] = *r->p++;
    }
    r->p++;
    text[len] = '\0';
    out->kind = DEF_STRING;
    out->text = text;
    out->len = len;
    out->national = national;
    return 0;
}

/* 0x followed by hex digits (none is an empty binary); r->p is at the 0. */
static int read_hex(struct reader *r, struct default_expr *out)
{
    const char *start = r->p += 2;
    while (isxdigit((unsigned char)*r->p))
        r->p++;
    if (word_char(*r->p))
        return fail(r, "invalid hex digit '%c'", *r->p);
    out->kind = DEF_BINARY;
    out->len = (size_t)(r->p - start);
    out->text = arena_strndup(r->arena, start, out->len);
    return 0;
}

/* NULL, or fn ( ); r->p is at a letter or '_'. */
static int read_word(struct reader *r, struct default_expr *out)
{
    const char *start = r->p;
    while (word_char(*r->p))
        r->p++;
    size_t len = (size_t)(r->p - start);
    int quoted = len > WORD_QUOTE_MAX ? WORD_QUOTE_MAX : (int)len;
    if (len == 4 && strncasecmp(start, "null", 4) == 0) {
        out->kind = DEF_NULL;
        return 0;
    }
    size_t k = 0, nfunctions = sizeof(default_functions) / sizeof(default_functions[0]);
    while (k < nfunctions && !(strlen(default_functions[k].name) == len &&
                               strncasecmp(default_functions[k].name, start, len) == 0))
        k++;
    if (k == nfunctions)
        return fail(r, "unknown name %.*s", quoted, start);
    skip_space(r);
    if (*r->p != '(')
        return fail(r, "missing () after %.*s", quoted, start);
    r->p++;
    skip_space(r);
    if (*r->p != ')')
        return fail(r, "%.*s takes no arguments", quoted, start);
    r->p++;
    out->kind = DEF_FUNCTION;
    out->function = default_functions[k].function;
    return 0;
}

/* One literal or function call, parentheses already consumed. */
static int read_atom(struct reader *r, struct default_expr *out)
{
    char c = *r->p;
    if (c == '\0')
        return fail(r, "empty default");
    if (c == '+' || c == '-') {
        r->p++;
        skip_space(r);
        return read_number(r, c, out);
    }
    if (c == '0' && (r->p[1] == 'x' || r->p[1] == 'X'))
        return read_hex(r, out);
    if (isdigit((unsigned char)c) || c == '.')
        return read_number(r, 0, out);
    if (c == '\'')
        return read_string(r, 0, out);
    if ((c == 'N' || c == 'n') && r->p[1] == '\'') {
        r->p++;
        return read_string(r, 1, out);
    }
    if (isalpha((unsigned char)c) || c == '_')
        return read_word(r, out);
    return fail(r, "unexpected character '%c'", c);
}

int default_parse(const char *text, struct arena *arena, struct default_expr *out, char *err,
                  size_t errlen)
{
    struct reader r = {text ? text : "", arena, err, errlen};
    size_t depth = 0;
    memset(out, 0, sizeof(*out));
    for (skip_space(&r); *r.p == '('; skip_space(&r)) {
        r.p++;
        depth++;
    }
    if (read_atom(&r, out))
        return -1;
    for (; depth > 0; depth--) {
        skip_space(&r);
        if (*r.p != ')')
            return fail(&r, "missing ')'");
        r.p++;
    }
    skip_space(&r);
    if (*r.p != '\0')
        return fail(&r, *r.p == ')' ? "unbalanced ')'" : "unexpected text after the default");
    return 0;
}

static int numeric_kind(enum sql_kind kind)
{
    return kind == SQL_BIGINT || kind == SQL_INT || kind == SQL_SMALLINT ||
           kind == SQL_TINYINT || kind == SQL_BIT || kind == SQL_DECIMAL ||
           kind == SQL_NUMERIC || kind == SQL_MONEY || kind == SQL_SMALLMONEY ||
           kind == SQL_FLOAT || kind == SQL_REAL;
}

/* Whether text passes the section 5 rules for type as a <V> value. */
static int literal_fits(const struct sql_type *type, const char *text, size_t len)
{
    struct arena scratch;
    struct raw_value raw = {.kind = RAW_TEXT, .data = text, .len = len};
    struct value checked;
    char err[256];
    arena_init(&scratch);
    int fits = value_check(type, 0, &raw, &scratch, &checked, err, sizeof(err)) == 0;
    arena_free(&scratch);
    return fits;
}

int default_fits(const struct default_expr *def, const struct sql_type *type)
{
    enum { GUID_TEXT_LEN = 36 };
    switch (def->kind) {
    case DEF_NULL:
        return 1;
    case DEF_NUMBER: {
        int plus = def->text[0] == '+';   /* the value grammar has no '+' */
        return numeric_kind(type->kind) &&
               literal_fits(type, def->text + plus, def->len - (size_t)plus);
    }
    case DEF_STRING:
        return (sqltype_is_string(type->kind) || sqltype_is_temporal(type->kind) ||
                type->kind == SQL_UNIQUEIDENTIFIER) &&
               literal_fits(type, def->text, def->len);
    case DEF_BINARY:
        return sqltype_is_binary(type->kind) && value_binary_fits(type, (def->len + 1) / 2);
    case DEF_FUNCTION:
        if (def->function != FN_NEWID && def->function != FN_NEWSEQUENTIALID)
            return sqltype_is_temporal(type->kind) || sqltype_is_string(type->kind);
        return type->kind == SQL_UNIQUEIDENTIFIER ||
               (sqltype_is_string(type->kind) &&
                (type->length == SQL_LEN_MAX || type->length == 0 ||
                 type->length >= GUID_TEXT_LEN));
    }
    return 0;
}
