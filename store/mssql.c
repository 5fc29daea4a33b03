/* store/mssql: the SQL Server driver of the mirror store (struct store_driver, see store.h),
 * through FreeTDS db-lib. Owns the worker's db-lib state (dbinit, the message and error
 * handlers), one connection per open tenant (opened after fork, never shared; reconnected when
 * db-lib reports it dead), provisioning of the tenant database (CREATE DATABASE, wait until
 * ONLINE, the metadata table), the tenant lock (sp_getapplock, owned by the transaction, so
 * several hosts serialise), and the data path: every RowData chunk is collapsed in C (last
 * change per key wins), bulk-copied (bcp_*) into the session temp table #somirror_x and applied
 * with a few set-based statements. The SQL text lives in mssql_sql.c; values are never pasted:
 * they travel as RPC parameters of sp_executesql or through bulk copy.
 *
 * Why every chunk goes through the staging table, full loads included: db-lib bulk copy sends
 * an empty string or empty binary value as NULL, and FreeTDS converts date/time text on the
 * client side, wrongly for ISO text ('T', offsets, year 0001). Staging keeps such values as
 * text or flags and lets the server convert them (CAST); a load is still a handful of round
 * trips per chunk of rows.
 *
 * Faults: every server message of severity above 10 and every db-lib error is logged with its
 * number and text, and fails the call as StorageError (retryable) carrying that text; a failed
 * call is rolled back with IF @@TRANCOUNT > 0 ROLLBACK. Nothing is reported done before the
 * server confirmed it (bcp_done's row count, COMMIT's completion). */
#include "store/store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sybfront.h>
#include <sybdb.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "proto/schema.h"
#include "proto/value.h"
#include "store/mssql_sql.h"
#include "store/sqltext.h"

enum {
    /* Text parameters (sp_executesql wants nvarchar text): SYBNTEXT goes out as nvarchar(max)
     * (PLP; ntext before TDS 7.2). XSYBNVARCHAR (231) would go as nvarchar(4000), cutting a
     * longer value, a stored schema among them, without an error. */
    MSSQL_TYPE_NVARCHAR = SYBNTEXT,
    MSG_MAX = 600,
    ONLINE_WAIT_MIN_S = 30,
    ONLINE_POLL_MS = 200,
    STAGE_META_COLUMNS = 3          /* __seq, __op, __e */
};

struct mssql_backend {
    char *server, *user, *password, *schema, *collation;
    int require_encryption;
    BYTE tds_version;
    int login_timeout;
    int query_timeout;              /* seconds, 0: none (store.mssql.query_timeout) */
    int script_timeout;             /* seconds: a table_sql script (hooks.timeout) */
    int lock_ms;
};

struct mssql_conn {
    const struct mssql_backend *backend;
    char *tenant, *dbname, *meta_table;
    DBPROCESS *dbproc;
    int failed;                     /* a severity > 10 message or a db-lib error since cleared */
    char message[MSG_MAX];          /* the first such message */
    /* bulk-copy scratch: one slot per staged column */
    int64_t *ints;
    double *reals;
    char *empties;
    size_t scratch_cap;
    unsigned char *utf16;           /* one row's text values in UTF-16LE */
    size_t utf16_cap;
};

/* Where handlers put what arrives without a connection of ours (during login). */
static char login_message[MSG_MAX];
static int dblib_ready;

/* ---- db-lib handlers ---- */

static struct mssql_conn *conn_of(DBPROCESS *dbproc)
{
    return dbproc ? (struct mssql_conn *)dbgetuserdata(dbproc) : NULL;
}

static void note_failure(DBPROCESS *dbproc, const char *text)
{
    struct mssql_conn *c = conn_of(dbproc);
    char *slot = c ? c->message : login_message;
    if (c) {
        if (c->failed)
            return;
        c->failed = 1;
    } else if (login_message[0]) {
        return;
    }
    snprintf(slot, MSG_MAX, "%s", text);
}

static int msg_handler(DBPROCESS *dbproc, DBINT msgno, int msgstate, int severity,
                       char *msgtext, char *srvname, char *procname, int line)
{
    (void)msgstate;
    (void)srvname;
    (void)procname;
    (void)line;
    if (severity <= 10) {
        log_debug("mssql: server message %d: %s", (int)msgno, msgtext ? msgtext : "");
        return 0;
    }
    char text[MSG_MAX];
    snprintf(text, sizeof(text), "server message %d (severity %d): %s", (int)msgno, severity,
             msgtext ? msgtext : "");
    log_warn("mssql: %s", text);
    note_failure(dbproc, text);
    return 0;
}

static int err_handler(DBPROCESS *dbproc, int severity, int dberr, int oserr, char *dberrstr,
                       char *oserrstr)
{
    (void)severity;
    char text[MSG_MAX];
    if (oserr != DBNOERR && oserr != 0 && oserrstr)
        snprintf(text, sizeof(text), "db-lib error %d: %s (%s)", dberr, dberrstr ? dberrstr : "",
                 oserrstr);
    else
        snprintf(text, sizeof(text), "db-lib error %d: %s", dberr, dberrstr ? dberrstr : "");
    log_warn("mssql: %s", text);
    note_failure(dbproc, text);
    return INT_CANCEL;
}

/* ---- faults ---- */

static void conn_clear(struct mssql_conn *c)
{
    c->failed = 0;
    c->message[0] = '\0';
}

static int conn_fail(struct mssql_conn *c, const char *what, struct fault *f)
{
    const char *detail = c->message[0] ? c->message : "failed";
    if (!c->message[0] && c->dbproc && DBDEAD(c->dbproc))
        detail = "the connection to the server is lost";
    fault_set(f, FAULT_STORAGE_ERROR, "mssql: %s: %s", what, detail);
    if (c->dbproc && !DBDEAD(c->dbproc))
        dbcancel(c->dbproc);
    return -1;
}

static int schema_names_check(const struct table_schema *s, struct fault *f)
{
    return sqltext_schema_names_check("mssql", s, f);
}

