/* tests/unit/test_store: conformance suite of the mirror store (store/store.h), written against
 * the generic API so that every driver runs it. The driver comes from SOMIRROR_TEST_STORE_DRIVER
 * (default sqlite); driver_setup is the one place that knows how to reach a driver, and
 * probe_open the one place that reads the mirror behind the store's back. A driver whose server
 * is not configured, or that is not in this build, skips the suite (exit 77). Tests named
 * sqlite_* check what only the SQLite driver promises (file mode, storage classes), mssql_*
 * what only the SQL Server driver promises (stored types, values as the server reads them),
 * pg_* the PostgreSQL driver's COPY of rows when it meets a key already there, a value it
 * refuses, a server error or a lost connection.
 *
 * SQL Server (SOMIRROR_TEST_STORE_DRIVER=mssql, SOMIRROR_TEST_MSSQL_SERVER "host:port" or a
 * freetds.conf name, SOMIRROR_TEST_MSSQL_USER, SOMIRROR_TEST_MSSQL_PASSWORD): every test's
 * tenant is <run>T<pid>_<n> (run: the pid of the test runner), so its database is
 * Mirror_<run>T..., and the runner drops all of this run's databases when the suite ends,
 * failed tests' included. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <sybfront.h>
#include <sybdb.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/schema.h"
#include "store/sqlite_checkpoint.h"
#include "store/store.h"
#include "tests/unit/schema_fixture.h"

static struct config cfg;
static char sqlite_dir[256];
static struct store *store;
static struct store_tenant *tenant;
static char tenant_name[64];
static long run_id;                 /* the pid of the test runner: the tenants' prefix */
static struct arena arena;
static struct fault fault;

/* ---- drivers ---- */

/* Fills cfg for the named driver. 0, or 77 when the driver cannot be reached here. */
static int driver_setup(const char *driver)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.lock_timeout = 5;
    if (strcmp(driver, "sqlite") == 0) {
        snprintf(sqlite_dir, sizeof(sqlite_dir), "%s/somirror-test-store-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(sqlite_dir)) {
            perror("mkdtemp");
            return 99;
        }
        cfg.driver = STORE_SQLITE;
        cfg.sqlite.directory = sqlite_dir;
        cfg.sqlite.max_open = 64;
        cfg.hooks.timeout = 1;   /* table_sql scripts: sqlite_table_script_bounded */
        return 0;
    }
    if (strcmp(driver, "postgresql") == 0 && getenv("SOMIRROR_TEST_PG_CONNINFO")) {
        cfg.driver = STORE_POSTGRESQL;
        cfg.postgresql.conninfo = getenv("SOMIRROR_TEST_PG_CONNINFO");
        cfg.postgresql.max_connections = 16;
        cfg.hooks.timeout = 1;   /* table_sql scripts: pg_table_script_bounded */
        return 0;
    }
    if (strcmp(driver, "mssql") == 0 && getenv("SOMIRROR_TEST_MSSQL_SERVER")) {
        cfg.driver = STORE_MSSQL;
        cfg.mssql.server = getenv("SOMIRROR_TEST_MSSQL_SERVER");
        cfg.mssql.user = getenv("SOMIRROR_TEST_MSSQL_USER");
        cfg.mssql.password = getenv("SOMIRROR_TEST_MSSQL_PASSWORD");
        cfg.mssql.tds_version = "7.4";
        cfg.mssql.encrypt = "request";
        cfg.mssql.login_timeout = 15;
        cfg.mssql.query_timeout = 60;
        cfg.mssql.max_connections = 16;
        return 0;
    }
    fprintf(stderr, "test_store: driver %s is not configured here; skipped\n", driver);
    return 77;
}

static void ms_drop_run_databases(void);

/* Removes what the run left: the SQLite directory; on SQL Server, when the suite ran
 * (suite_ran), this run's databases. */
static void driver_cleanup(int suite_ran)
{
    if (cfg.driver == STORE_MSSQL && suite_ran)
        ms_drop_run_databases();
    if (cfg.driver != STORE_SQLITE || !sqlite_dir[0])
        return;
    struct buf cmd = BUF_INIT;
    buf_printf(&cmd, "rm -rf '%s'", sqlite_dir);
    if (system(cmd.data) != 0)
        fprintf(stderr, "test_store: could not remove %s\n", sqlite_dir);
    buf_free(&cmd);
}

/* "12.5000" -> "12.5", "3.0000" -> "3" */
static void numeric_trim(char *text)
{
    if (!strchr(text, '.'))
        return;
    size_t len = strlen(text);
    while (len && text[len - 1] == '0')
        text[--len] = '\0';
    if (len && text[len - 1] == '.')
        text[--len] = '\0';
}

/* ---- SQL Server: the probe's own db-lib sessions ---- */

/* The probe swaps in these handlers for as long as a probe session is open (the driver's own
 * handlers keep their state in the connections they tie to a struct of theirs, which ours are
 * not) and puts the driver's back when the session closes. */
static char ms_message[600];

static int ms_msg_handler(DBPROCESS *dbproc, DBINT msgno, int msgstate, int severity,
                          char *msgtext, char *srvname, char *procname, int line)
{
    (void)dbproc;
    (void)msgstate;
    (void)srvname;
    (void)procname;
    (void)line;
    if (severity > 10 && !ms_message[0])
        snprintf(ms_message, sizeof(ms_message), "server message %d (severity %d): %s",
                 (int)msgno, severity, msgtext ? msgtext : "");
    return 0;
}

static int ms_err_handler(DBPROCESS *dbproc, int severity, int dberr, int oserr, char *dberrstr,
                          char *oserrstr)
{
    (void)dbproc;
    (void)severity;
    if (!ms_message[0])
        snprintf(ms_message, sizeof(ms_message), "db-lib error %d: %s%s%s%s", dberr,
                 dberrstr ? dberrstr : "", oserr != DBNOERR && oserr && oserrstr ? " (" : "",
                 oserr != DBNOERR && oserr && oserrstr ? oserrstr : "",
                 oserr != DBNOERR && oserr && oserrstr ? ")" : "");
    return INT_CANCEL;
}

/* The session settings of the driver's connections (store/mssql_sql.h), so that the suite's
 * "x" quoting and ISO date literals mean what they mean to the store. */
#define MS_SESSION_SQL                                                                         \
    "SET NOCOUNT ON; SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON;"            \
    " SET CONCAT_NULL_YIELDS_NULL ON; SET ARITHABORT ON; SET QUOTED_IDENTIFIER ON;"            \
    " SET DATEFORMAT ymd;"

/* "FROM sqlite_master" (the suite's way to ask whether a table exists) on SQL Server: the
 * user tables and views of the current database. Names compare under the database's
 * collation (case-insensitive by default), as mirror names do. */
#define MS_SQLITE_MASTER                                                                       \
    "FROM (SELECT CAST(name AS nvarchar(128)) AS name FROM sys.objects"                      \
    " WHERE type IN ('U', 'V')) AS sqlite_master"

struct ms_session {
    DBPROCESS *dbproc;
    MHANDLEFUNC prev_msg;
    EHANDLEFUNC prev_err;
    int swapped;
};

static void ms_close(struct ms_session *s)
{
    if (s->dbproc)
        dbclose(s->dbproc);
    s->dbproc = NULL;
    if (s->swapped) {
        dbmsghandle(s->prev_msg);
        dberrhandle(s->prev_err);
        s->swapped = 0;
    }
}

/* A value as dbconvert writes it as text, trailing blanks trimmed; decimal/numeric/money without trailing fraction
 * zeros. */
static void ms_convert_text(DBPROCESS *dbproc, int type, const BYTE *data, DBINT len,
                            struct buf *out)
{
    char text[512];
    DBINT n = dbconvert(dbproc, type, data, len, SYBCHAR, (BYTE *)text, sizeof(text) - 1);
    ck_assert_msg(n >= 0, "probe: cannot read a value of type %d as text", type);
    while (n > 0 && text[n - 1] == ' ')   /* dbconvert may blank-pad to destlen */
        n--;
    text[n] = '\0';
    if (type == SYBDECIMAL || type == SYBNUMERIC || type == SYBMONEY || type == SYBMONEY4)
        numeric_trim(text);
    buf_puts(out, text);
}

/* Column col of the current row as text in the test arena; NULL for SQL NULL. Text as is
 * (nvarchar arrives in the login's UTF-8), binary as upper-case hex (like SQLite's hex()),
 * date/time types as ISO text (YYYY-MM-DD hh:mm:ss[.fraction], fraction without trailing
 * zeros, datetimeoffset with +hh:mm), float with %.15g, decimal/numeric/money without trailing
 * fraction zeros (the same number: section 8), the rest through dbconvert. */
static char *ms_column_text(DBPROCESS *dbproc, int col)
{
    BYTE *data = dbdata(dbproc, col);
    DBINT len = dbdatlen(dbproc, col);
    int type = dbcoltype(dbproc, col);
    if (!data)
        return NULL;
    if (len < 0)
        len = 0;
    struct buf out = BUF_INIT;
    switch (type) {
    case SYBCHAR: case SYBVARCHAR: case SYBTEXT:
        buf_append(&out, (const char *)data, (size_t)len);
        break;
    case SYBBINARY: case SYBVARBINARY: case SYBIMAGE:
        for (DBINT i = 0; i < len; i++)
            buf_printf(&out, "%02X", data[i]);
        break;
    case SYBFLT8: case SYBREAL: {
        DBFLT8 v = 0;
        ck_assert_int_gt(dbconvert(dbproc, type, data, len, SYBFLT8, (BYTE *)&v, sizeof(v)), 0);
        buf_printf(&out, "%.15g", (double)v);
        break;
    }
    case SYBDATETIME: case SYBDATETIME4: case SYBMSDATE: case SYBMSTIME: case SYBMSDATETIME2:
    case SYBMSDATETIMEOFFSET: {
        DBDATEREC2 d;
        memset(&d, 0, sizeof(d));
        if (dbanydatecrack(dbproc, &d, type, data) == SUCCEED) {
            long ns = d.datensecond >= 0 && d.datensecond <= 999999999 ? d.datensecond : 0;
            if (type == SYBDATETIME || type == SYBDATETIME4) {
                /* 1/300 s ticks: read as milliseconds, as the server prints them */
                ns = (ns + 500000) / 1000000 * 1000000;
                if (ns > 999000000)
                    ns = 999000000;
            }
            if (type != SYBMSTIME)
                buf_printf(&out, "%04d-%02d-%02d", (int)d.dateyear, (int)d.datemonth + 1,
                           (int)d.datedmonth);
            if (type != SYBMSDATE) {
                if (type != SYBMSTIME)
                    buf_putc(&out, ' ');
                buf_printf(&out, "%02d:%02d:%02d", (int)d.datehour, (int)d.dateminute,
                           (int)d.datesecond);
                if (ns) {
                    char frac[32];
                    snprintf(frac, sizeof(frac), ".%09ld", ns);
                    size_t n = strlen(frac);
                    while (frac[n - 1] == '0')
                        frac[--n] = '\0';
                    buf_puts(&out, frac);
                }
            }
            if (type == SYBMSDATETIMEOFFSET) {
                int tz = (int)d.datetzone;
                buf_printf(&out, "%c%02d:%02d", tz < 0 ? '-' : '+', abs(tz) / 60, abs(tz) % 60);
            }
            break;
        }
        ms_convert_text(dbproc, type, data, len, &out);   /* what dbanydatecrack does not know */
        break;
    }
    default:
        ms_convert_text(dbproc, type, data, len, &out);
        break;
    }
    char *text = arena_strdup(&arena, out.data ? out.data : "");
    buf_free(&out);
    return text;
}

/* Sends sql and reads every result; with out, the first column of the first row (from any
 * result) as text, NULL when there is none. 0, or -1 with ms_message set. */
static int ms_run(struct ms_session *s, const char *sql, char **out)
{
    ms_message[0] = '\0';
    if (out)
        *out = NULL;
    dbfreebuf(s->dbproc);
    int ok = dbcmd(s->dbproc, sql) == SUCCEED && dbsqlexec(s->dbproc) == SUCCEED;
    int got = 0;
    RETCODE rc;
    while (ok && (rc = dbresults(s->dbproc)) != NO_MORE_RESULTS) {
        if (rc == FAIL) {
            ok = 0;
            break;
        }
        STATUS st;
        while ((st = dbnextrow(s->dbproc)) != NO_MORE_ROWS) {
            if (st == FAIL) {
                ok = 0;
                break;
            }
            if (out && !got && st == REG_ROW && dbnumcols(s->dbproc) > 0) {
                *out = ms_column_text(s->dbproc, 1);
                got = 1;
            }
        }
    }
    if (ok && !ms_message[0])
        return 0;
    if (!ms_message[0])
        snprintf(ms_message, sizeof(ms_message), "failed");
    if (!DBDEAD(s->dbproc))
        dbcancel(s->dbproc);
    return -1;
}

/* Logs in the way store/mssql.c does (TDS 7.4, UTF-8, the configured encryption) and opens
 * database dbname (NULL: the login's default). 0, or -1 with ms_message set and s closed. */
static int ms_open(struct ms_session *s, const char *dbname)
{
    static int ready;
    memset(s, 0, sizeof(*s));
    ms_message[0] = '\0';
    s->prev_msg = dbmsghandle(ms_msg_handler);
    s->prev_err = dberrhandle(ms_err_handler);
    s->swapped = 1;
    if (!ready) {
        /* dbinit (reference-counted, the driver's store_new called it already) resets the
         * error handler, hence the handlers are taken before and ours set again after */
        if (dbinit() == FAIL) {
            snprintf(ms_message, sizeof(ms_message), "dbinit failed");
            ms_close(s);
            return -1;
        }
        dberrhandle(ms_err_handler);
        ready = 1;
    }
    LOGINREC *login = dblogin();
    if (!login) {
        snprintf(ms_message, sizeof(ms_message), "dblogin failed");
        ms_close(s);
        return -1;
    }
    DBSETLUSER(login, cfg.mssql.user ? cfg.mssql.user : "");
    DBSETLPWD(login, cfg.mssql.password ? cfg.mssql.password : "");
    DBSETLAPP(login, "test_store");
    DBSETLCHARSET(login, "UTF-8");
    dbsetlversion(login, DBVERSION_74);
    if (cfg.mssql.encrypt && strcmp(cfg.mssql.encrypt, "require") == 0)
        DBSETLENCRYPT(login, TRUE);
    s->dbproc = dbopen(login, cfg.mssql.server);
    dbloginfree(login);
    if (!s->dbproc) {
        if (!ms_message[0])
            snprintf(ms_message, sizeof(ms_message), "login to %s failed", cfg.mssql.server);
        ms_close(s);
        return -1;
    }
    if (ms_run(s, MS_SESSION_SQL, NULL) != 0) {
        ms_close(s);
        return -1;
    }
    if (dbname) {
        ms_message[0] = '\0';
        if (dbuse(s->dbproc, dbname) == FAIL || ms_message[0]) {
            if (!ms_message[0])
                snprintf(ms_message, sizeof(ms_message), "cannot use database %s", dbname);
            ms_close(s);
            return -1;
        }
    }
    return 0;
}

/* sql with every "FROM sqlite_master" read as MS_SQLITE_MASTER, in the test arena. */
static const char *ms_translate(const char *sql)
{
    static const char from[] = "FROM sqlite_master";
    if (!strstr(sql, from))
        return sql;
    struct buf out = BUF_INIT;
    for (const char *at; (at = strstr(sql, from)) != NULL; sql = at + strlen(from)) {
        buf_append(&out, sql, (size_t)(at - sql));
        buf_puts(&out, MS_SQLITE_MASTER);
    }
    buf_puts(&out, sql);
    char *text = arena_strdup(&arena, out.data);
    buf_free(&out);
    return text;
}

