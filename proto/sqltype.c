/* proto/sqltype: SQL Server type names as a sender writes them (protocol 4.2): parsing with
 * SQL Server's limits, the canonical spelling, and the type families the value rules use. */
#include "proto/schema.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The parameters a type name takes. */
enum type_params {
    PARAMS_NONE,        /* bare only */
    PARAMS_DECIMAL,     /* (p) or (p,s) */
    PARAMS_FLOAT,       /* (n), 1-53 */
    PARAMS_FRACTION,    /* (n), 0-7, default 7 */
    PARAMS_LENGTH       /* (n) within 1-max_length, or (max) where allowed; default 1 */
};

struct type_spec {
    const char *name;
    enum sql_kind kind;
    enum type_params params;
    int max_length;     /* PARAMS_LENGTH */
    int allows_max;     /* PARAMS_LENGTH */
};

static const struct type_spec type_specs[] = {
    {"bigint", SQL_BIGINT, PARAMS_NONE, 0, 0},
    {"int", SQL_INT, PARAMS_NONE, 0, 0},
    {"smallint", SQL_SMALLINT, PARAMS_NONE, 0, 0},
    {"tinyint", SQL_TINYINT, PARAMS_NONE, 0, 0},
    {"bit", SQL_BIT, PARAMS_NONE, 0, 0},
    {"decimal", SQL_DECIMAL, PARAMS_DECIMAL, 0, 0},
    {"numeric", SQL_NUMERIC, PARAMS_DECIMAL, 0, 0},
    {"money", SQL_MONEY, PARAMS_NONE, 0, 0},
    {"smallmoney", SQL_SMALLMONEY, PARAMS_NONE, 0, 0},
    {"float", SQL_FLOAT, PARAMS_FLOAT, 0, 0},
    {"real", SQL_REAL, PARAMS_NONE, 0, 0},
    {"date", SQL_DATE, PARAMS_NONE, 0, 0},
    {"time", SQL_TIME, PARAMS_FRACTION, 0, 0},
    {"datetime", SQL_DATETIME, PARAMS_NONE, 0, 0},
    {"datetime2", SQL_DATETIME2, PARAMS_FRACTION, 0, 0},
    {"smalldatetime", SQL_SMALLDATETIME, PARAMS_NONE, 0, 0},
    {"datetimeoffset", SQL_DATETIMEOFFSET, PARAMS_FRACTION, 0, 0},
    {"char", SQL_CHAR, PARAMS_LENGTH, 8000, 0},
    {"varchar", SQL_VARCHAR, PARAMS_LENGTH, 8000, 1},
    {"nchar", SQL_NCHAR, PARAMS_LENGTH, 4000, 0},
    {"nvarchar", SQL_NVARCHAR, PARAMS_LENGTH, 4000, 1},
    {"text", SQL_TEXT, PARAMS_NONE, 0, 0},
    {"ntext", SQL_NTEXT, PARAMS_NONE, 0, 0},
    {"binary", SQL_BINARY, PARAMS_LENGTH, 8000, 0},
    {"varbinary", SQL_VARBINARY, PARAMS_LENGTH, 8000, 1},
    {"image", SQL_IMAGE, PARAMS_NONE, 0, 0},
    {"uniqueidentifier", SQL_UNIQUEIDENTIFIER, PARAMS_NONE, 0, 0},
    {"xml", SQL_XML, PARAMS_NONE, 0, 0},
    {"timestamp", SQL_TIMESTAMP, PARAMS_NONE, 0, 0},
    {"rowversion", SQL_TIMESTAMP, PARAMS_NONE, 0, 0},
};

enum {
    DECIMAL_MAX_PRECISION = 38, DECIMAL_DEFAULT_PRECISION = 18,
    FLOAT_MAX_BITS = 53, REAL_MAX_BITS = 24, FRACTION_MAX = 7,
    MONEY_PRECISION = 19, SMALLMONEY_PRECISION = 10, MONEY_SCALE = 4,
    NUMBER_SATURATE = 1000000000, NAME_MAX_LEN = 32, NUMBER_QUOTE_MAX = 20
};

/* One parameter inside the parentheses: digits (value saturated, text kept for messages) or
 * the word max. */
struct type_param {
    const char *text;
    size_t len;
    int is_max;
    int value;
};

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

