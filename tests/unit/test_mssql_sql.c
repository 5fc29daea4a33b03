/* tests/unit/test_mssql_sql: test layer 1 of the SQL Server driver: golden text of the T-SQL
 * that store/mssql_sql.c generates (quoting of names with ], every type's spelling, defaults
 * rendered from the parsed default, CREATE/ALTER/DROP, the metadata statements, the staging
 * table and the set-based apply statements). No server is involved: this checks the text, not
 * that SQL Server accepts it (layer 3, test_store with SOMIRROR_TEST_STORE_DRIVER=mssql, does
 * that against a real server). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/schema.h"
#include "store/mssql_sql.h"
#include "tests/unit/schema_fixture.h"

static struct arena arena;
static struct buf out;

static void setup(void)
{
    arena_init(&arena);
    buf_init(&out);
}

static void teardown(void)
{
    buf_free(&out);
    arena_free(&arena);
}

/* cols: "name|type|null or notnull|default text (empty: none)"; pk: "a" or "a,b". */
static struct table_schema table_make(const char *name, const char *pk, const char *const *cols)
{
    struct cfg_strings none = {NULL, 0};
    struct table_schema t = schema_fixture_table(&arena, "acme", &none, name, pk, cols);
    ck_assert_msg(t.reject == NULL, "rejected: %s", t.reject ? t.reject : "");
    return t;
}

static const char *const contact_cols[] = {
    "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'')",
    "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))",
    "Photo|varbinary(max)|null|", "ts|rowversion|null|", NULL};

#define ck_text(expected) ck_assert_str_eq(out.data ? out.data : "", expected)

START_TEST(quoting)
{
    mssql_put_ident(&out, "odd]name]]");
    ck_text("[odd]]name]]]]]");
    buf_reset(&out);
    mssql_put_table(&out, "my]schema", "t]");
    ck_text("[my]]schema].[t]]]");
    buf_reset(&out);
    mssql_put_table(&out, NULL, "contact");
    ck_text("[contact]");
    buf_reset(&out);
    mssql_put_nstring(&out, "it's", 4);
    ck_text("N'it''s'");
    buf_reset(&out);
    mssql_drop_table(&out, "s]", "a]b");
    ck_text("IF OBJECT_ID(N'[s]]].[a]]b]', N'U') IS NOT NULL DROP TABLE [s]]].[a]]b];");
    buf_reset(&out);
    mssql_create_database(&out, "Mirror_a]b", NULL);
    ck_text("CREATE DATABASE [Mirror_a]]b]");
    buf_reset(&out);
    mssql_create_database(&out, "Mirror_x", "Latin1_General_100_CI_AS_SC");
    ck_text("CREATE DATABASE [Mirror_x] COLLATE Latin1_General_100_CI_AS_SC");
}
END_TEST

