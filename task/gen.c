/* task/gen: `somirror-task gen`, a CRM-like source database in SQLite. The SQL Server schema
 * lives in the side table _somirror_columns (the SQLite columns only hold the values exactly:
 * decimals and dates as text); values cover every type of protocol section 5 and the awkward
 * forms (extremes, unicode, XML-special and control characters, NULL, empty). Blocked tables
 * are filled too: they must never leave the source. Deterministic for a seed. */
#include "task/task.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "proto/schema.h"

struct gen_column {
    const char *name;
    const char *type;        /* SQL Server type name */
    int nullable;
    const char *default_text;
};

struct gen_table {
    const char *name;
    size_t npk;              /* the first npk columns form the key */
    long fixed_rows;
    long rows_per_100_contacts;
    const struct gen_column *columns;
    size_t ncolumns;
};

#define COLS(a) a, sizeof a / sizeof a[0]

static const struct gen_column contact_cols[] = {
    {"contact_id", "int", 0, NULL},
    {"name", "nvarchar(220)", 1, "(N'')"},
    {"department", "nvarchar(220)", 1, NULL},
    {"orgnr", "varchar(20)", 1, NULL},
    {"country_id", "int", 0, "((0))"},
    {"business_idx", "smallint", 1, NULL},
    {"kind", "tinyint", 0, "((0))"},
    {"active", "bit", 0, "((1))"},
    {"registered", "datetime", 0, "(getutcdate())"},
    {"updated", "datetime2(7)", 1, NULL},
    {"revenue", "decimal(28,10)", 1, NULL},
    {"credit_limit", "money", 1, "((0))"},
    {"discount", "smallmoney", 1, NULL},
    {"rating", "real", 1, NULL},
    {"score", "float", 1, NULL},
    {"founded", "date", 1, NULL},
    {"last_seen", "datetimeoffset(7)", 1, NULL},
    {"guid", "uniqueidentifier", 0, "(newid())"},
    {"big_number", "bigint", 1, NULL},
};
static const struct gen_column person_cols[] = {
    {"person_id", "int", 0, NULL},
    {"contact_id", "int", 0, "((0))"},
    {"firstname", "nvarchar(50)", 1, NULL},
    {"lastname", "nvarchar(50)", 1, "(N'')"},
    {"title", "nchar(10)", 1, NULL},
    {"birthdate", "date", 1, NULL},
    {"phone", "varchar(32)", 1, NULL},
    {"email", "nvarchar(255)", 1, NULL},
    {"rank", "tinyint", 1, NULL},
    {"ejuser_id", "bigint", 1, NULL},
    {"photo", "varbinary(max)", 1, NULL},
    {"registered", "smalldatetime", 0, "(getdate())"},
    {"salary", "numeric(12,2)", 1, NULL},
    {"note", "ntext", 1, NULL},
};
static const struct gen_column appointment_cols[] = {
    {"appointment_id", "int", 0, NULL},
    {"contact_id", "int", 1, NULL},
    {"person_id", "int", 1, NULL},
    {"do_by", "datetime", 0, "(getdate())"},
    {"end_date", "smalldatetime", 1, NULL},
    {"start_time", "time(3)", 1, NULL},
    {"duration", "time(0)", 1, NULL},
    {"alarm_time", "time", 1, NULL},
    {"status", "smallint", 0, "((0))"},
    {"text", "nvarchar(max)", 1, NULL},
    {"created", "datetimeoffset(3)", 1, "(sysdatetimeoffset())"},
    {"location", "nvarchar(254)", 1, NULL},
};
static const struct gen_column sale_cols[] = {
    {"sale_id", "int", 0, NULL},
    {"contact_id", "int", 1, NULL},
    {"amount", "decimal(18,4)", 0, "((0))"},
    {"probability", "tinyint", 1, NULL},
    {"saledate", "date", 1, NULL},
    {"currency", "char(3)", 1, "('NOK')"},
    {"heading", "nvarchar(255)", 1, NULL},
    {"earning", "numeric(38,0)", 1, NULL},
    {"earning_percent", "numeric(5,2)", 1, NULL},
    {"cost", "money", 1, NULL},
    {"created", "datetime2(3)", 1, NULL},
    {"done", "bit", 0, "((0))"},
};
static const struct gen_column project_cols[] = {
    {"project_id", "int", 0, NULL},
    {"name", "nvarchar(220)", 1, NULL},
    {"project_number", "varchar(50)", 1, NULL},
    {"done", "bit", 1, NULL},
    {"end_date", "datetime2(3)", 1, NULL},
    {"description", "ntext", 1, NULL},
    {"budget", "money", 1, NULL},
    {"created", "datetime", 1, "(sysdatetime())"},
};
static const struct gen_column document_cols[] = {
    {"document_id", "int", 0, NULL},
    {"contact_id", "int", 1, NULL},
    {"header", "nvarchar(255)", 1, NULL},
    {"name", "varchar(255)", 1, NULL},
    {"body", "xml", 1, NULL},
    {"checksum", "binary(16)", 1, NULL},
    {"content", "image", 1, NULL},
    {"version_id", "uniqueidentifier", 1, NULL},
    {"preview", "varbinary(64)", 1, "(0x00)"},
    {"created", "datetime", 1, NULL},
    {"legacy_text", "text", 1, NULL},
};
static const struct gen_column text_cols[] = {
    {"text_id", "int", 0, NULL},
    {"text", "nvarchar(max)", 1, NULL},
    {"type", "tinyint", 1, NULL},
    {"legacy", "text", 1, NULL},
    {"language", "char(2)", 1, "('en')"},
};
static const struct gen_column udcontactsmall_cols[] = {
    {"udcontactsmall_id", "int", 0, NULL},
    {"string01", "nvarchar(40)", 1, NULL},
    {"string02", "varchar(40)", 1, NULL},
    {"long01", "int", 1, NULL},
    {"long02", "bigint", 1, NULL},
    {"double01", "float(53)", 1, NULL},
    {"double02", "float(24)", 1, NULL},
    {"date01", "datetime", 1, NULL},
    {"date02", "date", 1, NULL},
    {"char01", "nchar(10)", 1, NULL},
    {"bin01", "binary(8)", 1, NULL},
    {"dec01", "decimal(38,19)", 1, NULL},
};
static const struct gen_column associate_cols[] = {
    {"associate_id", "int", 0, NULL},
    {"person_id", "int", 1, NULL},
    {"name", "nvarchar(50)", 1, NULL},
    {"usergroup_id", "int", 1, NULL},
    {"type", "smallint", 1, NULL},
    {"deleted", "tinyint", 0, "((0))"},
    {"ejuser_id", "bigint", 1, NULL},
    {"signature", "varbinary(8000)", 1, NULL},
    {"rowver", "rowversion", 0, NULL},
    {"last_login", "datetime2(0)", 1, NULL},
};
static const struct gen_column category_cols[] = {
    {"category_id", "int", 0, NULL},
    {"name", "nvarchar(50)", 1, NULL},
    {"tooltip", "nvarchar(255)", 1, NULL},
    {"rank", "smallint", 1, NULL},
    {"deleted", "tinyint", 0, "((0))"},
    {"code", "char(4)", 1, NULL},
    {"color", "binary(3)", 1, NULL},
};
static const struct gen_column country_cols[] = {
    {"country_id", "int", 0, NULL},
    {"name", "nvarchar(50)", 1, NULL},
    {"iso2", "char(2)", 1, NULL},
    {"iso3", "nchar(3)", 1, NULL},
    {"domain", "varchar(8)", 1, NULL},
    {"currency_rate", "decimal(19,6)", 1, "((1.0))"},
    {"rank", "smallint", 1, NULL},
    {"flag", "varbinary(max)", 1, NULL},
};
static const struct gen_column contact_category_cols[] = {
    {"contact_id", "int", 0, NULL},
    {"category_id", "int", 0, NULL},
    {"assigned", "datetime", 1, "(getdate())"},
    {"weight", "decimal(5,2)", 1, NULL},
    {"note", "nvarchar(100)", 1, NULL},
};
static const struct gen_column project_member_cols[] = {
    {"project_id", "int", 0, NULL},
    {"person_id", "int", 0, NULL},
    {"role", "nvarchar(50)", 1, NULL},
    {"joined", "date", 1, NULL},
    {"comment", "nvarchar(max)", 1, NULL},
    {"hours", "decimal(9,2)", 1, NULL},
};
/* Blocked tables (protocol section 8). */
static const struct gen_column credentials_cols[] = {
    {"credentials_id", "int", 0, NULL},
    {"associate_id", "int", 1, NULL},
    {"type", "varchar(20)", 1, NULL},
    {"secret", "nvarchar(255)", 1, NULL},
    {"changed", "datetime", 1, NULL},
};
static const struct gen_column userpreference_cols[] = {
    {"userpreference_id", "int", 0, NULL},
    {"owner_id", "int", 1, NULL},
    {"prefsection", "nvarchar(64)", 1, NULL},
    {"prefkey", "nvarchar(64)", 1, NULL},
    {"prefvalue", "nvarchar(max)", 1, NULL},
};
static const struct gen_column winpossize_cols[] = {
    {"winpossize_id", "int", 0, NULL},
    {"associate_id", "int", 1, NULL},
    {"name", "varchar(64)", 1, NULL},
    {"x", "int", 1, NULL},
    {"y", "int", 1, NULL},
    {"width", "int", 1, NULL},
    {"height", "int", 1, NULL},
};

