/* tests/unit/test_task: somirror-task's library: gen (deterministic, every table and type, every
 * value valid for its column), provision (idempotent, what the change tables record, versions,
 * retention, migration of the older change-table layout), churn, verify (equal copy in the
 * mirror's storage forms, then tampered: values, rows, tables, columns, recorded schema),
 * RowData calls split at the batch size (parsed back with the receiver's parser), row ops
 * relative to the receiver's position, and the version read and the rows sharing one
 * snapshot. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "proto/schema.h"
#include "proto/soap.h"
#include "proto/value.h"
#include "task/task.h"

static char workdir[256];

static void make_workdir(void)
{
    snprintf(workdir, sizeof workdir, "/tmp/test_task.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(workdir));
    log_set_level(LOG_LVL_WARN);
}

static void remove_workdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *path_in(const char *name)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", workdir, name);
    return p;
}

static const char *generate(const char *name, long scale, uint64_t seed)
{
    const char *path = path_in(name);
    char err[512] = "";
    struct gen_options o = {path, scale, seed, 1};
    ck_assert_msg(gen_run(&o, err, sizeof err) == 0, "gen: %s", err);
    return path;
}

/* generate, then change tracking provisioned (as `somirror-task provision` does). */
static const char *generate_tracked(const char *name, long scale, uint64_t seed)
{
    const char *path = generate(name, scale, seed);
    char err[512] = "";
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "provision: %s", err);
    return path;
}

static void digest_of(const char *path, char hex[65])
{
    char err[512] = "";
    ck_assert_msg(verify_source_digest(path, hex, err, sizeof err) == 0, "digest: %s", err);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char err[512] = "";
    ck_assert_msg(sql_exec(db, sql, err, sizeof err) == 0, "%s: %s", sql, err);
}

/* exec_ok on the database file at path. */
static void exec_in(const char *path, const char *sql)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, sql);
    sqlite3_close(db);
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

/* ---- gen ---- */

START_TEST(gen_is_deterministic)
{
    char a[65], b[65], c[65];
    digest_of(generate("a.db", 40, 5), a);
    digest_of(generate("b.db", 40, 5), b);
    digest_of(generate("c.db", 40, 6), c);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
}
END_TEST

START_TEST(gen_refuses_existing_file_without_force)
{
    const char *path = generate("x.db", 5, 1);
    char err[512] = "";
    struct gen_options o = {path, 5, 1, 0};
    ck_assert_int_eq(gen_run(&o, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "exists"));
}
END_TEST

START_TEST(gen_has_crm_tables_and_blocked_ones)
{
    struct source src;
    char err[512] = "";
    ck_assert_int_eq(source_open(&src, generate("t.db", 20, 1), 0, err, sizeof err), 0);
    size_t mirrored = 0, blocked = 0;
    for (size_t i = 0; i < src.ntables; i++) {
        mirrored += task_table_mirrored(src.tables[i].name, NULL);
        if (table_blocked(src.tables[i].name, NULL)) {
            blocked++;
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", src.tables[i].name);
            ck_assert_int_gt(query_int(src.db, sql), 0);
        }
    }
    ck_assert_uint_ge(mirrored, 12);
    ck_assert_uint_ge(blocked, 3);
    static const char *const needed[] = {"contact", "person", "appointment", "sale", "project",
                                         "document", "text", "udcontactsmall", "associate",
                                         "category", "country", "contact_category", "project_member"};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        ck_assert_msg(source_find(&src, needed[i]) != NULL, "table %s missing", needed[i]);
    ck_assert_uint_eq(source_find(&src, "contact_category")->npk, 2);
    /* Every type kind of protocol section 5 appears in some column. */
    int seen[SQL_TIMESTAMP + 1] = {0};
    int max_nvarchar = 0;
    for (size_t i = 0; i < src.ntables; i++)
        for (size_t c = 0; c < src.tables[i].ncolumns; c++) {
            const struct sql_type *t = &src.tables[i].columns[c].type;
            seen[t->kind] = 1;
            max_nvarchar |= t->kind == SQL_NVARCHAR && t->length == SQL_LEN_MAX;
        }
    for (int k = 0; k <= SQL_TIMESTAMP; k++)
        ck_assert_msg(seen[k], "no column of type kind %d", k);
    ck_assert(max_nvarchar);
    source_close(&src);
}
END_TEST

/* Checks every value of every table, as the task formats it, against its column. Returns how
 * many values were sent as <B>. */
static long check_all_values(const char *path)
{
    struct source src;
    char err[512] = "";
    ck_assert_int_eq(source_open(&src, path, 0, err, sizeof err), 0);
    long base64 = 0, nulls = 0, empty = 0, checked = 0;
    for (size_t i = 0; i < src.ntables; i++) {
        const struct table_schema *t = &src.tables[i];
        struct rowdata_cursor cur;
        ck_assert_int_eq(rowdata_open(&cur, src.db, t, ROWDATA_FULL, 0, 0, err, sizeof err), 0);
        struct arena arena;
        arena_init(&arena);
        while (sqlite3_step(cur.stmt) == SQLITE_ROW) {
            for (size_t c = 0; c < t->ncolumns; c++) {
                struct raw_value raw;
                struct value v;
                rowdata_format_value(&t->columns[c], cur.stmt, (int)c, &arena, &raw);
                ck_assert_msg(value_check(&t->columns[c].type, t->columns[c].nullable, &raw, &arena,
                                          &v, err, sizeof err) == 0,
                              "%s.%s: %s", t->name, t->columns[c].name, err);
                base64 += raw.kind == RAW_BASE64 && sqltype_is_string(t->columns[c].type.kind);
                nulls += raw.kind == RAW_NULL;
                empty += raw.kind == RAW_TEXT && raw.len == 0;
                checked++;
            }
            arena_free(&arena);
        }
        rowdata_close(&cur);
    }
    source_close(&src);
    ck_assert_int_gt(nulls, 0);
    ck_assert_int_gt(empty, 0);
    ck_assert_int_gt(checked, 1000);
    return base64;
}

