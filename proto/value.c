/* proto/value: value_check, the value rules of protocol section 5: which of <V>, <B>, <N/>
 * a column takes, each type's grammar and limits, and the storage-neutral struct value. */
#include "proto/value.h"

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/schema.h"
#include "proto/temporal.h"

#define REAL_LIMIT 3.40e38   /* protocol 5: real within +-3.40E+38 */

/* The money types hold an int64 count of 1/10000 units. */
#define MONEY_MAGNITUDE_MAX UINT64_C(9223372036854775807)
#define SMALLMONEY_MAGNITUDE_MAX UINT64_C(2147483647)

static int does_not_fit(const struct sql_type *type, const struct raw_value *raw, char *err,
                        size_t errlen)
{
    char quoted[VALUE_QUOTE_MAX], type_text[SQLTYPE_TEXT_MAX];
    utf8_shorten(raw->data, raw->len, VALUE_QUOTE_CHARS, quoted, sizeof(quoted));
    sqltype_normal(type, type_text, sizeof(type_text));
    snprintf(err, errlen, "value %s does not fit %s", quoted, type_text);
    return -1;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (!isdigit((unsigned char)s[k]))
            return 0;
    return 1;
}

/* -?[0-9]+ within [min, max]; no overflow on the way. */
static int parse_integer(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    int negative = len > 0 && s[0] == '-';
    s += negative;
    len -= (size_t)negative;
    if (!all_digits(s, len))
        return -1;
    uint64_t limit = !negative ? (uint64_t)max : min < 0 ? (uint64_t)(-(min + 1)) + 1 : 0;
    uint64_t magnitude = 0;
    for (size_t k = 0; k < len; k++) {
        unsigned digit = (unsigned)(s[k] - '0');
        if (digit > limit || magnitude > (limit - digit) / 10)
            return -1;
        magnitude = magnitude * 10 + digit;
    }
    if (!negative)
        *out = (int64_t)magnitude;
    else
        *out = magnitude == 0 ? 0 : -(int64_t)(magnitude - 1) - 1;
    return 0;
}

int value_parse_bool(const char *s, size_t len)
{
    if ((len == 1 && s[0] == '1') || (len == 4 && strncasecmp(s, "true", 4) == 0))
        return 1;
    if ((len == 1 && s[0] == '0') || (len == 5 && strncasecmp(s, "false", 5) == 0))
        return 0;
    return -1;
}

/* -?[0-9]+(\.[0-9]+)?: at most precision-scale digits before the point (leading zeros not
 * counted), at most scale after it (more only if zeros). The money types also hold their
 * range: magnitude_max is the largest count of 10^-scale units (0: no range beyond digits). */
static int decimal_fits(const char *s, size_t len, int precision, int scale,
                        uint64_t magnitude_max)
{
    int negative = len > 0 && s[0] == '-';
    const char *digits = s + negative;
    const char *end = s + len;
    const char *point = memchr(digits, '.', (size_t)(end - digits));
    const char *int_end = point ? point : end;
    if (!all_digits(digits, (size_t)(int_end - digits)))
        return 0;
    if (point && !all_digits(point + 1, (size_t)(end - point - 1)))
        return 0;
    while (digits < int_end - 1 && *digits == '0')
        digits++;
    size_t int_digits = *digits == '0' && digits == int_end - 1 ? 0 : (size_t)(int_end - digits);
    size_t frac_digits = point ? (size_t)(end - point - 1) : 0;
    while (frac_digits > 0 && point[frac_digits] == '0')
        frac_digits--;
    if (int_digits > (size_t)(precision - scale) || frac_digits > (size_t)scale)
        return 0;
    if (magnitude_max == 0)
        return 1;
    /* Digits fit 19 decimal places (money 15+4), so the count fits in uint64. */
    uint64_t magnitude = 0;
    for (const char *p = digits; p < int_end; p++)
        magnitude = magnitude * 10 + (uint64_t)(*p - '0');
    for (size_t k = 1; k <= (size_t)scale; k++)
        magnitude = magnitude * 10 + (k <= frac_digits ? (uint64_t)(point[k] - '0') : 0);
    return magnitude <= magnitude_max + (uint64_t)negative;
}