#define BLOCKED_TABLES 3
static const struct gen_table gen_tables[] = {
    {"contact", 1, 0, 100, COLS(contact_cols)},
    {"person", 1, 0, 100, COLS(person_cols)},
    {"appointment", 1, 0, 100, COLS(appointment_cols)},
    {"sale", 1, 0, 50, COLS(sale_cols)},
    {"project", 1, 1, 10, COLS(project_cols)},
    {"document", 1, 0, 50, COLS(document_cols)},
    {"text", 1, 0, 50, COLS(text_cols)},
    {"udcontactsmall", 1, 0, 25, COLS(udcontactsmall_cols)},
    {"associate", 1, 5, 5, COLS(associate_cols)},
    {"category", 1, 20, 0, COLS(category_cols)},
    {"country", 1, 30, 0, COLS(country_cols)},
    {"contact_category", 2, 0, 50, COLS(contact_category_cols)},
    {"project_member", 2, 0, 25, COLS(project_member_cols)},
    {"credentials", 1, 10, 0, COLS(credentials_cols)},
    {"userpreference", 1, 20, 0, COLS(userpreference_cols)},
    {"winpossize", 1, 10, 0, COLS(winpossize_cols)},
};
#define NTABLES (sizeof gen_tables / sizeof gen_tables[0])
/* Rows of a composite-key table: (row / COMPOSITE_FANOUT + 1, row % COMPOSITE_FANOUT + 1). */
#define COMPOSITE_FANOUT 20