START_TEST(gen_values_pass_value_check)
{
    /* Control characters force some strings into <B>. */
    ck_assert_int_gt(check_all_values(generate("v.db", 60, 11)), 0);
}
END_TEST

/* ---- provision ---- */

/* ct_table_tracked of table name in the source at path, with the source's own schema. */
static int tracked(const char *path, const char *name)
{
    struct source src;
    char err[512] = "";
    ck_assert_msg(source_open(&src, path, 0, err, sizeof err) == 0, "%s", err);
    const struct table_schema *t = source_find(&src, name);
    ck_assert_ptr_nonnull(t);
    int yes = ct_table_tracked(src.db, t);
    source_close(&src);
    return yes;
}

START_TEST(provision_is_idempotent_and_records_changes)
{
    const char *path = generate("p.db", 10, 1);
    char err[512] = "";
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert(tracked(path, "contact"));
    ck_assert(!tracked(path, "credentials"));
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                   "AND tbl_name = 'contact'"), 4);
    int64_t v0, min0;
    ck_assert_int_eq(ct_versions(db, &v0, &min0, err, sizeof err), 0);

    exec_ok(db, "INSERT INTO category (category_id, name, deleted) VALUES (1000, 'new', 0)");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'I' FROM _somirror_ct_category WHERE category_id = 1000"), 1);
    int64_t v1 = query_int(db, "SELECT _somirror_version FROM _somirror_ct_category WHERE category_id = 1000");
    ck_assert_int_gt(v1, v0);
    ck_assert_int_eq(query_int(db, "SELECT _somirror_inserted FROM _somirror_ct_category WHERE category_id = 1000"), v1);
    /* an update records U with a newer version and keeps the insert version */
    exec_ok(db, "UPDATE category SET name = 'renamed' WHERE category_id = 1000");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'U' FROM _somirror_ct_category WHERE category_id = 1000"), 1);
    int64_t v2 = query_int(db, "SELECT _somirror_version FROM _somirror_ct_category WHERE category_id = 1000");
    ck_assert_int_gt(v2, v1);
    ck_assert_int_eq(query_int(db, "SELECT _somirror_inserted FROM _somirror_ct_category WHERE category_id = 1000"), v1);
    /* an untouched row updated is U, with no insert version */
    exec_ok(db, "UPDATE category SET name = 'x' WHERE category_id = 2");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'U' AND _somirror_inserted IS NULL "
                                   "FROM _somirror_ct_category WHERE category_id = 2"), 1);
    /* delete is D, one row per key */
    exec_ok(db, "DELETE FROM category WHERE category_id = 1000");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'D' FROM _somirror_ct_category WHERE category_id = 1000"), 1);
    int64_t v3 = query_int(db, "SELECT _somirror_version FROM _somirror_ct_category WHERE category_id = 1000");
    ck_assert_int_gt(v3, v2);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM _somirror_ct_category WHERE category_id = 1000"), 1);
    /* delete then insert again is I, with the new insert version */
    exec_ok(db, "INSERT INTO category (category_id, name, deleted) VALUES (1000, 'back', 0)");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'I' FROM _somirror_ct_category WHERE category_id = 1000"), 1);
    ck_assert_int_gt(query_int(db, "SELECT _somirror_inserted FROM _somirror_ct_category WHERE category_id = 1000"), v3);
    /* a key update: D for the old key, I for the new one */
    exec_ok(db, "UPDATE category SET category_id = 2000 WHERE category_id = 3");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'D' FROM _somirror_ct_category WHERE category_id = 3"), 1);
    ck_assert_int_eq(query_int(db, "SELECT _somirror_op = 'I' AND _somirror_inserted = _somirror_version "
                                   "FROM _somirror_ct_category WHERE category_id = 2000"), 1);
    /* composite keys */
    exec_ok(db, "DELETE FROM contact_category WHERE contact_id = 1 AND category_id = 1");
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM _somirror_ct_contact_category WHERE "
                                   "contact_id = 1 AND category_id = 1 AND _somirror_op = 'D'"), 1);
    /* provisioning again keeps what was recorded, and starts no table's tracking again */
    int64_t before = query_int(db, "SELECT v FROM _somirror_ct_version");
    sqlite3_close(db);
    ck_assert_int_eq(ct_provision(path, -1, err, sizeof err), 0);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM _somirror_ct_category"), 4);
    ck_assert_int_eq(query_int(db, "SELECT v FROM _somirror_ct_version"), before);
    ck_assert_int_lt(ct_valid_from(db, "category"), before + 1);
    /* a trigger gone (a rebuilt table loses them all): not tracked until provisioned, which
     * starts its tracking again past every change recorded */
    exec_ok(db, "DROP TRIGGER _somirror_td_category");
    ck_assert(!tracked(path, "category"));
    ck_assert(tracked(path, "contact"));
    sqlite3_close(db);
    ck_assert_int_eq(ct_provision(path, -1, err, sizeof err), 0);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert(tracked(path, "category"));
    ck_assert_int_eq(ct_valid_from(db, "category"), before + 1);
    ck_assert_int_eq(query_int(db, "SELECT v FROM _somirror_ct_version"), before + 1);
    sqlite3_close(db);
}
END_TEST