START_TEST(every_type)
{
    static const char *const cases[][2] = {
        {"bigint", "bigint"}, {"INT", "int"}, {"smallint", "smallint"}, {"tinyint", "tinyint"},
        {"bit", "bit"}, {"decimal", "decimal(18,0)"}, {"numeric(10)", "numeric(10,0)"},
        {"decimal(38,38)", "decimal(38,38)"}, {"money", "money"}, {"smallmoney", "smallmoney"},
        {"float", "float"}, {"float(24)", "real"}, {"real", "real"}, {"date", "date"},
        {"time", "time(7)"}, {"time(0)", "time(0)"}, {"datetime", "datetime"},
        {"datetime2(3)", "datetime2(3)"}, {"smalldatetime", "smalldatetime"},
        {"datetimeoffset", "datetimeoffset(7)"}, {"char", "varchar(1)"},
        {"varchar(max)", "varchar(max)"}, {"varchar(8000)", "varchar(8000)"},
        {"nchar(10)", "nvarchar(10)"}, {"nvarchar(max)", "nvarchar(max)"}, {"text", "text"},
        {"ntext", "ntext"}, {"binary(16)", "varbinary(16)"}, {"varbinary", "varbinary(1)"},
        {"varbinary(max)", "varbinary(max)"}, {"image", "image"},
        {"uniqueidentifier", "uniqueidentifier"}, {"xml", "nvarchar(max)"},
        {"timestamp", "binary(8)"}, {"rowversion", "binary(8)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sql_type t;
        char err[128];
        ck_assert_int_eq(sqltype_parse(cases[i][0], &t, err, sizeof(err)), 0);
        buf_reset(&out);
        mssql_put_type(&out, &t);
        ck_assert_msg(strcmp(out.data, cases[i][1]) == 0, "%s: got %s, want %s", cases[i][0],
                      out.data, cases[i][1]);
    }
}
END_TEST

START_TEST(defaults)
{
    static const char *const cols[] = {
        "k|int|notnull|", "n1|int|null|((-1))", "n2|float|null|(1.5e3)",
        "s1|varchar(20)|null|('it''s')", "s2|nvarchar(20)|null|(N'x]y')",
        "s3|nvarchar(20)|null|('plain')", "b1|varbinary(4)|null|(0x0aFF)",
        "b2|varbinary(4)|null|(0x)", "f1|datetime|null|(getdate())",
        "f2|datetimeoffset|null|(sysdatetimeoffset())", "f3|uniqueidentifier|null|(newid())",
        "z|int|null|(NULL)", "d1|date|null|('2026-01-02')",
        "g1|uniqueidentifier|null|(newsequentialid())", "g2|varchar(36)|null|(newsequentialid())",
        "n3|float|null|(1234567890123456789012345678901234567890)", "n4|float|null|(1.5e300)", NULL};
    static const char *const want[] = {
        NULL, "(-1)", "(1.5e3)", "('it''s')", "(N'x]y')", "(N'plain')", "(0x0aFF)", "(0x)",
        "(getdate())", "(sysdatetimeoffset())", "(newid())", "(NULL)", "('2026-01-02')",
        "(newsequentialid())", "(newid())", NULL, "(1.5e300)"};
    struct table_schema t = table_make("d", "k", cols);
    for (size_t k = 0; k < t.ncolumns; k++) {
        buf_reset(&out);
        int rc = mssql_put_default(&out, &t.columns[k]);
        if (!want[k]) {
            ck_assert_int_eq(rc, -1);
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_msg(strcmp(out.data, want[k]) == 0, "%s: got %s, want %s",
                      t.columns[k].name, out.data, want[k]);
    }
    /* the request text is never pasted: a parsed default with a damaged text is left out */
    struct column bad = t.columns[1];
    bad.def.text = "1); DROP TABLE x; --";
    buf_reset(&out);
    ck_assert_int_eq(mssql_put_default(&out, &bad), -1);
}
END_TEST

START_TEST(default_names)
{
    char a[MSSQL_NAME_MAX + 1], b[MSSQL_NAME_MAX + 1];
    mssql_default_name("Contact", "Name", a, sizeof(a));
    mssql_default_name("contact", "name", b, sizeof(b));
    ck_assert_str_eq(a, b);
    ck_assert_str_eq(a, "DF_contact_name_575ae4b0");
    mssql_default_name("a_b", "c", a, sizeof(a));
    mssql_default_name("a", "b_c", b, sizeof(b));
    ck_assert_str_ne(a, b);
    char longname[129];
    memset(longname, 'x', 128);
    longname[128] = '\0';
    mssql_default_name(longname, longname, a, sizeof(a));
    ck_assert_uint_le(strlen(a), MSSQL_NAME_MAX);
    ck_assert_uint_eq(strlen(a), 3 + 50 + 1 + 50 + 9);
}
END_TEST

START_TEST(create_table)
{
    struct table_schema t = table_make("Contact", "contact_id", contact_cols);
    mssql_create_table(&out, NULL, &t);
    ck_text("CREATE TABLE [Contact] ([contact_id] int NOT NULL, [name] nvarchar(220) NULL"
            " CONSTRAINT [DF_contact_name_575ae4b0] DEFAULT (N''), [registered] datetime NOT NULL"
            " CONSTRAINT [DF_contact_registered_0db3426f] DEFAULT (getutcdate()), [amount]"
            " decimal(18,4) NOT NULL CONSTRAINT [DF_contact_amount_8ff033bf] DEFAULT (0),"
            " [Photo] varbinary(max) NULL, [ts] binary(8) NULL, PRIMARY KEY ([contact_id]));");
    static const char *const link_cols[] = {"a|int|notnull|", "b|nvarchar(5)|notnull|",
                                            "note|varchar(10)|null|", NULL};
    struct table_schema link = table_make("link", "b,a", link_cols);
    buf_reset(&out);
    mssql_create_table(&out, "mirror", &link);
    ck_text("CREATE TABLE [mirror].[link] ([a] int NOT NULL, [b] nvarchar(5) NOT NULL,"
            " [note] varchar(10) NULL, PRIMARY KEY ([b], [a]));");
    buf_reset(&out);
    mssql_wipe_table(&out, "mirror", "link");
    ck_text("TRUNCATE TABLE [mirror].[link];");
}
END_TEST

START_TEST(alter_table)
{
    static const char *const old_cols[] = {"id|int|notnull|", "gone|int|null|((1))",
                                           "kept|int|null|((2))", NULL};
    static const char *const new_cols[] = {"id|int|notnull|", "kept|int|null|((3))",
                                           "added|nvarchar(5)|notnull|(N'a')", NULL};
    struct table_schema old_t = table_make("t", "id", old_cols);
    struct table_schema new_t = table_make("T", "id", new_cols);
    size_t added[] = {2}, dropped[] = {1}, changed[] = {1};
    struct schema_diff diff = {added, 1, dropped, 1, changed, 1};
    mssql_alter_table(&out, NULL, &old_t, &new_t, &diff);
    char add_name[MSSQL_NAME_MAX + 1], kept_name[MSSQL_NAME_MAX + 1];
    mssql_default_name("t", "added", add_name, sizeof(add_name));
    mssql_default_name("t", "kept", kept_name, sizeof(kept_name));
    struct buf want = BUF_INIT;
    /* a dropped column's default (under any name), indexes and statistics go first; a changed
     * default's old constraint, under any name, too */
#define XML_END " FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), N'');\n"
#define DEFAULTS(column)                                                                           \
    "SET @somirror_drop += ISNULL((SELECT N'ALTER TABLE [t] DROP CONSTRAINT ' + QUOTENAME(d.name) + N';'" \
    " FROM sys.default_constraints d JOIN sys.columns c ON c.object_id = d.parent_object_id"        \
    " AND c.column_id = d.parent_column_id WHERE d.parent_object_id = OBJECT_ID(N'[t]')"           \
    " AND c.name = N'" column "'" XML_END
    buf_printf(&want,
               "DECLARE @somirror_drop nvarchar(max);\n"
               "ALTER TABLE [t] ADD [added] nvarchar(5) NOT NULL CONSTRAINT [%s] DEFAULT (N'a');\n"
               "SET @somirror_drop = N'';\n"
               DEFAULTS("gone")
               "SET @somirror_drop += ISNULL((SELECT N'DROP INDEX ' + QUOTENAME(i.name) + N' ON [t];'"
               " FROM sys.indexes i WHERE i.object_id = OBJECT_ID(N'[t]') AND i.is_primary_key = 0"
               " AND i.is_unique_constraint = 0 AND EXISTS (SELECT 1 FROM sys.index_columns x"
               " JOIN sys.columns c ON c.object_id = x.object_id AND c.column_id = x.column_id"
               " WHERE x.object_id = i.object_id AND x.index_id = i.index_id AND c.name = N'gone')" XML_END
               "SET @somirror_drop += ISNULL((SELECT N'DROP STATISTICS [t].' + QUOTENAME(s.name) + N';'"
               " FROM sys.stats s WHERE s.object_id = OBJECT_ID(N'[t]') AND s.user_created = 1"
               " AND EXISTS (SELECT 1 FROM sys.stats_columns x JOIN sys.columns c"
               " ON c.object_id = x.object_id AND c.column_id = x.column_id"
               " WHERE x.object_id = s.object_id AND x.stats_id = s.stats_id AND c.name = N'gone')" XML_END
               "EXEC sp_executesql @somirror_drop;\n"
               "ALTER TABLE [t] DROP COLUMN [gone];\n"
               "SET @somirror_drop = N'';\n"
               DEFAULTS("kept")
               "EXEC sp_executesql @somirror_drop;\n"
               "ALTER TABLE [t] ADD CONSTRAINT [%s] DEFAULT (3) FOR [kept];\n",
               add_name, kept_name);
#undef XML_END
#undef DEFAULTS
    ck_text(want.data);
    buf_free(&want);
    /* a default removed: only the drop */
    static const char *const plain_cols[] = {"id|int|notnull|", "kept|int|null|", NULL};
    struct table_schema plain = table_make("t", "id", plain_cols);
    struct schema_diff only_default = {NULL, 0, NULL, 0, changed, 1};
    buf_reset(&out);
    mssql_alter_table(&out, "s", &old_t, &plain, &only_default);
    ck_assert_ptr_null(strstr(out.data, "ADD"));
    ck_assert_ptr_nonnull(strstr(out.data, "ALTER TABLE [s].[t] DROP CONSTRAINT"));
    struct schema_diff nothing = {NULL, 0, NULL, 0, NULL, 0};
    buf_reset(&out);
    mssql_alter_table(&out, NULL, &old_t, &plain, &nothing);
    ck_assert_uint_eq(out.len, 0);
}
END_TEST

START_TEST(metadata)
{
    mssql_meta_create(&out, NULL, "acme_mirroring");
    ck_text("IF OBJECT_ID(N'[acme_mirroring]', N'U') IS NULL CREATE TABLE [acme_mirroring]"
            " ([tablename] nvarchar(128) NOT NULL PRIMARY KEY, [schema] nvarchar(max) NOT NULL,"
            " [schemahash] char(64) NOT NULL, [lsn] bigint NOT NULL,"
            " [updated] datetime2(3) NOT NULL);");
    buf_reset(&out);
    mssql_meta_select(&out, "m", "acme_mirroring");
    ck_text("SELECT [tablename], [schema], [schemahash], [lsn], CAST(DATEDIFF(day, '19700101',"
            " [updated]) AS bigint) * 86400 + DATEDIFF(second, CAST([updated] AS date),"
            " [updated]) FROM [m].[acme_mirroring] ORDER BY [tablename];");
    buf_reset(&out);
    mssql_meta_put_sql(&out, NULL, "acme_mirroring");
    ck_text("UPDATE [acme_mirroring] SET [schema] = @s, [schemahash] = @h, [lsn] = @l,"
            " [updated] = SYSUTCDATETIME() WHERE [tablename] = @t; IF @@ROWCOUNT = 0 INSERT"
            " INTO [acme_mirroring] ([tablename], [schema], [schemahash], [lsn], [updated])"
            " VALUES (@t, @s, @h, @l, SYSUTCDATETIME());");
    buf_reset(&out);
    mssql_meta_delete_sql(&out, NULL, "acme_mirroring");
    ck_text("DELETE FROM [acme_mirroring] WHERE [tablename] = @t;");
    buf_reset(&out);
    mssql_drop_database(&out, "Mirror_acme");
    ck_text("IF DB_ID(@db) IS NOT NULL BEGIN ALTER DATABASE [Mirror_acme] SET SINGLE_USER WITH"
            " ROLLBACK IMMEDIATE; BEGIN TRY DROP DATABASE [Mirror_acme]; END TRY BEGIN CATCH"
            " ALTER DATABASE [Mirror_acme] SET MULTI_USER; THROW; END CATCH; END");
}
END_TEST

START_TEST(staging)
{
    struct table_schema t = table_make("Contact", "contact_id", contact_cols);
    mssql_stage_create(&out, &t);
    ck_text("CREATE TABLE #somirror_x ([__seq] int NOT NULL, [__op] char(1) NOT NULL, [__e]"
            " varchar(6) NULL, [c1] bigint NULL, [c2] varbinary(440) NULL, [c3] varbinary(128)"
            " NULL, [c4] varbinary(128) NULL, [c5] varbinary(max) NULL, [c6] varbinary(8)"
            " NULL);");
    buf_reset(&out);
    mssql_stage_apply(&out, NULL, &t, 1, 1);
    ck_text("WITH d AS (SELECT ROW_NUMBER() OVER (PARTITION BY CAST(s.[c1] AS int) ORDER BY"
            " s.[__seq] DESC) AS [__rn] FROM #somirror_x AS s) DELETE FROM d WHERE [__rn] > 1;\n"
            "UPDATE t SET [name] = CASE WHEN SUBSTRING(s.[__e], 2, 1) = '1' THEN CAST(N'' AS"
            " nvarchar(220)) ELSE CAST(CAST(s.[c2] AS nvarchar(220)) AS nvarchar(220)) END, [registered] ="
            " CAST(CAST(s.[c3] AS nvarchar(64)) AS datetime), [amount] = CAST(CAST(s.[c4] AS nvarchar(64)) AS decimal(18,4)), [Photo] ="
            " CASE WHEN SUBSTRING(s.[__e], 5, 1) = '1' THEN CAST(0x AS varbinary(max)) ELSE"
            " CAST(s.[c5] AS varbinary(max)) END, [ts] = CAST(s.[c6] AS binary(8)) FROM"
            " [Contact] AS t INNER JOIN #somirror_x AS s ON t.[contact_id] = CAST(s.[c1] AS int)"
            " WHERE s.[__op] = 'U';\n"
            "INSERT INTO [Contact] ([contact_id], [name], [registered], [amount], [Photo], [ts])"
            " SELECT CAST(s.[c1] AS int), CASE WHEN SUBSTRING(s.[__e], 2, 1) = '1' THEN"
            " CAST(N'' AS nvarchar(220)) ELSE CAST(CAST(s.[c2] AS nvarchar(220)) AS nvarchar(220)) END, CAST(CAST(s.[c3] AS nvarchar(64)) AS"
            " datetime), CAST(CAST(s.[c4] AS nvarchar(64)) AS decimal(18,4)), CASE WHEN SUBSTRING(s.[__e], 5, 1) = '1'"
            " THEN CAST(0x AS varbinary(max)) ELSE CAST(s.[c5] AS varbinary(max)) END,"
            " CAST(s.[c6] AS binary(8)) FROM #somirror_x AS s WHERE s.[__op] = 'U' AND NOT"
            " EXISTS (SELECT 1 FROM [Contact] AS t WHERE t.[contact_id] = CAST(s.[c1] AS int));\n"
            "DELETE t FROM [Contact] AS t INNER JOIN #somirror_x AS s ON t.[contact_id] ="
            " CAST(s.[c1] AS int) WHERE s.[__op] = 'D';\n"
            "DROP TABLE #somirror_x;");
}
END_TEST

START_TEST(staging_key_only_and_text_types)
{
    static const char *const cols[] = {"a|varchar(10)|notnull|", "b|bigint|notnull|",
                                       "t|text|null|", "g|uniqueidentifier|null|",
                                       "f|real|null|", NULL};
    struct table_schema t = table_make("k", "a,b", cols);
    mssql_stage_create(&out, &t);
    ck_text("CREATE TABLE #somirror_x ([__seq] int NOT NULL, [__op] char(1) NOT NULL, [__e]"
            " varchar(5) NULL, [c1] varbinary(20) NULL, [c2] bigint NULL, [c3] varbinary(max)"
            " NULL, [c4] varbinary(128) NULL, [c5] float NULL);");
    buf_reset(&out);
    mssql_stage_apply(&out, "s", &t, 0, 1);
    ck_text("WITH d AS (SELECT ROW_NUMBER() OVER (PARTITION BY CASE WHEN SUBSTRING(s.[__e], 1,"
            " 1) = '1' THEN CAST(N'' AS varchar(10)) ELSE CAST(CAST(s.[c1] AS nvarchar(10)) AS varchar(10)) END,"
            " CAST(s.[c2] AS bigint) ORDER BY s.[__seq] DESC) AS [__rn] FROM #somirror_x AS s)"
            " DELETE FROM d WHERE [__rn] > 1;\n"
            "DELETE t FROM [s].[k] AS t INNER JOIN #somirror_x AS s ON t.[a] = CASE WHEN"
            " SUBSTRING(s.[__e], 1, 1) = '1' THEN CAST(N'' AS varchar(10)) ELSE CAST(CAST(s.[c1] AS nvarchar(10)) AS"
            " varchar(10)) END AND t.[b] = CAST(s.[c2] AS bigint) WHERE s.[__op] = 'D';\n"
            "DROP TABLE #somirror_x;");
    buf_reset(&out);
    mssql_stage_apply(&out, NULL, &t, 1, 0);
    ck_assert_ptr_nonnull(strstr(out.data, "[t] = CASE WHEN SUBSTRING(s.[__e], 3, 1) = '1' THEN"
                                           " CAST(N'' AS varchar(max)) ELSE CAST(CAST(s.[c3] AS nvarchar(max)) AS"
                                           " varchar(max)) END"));
    ck_assert_ptr_nonnull(strstr(out.data, "[f] = CAST(s.[c5] AS real)"));
    ck_assert_ptr_null(strstr(out.data, "DELETE t"));
}
END_TEST

static Suite *mssql_sql_suite(void)
{
    Suite *s = suite_create("mssql_sql");
    TCase *tc = tcase_create("golden");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, quoting);
    tcase_add_test(tc, every_type);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, default_names);
    tcase_add_test(tc, create_table);
    tcase_add_test(tc, alter_table);
    tcase_add_test(tc, metadata);
    tcase_add_test(tc, staging);
    tcase_add_test(tc, staging_key_only_and_text_types);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mssql_sql_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