/* ---- values ---- */

static const char *const words[] = {
    "Acme", "Sons", "Nordic", "Software", "Ærøskøbing", "Müller", "Straße", "東京", "Ωmega",
    "café", "naïve", "São", "Paulo", "Zürich", "Łódź", "Kraków", "😀", "🚀", "AS", "GmbH",
    "meeting", "follow-up", "offer", "invoice", "project", "lunch", "call", "demo", "Oslo",
    "<tag>", "a&b", "\"quote\"", "it's", "100%", "#1", "ça", "va", "Привет", "مرحبا", "שלום",
};
#define NWORDS (sizeof words / sizeof words[0])

static const char *const special_texts[] = {
    "",
    "Acme & Sons <Ltd> \"quoted\" 'single' >",
    "Ærøskøbing Müller Straße 東京 😀🚀",
    "ctrl \x01\x02 bell \x07 form feed \x0c end",
    "line one\r\nline two",
    "   ",
    "tab\there, newline\nthere",
    "]]> not a CDATA end",
};
#define NSPECIAL_TEXTS (sizeof special_texts / sizeof special_texts[0])

static const char *const special_xml[] = {
    "<a/>",
    "<doc lang=\"no\"><p>Ærø &amp; 😀</p><p>&lt;escaped&gt;</p></doc>",
};