/* A table renamed away and back, provisioned in between: it keeps only the triggers made for
 * it, so that a change is recorded once, in its own change table. */
START_TEST(provision_drops_the_triggers_of_another_name)
{
    const char *path = path_in("renamed.db");
    exec_in(path, "CREATE TABLE u (id int NOT NULL PRIMARY KEY, v int); INSERT INTO u VALUES (1, 1)");
    char err[512] = "";
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    exec_in(path, "ALTER TABLE u RENAME TO u2");
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    exec_in(path, "ALTER TABLE u2 RENAME TO u");
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"), 4);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND "
                                   "tbl_name = 'u' AND name LIKE '\\_somirror\\_t_\\_u' ESCAPE '\\'"), 4);
    ck_assert(tracked(path, "u"));
    int64_t before = query_int(db, "SELECT v FROM _somirror_ct_version");
    exec_ok(db, "UPDATE u SET v = 2 WHERE id = 1");
    ck_assert_int_eq(query_int(db, "SELECT v FROM _somirror_ct_version"), before + 1);
    ck_assert_int_eq(query_int(db, "SELECT _somirror_version FROM _somirror_ct_u WHERE id = 1"), before + 1);
    sqlite3_close(db);
}
END_TEST

START_TEST(retention_moves_min_valid)
{
    const char *path = generate_tracked("r.db", 10, 1);
    char err[512] = "";
    ck_assert_msg(churn_run(path, 50, 9, err, sizeof err) == 0, "%s", err);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    int64_t current, min_valid;
    ck_assert_int_eq(ct_versions(db, &current, &min_valid, err, sizeof err), 0);
    ck_assert_int_eq(min_valid, 0);
    ck_assert_int_gt(current, 10);
    sqlite3_close(db);
    ck_assert_int_eq(ct_provision(path, 10, err, sizeof err), 0);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    int64_t current2, min_valid2;
    ck_assert_int_eq(ct_versions(db, &current2, &min_valid2, err, sizeof err), 0);
    ck_assert_int_eq(current2, current);
    ck_assert_int_eq(min_valid2, current - 10);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM _somirror_ct_contact WHERE _somirror_version <= "
                                   "(SELECT v FROM _somirror_ct_min_valid)"), 0);
    /* a damaged file's version far below zero, and the largest retention: nothing to clean
     * (current - retention would overflow) */
    int64_t kept = query_int(db, "SELECT count(*) FROM _somirror_ct_contact");
    exec_ok(db, "UPDATE _somirror_ct_version SET v = -9223372036854775807");
    sqlite3_close(db);
    ck_assert_int_eq(ct_provision(path, LONG_MAX, err, sizeof err), 0);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM _somirror_ct_contact"), kept);
    sqlite3_close(db);
}
END_TEST

START_TEST(provision_migrates_older_change_tables)
{
    const char *path = generate_tracked("m.db", 10, 1);
    char err[512] = "";
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "INSERT INTO category (category_id, name, deleted) VALUES (1000, 'new', 0);"
                "UPDATE category SET name = 'x' WHERE category_id = 2");
    /* the older layout: no insert version, and triggers that do not write one */
    exec_ok(db, "DROP TRIGGER _somirror_ti_category; DROP TRIGGER _somirror_tu_category;"
                "DROP TRIGGER _somirror_tk_category; DROP TRIGGER _somirror_td_category;"
                "ALTER TABLE _somirror_ct_category DROP COLUMN _somirror_inserted");
    ck_assert(!tracked(path, "category"));
    ck_assert(tracked(path, "contact"));
    sqlite3_close(db);
    ck_assert_msg(ct_provision(path, -1, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert(tracked(path, "category"));
    ck_assert_int_eq(query_int(db, "SELECT _somirror_inserted = _somirror_version FROM "
                                   "_somirror_ct_category WHERE category_id = 1000"), 1);
    ck_assert_int_eq(query_int(db, "SELECT _somirror_inserted IS NULL FROM _somirror_ct_category "
                                   "WHERE category_id = 2"), 1);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                   "AND tbl_name = 'category'"), 4);
    exec_ok(db, "INSERT INTO category (category_id, name, deleted) VALUES (1001, 'new', 0)");
    ck_assert_int_eq(query_int(db, "SELECT _somirror_inserted = _somirror_version FROM "
                                   "_somirror_ct_category WHERE category_id = 1001"), 1);
    sqlite3_close(db);
}
END_TEST

START_TEST(churn_changes_rows)
{
    const char *path = generate_tracked("ch.db", 20, 1);
    char before[65], after[65], err[512] = "";
    digest_of(path, before);
    ck_assert_msg(churn_run(path, 100, 4, err, sizeof err) == 0, "%s", err);
    digest_of(path, after);
    ck_assert_str_ne(before, after);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_gt(query_int(db, "SELECT v FROM _somirror_ct_version"), 50);
    sqlite3_close(db);
    /* churned values are still valid for their columns */
    check_all_values(path);
}
END_TEST