static const char *parse_param(const char *p, struct type_param *param)
{
    p = skip_space(p);
    param->text = p;
    param->is_max = 0;
    param->value = 0;
    if (strncasecmp(p, "max", 3) == 0 && !isalnum((unsigned char)p[3])) {
        param->is_max = 1;
        p += 3;
    } else if (isdigit((unsigned char)*p)) {
        while (isdigit((unsigned char)*p)) {
            param->value = param->value > NUMBER_SATURATE / 10 ? NUMBER_SATURATE
                                                                : param->value * 10 + (*p - '0');
            p++;
        }
    } else {
        return NULL;
    }
    param->len = (size_t)(p - param->text);
    return skip_space(p);
}

static int out_of_range(char *err, size_t errlen, const char *name, const char *what,
                        const struct type_param *param, int lo, int hi)
{
    int quoted = param->len > NUMBER_QUOTE_MAX ? NUMBER_QUOTE_MAX : (int)param->len;
    snprintf(err, errlen, "%s %s %.*s out of range %d-%d", name, what, quoted, param->text, lo,
             hi);
    return -1;
}

/* Applies the parameters (nparams 0-2) to a type of spec's family. */
static int apply_params(const struct type_spec *spec, const struct type_param *params,
                        int nparams, struct sql_type *out, char *err, size_t errlen)
{
    int expected_max = spec->params == PARAMS_NONE ? 0 : spec->params == PARAMS_DECIMAL ? 2 : 1;
    if (nparams > expected_max) {
        snprintf(err, errlen, "%s takes %s", spec->name,
                 expected_max == 0 ? "no parameters" : "one parameter");
        return -1;
    }
    for (int k = 0; k < nparams; k++)
        if (params[k].is_max && spec->params != PARAMS_LENGTH) {
            snprintf(err, errlen, "max length not allowed for %s", spec->name);
            return -1;
        }
    switch (spec->params) {
    case PARAMS_NONE:
        if (out->kind == SQL_MONEY || out->kind == SQL_SMALLMONEY) {
            out->precision = out->kind == SQL_MONEY ? MONEY_PRECISION : SMALLMONEY_PRECISION;
            out->scale = MONEY_SCALE;
        } else if (out->kind == SQL_REAL) {
            out->precision = REAL_MAX_BITS;
        }
        return 0;
    case PARAMS_DECIMAL:
        out->precision = nparams > 0 ? params[0].value : DECIMAL_DEFAULT_PRECISION;
        out->scale = nparams > 1 ? params[1].value : 0;
        if (out->precision < 1 || out->precision > DECIMAL_MAX_PRECISION)
            return out_of_range(err, errlen, spec->name, "precision", &params[0], 1,
                                DECIMAL_MAX_PRECISION);
        if (out->scale > out->precision)
            return out_of_range(err, errlen, spec->name, "scale", &params[1], 0, out->precision);
        return 0;
    case PARAMS_FLOAT:
        out->precision = nparams > 0 ? params[0].value : FLOAT_MAX_BITS;
        if (out->precision < 1 || out->precision > FLOAT_MAX_BITS)
            return out_of_range(err, errlen, spec->name, "precision", &params[0], 1,
                                FLOAT_MAX_BITS);
        if (out->precision <= REAL_MAX_BITS) {
            out->kind = SQL_REAL;
            out->precision = REAL_MAX_BITS;
        } else {
            out->precision = FLOAT_MAX_BITS;
        }
        return 0;
    case PARAMS_FRACTION:
        out->scale = nparams > 0 ? params[0].value : FRACTION_MAX;
        if (out->scale > FRACTION_MAX)
            return out_of_range(err, errlen, spec->name, "precision", &params[0], 0,
                                FRACTION_MAX);
        return 0;
    case PARAMS_LENGTH:
        if (nparams > 0 && params[0].is_max) {
            if (!spec->allows_max) {
                snprintf(err, errlen, "max length not allowed for %s", spec->name);
                return -1;
            }
            out->length = SQL_LEN_MAX;
            return 0;
        }
        out->length = nparams > 0 ? params[0].value : 1;
        if (out->length < 1 || out->length > spec->max_length)
            return out_of_range(err, errlen, spec->name, "length", &params[0], 1,
                                spec->max_length);
        return 0;
    }
    return 0;
}

static const struct type_spec *find_spec(const char *name, size_t len)
{
    for (size_t k = 0; k < sizeof(type_specs) / sizeof(type_specs[0]); k++)
        if (strlen(type_specs[k].name) == len && strncasecmp(type_specs[k].name, name, len) == 0)
            return &type_specs[k];
    return NULL;
}