/* Bytes of the longest prefix of s (len bytes) that fits the column's length limit. */
static size_t fit_text(const struct sql_type *type, const char *s, size_t len)
{
    if (type->length <= 0)
        return len;
    int utf16 = type->kind == SQL_NCHAR || type->kind == SQL_NVARCHAR;
    size_t limit = (size_t)type->length, used = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t seq = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        size_t cost = utf16 ? (seq == 4 ? 2 : 1) : seq;
        if (used + cost > limit)
            break;
        used += cost;
        i += seq;
    }
    return i;
}

static void random_words(struct prng *p, struct buf *out, size_t target_bytes)
{
    while (out->len < target_bytes) {
        if (out->len)
            buf_putc(out, ' ');
        buf_puts(out, words[prng_below(p, NWORDS)]);
    }
}

static void put_digits(struct prng *p, struct buf *out, int n, int first_nonzero)
{
    for (int i = 0; i < n; i++)
        buf_putc(out, (char)('0' + (i == 0 && first_nonzero ? 1 + prng_below(p, 9) : prng_below(p, 10))));
}

static void put_repeated(struct buf *out, char c, int n)
{
    for (int i = 0; i < n; i++)
        buf_putc(out, c);
}

/* decimal(p,s) text: variants 0-3 are the largest, the smallest, zero and the smallest step. */
static void decimal_text(const struct sql_type *type, struct prng *p, uint64_t variant,
                         struct buf *out)
{
    int whole = type->precision - type->scale, scale = type->scale;
    if (type->kind == SQL_MONEY || type->kind == SQL_SMALLMONEY) {
        static const char *const money_special[2][2] = {
            {"922337203685477.5807", "-922337203685477.5808"},
            {"214748.3647", "-214748.3648"}};
        if (variant < 2) {
            buf_puts(out, money_special[type->kind == SQL_SMALLMONEY][variant]);
            return;
        }
        whole = type->kind == SQL_MONEY ? 14 : 5;
    }
    if (variant < 2) {
        if (variant == 1)
            buf_putc(out, '-');
        if (whole)
            put_repeated(out, '9', whole);
        else
            buf_putc(out, '0');
        if (scale) {
            buf_putc(out, '.');
            put_repeated(out, '9', scale);
        }
        return;
    }
    if (variant == 2 || variant == 3) {
        buf_putc(out, '0');
        if (scale) {
            buf_putc(out, '.');
            put_repeated(out, '0', scale - 1);
            buf_putc(out, variant == 3 ? '1' : '0');
        }
        return;
    }
    if (prng_below(p, 4) == 0)
        buf_putc(out, '-');
    int digits = whole ? (int)prng_below(p, (uint64_t)whole) + 1 : 0;
    if (digits)
        put_digits(p, out, digits, digits > 1);
    else
        buf_putc(out, '0');
    if (scale) {
        buf_putc(out, '.');
        put_digits(p, out, scale, 0);
    }
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

static void put_fraction(struct prng *p, struct buf *out, int digits)
{
    if (digits <= 0)
        return;
    buf_putc(out, '.');
    put_digits(p, out, digits, 0);
}

/* Random date/time text of a temporal type; variants 0-2 are fixed extremes. */
static void temporal_text(const struct sql_type *type, struct prng *p, uint64_t variant,
                          struct buf *out)
{
    static const char *const special[][3] = {
        [SQL_DATE] = {"0001-01-01", "9999-12-31", "2000-02-29"},
        [SQL_TIME] = {"00:00:00", "23:59:59", "12:00:00"},
        [SQL_DATETIME] = {"1753-01-01T00:00:00", "9999-12-31T23:59:59.997", "2026-11-26T10:15:00.123"},
        [SQL_SMALLDATETIME] = {"1900-01-01T00:00:00", "2079-06-06T23:59:00", "2000-02-29T12:30:00"},
        [SQL_DATETIME2] = {"0001-01-01T00:00:00", "9999-12-31T23:59:59", "2000-02-29T12:30:45"},
        [SQL_DATETIMEOFFSET] = {"2026-11-26T10:15:00+14:00", "2026-01-01T00:00:00-14:00",
                                "2000-02-29T12:30:45+05:30"},
    };
    enum sql_kind kind = type->kind;
    if (variant < 3) {
        buf_puts(out, special[kind][variant]);
        /* The largest value of a type with fraction digits has all of them. */
        if (variant == 1 && (kind == SQL_TIME || kind == SQL_DATETIME2) && type->scale > 0) {
            buf_putc(out, '.');
            put_repeated(out, '9', type->scale);
        }
        return;
    }
    if (kind != SQL_TIME) {
        int year = kind == SQL_SMALLDATETIME ? (int)prng_range(p, 1900, 2078)
                                             : (int)prng_range(p, 1990, 2035);
        int month = (int)prng_range(p, 1, 12);
        buf_printf(out, "%04d-%02d-%02d", year, month,
                   (int)prng_range(p, 1, days_in_month(year, month)));
        if (kind == SQL_DATE)
            return;
        buf_putc(out, 'T');
    }
    int with_fraction = prng_below(p, 3) != 0;
    buf_printf(out, "%02d:%02d:%02d", (int)prng_below(p, 24), (int)prng_below(p, 60),
               kind == SQL_SMALLDATETIME ? 0 : (int)prng_below(p, 60));
    if (kind == SQL_DATETIME && with_fraction) {
        static const char last_digit[] = {'0', '3', '7'};
        buf_printf(out, ".%02d%c", (int)prng_below(p, 100), last_digit[prng_below(p, 3)]);
    } else if (kind != SQL_SMALLDATETIME && kind != SQL_DATETIME && with_fraction) {
        put_fraction(p, out, (int)prng_range(p, type->scale > 0 ? 1 : 0, type->scale));
    }
    if (kind == SQL_DATETIMEOFFSET) {
        int quarter_hours = (int)prng_range(p, -56, 56);
        int minutes = quarter_hours * 15;
        buf_printf(out, "%c%02d:%02d", minutes < 0 ? '-' : '+', abs(minutes) / 60, abs(minutes) % 60);
    }
}

static void guid_text(struct prng *p, uint64_t variant, struct buf *out)
{
    uint64_t hi = variant == 0 ? 0 : variant == 1 ? UINT64_MAX : prng_next(p);
    uint64_t lo = variant == 0 ? 0 : variant == 1 ? UINT64_MAX : prng_next(p);
    buf_printf(out, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(hi >> 32), (unsigned)(hi >> 16) & 0xFFFF,
               (unsigned)hi & 0xFFFF, (unsigned)(lo >> 48),
               (unsigned long long)(lo & UINT64_C(0xFFFFFFFFFFFF)));
    /* SQL Server writes them in upper case; variant 2 stays lower case. */
    if (variant != 2)
        for (size_t i = out->len - 36; i < out->len; i++)
            out->data[i] = (char)toupper((unsigned char)out->data[i]);
}

static void text_value(const struct sql_type *type, struct prng *p, uint64_t variant,
                       struct buf *out)
{
    if (type->kind == SQL_XML) {
        if (variant < 2) {
            buf_puts(out, special_xml[variant]);
            return;
        }
        buf_printf(out, "<doc n=\"%llu\"><p>", (unsigned long long)prng_below(p, 100000));
        struct buf words_buf = BUF_INIT;
        random_words(p, &words_buf, 20 + prng_below(p, 200));
        buf_put_xml_escaped(out, words_buf.data, words_buf.len);
        buf_free(&words_buf);
        buf_puts(out, "</p></doc>");
        return;
    }
    if (type->kind == SQL_UNIQUEIDENTIFIER) {
        guid_text(p, variant, out);
        return;
    }
    if (variant < NSPECIAL_TEXTS) {
        buf_puts(out, special_texts[variant]);
    } else {
        int unlimited = type->length == SQL_LEN_MAX || type->kind == SQL_TEXT || type->kind == SQL_NTEXT;
        size_t target = unlimited && prng_below(p, 4) == 0 ? 2000 + prng_below(p, 6000)
                                                           : 1 + prng_below(p, 60);
        random_words(p, out, target);
    }
    out->len = fit_text(type, out->data, out->len);
    out->data[out->len] = '\0';
}

static void binary_value(const struct sql_type *type, struct prng *p, uint64_t variant,
                         struct buf *out)
{
    size_t len;
    if (type->kind == SQL_TIMESTAMP)
        len = 8;
    else if (type->kind == SQL_BINARY)
        len = (size_t)type->length;
    else if (type->length > 0)
        len = variant == 1 ? (size_t)type->length : 1 + prng_below(p, (uint64_t)type->length);
    else
        len = variant == 2 ? 0 : (size_t)prng_below(p, 4096);
    for (size_t i = 0; i < len; i++) {
        unsigned char byte = variant == 0 ? 0x00 : variant == 1 ? 0xFF : (unsigned char)prng_next(p);
        buf_append(out, &byte, 1);
    }
}

static double float_value(const struct sql_type *type, struct prng *p, uint64_t variant)
{
    static const double doubles[] = {0.0, -1.7976931348623157e308, 1e308, 2.2250738585072014e-308, 0.1};
    static const float floats[] = {0.0f, -3.0e38f, 3.0e38f, 1.17549435e-38f, 0.1f};
    if (variant < 5)
        return type->kind == SQL_REAL ? (double)floats[variant] : doubles[variant];
    double mantissa = (double)(prng_next(p) >> 11) / (double)(UINT64_C(1) << 53);
    double scale = 1.0;
    for (int e = (int)prng_range(p, -12, 12); e != 0; e += e > 0 ? -1 : 1)
        scale = e > 0 ? scale * 10.0 : scale / 10.0;
    double value = (prng_below(p, 3) == 0 ? -1.0 : 1.0) * mantissa * scale;
    return type->kind == SQL_REAL ? (double)(float)value : value;
}

static int64_t integer_value(const struct sql_type *type, struct prng *p, uint64_t variant)
{
    int64_t lo, hi;
    switch (type->kind) {
    case SQL_BIT: lo = 0; hi = 1; break;
    case SQL_TINYINT: lo = 0; hi = 255; break;
    case SQL_SMALLINT: lo = INT16_MIN; hi = INT16_MAX; break;
    case SQL_INT: lo = INT32_MIN; hi = INT32_MAX; break;
    default: lo = INT64_MIN; hi = INT64_MAX; break;
    }
    if (variant < 3)
        return variant == 0 ? lo : variant == 1 ? hi : 0;
    /* Mostly small numbers, as a CRM has. */
    return prng_below(p, 4) == 0 ? prng_range(p, lo, hi) : prng_range(p, lo > 0 ? lo : 0, hi < 1000 ? hi : 1000);
}

void gen_bind_value(sqlite3_stmt *stmt, int param, const struct column *col, struct prng *p,
                    uint64_t variant)
{
    /* Variant 7 of a nullable column, and 1 in 10 random ones, are NULL. */
    if (col->nullable && (variant == 7 || (variant >= 16 && prng_below(p, 10) == 0))) {
        sqlite3_bind_null(stmt, param);
        return;
    }
    const struct sql_type *type = &col->type;
    struct buf text = BUF_INIT;
    switch (type->kind) {
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT: case SQL_BIT:
        sqlite3_bind_int64(stmt, param, integer_value(type, p, variant));
        return;
    case SQL_FLOAT: case SQL_REAL:
        sqlite3_bind_double(stmt, param, float_value(type, p, variant));
        return;
    case SQL_DECIMAL: case SQL_NUMERIC: case SQL_MONEY: case SQL_SMALLMONEY:
        decimal_text(type, p, variant, &text);
        break;
    case SQL_DATE: case SQL_TIME: case SQL_DATETIME: case SQL_DATETIME2:
    case SQL_SMALLDATETIME: case SQL_DATETIMEOFFSET:
        temporal_text(type, p, variant, &text);
        break;
    case SQL_BINARY: case SQL_VARBINARY: case SQL_IMAGE: case SQL_TIMESTAMP:
        binary_value(type, p, variant, &text);
        sqlite3_bind_blob(stmt, param, text.len ? text.data : "", (int)text.len, SQLITE_TRANSIENT);
        buf_free(&text);
        return;
    default:
        text_value(type, p, variant, &text);
        break;
    }
    sqlite3_bind_text(stmt, param, text.len ? text.data : "", (int)text.len, SQLITE_TRANSIENT);
    buf_free(&text);
}

/* ---- schema and rows ---- */

static int create_schema(sqlite3 *db, char *err, size_t errlen)
{
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "PRAGMA journal_mode = WAL;"
                   "CREATE TABLE _somirror_columns (table_name TEXT NOT NULL, "
                   "column_name TEXT NOT NULL, ordinal INTEGER NOT NULL, sql_type TEXT NOT NULL, "
                   "nullable INTEGER NOT NULL, default_text TEXT, pk_pos INTEGER NOT NULL, "
                   "PRIMARY KEY (table_name, column_name));");
    int rc = sql_exec(db, sql.data, err, errlen);
    sqlite3_stmt *side = rc == 0 ? sql_prepare(db, "INSERT INTO _somirror_columns VALUES "
                                                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7)", err, errlen)
                                 : NULL;
    for (size_t t = 0; side && rc == 0 && t < NTABLES; t++) {
        const struct gen_table *gt = &gen_tables[t];
        buf_reset(&sql);
        buf_puts(&sql, "CREATE TABLE ");
        sql_put_ident(&sql, gt->name);
        buf_puts(&sql, " (");
        for (size_t c = 0; c < gt->ncolumns; c++) {
            const struct gen_column *gc = &gt->columns[c];
            struct sql_type type;
            char type_err[256];
            if (sqltype_parse(gc->type, &type, type_err, sizeof type_err) != 0) {
                snprintf(err, errlen, "%s.%s: %s", gt->name, gc->name, type_err);
                rc = -1;
                break;
            }
            sql_put_ident(&sql, gc->name);
            buf_printf(&sql, " %s%s, ", sql_storage_type(&type), gc->nullable ? "" : " NOT NULL");
            sqlite3_reset(side);
            sqlite3_bind_text(side, 1, gt->name, -1, SQLITE_STATIC);
            sqlite3_bind_text(side, 2, gc->name, -1, SQLITE_STATIC);
            sqlite3_bind_int(side, 3, (int)c + 1);
            sqlite3_bind_text(side, 4, gc->type, -1, SQLITE_STATIC);
            sqlite3_bind_int(side, 5, gc->nullable);
            sqlite3_bind_text(side, 6, gc->default_text, -1, SQLITE_STATIC);
            sqlite3_bind_int(side, 7, c < gt->npk ? (int)c + 1 : 0);
            if (sqlite3_step(side) != SQLITE_DONE) {
                snprintf(err, errlen, "%s", sqlite3_errmsg(db));
                rc = -1;
                break;
            }
        }
        if (rc != 0)
            break;
        buf_puts(&sql, "PRIMARY KEY (");
        for (size_t c = 0; c < gt->npk; c++) {
            if (c)
                buf_puts(&sql, ", ");
            sql_put_ident(&sql, gt->columns[c].name);
        }
        buf_puts(&sql, "))");
        rc = sql_exec(db, sql.data, err, errlen);
    }
    sqlite3_finalize(side);
    buf_free(&sql);
    return side ? rc : -1;
}