/* -?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? exactly; returns the end of the match. */
static const char *float_grammar_end(const char *s, const char *end)
{
    const char *p = s + (s < end && *s == '-');
    size_t digits = 0;
    for (; p < end && isdigit((unsigned char)*p); p++)
        digits++;
    if (p < end && *p == '.')
        for (p++; p < end && isdigit((unsigned char)*p); p++)
            digits++;
    if (digits == 0)
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !isdigit((unsigned char)*p))
            return NULL;
        while (p < end && isdigit((unsigned char)*p))
            p++;
    }
    return p;
}

/* strtod in the "C" locale, whatever the process's locale is. */
static double c_strtod(const char *text)
{
    static locale_t c_locale;
    if (!c_locale)
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale ? strtod_l(text, NULL, c_locale) : strtod(text, NULL);
}

static int parse_float(const char *s, size_t len, int is_real, struct arena *arena, double *out)
{
    if (float_grammar_end(s, s + len) != s + len)
        return -1;
    /* strtod needs the text NUL-terminated: a copy on the stack, in the arena only if long. */
    char local[64];
    const char *text;
    if (len < sizeof(local)) {
        memcpy(local, s, len);
        local[len] = '\0';
        text = local;
    } else {
        text = arena_strndup(arena, s, len);
    }
    double d = c_strtod(text);
    if (!isfinite(d) || (is_real && fabs(d) > REAL_LIMIT))
        return -1;
    *out = d;
    return 0;
}

/* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex in any case. */
static int guid_fits(const char *s, size_t len)
{
    if (len != 36)
        return 0;
    for (size_t k = 0; k < len; k++) {
        int hyphen_here = k == 8 || k == 13 || k == 18 || k == 23;
        if (hyphen_here ? s[k] != '-' : !isxdigit((unsigned char)s[k]))
            return 0;
    }
    return 1;
}

static int string_fits(const struct sql_type *type, const char *s, size_t len)
{
    if (type->length == SQL_LEN_MAX)
        return 1;
    switch (type->kind) {
    case SQL_CHAR:
    case SQL_VARCHAR:
        return len <= (size_t)type->length;
    case SQL_NCHAR:
    case SQL_NVARCHAR:
        /* UTF-8 never takes fewer bytes than UTF-16 code units: short texts need no count. */
        return len <= (size_t)type->length || utf8_utf16_units(s, len) <= type->length;
    default:
        return 1;   /* text, ntext, xml */
    }
}

int value_binary_fits(const struct sql_type *type, size_t len)
{
    if (type->kind == SQL_TIMESTAMP)
        return len == 8;
    if (type->kind == SQL_IMAGE || type->length == SQL_LEN_MAX)
        return 1;
    return len <= (size_t)type->length;
}

/* The rules for a value given as characters (from <V>, or decoded from <B> for a string). */
static int check_text(const struct sql_type *type, const struct raw_value *raw, const char *s,
                      size_t len, struct arena *arena, struct value *out, char *err,
                      size_t errlen)
{
    char type_text[SQLTYPE_TEXT_MAX];
    out->text = s;
    out->len = len;
    if (sqltype_is_string(type->kind)) {
        out->cls = VAL_TEXT;
        return string_fits(type, s, len) ? 0 : does_not_fit(type, raw, err, errlen);
    }
    if (len == 0) {
        sqltype_normal(type, type_text, sizeof(type_text));
        snprintf(err, errlen, "empty value for type %s", type_text);
        return -1;
    }
    int fits;
    switch (type->kind) {
    case SQL_BIGINT:
        out->cls = VAL_INT;
        fits = parse_integer(s, len, INT64_MIN, INT64_MAX, &out->i) == 0;
        break;
    case SQL_INT:
        out->cls = VAL_INT;
        fits = parse_integer(s, len, INT32_MIN, INT32_MAX, &out->i) == 0;
        break;
    case SQL_SMALLINT:
        out->cls = VAL_INT;
        fits = parse_integer(s, len, INT16_MIN, INT16_MAX, &out->i) == 0;
        break;
    case SQL_TINYINT:
        out->cls = VAL_INT;
        fits = parse_integer(s, len, 0, UINT8_MAX, &out->i) == 0;
        break;
    case SQL_BIT:
        out->cls = VAL_INT;
        out->i = value_parse_bool(s, len);
        fits = out->i >= 0;
        break;
    case SQL_DECIMAL:
    case SQL_NUMERIC:
        out->cls = VAL_DECIMAL;
        fits = decimal_fits(s, len, type->precision, type->scale, 0);
        break;
    case SQL_MONEY:
    case SQL_SMALLMONEY:
        out->cls = VAL_DECIMAL;
        fits = decimal_fits(s, len, type->precision, type->scale,
                            type->kind == SQL_MONEY ? MONEY_MAGNITUDE_MAX
                                                    : SMALLMONEY_MAGNITUDE_MAX);
        break;
    case SQL_FLOAT:
    case SQL_REAL:
        out->cls = VAL_REAL;
        fits = parse_float(s, len, type->kind == SQL_REAL, arena, &out->d) == 0;
        break;
    case SQL_UNIQUEIDENTIFIER:
        out->cls = VAL_TEXT;
        fits = guid_fits(s, len);
        break;
    default:
        out->cls = VAL_DATETIME;
        fits = sqltype_is_temporal(type->kind) && temporal_fits(type, s, len);
        break;
    }
    return fits ? 0 : does_not_fit(type, raw, err, errlen);
}