/* ---- verify ---- */

/* Records t's schema in the mirror's metadata table, as the receiver does (canonical text). */
static void record_schema(sqlite3 *db, const struct table_schema *t)
{
    struct arena arena;
    arena_init(&arena);
    struct table_schema sent = *t;
    sent.columns = arena_calloc(&arena, t->ncolumns, sizeof *sent.columns);
    memcpy(sent.columns, t->columns, t->ncolumns * sizeof *sent.columns);
    schema_prepare(&sent, "T1", NULL, &arena);
    ck_assert_ptr_nonnull(sent.canonical);
    sqlite3_stmt *stmt = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO m.T1_mirroring VALUES (?1, ?2)", -1, &stmt,
                                        NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, sent.canonical, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    arena_free(&arena);
}

/* Copies the mirrored tables of src into a new file in the SQLite mirror's forms: datetime
 * with ' ', uniqueidentifier in lower case; plus the metadata table with their schemas. */
static const char *make_mirror(const char *source_path, const char *name)
{
    const char *mirror = path_in(name);
    unlink(mirror);
    sqlite3 *created;
    ck_assert_int_eq(sqlite3_open(mirror, &created), SQLITE_OK);
    sqlite3_close(created);
    struct source src;
    char err[512] = "";
    ck_assert_int_eq(source_open(&src, source_path, 1, err, sizeof err), 0);
    struct buf sql = BUF_INIT;
    buf_printf(&sql, "ATTACH '%s' AS m; CREATE TABLE m.T1_mirroring (tablename TEXT PRIMARY KEY "
               "COLLATE NOCASE, schema TEXT NOT NULL);", mirror);
    exec_ok(src.db, sql.data);
    buf_reset(&sql);
    for (size_t i = 0; i < src.ntables; i++) {
        const struct table_schema *t = &src.tables[i];
        if (!task_table_mirrored(t->name, NULL))
            continue;
        buf_printf(&sql, "CREATE TABLE m.\"%s\" AS SELECT ", t->name);
        for (size_t c = 0; c < t->ncolumns; c++) {
            const char *col = t->columns[c].name;
            enum sql_kind kind = t->columns[c].type.kind;
            if (c)
                buf_puts(&sql, ", ");
            if (kind == SQL_DATETIME || kind == SQL_DATETIME2 || kind == SQL_SMALLDATETIME ||
                kind == SQL_DATETIMEOFFSET)
                buf_printf(&sql, "replace(\"%s\", 'T', ' ') AS \"%s\"", col, col);
            else if (kind == SQL_UNIQUEIDENTIFIER)
                buf_printf(&sql, "lower(\"%s\") AS \"%s\"", col, col);
            else
                buf_printf(&sql, "\"%s\"", col);
        }
        buf_printf(&sql, " FROM main.\"%s\";", t->name);
        record_schema(src.db, t);
    }
    buf_puts(&sql, "DETACH m;");
    exec_ok(src.db, sql.data);
    buf_free(&sql);
    source_close(&src);
    return mirror;
}

static int verify_quietly(const char *source, const char *mirror)
{
    struct verify_options o = {source, mirror, "T1", NULL};
    FILE *sink = tmpfile();
    int rc = verify_run(&o, sink);
    fclose(sink);
    return rc;
}

START_TEST(verify_passes_on_copy_and_fails_after_tampering)
{
    char source[512];   /* path_in's buffers are reused */
    snprintf(source, sizeof source, "%s", generate("vs.db", 30, 2));
    const char *mirror = make_mirror(source, "vm.db");
    ck_assert_int_eq(verify_quietly(source, mirror), 0);

    /* a decimal with extra fraction zeros is the same number */
    exec_in(mirror, "UPDATE sale SET amount = amount || '00' WHERE sale_id = 9 AND amount LIKE '%.%'");
    ck_assert_int_eq(verify_quietly(source, mirror), 0);

    exec_in(mirror, "UPDATE person SET firstname = 'tampered' WHERE person_id = 5");
    ck_assert_int_eq(verify_quietly(source, mirror), 1);

    /* a datetime that lost a digit is a difference */
    mirror = make_mirror(source, "vm2.db");
    exec_in(mirror, "UPDATE contact SET registered = substr(registered, 1, 19) WHERE contact_id = 3");
    ck_assert_int_eq(verify_quietly(source, mirror), 1);

    /* a missing row, and a blocked table in the mirror */
    mirror = make_mirror(source, "vm3.db");
    exec_in(mirror, "CREATE TABLE credentials (credentials_id INTEGER PRIMARY KEY)");
    ck_assert_int_eq(verify_quietly(source, mirror), 1);
    mirror = make_mirror(source, "vm4.db");
    exec_in(mirror, "DELETE FROM project_member WHERE rowid = 2");
    ck_assert_int_eq(verify_quietly(source, mirror), 1);
    /* a column the source does not have (dropped there, kept in the mirror) */
    mirror = make_mirror(source, "vm5.db");
    exec_in(mirror, "ALTER TABLE contact ADD COLUMN orphan int");
    ck_assert_int_eq(verify_quietly(source, mirror), 1);
    /* the same values under another schema (a type, nullability or key the source changed),
     * or none recorded */
    static const char *const schemas[] = {
        "UPDATE T1_mirroring SET schema = replace(schema, 'int|', 'bigint|') WHERE tablename = 'country'",
        "UPDATE T1_mirroring SET schema = replace(schema, '|notnull|', '|null|') WHERE tablename = 'country'",
        "UPDATE T1_mirroring SET schema = schema || ',name' WHERE tablename = 'country'",
        "DELETE FROM T1_mirroring WHERE tablename = 'country'",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        mirror = make_mirror(source, "vm6.db");
        ck_assert_int_eq(verify_quietly(source, mirror), 0);
        exec_in(mirror, schemas[i]);
        ck_assert_msg(verify_quietly(source, mirror) == 1, "%s", schemas[i]);
    }
}
END_TEST