/* ---- running SQL ---- */

/* Called for every row of every result; returns 0 to go on. */
typedef int (*row_fn)(struct mssql_conn *c, void *ud);

/* Reads every result of what was sent; fails on any error reported meanwhile. */
static int drain(struct mssql_conn *c, const char *what, row_fn fn, void *ud, struct fault *f)
{
    RETCODE rc;
    int bad = 0;
    while ((rc = dbresults(c->dbproc)) != NO_MORE_RESULTS) {
        if (rc == FAIL) {
            bad = 1;
            break;
        }
        STATUS st;
        while ((st = dbnextrow(c->dbproc)) != NO_MORE_ROWS) {
            if (st == FAIL) {
                bad = 1;
                break;
            }
            if (st == REG_ROW && fn && !bad && fn(c, ud) != 0)
                bad = 1;
        }
        if (bad)
            break;
    }
    if (bad || c->failed)
        return conn_fail(c, what, f);
    return 0;
}

static int run_sql(struct mssql_conn *c, const char *sql, const char *what, row_fn fn, void *ud,
                   struct fault *f)
{
    conn_clear(c);
    if (!c->dbproc || DBDEAD(c->dbproc))
        return conn_fail(c, what, f);
    dbfreebuf(c->dbproc);
    if (dbcmd(c->dbproc, sql) == FAIL || dbsqlexec(c->dbproc) == FAIL)
        return conn_fail(c, what, f);
    return drain(c, what, fn, ud, f);
}

static int run_buf(struct mssql_conn *c, struct buf *sql, const char *what, struct fault *f)
{
    int rc = run_sql(c, sql->data, what, NULL, NULL, f);
    buf_free(sql);
    return rc;
}

struct rpc_arg {
    const char *name;       /* "@t" */
    int type;               /* MSSQL_TYPE_NVARCHAR, SYBINT8 or SYBINT4 */
    const void *data;
    DBINT len;              /* bytes for text; -1 for fixed types */
};

static int rpc_param(struct mssql_conn *c, const char *name, int type, const void *data,
                     DBINT len)
{
    return dbrpcparam(c->dbproc, name, 0, type, -1, len, (BYTE *)(uintptr_t)data);
}

/* EXEC sp_executesql @stmt, @params, args... */
static int run_rpc(struct mssql_conn *c, const char *stmt, const char *params,
                   const struct rpc_arg *args, size_t nargs, const char *what, row_fn fn,
                   void *ud, struct fault *f)
{
    conn_clear(c);
    if (!c->dbproc || DBDEAD(c->dbproc))
        return conn_fail(c, what, f);
    int ok = dbrpcinit(c->dbproc, "sp_executesql", 0) == SUCCEED &&
             rpc_param(c, "@stmt", MSSQL_TYPE_NVARCHAR, stmt, (DBINT)strlen(stmt)) == SUCCEED &&
             rpc_param(c, "@params", MSSQL_TYPE_NVARCHAR, params, (DBINT)strlen(params)) ==
                 SUCCEED;
    for (size_t i = 0; ok && i < nargs; i++)
        ok = rpc_param(c, args[i].name, args[i].type, args[i].data, args[i].len) == SUCCEED;
    if (!ok || dbrpcsend(c->dbproc) == FAIL || dbsqlok(c->dbproc) == FAIL)
        return conn_fail(c, what, f);
    return drain(c, what, fn, ud, f);
}

/* Copies column col of the current row as text into out (NUL-terminated; "" for NULL). */
static void column_text(struct mssql_conn *c, int col, char *out, size_t outlen)
{
    BYTE *data = dbdata(c->dbproc, col);
    DBINT len = dbdatlen(c->dbproc, col);
    out[0] = '\0';
    if (!data || len <= 0)
        return;
    int type = dbcoltype(c->dbproc, col);
    if (type == SYBCHAR || type == SYBVARCHAR || type == SYBTEXT) {
        size_t n = (size_t)len < outlen ? (size_t)len : outlen - 1;
        memcpy(out, data, n);
        out[n] = '\0';
        return;
    }
    DBINT n = dbconvert(c->dbproc, type, data, len, SYBCHAR, (BYTE *)out, (DBINT)outlen - 1);
    out[n > 0 ? n : 0] = '\0';
}

static int64_t column_int(struct mssql_conn *c, int col)
{
    BYTE *data = dbdata(c->dbproc, col);
    DBINT len = dbdatlen(c->dbproc, col);
    if (!data || len <= 0)
        return 0;
    DBBIGINT v = 0;
    if (dbconvert(c->dbproc, dbcoltype(c->dbproc, col), data, len, SYBINT8, (BYTE *)&v,
                  sizeof(v)) < 0)
        return 0;
    return (int64_t)v;
}

/* ---- connections ---- */

static int first_int_row(struct mssql_conn *c, void *ud)
{
    *(int64_t *)ud = column_int(c, 1);
    return 0;
}

static int first_text_row(struct mssql_conn *c, void *ud)
{
    column_text(c, 1, ud, 64);
    return 0;
}