static long table_rows(const struct gen_table *gt, long scale)
{
    return gt->fixed_rows + gt->rows_per_100_contacts * scale / 100;
}

static int fill_table(sqlite3 *db, const struct table_schema *t, long rows, struct prng *p,
                      char *err, size_t errlen)
{
    sqlite3_stmt *stmt = sql_prepare_insert(db, t, err, errlen);
    if (!stmt)
        return -1;
    for (long r = 0; r < rows; r++) {
        sqlite3_reset(stmt);
        for (size_t c = 0; c < t->ncolumns; c++) {
            const struct column *col = &t->columns[c];
            int param = (int)c + 1;
            if (col->pk_position == 0)
                gen_bind_value(stmt, param, col, p, (uint64_t)r);
            else if (t->npk == 1)
                sqlite3_bind_int64(stmt, param, r + 1);
            else
                sqlite3_bind_int64(stmt, param, col->pk_position == 1 ? r / COMPOSITE_FANOUT + 1
                                                                     : r % COMPOSITE_FANOUT + 1);
        }
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            snprintf(err, errlen, "%s row %ld: %s", t->name, r + 1, sqlite3_errmsg(db));
            sqlite3_finalize(stmt);
            return -1;
        }
    }
    sqlite3_finalize(stmt);
    return 0;
}