/* ---- RowData calls ---- */

struct split_stats {
    long calls, rows, with_lsn;
    int64_t last_lsn;
};

/* Builds every call of a cursor, parses each back with the receiver's parser and checks its
 * shape and values. */
static void run_calls(struct rowdata_cursor *cur, size_t batch_size, struct split_stats *st)
{
    struct buf body = BUF_INIT;
    char err[512] = "";
    memset(st, 0, sizeof *st);
    size_t max_row = 0;
    while (!cur->done) {
        ck_assert_int_eq(rowdata_next_call(cur, "aaa.bbb.ccc", batch_size, &body, err, sizeof err), 0);
        struct arena arena;
        arena_init(&arena);
        struct soap_request req;
        struct fault f;
        fault_clear(&f);
        ck_assert_int_eq(soap_parse_request(body.data, body.len, NULL, &arena, &req, &f), 0);
        ck_assert_int_eq(req.op_fault.code, FAULT_NONE);
        ck_assert_msg(req.body_fault.code == FAULT_NONE, "%s", req.body_fault.message);
        ck_assert_int_eq(req.op, SOAP_OP_ROWDATA);
        ck_assert_uint_eq(req.nbatches, 1);
        const struct batch *b = &req.batches[0];
        ck_assert_str_eq(b->table, cur->table->name);
        ck_assert_uint_eq(b->ncolumns, cur->table->ncolumns);
        st->calls++;
        st->rows += (long)b->nrows;
        if (b->has_lsn) {
            st->with_lsn++;
            st->last_lsn = b->lsn;
        }
        /* Every call but the last is at least batch_size long, and only one row longer. */
        if (!cur->done)
            ck_assert_uint_ge(body.len, batch_size);
        size_t per_row = b->nrows ? body.len / b->nrows : 0;
        max_row = per_row > max_row ? per_row : max_row;
        for (size_t r = 0; r < b->nrows; r++) {
            const struct row *row = &b->rows[r];
            for (size_t v = 0; v < row->nvalues; v++) {
                const struct column *col = row->op == 'D' ? &cur->table->columns[cur->table->pk[v]]
                                                          : &cur->table->columns[v];
                struct value out;
                ck_assert_msg(value_check(&col->type, col->nullable, &row->values[v], &arena, &out,
                                          err, sizeof err) == 0, "%s: %s", col->name, err);
            }
        }
        arena_free(&arena);
    }
    buf_free(&body);
}

/* The source at path opened (source_close it), and its contact table. */
static const struct table_schema *open_contact(const char *path, struct source *src)
{
    char err[512] = "";
    ck_assert_msg(source_open(src, path, 0, err, sizeof err) == 0, "%s", err);
    const struct table_schema *t = source_find(src, "contact");
    ck_assert_ptr_nonnull(t);
    return t;
}

START_TEST(rowdata_splits_at_batch_size)
{
    const char *path = generate_tracked("rd.db", 60, 3);
    char err[512] = "";
    struct source src;
    const struct table_schema *t = open_contact(path, &src);
    int64_t rows = query_int(src.db, "SELECT count(*) FROM contact");
    struct rowdata_cursor cur;
    struct split_stats st;

    ck_assert_int_eq(rowdata_open(&cur, src.db, t, ROWDATA_FULL, -1, 77, err, sizeof err), 0);
    run_calls(&cur, 4000, &st);
    rowdata_close(&cur);
    ck_assert_int_gt(st.calls, 3);
    ck_assert_int_eq(st.rows, rows);
    ck_assert_int_eq(cur.inserted, rows);
    ck_assert_int_eq(st.with_lsn, 1);          /* a full load has <Lsn> only at its end */
    ck_assert_int_eq(st.last_lsn, 77);

    /* one big call when the batch size allows */
    ck_assert_int_eq(rowdata_open(&cur, src.db, t, ROWDATA_FULL, -1, 77, err, sizeof err), 0);
    run_calls(&cur, TASK_DEFAULT_BATCH_SIZE, &st);
    rowdata_close(&cur);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_int_eq(st.rows, rows);

    /* a quiet table: one batch with only <Lsn> */
    ck_assert_int_eq(rowdata_open(&cur, src.db, t, ROWDATA_CHANGES, 0, 0, err, sizeof err), 0);
    run_calls(&cur, 4000, &st);
    rowdata_close(&cur);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_int_eq(st.rows, 0);
    ck_assert_int_eq(st.with_lsn, 1);
    source_close(&src);

    /* changes: every call carries <Lsn>, increasing, ending at the position */
    ck_assert_int_eq(churn_run(path, 400, 5, err, sizeof err), 0);
    t = open_contact(path, &src);
    int64_t current, min_valid;
    ck_assert_int_eq(ct_versions(src.db, &current, &min_valid, err, sizeof err), 0);
    int64_t changed = query_int(src.db, "SELECT count(*) FROM _somirror_ct_contact");
    ck_assert_int_gt(changed, 5);
    ck_assert_int_eq(rowdata_open(&cur, src.db, t, ROWDATA_CHANGES, 0, current, err, sizeof err), 0);
    run_calls(&cur, 1500, &st);
    rowdata_close(&cur);
    ck_assert_int_eq(st.rows, changed);
    ck_assert_int_eq(st.with_lsn, st.calls);
    ck_assert_int_eq(st.last_lsn, current);
    ck_assert_int_gt(cur.deleted + cur.updated, 0);
    source_close(&src);
}
END_TEST