size_t value_compact_text(const struct sql_type *type, const char *text, size_t len, char *out)
{
    enum sql_kind kind = type->kind;
    int decimal = kind == SQL_DECIMAL || kind == SQL_NUMERIC || kind == SQL_MONEY ||
                  kind == SQL_SMALLMONEY;
    size_t keep = kind == SQL_DATETIME ? 3 : kind == SQL_SMALLDATETIME ? 0 : (size_t)type->scale;
    size_t n = 0, i = 0;
    if (decimal) {
        if (i < len && text[i] == '-')
            out[n++] = text[i++];
        while (i + 1 < len && text[i] == '0' && text[i + 1] != '.')
            i++;
    }
    while (i < len && n < VALUE_COMPACT_MAX - 1) {
        if (text[i] != '.') {
            out[n++] = text[i++];
            continue;
        }
        size_t start = ++i;
        while (i < len && isdigit((unsigned char)text[i]))
            i++;
        size_t take = i - start < keep ? i - start : keep;
        if (take > 0 && n + 1 + take < VALUE_COMPACT_MAX) {
            out[n++] = '.';
            memcpy(out + n, text + start, take);
            n += take;
        }
    }
    out[n] = '\0';
    return n;
}

int value_check(const struct sql_type *type, int nullable, const struct raw_value *raw,
                struct arena *arena, struct value *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->cls = VAL_NULL;
    if (raw->kind == RAW_NULL) {
        if (nullable)
            return 0;
        snprintf(err, errlen, "NULL in NOT NULL column");
        return -1;
    }
    int binary = sqltype_is_binary(type->kind);
    if (raw->kind == RAW_TEXT) {
        if (binary) {
            snprintf(err, errlen, "binary value must be sent as <B>");
            return -1;
        }
        if (!raw->utf8_checked && !utf8_valid(raw->data, raw->len)) {
            snprintf(err, errlen, "invalid UTF-8");
            return -1;
        }
        return check_text(type, raw, raw->data, raw->len, arena, out, err, errlen);
    }
    if (!binary && !sqltype_is_string(type->kind)) {
        char type_text[SQLTYPE_TEXT_MAX];
        sqltype_normal(type, type_text, sizeof(type_text));
        snprintf(err, errlen, "<B> not allowed for type %s", type_text);
        return -1;
    }
    unsigned char *bytes;
    size_t len;
    if (base64_decode(raw->data, raw->len, arena, &bytes, &len)) {
        snprintf(err, errlen, "invalid base64");
        return -1;
    }
    if (binary) {
        out->cls = VAL_BINARY;
        out->text = (const char *)bytes;
        out->len = len;
        return value_binary_fits(type, len) ? 0 : does_not_fit(type, raw, err, errlen);
    }
    if (!utf8_valid((const char *)bytes, len)) {
        snprintf(err, errlen, "invalid UTF-8");
        return -1;
    }
    return check_text(type, raw, (const char *)bytes, len, arena, out, err, errlen);
}