/* Drops every database of this run (Mirror_<run>T...), failed tests' included: on master,
 * each one SINGLE_USER WITH ROLLBACK IMMEDIATE, then DROP DATABASE. */
static void ms_drop_run_databases(void)
{
    struct ms_session s;
    if (ms_open(&s, "master") != 0) {
        fprintf(stderr, "test_store: cleanup: %s\n", ms_message);
        return;
    }
    struct buf sql = BUF_INIT;
    buf_printf(&sql,
               "DECLARE @n sysname, @s nvarchar(max);"
               " DECLARE dbs CURSOR LOCAL FAST_FORWARD FOR SELECT name FROM sys.databases"
               " WHERE name LIKE N'Mirror[_]%ldT%%';"
               " OPEN dbs; FETCH NEXT FROM dbs INTO @n;"
               " WHILE @@FETCH_STATUS = 0 BEGIN"
               " SET @s = N'ALTER DATABASE ' + QUOTENAME(@n) + N' SET SINGLE_USER WITH ROLLBACK"
               " IMMEDIATE; DROP DATABASE ' + QUOTENAME(@n) + N';';"
               " EXEC (@s); FETCH NEXT FROM dbs INTO @n; END;"
               " CLOSE dbs; DEALLOCATE dbs;",
               run_id);
    if (ms_run(&s, sql.data, NULL) != 0)
        fprintf(stderr, "test_store: cleanup: %s\n", ms_message);
    char *left = NULL;
    buf_free(&sql);
    buf_printf(&sql, "SELECT COUNT(*) FROM sys.databases WHERE name LIKE N'Mirror[_]%ldT%%'",
               run_id);
    if (ms_run(&s, sql.data, &left) == 0 && left && strcmp(left, "0") != 0)
        fprintf(stderr, "test_store: cleanup: %s databases of this run are left\n", left);
    buf_free(&sql);
    ms_close(&s);
}

/* A direct connection to the current tenant's mirror, for reading what the store wrote: a
 * struct probe holds a sqlite3 handle, a libpq connection or a db-lib session. On PostgreSQL
 * the probe session gets a temp view sqlite_master(name) listing the mirror's tables, and
 * numeric results are read without trailing fraction zeros (the same number: section 8). On
 * SQL Server the probe logs in as the driver does, opens Mirror_<tenant> with the driver's
 * session settings (QUOTED_IDENTIFIER ON, DATEFORMAT ymd), reads "FROM sqlite_master" as the
 * database's user tables and views, and reads values as ms_column_text says. */
struct probe {
    sqlite3 *db;
    PGconn *pg;
    struct ms_session ms;
};

static struct probe probe_open(void)
{
    struct probe p;
    memset(&p, 0, sizeof(p));
    char dbname[128];
    snprintf(dbname, sizeof(dbname), "Mirror_%s", tenant_name);
    if (cfg.driver == STORE_POSTGRESQL) {
        const char *keys[] = {"dbname", "dbname", NULL};
        const char *values[] = {cfg.postgresql.conninfo, dbname, NULL};
        p.pg = PQconnectdbParams(keys, values, 1);
        ck_assert_msg(PQstatus(p.pg) == CONNECTION_OK, "probe: %s", PQerrorMessage(p.pg));
        PGresult *res = PQexec(p.pg, "SET DateStyle = 'ISO, YMD'; SET client_min_messages = warning;"
                                     " CREATE TEMP VIEW sqlite_master AS SELECT CAST(relname AS"
                                     " text) AS name FROM pg_class WHERE relnamespace ="
                                     " CAST('public' AS regnamespace) AND relkind IN ('r', 'v')");
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "probe: %s",
                      PQerrorMessage(p.pg));
        PQclear(res);
        return p;
    }
    if (cfg.driver == STORE_MSSQL) {
        ck_assert_msg(ms_open(&p.ms, dbname) == 0, "probe: %s", ms_message);
        return p;
    }
    ck_assert_msg(cfg.driver == STORE_SQLITE, "probe not written for this driver yet");
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.db", sqlite_dir, dbname);
    ck_assert_int_eq(sqlite3_open_v2(path, &p.db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return p;
}

static void probe_close(struct probe *p)
{
    if (p->db)
        sqlite3_close(p->db);
    if (p->pg)
        PQfinish(p->pg);
    ms_close(&p->ms);
}

/* The first column of the first row as text (in the test arena), or NULL. */
static char *probe_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *probe_text(const char *fmt, ...)
{
    struct buf sql = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&sql, fmt, ap);
    va_end(ap);
    struct probe p = probe_open();
    char *out = NULL;
    if (p.pg) {
        PGresult *res = PQexec(p.pg, sql.data);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql.data,
                      PQerrorMessage(p.pg));
        if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
            out = arena_strdup(&arena, PQgetvalue(res, 0, 0));
            if (PQftype(res, 0) == 1700)   /* NUMERICOID */
                numeric_trim(out);
        }
        PQclear(res);
    } else if (p.ms.dbproc) {
        const char *text = ms_translate(sql.data);
        ck_assert_msg(ms_run(&p.ms, text, &out) == 0, "%s: %s", text, ms_message);
    } else {
        sqlite3_stmt *stmt = NULL;
        ck_assert_msg(sqlite3_prepare_v2(p.db, sql.data, -1, &stmt, NULL) == SQLITE_OK,
                      "%s: %s", sql.data, sqlite3_errmsg(p.db));
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
            out = arena_strdup(&arena, (const char *)sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
    }
    probe_close(&p);
    buf_free(&sql);
    return out;
}

static long probe_long(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long probe_long(const char *fmt, ...)
{
    struct buf sql = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&sql, fmt, ap);
    va_end(ap);
    char *text = probe_text("%s", sql.data);
    buf_free(&sql);
    ck_assert_ptr_nonnull(text);
    return strtol(text, NULL, 10);
}

