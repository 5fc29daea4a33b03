/* tests/unit/test_values: value_check against every row of protocol section 5 (grammar and
 * limits of each SQL Server type, <V>/<B>/<N/> rules, messages), base64 and UTF-8 helpers. */
#include <check.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/schema.h"
#include "proto/value.h"

static struct arena arena;
static struct value last;
static char last_err[512];

static void setup(void)
{
    arena_init(&arena);
    last_err[0] = '\0';
}

static void teardown(void)
{
    arena_free(&arena);
}

static struct sql_type type_of(const char *text)
{
    struct sql_type type;
    char err[256];
    ck_assert_msg(sqltype_parse(text, &type, err, sizeof(err)) == 0, "type %s: %s", text, err);
    return type;
}

static int check_raw(const char *type_text, int nullable, enum raw_kind kind, const char *data,
                     size_t len)
{
    struct sql_type type = type_of(type_text);
    struct raw_value raw = {.kind = kind, .data = data, .len = len};
    last_err[0] = '\0';
    return value_check(&type, nullable, &raw, &arena, &last, last_err, sizeof(last_err));
}

/* <V>text</V> in a nullable column. */
static int v(const char *type_text, const char *text)
{
    return check_raw(type_text, 1, RAW_TEXT, text, strlen(text));
}

/* <B>base64</B> in a nullable column. */
static int b(const char *type_text, const char *base64)
{
    return check_raw(type_text, 1, RAW_BASE64, base64, strlen(base64));
}

#define FITS(type, text) ck_assert_msg(v(type, text) == 0, "%s should fit %s: %s", text, type, last_err)
#define REJECTS(type, text) ck_assert_msg(v(type, text) == -1, "%s should not fit %s", text, type)

START_TEST(test_integers)
{
    FITS("tinyint", "0");
    FITS("tinyint", "255");
    ck_assert_int_eq(last.cls, VAL_INT);
    ck_assert_int_eq(last.i, 255);
    REJECTS("tinyint", "256");
    REJECTS("tinyint", "-1");
    FITS("tinyint", "-0");
    ck_assert_int_eq(last.i, 0);
    FITS("tinyint", "007");
    ck_assert_int_eq(last.i, 7);
    REJECTS("tinyint", "+1");
    FITS("smallint", "-32768");
    ck_assert_int_eq(last.i, -32768);
    FITS("smallint", "32767");
    REJECTS("smallint", "32768");
    REJECTS("smallint", "-32769");
    FITS("int", "-2147483648");
    ck_assert_int_eq(last.i, INT32_MIN);
    FITS("int", "2147483647");
    REJECTS("int", "2147483648");
    REJECTS("int", "-2147483649");
    FITS("bigint", "-9223372036854775808");
    ck_assert(last.i == INT64_MIN);
    FITS("bigint", "9223372036854775807");
    ck_assert(last.i == INT64_MAX);
    FITS("bigint", "000000000000000000000009223372036854775807");
    REJECTS("bigint", "9223372036854775808");
    REJECTS("bigint", "-9223372036854775809");
    REJECTS("bigint", "18446744073709551616");
    REJECTS("bigint", "99999999999999999999999999999");
    REJECTS("int", "1.0");
    REJECTS("int", " 1");
    REJECTS("int", "1 ");
    REJECTS("int", "1a");
    REJECTS("int", "-");
    REJECTS("int", "1e3");
    ck_assert_str_eq(last_err, "value 1e3 does not fit int");
}
END_TEST

START_TEST(test_bit)
{
    FITS("bit", "1");
    ck_assert_int_eq(last.i, 1);
    FITS("bit", "0");
    ck_assert_int_eq(last.i, 0);
    FITS("bit", "TrUe");
    ck_assert_int_eq(last.i, 1);
    FITS("bit", "FALSE");
    ck_assert_int_eq(last.i, 0);
    ck_assert_int_eq(last.cls, VAL_INT);
    REJECTS("bit", "2");
    REJECTS("bit", "yes");
    REJECTS("bit", "01");
    REJECTS("bit", "truex");
}
END_TEST