static void conn_disconnect(struct mssql_conn *c)
{
    if (c->dbproc)
        dbclose(c->dbproc);
    c->dbproc = NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct rpc_arg db_param(const struct mssql_conn *c)
{
    return (struct rpc_arg){"@db", MSSQL_TYPE_NVARCHAR, c->dbname, (DBINT)strlen(c->dbname)};
}

/* Whether a collation compares text case-sensitively (..._CS_AS, ..._BIN, ..._BIN2). */
static int case_sensitive(const char *collation)
{
    return strstr(collation, "_CS") || strstr(collation, "_BIN");
}

/* The mirror database's collation must compare names and keys in any case, as the CRM's
 * does: the stored schemas hold names lowercased, and a key sent as 'ABC' and then 'abc' is
 * one row at the source. 0, or -1 with f. */
static int database_collation_ok(struct mssql_conn *c, struct rpc_arg *arg, struct fault *f)
{
    char collation[64] = "";
    if (run_rpc(c, MSSQL_DB_COLLATION_SQL, MSSQL_DB_PARAMS, arg, 1, "reading the database collation",
                first_text_row, collation, f) != 0)
        return -1;
    if (!case_sensitive(collation))
        return 0;
    fault_set(f, FAULT_STORAGE_ERROR, "mssql: database %s has the case-sensitive collation %s: "
              "mirrors need a case-insensitive one: ALTER DATABASE it (in single-user mode) to one "
              "such as Latin1_General_100_CI_AS_SC, or set store.mssql.collation (new mirror "
              "databases) and reset the tenant", c->dbname, collation);
    return -1;
}

/* CREATE DATABASE when missing, then waits until it is ONLINE and checks its collation. */
static int database_provision(struct mssql_conn *c, struct fault *f)
{
    struct rpc_arg arg = db_param(c);
    int64_t exists = 0;
    if (run_rpc(c, MSSQL_DB_EXISTS_SQL, MSSQL_DB_PARAMS, &arg, 1, "looking up the database",
                first_int_row, &exists, f) != 0)
        return -1;
    if (!exists) {
        struct buf sql = BUF_INIT;
        mssql_create_database(&sql, c->dbname, c->backend->collation);
        log_info("mssql: creating database %s", c->dbname);
        if (run_buf(c, &sql, "creating the database", f) != 0) {
            /* another worker or host may have created it meanwhile */
            struct fault again;
            fault_clear(&again);
            exists = 0;
            if (run_rpc(c, MSSQL_DB_EXISTS_SQL, MSSQL_DB_PARAMS, &arg, 1,
                        "looking up the database", first_int_row, &exists, &again) != 0 ||
                !exists)
                return -1;
            fault_clear(f);
        }
    }
    int wait_s = c->backend->login_timeout > ONLINE_WAIT_MIN_S ? c->backend->login_timeout
                                                               : ONLINE_WAIT_MIN_S;
    for (long waited = 0;; waited += ONLINE_POLL_MS) {
        char status[64] = "";
        if (run_rpc(c, MSSQL_DB_STATUS_SQL, MSSQL_DB_PARAMS, &arg, 1,
                    "reading the database status", first_text_row, status, f) != 0)
            return -1;
        if (strcmp(status, "ONLINE") == 0)
            return database_collation_ok(c, &arg, f);
        if (waited >= (long)wait_s * 1000) {
            fault_set(f, FAULT_STORAGE_ERROR, "mssql: database %s is not online (%s)",
                      c->dbname, status[0] ? status : "no status");
            return -1;
        }
        sleep_ms(ONLINE_POLL_MS);
    }
}

/* Logs in to the server with the backend's credentials (bulk copy allowed when bulk_copy) and
 * ties the connection to c. 0, or -1 with f set. */
static int conn_login(struct mssql_conn *c, int bulk_copy, struct fault *f)
{
    const struct mssql_backend *b = c->backend;
    LOGINREC *login = dblogin();
    if (!login) {
        fault_set(f, FAULT_STORAGE_ERROR, "mssql: out of memory for a login");
        return -1;
    }
    DBSETLUSER(login, b->user ? b->user : "");
    DBSETLPWD(login, b->password ? b->password : "");
    DBSETLAPP(login, "somirrord");
    DBSETLCHARSET(login, "UTF-8");
    dbsetlversion(login, b->tds_version);
    if (bulk_copy)
        BCP_SETL(login, TRUE);
    if (b->require_encryption && DBSETLENCRYPT(login, TRUE) != SUCCEED) {
        dbloginfree(login);   /* never in clear (mssql_backend_check refuses this earlier) */
        fault_set(f, FAULT_STORAGE_ERROR, "mssql: login to %s: encryption cannot be required", b->server);
        return -1;
    }
    login_message[0] = '\0';
    c->dbproc = dbopen(login, b->server);
    dbloginfree(login);
    if (!c->dbproc) {
        fault_set(f, FAULT_STORAGE_ERROR, "mssql: login to %s: %s", b->server,
                  login_message[0] ? login_message : "failed");
        return -1;
    }
    dbsetuserdata(c->dbproc, (BYTE *)c);
    return 0;
}

/* Logs in, provisions the database and the metadata table, and makes the session ready. */
static int conn_connect(struct mssql_conn *c, struct fault *f)
{
    const struct mssql_backend *b = c->backend;
    conn_disconnect(c);
    conn_clear(c);
    if (conn_login(c, 1, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    if (run_sql(c, MSSQL_SESSION_SQL, "session settings", NULL, NULL, f) != 0 ||
        database_provision(c, f) != 0)
        goto fail;
    mssql_use_database(&sql, c->dbname);
    if (run_buf(c, &sql, "opening the database", f) != 0)
        goto fail;
    if (b->schema) {
        struct rpc_arg arg = {"@sch", MSSQL_TYPE_NVARCHAR, b->schema, (DBINT)strlen(b->schema)};
        mssql_create_schema(&sql, b->schema);
        int rc = run_rpc(c, sql.data, "@sch nvarchar(128)", &arg, 1, "creating the schema",
                         NULL, NULL, f);
        buf_free(&sql);
        if (rc != 0)
            goto fail;
    }
    mssql_meta_create(&sql, b->schema, c->meta_table);
    if (run_buf(c, &sql, "creating the metadata table", f) != 0)
        goto fail;
    return 0;
fail:
    buf_free(&sql);
    conn_disconnect(c);
    return -1;
}

/* Reconnects when db-lib reports the connection dead (a server restart, a reset elsewhere). */
static int conn_current(struct mssql_conn *c, struct fault *f)
{
    if (c->dbproc && !DBDEAD(c->dbproc))
        return 0;
    if (c->dbproc)
        log_info("mssql: connection for %s lost; reconnecting", c->tenant);
    return conn_connect(c, f);
}

/* ---- backend and tenants ---- */

static BYTE tds_version_of(const char *text)
{
    if (!text || strcmp(text, "7.4") == 0)
        return DBVERSION_74;
    if (strcmp(text, "7.3") == 0)
        return DBVERSION_73;
    if (strcmp(text, "7.2") == 0)
        return DBVERSION_72;
    if (strcmp(text, "7.1") == 0)
        return DBVERSION_71;
    return DBVERSION_UNKNOWN;
}

static int requires_encryption(const struct config *cfg)
{
    return cfg->mssql.encrypt && strcmp(cfg->mssql.encrypt, "require") == 0;
}

/* Whether this db-lib can refuse a server that does not encrypt. FreeTDS 1.3's cannot
 * (DBSETLENCRYPT fails): encrypt: require is then refused rather than ignored, which would send
 * the password in clear to such a server. */
static int can_require_encryption(void)
{
    LOGINREC *login = dblogin();
    int can = login && DBSETLENCRYPT(login, TRUE) == SUCCEED;
    if (login)
        dbloginfree(login);
    return can;
}

static int dblib_init(char *err, size_t errlen)
{
    if (dblib_ready)
        return 0;
    if (dbinit() == FAIL) {
        snprintf(err, errlen, "FreeTDS db-lib initialisation failed");
        return -1;
    }
    dbmsghandle(msg_handler);
    dberrhandle(err_handler);
    dblib_ready = 1;
    return 0;
}

/* The settings' checks (also somirrord -t): 0, 1 with a warning in err, or -1 with err. */
static int mssql_backend_check(const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->mssql.server || !*cfg->mssql.server) {
        snprintf(err, errlen, "store.mssql.server is not set");
        return -1;
    }
    if (tds_version_of(cfg->mssql.tds_version) == DBVERSION_UNKNOWN) {
        snprintf(err, errlen, "store.mssql.tds_version %s is not supported (7.1 to 7.4)",
                 cfg->mssql.tds_version);
        cfg_locate(cfg, "store.mssql.tds_version", err, errlen);
        return -1;
    }
    if (cfg->mssql.schema && !ident_valid(cfg->mssql.schema)) {
        snprintf(err, errlen, "store.mssql.schema %s is not a valid name", cfg->mssql.schema);
        cfg_locate(cfg, "store.mssql.schema", err, errlen);
        return -1;
    }
    if (dblib_init(err, errlen) < 0)
        return -1;
    if (requires_encryption(cfg) && !can_require_encryption()) {
        snprintf(err, errlen, "store.mssql.encrypt: require: this FreeTDS db-lib cannot require "
                              "encryption; set 'encryption = require' in the freetds.conf section "
                              "that store.mssql.server names, and encrypt: request");
        cfg_locate(cfg, "store.mssql.encrypt", err, errlen);
        return -1;
    }
    if (cfg->mssql.collation && case_sensitive(cfg->mssql.collation)) {
        snprintf(err, errlen, "store.mssql.collation %s is case-sensitive: mirrors need a "
                 "case-insensitive one (such as Latin1_General_100_CI_AS_SC)", cfg->mssql.collation);
        cfg_locate(cfg, "store.mssql.collation", err, errlen);
        return -1;
    }
    if (cfg->mssql.query_timeout > 0 && cfg->mssql.query_timeout <= cfg->lock_timeout) {
        snprintf(err, errlen, "store.mssql.query_timeout %d s is not above tenants.lock_timeout %d s: a "
                 "call that waits for a busy tenant's lock would end as a lost connection "
                 "(StorageError), not TenantBusy", cfg->mssql.query_timeout, cfg->lock_timeout);
        cfg_locate(cfg, "store.mssql.query_timeout", err, errlen);
        return 1;
    }
    return 0;
}

static void *mssql_backend_open(const struct config *cfg, char *err, size_t errlen)
{
    if (mssql_backend_check(cfg, err, errlen) < 0)
        return NULL;
    BYTE version = tds_version_of(cfg->mssql.tds_version);
    if (cfg->mssql.login_timeout > 0)
        dbsetlogintime(cfg->mssql.login_timeout);
    if (cfg->mssql.query_timeout > 0)
        dbsettime(cfg->mssql.query_timeout);
    struct mssql_backend *b = xcalloc(1, sizeof(*b));
    b->server = xstrdup(cfg->mssql.server);
    b->user = cfg->mssql.user ? xstrdup(cfg->mssql.user) : NULL;
    b->password = cfg->mssql.password ? xstrdup(cfg->mssql.password) : NULL;
    b->schema = cfg->mssql.schema && *cfg->mssql.schema ? xstrdup(cfg->mssql.schema) : NULL;
    b->collation = cfg->mssql.collation ? xstrdup(cfg->mssql.collation) : NULL;
    b->require_encryption = requires_encryption(cfg);
    b->tds_version = version;
    b->login_timeout = cfg->mssql.login_timeout > 0 ? cfg->mssql.login_timeout : 15;
    b->query_timeout = cfg->mssql.query_timeout > 0 ? cfg->mssql.query_timeout : 0;
    b->script_timeout = cfg->hooks.timeout > 0 ? cfg->hooks.timeout : 60;
    b->lock_ms = (cfg->lock_timeout > 0 ? cfg->lock_timeout : 60) * 1000;
    return b;
}

static void mssql_backend_close(void *backend)
{
    struct mssql_backend *b = backend;
    if (!b)
        return;
    free(b->server);
    free(b->user);
    if (b->password) {
        memset(b->password, 0, strlen(b->password));
        free(b->password);
    }
    free(b->schema);
    free(b->collation);
    free(b);
}

static int dbname_check(const char *dbname, struct fault *f)
{
    size_t len = strlen(dbname);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)dbname[i] < 0x20 || dbname[i] == 0x7f)
            len = 0;
    if (len == 0 || len > MSSQL_NAME_MAX) {
        fault_set(f, FAULT_INTERNAL, "mssql: invalid database name");
        return -1;
    }
    return 0;
}