static void remove_database(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
        unlink(name);
    }
}

int gen_run(const struct gen_options *opt, char *err, size_t errlen)
{
    if (opt->scale < 1) {
        snprintf(err, errlen, "--scale must be at least 1");
        return -1;
    }
    if (access(opt->path, F_OK) == 0) {
        if (!opt->force) {
            snprintf(err, errlen, "%s exists (use --force to replace it)", opt->path);
            return -1;
        }
        remove_database(opt->path);
    }
    sqlite3 *db = NULL;
    if (task_sqlite_open(opt->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db, err, errlen) != 0)
        return -1;
    int rc = create_schema(db, err, errlen);
    sqlite3_close(db);
    if (rc != 0)
        return -1;

    struct source src;
    if (source_open(&src, opt->path, 1, err, errlen) != 0)
        return -1;
    struct prng p;
    prng_seed(&p, opt->seed);
    rc = sql_exec(src.db, "BEGIN", err, errlen);
    long total = 0;
    for (size_t t = 0; rc == 0 && t < NTABLES; t++) {
        const struct table_schema *schema = source_find(&src, gen_tables[t].name);
        if (!schema) {
            snprintf(err, errlen, "table %s was not read back from %s", gen_tables[t].name, opt->path);
            rc = -1;
            break;
        }
        long rows = table_rows(&gen_tables[t], opt->scale);
        rc = fill_table(src.db, schema, rows, &p, err, errlen);
        total += rows;
    }
    if (rc == 0)
        rc = sql_exec(src.db, "COMMIT", err, errlen);
    source_close(&src);
    if (rc == 0)
        log_info("gen: %s: %zu tables (%d blocked), %ld rows, seed %llu", opt->path, NTABLES,
                 BLOCKED_TABLES, total, (unsigned long long)opt->seed);
    return rc;
}