START_TEST(test_decimal)
{
    FITS("decimal(5,2)", "123.45");
    ck_assert_int_eq(last.cls, VAL_DECIMAL);
    ck_assert_int_eq((int)last.len, 6);
    ck_assert(memcmp(last.text, "123.45", 6) == 0);
    REJECTS("decimal(5,2)", "1234.5");
    FITS("decimal(5,2)", "0001.10");
    FITS("decimal(5,2)", "-0.000");
    FITS("decimal(5,2)", "1.2300");
    FITS("decimal(5,2)", "-999.99");
    FITS("decimal(5,2)", "0");
    REJECTS("decimal(5,2)", "1.234");
    REJECTS("decimal(5,2)", "1000");
    REJECTS("decimal(5,2)", ".5");
    REJECTS("decimal(5,2)", "5.");
    REJECTS("decimal(5,2)", "1e2");
    REJECTS("decimal(5,2)", "+1");
    REJECTS("decimal(5,2)", "--1");
    REJECTS("decimal(5,2)", "1.2.3");
    FITS("numeric(3,3)", "0.123");
    FITS("numeric(3,3)", "000.123");
    REJECTS("numeric(3,3)", "1.0");
    FITS("decimal", "999999999999999999");
    REJECTS("decimal", "9999999999999999999");
    REJECTS("decimal", "0.5");
    FITS("decimal(38,0)", "99999999999999999999999999999999999999");
    REJECTS("decimal(18,4)", "123456789012345678901");
    ck_assert_str_eq(last_err, "value 123456789012345678901 does not fit decimal(18,4)");
}
END_TEST

START_TEST(test_money)
{
    FITS("money", "922337203685477.5807");
    ck_assert_int_eq(last.cls, VAL_DECIMAL);
    REJECTS("money", "922337203685477.5808");
    FITS("money", "-922337203685477.5808");
    REJECTS("money", "-922337203685477.5809");
    REJECTS("money", "999999999999999");
    REJECTS("money", "922337203685478");
    REJECTS("money", "1000000000000000");
    FITS("money", "1.1234");
    FITS("money", "1.12340000");
    REJECTS("money", "1.12345");
    FITS("money", "0000000000000000000012.5");
    FITS("smallmoney", "214748.3647");
    REJECTS("smallmoney", "214748.3648");
    FITS("smallmoney", "-214748.3648");
    REJECTS("smallmoney", "-214748.3649");
    REJECTS("smallmoney", "1000000");
    REJECTS("smallmoney", "0.00001");
}
END_TEST

START_TEST(test_float)
{
    FITS("float", "1");
    ck_assert_int_eq(last.cls, VAL_REAL);
    ck_assert(last.d == 1.0);
    FITS("float", "1.");
    FITS("float", ".5");
    ck_assert(last.d == 0.5);
    FITS("float", "-1.5e10");
    ck_assert(last.d == -1.5e10);
    ck_assert(memcmp(last.text, "-1.5e10", last.len) == 0 && last.len == 7);
    FITS("float", "1E+308");
    FITS("float", "2.5e-3");
    FITS("float", "1.e5");
    REJECTS("float", "1e309");
    REJECTS("float", "-1e309");
    REJECTS("float", "nan");
    REJECTS("float", "NaN");
    REJECTS("float", "inf");
    REJECTS("float", "-Infinity");
    REJECTS("float", "0x1p3");
    REJECTS("float", "1e");
    REJECTS("float", "1e+");
    REJECTS("float", ".");
    REJECTS("float", "-");
    REJECTS("float", "1,5");
    REJECTS("float", "+1");
    REJECTS("float", " 1");
    REJECTS("float", "1.5 ");
    FITS("real", "3.4e38");
    FITS("real", "-3.40E+38");
    REJECTS("real", "3.41e38");
    REJECTS("real", "1e39");
    FITS("float(24)", "1e38");
    REJECTS("float(24)", "1e39");
    FITS("float(25)", "1e39");
}
END_TEST