/* NULL (with f set) when the tenant's metadata table cannot be named. */
static struct mssql_conn *conn_new(struct mssql_backend *backend, const char *tenant,
                                   const char *dbname, struct fault *f)
{
    char *meta_table = sqltext_meta_table("mssql", tenant, f);
    if (!meta_table)
        return NULL;
    struct mssql_conn *c = xcalloc(1, sizeof(*c));
    c->backend = backend;
    c->tenant = xstrdup(tenant);
    c->dbname = xstrdup(dbname);
    c->meta_table = meta_table;
    return c;
}

static void conn_free(struct mssql_conn *c)
{
    conn_disconnect(c);
    free(c->ints);
    free(c->reals);
    free(c->empties);
    free(c->utf16);
    free(c->tenant);
    free(c->dbname);
    free(c->meta_table);
    free(c);
}

static int mssql_tenant_open(void *backend, const char *tenant, const char *dbname,
                             void **conn, struct fault *f)
{
    if (dbname_check(dbname, f) != 0)
        return -1;
    struct mssql_conn *c = conn_new(backend, tenant, dbname, f);
    if (!c)
        return -1;
    if (conn_connect(c, f) != 0) {
        conn_free(c);
        return -1;
    }
    *conn = c;
    return 0;
}

/* A session logged in to the server, not to the tenant's database (which it neither makes
 * nor uses): for what is done to the database as a whole. NULL with f set. */
