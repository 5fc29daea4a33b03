/* tests/unit/test_schema: identifiers, SQL Server type parsing and canonical spelling, the
 * default grammar and fitting, the blocked list, the table rules of protocol 4.2 with the
 * spec's hash vectors, the canonical text round trip, and schema_plan's Change decisions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proto/fault.h"
#include "proto/schema.h"

static struct arena arena;

static void setup(void)
{
    arena_init(&arena);
    log_set_level(LOG_LVL_ERROR);   /* the left-out-default warnings are expected */
}

static void teardown(void)
{
    arena_free(&arena);
}

START_TEST(test_identifiers)
{
    char long_name[130];
    memset(long_name, 'a', 129);
    long_name[129] = '\0';
    ck_assert(!ident_valid(long_name));
    long_name[128] = '\0';
    ck_assert(ident_valid(long_name));
    ck_assert(ident_valid("a"));
    ck_assert(ident_valid("_x"));
    ck_assert(ident_valid("Contact_1"));
    ck_assert(!ident_valid("1a"));
    ck_assert(!ident_valid(""));
    ck_assert(!ident_valid(NULL));
    ck_assert(!ident_valid("a-b"));
    ck_assert(!ident_valid("a b"));
    ck_assert(!ident_valid("\xC3\xA9"));
    ck_assert(!ident_valid("a;drop"));

    ck_assert(tenant_valid("Cust12345"));
    ck_assert(tenant_valid("1abc_"));
    ck_assert(!tenant_valid("_abc"));
    ck_assert(!tenant_valid(""));
    ck_assert(!tenant_valid("a.b"));
    long_name[52] = '\0';
    ck_assert(tenant_valid(long_name));
    long_name[52] = 'a';
    long_name[53] = '\0';
    ck_assert(!tenant_valid(long_name));

    ck_assert(ident_equal("Contact", "cONTACT"));
    ck_assert(!ident_equal("a", "ab"));
    ck_assert(!ident_equal("ab", "a"));
    ck_assert(!ident_equal("a_", "a-"));
    ck_assert(ident_has_prefix("SQLite_master", "sqlite_"));
    ck_assert(!ident_has_prefix("sqlit", "sqlite_"));
    ck_assert_str_eq(ident_lower("AbC_1", &arena), "abc_1");
}
END_TEST

/* input, canonical spelling, or NULL and the expected error. */
static const struct {
    const char *input;
    const char *canonical;
    const char *error;
} type_cases[] = {
    {"int", "int", NULL},
    {"INT", "int", NULL},
    {"  BigInt  ", "bigint", NULL},
    {"smallint", "smallint", NULL},
    {"tinyint", "tinyint", NULL},
    {"bit", "bit", NULL},
    {"decimal", "decimal(18,0)", NULL},
    {"decimal(10)", "decimal(10,0)", NULL},
    {"decimal (18, 4)", "decimal(18,4)", NULL},
    {"NUMERIC(38,38)", "numeric(38,38)", NULL},
    {"numeric(1,0)", "numeric(1,0)", NULL},
    {"decimal(39,2)", NULL, "decimal precision 39 out of range 1-38"},
    {"decimal(0)", NULL, "decimal precision 0 out of range 1-38"},
    {"decimal(5,6)", NULL, "decimal scale 6 out of range 0-5"},
    {"decimal(max)", NULL, "max length not allowed for decimal"},
    {"decimal(1,2,3)", NULL, "malformed parameters of type decimal"},
    {"money", "money", NULL},
    {"smallmoney", "smallmoney", NULL},
    {"money(19,4)", NULL, "money takes no parameters"},
    {"float", "float", NULL},
    {"float(53)", "float", NULL},
    {"float(25)", "float", NULL},
    {"float(24)", "real", NULL},
    {"float(1)", "real", NULL},
    {"real", "real", NULL},
    {"float(0)", NULL, "float precision 0 out of range 1-53"},
    {"float(54)", NULL, "float precision 54 out of range 1-53"},
    {"date", "date", NULL},
    {"time", "time(7)", NULL},
    {"time(0)", "time(0)", NULL},
    {"time(8)", NULL, "time precision 8 out of range 0-7"},
    {"datetime", "datetime", NULL},
    {"datetime(3)", NULL, "datetime takes no parameters"},
    {"datetime2", "datetime2(7)", NULL},
    {"datetime2(3)", "datetime2(3)", NULL},
    {"smalldatetime", "smalldatetime", NULL},
    {"datetimeoffset", "datetimeoffset(7)", NULL},
    {"DateTimeOffset( 0 )", "datetimeoffset(0)", NULL},
    {"char", "char(1)", NULL},
    {"char(8000)", "char(8000)", NULL},
    {"char(8001)", NULL, "char length 8001 out of range 1-8000"},
    {"char(max)", NULL, "max length not allowed for char"},
    {"varchar", "varchar(1)", NULL},
    {"VARCHAR(MAX)", "varchar(max)", NULL},
    {"varchar(0)", NULL, "varchar length 0 out of range 1-8000"},
    {"nchar(4000)", "nchar(4000)", NULL},
    {"nchar(max)", NULL, "max length not allowed for nchar"},
    {"nvarchar(220)", "nvarchar(220)", NULL},
    {"NVARCHAR(MAX)", "nvarchar(max)", NULL},
    {"nvarchar ( max )", "nvarchar(max)", NULL},
    {"nvarchar(5000)", NULL, "nvarchar length 5000 out of range 1-4000"},
    {"nvarchar(99999999999999999999)", NULL,
     "nvarchar length 99999999999999999999 out of range 1-4000"},
    {"text", "text", NULL},
    {"ntext", "ntext", NULL},
    {"binary", "binary(1)", NULL},
    {"binary(max)", NULL, "max length not allowed for binary"},
    {"varbinary(max)", "varbinary(max)", NULL},
    {"varbinary(8000)", "varbinary(8000)", NULL},
    {"image", "image", NULL},
    {"uniqueidentifier", "uniqueidentifier", NULL},
    {"xml", "xml", NULL},
    {"timestamp", "timestamp", NULL},
    {"rowversion", "timestamp", NULL},
    {"geography", NULL, "unsupported type geography"},
    {"Geometry", NULL, "unsupported type geometry"},
    {"sql_variant", NULL, "unsupported type sql_variant"},
    {"hierarchyid", NULL, "unsupported type hierarchyid"},
    {"sysname", NULL, "unsupported type sysname"},
    {"", NULL, "missing type"},
    {"(10)", NULL, "missing type"},
    {"nvar char(10)", NULL, "unsupported type nvar"},
    {"int int", NULL, "unexpected text after type int"},
    {"varchar(10", NULL, "malformed parameters of type varchar"},
    {"varchar()", NULL, "malformed parameters of type varchar"},
    {"varchar(-1)", NULL, "malformed parameters of type varchar"},
    {"double precision", NULL, "unsupported type double"},
};