int sqltype_parse(const char *text, struct sql_type *out, char *err, size_t errlen)
{
    const char *p = skip_space(text ? text : "");
    const char *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t name_len = (size_t)(p - name);
    if (name_len == 0) {
        snprintf(err, errlen, "missing type");
        return -1;
    }
    const struct type_spec *spec = find_spec(name, name_len);
    if (!spec) {
        char lower[NAME_MAX_LEN + 1];
        size_t shown = name_len < NAME_MAX_LEN ? name_len : NAME_MAX_LEN;
        for (size_t k = 0; k < shown; k++)
            lower[k] = (char)tolower((unsigned char)name[k]);
        lower[shown] = '\0';
        snprintf(err, errlen, "unsupported type %s%s", lower, shown < name_len ? "..." : "");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->kind = spec->kind;
    struct type_param params[2];
    int nparams = 0;
    p = skip_space(p);
    if (*p == '(') {
        p = parse_param(p + 1, &params[nparams++]);
        if (p && *p == ',')
            p = parse_param(p + 1, &params[nparams++]);
        if (!p || *p != ')') {
            snprintf(err, errlen, "malformed parameters of type %s", spec->name);
            return -1;
        }
        p = skip_space(p + 1);
    }
    if (*p != '\0') {
        snprintf(err, errlen, "unexpected text after type %s", spec->name);
        return -1;
    }
    return apply_params(spec, params, nparams, out, err, errlen);
}

static const char *kind_name(enum sql_kind kind)
{
    for (size_t k = 0; k < sizeof(type_specs) / sizeof(type_specs[0]); k++)
        if (type_specs[k].kind == kind)
            return type_specs[k].name;   /* timestamp precedes rowversion */
    return "?";
}

void sqltype_normal(const struct sql_type *type, char *out, size_t outlen)
{
    const char *name = kind_name(type->kind);
    switch (type->kind) {
    case SQL_DECIMAL:
    case SQL_NUMERIC:
        snprintf(out, outlen, "%s(%d,%d)", name, type->precision, type->scale);
        return;
    case SQL_TIME:
    case SQL_DATETIME2:
    case SQL_DATETIMEOFFSET:
        snprintf(out, outlen, "%s(%d)", name, type->scale);
        return;
    case SQL_CHAR:
    case SQL_VARCHAR:
    case SQL_NCHAR:
    case SQL_NVARCHAR:
    case SQL_BINARY:
    case SQL_VARBINARY:
        if (type->length == SQL_LEN_MAX)
            snprintf(out, outlen, "%s(max)", name);
        else
            snprintf(out, outlen, "%s(%d)", name, type->length);
        return;
    default:
        snprintf(out, outlen, "%s", name);
        return;
    }
}

void sqltype_canonical_text(const char *as_sent, const struct sql_type *type, struct buf *out)
{
    /* Without parameters the spec's rules give the normal spelling: the defaults filled in
     * (decimal(18,0), char(1), time(7)), rowversion as timestamp; float(n) is real or float. */
    if (!strchr(as_sent, '(') || type->kind == SQL_FLOAT || type->kind == SQL_REAL) {
        char normal[SQLTYPE_TEXT_MAX];
        sqltype_normal(type, normal, sizeof(normal));
        buf_puts(out, normal);
        return;
    }
    int decimal = type->kind == SQL_DECIMAL || type->kind == SQL_NUMERIC;
    int scale = 0;
    for (const char *p = as_sent; *p; p++) {
        if (isspace((unsigned char)*p))
            continue;
        scale |= *p == ',';
        if (*p == ')' && decimal && !scale)
            buf_puts(out, ",0");   /* (p) -> (p,0) */
        buf_putc(out, (char)tolower((unsigned char)*p));
    }
}

int sqltype_is_string(enum sql_kind kind)
{
    return kind == SQL_CHAR || kind == SQL_VARCHAR || kind == SQL_NCHAR ||
           kind == SQL_NVARCHAR || kind == SQL_TEXT || kind == SQL_NTEXT || kind == SQL_XML;
}

int sqltype_is_binary(enum sql_kind kind)
{
    return kind == SQL_BINARY || kind == SQL_VARBINARY || kind == SQL_IMAGE ||
           kind == SQL_TIMESTAMP;
}

int sqltype_is_temporal(enum sql_kind kind)
{
    return kind == SQL_DATE || kind == SQL_TIME || kind == SQL_DATETIME ||
           kind == SQL_DATETIME2 || kind == SQL_SMALLDATETIME || kind == SQL_DATETIMEOFFSET;
}