static struct mssql_conn *server_session(void *backend, const char *tenant, const char *dbname,
                                         struct fault *f)
{
    if (dbname_check(dbname, f) != 0)
        return NULL;
    struct mssql_conn *c = conn_new(backend, tenant, dbname, f);
    if (c && conn_login(c, 0, f) != 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

static int mssql_tenant_exists(void *backend, const char *tenant, const char *dbname, int *exists,
                               struct fault *f)
{
    struct mssql_conn *c = server_session(backend, tenant, dbname, f);
    if (!c)
        return -1;
    struct rpc_arg arg = db_param(c);
    int64_t found = 0;
    int rc = run_rpc(c, MSSQL_DB_EXISTS_SQL, MSSQL_DB_PARAMS, &arg, 1, "looking up the database",
                     first_int_row, &found, f);
    *exists = found != 0;
    conn_free(c);
    return rc;
}

static void mssql_tenant_close(void *conn)
{
    if (conn)
        conn_free(conn);
}

static int mssql_tenant_drop(void *backend, const char *tenant, const char *dbname,
                             struct fault *f)
{
    struct mssql_conn *c = server_session(backend, tenant, dbname, f);
    if (!c)
        return -1;
    struct buf sql = BUF_INIT;
    struct rpc_arg arg = db_param(c);
    mssql_drop_database(&sql, dbname);
    log_info("mssql: dropping database %s", dbname);
    int rc = run_rpc(c, sql.data, MSSQL_DB_PARAMS, &arg, 1, "dropping the database", NULL, NULL, f);
    buf_free(&sql);
    conn_free(c);
    return rc;
}

/* ---- transactions ---- */

static void mssql_rollback(void *conn)
{
    struct mssql_conn *c = conn;
    if (!c->dbproc || DBDEAD(c->dbproc))
        return;
    struct fault ignored;
    fault_clear(&ignored);
    dbcancel(c->dbproc);
    /* A connection whose rollback failed may still hold the transaction (and the tenant's app
     * lock): the next BEGIN would nest in it, and its COMMIT make nothing durable. Closed, the
     * server rolls it back, and the next call logs in anew. */
    if (run_sql(c, MSSQL_ROLLBACK_SQL, "rollback", NULL, NULL, &ignored) != 0)
        conn_disconnect(c);
}

static int mssql_begin(void *conn, struct fault *f)
{
    struct mssql_conn *c = conn;
    if (conn_current(c, f) != 0)
        return -1;
    int begun = run_sql(c, MSSQL_BEGIN_SQL, "begin", NULL, NULL, f) == 0;
    /* db-lib finds a connection dead (a server restarted, failed over, or a reset elsewhere
     * closed it) only when it is next used: here, before anything of the call was sent. So once,
     * a new connection, rather than fail the call. */
    if (!begun && c->dbproc && DBDEAD(c->dbproc)) {
        fault_clear(f);
        begun = conn_current(c, f) == 0 && run_sql(c, MSSQL_BEGIN_SQL, "begin", NULL, NULL, f) == 0;
    }
    if (!begun) {
        mssql_rollback(c);
        return -1;
    }
    /* EXEC @r = sp_getapplock, values as parameters; @r < 0: not granted */
    struct buf resource = BUF_INIT;
    buf_printf(&resource, "somirror:%s", c->tenant);
    DBINT timeout = c->backend->lock_ms;
    struct rpc_arg args[] = {
        {"@res", MSSQL_TYPE_NVARCHAR, resource.data, (DBINT)resource.len},
        {"@ms", SYBINT4, &timeout, -1},
    };
    int64_t granted = -999;
    int rc = run_rpc(c,
                     "DECLARE @r int; EXEC @r = sp_getapplock @Resource = @res,"
                     " @LockMode = 'Exclusive', @LockOwner = 'Transaction',"
                     " @LockTimeout = @ms; SELECT @r",
                     "@res nvarchar(255), @ms int", args, 2, "taking the tenant lock",
                     first_int_row, &granted, f);
    buf_free(&resource);
    if (rc == 0 && granted < 0) {
        if (granted == -1)
            fault_set(f, FAULT_TENANT_BUSY,
                      "mssql: tenant %s is busy (lock not granted within %d s)", c->tenant,
                      c->backend->lock_ms / 1000);
        else
            fault_set(f, FAULT_STORAGE_ERROR, "mssql: taking the tenant lock: sp_getapplock "
                      "returned %lld", (long long)granted);
        rc = -1;
    }
    if (rc != 0)
        mssql_rollback(c);
    return rc;
}

static int mssql_commit(void *conn, struct fault *f)
{
    return run_sql(conn, MSSQL_COMMIT_SQL, "commit", NULL, NULL, f);
}

/* ---- metadata ---- */

struct meta_rows {
    struct arena *arena;
    struct table_meta *rows;
    size_t n, cap;
};

static char *column_dup(struct mssql_conn *c, int col, struct arena *arena)
{
    BYTE *data = dbdata(c->dbproc, col);
    DBINT len = dbdatlen(c->dbproc, col);
    return arena_strndup(arena, data && len > 0 ? (const char *)data : "",
                         data && len > 0 ? (size_t)len : 0);
}

static int meta_row(struct mssql_conn *c, void *ud)
{
    struct meta_rows *m = ud;
    m->rows = xgrow(m->rows, &m->cap, m->n + 1, sizeof(*m->rows));
    struct table_meta *row = &m->rows[m->n++];
    memset(row, 0, sizeof(*row));
    row->name = column_dup(c, 1, m->arena);
    row->canonical = column_dup(c, 2, m->arena);
    column_text(c, 3, row->hash, sizeof(row->hash));
    row->lsn = column_int(c, 4);
    row->updated = column_int(c, 5);
    return 0;
}

static int mssql_meta_read(void *conn, struct arena *arena, struct table_meta **out, size_t *n,
                           struct fault *f)
{
    struct mssql_conn *c = conn;
    struct buf sql = BUF_INIT;
    mssql_meta_select(&sql, c->backend->schema, c->meta_table);
    struct meta_rows m = {.arena = arena};
    int rc = run_sql(c, sql.data, "reading the metadata", meta_row, &m, f);
    buf_free(&sql);
    if (rc == 0) {
        *out = arena_alloc(arena, (m.n + 1) * sizeof(**out));
        if (m.n)
            memcpy(*out, m.rows, m.n * sizeof(*m.rows));
        *n = m.n;
    }
    free(m.rows);
    return rc;
}

static int mssql_meta_put(void *conn, const char *table, const char *canonical,
                          const char *hash, int64_t lsn, struct fault *f)
{
    struct mssql_conn *c = conn;
    struct buf sql = BUF_INIT;
    mssql_meta_put_sql(&sql, c->backend->schema, c->meta_table);
    DBBIGINT l = lsn;
    struct rpc_arg args[] = {
        {"@t", MSSQL_TYPE_NVARCHAR, table, (DBINT)strlen(table)},
        {"@s", MSSQL_TYPE_NVARCHAR, canonical, (DBINT)strlen(canonical)},
        {"@h", MSSQL_TYPE_NVARCHAR, hash, (DBINT)strlen(hash)},
        {"@l", SYBINT8, &l, -1},
    };
    int rc = run_rpc(c, sql.data, MSSQL_META_PUT_PARAMS, args, 4, "writing the metadata", NULL,
                     NULL, f);
    buf_free(&sql);
    return rc;
}

static int mssql_meta_delete(void *conn, const char *table, struct fault *f)
{
    struct mssql_conn *c = conn;
    struct buf sql = BUF_INIT;
    mssql_meta_delete_sql(&sql, c->backend->schema, c->meta_table);
    struct rpc_arg arg = {"@t", MSSQL_TYPE_NVARCHAR, table, (DBINT)strlen(table)};
    int rc = run_rpc(c, sql.data, MSSQL_META_DELETE_PARAMS, &arg, 1, "removing the metadata",
                     NULL, NULL, f);
    buf_free(&sql);
    return rc;
}

/* ---- tables ---- */

static int mssql_table_create(void *conn, const struct table_schema *schema, struct fault *f)
{
    struct mssql_conn *c = conn;
    if (schema_names_check(schema, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    mssql_create_table(&sql, c->backend->schema, schema);
    return run_buf(c, &sql, "create table", f);
}

/* One statement on a named table, its text made by put_sql (mssql_sql.h). */
static int table_statement(struct mssql_conn *c, const char *table,
                           void (*put_sql)(struct buf *, const char *, const char *),
                           const char *what, struct fault *f)
{
    if (sqltext_name_check("mssql", table, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    put_sql(&sql, c->backend->schema, table);
    return run_buf(c, &sql, what, f);
}

static int mssql_table_drop(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, table, mssql_drop_table, "drop table", f);
}

static int mssql_table_wipe(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, table, mssql_wipe_table, "wipe", f);
}

static int mssql_table_alter(void *conn, const struct table_schema *old_schema,
                             const struct table_schema *new_schema,
                             const struct schema_diff *diff, struct fault *f)
{
    struct mssql_conn *c = conn;
    if (schema_names_check(old_schema, f) != 0 || schema_names_check(new_schema, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    mssql_alter_table(&sql, c->backend->schema, old_schema, new_schema, diff);
    if (!sql.len) {
        buf_free(&sql);
        return 0;
    }
    return run_buf(c, &sql, "alter table", f);
}

/* ---- rows ---- */

/* Key equality as bytes (the server dedupes again with its own collation rules). */
static int value_same(const struct value *a, const struct value *b)
{
    if (a->cls != b->cls)
        return 0;
    switch (a->cls) {
    case VAL_NULL: return 1;
    case VAL_INT: return a->i == b->i;
    case VAL_REAL: return a->d == b->d;
    default: break;
    }
    return a->len == b->len && (a->len == 0 || memcmp(a->text, b->text, a->len) == 0);
}

/* The p-th primary key value of a row: a D row carries only its key, in key order. */
static const struct value *pk_value(const struct table_schema *s, const struct row_change *r,
                                    size_t p)
{
    return &r->values[r->op == 'D' ? p : s->pk[p]];
}

static uint64_t key_hash(const struct table_schema *s, const struct row_change *r)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t p = 0; p < s->npk; p++) {
        const struct value *v = pk_value(s, r, p);
        unsigned char buf[8];
        const unsigned char *bytes = buf;
        size_t len = 0;
        if (v->cls == VAL_INT) {
            memcpy(buf, &v->i, 8);
            len = 8;
        } else if (v->cls == VAL_REAL) {
            memcpy(buf, &v->d, 8);
            len = 8;
        } else if (v->text) {
            bytes = (const unsigned char *)v->text;
            len = v->len;
        }
        for (size_t i = 0; i < len; i++) {
            h ^= bytes[i];
            h *= 1099511628211ull;
        }
        h ^= (uint64_t)v->cls + 0x9e;
        h *= 1099511628211ull;
    }
    return h;
}

static int key_same(const struct table_schema *s, const struct row_change *a,
                    const struct row_change *b)
{
    for (size_t p = 0; p < s->npk; p++)
        if (!value_same(pk_value(s, a, p), pk_value(s, b, p)))
            return 0;
    return 1;
}

/* keep[r] = 1 when row r is the last change of its key in rows. */
static void collapse(const struct table_schema *s, const struct row_change *rows, size_t n,
                     unsigned char *keep)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    size_t *slots = xmalloc(cap * sizeof(*slots));
    for (size_t i = 0; i < cap; i++)
        slots[i] = SIZE_MAX;
    for (size_t r = 0; r < n; r++) {
        size_t i = (size_t)key_hash(s, &rows[r]) & (cap - 1);
        while (slots[i] != SIZE_MAX && !key_same(s, &rows[slots[i]], &rows[r]))
            i = (i + 1) & (cap - 1);
        if (slots[i] != SIZE_MAX)
            keep[slots[i]] = 0;
        slots[i] = r;
        keep[r] = 1;
    }
    free(slots);
}

static void scratch_reserve(struct mssql_conn *c, size_t ncolumns)
{
    if (ncolumns <= c->scratch_cap)
        return;
    c->ints = xrealloc(c->ints, ncolumns * sizeof(*c->ints));
    c->reals = xrealloc(c->reals, ncolumns * sizeof(*c->reals));
    c->empties = xrealloc(c->empties, ncolumns + 1);
    c->scratch_cap = ncolumns;
}

static int bind_type(enum mssql_stage stage)
{
    switch (stage) {
    case MSSQL_STAGE_INT: return SYBINT8;
    case MSSQL_STAGE_FLOAT: return SYBFLT8;
    case MSSQL_STAGE_BINARY:
    case MSSQL_STAGE_TEXT: break;
    }
    return SYBBINARY;
}

/* UTF-8 (checked by value_check; a byte that starts no valid sequence becomes U+FFFD) to
 * UTF-16LE at out; returns the bytes written, at most 2 * len. */
static size_t utf16le(const char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(in + i, len - i, &cp);
        if (n == 0)
            cp = 0xFFFD, n = 1;
        i += n;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            uint32_t hi = 0xD800 + (cp >> 10), lo = 0xDC00 + (cp & 0x3FF);
            out[o++] = (unsigned char)(hi & 0xFF);
            out[o++] = (unsigned char)(hi >> 8);
            out[o++] = (unsigned char)(lo & 0xFF);
            out[o++] = (unsigned char)(lo >> 8);
        } else {
            out[o++] = (unsigned char)(cp & 0xFF);
            out[o++] = (unsigned char)(cp >> 8);
        }
    }
    return o;
}

/* Points staged column col (1-based in the staging table) at table column k's value. */
static int stage_value(struct mssql_conn *c, const struct table_schema *s, size_t k,
                       const struct value *v, size_t *utf16_used, int *empty)
{
    int col = (int)k + 1 + STAGE_META_COLUMNS;
    DBPROCESS *d = c->dbproc;
    if (!v || v->cls == VAL_NULL)
        return bcp_collen(d, 0, col);
    switch (mssql_stage_of(s->columns[k].type.kind)) {
    case MSSQL_STAGE_INT:
        c->ints[k] = v->i;
        return bcp_colptr(d, (BYTE *)&c->ints[k], col) == SUCCEED ? bcp_collen(d, 8, col) : FAIL;
    case MSSQL_STAGE_FLOAT:
        c->reals[k] = v->d;
        return bcp_colptr(d, (BYTE *)&c->reals[k], col) == SUCCEED ? bcp_collen(d, 8, col)
                                                                   : FAIL;
    case MSSQL_STAGE_BINARY:
    case MSSQL_STAGE_TEXT:
        break;
    }
    if (!v->text || v->len == 0) {
        *empty = 1;
        return bcp_collen(d, 0, col);
    }
    if (mssql_stage_of(s->columns[k].type.kind) == MSSQL_STAGE_TEXT) {
        unsigned char *at = c->utf16 + *utf16_used;
        const char *text = v->text;
        size_t len = v->len;
        /* Staged as nvarchar(64) and parsed by the server: without the zeros that section 5
         * allows in any number (SQL Server parses at most 7 fraction digits, 3 for datetime). */
        char compact[VALUE_COMPACT_MAX];
        if (v->cls == VAL_DECIMAL || v->cls == VAL_DATETIME) {
            len = value_compact_text(&s->columns[k].type, v->text, v->len, compact);
            text = compact;
        }
        size_t n = utf16le(text, len, at);
        *utf16_used += n;
        if (bcp_colptr(d, at, col) == FAIL)
            return FAIL;
        return bcp_collen(d, (DBINT)n, col);
    }
    if (bcp_colptr(d, (BYTE *)(uintptr_t)v->text, col) == FAIL)
        return FAIL;
    return bcp_collen(d, (DBINT)v->len, col);
}

/* Sends the kept rows into #somirror_x; a fault unless the server took every one. */
static int stage_send(struct mssql_conn *c, const struct table_schema *s,
                      const struct row_change *rows, size_t n, const unsigned char *keep,
                      struct fault *f)
{
    DBPROCESS *d = c->dbproc;
    conn_clear(c);
    if (bcp_init(d, MSSQL_STAGE_TABLE, NULL, NULL, DB_IN) == FAIL)
        return conn_fail(c, "bulk copy init", f);
    DBINT seq = 0;
    char op = 'U';
    int ok = bcp_bind(d, (BYTE *)&seq, 0, -1, NULL, 0, SYBINT4, 1) == SUCCEED &&
             bcp_bind(d, (BYTE *)&op, 0, 1, NULL, 0, SYBCHAR, 2) == SUCCEED &&
             bcp_bind(d, (BYTE *)c->empties, 0, 0, NULL, 0, SYBCHAR, 3) == SUCCEED;
    for (size_t k = 0; ok && k < s->ncolumns; k++)
        ok = bcp_bind(d, (BYTE *)&c->ints[k], 0, 0, NULL, 0,
                      bind_type(mssql_stage_of(s->columns[k].type.kind)),
                      (int)(k + 1 + STAGE_META_COLUMNS)) == SUCCEED;
    DBINT nsent = 0;
    for (size_t r = 0; ok && r < n; r++) {
        if (!keep[r])
            continue;
        const struct row_change *row = &rows[r];
        op = row->op == 'D' ? 'D' : 'U';
        int any_empty = 0;
        memset(c->empties, '0', s->ncolumns);
        size_t need = 0, utf16_used = 0;
        for (size_t k = 0; k < (row->op == 'D' ? s->npk : s->ncolumns); k++)
            if (row->values[k].cls != VAL_NULL && row->values[k].cls != VAL_INT &&
                row->values[k].cls != VAL_REAL)
                need += 2 * row->values[k].len;
        c->utf16 = xgrow(c->utf16, &c->utf16_cap, need + 1, 1);
        for (size_t k = 0; ok && k < s->ncolumns; k++) {
            const struct value *v = NULL;
            if (row->op != 'D') {
                v = &row->values[k];
            } else {
                for (size_t p = 0; p < s->npk; p++)
                    if (s->pk[p] == k)
                        v = &row->values[p];
            }
            int empty = 0;
            ok = stage_value(c, s, k, v, &utf16_used, &empty) == SUCCEED;
            if (empty) {
                c->empties[k] = '1';
                any_empty = 1;
            }
        }
        ok = ok && bcp_collen(d, any_empty ? (DBINT)s->ncolumns : 0, 3) == SUCCEED &&
             bcp_sendrow(d) == SUCCEED;
        seq++;
        nsent++;
    }
    DBINT done = bcp_done(d);
    if (!ok || done < 0 || c->failed)
        return conn_fail(c, "bulk copy", f);
    if (done != nsent) {
        fault_set(f, FAULT_STORAGE_ERROR, "mssql: bulk copy: the server took %ld of %ld rows",
                  (long)done, (long)nsent);
        return -1;
    }
    return 0;
}

static int mssql_rows_apply(void *conn, const struct table_schema *schema,
                            const struct row_change *rows, size_t n, int table_was_empty,
                            struct fault *f)
{
    (void)table_was_empty;   /* one path: see the top of this file */
    struct mssql_conn *c = conn;
    if (n == 0)
        return 0;
    if (schema_names_check(schema, f) != 0)
        return -1;
    unsigned char *keep = xmalloc(n);
    collapse(schema, rows, n, keep);
    int upserts = 0, deletes = 0;
    for (size_t r = 0; r < n; r++)
        if (keep[r]) {
            if (rows[r].op == 'D')
                deletes = 1;
            else
                upserts = 1;
        }
    scratch_reserve(c, schema->ncolumns + 1);
    struct buf sql = BUF_INIT;
    buf_puts(&sql, MSSQL_STAGE_DROP_SQL ";\n");
    mssql_stage_create(&sql, schema);
    buf_puts(&sql, MSSQL_COUNTS_ON_SQL ";");
    int rc = run_buf(c, &sql, "creating the staging table", f);
    if (rc == 0)
        rc = stage_send(c, schema, rows, n, keep, f);
    free(keep);
    if (rc != 0)
        return -1;
    buf_puts(&sql, MSSQL_COUNTS_OFF_SQL ";\n");
    mssql_stage_apply(&sql, c->backend->schema, schema, upserts, deletes);
    return run_buf(c, &sql, "applying rows", f);
}

static void mssql_put_table_name(void *conn, struct buf *sql, const char *table)
{
    const struct mssql_conn *c = conn;
    mssql_put_table(sql, c->backend->schema, table);
}

static int mssql_exec_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct mssql_conn *c = conn;
    struct fault f;
    fault_clear(&f);
    int64_t open_transactions = 0;
    /* Bounded by hooks.timeout, as the other stores' scripts are, not by query_timeout (often
     * longer, or none): the worker waits for the script. db-lib's time limit is global; this
     * worker runs nothing else meanwhile. */
    dbsettime(c->backend->script_timeout);
    int rc = conn_current(c, &f) == 0 && run_sql(c, sql, "script", NULL, NULL, &f) == 0 &&
                     run_sql(c, "SELECT @@TRANCOUNT", "script", first_int_row, &open_transactions, &f) == 0
                 ? 0 : -1;
    dbsettime(c->backend->query_timeout);
    if (rc != 0) {
        snprintf(err, errlen, "%s", f.message);
    } else if (open_transactions > 0) {
        snprintf(err, errlen, "the script left a transaction open: rolled back");
        rc = -1;
    }
    /* What the script leaves in its session (a transaction, SET options, USE of another
     * database, temp tables) goes with it: the session is closed (rolling back whatever is
     * open), and the next call logs in anew, as the PostgreSQL store does. */
    conn_disconnect(c);
    return rc;
}

const struct store_driver store_driver_mssql = {
    .name = "mssql",
    .backend_check = mssql_backend_check,
    .backend_open = mssql_backend_open,
    .backend_close = mssql_backend_close,
    .tenant_open = mssql_tenant_open,
    .tenant_exists = mssql_tenant_exists,
    .tenant_close = mssql_tenant_close,
    .tenant_drop = mssql_tenant_drop,
    .begin = mssql_begin,
    .commit = mssql_commit,
    .rollback = mssql_rollback,
    .meta_read = mssql_meta_read,
    .meta_put = mssql_meta_put,
    .meta_delete = mssql_meta_delete,
    .table_create = mssql_table_create,
    .table_drop = mssql_table_drop,
    .table_alter = mssql_table_alter,
    .table_wipe = mssql_table_wipe,
    .rows_apply = mssql_rows_apply,
    .exec_script = mssql_exec_script,
    .put_table = mssql_put_table_name,
};