/* The op of the row sent for category_id key to a receiver at since (0 when none is sent). */
static char op_sent(sqlite3 *db, const struct table_schema *t, int64_t since, const char *key)
{
    int64_t current, min_valid;
    char err[512] = "";
    ck_assert_int_eq(ct_versions(db, &current, &min_valid, err, sizeof err), 0);
    struct rowdata_cursor cur;
    ck_assert_int_eq(rowdata_open(&cur, db, t, ROWDATA_CHANGES, since, current, err, sizeof err), 0);
    struct buf body = BUF_INIT;
    ck_assert_int_eq(rowdata_next_call(&cur, "aaa.bbb.ccc", TASK_DEFAULT_BATCH_SIZE, &body, err,
                                       sizeof err), 0);
    ck_assert(cur.done);
    rowdata_close(&cur);
    struct arena arena;
    arena_init(&arena);
    struct soap_request req;
    struct fault f;
    fault_clear(&f);
    ck_assert_int_eq(soap_parse_request(body.data, body.len, NULL, &arena, &req, &f), 0);
    char op = 0;
    for (size_t r = 0; r < req.batches[0].nrows; r++) {
        const struct row *row = &req.batches[0].rows[r];
        const struct raw_value *v = &row->values[row->op == 'D' ? 0 : t->pk[0]];
        if (v->len == strlen(key) && memcmp(v->data, key, v->len) == 0)
            op = row->op;
    }
    arena_free(&arena);
    buf_free(&body);
    return op;
}

START_TEST(change_ops_are_relative_to_since)
{
    const char *path = generate_tracked("ops.db", 10, 1);
    char err[512] = "";
    struct source src;
    ck_assert_int_eq(source_open(&src, path, 1, err, sizeof err), 0);
    const struct table_schema *t = source_find(&src, "category");
    int64_t v0 = query_int(src.db, "SELECT v FROM _somirror_ct_version");
    exec_ok(src.db, "INSERT INTO category (category_id, name, deleted) VALUES (1000, 'new', 0);"
                    "DELETE FROM category WHERE category_id = 2");
    int64_t v1 = query_int(src.db, "SELECT v FROM _somirror_ct_version");
    ck_assert_int_eq(op_sent(src.db, t, v0, "1000"), 'I');
    ck_assert_int_eq(op_sent(src.db, t, v0, "2"), 'D');
    /* after a cycle at v1: updated only is U; deleted (sent) and inserted again is I */
    exec_ok(src.db, "UPDATE category SET name = 'renamed' WHERE category_id = 1000;"
                    "INSERT INTO category (category_id, name, deleted) VALUES (2, 'back', 0);"
                    "UPDATE category SET name = 'x' WHERE category_id = 3");
    ck_assert_int_eq(op_sent(src.db, t, v1, "1000"), 'U');
    ck_assert_int_eq(op_sent(src.db, t, v1, "2"), 'I');
    ck_assert_int_eq(op_sent(src.db, t, v1, "3"), 'U');
    /* a receiver still at v0: inserted then updated is I; existing, deleted, inserted again is I */
    ck_assert_int_eq(op_sent(src.db, t, v0, "1000"), 'I');
    ck_assert_int_eq(op_sent(src.db, t, v0, "2"), 'I');
    ck_assert_int_eq(op_sent(src.db, t, v0, "3"), 'U');
    /* gone: D, also for a key inserted and deleted since v0 */
    int64_t v2 = query_int(src.db, "SELECT v FROM _somirror_ct_version");
    exec_ok(src.db, "DELETE FROM category WHERE category_id = 1000");
    ck_assert_int_eq(op_sent(src.db, t, v2, "1000"), 'D');
    ck_assert_int_eq(op_sent(src.db, t, v0, "1000"), 'D');
    ck_assert_int_eq(op_sent(src.db, t, v2, "3"), 0);
    source_close(&src);
}
END_TEST