START_TEST(test_sqltype)
{
    for (size_t k = 0; k < sizeof(type_cases) / sizeof(type_cases[0]); k++) {
        struct sql_type type;
        char err[256] = "", canonical[SQLTYPE_TEXT_MAX];
        int rc = sqltype_parse(type_cases[k].input, &type, err, sizeof(err));
        if (type_cases[k].canonical) {
            ck_assert_msg(rc == 0, "%s: %s", type_cases[k].input, err);
            sqltype_normal(&type, canonical, sizeof(canonical));
            ck_assert_str_eq(canonical, type_cases[k].canonical);
            /* Without leading zeros the canonical text is the normal spelling. */
            struct buf text = BUF_INIT;
            sqltype_canonical_text(type_cases[k].input, &type, &text);
            buf_putc(&text, '\0');
            ck_assert_str_eq(text.data, type_cases[k].canonical);
            buf_free(&text);
        } else {
            ck_assert_msg(rc == -1, "%s should be refused", type_cases[k].input);
            ck_assert_str_eq(err, type_cases[k].error);
        }
    }
}
END_TEST

/* Protocol 4.2 lowercases the type, removes whitespace and applies its rules, none of which
 * touches the digits: a parameter keeps its leading zeros. */
START_TEST(test_sqltype_canonical_text_keeps_digits)
{
    static const struct {
        const char *input, *text, *normal;
    } cases[] = {
        {"VarChar ( 010 )", "varchar(010)", "varchar(10)"},
        {"nvarchar(0100)", "nvarchar(0100)", "nvarchar(100)"},
        {"decimal(018)", "decimal(018,0)", "decimal(18,0)"},
        {"DECIMAL ( 018 , 04 )", "decimal(018,04)", "decimal(18,4)"},
        {"time(07)", "time(07)", "time(7)"},
        {"float(0053)", "float", "float"},
        {"float(024)", "real", "real"},
        {"RowVersion", "timestamp", "timestamp"},
        {"Nvarchar ( Max )", "nvarchar(max)", "nvarchar(max)"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct sql_type type;
        char err[256], normal[SQLTYPE_TEXT_MAX];
        ck_assert_msg(sqltype_parse(cases[k].input, &type, err, sizeof(err)) == 0, "%s: %s",
                      cases[k].input, err);
        struct buf text = BUF_INIT;
        sqltype_canonical_text(cases[k].input, &type, &text);
        buf_putc(&text, '\0');
        ck_assert_str_eq(text.data, cases[k].text);
        buf_free(&text);
        sqltype_normal(&type, normal, sizeof(normal));
        ck_assert_str_eq(normal, cases[k].normal);
    }
}
END_TEST

START_TEST(test_sqltype_fields)
{
    struct sql_type t;
    char err[256];
    ck_assert_int_eq(sqltype_parse("money", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.precision, 19);
    ck_assert_int_eq(t.scale, 4);
    ck_assert_int_eq(sqltype_parse("smallmoney", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.precision, 10);
    ck_assert_int_eq(t.scale, 4);
    ck_assert_int_eq(sqltype_parse("rowversion", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.kind, SQL_TIMESTAMP);
    ck_assert_int_eq(sqltype_parse("float(10)", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.kind, SQL_REAL);
    ck_assert_int_eq(sqltype_parse("nvarchar(max)", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.length, SQL_LEN_MAX);
    ck_assert_int_eq(sqltype_parse("time", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.scale, 7);
    ck_assert(sqltype_is_string(SQL_XML) && !sqltype_is_string(SQL_UNIQUEIDENTIFIER));
    ck_assert(sqltype_is_binary(SQL_TIMESTAMP) && !sqltype_is_binary(SQL_NVARCHAR));
    ck_assert(sqltype_is_temporal(SQL_DATETIMEOFFSET) && !sqltype_is_temporal(SQL_BIGINT));
}
END_TEST

static struct default_expr parse_ok(const char *text)
{
    struct default_expr def;
    char err[256];
    ck_assert_msg(default_parse(text, &arena, &def, err, sizeof(err)) == 0, "%s: %s", text, err);
    return def;
}

static void parse_fails(const char *text, const char *expected)
{
    struct default_expr def;
    char err[256] = "";
    ck_assert_msg(default_parse(text, &arena, &def, err, sizeof(err)) == -1,
                  "%s should not parse", text);
    ck_assert_str_eq(err, expected);
}

START_TEST(test_default_parse)
{
    struct default_expr d = parse_ok("((0))");
    ck_assert_int_eq(d.kind, DEF_NUMBER);
    ck_assert_str_eq(d.text, "0");
    d = parse_ok(" ( ( -1.5e3 ) ) ");
    ck_assert_int_eq(d.kind, DEF_NUMBER);
    ck_assert_str_eq(d.text, "-1.5e3");
    ck_assert_uint_eq(d.len, 6);
    d = parse_ok("(- 12)");
    ck_assert_str_eq(d.text, "-12");
    d = parse_ok("+.5");
    ck_assert_str_eq(d.text, "+.5");
    d = parse_ok("1.");
    ck_assert_str_eq(d.text, "1.");
    d = parse_ok("(N'it''s')");
    ck_assert_int_eq(d.kind, DEF_STRING);
    ck_assert_str_eq(d.text, "it's");
    ck_assert_int_eq(d.national, 1);
    d = parse_ok("('')");
    ck_assert_int_eq(d.kind, DEF_STRING);
    ck_assert_uint_eq(d.len, 0);
    ck_assert_int_eq(d.national, 0);
    d = parse_ok("(N'')");
    ck_assert_int_eq(d.national, 1);
    d = parse_ok("n'(x)'");
    ck_assert_str_eq(d.text, "(x)");
    d = parse_ok("(0x0aFF)");
    ck_assert_int_eq(d.kind, DEF_BINARY);
    ck_assert_str_eq(d.text, "0aFF");
    d = parse_ok("0x");
    ck_assert_int_eq(d.kind, DEF_BINARY);
    ck_assert_uint_eq(d.len, 0);
    d = parse_ok("(NULL)");
    ck_assert_int_eq(d.kind, DEF_NULL);
    d = parse_ok("null");
    ck_assert_int_eq(d.kind, DEF_NULL);
    d = parse_ok("(getutcdate())");
    ck_assert_int_eq(d.kind, DEF_FUNCTION);
    ck_assert_int_eq(d.function, FN_GETUTCDATE);
    d = parse_ok("GETDATE ( )");
    ck_assert_int_eq(d.function, FN_GETDATE);
    ck_assert_int_eq(parse_ok("(sysdatetime())").function, FN_SYSDATETIME);
    ck_assert_int_eq(parse_ok("SysUtcDateTime()").function, FN_SYSUTCDATETIME);
    ck_assert_int_eq(parse_ok("sysdatetimeoffset()").function, FN_SYSDATETIMEOFFSET);
    ck_assert_int_eq(parse_ok("(newid())").function, FN_NEWID);
    ck_assert_int_eq(parse_ok("(NEWSEQUENTIALID())").function, FN_NEWSEQUENTIALID);

    parse_fails("", "empty default");
    parse_fails("()", "unexpected character ')'");
    parse_fails("((0)", "missing ')'");
    parse_fails("(0))", "unbalanced ')'");
    parse_fails("'abc", "unterminated string");
    parse_fails("'it's'", "unexpected text after the default");
    parse_fails("N 'x'", "unknown name N");
    parse_fails("foo()", "unknown name foo");
    parse_fails("getdate", "missing () after getdate");
    parse_fails("getdate(1)", "getdate takes no arguments");
    parse_fails("1e", "number with an empty exponent");
    parse_fails("-", "expected a number");
    parse_fails("-(1)", "expected a number");
    parse_fails("- 'a'", "expected a number");
    parse_fails("0x12G", "invalid hex digit 'G'");
    parse_fails("1 + 1", "unexpected text after the default");
    parse_fails("1abc", "unexpected text after the default");
    parse_fails("CONVERT(int, 1)", "unknown name CONVERT");
    parse_fails("[dbo].[f]()", "unexpected character '['");
}
END_TEST

static int fits(const char *default_text, const char *type_text)
{
    struct sql_type type;
    char err[256];
    ck_assert(sqltype_parse(type_text, &type, err, sizeof(err)) == 0);
    struct default_expr def = parse_ok(default_text);
    return default_fits(&def, &type);
}

START_TEST(test_default_fits)
{
    ck_assert(fits("((0))", "int"));
    ck_assert(fits("(+5)", "tinyint"));
    ck_assert(!fits("(-1)", "tinyint"));
    ck_assert(!fits("(256)", "tinyint"));
    ck_assert(fits("((1))", "bit"));
    ck_assert(!fits("((2))", "bit"));
    ck_assert(fits("((0))", "decimal(18,4)"));
    ck_assert(fits("(1.5)", "decimal(5,2)"));
    ck_assert(!fits("(1.555)", "decimal(5,2)"));
    ck_assert(fits("(-1.5e3)", "float"));
    ck_assert(!fits("(1e39)", "real"));
    ck_assert(fits("(0)", "money"));
    ck_assert(!fits("((0))", "nvarchar(10)"));   /* a number is not a string default */
    ck_assert(!fits("((0))", "datetime"));
    ck_assert(fits("(N'')", "nvarchar(220)"));
    ck_assert(fits("('abc')", "char(3)"));
    ck_assert(!fits("('abcd')", "char(3)"));
    ck_assert(fits("('x')", "text"));
    ck_assert(fits("('2024-02-29')", "date"));
    ck_assert(!fits("('2023-02-29')", "date"));
    ck_assert(fits("('1900-01-01T00:00:00')", "datetime"));
    ck_assert(fits("('6F9619FF-8B86-D011-B42D-00C04FC964FF')", "uniqueidentifier"));
    ck_assert(!fits("('abc')", "int"));
    ck_assert(!fits("('')", "varbinary(10)"));
    ck_assert(fits("(0x0102)", "binary(2)"));
    ck_assert(!fits("(0x010203)", "binary(2)"));
    ck_assert(fits("(0x123)", "binary(2)"));
    ck_assert(fits("(0x)", "varbinary(max)"));
    ck_assert(!fits("(0x01)", "nvarchar(10)"));
    ck_assert(fits("(getdate())", "datetime"));
    ck_assert(fits("(sysdatetimeoffset())", "datetimeoffset"));
    ck_assert(fits("(getutcdate())", "date"));
    ck_assert(fits("(getdate())", "nvarchar(30)"));
    ck_assert(!fits("(getdate())", "int"));
    ck_assert(fits("(newid())", "uniqueidentifier"));
    ck_assert(fits("(newsequentialid())", "uniqueidentifier"));
    ck_assert(fits("(newid())", "char(36)"));
    ck_assert(fits("(newid())", "nvarchar(max)"));
    ck_assert(!fits("(newid())", "varchar(35)"));
    ck_assert(!fits("(newid())", "datetime"));
    ck_assert(fits("(NULL)", "int"));   /* nullability is the column's matter */
}
END_TEST

START_TEST(test_blocked)
{
    ck_assert(table_blocked("login", NULL));
    ck_assert(table_blocked("LOGIN", NULL));
    ck_assert(table_blocked("area", NULL));
    ck_assert(table_blocked("word_relations", NULL));
    ck_assert(table_blocked("Credentials", NULL));
    ck_assert(table_blocked("email_item", NULL));
    ck_assert(!table_blocked("contact", NULL));
    ck_assert(!table_blocked("logins", NULL));
    char *items[] = {"Secret_Table", "other"};
    struct cfg_strings extra = {items, 2};
    ck_assert(table_blocked("secret_table", &extra));
    ck_assert(table_blocked("OTHER", &extra));
    ck_assert(table_blocked("login", &extra));
    ck_assert(!table_blocked("contact", &extra));
    struct fault f;
    fault_clear(&f);
    ck_assert_int_eq(table_refuse_blocked("contact", &extra, &f), 0);
    ck_assert_int_eq(f.code, FAULT_NONE);
    ck_assert_int_eq(table_refuse_blocked("OTHER", &extra, &f), -1);
    ck_assert_int_eq(f.code, FAULT_BLOCKED_TABLE);
    ck_assert_str_eq(f.table, "OTHER");
    ck_assert_str_eq(f.message, "table OTHER is blocked and is never mirrored");
}
END_TEST

/* ---- tables ---- */

struct column_spec {
    const char *name, *type;
    int nullable;
    const char *def;
};

static struct table_schema *make_table(const char *name, const struct column_spec *columns,
                                       size_t ncolumns, const char *const *pk, size_t npk)
{
    struct table_schema *t = arena_calloc(&arena, 1, sizeof(*t));
    t->name = arena_strdup(&arena, name);
    t->columns = arena_calloc(&arena, ncolumns ? ncolumns : 1, sizeof(*t->columns));
    t->ncolumns = ncolumns;
    for (size_t k = 0; k < ncolumns; k++) {
        t->columns[k].name = columns[k].name ? arena_strdup(&arena, columns[k].name) : NULL;
        t->columns[k].type_text = arena_strdup(&arena, columns[k].type);
        t->columns[k].nullable = columns[k].nullable;
        t->columns[k].default_text = columns[k].def ? arena_strdup(&arena, columns[k].def) : NULL;
    }
    t->pk_names = arena_calloc(&arena, npk ? npk : 1, sizeof(*t->pk_names));
    t->npk = npk;
    for (size_t k = 0; k < npk; k++)
        t->pk_names[k] = arena_strdup(&arena, pk[k]);
    return t;
}

#define TABLE(name, cols, pk) \
    make_table(name, cols, sizeof(cols) / sizeof(cols[0]), pk, sizeof(pk) / sizeof(pk[0]))

static struct table_schema *prepared(struct table_schema *t)
{
    schema_prepare(t, "Cust12345", NULL, &arena);
    return t;
}

static const struct column_spec contact_columns[] = {
    {"contact_id", "int", 0, NULL},
    {"name", "nvarchar(220)", 1, "(N'')"},
    {"registered", "datetime", 0, "(getutcdate())"},
    {"amount", "decimal(18,4)", 0, "((0))"},
};
static const char *const contact_pk[] = {"contact_id"};

START_TEST(test_hash_vectors)
{
    static const struct column_spec link_columns[] = {
        {"a", "int", 0, NULL}, {"b", "int", 0, NULL}, {"note", "varchar(10)", 1, NULL}};
    static const char *const link_pk[] = {"a", "b"};
    struct table_schema *link = prepared(TABLE("link", link_columns, link_pk));
    ck_assert_ptr_null(link->reject);
    ck_assert_str_eq(link->canonical, "a|int|notnull|\nb|int|notnull|\nnote|varchar(10)|null|\npk|a,b");
    ck_assert_str_eq(link->hash, "82bf0b724101bda6281ff50530eb43b758191951e3e37cbfb9525ca4dc2e4f99");

    struct table_schema *contact = prepared(TABLE("contact", contact_columns, contact_pk));
    ck_assert_ptr_null(contact->reject);
    ck_assert_str_eq(contact->hash, "41235f1f392599c0f11b842dfa7c699114117e7c98f63364942176d387d38083");
    ck_assert_int_eq(contact->columns[0].pk_position, 1);
    ck_assert_int_eq(contact->columns[1].pk_position, 0);
    ck_assert_uint_eq(contact->pk[0], 0);
    for (size_t k = 1; k < 4; k++)
        ck_assert_int_eq(contact->columns[k].has_default, 1);
    ck_assert_int_eq(contact->columns[0].has_default, 0);

    /* Case, spacing and type spelling do not change the canonical text. */
    static const struct column_spec spelled[] = {
        {"Contact_ID", "INT", 0, NULL},
        {"NAME", " nvarchar ( 220 ) ", 1, "  (N'')  "},
        {"Registered", "DateTime", 0, "(getutcdate())"},
        {"amount", "decimal(18, 4)", 0, "((0))"},
    };
    static const char *const spelled_pk[] = {"CONTACT_id"};
    struct table_schema *same = prepared(TABLE("Contact", spelled, spelled_pk));
    ck_assert_ptr_null(same->reject);
    ck_assert_str_eq(same->hash, contact->hash);
}
END_TEST

static void expect_reject(struct table_schema *t, const char *expected)
{
    schema_prepare(t, "Cust12345", NULL, &arena);
    ck_assert_msg(t->reject != NULL, "%s should be rejected (%s)", t->name, expected);
    ck_assert_str_eq(t->reject, expected);
}

START_TEST(test_reject_rules)
{
    static const struct column_spec one[] = {{"id", "int", 0, NULL}};
    static const char *const id_pk[] = {"id"};
    expect_reject(TABLE("1bad", one, id_pk), "name: invalid table name");
    expect_reject(TABLE("bad-name", one, id_pk), "name: invalid table name");
    expect_reject(TABLE("cust12345_MIRRORING", one, id_pk), "name: reserved table name");
    expect_reject(TABLE("SQLite_x", one, id_pk), "name: reserved table name");
    expect_reject(TABLE("_SOMIRROR_meta", one, id_pk), "name: reserved table name");
    ck_assert_ptr_null(prepared(TABLE("other_mirroring", one, id_pk))->reject);
    ck_assert_ptr_null(prepared(TABLE("sqlitex", one, id_pk))->reject);
    expect_reject(TABLE("Login", one, id_pk), "blocked: table is on the blocked list");
    /* More columns than SQL Server allows (SQLite would refuse the table, retryably). */
    struct column_spec *too_wide = arena_calloc(&arena, SQL_COLUMNS_MAX + 1, sizeof(*too_wide));
    for (size_t k = 0; k <= SQL_COLUMNS_MAX; k++) {
        char name[16];
        snprintf(name, sizeof(name), "c%zu", k);
        too_wide[k] = (struct column_spec){arena_strdup(&arena, name), "int", 0, NULL};
    }
    static const char *const c0_pk[] = {"c0"};
    expect_reject(make_table("wide", too_wide, SQL_COLUMNS_MAX + 1, c0_pk, 1),
                  "column shape: 1025 columns, more than SQL Server's 1024");
    ck_assert_ptr_null(prepared(make_table("wide", too_wide, SQL_COLUMNS_MAX, c0_pk, 1))->reject);

    char *items[] = {"extra_blocked"};
    struct cfg_strings extra = {items, 1};
    struct table_schema *t = TABLE("Extra_Blocked", one, id_pk);
    schema_prepare(t, "Cust12345", &extra, &arena);
    ck_assert_str_eq(t->reject, "blocked: table is on the blocked list");

    static const struct column_spec geo[] = {{"id", "int", 0, NULL}, {"g", "geography", 1, NULL}};
    expect_reject(TABLE("geo", geo, id_pk), "column shape: unsupported type geography");
    static const struct column_spec wide[] = {{"id", "int", 0, NULL}, {"s", "nvarchar(5000)", 1, NULL}};
    expect_reject(TABLE("wide", wide, id_pk), "column shape: nvarchar length 5000 out of range 1-4000");
    static const struct column_spec dup[] = {{"id", "int", 0, NULL}, {"ID", "int", 1, NULL}};
    expect_reject(TABLE("dup", dup, id_pk), "column shape: duplicate column ID");
    static const struct column_spec badcol[] = {{"id", "int", 0, NULL}, {"a b", "int", 1, NULL}};
    expect_reject(TABLE("badcol", badcol, id_pk), "name: invalid column name 'a b'");

    static const struct column_spec nullable_key[] = {{"x", "int", 1, NULL}};
    static const char *const x_pk[] = {"x"};
    expect_reject(TABLE("t", nullable_key, x_pk), "primary key: column x is nullable");
    expect_reject(make_table("t", one, 1, NULL, 0), "primary key: table has no primary key");
    static const char *const missing_pk[] = {"nope"};
    expect_reject(TABLE("t", one, missing_pk), "primary key: column nope is not in Columns");
    static const char *const twice_pk[] = {"id", "ID"};
    expect_reject(TABLE("t", one, twice_pk), "primary key: column ID is listed twice");
    expect_reject(make_table("t", NULL, 0, id_pk, 1), "column shape: no columns");

    static const struct column_spec bad_default[] = {{"id", "int", 0, NULL}, {"y", "int", 1, "(foo())"}};
    expect_reject(TABLE("t", bad_default, id_pk), "default: column y: cannot parse (foo()) (unknown name foo)");
}
END_TEST

START_TEST(test_defaults_left_out)
{
    static const struct column_spec cols[] = {
        {"id", "int", 0, NULL},
        {"small", "tinyint", 0, "((300))"},      /* does not fit: left out */
        {"nn", "int", 0, "(NULL)"},              /* NULL on NOT NULL: left out */
        {"n", "int", 1, "(NULL)"},
        {"when", "datetime", 1, "(getdate())"},
        {"empty", "int", 1, "   "},              /* an empty Default is none */
    };
    static const char *const pk[] = {"id"};
    struct table_schema *t = prepared(TABLE("t", cols, pk));
    ck_assert_ptr_null(t->reject);
    ck_assert_int_eq(t->columns[1].has_default, 0);
    ck_assert_int_eq(t->columns[2].has_default, 0);
    ck_assert_int_eq(t->columns[3].has_default, 1);
    ck_assert_int_eq(t->columns[4].has_default, 1);
    ck_assert_int_eq(t->columns[5].has_default, 0);
    ck_assert_ptr_null(t->columns[5].default_text);
    /* The canonical text keeps the default as sent even when the mirror leaves it out. */
    ck_assert_str_eq(t->canonical, "id|int|notnull|\nsmall|tinyint|notnull|((300))\n"
                                   "nn|int|notnull|(NULL)\nn|int|null|(NULL)\n"
                                   "when|datetime|null|(getdate())\nempty|int|null|\npk|id");
}
END_TEST

START_TEST(test_from_canonical)
{
    struct table_schema *contact = prepared(TABLE("contact", contact_columns, contact_pk));
    struct table_schema back;
    char err[256];
    ck_assert_int_eq(schema_from_canonical("contact", contact->canonical, &arena, &back, err,
                                           sizeof(err)), 0);
    ck_assert_str_eq(back.hash, contact->hash);
    ck_assert_str_eq(back.canonical, contact->canonical);
    ck_assert_uint_eq(back.ncolumns, 4);
    ck_assert_str_eq(back.columns[1].name, "name");
    ck_assert_int_eq(back.columns[1].type.kind, SQL_NVARCHAR);
    ck_assert_int_eq(back.columns[1].type.length, 220);
    ck_assert_int_eq(back.columns[1].nullable, 1);
    ck_assert_str_eq(back.columns[1].default_text, "(N'')");
    ck_assert_int_eq(back.columns[1].has_default, 1);
    ck_assert_int_eq(back.columns[2].def.kind, DEF_FUNCTION);
    ck_assert_ptr_null(back.columns[0].default_text);
    ck_assert_uint_eq(back.npk, 1);
    ck_assert_uint_eq(back.pk[0], 0);
    ck_assert_int_eq(back.columns[0].pk_position, 1);

    schema_canonicalize(&back, &arena);
    ck_assert_str_eq(back.canonical, contact->canonical);

    /* A type written with leading zeros keeps them, read back and canonicalised again. */
    static const struct column_spec padded[] = {
        {"id", "int", 0, NULL}, {"v", "Decimal ( 09 )", 1, NULL}};
    static const char *const padded_pk[] = {"id"};
    struct table_schema *zeros = prepared(TABLE("z", padded, padded_pk));
    ck_assert_str_eq(zeros->canonical, "id|int|notnull|\nv|decimal(09,0)|null|\npk|id");
    ck_assert_int_eq(schema_from_canonical("z", zeros->canonical, &arena, &back, err,
                                           sizeof(err)), 0);
    ck_assert_str_eq(back.canonical, zeros->canonical);
    ck_assert_int_eq(back.columns[1].type.precision, 9);
    schema_canonicalize(&back, &arena);
    ck_assert_str_eq(back.canonical, zeros->canonical);

    /* A column named pk and a default holding '|'. */
    const char *odd = "pk|int|notnull|\nv|varchar(5)|null|('a|b')\npk|pk";
    ck_assert_int_eq(schema_from_canonical("odd", odd, &arena, &back, err, sizeof(err)), 0);
    ck_assert_uint_eq(back.ncolumns, 2);
    ck_assert_str_eq(back.columns[1].def.text, "a|b");
    ck_assert_uint_eq(back.pk[0], 0);

    /* Defaults with line breaks (whitespace between tokens, and inside a string that even
     * mimics a key line): taken, kept as sent in the canonical text, read back whole. */
    static const struct column_spec broken[] = {{"id", "int", 0, "(\n0)"},
                                                {"y", "nvarchar(20)", 1, "(N'a\npk|id\r\nb')"}};
    static const char *const id_key[] = {"id"};
    struct table_schema *lines = prepared(TABLE("t", broken, id_key));
    ck_assert_ptr_null(lines->reject);
    ck_assert_str_eq(lines->canonical, "id|int|notnull|(\n0)\ny|nvarchar(20)|null|(N'a\npk|id\r\nb')\npk|id");
    ck_assert_int_eq(schema_from_canonical("t", lines->canonical, &arena, &back, err, sizeof(err)), 0);
    ck_assert_uint_eq(back.ncolumns, 2);
    ck_assert_str_eq(back.columns[0].default_text, "(\n0)");
    ck_assert_str_eq(back.columns[1].def.text, "a\npk|id\r\nb");
    ck_assert_uint_eq(back.npk, 1);
    ck_assert_uint_eq(back.pk[0], 0);
    ck_assert_str_eq(back.hash, lines->hash);

    ck_assert_int_eq(schema_from_canonical("x", "pk|a", &arena, &back, err, sizeof(err)), -1);
    ck_assert_int_eq(schema_from_canonical("x", "a|int|notnull|", &arena, &back, err, sizeof(err)), -1);
    ck_assert_int_eq(schema_from_canonical("x", "a|int|maybe|\npk|a", &arena, &back, err, sizeof(err)), -1);
    ck_assert_int_eq(schema_from_canonical("x", "a|geography|null|\npk|a", &arena, &back, err, sizeof(err)), -1);
    ck_assert_int_eq(schema_from_canonical("x", "a|int|notnull|\npk|b", &arena, &back, err, sizeof(err)), -1);
    ck_assert_int_eq(schema_from_canonical("x", "a|int|notnull|\npk|a,a", &arena, &back, err, sizeof(err)), -1);
}
END_TEST

/* ---- schema_plan ---- */

static const struct column_spec base_columns[] = {
    {"id", "int", 0, NULL},
    {"name", "nvarchar(50)", 1, NULL},
    {"amount", "decimal(18,4)", 0, "((0))"},
};
static const char *const base_pk[] = {"id"};

static struct table_schema *stored_base(void)
{
    struct table_schema *t = prepared(TABLE("t", base_columns, base_pk));
    struct table_schema *old = arena_calloc(&arena, 1, sizeof(*old));
    char err[256];
    ck_assert_int_eq(schema_from_canonical("t", t->canonical, &arena, old, err, sizeof(err)), 0);
    return old;
}

static enum table_change plan(const struct column_spec *columns, size_t ncolumns,
                              const char *const *pk, size_t npk, struct schema_diff *diff)
{
    struct table_schema *t = prepared(make_table("T", columns, ncolumns, pk, npk));
    ck_assert_ptr_null(t->reject);
    return schema_plan(t, stored_base(), &arena, diff);
}

#define PLAN(cols, diff) plan(cols, sizeof(cols) / sizeof(cols[0]), base_pk, 1, diff)

START_TEST(test_plan_created_unchanged)
{
    struct schema_diff diff;
    struct table_schema *t = prepared(TABLE("t", base_columns, base_pk));
    ck_assert_int_eq(schema_plan(t, NULL, &arena, &diff), CHANGE_CREATED);
    static const struct column_spec respelled[] = {
        {"ID", "INT", 0, NULL},
        {"Name", "nvarchar( 50 )", 1, NULL},
        {"amount", "decimal(18,4)", 0, " ((0)) "},
    };
    ck_assert_int_eq(PLAN(respelled, &diff), CHANGE_UNCHANGED);
    /* The same type with a leading zero is another canonical text: not Unchanged (4.2). */
    static const struct column_spec zero_padded[] = {
        {"id", "int", 0, NULL},
        {"name", "nvarchar(050)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"},
    };
    ck_assert_int_eq(PLAN(zero_padded, &diff), CHANGE_RECREATED);
}
END_TEST

START_TEST(test_plan_altered)
{
    struct schema_diff diff;
    static const struct column_spec add_nullable[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"extra", "int", 1, NULL}};
    ck_assert_int_eq(PLAN(add_nullable, &diff), CHANGE_ALTERED);
    ck_assert_uint_eq(diff.nadded, 1);
    ck_assert_uint_eq(diff.added[0], 3);
    ck_assert_uint_eq(diff.ndropped, 0);
    ck_assert_uint_eq(diff.ndefault_changed, 0);

    static const struct column_spec add_in_middle[] = {
        {"id", "int", 0, NULL}, {"extra", "int", 0, "((7))"},
        {"name", "nvarchar(50)", 1, NULL}, {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(PLAN(add_in_middle, &diff), CHANGE_ALTERED);
    ck_assert_uint_eq(diff.nadded, 1);
    ck_assert_uint_eq(diff.added[0], 1);

    static const struct column_spec add_string_default[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"code", "varchar(3)", 0, "('abc')"}};
    ck_assert_int_eq(PLAN(add_string_default, &diff), CHANGE_ALTERED);

    static const struct column_spec drop_column[] = {
        {"id", "int", 0, NULL}, {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(PLAN(drop_column, &diff), CHANGE_ALTERED);
    ck_assert_uint_eq(diff.ndropped, 1);
    ck_assert_uint_eq(diff.dropped[0], 1);
    ck_assert_uint_eq(diff.nadded, 0);

    static const struct column_spec default_changed[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, "(N'x')"},
        {"amount", "decimal(18,4)", 0, "((1))"}};
    ck_assert_int_eq(PLAN(default_changed, &diff), CHANGE_ALTERED);
    ck_assert_uint_eq(diff.ndefault_changed, 2);
    ck_assert_uint_eq(diff.default_changed[0], 1);
    ck_assert_uint_eq(diff.default_changed[1], 2);

    static const struct column_spec default_removed_and_drop[] = {
        {"id", "int", 0, NULL}, {"amount", "decimal(18,4)", 0, NULL}};
    ck_assert_int_eq(PLAN(default_removed_and_drop, &diff), CHANGE_ALTERED);
    ck_assert_uint_eq(diff.ndropped, 1);
    ck_assert_uint_eq(diff.ndefault_changed, 1);
    ck_assert_uint_eq(diff.default_changed[0], 1);
}
END_TEST

START_TEST(test_plan_recreated)
{
    struct schema_diff diff;
    static const struct column_spec type_changed[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(60)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(PLAN(type_changed, &diff), CHANGE_RECREATED);
    static const struct column_spec nullability_changed[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 0, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(PLAN(nullability_changed, &diff), CHANGE_RECREATED);
    static const struct column_spec reordered[] = {
        {"id", "int", 0, NULL}, {"amount", "decimal(18,4)", 0, "((0))"},
        {"name", "nvarchar(50)", 1, NULL}};
    ck_assert_int_eq(PLAN(reordered, &diff), CHANGE_RECREATED);
    static const struct column_spec add_and_drop[] = {
        {"id", "int", 0, NULL}, {"name2", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(PLAN(add_and_drop, &diff), CHANGE_RECREATED);
    static const struct column_spec add_function_default[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"at", "datetime", 0, "(getdate())"}};
    ck_assert_int_eq(PLAN(add_function_default, &diff), CHANGE_RECREATED);
    static const struct column_spec add_not_null_bare[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"n", "int", 0, NULL}};
    ck_assert_int_eq(PLAN(add_not_null_bare, &diff), CHANGE_RECREATED);
    static const struct column_spec add_not_null_unfit[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"n", "tinyint", 0, "((999))"}};
    ck_assert_int_eq(PLAN(add_not_null_unfit, &diff), CHANGE_RECREATED);
    static const struct column_spec add_not_null_null_default[] = {
        {"id", "int", 0, NULL}, {"name", "nvarchar(50)", 1, NULL},
        {"amount", "decimal(18,4)", 0, "((0))"}, {"n", "int", 0, "(NULL)"}};
    ck_assert_int_eq(PLAN(add_not_null_null_default, &diff), CHANGE_RECREATED);

    /* Key changes: another key column, or the key moved to another column. */
    static const char *const wider_pk[] = {"id", "amount"};
    ck_assert_int_eq(plan(base_columns, 3, wider_pk, 2, &diff), CHANGE_RECREATED);
    static const char *const amount_pk[] = {"amount"};
    ck_assert_int_eq(plan(base_columns, 3, amount_pk, 1, &diff), CHANGE_RECREATED);
    /* Dropping the key column changes the key. */
    static const struct column_spec key_dropped[] = {
        {"name", "nvarchar(50)", 1, NULL}, {"amount", "decimal(18,4)", 0, "((0))"}};
    ck_assert_int_eq(plan(key_dropped, 2, amount_pk, 1, &diff), CHANGE_RECREATED);
}
END_TEST

static Suite *schema_suite(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("schema");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_identifiers);
    tcase_add_test(tc, test_sqltype);
    tcase_add_test(tc, test_sqltype_canonical_text_keeps_digits);
    tcase_add_test(tc, test_sqltype_fields);
    tcase_add_test(tc, test_default_parse);
    tcase_add_test(tc, test_default_fits);
    tcase_add_test(tc, test_blocked);
    tcase_add_test(tc, test_hash_vectors);
    tcase_add_test(tc, test_reject_rules);
    tcase_add_test(tc, test_defaults_left_out);
    tcase_add_test(tc, test_from_canonical);
    tcase_add_test(tc, test_plan_created_unchanged);
    tcase_add_test(tc, test_plan_altered);
    tcase_add_test(tc, test_plan_recreated);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(schema_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