static void probe_exec(const char *sql)
{
    struct probe p = probe_open();
    if (p.pg) {
        PGresult *res = PQexec(p.pg, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
                      PQerrorMessage(p.pg));
        PQclear(res);
    } else if (p.ms.dbproc) {
        const char *text = ms_translate(sql);
        ck_assert_msg(ms_run(&p.ms, text, NULL) == 0, "%s: %s", text, ms_message);
    } else {
        char *msg = NULL;
        ck_assert_msg(sqlite3_exec(p.db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
                      msg);
    }
    probe_close(&p);
}

/* ---- fixture ---- */

static void setup(void)
{
    static int serial;
    char err[256];
    /* Starting with a digit, as tenants may (protocol section 3): the metadata table's name
     * "<ctx>_mirroring" is then no identifier of section 4.2, and every driver must still
     * provision and use it. */
    snprintf(tenant_name, sizeof(tenant_name), "%ldT%ld_%d", run_id, (long)getpid(), serial++);
    arena_init(&arena);
    fault_clear(&fault);
    store = store_new(&cfg, err, sizeof(err));
    ck_assert_msg(store != NULL, "store_new: %s", err);
    tenant = store_tenant(store, tenant_name, &fault);
    ck_assert_msg(tenant != NULL, "store_tenant: %s", fault.message);
}

static void teardown(void)
{
    store_free(store);
    store = NULL;
    arena_free(&arena);
}

/* ---- building requests ---- */

/* cols: "name|type|null or notnull|default text (empty: none)"; pk: "a" or "a,b". */
static struct table_schema table_make(const char *name, const char *pk, const char *const *cols)
{
    return schema_fixture_table(&arena, tenant_name, &cfg.block_tables, name, pk, cols);
}

static const char *const contact_cols[] = {
    "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'')",
    "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))", NULL};
static const char *const sale_cols[] = {"sale_id|int|notnull|", "note|varchar(10)|null|", NULL};
static const char *const link_cols[] = {"a|int|notnull|", "b|int|notnull|",
                                        "note|varchar(10)|null|", NULL};

static struct table_schema contact_table(void)
{
    return table_make("contact", "contact_id", contact_cols);
}

static struct table_schema sale_table(void)
{
    return table_make("sale", "sale_id", sale_cols);
}

/* rows: "OP:lsn|v1|v2..." (lsn empty: none; "~" NULL; "@..." base64; empty: <V/>). */
static struct batch batch_make(const char *table, const char *columns, long long lsn,
                               const char *const *rows)
{
    struct batch b;
    memset(&b, 0, sizeof(b));
    b.table = arena_strdup(&arena, table);
    char *names = arena_strdup(&arena, columns);
    b.columns = arena_calloc(&arena, 64, sizeof(*b.columns));
    for (char *save = NULL, *col = strtok_r(names, ",", &save); col;
         col = strtok_r(NULL, ",", &save))
        b.columns[b.ncolumns++] = col;
    b.has_lsn = lsn >= 0;
    b.lsn = lsn;
    while (rows && rows[b.nrows])
        b.nrows++;
    b.rows = arena_calloc(&arena, b.nrows + 1, sizeof(*b.rows));
    for (size_t r = 0; r < b.nrows; r++) {
        struct row *row = &b.rows[r];
        char *cursor = arena_strdup(&arena, rows[r]);
        row->op = cursor[0];
        cursor += 2;
        char *row_lsn = schema_fixture_field(&cursor);
        row->has_lsn = *row_lsn != '\0';
        row->lsn = row->has_lsn ? strtoll(row_lsn, NULL, 10) : 0;
        row->values = arena_calloc(&arena, 64, sizeof(*row->values));
        for (char *v; (v = schema_fixture_field(&cursor)) != NULL;) {
            struct raw_value *raw = &row->values[row->nvalues++];
            if (strcmp(v, "~") == 0) {
                raw->kind = RAW_NULL;
            } else {
                raw->kind = v[0] == '@' ? RAW_BASE64 : RAW_TEXT;
                raw->data = v[0] == '@' ? v + 1 : v;
                raw->len = strlen(raw->data);
            }
        }
    }
    return b;
}

static int schema_call(struct table_schema *tables, size_t n, struct table_state **states,
                       size_t *nstates)
{
    fault_clear(&fault);
    return store_table_schema(tenant, tables, n, &arena, states, nstates, &fault);
}

static void schema_ok(struct table_schema *tables, size_t n, struct table_state **states,
                      size_t *nstates)
{
    ck_assert_msg(schema_call(tables, n, states, nstates) == 0, "TableSchema: %s",
                  fault.message);
}

static int rows_call(struct batch *batches, size_t n, struct table_state **states,
                     size_t *nstates)
{
    fault_clear(&fault);
    return store_row_data(tenant, batches, n, &arena, states, nstates, &fault);
}

static struct table_state *rows_ok(struct batch *batches, size_t n, size_t expect_tables)
{
    struct table_state *states;
    size_t nstates;
    ck_assert_msg(rows_call(batches, n, &states, &nstates) == 0, "RowData: %s", fault.message);
    ck_assert_uint_eq(nstates, expect_tables);
    return states;
}

/* A TableSchema of the one table name (pk its key, cols as table_make takes them). */
static void create_table(const char *name, const char *pk, const char *const *cols)
{
    struct table_schema t = table_make(name, pk, cols);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
}

static void create_contact(void)
{
    create_table("contact", "contact_id", contact_cols);
}

static const struct table_meta *meta_named(const char *name, size_t *count)
{
    struct table_meta *meta;
    size_t n;
    fault_clear(&fault);
    ck_assert_msg(store_list_tables(tenant, &arena, &meta, &n, &fault) == 0, "%s",
                  fault.message);
    if (count)
        *count = n;
    for (size_t i = 0; i < n; i++)
        if (ident_equal(meta[i].name, name))
            return &meta[i];
    return NULL;
}

static long long stored_lsn(const char *name)
{
    const struct table_meta *m = meta_named(name, NULL);
    ck_assert_ptr_nonnull(m);
    return (long long)m->lsn;
}

/* n inserts of contact rows (keys 1..n) in the test arena, NULL-terminated. */
static const char **contact_inserts(int n)
{
    const char **rows = arena_calloc(&arena, (size_t)n + 1, sizeof(*rows));
    for (int i = 0; i < n; i++) {
        struct buf row = BUF_INIT;
        buf_printf(&row, "I:|%d|n%d|2026-01-01T00:00:00|%d.5", i + 1, i, i);
        rows[i] = arena_strdup(&arena, row.data);
        buf_free(&row);
    }
    return rows;
}

/* Two contact rows at lsn 100, table position 100. */
static void load_contacts(void)
{
    create_contact();
    static const char *const rows[] = {"I:|1|Acme|2026-11-26T10:15:00.123|12.5000",
                                       "I:|2|~|2026-11-26T10:16:00|0.0000", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 100, rows);
    rows_ok(&b, 1, 1);
}

/* TableSchema of contact with cols, after load_contacts: checks the Change and lsn answered. */
static struct table_schema contact_changed(const char *const *cols, enum table_change change,
                                           int64_t lsn)
{
    struct table_schema t = table_make("contact", "contact_id", cols);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    ck_assert_int_eq(states[0].change, change);
    ck_assert_int_eq(states[0].lsn, lsn);
    return t;
}

/* ---- provisioning and TableSchema ---- */

START_TEST(test_provision_empty)
{
    size_t n = 99;
    ck_assert_ptr_null(meta_named("contact", &n));
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* Whether a tenant has a mirror is told without making one (somirrorctl tables). */
START_TEST(test_tenant_exists_makes_nothing)
{
    char other[80];
    snprintf(other, sizeof(other), "%s_none", tenant_name);
    int exists = -1;
    ck_assert_int_eq(store_tenant_exists(store, tenant_name, &exists, &fault), 0);
    ck_assert_int_eq(exists, 1);
    ck_assert_int_eq(store_tenant_exists(store, other, &exists, &fault), 0);
    ck_assert_int_eq(exists, 0);
    ck_assert_int_eq(store_tenant_exists(store, other, &exists, &fault), 0);
    ck_assert_int_eq(exists, 0);   /* still none: the first look made nothing */
}
END_TEST

START_TEST(test_schema_created_then_unchanged)
{
    struct table_schema t[2] = {contact_table(), sale_table()};
    struct table_state *states;
    size_t n;
    schema_ok(t, 2, &states, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(states[0].name, "contact");
    ck_assert_int_eq(states[0].change, CHANGE_CREATED);
    ck_assert_int_eq(states[0].lsn, -1);
    ck_assert_int_eq(states[1].change, CHANGE_CREATED);
    const struct table_meta *m = meta_named("contact", NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->hash, "41235f1f392599c0f11b842dfa7c699114117e7c98f63364942176d387d38083");
    ck_assert_str_eq(m->canonical, t[0].canonical);
    ck_assert_int_eq(m->lsn, -1);
    ck_assert_int_gt(m->updated, 1700000000);

    static const char *const rows[] = {"I:|1|a|2026-01-01T00:00:00|1", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 500, rows);
    rows_ok(&b, 1, 1);
    struct table_schema again[2] = {contact_table(), sale_table()};
    schema_ok(again, 2, &states, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(states[0].change, CHANGE_UNCHANGED);
    ck_assert_int_eq(states[0].lsn, 500);
    ck_assert_int_eq(states[1].change, CHANGE_UNCHANGED);
    ck_assert_int_eq(states[1].lsn, -1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 1);
}
END_TEST

START_TEST(test_schema_altered_add_nullable)
{
    load_contacts();
    static const char *const cols[] = {
        "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'')",
        "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))",
        "nick|varchar(20)|null|('x')", "plain|int|null|", NULL};
    struct table_schema t = contact_changed(cols, CHANGE_ALTERED, 100);
    ck_assert_int_eq(stored_lsn("contact"), 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact WHERE nick IS NULL AND plain IS NULL"),
                     2);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "Acme");
    ck_assert_str_eq(meta_named("contact", NULL)->canonical, t.canonical);
    /* new rows get the new default */
    probe_exec("INSERT INTO contact (contact_id, registered) VALUES (9, '2026-01-01 00:00:00')");
    ck_assert_str_eq(probe_text("SELECT nick FROM contact WHERE contact_id = 9"), "x");
}
END_TEST

START_TEST(test_schema_altered_add_not_null_default)
{
    load_contacts();
    static const char *const cols[] = {
        "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'')",
        "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))",
        "kind|int|notnull|((7))", "label|nvarchar(5)|notnull|(N'it''s')", NULL};
    contact_changed(cols, CHANGE_ALTERED, 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact WHERE kind = 7"), 2);
    ck_assert_str_eq(probe_text("SELECT label FROM contact WHERE contact_id = 2"), "it's");
}
END_TEST

START_TEST(test_schema_altered_drop_column)
{
    load_contacts();
    static const char *const cols[] = {"contact_id|int|notnull|",
                                       "registered|datetime|notnull|(getutcdate())",
                                       "amount|decimal(18,4)|notnull|((0))", NULL};
    contact_changed(cols, CHANGE_ALTERED, 100);
    struct table_state *states;
    size_t n;
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    /* the old column list no longer matches; the new one does */
    static const char *const old_rows[] = {"U:|1|x|2026-01-01T00:00:00|1", NULL};
    struct batch old_batch = batch_make("contact", "contact_id,name,registered,amount", -1,
                                        old_rows);
    ck_assert_int_ne(rows_call(&old_batch, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_COLUMN_MISMATCH);
    ck_assert_str_eq(fault.column, "name");
    static const char *const rows[] = {"U:|1|2026-01-01T00:00:00|3", NULL};
    struct batch b = batch_make("contact", "contact_id,registered,amount", -1, rows);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(probe_text("SELECT amount FROM contact WHERE contact_id = 1"), "3");
}
END_TEST

START_TEST(test_schema_altered_default_change)
{
    load_contacts();
    static const char *const cols[] = {
        "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'none')",
        "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((1.5))",
        NULL};
    contact_changed(cols, CHANGE_ALTERED, 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "Acme");
    ck_assert_ptr_null(probe_text("SELECT name FROM contact WHERE contact_id = 2"));
    ck_assert_str_eq(probe_text("SELECT registered FROM contact WHERE contact_id = 1"),
                     "2026-11-26 10:15:00.123");
    probe_exec("INSERT INTO contact (contact_id, registered) VALUES (9, '2026-01-01 00:00:00')");
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 9"), "none");
    ck_assert_str_eq(probe_text("SELECT amount FROM contact WHERE contact_id = 9"), "1.5");
    /* rows still apply through the rebuilt table */
    static const char *const rows[] = {"U:101|2|b|2026-01-01T00:00:00|2", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 101, rows);
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_int_eq(st[0].updated, 1);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 2"), "b");
}
END_TEST

START_TEST(test_schema_recreated)
{
    load_contacts();
    static const char *const cols[] = {
        "contact_id|int|notnull|", "name|nvarchar(100)|null|(N'')",
        "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))",
        NULL};
    struct table_schema t = contact_changed(cols, CHANGE_RECREATED, -1);
    ck_assert_int_eq(stored_lsn("contact"), -1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
    ck_assert_str_eq(meta_named("contact", NULL)->hash, t.hash);
}
END_TEST

START_TEST(test_schema_dropped_ordered_by_name)
{
    struct table_schema all[3] = {contact_table(), table_make("zeta", "a", link_cols),
                                  table_make("Beta", "a,b", link_cols)};
    struct table_state *states;
    size_t n;
    schema_ok(all, 3, &states, &n);
    struct table_schema only = sale_table();
    schema_ok(&only, 1, &states, &n);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(states[0].name, "sale");
    ck_assert_int_eq(states[0].change, CHANGE_CREATED);
    const char *expect[] = {"Beta", "contact", "zeta"};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(states[1 + i].name, expect[i]);
        ck_assert_int_eq(states[1 + i].change, CHANGE_DROPPED);
        ck_assert_int_eq(states[1 + i].lsn, -1);
    }
    size_t count;
    ck_assert_ptr_null(meta_named("contact", &count));
    ck_assert_uint_eq(count, 1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = 'contact'"), 0);
}
END_TEST

START_TEST(test_schema_rejected_drops_existing)
{
    load_contacts();
    static const char *const cols[] = {"contact_id|int|notnull|", "shape|geography|null|",
                                       NULL};
    struct table_schema t[2] = {table_make("contact", "contact_id", cols), sale_table()};
    ck_assert_ptr_nonnull(t[0].reject);
    struct table_state *states;
    size_t n;
    schema_ok(t, 2, &states, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(states[0].change, CHANGE_REJECTED);
    ck_assert_int_eq(states[0].lsn, -1);
    ck_assert_str_eq(states[0].error, t[0].reject);
    ck_assert_int_eq(states[1].change, CHANGE_CREATED);
    ck_assert_ptr_null(meta_named("contact", NULL));
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = 'contact'"), 0);
    /* and it is unknown to the data calls */
    static const char *const rows[] = {"I:|1|~", NULL};
    struct batch b = batch_make("contact", "contact_id,shape", -1, rows);
    ck_assert_int_ne(rows_call(&b, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_UNKNOWN_TABLE);
    ck_assert_str_eq(fault.table, "contact");
}
END_TEST

START_TEST(test_schema_malformed)
{
    create_contact();
    struct table_state *states;
    size_t n;
    ck_assert_int_ne(schema_call(NULL, 0, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
    struct table_schema twice[2] = {sale_table(), table_make("SALE", "sale_id", sale_cols)};
    ck_assert_int_ne(schema_call(twice, 2, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(meta_named("contact", NULL));
    ck_assert_ptr_null(meta_named("sale", NULL));
}
END_TEST

START_TEST(test_schema_one_transaction)
{
    load_contacts();
    /* a table the store does not know of blocks the creation of the second request table */
    probe_exec("CREATE TABLE sale (x int)");
    struct table_schema t[3] = {table_make("alpha", "a", link_cols), sale_table(),
                                table_make("zeta", "a", link_cols)};
    struct table_state *states;
    size_t n;
    ck_assert_int_ne(schema_call(t, 3, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_STORAGE_ERROR);
    ck_assert(fault_retryable(fault.code));
    size_t count;
    ck_assert_ptr_nonnull(meta_named("contact", &count));
    ck_assert_uint_eq(count, 1);
    ck_assert_int_eq(stored_lsn("contact"), 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = 'alpha'"), 0);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    /* the store still works after the rollback */
    probe_exec("DROP TABLE sale");
    schema_ok(t, 3, &states, &n);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(states[3].change, CHANGE_DROPPED);
}
END_TEST

/* ---- RowData ---- */

START_TEST(test_rows_insert_update_delete)
{
    load_contacts();
    static const char *const rows[] = {"I:101|3|Cee|2026-11-26T11:00:00|1.0000",
                                       "U:102|1|Acme & Sons|2026-11-26T10:15:00.127|13.0000",
                                       "D:103|2", "D:104|77", "U:105|4|new|2026-01-01T00:00:00|0",
                                       NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 105, rows);
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_str_eq(st[0].name, "contact");
    ck_assert_int_eq(st[0].inserted, 1);
    ck_assert_int_eq(st[0].updated, 2);
    ck_assert_int_eq(st[0].deleted, 2);
    ck_assert_int_eq(st[0].skipped, 0);
    ck_assert_int_eq(st[0].lsn, 105);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 3);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "Acme & Sons");
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 4"), "new");
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact WHERE contact_id = 2"), 0);
}
END_TEST

/* A table named excluded: an upsert's "excluded" must still be the row sent, not the table
 * (SQLite read it as the table and updated nothing; PostgreSQL called it ambiguous). */
START_TEST(test_rows_table_named_excluded)
{
    static const char *const cols[] = {"id|int|notnull|", "v|nvarchar(10)|null|", NULL};
    create_table("excluded", "id", cols);
    static const char *const load[] = {"I:|1|old", "I:|2|two", NULL};
    struct batch b = batch_make("excluded", "id,v", 1, load);
    rows_ok(&b, 1, 1);
    static const char *const change[] = {"U:2|1|new", "I:3|2|second", NULL};
    b = batch_make("excluded", "id,v", 3, change);
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_int_eq(st[0].skipped, 0);
    ck_assert_str_eq(probe_text("SELECT v FROM excluded WHERE id = 1"), "new");
    ck_assert_str_eq(probe_text("SELECT v FROM excluded WHERE id = 2"), "second");
}
END_TEST

/* GUID keys compare in any case, as in SQL Server: a key sent in lowercase updates and
 * deletes the row sent in uppercase, also twice in one call; the text stays as first sent. */
START_TEST(test_rows_guid_key_in_any_case)
{
    static const char *const cols[] = {"id|uniqueidentifier|notnull|", "v|int|null|", NULL};
    create_table("items", "id", cols);
    static const char *const load[] = {"I:|6F9619FF-8B86-D011-B42D-00C04FC964FF|1",
                                       "I:|0E984725-C51C-4BF4-9960-E1C80E27ABA0|2", NULL};
    struct batch b = batch_make("items", "id,v", 1, load);
    rows_ok(&b, 1, 1);
    static const char *const change[] = {"U:2|6f9619ff-8b86-d011-b42d-00c04fc964ff|10",
                                         "U:3|6F9619FF-8b86-D011-B42D-00C04FC964FF|11",
                                         "D:4|0e984725-c51c-4bf4-9960-e1c80e27aba0", NULL};
    b = batch_make("items", "id,v", 4, change);
    rows_ok(&b, 1, 1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM items"), 1);
    ck_assert_str_eq(probe_text("SELECT id FROM items"), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    ck_assert_int_eq(probe_long("SELECT v FROM items"), 11);
}
END_TEST

START_TEST(test_rows_idempotent_resend_and_stale_skip)
{
    load_contacts();
    static const char *const rows[] = {"U:150|1|second|2026-01-01T00:00:00|1",
                                       "I:90|5|stale|2026-01-01T00:00:00|1",
                                       "I:|6|untracked|2026-01-01T00:00:00|1", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 150, rows);
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_int_eq(st[0].skipped, 1);
    ck_assert_int_eq(st[0].inserted, 1);
    ck_assert_int_eq(st[0].updated, 1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact WHERE contact_id = 5"), 0);
    /* the same call again: tracked rows are stale now, untracked ones apply again */
    struct batch again = batch_make("contact", "contact_id,name,registered,amount", 150, rows);
    st = rows_ok(&again, 1, 1);
    ck_assert_int_eq(st[0].skipped, 2);
    ck_assert_int_eq(st[0].inserted, 1);
    ck_assert_int_eq(st[0].updated, 0);
    ck_assert_int_eq(st[0].lsn, 150);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 3);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "second");
}
END_TEST

START_TEST(test_rows_positions_only_forward)
{
    load_contacts();
    struct batch quiet = batch_make("contact", "contact_id,name,registered,amount", 40, NULL);
    struct table_state *st = rows_ok(&quiet, 1, 1);
    ck_assert_int_eq(st[0].lsn, 100);
    ck_assert_int_eq(stored_lsn("contact"), 100);
    struct batch forward[2] = {
        batch_make("contact", "contact_id,name,registered,amount", 300, NULL),
        batch_make("contact", "amount,registered,name,contact_id", 200, NULL)};
    st = rows_ok(forward, 2, 1);
    ck_assert_int_eq(st[0].lsn, 300);
    ck_assert_int_eq(stored_lsn("contact"), 300);
}
END_TEST

START_TEST(test_rows_several_batches_and_tables)
{
    create_contact();
    static const char *const link[] = {"a|int|notnull|", "b|int|notnull|",
                                       "note|varchar(10)|null|", NULL};
    struct table_schema t[2] = {contact_table(), table_make("link", "a,b", link)};
    struct table_state *states;
    size_t n;
    schema_ok(t, 2, &states, &n);
    static const char *const c1[] = {"I:|1|one|2026-01-01T00:00:00|1", NULL};
    static const char *const l1[] = {"I:|2|1|x", "I:|3|1|y", NULL};  /* Columns b,a */
    static const char *const c2[] = {"U:|two|1|1|2026-01-01T00:00:00", NULL};
    static const char *const l2[] = {"D:|1|3", NULL};                 /* key order a,b */
    struct batch b[4] = {
        batch_make("contact", "contact_id,name,registered,amount", -1, c1),
        batch_make("LINK", "b,a,note", 7, l1),
        batch_make("contact", "name,contact_id,amount,registered", 9, c2),
        batch_make("link", "note,a,b", -1, l2)};
    struct table_state *st = rows_ok(b, 4, 2);
    ck_assert_str_eq(st[0].name, "contact");
    ck_assert_int_eq(st[0].inserted, 1);
    ck_assert_int_eq(st[0].updated, 1);
    ck_assert_int_eq(st[0].lsn, 9);
    ck_assert_str_eq(st[1].name, "LINK");
    ck_assert_int_eq(st[1].inserted, 2);
    ck_assert_int_eq(st[1].deleted, 1);
    ck_assert_int_eq(st[1].lsn, 7);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "two");
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM link"), 1);
    ck_assert_str_eq(probe_text("SELECT note FROM link WHERE a = 1 AND b = 2"), "x");
}
END_TEST

START_TEST(test_rows_column_mismatch)
{
    load_contacts();
    struct table_state *states;
    size_t n;
    static const struct {
        const char *columns;
        const char *column;
    } cases[] = {
        {"contact_id,name,registered", "amount"},
        {"contact_id,name,registered,amount,extra", "extra"},
        {"contact_id,name,NAME,amount", "NAME"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct batch b = batch_make("contact", cases[i].columns, 500, NULL);
        ck_assert_int_ne(rows_call(&b, 1, &states, &n), 0);
        ck_assert_int_eq(fault.code, FAULT_COLUMN_MISMATCH);
        ck_assert_str_eq(fault.table, "contact");
        ck_assert_str_eq(fault.column, cases[i].column);
    }
    ck_assert_int_eq(stored_lsn("contact"), 100);
}
END_TEST

START_TEST(test_rows_unknown_and_blocked_table)
{
    load_contacts();
    struct table_state *states;
    size_t n;
    struct batch b[2] = {batch_make("contact", "contact_id,name,registered,amount", 900, NULL),
                         batch_make("nosuch", "a", 5, NULL)};
    ck_assert_int_ne(rows_call(b, 2, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_UNKNOWN_TABLE);
    ck_assert_str_eq(fault.table, "nosuch");
    ck_assert_int_eq(stored_lsn("contact"), 100);
    struct batch blocked = batch_make("Login", "a", 5, NULL);
    ck_assert_int_ne(rows_call(&blocked, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_BLOCKED_TABLE);
    ck_assert_int_ne(rows_call(NULL, 0, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
}
END_TEST

START_TEST(test_rows_invalid_value_names_row)
{
    load_contacts();
    struct table_state *states;
    size_t n;
    static const char *const first[] = {"I:|10|a|2026-01-01T00:00:00|1",
                                        "I:50|11|stale but checked|2026-01-01T00:00:00|1", NULL};
    static const char *const second[] = {"I:|1|12|c|2026-01-01T00:00:00",
                                         "I:|123456789012345678901|13|d|2026-01-01T00:00:00",
                                         NULL};
    struct batch b[2] = {batch_make("contact", "contact_id,name,registered,amount", 900, first),
                         batch_make("contact", "amount,contact_id,name,registered", 901, second)};
    ck_assert_int_ne(rows_call(b, 2, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_INVALID_VALUE);
    ck_assert_str_eq(fault.table, "contact");
    ck_assert_str_eq(fault.column, "amount");
    ck_assert_int_eq(fault.row, 4);
    ck_assert_msg(strncmp(fault.message, "row 4 of table contact: column amount: ", 39) == 0,
                  "%s", fault.message);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    ck_assert_int_eq(stored_lsn("contact"), 100);

    /* a skipped row is checked too; NOT NULL is checked */
    static const char *const stale[] = {"I:5|1|~|2026-01-01T00:00:00|~", NULL};
    struct batch s = batch_make("contact", "contact_id,name,registered,amount", -1, stale);
    ck_assert_int_ne(rows_call(&s, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_INVALID_VALUE);
    ck_assert_int_eq(fault.row, 1);
    ck_assert_str_eq(fault.column, "amount");

    /* a value count that does not match */
    static const char *const short_row[] = {"I:|1|x", NULL};
    struct batch m = batch_make("contact", "contact_id,name,registered,amount", -1, short_row);
    ck_assert_int_ne(rows_call(&m, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
    static const char *const long_delete[] = {"D:|1|2", NULL};
    struct batch d = batch_make("contact", "contact_id,name,registered,amount", -1, long_delete);
    ck_assert_int_ne(rows_call(&d, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
}
END_TEST

START_TEST(test_rows_many_rows_in_chunks)
{
    create_contact();
    enum { NROWS = 2500 };
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 42,
                                contact_inserts(NROWS));
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_int_eq(st[0].inserted, NROWS);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), NROWS);
    ck_assert_str_eq(probe_text("SELECT amount FROM contact WHERE contact_id = 2500"), "2499.5");
}
END_TEST

/* ---- Wipe, resync, reset, tenants ---- */

START_TEST(test_wipe)
{
    load_contacts();
    struct table_schema t[2] = {contact_table(), sale_table()};
    struct table_state *states;
    size_t n;
    schema_ok(t, 2, &states, &n);
    char *unknown[] = {"contact", "nosuch"};
    fault_clear(&fault);
    ck_assert_int_ne(store_wipe(tenant, unknown, 2, &arena, &states, &fault), 0);
    ck_assert_int_eq(fault.code, FAULT_UNKNOWN_TABLE);
    ck_assert_str_eq(fault.table, "nosuch");
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    char *blocked[] = {"contact", "LOGIN"};
    ck_assert_int_ne(store_wipe(tenant, blocked, 2, &arena, &states, &fault), 0);
    ck_assert_int_eq(fault.code, FAULT_BLOCKED_TABLE);
    ck_assert_int_ne(store_wipe(tenant, NULL, 0, &arena, &states, &fault), 0);
    ck_assert_int_eq(fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_int_eq(stored_lsn("contact"), 100);

    char *names[] = {"CONTACT"};
    ck_assert_int_eq(store_wipe(tenant, names, 1, &arena, &states, &fault), 0);
    ck_assert_str_eq(states[0].name, "CONTACT");
    ck_assert_int_eq(states[0].lsn, -1);
    ck_assert_int_eq(stored_lsn("contact"), -1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
    ck_assert_ptr_nonnull(meta_named("sale", NULL));
}
END_TEST

/* Operator SQL names a table the way the request did; {table} becomes the name as this store
 * keeps it (PostgreSQL lowercases, SQL Server qualifies). */
START_TEST(test_table_script)
{
    load_contacts();
    char err[512];
    ck_assert_msg(store_run_table_script(tenant, "CONTACT", "DELETE FROM {table} WHERE 1 = 1", err,
                                         sizeof(err)) == 0, "table script failed: %s", err);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
    ck_assert_int_ne(store_run_table_script(tenant, "bad name", "SELECT 1", err, sizeof(err)), 0);
    /* A script that fails inside a transaction of its own leaves nothing open: the mirror's
     * next call still begins (SQLite said "cannot start a transaction within a transaction"). */
    ck_assert_int_ne(store_run_table_script(tenant, "contact",
                                            "BEGIN; DELETE FROM {table}; SELECT * FROM no_such_table; COMMIT;",
                                            err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(meta_named("contact", NULL));
    /* One that succeeds but leaves its transaction open: rolled back, a failure, and the next
     * call still begins and applies. */
    ck_assert_int_ne(store_run_table_script(tenant, "contact", "BEGIN; DELETE FROM {table};", err,
                                            sizeof(err)), 0);
    ck_assert_msg(strstr(err, "left a transaction open") != NULL, "%s", err);
    static const char *const rows[] = {"I:|77|after|2026-01-01T00:00:00|1", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 200, rows);
    rows_ok(&b, 1, 1);
    ck_assert_int_eq(stored_lsn("contact"), 200);
}
END_TEST

START_TEST(test_resync)
{
    load_contacts();
    struct table_schema t[2] = {contact_table(), sale_table()};
    struct table_state *states;
    size_t n;
    schema_ok(t, 2, &states, &n);
    static const char *const rows[] = {"I:|1|x", NULL};
    struct batch b = batch_make("sale", "sale_id,note", 8, rows);
    rows_ok(&b, 1, 1);
    char *names[] = {"sale", "nosuch"};
    ck_assert_int_eq(store_resync(tenant, names, 2, &fault), 0);
    ck_assert_int_eq(stored_lsn("sale"), -1);
    ck_assert_int_eq(stored_lsn("contact"), 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sale"), 0);
    ck_assert_int_eq(store_resync(tenant, NULL, 0, &fault), 0);
    ck_assert_int_eq(stored_lsn("contact"), -1);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
}
END_TEST

START_TEST(test_reset)
{
    load_contacts();
    ck_assert_int_eq(store_reset(store, tenant_name, &fault), 0);
    tenant = store_tenant(store, tenant_name, &fault);
    ck_assert_ptr_nonnull(tenant);
    size_t count = 99;
    ck_assert_ptr_null(meta_named("contact", &count));
    ck_assert_uint_eq(count, 0);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = 'contact'"), 0);
    create_contact();
    ck_assert_ptr_nonnull(meta_named("contact", NULL));
}
END_TEST

START_TEST(test_tenant_cache_bounded)
{
    struct config small = cfg;
    small.sqlite.max_open = 2;
    char err[256];
    struct store *s = store_new(&small, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    char names[3][80];
    for (int i = 0; i < 3; i++) {
        snprintf(names[i], sizeof(names[i]), "%s_%d", tenant_name, i);
        ck_assert_ptr_nonnull(store_tenant(s, names[i], &fault));
    }
    for (int i = 2; i >= 0; i--) {
        struct store_tenant *t = store_tenant(s, names[i], &fault);
        ck_assert_ptr_nonnull(t);
        struct table_meta *meta;
        size_t n;
        ck_assert_int_eq(store_list_tables(t, &arena, &meta, &n, &fault), 0);
    }
    ck_assert_ptr_null(store_tenant(s, "bad/name", &fault));
    store_free(s);
}
END_TEST

/* Out of descriptors with mirrors open (SQLite: three each), a new tenant's mirror is opened
 * all the same: the least recently used one gives its up, rather than every new tenant failing
 * until the idle sweep. The process's limit is lowered to what it holds plus a few. */
START_TEST(sqlite_tenants_out_of_descriptors)
{
    char err[256];
    struct store *s = store_new(&cfg, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    long held = 0;
    for (int fd = 0; fd < 4096; fd++)
        held += fcntl(fd, F_GETFD) != -1;
    struct rlimit before, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &before), 0);
    low = before;
    low.rlim_cur = (rlim_t)held + 8;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    char names[8][80];
    int opened = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof(names[i]), "%s_fd%d", tenant_name, i);
        struct store_tenant *t = store_tenant(s, names[i], &fault);
        struct table_meta *meta;
        size_t n;
        if (t && store_list_tables(t, &arena, &meta, &n, &fault) == 0)
            opened++;
        else
            break;
    }
    setrlimit(RLIMIT_NOFILE, &before);
    ck_assert_msg(opened == 8, "tenant %d: %s", opened, fault.message);
    store_free(s);
}
END_TEST

/* The sessions this process's stores hold on the current tenant's mirror (SQLite: open
 * descriptors of its file), and on the server's own database (PostgreSQL's admin connection;
 * 0 for the others). */
static long mirror_sessions(int admin)
{
    if (cfg.driver == STORE_POSTGRESQL)
        return probe_long("SELECT count(*) FROM pg_stat_activity WHERE datname %s current_database()"
                          " AND usename = current_user AND pid <> pg_backend_pid()", admin ? "<>" : "=");
    if (admin)
        return 0;
    if (cfg.driver == STORE_MSSQL)
        return probe_long("SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE database_id = DB_ID()"
                          " AND session_id <> @@SPID");
    char path[512], link[512], fd_path[64];
    snprintf(path, sizeof(path), "%s/Mirror_%s.db", sqlite_dir, tenant_name);
    long n = 0;
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", fd);
        ssize_t len = readlink(fd_path, link, sizeof(link) - 1);
        if (len > 0 && (link[len] = '\0', strcmp(link, path) == 0))
            n++;
    }
    return n;
}

/* mirror_sessions(admin) once it is want, or after 5 s what it is then: a PostgreSQL backend
 * leaves pg_stat_activity a moment after its client has closed the connection. */
static long mirror_sessions_become(int admin, long want)
{
    long n = mirror_sessions(admin);
    for (int tries = 0; n != want && cfg.driver == STORE_POSTGRESQL && tries < 100; tries++) {
        usleep(50 * 1000);
        n = mirror_sessions(admin);
    }
    return n;
}

START_TEST(test_tenants_closed_when_idle)
{
    store_free(store);   /* the fixture's: only s holds the mirror (SQLite keeps a file open */
    store = NULL;        /* while another connection of the process holds a lock on it) */
    struct config idle = cfg;
    idle.store_idle_timeout = 60;
    char err[256];
    struct store *s = store_new(&idle, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    /* the fixture's sessions gone first */
    long before = mirror_sessions_become(0, 0), admin_before = mirror_sessions_become(1, 0);
    ck_assert_int_eq(before, 0);
    int64_t opened = monotonic_ms();
    ck_assert_ptr_nonnull(store_tenant(s, tenant_name, &fault));
    long open = mirror_sessions(0), admin_open = mirror_sessions(1);
    ck_assert_int_eq(open, 1);
    if (cfg.driver == STORE_POSTGRESQL)
        ck_assert_int_eq(admin_open, admin_before + 1);   /* to look the database up */
    /* (Counted with mirror_sessions_become: the probe's own earlier sessions may still be
     * ending, seen for a moment, on a loaded machine.) */
    store_close_idle(s, monotonic_ms());            /* just used: kept */
    ck_assert_int_eq(mirror_sessions_become(0, open), open);
    store_close_idle(s, opened + 59000);            /* not yet */
    ck_assert_int_eq(mirror_sessions_become(0, open), open);
    store_close_idle(s, monotonic_ms() + 60000);
    ck_assert_int_eq(mirror_sessions_become(0, before), before);
    ck_assert_int_eq(mirror_sessions_become(1, admin_before), admin_before);
    ck_assert_ptr_nonnull(store_tenant(s, tenant_name, &fault));   /* opened again when needed */
    ck_assert_int_eq(mirror_sessions_become(0, open), open);
    store_free(s);
    ck_assert_int_eq(mirror_sessions_become(0, before), before);
}
END_TEST

/* ---- tests on both SQLite and SQL Server ---- */

/* Table name, keyed by its first column id, with one row inserted by the driver's SQL with its
 * key alone: every other column gets its default (or NULL). */
static void table_with_defaulted_row(const char *name, const char *const *cols)
{
    struct table_schema t = table_make(name, "id", cols);
    ck_assert_ptr_null(t.reject);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    char insert[128];
    snprintf(insert, sizeof(insert), "INSERT INTO %s (id) VALUES (1)", name);
    probe_exec(insert);
}

/* The *_defaults_translated tests' start: table defs, one default of each kind, a row inserted
 * with its key alone, and the defaults both drivers store alike. c_sql, d_sql and e_sql read
 * columns c (varbinary, as hex), d (datetime, as ISO text) and e (uniqueidentifier, as text) in
 * the driver's SQL. */
static void defaults_inserted(const char *c_sql, const char *d_sql, const char *e_sql)
{
    static const char *const cols[] = {
        "id|int|notnull|", "a|int|notnull|((-5))", "b|nvarchar(20)|null|(N'it''s')",
        "c|varbinary(4)|null|(0xABC)", "d|datetime|null|(getutcdate())",
        "e|uniqueidentifier|null|(newid())", "f|decimal(20,4)|null|((123456789012.3456))",
        "g|datetimeoffset(7)|null|(sysdatetimeoffset())", "h|int|null|(NULL)", NULL};
    table_with_defaulted_row("defs", cols);
    ck_assert_str_eq(probe_text("SELECT a FROM defs"), "-5");
    ck_assert_str_eq(probe_text("SELECT b FROM defs"), "it's");
    ck_assert_str_eq(probe_text("%s", c_sql), "0ABC");
    ck_assert_str_eq(probe_text("SELECT f FROM defs"), "123456789012.3456");
    ck_assert_ptr_null(probe_text("SELECT h FROM defs"));
    char *d = probe_text("%s", d_sql);
    ck_assert_uint_eq(strlen(d), 23);
    ck_assert_int_eq(d[10], ' ');
    char *e = probe_text("%s", e_sql);
    ck_assert_uint_eq(strlen(e), 36);
    ck_assert_int_eq(e[14], '4');
    ck_assert_int_eq(e[8], '-');
}

/* ---- SQLite only ---- */

/* A table_sql script is stopped at hooks.timeout (1 s here), also while it waits for the
 * mirror's write lock (lock_timeout is 5 s); what it sets in the connection goes with it. */
START_TEST(sqlite_table_script_bounded)
{
    load_contacts();
    char err[512] = "";
    struct probe p = probe_open();
    ck_assert_int_eq(sqlite3_exec(p.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    int64_t started = monotonic_ms();
    ck_assert_int_ne(store_run_table_script(tenant, "contact", "CREATE INDEX ix_late ON {table}(name)",
                                            err, sizeof(err)), 0);
    ck_assert_int_lt(monotonic_ms() - started, 3000);
    ck_assert_int_eq(sqlite3_exec(p.db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    probe_close(&p);
    started = monotonic_ms();
    ck_assert_int_ne(store_run_table_script(tenant, "contact", "WITH RECURSIVE c(x) AS (SELECT 1 UNION "
                                            "ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                                            err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "stopped after hooks.timeout (1 s)") != NULL, "%s", err);
    ck_assert_int_lt(monotonic_ms() - started, 3000);
    ck_assert_msg(store_run_table_script(tenant, "contact", "PRAGMA query_only = ON", err,
                                         sizeof(err)) == 0, "%s", err);
    static const char *const rows[] = {"I:|78|after|2026-01-01T00:00:00|1", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 300, rows);
    rows_ok(&b, 1, 1);
    ck_assert_int_eq(stored_lsn("contact"), 300);
}
END_TEST

START_TEST(sqlite_file_mode_and_metadata)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/Mirror_%s.db", sqlite_dir, tenant_name);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
    ck_assert_str_eq(probe_text("PRAGMA journal_mode"), "wal");
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = '%s_mirroring'",
                                tenant_name),
                     1);
    load_contacts();
    strcat(path, "-wal");
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
    char *updated = probe_text("SELECT updated FROM \"%s_mirroring\"", tenant_name);
    ck_assert_ptr_nonnull(updated);
    ck_assert_uint_eq(strlen(updated), 19);
    ck_assert_int_eq(updated[10], ' ');
    ck_assert_str_eq(probe_text("SELECT tablename FROM \"%s_mirroring\" WHERE tablename = 'CONTACT'",
                                tenant_name),
                     "contact");
}
END_TEST

/* A table made before GUID keys compared in any case may hold one key in two cases; a change
 * that rebuilds it keeps the later row rather than failing for ever on the new key's NOCASE. */
START_TEST(sqlite_rebuild_keeps_one_of_two_cases)
{
    static const char *const cols[] = {"id|uniqueidentifier|notnull|", "v|int|null|", NULL};
    create_table("items", "id", cols);
    probe_exec("DROP TABLE items; CREATE TABLE items (\"id\" uniqueidentifier NOT NULL, \"v\" int,"
               " PRIMARY KEY (\"id\")); INSERT INTO items VALUES"
               " ('6F9619FF-8B86-D011-B42D-00C04FC964FF', 1), ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 2)");
    static const char *const more[] = {"id|uniqueidentifier|notnull|", "v|int|null|", "w|int|null|((5))", NULL};
    struct table_schema t = table_make("items", "id", more);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    ck_assert_int_eq(states[0].change, CHANGE_ALTERED);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM items"), 1);
    ck_assert_int_eq(probe_long("SELECT v FROM items"), 2);
}
END_TEST

/* The call of b fails with a StorageError whose message holds said (the database's words or
 * SQLSTATE), naming the table contact, the row rowno (0: none) and column (NULL: none). */
static void expect_refused(struct batch *b, const char *said, long rowno, const char *column)
{
    struct table_state *states;
    size_t n;
    ck_assert_int_ne(rows_call(b, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_STORAGE_ERROR);
    ck_assert_msg(strstr(fault.message, said), "%s", fault.message);
    ck_assert_int_eq(fault.names_table, 1);
    ck_assert_str_eq(fault.table, "contact");
    ck_assert_int_eq(fault.names_column, column != NULL);
    if (column)
        ck_assert_str_eq(fault.column, column);
    ck_assert_int_eq(fault.row, rowno);
}

/* Rows the database refuses (a trigger a reader made in the mirror) fail the call with a
 * StorageError naming the table, and nothing is stored. */
START_TEST(sqlite_rows_refused_name_table)
{
    load_contacts();
    probe_exec("CREATE TRIGGER refuse BEFORE UPDATE ON contact BEGIN SELECT RAISE(ABORT, 'no updates'); END");
    static const char *const rows[] = {"I:|3|c|2026-01-01T00:00:00|1", "U:|1|z|2026-01-01T00:00:00|1",
                                       NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 300, rows);
    expect_refused(&b, "no updates", 0, NULL);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 2);
    ck_assert_int_eq(stored_lsn("contact"), 100);
}
END_TEST

/* A view and a trigger that name a table (a reader's, made in the mirror) do not stop a change
 * that rebuilds it, as they do not stop one that recreates it: the rename after the rebuild
 * failed on them ("error in view"), and the TableSchema with it, every cycle. */
START_TEST(sqlite_rebuild_under_a_view)
{
    load_contacts();
    probe_exec("CREATE VIEW names AS SELECT contact_id, name FROM contact;"
               " CREATE TABLE seen (id int); CREATE TRIGGER seen_contact AFTER INSERT ON seen"
               " BEGIN UPDATE contact SET amount = '0' WHERE contact_id = new.id; END");
    static const char *const cols[] = {
        "contact_id|int|notnull|", "name|nvarchar(220)|null|(N'none')",
        "registered|datetime|notnull|(getutcdate())", "amount|decimal(18,4)|notnull|((0))", NULL};
    contact_changed(cols, CHANGE_ALTERED, 100);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM names"), 2);
    ck_assert_str_eq(probe_text("SELECT name FROM names WHERE contact_id = 1"), "Acme");
    probe_exec("INSERT INTO seen VALUES (1)");
    ck_assert_str_eq(probe_text("SELECT amount FROM contact WHERE contact_id = 1"), "0");
}
END_TEST

START_TEST(sqlite_values_read_back_exactly)
{
    static const char *const cols[] = {
        "id|bigint|notnull|", "amount|decimal(18,4)|null|", "whole|numeric(10,0)|null|",
        "cash|money|null|", "at|datetime2(7)|null|", "dto|datetimeoffset(3)|null|",
        "day|date|null|", "tm|time(3)|null|", "bytes|varbinary(max)|null|",
        "flag|bit|null|", "ratio|float|null|", "doc|xml|null|", "guid|uniqueidentifier|null|",
        "big|nvarchar(max)|null|", "stamp|timestamp|null|", NULL};
    struct table_schema t = table_make("vals", "id", cols);
    ck_assert_ptr_null(t.reject);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    static const char *const rows[] = {
        "I:|1|123456789012.3456|12|-922337203685477.5808|2026-11-26T10:15:00.1234567|"
        "2026-11-26T10:15:00.123+01:00|2026-02-28|23:59:59.5|@AAEC/w==|true|1.5|123|"
        "6F9619FF-8B86-D011-B42D-00C04FC964FF|text|@AAAAAAAAB9E=",
        NULL};
    struct batch b = batch_make("vals", "id,amount,whole,cash,at,dto,day,tm,bytes,flag,ratio,doc,"
                                        "guid,big,stamp",
                                -1, rows);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(probe_text("SELECT typeof(amount) || ':' || amount FROM vals"),
                     "text:123456789012.3456");
    ck_assert_str_eq(probe_text("SELECT typeof(whole) || ':' || whole FROM vals"), "text:12");
    ck_assert_str_eq(probe_text("SELECT cash FROM vals"), "-922337203685477.5808");
    ck_assert_str_eq(probe_text("SELECT at FROM vals"), "2026-11-26 10:15:00.1234567");
    ck_assert_str_eq(probe_text("SELECT dto FROM vals"), "2026-11-26 10:15:00.123+01:00");
    ck_assert_str_eq(probe_text("SELECT day || ' ' || tm FROM vals"), "2026-02-28 23:59:59.5");
    ck_assert_str_eq(probe_text("SELECT typeof(bytes) || ':' || hex(bytes) FROM vals"),
                     "blob:000102FF");
    ck_assert_str_eq(probe_text("SELECT typeof(flag) || ':' || flag FROM vals"), "integer:1");
    ck_assert_str_eq(probe_text("SELECT typeof(ratio) || ':' || ratio FROM vals"), "real:1.5");
    ck_assert_str_eq(probe_text("SELECT typeof(doc) || ':' || doc FROM vals"), "text:123");
    ck_assert_str_eq(probe_text("SELECT guid FROM vals"), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    ck_assert_str_eq(probe_text("SELECT typeof(id) FROM vals"), "integer");
    ck_assert_str_eq(probe_text("SELECT hex(stamp) FROM vals"), "00000000000007D1");
}
END_TEST

START_TEST(sqlite_defaults_translated)
{
    defaults_inserted("SELECT hex(c) FROM defs", "SELECT d FROM defs", "SELECT e FROM defs");
    ck_assert_msg(strstr(probe_text("SELECT g FROM defs"), "+00:00") != NULL, "offset");
    /* the single integer key is the rowid */
    ck_assert_str_eq(probe_text("SELECT type FROM pragma_table_info('defs') WHERE name = 'id'"),
                     "INTEGER");
    ck_assert_str_eq(probe_text("SELECT type FROM pragma_table_info('defs') WHERE name = 'f'"),
                     "decimal_text(20,4)");
}
END_TEST

/* A getdate()-family default gives the column's stored form: a date alone, a time with the
 * type's fraction digits, smalldatetime's seconds 00, a datetimeoffset's offset, none where
 * sysdatetimeoffset() goes into a datetime2 (SQL Server's conversion drops it). */
START_TEST(sqlite_time_defaults_by_type)
{
    static const char *const cols[] = {
        "id|int|notnull|", "a|date|null|(getdate())", "b|time(0)|null|(getdate())",
        "c|time(2)|null|(sysutcdatetime())", "d|time(7)|null|(getdate())",
        "e|smalldatetime|null|(getdate())", "f|datetime2(0)|null|(sysdatetimeoffset())",
        "g|datetimeoffset(0)|null|(getdate())", "h|datetimeoffset(1)|null|(sysdatetimeoffset())",
        "i|datetime|null|(getutcdate())", "j|nvarchar(40)|null|(sysdatetimeoffset())", NULL};
#define D2 "[0-9][0-9]"
#define DAY D2 D2 "-" D2 "-" D2
    static const char *const forms[][2] = {
        {"a", DAY},
        {"b", D2 ":" D2 ":" D2},
        {"c", D2 ":" D2 ":" D2 "." D2},
        {"d", D2 ":" D2 ":" D2 ".[0-9][0-9][0-9]"},
        {"e", DAY " " D2 ":" D2 ":00"},
        {"f", DAY " " D2 ":" D2 ":" D2},
        {"g", DAY " " D2 ":" D2 ":" D2 "+00:00"},
        {"h", DAY " " D2 ":" D2 ":" D2 ".[0-9]+00:00"},
        {"i", DAY " " D2 ":" D2 ":" D2 ".[0-9][0-9][0-9]"},
        {"j", DAY " " D2 ":" D2 ":" D2 ".[0-9][0-9][0-9]+00:00"},
    };
#undef DAY
#undef D2
    table_with_defaulted_row("times", cols);
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char *text = probe_text("SELECT %s FROM times", forms[i][0]);
        ck_assert_msg(text && probe_long("SELECT '%s' GLOB '%s'", text, forms[i][1]) == 1,
                      "column %s: %s, not %s", forms[i][0], text ? text : "NULL", forms[i][1]);
    }
}
END_TEST

START_TEST(sqlite_reset_seen_by_other_worker)
{
    load_contacts();
    char err[256];
    struct store *other = store_new(&cfg, err, sizeof(err));
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(store_reset(other, tenant_name, &fault), 0);
    store_free(other);
    /* this worker's open connection notices the new file */
    size_t count = 99;
    ck_assert_ptr_null(meta_named("contact", &count));
    ck_assert_uint_eq(count, 0);
    create_contact();
    ck_assert_int_eq(stored_lsn("contact"), -1);
}
END_TEST

/* Past 1000 WAL pages: 1,200 notes of 4,000 characters (~4.8 MB) in one call. */
static void load_big_notes(int first_id)
{
    static const char *const note_cols[] = {"note_id|int|notnull|", "text|nvarchar(max)|null|", NULL};
    struct table_schema t = table_make("note", "note_id", note_cols);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    enum { NOTES = 1200, NOTE_CHARS = 4000 };
    char *text = arena_alloc(&arena, NOTE_CHARS + 1);
    memset(text, 'n', NOTE_CHARS);
    text[NOTE_CHARS] = '\0';
    const char **rows = arena_calloc(&arena, NOTES + 1, sizeof(*rows));
    for (int i = 0; i < NOTES; i++) {
        struct buf row = BUF_INIT;
        buf_printf(&row, "I:|%d|%s", first_id + i, text);
        rows[i] = arena_strdup(&arena, row.data);
        buf_free(&row);
    }
    struct batch b = batch_make("note", "note_id,text", 1, rows);
    rows_ok(&b, 1, 1);
}

static off_t mirror_file_size(const char *suffix)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/Mirror_%s.db%s", sqlite_dir, tenant_name, suffix);
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Threads of this process (/proc/self/status). */
static long process_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long n = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* The WAL is checkpointed by the worker's checkpointer thread after the commit that took it
 * past 1000 pages, with no further call: the rows reach the main file on their own. */
START_TEST(sqlite_checkpoint_in_background)
{
    load_big_notes(1);
    /* The commit handed the file to the checkpointer thread rather than checkpointing it. */
    ck_assert_int_ge(process_threads(), 2);
    off_t size = 0;
    for (int waited_ms = 0; waited_ms < 10000 && (size = mirror_file_size("")) < 4000000; waited_ms += 10)
        usleep(10 * 1000);
    ck_assert_msg(size >= 4000000, "main file %lld bytes 10 s after the commit", (long long)size);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM note WHERE length(text) = 4000"), 1200);
}
END_TEST

/* A reset or a close right after such a commit waits for a checkpoint under way and drops a
 * queued one: the new mirror is empty and whole, and the closed one is a single file. */
START_TEST(sqlite_checkpoint_then_reset_and_close)
{
    for (int round = 0; round < 3; round++) {
        load_big_notes(1);
        ck_assert_int_eq(store_reset(store, tenant_name, &fault), 0);
        tenant = store_tenant(store, tenant_name, &fault);
        ck_assert_ptr_nonnull(tenant);
        ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sqlite_master WHERE name = 'note'"), 0);
    }
    load_big_notes(1);
    load_big_notes(2001);
    store_free(store);
    store = NULL;
    ck_assert_int_le(mirror_file_size("-wal"), 0);   /* truncated or gone */
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM note"), 2400);
}
END_TEST

/* A WAL file with ~100 KB not yet checkpointed (st: its main file then), and the connection
 * that wrote it, to be closed by the caller (closing it checkpoints). */
static sqlite3 *wal_file(const char *path, struct stat *st)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                                      " CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(100000))",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);   /* the last connection: it would checkpoint, so reopen and write again */
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (randomblob(100000))",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(stat(path, st), 0);
    return db;
}

/* The checkpointer leaves alone a file that is no longer the one the tenant's connection had
 * open (another worker's reset replaced it) and checkpoints the one it had. The queue runs in
 * order, so once the second file is checkpointed the first was looked at. */
START_TEST(sqlite_checkpointer_checks_the_file)
{
    char replaced[512], current[512];
    snprintf(replaced, sizeof(replaced), "%s/replaced_%s.db", sqlite_dir, tenant_name);
    snprintf(current, sizeof(current), "%s/current_%s.db", sqlite_dir, tenant_name);
    struct stat st_replaced, st_current;
    sqlite3 *db_replaced = wal_file(replaced, &st_replaced);
    sqlite3 *db_current = wal_file(current, &st_current);
    struct checkpointer *cp = checkpointer_new();
    char failure[256];
    ck_assert_int_eq(checkpointer_request(cp, replaced, st_replaced.st_dev, st_replaced.st_ino + 1,
                                          failure, sizeof(failure)), 0);
    ck_assert_int_eq(checkpointer_request(cp, current, st_current.st_dev, st_current.st_ino, failure,
                                          sizeof(failure)), 0);
    struct stat st;
    for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10) {
        ck_assert_int_eq(stat(current, &st), 0);
        if (st.st_size > st_current.st_size + 50000)
            break;
        usleep(10 * 1000);
    }
    ck_assert_int_gt(st.st_size, st_current.st_size + 50000);
    ck_assert_int_eq(stat(replaced, &st), 0);
    ck_assert_int_eq(st.st_size, st_replaced.st_size);
    checkpointer_free(cp);
    sqlite3_close(db_replaced);
    sqlite3_close(db_current);
}
END_TEST

/* A checkpoint that fails on the helper (here: the file is not a database) is handed to the
 * worker by a later request, naming the file: the helper itself cannot log. */
START_TEST(sqlite_checkpointer_reports_failures)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/garbage_%s.db", sqlite_dir, tenant_name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database file. ", f);
    fclose(f);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    struct checkpointer *cp = checkpointer_new();
    char failure[256];
    ck_assert_int_eq(checkpointer_request(cp, path, st.st_dev, st.st_ino, failure, sizeof(failure)), 0);
    ck_assert_str_eq(failure, "");
    for (int waited_ms = 0; !failure[0] && waited_ms < 10000; waited_ms += 10) {
        usleep(10 * 1000);
        checkpointer_request(cp, path, st.st_dev, st.st_ino, failure, sizeof(failure));
    }
    ck_assert_msg(strstr(failure, path) && strstr(failure, "not a database"), "failure: %s", failure);
    checkpointer_free(cp);
}
END_TEST

/* ---- SQL Server only ---- */

/* A column's type in the mirror as INFORMATION_SCHEMA spells it: "varchar(5)",
 * "nvarchar(-1)" (max), "decimal(20,4)", "int". */
static char *ms_column_type(const char *table, const char *column)
{
    return probe_text("SELECT DATA_TYPE + CASE WHEN CHARACTER_MAXIMUM_LENGTH IS NOT NULL"
                      " THEN '(' + CAST(CHARACTER_MAXIMUM_LENGTH AS varchar(12)) + ')'"
                      " WHEN DATA_TYPE IN ('decimal', 'numeric') THEN '(' +"
                      " CAST(NUMERIC_PRECISION AS varchar(4)) + ',' + CAST(NUMERIC_SCALE AS"
                      " varchar(4)) + ')' ELSE '' END FROM INFORMATION_SCHEMA.COLUMNS"
                      " WHERE TABLE_NAME = '%s' AND COLUMN_NAME = '%s'",
                      table, column);
}

START_TEST(mssql_types_and_values_read_back)
{
    static const char *const cols[] = {
        "id|bigint|notnull|", "amount|decimal(18,4)|null|", "whole|numeric(10,0)|null|",
        "cash|money|null|", "at|datetime2(7)|null|", "dto|datetimeoffset(3)|null|",
        "day|date|null|", "tm|time(3)|null|", "bytes|varbinary(max)|null|",
        "flag|bit|null|", "ratio|float|null|", "doc|xml|null|", "guid|uniqueidentifier|null|",
        "big|nvarchar(max)|null|", "stamp|timestamp|null|", "code|char(5)|null|",
        "ncode|nchar(3)|null|", "fixed|binary(4)|null|", "empty|varchar(5)|null|", NULL};
    struct table_schema t = table_make("vals", "id", cols);
    ck_assert_ptr_null(t.reject);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    static const char *const rows[] = {
        "I:|1|123456789012.3456|12|-922337203685477.5808|2026-11-26T10:15:00.1234567|"
        "2026-11-26T10:15:00.123+01:00|2026-02-28|23:59:59.5|@AAEC/w==|true|1.5|123|"
        "6F9619FF-8B86-D011-B42D-00C04FC964FF|text|@AAAAAAAAB9E=|ab|xy|@AAE=|",
        NULL};
    struct batch b = batch_make("vals", "id,amount,whole,cash,at,dto,day,tm,bytes,flag,ratio,doc,"
                                        "guid,big,stamp,code,ncode,fixed,empty",
                                -1, rows);
    rows_ok(&b, 1, 1);
    /* the stored types: char/nchar/binary as their var forms (values kept as sent),
     * timestamp/rowversion as binary(8) (never insertable) */
    ck_assert_str_eq(ms_column_type("vals", "code"), "varchar(5)");
    ck_assert_str_eq(ms_column_type("vals", "ncode"), "nvarchar(3)");
    ck_assert_str_eq(ms_column_type("vals", "fixed"), "varbinary(4)");
    ck_assert_str_eq(ms_column_type("vals", "stamp"), "binary(8)");
    ck_assert_str_eq(ms_column_type("vals", "doc"), "nvarchar(max)");   /* xml as sent */
    ck_assert_str_eq(ms_column_type("vals", "id"), "bigint");
    ck_assert_str_eq(ms_column_type("vals", "amount"), "decimal(18,4)");
    ck_assert_str_eq(ms_column_type("vals", "at"), "datetime2");
    ck_assert_str_eq(ms_column_type("vals", "big"), "nvarchar(-1)");
    ck_assert_str_eq(ms_column_type("vals", "bytes"), "varbinary(-1)");
    /* the values, as the server holds them */
    ck_assert_str_eq(probe_text("SELECT amount FROM vals"), "123456789012.3456");
    ck_assert_str_eq(probe_text("SELECT whole FROM vals"), "12");
    ck_assert_str_eq(probe_text("SELECT CAST(cash AS decimal(19,4)) FROM vals"),
                     "-922337203685477.5808");
    ck_assert_str_eq(probe_text("SELECT CONVERT(varchar(40), at, 121) FROM vals"),
                     "2026-11-26 10:15:00.1234567");
    ck_assert_str_eq(probe_text("SELECT CONVERT(varchar(40), CAST(dto AS datetime2(3)), 121)"
                                " FROM vals"),
                     "2026-11-26 10:15:00.123");
    ck_assert_str_eq(probe_text("SELECT DATEPART(TZOFFSET, dto) FROM vals"), "60");
    ck_assert_str_eq(probe_text("SELECT CONVERT(varchar(10), day, 23) + ' ' +"
                                " CONVERT(varchar(12), tm, 114) FROM vals"),
                     "2026-02-28 23:59:59:500");
    ck_assert_str_eq(probe_text("SELECT bytes FROM vals"), "000102FF");
    ck_assert_str_eq(probe_text("SELECT flag FROM vals"), "1");
    ck_assert_str_eq(probe_text("SELECT ratio FROM vals"), "1.5");
    ck_assert_str_eq(probe_text("SELECT CAST(doc AS nvarchar(max)) FROM vals"), "123");
    ck_assert_str_eq(probe_text("SELECT CAST(guid AS char(36)) FROM vals"),
                     "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    ck_assert_str_eq(probe_text("SELECT big FROM vals"), "text");
    ck_assert_str_eq(probe_text("SELECT stamp FROM vals"), "00000000000007D1");
    ck_assert_str_eq(probe_text("SELECT code + '|' + ncode + '|' FROM vals"), "ab|xy|");
    ck_assert_str_eq(probe_text("SELECT fixed FROM vals"), "0001");
    ck_assert_int_eq(probe_long("SELECT DATALENGTH(fixed) FROM vals"), 2);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM vals WHERE empty = '' AND empty IS NOT"
                                " NULL"),
                     1);
}
END_TEST

START_TEST(mssql_defaults_translated)
{
    defaults_inserted("SELECT c FROM defs", "SELECT CONVERT(varchar(30), d, 121) FROM defs",
                      "SELECT CAST(e AS char(36)) FROM defs");
    ck_assert_ptr_nonnull(probe_text("SELECT g FROM defs"));
    /* the constraints carry the deterministic names of store/mssql_sql.h */
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM sys.default_constraints WHERE parent_object_id"
                                " = OBJECT_ID(N'[defs]', N'U') AND name LIKE 'DF[_]defs[_]%%'"),
                     8);
    ck_assert_str_eq(ms_column_type("defs", "f"), "decimal(20,4)");
    /* the mirror's metadata table */
    ck_assert_int_eq(probe_long("SELECT CASE WHEN OBJECT_ID(N'[%s_mirroring]', N'U') IS NULL"
                                " THEN 0 ELSE 1 END", tenant_name),
                     1);
    ck_assert_str_eq(probe_text("SELECT tablename FROM \"%s_mirroring\" WHERE tablename ="
                                " 'DEFS'", tenant_name),
                     "defs");
}
END_TEST

/* ---- PostgreSQL only ---- */

/* A full load's inserts go into the table by one COPY left open across the chunks of a call.
 * PG_COPY_OPEN rows are past the first chunk the store hands the driver (1024 rows, store.c),
 * so that COPY is open after them; pg_copy_open checks that it is. */
enum { PG_COPY_OPEN = 1100, PG_LOAD_ROWS = 1500 };

/* A full load of contact (the table created, still empty) at lsn 42. */
static struct batch pg_load(const char *const *rows)
{
    return batch_make("contact", "contact_id,name,registered,amount", 42, rows);
}

/* A column of pg_stat_activity for the store's connection to the tenant's mirror (libpq's
 * application_name, somirrord, tells it from the probe's). */
static char *pg_store_backend(const char *column)
{
    return probe_text("SELECT %s FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name = 'somirrord'", column);
}

/* A conninfo test_store_pg.py gives besides the suite's (another server, TCP), from the
 * environment variable name. */
static const char *pg_server(const char *name)
{
    const char *conninfo = getenv(name);
    ck_assert_msg(conninfo != NULL, "%s is not set (test_store_pg.py sets it)", name);
    return conninfo;
}

/* Sends rows [from, to) of b in the call s, and ends the batch when they are the last; 0, or
 * -1 with fault set by the first step that fails. */
static int pg_rows_send(struct store_rows *s, const struct batch *b, size_t from, size_t to)
{
    for (size_t r = from; r < to; r++)
        if (store_rows_row(s, b, &b->rows[r], &fault) != 0)
            return -1;
    return to == b->nrows ? store_rows_batch_end(s, b, &fault) : 0;
}

/* Opens a RowData call of b (a full load of contact) and sends its first PG_COPY_OPEN rows;
 * the driver's COPY into contact is open then. */
static struct store_rows *pg_copy_open(const struct batch *b)
{
    fault_clear(&fault);
    struct store_rows *s = store_rows_begin(tenant, &arena, &fault);
    ck_assert_msg(s != NULL, "begin: %s", fault.message);
    ck_assert_msg(store_rows_batch(s, b, &fault) == 0 && pg_rows_send(s, b, 0, PG_COPY_OPEN) == 0,
                  "RowData: %s", fault.message);
    ck_assert_str_eq(pg_store_backend("left(query, 14)"), "COPY \"contact\"");
    return s;
}

/* The load sent again after a failed call goes in whole, on the connection pid (NULL: any). */
static void pg_load_again(struct batch *b, const char *pid)
{
    struct table_state *st = rows_ok(b, 1, 1);
    ck_assert_int_eq(st[0].inserted, (long)b->nrows);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), (long)b->nrows);
    ck_assert_int_eq(stored_lsn("contact"), 42);
    if (pid)
        ck_assert_str_eq(pg_store_backend("pid"), pid);
}

/* A time default into a datetimeoffset (kept as text) has the type's fraction digits, and one
 * into a smalldatetime whole minutes, as the types hold them; sysdatetimeoffset() into text
 * keeps its offset. */
START_TEST(pg_time_defaults_by_type)
{
    static const char *const cols[] = {
        "id|int|notnull|", "a|datetimeoffset(0)|null|(sysdatetimeoffset())",
        "b|datetimeoffset(2)|null|(getdate())", "c|datetimeoffset(7)|null|(sysdatetimeoffset())",
        "d|smalldatetime|null|(getdate())", "e|nvarchar(40)|null|(sysdatetimeoffset())", NULL};
    table_with_defaulted_row("times", cols);
    ck_assert_uint_eq(strlen(probe_text("SELECT a FROM times")), 19 + 6);
    ck_assert_uint_eq(strlen(probe_text("SELECT b FROM times")), 22 + 6);
    ck_assert_uint_eq(strlen(probe_text("SELECT c FROM times")), 26 + 6);
    ck_assert_str_eq(probe_text("SELECT to_char(d, 'SS.US') FROM times"), "00.000000");
    ck_assert_str_eq(probe_text("SELECT right(e, 6) FROM times"), "+00:00");   /* as in SQLite */
}
END_TEST

/* The values of pg_values_read_back_exactly's row id, '|' between them. */
static const char *pg_vals_row(const char *id)
{
    return probe_text("SELECT small || '|' || flag || '|' || ratio || '|' || amount || '|' || "
                      "at || '|' || note || '|' || encode(bytes, 'hex') FROM vals WHERE id = %s",
                      id);
}

/* Every value class reads back exactly through COPY's text format, in a load (direct COPY) and
 * in a merge (staged COPY): COPY's escapes (backslash, tab, newline, carriage return; "\\N" in
 * a text is not NULL), integers at their type's ends, bit, float, decimal and bytes. */
START_TEST(pg_values_read_back_exactly)
{
    static const char *const cols[] = {
        "id|bigint|notnull|", "small|int|null|", "flag|bit|null|", "ratio|float|null|",
        "amount|decimal(18,4)|null|", "at|datetime2(3)|null|", "note|nvarchar(max)|null|",
        "bytes|varbinary(max)|null|", NULL};
    create_table("vals", "id", cols);
    static const char *const load[] = {
        "I:|-9223372036854775808|-2147483648|1|-1.5|-12.3400|2026-11-26T10:15:00.123|"
        "a\\b\tc\nd\re\\N\\\\|@AAEC/w==",
        "I:|9223372036854775807|2147483647|0|0.1|99999999999999.9999|1753-01-01T00:00:00|"
        "\\|@/w==",
        NULL};
    struct batch b = batch_make("vals", "id,small,flag,ratio,amount,at,note,bytes", -1, load);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(pg_vals_row("-9223372036854775808"),
                     "-2147483648|true|-1.5|-12.3400|2026-11-26 10:15:00.123|"
                     "a\\b\tc\nd\re\\N\\\\|000102ff");
    ck_assert_str_eq(pg_vals_row("9223372036854775807"),
                     "2147483647|false|0.1|99999999999999.9999|1753-01-01 00:00:00|\\|ff");
    static const char *const merge[] = {"U:|9223372036854775807|0|1|2.5|0.0001|"
                                        "2026-01-02T03:04:05.6|\\t\t\\\r\n|@AA==",
                                        NULL};
    b = batch_make("vals", "id,small,flag,ratio,amount,at,note,bytes", -1, merge);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(pg_vals_row("9223372036854775807"),
                     "0|true|2.5|0.0001|2026-01-02 03:04:05.6|\\t\t\\\r\n|00");
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM vals"), 2);
}
END_TEST

/* Zeros past a type's digits, which section 5 allows in any number, are left out of what
 * PostgreSQL gets: the text forms are sized for the type's digits (time(7) is varchar(16)). */
START_TEST(pg_zeros_past_the_digits_fit)
{
    static const char *const cols[] = {
        "id|bigint|notnull|", "tm|time(7)|null|", "at|datetime2(7)|null|",
        "dto|datetimeoffset(3)|null|", "at3|datetime2(3)|null|", "amount|decimal(18,4)|null|", NULL};
    struct table_schema t = table_make("vals", "id", cols);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    static const char *const rows[] = {
        "I:|1|12:00:00.12345670000000000000000000000000000000000000|"
        "2026-11-26T10:15:00.12345670000000000000000000000000000000000000|"
        "2026-11-26T10:15:00.12000000000000000000000000000000000000000000+01:00|"
        "2026-11-26T10:15:00.12000000000000000000000000000000000000000000|"
        "0000000000000000000000000000000000000000000000012.50000000000000000000000000",
        NULL};
    struct batch b = batch_make("vals", "id,tm,at,dto,at3,amount", -1, rows);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(probe_text("SELECT tm FROM vals"), "12:00:00.1234567");
    ck_assert_str_eq(probe_text("SELECT at FROM vals"), "2026-11-26 10:15:00.1234567");
    ck_assert_str_eq(probe_text("SELECT dto FROM vals"), "2026-11-26 10:15:00.120+01:00");
    ck_assert_str_eq(probe_text("SELECT CAST(at3 AS text) FROM vals"), "2026-11-26 10:15:00.12");
    ck_assert_str_eq(probe_text("SELECT CAST(amount AS text) FROM vals"), "12.5000");
}
END_TEST

/* The mirror database is UTF-8 whatever the cluster's default (the suite's cluster is
 * SQL_ASCII), and a table named like a catalog (pg_class) is the mirror's own. */
START_TEST(pg_utf8_and_catalog_names)
{
    ck_assert_str_eq(probe_text("SELECT pg_encoding_to_char(encoding) FROM pg_database"
                                " WHERE datname = current_database()"),
                     "UTF8");
    static const char *const cols[] = {"id|int|notnull|", "v|nvarchar(3)|null|", NULL};
    struct table_schema t = table_make("pg_class", "id", cols);
    struct table_state *states;
    size_t n;
    schema_ok(&t, 1, &states, &n);
    static const char *const rows[] = {"I:|1|\xc3\xa9\xc3\xa9\xc3\xa9", NULL};
    struct batch b = batch_make("pg_class", "id,v", 5, rows);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(probe_text("SELECT v FROM public.pg_class"), "\xc3\xa9\xc3\xa9\xc3\xa9");
    ck_assert_int_eq(stored_lsn("pg_class"), 5);
}
END_TEST

/* Tables named like the types the driver writes without a keyword (text, date, bytea, "char"):
 * each makes a type of its name in public, which the mirror's search_path puts before
 * pg_catalog; the mirror's columns, staging tables, casts and defaults still get the built-in
 * types, on a full load, an incremental call and an added column. */
START_TEST(pg_tables_named_like_types)
{
    static const char *const id_only[] = {"id|int|notnull|", NULL};
    static const char *const note_cols[] = {
        "id|int|notnull|", "note|nvarchar(max)|null|", "day|date|notnull|(getdate())",
        "data|varbinary(10)|notnull|(0x01)", "guid|uniqueidentifier|notnull|(newid())", NULL};
    static const char *const names[] = {"text", "date", "bytea", "char"};
    struct table_schema tables[5];
    for (size_t i = 0; i < 4; i++)
        tables[i] = table_make(names[i], "id", id_only);
    struct table_state *states;
    size_t n;
    schema_ok(tables, 4, &states, &n);
    tables[4] = table_make("notes", "id", note_cols);
    schema_ok(tables, 5, &states, &n);
    ck_assert_str_eq(probe_text("SELECT string_agg(a.attname || ':' || t.typnamespace::regnamespace::text,"
                                " ',' ORDER BY a.attnum) FROM pg_attribute a JOIN pg_type t"
                                " ON t.oid = a.atttypid WHERE a.attrelid = 'public.notes'::regclass"
                                " AND a.attnum > 0"),
                     "id:pg_catalog,note:pg_catalog,day:pg_catalog,data:pg_catalog,guid:pg_catalog");

    static const char *const load[] = {"I:|1|first|2026-11-26|@AgM=|6F9619FF-8B86-D011-B42D-00C04FC964FF",
                                       NULL};
    struct batch b = batch_make("notes", "id,note,day,data,guid", 1, load);
    rows_ok(&b, 1, 1);
    static const char *const change[] = {"U:|1|second|2026-11-27|@BA==|6F9619FF-8B86-D011-B42D-00C04FC964FF",
                                         "I:|2|new|2026-11-28|@BQ==|6f9619ff-8b86-d011-b42d-00c04fc964ff",
                                         NULL};
    b = batch_make("notes", "id,note,day,data,guid", 2, change);
    rows_ok(&b, 1, 1);
    ck_assert_str_eq(probe_text("SELECT string_agg(note || ' ' || day || ' ' || encode(data, 'hex'), ','"
                                " ORDER BY id) FROM public.notes"),
                     "second 2026-11-27 04,new 2026-11-28 05");

    static const char *const more_cols[] = {
        "id|int|notnull|", "note|nvarchar(max)|null|", "day|date|notnull|(getdate())",
        "data|varbinary(10)|notnull|(0x01)", "guid|uniqueidentifier|notnull|(newid())",
        "extra|ntext|null|", NULL};
    tables[4] = table_make("notes", "id", more_cols);
    schema_ok(tables, 5, &states, &n);
    ck_assert_str_eq(probe_text("SELECT t.typnamespace::regnamespace::text FROM pg_attribute a"
                                " JOIN pg_type t ON t.oid = a.atttypid"
                                " WHERE a.attrelid = 'public.notes'::regclass AND a.attname = 'extra'"),
                     "pg_catalog");
}
END_TEST

/* Names PostgreSQL would make one (a name past 63 bytes is shortened, and a crafted name can
 * equal the short form): the later table is Rejected, saying so, and the rest of the call is
 * carried out, rather than the whole call failing on every retry. */
START_TEST(pg_names_that_become_one_rejected)
{
    char long_name[SM_IDENT_MAX + 1], short_name[SM_IDENT_MAX + 1];
    char long_col[SM_IDENT_MAX + 1], short_col[SM_IDENT_MAX + 1];
    memset(long_name, 'x', 70);
    long_name[70] = '\0';
    long_col[0] = 'c';
    memcpy(long_col + 1, long_name, 71);
    store_driver_postgresql.stored_name(short_name, long_name);
    store_driver_postgresql.stored_name(short_col, long_col);
    char col_a[SM_IDENT_MAX + 32], col_b[SM_IDENT_MAX + 32];
    snprintf(col_a, sizeof(col_a), "%s|int|null|", long_col);
    snprintf(col_b, sizeof(col_b), "%s|int|null|", short_col);
    const char *const clash_cols[] = {"id|int|notnull|", col_a, col_b, NULL};
    static const char *const id_only[] = {"id|int|notnull|", NULL};
    struct table_schema t[3] = {table_make(long_name, "id", id_only), table_make(short_name, "id", id_only),
                                table_make("cols", "id", clash_cols)};
    struct table_state *states;
    size_t n;
    schema_ok(t, 3, &states, &n);
    ck_assert_int_eq(states[0].change, CHANGE_CREATED);
    ck_assert_int_eq(states[1].change, CHANGE_REJECTED);
    ck_assert_ptr_nonnull(strstr(states[1].error, "would both be"));
    ck_assert_int_eq(states[2].change, CHANGE_REJECTED);
    ck_assert_ptr_nonnull(strstr(states[2].error, "columns"));
}
END_TEST

/* A column named as one of PostgreSQL's system columns cannot be made: its table is Rejected
 * saying why, and the other tables of the call are made (the call no longer fails as a whole,
 * every cycle). */
START_TEST(pg_system_column_names_rejected)
{
    static const char *const system_cols[] = {"id|int|notnull|", "XMin|int|null|", NULL};
    static const char *const oid_cols[] = {"id|int|notnull|", "oid|int|null|", NULL};
    struct table_schema t[3] = {table_make("a", "id", system_cols), table_make("b", "id", oid_cols),
                                contact_table()};
    struct table_state *states;
    size_t n;
    schema_ok(t, 3, &states, &n);
    ck_assert_int_eq(states[0].change, CHANGE_REJECTED);
    ck_assert_msg(strstr(states[0].error, "column XMin: a system column's name in PostgreSQL"), "%s",
                  states[0].error);
    ck_assert_int_eq(states[1].change, CHANGE_CREATED);
    ck_assert_int_eq(states[2].change, CHANGE_CREATED);
}
END_TEST

/* A table named as another's primary key index would be by PostgreSQL ("<table>_pkey"), in
 * either order: both are made and take rows. Every key constraint, the metadata table's too, is
 * named out of the names tables can have. */
START_TEST(pg_tables_named_like_key_indexes)
{
    static const char *const cols[] = {"id|int|notnull|", NULL};
    struct table_schema t[4] = {table_make("a", "id", cols), table_make("a_pkey", "id", cols),
                                table_make("b_pkey", "id", cols), table_make("b", "id", cols)};
    struct table_state *states;
    size_t n;
    schema_ok(t, 4, &states, &n);
    for (size_t i = 0; i < 4; i++)
        ck_assert_msg(states[i].change == CHANGE_CREATED, "%s: %s", states[i].name, states[i].error);
    static const char *const rows[] = {"I:|1", NULL};
    struct batch b = batch_make("a_pkey", "id", 7, rows);
    rows_ok(&b, 1, 1);
    ck_assert_int_eq(stored_lsn("a_pkey"), 7);
    ck_assert_int_eq(probe_long("SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'p' "
                                "AND conname NOT LIKE '%%$pk' AND connamespace NOT IN "
                                "('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"), 0);
    ck_assert_int_eq(probe_long("SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'p' "
                                "AND conname = lower('%s_mirroring$pk')", tenant_name), 1);
}
END_TEST

/* A value the driver refuses (U+0000) after the COPY has begun: the call fails with
 * InvalidValue, the COPY is cancelled with the call's transaction, and the same connection
 * takes the next call. */
START_TEST(pg_copy_bad_value)
{
    create_contact();
    const char **rows = contact_inserts(PG_LOAD_ROWS);
    const char *good = rows[PG_LOAD_ROWS - 1];
    rows[PG_LOAD_ROWS - 1] = "I:|9999|@YQBi|2026-01-01T00:00:00|1";   /* "a", U+0000, "b" */
    struct batch b = pg_load(rows);
    char *pid = pg_store_backend("pid");
    struct store_rows *s = pg_copy_open(&b);
    ck_assert_int_ne(pg_rows_send(s, &b, PG_COPY_OPEN, b.nrows), 0);
    ck_assert_int_eq(fault.code, FAULT_INVALID_VALUE);
    ck_assert_str_eq(fault.column, "name");
    ck_assert_int_eq(fault.row, PG_LOAD_ROWS);   /* the row is named, as section 4.4 says */
    ck_assert_int_ne(store_rows_end(s, 0, NULL, NULL, &fault), 0);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
    ck_assert_int_eq(stored_lsn("contact"), -1);
    rows[PG_LOAD_ROWS - 1] = good;
    b = pg_load(rows);
    pg_load_again(&b, pid);
}
END_TEST

/* U+0000 is refused as its row is checked: the first failure of the call is the one answered
 * (here before a bad number two rows later), naming the column as sent, also in a row skipped
 * as stale. */
START_TEST(pg_nul_refused_in_order)
{
    create_contact();
    static const char *const rows[] = {"I:|1|a|2026-01-01T00:00:00|1", "I:|2|@YQBi|2026-01-01T00:00:00|1",
                                       "I:|3|c|2026-01-01T00:00:00|1", "I:|4|d|2026-01-01T00:00:00|x",
                                       NULL};
    struct batch b = batch_make("contact", "contact_id,NAME,registered,amount", 5, rows);
    struct table_state *states;
    size_t n;
    ck_assert_int_ne(rows_call(&b, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_INVALID_VALUE);
    ck_assert_int_eq(fault.row, 2);
    ck_assert_str_eq(fault.column, "NAME");
    ck_assert_ptr_nonnull(strstr(fault.message, "U+0000"));
    static const char *const first[] = {"I:|1|a|2026-01-01T00:00:00|1", NULL};
    b = batch_make("contact", "contact_id,name,registered,amount", 10, first);
    rows_ok(&b, 1, 1);
    static const char *const stale[] = {"U:3|1|@YQBi|2026-01-01T00:00:00|1", NULL};
    b = batch_make("contact", "contact_id,name,registered,amount", 11, stale);
    ck_assert_int_ne(rows_call(&b, 1, &states, &n), 0);
    ck_assert_int_eq(fault.code, FAULT_INVALID_VALUE);
}
END_TEST

/* The table's COPY meets a key twice in the load and a key the table holds already: the rows
 * are merged instead, the last change of a key winning. */
START_TEST(pg_copy_key_already_there)
{
    create_contact();
    probe_exec("INSERT INTO contact VALUES (3, 'probe', '2026-01-01', 1)");
    static const char *const rows[] = {"I:|1|a|2026-01-01T00:00:00|1",
                                       "I:|2|b|2026-01-01T00:00:00|2",
                                       "I:|1|z|2026-01-01T00:00:00|3",
                                       "I:|3|c|2026-01-01T00:00:00|4", NULL};
    struct batch b = pg_load(rows);
    struct table_state *st = rows_ok(&b, 1, 1);
    ck_assert_int_eq(st[0].inserted, 4);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 3);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "z");
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 3"), "c");
    ck_assert_int_eq(stored_lsn("contact"), 42);
}
END_TEST

/* The server refuses what the store sends (constraints it does not know of): in the table's own
 * COPY (a CHECK), and in the merge the rows fall back to when that COPY meets a key already
 * there (a trigger refusing updates). StorageError with the server's SQLSTATE, naming the table
 * (and the row, where the COPY's line tells it), nothing stored, the connection kept. */
START_TEST(pg_copy_server_error)
{
    create_contact();
    static const char *const rows[] = {"I:|1|a|2026-01-01T00:00:00|1",
                                       "I:|2|b|2026-01-01T00:00:00|5000",
                                       "I:|3|c|2026-01-01T00:00:00|3", NULL};
    char *pid = pg_store_backend("pid");
    static const struct {
        const char *sql, *what, *state;
        long row;
    } steps[] = {
        {"ALTER TABLE contact ADD CONSTRAINT amount_small CHECK (amount < 1000)",
         "postgresql: copy: ", "SQLSTATE 23514", 2},
        {"ALTER TABLE contact DROP CONSTRAINT amount_small;"
         " INSERT INTO contact VALUES (1, 'probe', '2026-01-01', 1);"
         " CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
         " $$BEGIN RAISE EXCEPTION 'no updates'; END$$;"
         " CREATE TRIGGER refuse BEFORE UPDATE ON contact FOR EACH ROW EXECUTE FUNCTION refuse()",
         "postgresql: merge: no updates", "SQLSTATE P0001", 0}};
    for (size_t i = 0; i < 2; i++) {
        probe_exec(steps[i].sql);
        struct batch b = pg_load(rows);
        struct table_state *states;
        size_t n;
        ck_assert_int_ne(rows_call(&b, 1, &states, &n), 0);
        ck_assert_int_eq(fault.code, FAULT_STORAGE_ERROR);
        ck_assert_msg(strstr(fault.message, steps[i].what) && strstr(fault.message, steps[i].state),
                      "%s", fault.message);
        ck_assert_int_eq(fault.names_table, 1);
        ck_assert_str_eq(fault.table, "contact");
        ck_assert_int_eq(fault.names_column, 0);
        ck_assert_int_eq(fault.row, steps[i].row);
        ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), (long)i);
        ck_assert_int_eq(stored_lsn("contact"), -1);
    }
    ck_assert_str_eq(pg_store_backend("pid"), pid);
    probe_exec("DROP TRIGGER refuse ON contact");
    struct batch b = pg_load(rows);
    pg_load_again(&b, pid);
    ck_assert_str_eq(probe_text("SELECT name FROM contact WHERE contact_id = 1"), "a");
    ck_assert_str_eq(probe_text("SELECT amount FROM contact WHERE contact_id = 2"), "5000");
}
END_TEST

/* A column the server refuses a value for in a load (made NOT NULL behind the store's back)
 * is named with its table and row, past the first chunk of the load too; the incremental merge
 * names the table. */
START_TEST(pg_row_failure_named)
{
    create_contact();
    probe_exec("ALTER TABLE contact ALTER COLUMN name SET NOT NULL");
    const char **rows = contact_inserts(PG_LOAD_ROWS);
    rows[PG_COPY_OPEN + 7] = "I:|99999|~|2026-01-01T00:00:00|1";
    struct batch b = pg_load(rows);
    expect_refused(&b, "SQLSTATE 23502", PG_COPY_OPEN + 8, "name");
    /* a trigger failing on a row in the COPY: its statement's context (which may read like a
     * line) comes before the COPY's line */
    probe_exec("ALTER TABLE contact ALTER COLUMN name DROP NOT NULL;"
               " CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
               " $$BEGIN IF NEW.contact_id = 1300 THEN PERFORM 1 / 0, ', line 7'; END IF;"
               " RETURN NEW; END$$;"
               " CREATE TRIGGER refuse BEFORE INSERT ON contact FOR EACH ROW EXECUTE FUNCTION refuse()");
    expect_refused(&b, "SQLSTATE 22012", 1300, NULL);
    /* a trigger's statement failing on a column of its own table, its text reading like a
     * COPY's line: the row is the COPY's, and the column none of the COPY's table */
    probe_exec("DROP TRIGGER refuse ON contact;"
               " CREATE TABLE audit (contact_id integer, note text NOT NULL);"
               " CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS"
               " $$BEGIN IF NEW.contact_id = 1300 THEN"
               " EXECUTE E'INSERT INTO audit VALUES (1, NULL) /* \\nCOPY contact, line 7 */';"
               " END IF; RETURN NEW; END$$;"
               " CREATE TRIGGER audit BEFORE INSERT ON contact FOR EACH ROW EXECUTE FUNCTION audit()");
    expect_refused(&b, "SQLSTATE 23502", 1300, NULL);
    probe_exec("DROP TRIGGER audit ON contact; ALTER TABLE contact ALTER COLUMN name SET NOT NULL");
    static const char *const later[] = {"I:|1|a|2026-01-01T00:00:00|1", "U:|1|~|2026-01-01T00:00:00|1",
                                        NULL};
    b = batch_make("contact", "contact_id,name,registered,amount", 50, later);
    expect_refused(&b, "SQLSTATE 23502", 0, NULL);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
}
END_TEST

/* A table_sql script is stopped at hooks.timeout (1 s here) as a whole, not each of its
 * statements, even one that lifts statement_timeout; the next call is served. */
START_TEST(pg_table_script_bounded)
{
    load_contacts();
    static const char *const scripts[] = {
        "SELECT pg_sleep(0.7); SELECT pg_sleep(0.7); SELECT pg_sleep(0.7)",
        "SET statement_timeout = 0; SELECT pg_sleep(5)",
    };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        char err[512] = "";
        int64_t started = monotonic_ms();
        ck_assert_int_ne(store_run_table_script(tenant, "contact", scripts[i], err, sizeof(err)), 0);
        ck_assert_msg(strstr(err, "stopped after hooks.timeout (1 s)") != NULL, "%s", err);
        ck_assert_int_lt(monotonic_ms() - started, 1900);
    }
    /* A COPY from or to the client, which a script cannot feed or read, fails at once (libpq
     * hands a result of the COPY state for every PQgetResult, for ever). */
    static const char *const copies[] = {"COPY contact FROM STDIN", "SELECT 1; COPY contact TO STDOUT"};
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        char err[512] = "";
        ck_assert_int_ne(store_run_table_script(tenant, "contact", copies[i], err, sizeof(err)), 0);
        ck_assert_msg(strstr(err, "COPY") != NULL, "%s", err);
    }
    static const char *const rows[] = {"I:|78|after|2026-01-01T00:00:00|1", NULL};
    struct batch b = batch_make("contact", "contact_id,name,registered,amount", 300, rows);
    rows_ok(&b, 1, 1);
}
END_TEST

/* The server ended the tenant's connection while it was idle (pg_terminate_backend, as a
 * restart does): a table_sql script connects again and runs, as the next call's begin does. */
START_TEST(pg_table_script_after_connection_closed)
{
    load_contacts();
    ck_assert_str_eq(probe_text("SELECT pg_terminate_backend(%s, 10000)", pg_store_backend("pid")),
                     "t");
    char err[512] = "";
    ck_assert_msg(store_run_table_script(tenant, "contact", "DELETE FROM {table}", err,
                                         sizeof(err)) == 0, "table script failed: %s", err);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
}
END_TEST

/* The server ends the connection while the COPY is open: the call fails with StorageError,
 * and the next call connects again and loads the rows whole. */
START_TEST(pg_copy_connection_lost)
{
    create_contact();
    struct batch b = pg_load(contact_inserts(PG_LOAD_ROWS));
    struct store_rows *s = pg_copy_open(&b);
    ck_assert_str_eq(probe_text("SELECT pg_terminate_backend(%s, 10000)", pg_store_backend("pid")),
                     "t");
    int ok = pg_rows_send(s, &b, PG_COPY_OPEN, b.nrows) == 0;
    ck_assert_int_ne(store_rows_end(s, ok, NULL, NULL, &fault), 0);
    ck_assert_int_eq(fault.code, FAULT_STORAGE_ERROR);
    ck_assert_int_eq(probe_long("SELECT COUNT(*) FROM contact"), 0);
    ck_assert_int_eq(stored_lsn("contact"), -1);
    pg_load_again(&b, NULL);
}
END_TEST

/* Opens a store on conninfo and a tenant in it, and checks the socket options of its two
 * connections to the server at port (the admin one and the tenant's): want[i] of options[i], -1
 * for any. */
static const struct {
    int level, option;
} tcp_options[] = {
    {SOL_SOCKET, SO_KEEPALIVE}, {IPPROTO_TCP, TCP_KEEPIDLE}, {IPPROTO_TCP, TCP_KEEPINTVL},
    {IPPROTO_TCP, TCP_KEEPCNT}, {IPPROTO_TCP, TCP_USER_TIMEOUT},
};

static void check_tcp_options(char *conninfo, int port, const int want[5])
{
    struct config tcp = cfg;
    tcp.postgresql.conninfo = conninfo;
    char err[256];
    struct store *s = store_new(&tcp, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    fault_clear(&fault);
    ck_assert_msg(store_tenant(s, tenant_name, &fault) != NULL, "%s", fault.message);
    int found = 0;
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || peer.sin_family != AF_INET ||
            ntohs(peer.sin_port) != port)
            continue;
        for (size_t i = 0; i < sizeof(tcp_options) / sizeof(tcp_options[0]); i++) {
            int value = -1;
            socklen_t size = sizeof(value);
            ck_assert_int_eq(getsockopt(fd, tcp_options[i].level, tcp_options[i].option, &value, &size), 0);
            ck_assert_msg(want[i] < 0 || value == want[i], "option %zu: %d, not %d", i, value, want[i]);
        }
        found++;
    }
    ck_assert_int_eq(found, 2);
    store_free(s);
}

/* Over TCP (SOMIRROR_TEST_PG_TCP_CONNINFO, from test_store_pg.py) the store's connections, the
 * admin one and the tenant's, have the driver's keepalive and TCP_USER_TIMEOUT defaults, where
 * the kernel's would leave a worker blocked for minutes on a vanished host, and a value conninfo
 * gives (keepalives_idle) wins. Read from the sockets of this process connected to the server. */
START_TEST(pg_tcp_keepalives)
{
    const char *server = pg_server("SOMIRROR_TEST_PG_TCP_CONNINFO");
    char conninfo[512];
    snprintf(conninfo, sizeof(conninfo), "%s keepalives_idle=30", server);
    const char *port = strstr(server, "port=");
    ck_assert_ptr_nonnull(port);
    static const int want[5] = {1, 30, 10, 6, 120000};
    check_tcp_options(conninfo, atoi(port + strlen("port=")), want);
}
END_TEST

/* With a service of pg_service.conf named in conninfo, the service's settings stand: libpq lets
 * none of them replace a value given beside conninfo, so the driver's defaults are left out
 * (keepalives_idle is the service's 45, not the driver's 60). */
START_TEST(pg_service_settings_stand)
{
    const char *server = pg_server("SOMIRROR_TEST_PG_TCP_CONNINFO");
    char dir[] = "/tmp/test_store_service.XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pg_service.conf", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[mirror]\n");
    PQconninfoOption *options = PQconninfoParse(server, NULL);
    ck_assert_ptr_nonnull(options);
    int port = 0;
    for (PQconninfoOption *o = options; o->keyword; o++) {
        if (o->val)
            fprintf(f, "%s=%s\n", o->keyword, o->val);
        if (o->val && !strcmp(o->keyword, "port"))
            port = atoi(o->val);
    }
    PQconninfoFree(options);
    fprintf(f, "keepalives_idle=45\n");
    fclose(f);
    setenv("PGSERVICEFILE", path, 1);
    static const int want[5] = {1, 45, -1, -1, -1};
    char conninfo[] = "service=mirror";
    check_tcp_options(conninfo, port, want);
    unsetenv("PGSERVICEFILE");
    unlink(path);
    rmdir(dir);
}
END_TEST

/* A server that takes 4 connections (SOMIRROR_TEST_PG_FEW_CONNINFO, from test_store_pg.py) and
 * a store that may hold more: the server refuses a tenant's connection with "too many clients"
 * (SQLSTATE 53300), and the store closes its least recently used tenant and opens this one.
 * Six tenants in a row, each used, then the first again. */
START_TEST(pg_too_many_clients)
{
    char conninfo[512];
    snprintf(conninfo, sizeof(conninfo), "%s", pg_server("SOMIRROR_TEST_PG_FEW_CONNINFO"));
    struct config few = cfg;
    few.postgresql.conninfo = conninfo;
    char err[256];
    struct store *s = store_new(&few, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    char names[7][80];
    for (int i = 0; i < 7; i++) {
        snprintf(names[i], sizeof(names[i]), "%s_few%d", tenant_name, i % 6);
        fault_clear(&fault);
        struct store_tenant *t = store_tenant(s, names[i], &fault);
        struct table_meta *meta;
        size_t n;
        ck_assert_msg(t && store_list_tables(t, &arena, &meta, &n, &fault) == 0, "tenant %d: %s", i,
                      fault.message);
    }
    store_free(s);
}
END_TEST

/* A server that takes the connection and never answers (a stopped or hung postgres: here a
 * socket nobody accepts on) fails the tenant's open after the driver's connect_timeout, where
 * libpq alone waited for ever and the worker with it. */
START_TEST(pg_server_not_answering)
{
    char dir[] = "/tmp/somirror-test-pg-mute-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/.s.PGSQL.5999", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=%s port=5999 dbname=postgres", dir);
    struct config mute = cfg;
    mute.postgresql.conninfo = conninfo;
    char err[256];
    struct store *s = store_new(&mute, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    fault_clear(&fault);
    ck_assert_ptr_null(store_tenant(s, tenant_name, &fault));
    ck_assert_int_eq(fault.code, FAULT_STORAGE_ERROR);
    ck_assert_msg(strstr(fault.message, "timeout") != NULL, "%s", fault.message);
    store_free(s);
    close(fd);
    unlink(addr.sun_path);
    rmdir(dir);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("conformance");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_provision_empty);
    tcase_add_test(tc, test_tenant_exists_makes_nothing);
    tcase_add_test(tc, test_schema_created_then_unchanged);
    tcase_add_test(tc, test_schema_altered_add_nullable);
    tcase_add_test(tc, test_schema_altered_add_not_null_default);
    tcase_add_test(tc, test_schema_altered_drop_column);
    tcase_add_test(tc, test_schema_altered_default_change);
    tcase_add_test(tc, test_schema_recreated);
    tcase_add_test(tc, test_schema_dropped_ordered_by_name);
    tcase_add_test(tc, test_schema_rejected_drops_existing);
    tcase_add_test(tc, test_schema_malformed);
    tcase_add_test(tc, test_schema_one_transaction);
    tcase_add_test(tc, test_rows_insert_update_delete);
    tcase_add_test(tc, test_rows_idempotent_resend_and_stale_skip);
    tcase_add_test(tc, test_rows_table_named_excluded);
    tcase_add_test(tc, test_rows_guid_key_in_any_case);
    tcase_add_test(tc, test_rows_positions_only_forward);
    tcase_add_test(tc, test_rows_several_batches_and_tables);
    tcase_add_test(tc, test_rows_column_mismatch);
    tcase_add_test(tc, test_rows_unknown_and_blocked_table);
    tcase_add_test(tc, test_rows_invalid_value_names_row);
    tcase_add_test(tc, test_rows_many_rows_in_chunks);
    tcase_add_test(tc, test_wipe);
    tcase_add_test(tc, test_table_script);
    tcase_add_test(tc, test_resync);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_tenant_cache_bounded);
    tcase_add_test(tc, test_tenants_closed_when_idle);
    suite_add_tcase(s, tc);
    if (cfg.driver == STORE_SQLITE) {
        TCase *sq = tcase_create("sqlite");
        tcase_add_checked_fixture(sq, setup, teardown);
        tcase_set_timeout(sq, 60);
        tcase_add_test(sq, sqlite_file_mode_and_metadata);
        tcase_add_test(sq, sqlite_table_script_bounded);
        tcase_add_test(sq, sqlite_tenants_out_of_descriptors);
        tcase_add_test(sq, sqlite_values_read_back_exactly);
        tcase_add_test(sq, sqlite_rebuild_keeps_one_of_two_cases);
        tcase_add_test(sq, sqlite_rebuild_under_a_view);
        tcase_add_test(sq, sqlite_rows_refused_name_table);
        tcase_add_test(sq, sqlite_defaults_translated);
        tcase_add_test(sq, sqlite_time_defaults_by_type);
        tcase_add_test(sq, sqlite_reset_seen_by_other_worker);
        tcase_add_test(sq, sqlite_checkpoint_in_background);
        tcase_add_test(sq, sqlite_checkpoint_then_reset_and_close);
        tcase_add_test(sq, sqlite_checkpointer_checks_the_file);
        tcase_add_test(sq, sqlite_checkpointer_reports_failures);
        suite_add_tcase(s, sq);
    }
    if (cfg.driver == STORE_MSSQL) {
        TCase *ms = tcase_create("mssql");
        tcase_add_checked_fixture(ms, setup, teardown);
        tcase_set_timeout(ms, 60);
        tcase_add_test(ms, mssql_types_and_values_read_back);
        tcase_add_test(ms, mssql_defaults_translated);
        suite_add_tcase(s, ms);
    }
    if (cfg.driver == STORE_POSTGRESQL) {
        TCase *pg = tcase_create("postgresql");
        tcase_add_checked_fixture(pg, setup, teardown);
        tcase_set_timeout(pg, 60);
        tcase_add_test(pg, pg_values_read_back_exactly);
        tcase_add_test(pg, pg_zeros_past_the_digits_fit);
        tcase_add_test(pg, pg_time_defaults_by_type);
        tcase_add_test(pg, pg_utf8_and_catalog_names);
        tcase_add_test(pg, pg_tables_named_like_types);
        tcase_add_test(pg, pg_names_that_become_one_rejected);
        tcase_add_test(pg, pg_system_column_names_rejected);
        tcase_add_test(pg, pg_tables_named_like_key_indexes);
        tcase_add_test(pg, pg_copy_bad_value);
        tcase_add_test(pg, pg_nul_refused_in_order);
        tcase_add_test(pg, pg_copy_key_already_there);
        tcase_add_test(pg, pg_copy_server_error);
        tcase_add_test(pg, pg_copy_connection_lost);
        tcase_add_test(pg, pg_row_failure_named);
        tcase_add_test(pg, pg_server_not_answering);
        tcase_add_test(pg, pg_too_many_clients);
        tcase_add_test(pg, pg_tcp_keepalives);
        tcase_add_test(pg, pg_service_settings_stand);
        tcase_add_test(pg, pg_table_script_bounded);
        tcase_add_test(pg, pg_table_script_after_connection_closed);
        suite_add_tcase(s, pg);
    }
    return s;
}

int main(void)
{
    run_id = (long)getpid();
    const char *driver = getenv("SOMIRROR_TEST_STORE_DRIVER");
    int rc = driver_setup(driver ? driver : "sqlite");
    if (rc != 0)
        return rc;
    char err[256];
    struct store *probe = store_new(&cfg, err, sizeof(err));
    if (!probe) {
        fprintf(stderr, "test_store: %s; skipped\n", err);
        driver_cleanup(0);
        return 77;
    }
    store_free(probe);
    log_set_level(LOG_LVL_ERROR);
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    driver_cleanup(1);
    return failed ? 1 : 0;
}