START_TEST(rowdata_reads_versions_and_rows_in_one_snapshot)
{
    const char *path = generate_tracked("snap.db", 20, 3);
    char err[512] = "";
    ck_assert_int_eq(churn_run(path, 200, 5, err, sizeof err), 0);
    struct source src;
    const struct table_schema *t = open_contact(path, &src);
    int64_t changed = query_int(src.db, "SELECT count(*) FROM _somirror_ct_contact");
    int64_t current = query_int(src.db, "SELECT v FROM _somirror_ct_version");
    ck_assert_int_gt(changed, 5);
    /* a receiver at the position tracking started at (provisioning made every table start) */
    int64_t started = ct_valid_from(src.db, "contact");
    ck_assert_int_gt(started, 0);
    struct rowdata_cursor cur;
    ck_assert_msg(rowdata_start(&cur, src.db, t, started, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(cur.mode, ROWDATA_CHANGES);
    ck_assert_int_eq(cur.position, current);
    /* another connection cleans every change before a row is read: the cursor still sees them */
    ck_assert_msg(ct_provision(path, 0, err, sizeof err) == 0, "%s", err);
    struct split_stats st;
    run_calls(&cur, 1500, &st);
    rowdata_close(&cur);
    ck_assert_int_eq(st.rows, changed);
    ck_assert_int_eq(st.last_lsn, current);
    /* the next start sees the cleanup: that receiver is now older than min_valid */
    ck_assert_int_eq(rowdata_start(&cur, src.db, t, started, err, sizeof err), 0);
    ck_assert_int_eq(cur.mode, ROWDATA_FULL);
    rowdata_close(&cur);
    ck_assert_int_eq(query_int(src.db, "SELECT count(*) FROM _somirror_ct_contact"), 0);
    source_close(&src);
}
END_TEST

/* A column dropped on the source after the cycle read its schema: the rows cannot be read,
 * and the error says what is the likely cause (the next cycle sends the new schema). */
START_TEST(rowdata_names_a_column_dropped_meanwhile)
{
    const char *path = generate_tracked("dropped.db", 20, 3);
    char err[512] = "";
    struct source src;
    const struct table_schema *t = open_contact(path, &src);
    exec_in(path, "ALTER TABLE contact DROP COLUMN orgnr;"   /* on another connection */
                  "DELETE FROM _somirror_columns WHERE table_name = 'contact' AND column_name = 'orgnr'");
    struct rowdata_cursor cur;
    ck_assert_int_eq(rowdata_start(&cur, src.db, t, ct_valid_from(src.db, "contact"), err, sizeof err), -1);
    ck_assert_msg(strstr(err, "orgnr") && strstr(err, "were the table's columns changed during the cycle"),
                  "%s", err);
    ck_assert_int_eq(sqlite3_get_autocommit(src.db), 1);   /* no transaction left open */
    source_close(&src);
}
END_TEST

#define TASK_YAML_HEAD                                                                   \
    "vendor: { key: v.key, certificate: v.crt }\n"                                       \
    "applications: [ { id: a, url: \"http://127.0.0.1:1/\", public_key: a.pub } ]\n"

/* taskconf_load of task.yaml holding text. */
static struct task_config *load_task_yaml(const char *text, char *err, size_t errlen)
{
    const char *path = path_in("task.yaml");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return taskconf_load(path, err, errlen);
}

/* schedule.pause: times from 00:00 to 24:00; 24:30 is refused (it would never be reached), a
 * window may end at 24:00 and may wrap midnight. */
static struct task_config *load_pause(const char *window, char *err, size_t errlen)
{
    char text[512];
    snprintf(text, sizeof text, TASK_YAML_HEAD "tenants: [ { context: T1, source: t.db, "
                 "approved: [ a ] } ]\nschedule: { pause: \"%s\" }\n", window);
    return load_task_yaml(text, err, errlen);
}

START_TEST(schedule_pause_times)
{
    char err[512] = "";
    for (const char *const *bad = (const char *const[]){"24:30-01:00", "23:00-24:59", "25:00-01:00", NULL};
         *bad; bad++) {
        ck_assert_ptr_null(load_pause(*bad, err, sizeof err));
        ck_assert_msg(strstr(err, "schedule.pause"), "%s: %s", *bad, err);
    }
    struct task_config *cfg = load_pause("23:00-24:00", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert(taskconf_paused(cfg, 23 * 60 + 59));
    ck_assert(!taskconf_paused(cfg, 0));
    taskconf_free(cfg);
    cfg = load_pause("23:30-00:30", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert(taskconf_paused(cfg, 0) && taskconf_paused(cfg, 23 * 60 + 45) && !taskconf_paused(cfg, 60));
    taskconf_free(cfg);
}
END_TEST

/* What would otherwise be taken silently is an error naming file, line, column and key: a key
 * given twice (the first list of tenants was dropped), two tenants or applications of one name
 * (one ran), an empty value, a NUL, a URL that is none, a second document, a FIFO; a size or
 * duration too large to hold says so. */
START_TEST(task_yaml_refusals)
{
#define TENANT "tenants: [ { context: T1, source: t.db, approved: [ a ] } ]\n"
#define VENDOR "vendor: { key: v.key, certificate: v.crt }\n"
#define ID16 "9999999999999999"
#define LONG_ID ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16
    static const struct {
        const char *text;
        const char *expected;   /* after the path */
    } cases[] = {
        {TASK_YAML_HEAD TENANT "tenants: [ { context: T2, source: t.db } ]\n",
         ":4:1: task.yaml: duplicate key \"tenants\" (first at line 3)"},
        {TASK_YAML_HEAD "tenants:\n  - { context: T1, source: t.db }\n  - { context: T1, source: u.db }\n",
         ":5:5: tenants[2]: context T1 is tenants[1]'s too"},
        {VENDOR "applications:\n  - { id: a, url: \"http://x/\", public_key: a.pub }\n"
                "  - { id: a, url: \"http://y/\", public_key: b.pub }\n" TENANT,
         ":4:5: applications[2]: id \"a\" is applications[1]'s too"},
        {VENDOR "applications: [ { id: a, url: , public_key: a.pub } ]\n" TENANT,
         ":2:31: applications.url: no value (leave the key out for its default)"},
        {VENDOR "applications: [ { id: a, url: \"ftp://x/\", public_key: a.pub } ]\n" TENANT,
         ":2:31: applications.url: expected an http:// or https:// URL, got \"ftp://x/\""},
        {TASK_YAML_HEAD "tenants: [ { context: T1, source: t.db, approved: [ b ] } ]\n",
         ":3:12: tenant T1 approves an unknown application \"b\""},
        {TASK_YAML_HEAD TENANT "---\nschedule: { every: 5m }\n", ":4:1: expected one YAML document, got more"},
        {TASK_YAML_HEAD "tenants: [ { context: T1, source: \"t.db\\0x\" } ]\n",
         ":3:35: tenants.source: the value has a NUL character"},
        {VENDOR "applications: [ { id: " LONG_ID ", url: \"http://x/\", public_key: a.pub } ]\n",
         ":2:23: applications.id: longer than 255 bytes"},
        {TASK_YAML_HEAD "tenants: [ { context: T1, source: !!binary dC5kYg== } ]\n",
         ":3:35: the YAML tag !!binary is not supported (values are read as their text; only the core "
         "schema's tags, such as !!str, may be written)"},
        {TASK_YAML_HEAD "tenants: [ { context: T1, source: t.db, batch_size: 99999999999999999999 } ]\n",
         ":3:53: tenants.batch_size: too large a size, got \"99999999999999999999\""},
        {TASK_YAML_HEAD "tenants: [ { context: T1, source: t.db, batch_size: 0 } ]\n",
         ":3:53: tenants.batch_size: expected a size of 1 byte or more, got \"0\""},
        {TASK_YAML_HEAD TENANT "schedule: { every: 99999999999h }\n",
         ":4:20: schedule.every: expected a duration from 1 to 2147483647 seconds, got \"99999999999h\""},
    };
#undef TENANT
#undef VENDOR
#undef ID16
#undef LONG_ID
    char err[512], expected[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_ptr_null(load_task_yaml(cases[i].text, err, sizeof err));
        snprintf(expected, sizeof expected, "%s%s", path_in("task.yaml"), cases[i].expected);
        ck_assert_str_eq(err, expected);
    }
    const char *fifo = path_in("fifo.yaml");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(5);
    ck_assert_ptr_null(taskconf_load(fifo, err, sizeof err));
    alarm(0);
    snprintf(expected, sizeof expected, "%s: cannot open: not a regular file", fifo);
    ck_assert_str_eq(err, expected);
    unlink(fifo);
}
END_TEST

/* A failed cycle's error cut inside a character (a receiver's long fault text in a fixed
 * buffer) still gives the --json summary, with the text up to that character. */
START_TEST(result_json_with_a_cut_character)
{
    struct cycle_result r = {.outcome = CYCLE_FAILED};
    snprintf(r.error, sizeof r.error, "Internal: caf\xC3\xA9 \xC3");
    char *text = cycle_result_json(&r, "T1", "a");
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "\"error\":\"Internal: caf\xC3\xA9 \"") && strstr(text, "\"tenant\":\"T1\""),
                  "%s", text);
    free(text);
}
END_TEST

START_TEST(strings_split_trims)
{
    struct cfg_strings list;
    task_strings_split(" a, b ,,c ", &list);
    ck_assert_uint_eq(list.n, 3);
    ck_assert_str_eq(list.items[0], "a");
    ck_assert_str_eq(list.items[1], "b");
    ck_assert_str_eq(list.items[2], "c");
    ck_assert(task_name_listed("B", &list));
    ck_assert(!task_table_mirrored("C", &list));
    ck_assert(!task_table_mirrored("_somirror_ct_x", NULL));
    ck_assert(!task_table_mirrored("WinPosSize", NULL));
    ck_assert(task_table_mirrored("contact", &list));
    task_strings_free(&list);
}
END_TEST

static Suite *task_suite(void)
{
    Suite *s = suite_create("task");
    TCase *tc = tcase_create("task");
    tcase_add_checked_fixture(tc, make_workdir, remove_workdir);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gen_is_deterministic);
    tcase_add_test(tc, gen_refuses_existing_file_without_force);
    tcase_add_test(tc, gen_has_crm_tables_and_blocked_ones);
    tcase_add_test(tc, gen_values_pass_value_check);
    tcase_add_test(tc, provision_is_idempotent_and_records_changes);
    tcase_add_test(tc, provision_drops_the_triggers_of_another_name);
    tcase_add_test(tc, retention_moves_min_valid);
    tcase_add_test(tc, provision_migrates_older_change_tables);
    tcase_add_test(tc, churn_changes_rows);
    tcase_add_test(tc, verify_passes_on_copy_and_fails_after_tampering);
    tcase_add_test(tc, rowdata_splits_at_batch_size);
    tcase_add_test(tc, change_ops_are_relative_to_since);
    tcase_add_test(tc, rowdata_reads_versions_and_rows_in_one_snapshot);
    tcase_add_test(tc, rowdata_names_a_column_dropped_meanwhile);
    tcase_add_test(tc, schedule_pause_times);
    tcase_add_test(tc, task_yaml_refusals);
    tcase_add_test(tc, result_json_with_a_cut_character);
    tcase_add_test(tc, strings_split_trims);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(task_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