START_TEST(test_float_locale)
{
    /* A decimal-comma locale must not change how values are read. */
    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
        return;   /* no such locale installed: nothing to show */
    FITS("float", "1.5");
    ck_assert(last.d == 1.5);
    REJECTS("float", "1,5");
    setlocale(LC_NUMERIC, "C");
}
END_TEST

START_TEST(test_date_time)
{
    FITS("date", "2024-02-29");
    ck_assert_int_eq(last.cls, VAL_DATETIME);
    REJECTS("date", "2023-02-29");
    FITS("date", "2000-02-29");
    REJECTS("date", "1900-02-29");
    FITS("date", "0001-01-01");
    FITS("date", "9999-12-31");
    REJECTS("date", "0000-01-01");
    REJECTS("date", "2024-13-01");
    REJECTS("date", "2024-00-10");
    REJECTS("date", "2024-04-31");
    REJECTS("date", "2024-04-00");
    REJECTS("date", "2024-1-01");
    REJECTS("date", "2024-02-29T00:00:00");
    REJECTS("date", "20240229");

    FITS("time", "23:59:59.9999999");
    FITS("time", "10:15:00");
    REJECTS("time", "24:00:00");
    REJECTS("time", "10:60:00");
    REJECTS("time", "10:15:60");
    REJECTS("time", "10:15");
    REJECTS("time", "10:15:00.");
    REJECTS("time", "10:15:00.12345678");
    FITS("time", "10:15:00.12345670");
    FITS("time(0)", "10:15:00.0");
    REJECTS("time(0)", "10:15:00.1");
    FITS("time(3)", "10:15:00.123000");
    REJECTS("time(3)", "10:15:00.1234");
}
END_TEST

START_TEST(test_datetime)
{
    FITS("datetime", "2026-11-26T10:15:00.123");
    ck_assert_int_eq(last.cls, VAL_DATETIME);
    ck_assert_int_eq((int)last.len, 23);
    FITS("datetime", "2026-11-26T10:15:00.997");
    REJECTS("datetime", "2026-11-26T10:15:00.998");
    REJECTS("datetime", "2026-11-26T10:15:00.001");
    FITS("datetime", "2026-11-26T10:15:00.5");
    FITS("datetime", "2026-11-26T10:15:00.12");
    FITS("datetime", "2026-11-26T10:15:00.9970");
    REJECTS("datetime", "2026-11-26T10:15:00.1234");
    FITS("datetime", "2026-11-26T10:15:00");
    FITS("datetime", "1753-01-01T00:00:00");
    REJECTS("datetime", "1752-12-31T23:59:59");
    FITS("datetime", "9999-12-31T23:59:59.997");
    REJECTS("datetime", "2026-11-26 10:15:00");
    REJECTS("datetime", "2026-11-26T10:15");
    REJECTS("datetime", "2026-11-26");

    FITS("smalldatetime", "2079-06-06T23:59:00");
    REJECTS("smalldatetime", "2079-06-07T00:00:00");
    FITS("smalldatetime", "1900-01-01T00:00:00");
    REJECTS("smalldatetime", "1899-12-31T23:59:00");
    REJECTS("smalldatetime", "2000-01-01T10:00:30");
    FITS("smalldatetime", "2000-01-01T10:00:00.000");
    REJECTS("smalldatetime", "2000-01-01T10:00:00.003");

    FITS("datetime2", "0001-01-01T00:00:00.1234567");
    REJECTS("datetime2", "0001-01-01T00:00:00.12345678");
    FITS("datetime2", "9999-12-31T23:59:59.12345670");
    FITS("datetime2(2)", "2026-11-26T10:15:00.12");
    REJECTS("datetime2(2)", "2026-11-26T10:15:00.123");
    FITS("datetime2(0)", "2026-11-26T10:15:00");

    FITS("datetimeoffset", "2026-11-26T10:15:00+14:00");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00+14:01");
    FITS("datetimeoffset", "2026-11-26T10:15:00-14:00");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00-14:01");
    FITS("datetimeoffset", "2026-11-26T10:15:00.1234567+01:00");
    FITS("datetimeoffset", "2026-11-26T10:15:00-00:00");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00+01:60");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00Z");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00");
    REJECTS("datetimeoffset", "2026-11-26T10:15:00+1:00");
    REJECTS("datetimeoffset(3)", "2026-11-26T10:15:00.1234+01:00");
}
END_TEST

/* value_compact_text: the zeros section 5 allows in any number left out, the rest as sent. */
START_TEST(test_compact_text)
{
    static const struct {
        const char *type, *text, *compact;
    } cases[] = {
        {"decimal(18,4)", "0000012.500000000", "12.5000"},
        {"decimal(18,4)", "12.5", "12.5"},
        {"decimal(18,4)", "-000.0000000", "-0.0000"},
        {"decimal(18,0)", "00042.000", "42"},
        {"decimal(18,4)", "0", "0"},
        {"money", "-0922337203685477.580800", "-922337203685477.5808"},
        {"time(7)", "12:00:00.12345670000000000000000000000000000000000000", "12:00:00.1234567"},
        {"time(0)", "12:00:00.000", "12:00:00"},
        {"datetime", "2026-11-26T10:15:00.99700000", "2026-11-26T10:15:00.997"},
        {"smalldatetime", "2026-11-26T10:15:00.000", "2026-11-26T10:15:00"},
        {"datetimeoffset(3)", "2026-11-26T10:15:00.120000000000000000000000000000000000000+05:30",
         "2026-11-26T10:15:00.120+05:30"},
        {"datetimeoffset", "2026-11-26T10:15:00-00:00", "2026-11-26T10:15:00-00:00"},
        {"date", "2026-02-28", "2026-02-28"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        FITS(cases[k].type, cases[k].text);
        struct sql_type type = type_of(cases[k].type);
        char out[VALUE_COMPACT_MAX];
        size_t n = value_compact_text(&type, cases[k].text, strlen(cases[k].text), out);
        ck_assert_str_eq(out, cases[k].compact);
        ck_assert_uint_eq(n, strlen(cases[k].compact));
    }
    /* Never past the buffer, whatever it is given. */
    char long_text[200], out[VALUE_COMPACT_MAX];
    memset(long_text, '1', sizeof(long_text));
    struct sql_type text_type = type_of("decimal(38,0)");
    ck_assert_uint_eq(value_compact_text(&text_type, long_text, sizeof(long_text), out),
                      VALUE_COMPACT_MAX - 1);
}
END_TEST

START_TEST(test_uniqueidentifier)
{
    FITS("uniqueidentifier", "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    ck_assert_int_eq(last.cls, VAL_TEXT);
    FITS("uniqueidentifier", "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    REJECTS("uniqueidentifier", "6F9619FF8B86-D011-B42D-00C04FC964FF0");
    REJECTS("uniqueidentifier", "6F9619FF-8B86-D011-B42D-00C04FC964FG");
    REJECTS("uniqueidentifier", "6F9619FF-8B86-D011-B42D-00C04FC964F");
    REJECTS("uniqueidentifier", "{6F9619FF-8B86-D011-B42D-00C04FC964FF}");
}
END_TEST

START_TEST(test_strings)
{
    static const char emoji3[] = "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80";
    REJECTS("nvarchar(3)", emoji3);
    FITS("nvarchar(6)", emoji3);
    ck_assert_int_eq(last.cls, VAL_TEXT);
    ck_assert_int_eq((int)last.len, 12);
    FITS("nchar(3)", "\xC3\xA9\xC3\xA9\xC3\xA9");
    FITS("char(4)", "\xC3\xA9\xC3\xA9");
    REJECTS("char(3)", "\xC3\xA9\xC3\xA9");
    FITS("varchar(3)", "abc");
    REJECTS("varchar(3)", "abcd");
    FITS("varchar", "a");
    REJECTS("varchar", "ab");
    char *long_text = arena_alloc(&arena, 100001);
    memset(long_text, 'x', 100000);
    long_text[100000] = '\0';
    FITS("varchar(max)", long_text);
    FITS("nvarchar(max)", long_text);
    FITS("text", long_text);
    FITS("ntext", long_text);
    FITS("xml", "<a>not checked</b>");
    FITS("nvarchar(5)", "");
    ck_assert_int_eq(last.cls, VAL_TEXT);
    ck_assert_int_eq((int)last.len, 0);
    FITS("char(3)", "   ");
    ck_assert_int_eq((int)last.len, 3);
    REJECTS("char(2)", "   ");
}
END_TEST

START_TEST(test_utf8_rules)
{
    ck_assert_int_eq(v("nvarchar(10)", "\xFF"), -1);
    ck_assert_str_eq(last_err, "invalid UTF-8");
    ck_assert_int_eq(v("nvarchar(10)", "\xC0\xAF"), -1);          /* overlong */
    ck_assert_int_eq(v("nvarchar(10)", "\xED\xA0\x80"), -1);      /* surrogate */
    ck_assert_int_eq(v("nvarchar(10)", "\xF4\x90\x80\x80"), -1);  /* above U+10FFFF */
    ck_assert_int_eq(v("nvarchar(10)", "a\xE2\x82"), -1);          /* truncated */
    ck_assert_int_eq(v("int", "\xFF"), -1);
    ck_assert_str_eq(last_err, "invalid UTF-8");
    ck_assert_int_eq(utf8_utf16_units("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10), 5);
    ck_assert_int_eq(utf8_utf16_units("\x80", 1), -1);
    ck_assert(utf8_valid("", 0));
}
END_TEST

START_TEST(test_base64_values)
{
    ck_assert_int_eq(v("binary(4)", "abcd"), -1);
    ck_assert_str_eq(last_err, "binary value must be sent as <B>");
    ck_assert_int_eq(b("binary(4)", "AQIDBA=="), 0);
    ck_assert_int_eq(last.cls, VAL_BINARY);
    ck_assert_int_eq((int)last.len, 4);
    ck_assert(memcmp(last.text, "\x01\x02\x03\x04", 4) == 0);
    ck_assert_int_eq(b("binary(4)", "AQIDBAU="), -1);
    ck_assert_str_eq(last_err, "value AQIDBAU= does not fit binary(4)");
    ck_assert_int_eq(b("varbinary(4)", " AQ ID\nBA==\r\n"), 0);
    ck_assert_int_eq((int)last.len, 4);
    ck_assert_int_eq(b("varbinary(max)", "AQIDBAU="), 0);
    ck_assert_int_eq(b("image", "AQIDBAU="), 0);
    ck_assert_int_eq(b("varbinary(3)", ""), 0);
    ck_assert_int_eq((int)last.len, 0);
    ck_assert_int_eq(b("timestamp", "AAAAAAAAAAE="), 0);
    ck_assert_int_eq((int)last.len, 8);
    ck_assert_int_eq(b("rowversion", "AAAAAAAAAA=="), -1);
    ck_assert_int_eq(b("timestamp", ""), -1);
    ck_assert_int_eq(b("binary(4)", "AQI"), -1);
    ck_assert_str_eq(last_err, "invalid base64");
    ck_assert_int_eq(b("binary(4)", "AQ=D"), -1);
    ck_assert_int_eq(b("binary(4)", "A==="), -1);
    ck_assert_int_eq(b("binary(4)", "===="), -1);
    ck_assert_int_eq(b("binary(4)", "AQ!D"), -1);
    ck_assert_int_eq(b("binary(8)", "AQ==AQ=="), -1);
    ck_assert_int_eq(b("binary(8)", "-_8="), -1);

    /* <B> for strings: decoded UTF-8, any characters. */
    ck_assert_int_eq(b("nvarchar(10)", "aGkB"), 0);   /* "hi\x01" */
    ck_assert_int_eq(last.cls, VAL_TEXT);
    ck_assert_int_eq((int)last.len, 3);
    ck_assert(memcmp(last.text, "hi\x01", 3) == 0);
    ck_assert_int_eq(b("nvarchar(10)", "/w=="), -1);   /* "\xff" */
    ck_assert_str_eq(last_err, "invalid UTF-8");
    ck_assert_int_eq(b("nvarchar(2)", "YWJj"), -1);
    ck_assert_str_eq(last_err, "value YWJj does not fit nvarchar(2)");
    ck_assert_int_eq(b("xml", "PGEvPg=="), 0);

    /* <B> for types that are neither strings nor binary. */
    ck_assert_int_eq(b("int", "MQ=="), -1);
    ck_assert_str_eq(last_err, "<B> not allowed for type int");
    ck_assert_int_eq(b("uniqueidentifier", "MQ=="), -1);
    ck_assert_int_eq(b("datetime", "MQ=="), -1);
}
END_TEST

START_TEST(test_null_and_empty)
{
    ck_assert_int_eq(check_raw("int", 1, RAW_NULL, NULL, 0), 0);
    ck_assert_int_eq(last.cls, VAL_NULL);
    ck_assert_int_eq(check_raw("int", 0, RAW_NULL, NULL, 0), -1);
    ck_assert_str_eq(last_err, "NULL in NOT NULL column");
    ck_assert_int_eq(check_raw("varbinary(max)", 0, RAW_NULL, NULL, 0), -1);
    ck_assert_int_eq(v("int", ""), -1);
    ck_assert_str_eq(last_err, "empty value for type int");
    ck_assert_int_eq(v("decimal(5,2)", ""), -1);
    ck_assert_str_eq(last_err, "empty value for type decimal(5,2)");
    ck_assert_int_eq(v("datetime2", ""), -1);
    ck_assert_int_eq(v("uniqueidentifier", ""), -1);
    ck_assert_int_eq(v("bit", ""), -1);
}
END_TEST

START_TEST(test_message_shortened)
{
    char text[101];
    memset(text, '7', 100);
    text[100] = '\0';
    ck_assert_int_eq(v("int", text), -1);
    char expected[200];
    snprintf(expected, sizeof(expected), "value %.40s\xE2\x80\xA6 does not fit int", text);
    ck_assert_str_eq(last_err, expected);

    char out[VALUE_QUOTE_MAX];
    utf8_shorten("a\x01" "b", 3, 40, out, sizeof(out));
    ck_assert_str_eq(out, "a?b");
    utf8_shorten("\xC3\xA9\xC3\xA9\xC3\xA9", 6, 2, out, sizeof(out));
    ck_assert_str_eq(out, "\xC3\xA9\xC3\xA9\xE2\x80\xA6");
    utf8_shorten("abc", 3, 3, out, sizeof(out));
    ck_assert_str_eq(out, "abc");
}
END_TEST

START_TEST(test_base64_roundtrip)
{
    unsigned char bytes[64];
    for (size_t k = 0; k < sizeof(bytes); k++)
        bytes[k] = (unsigned char)(k * 37 + 11);
    for (size_t len = 0; len <= sizeof(bytes); len++) {
        char *text = base64_encode(bytes, len, &arena);
        ck_assert_uint_eq(strlen(text), (len + 2) / 3 * 4);
        unsigned char *decoded;
        size_t decoded_len;
        ck_assert_int_eq(base64_decode(text, strlen(text), &arena, &decoded, &decoded_len), 0);
        ck_assert_uint_eq(decoded_len, len);
        ck_assert(memcmp(decoded, bytes, len) == 0);
    }
    ck_assert_str_eq(base64_encode((const unsigned char *)"hi", 2, &arena), "aGk=");
}
END_TEST

static Suite *values_suite(void)
{
    Suite *s = suite_create("values");
    TCase *tc = tcase_create("value_check");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_integers);
    tcase_add_test(tc, test_bit);
    tcase_add_test(tc, test_decimal);
    tcase_add_test(tc, test_money);
    tcase_add_test(tc, test_float);
    tcase_add_test(tc, test_float_locale);
    tcase_add_test(tc, test_date_time);
    tcase_add_test(tc, test_datetime);
    tcase_add_test(tc, test_compact_text);
    tcase_add_test(tc, test_uniqueidentifier);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_utf8_rules);
    tcase_add_test(tc, test_base64_values);
    tcase_add_test(tc, test_null_and_empty);
    tcase_add_test(tc, test_message_shortened);
    tcase_add_test(tc, test_base64_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(values_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
