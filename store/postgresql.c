/* store/postgresql: the PostgreSQL driver of the mirror store (struct store_driver, see
 * store.h), through libpq. Owns the worker's connections (one admin connection to the database
 * of store.postgresql.conninfo, used only to create and drop tenant databases, and one
 * connection per open tenant), the SQL dialect (types, defaults, quoting, upserts), the per-tenant
 * advisory lock that serialises several somirrord hosts, and the COPY paths for rows.
 * Identifiers are validated, lowercased and always double-quoted; values travel as parameters
 * or through COPY, never inside SQL text. A tenant's open that the server refuses for want of
 * connection slots (SQLSTATE 53300) answers STORE_OPEN_SHORT: the generic layer closes its least
 * recently used tenant's connection and opens again.
 *
 * Names. The tenant database is the configured name (default Mirror_<ctx>), quoted as is, so
 * its case is kept. Tables and columns are lowercased (SQL Server names are case-insensitive;
 * unquoted SQL then finds them); a name longer than PostgreSQL's 63 bytes becomes its first 54
 * characters, '_' and 8 hex digits of a hash of the whole lowercased name.
 *
 * Column types. Where PostgreSQL has an exact type it is used; where it would change a value
 * the value is kept as text (protocol section 8: every accepted value reads back exactly):
 *
 *   SQL Server type            PostgreSQL type       notes
 *   bigint int smallint        same                  
 *   tinyint                    smallint              (0..255 checked before)
 *   bit                        boolean               1/0 read back as true/false
 *   decimal(p,s) numeric(p,s)  numeric(p,s)          same number (scale digits shown)
 *   money smallmoney           numeric(19,4) numeric(10,4)
 *   float real                 double precision real same binary value
 *   date                       date
 *   time(n), n <= 6            time(n)               trailing fraction zeros not shown
 *   time(7)                    varchar(16)           text 'HH:MM:SS[.fffffff]' as sent
 *   datetime                   timestamp(3)
 *   smalldatetime              timestamp(0)
 *   datetime2(n), n <= 6       timestamp(n)          trailing fraction zeros not shown
 *   datetime2(7)               varchar(27)           text 'YYYY-MM-DD HH:MM:SS[.fffffff]'
 *   datetimeoffset(n)          varchar(34)           text 'YYYY-MM-DD HH:MM:SS[.f...]+HH:MM'
 *                                                    (timestamptz would drop the offset)
 *   uniqueidentifier           varchar(36)           as sent (uuid would lowercase it),
 *                              COLLATE somirror_guid compared in any case (see conn_prepare)
 *   char(n) varchar(n)         varchar(n)            stored as sent, not padded
 *   nchar(n) nvarchar(n)       varchar(n)            (n UTF-16 units hold at most n chars)
 *   (max) types, text, ntext   text
 *   xml                        text                  as sent, not checked
 *   binary(n) varbinary(n)     bytea                 not padded
 *   image, timestamp/rowversion bytea
 * In the text forms the 'T' between date and time becomes a space, as PostgreSQL shows its own
 * timestamps, and fraction zeros past the type's digits (section 5 allows any number) are left
 * out, so that the text fits its column. PostgreSQL text cannot hold the character U+0000: such a value fails the call
 * with InvalidValue naming the table and column.
 *
 * Defaults are rendered from the parsed default, never from the request text: numbers and
 * strings as quoted literals (' doubled, standard_conforming_strings on), 0x... as a bytea
 * literal, bit numbers as true/false, NULL; getdate() and sysdatetime() are localtimestamp,
 * getutcdate(), sysutcdatetime() and sysdatetimeoffset() the UTC time (cast to the column's
 * type, smalldatetime to the minute; for the text forms 'YYYY-MM-DD HH:MM:SS.ffffff', a
 * datetimeoffset with its type's fraction digits and '+00:00');
 * newid() and newsequentialid() are upper(gen_random_uuid()::text).
 *
 * Metadata: "<ctx>_mirroring" (lowercased): tablename text PRIMARY KEY (looked up
 * case-insensitively), schema text, schemahash text, lsn bigint, updated timestamp (UTC).
 *
 * Transactions: begin is BEGIN plus pg_advisory_xact_lock(<64-bit FNV-1a hash of the tenant>),
 * waiting at most tenants.lock_timeout (lock_timeout; a timeout is TenantBusy). A connection
 * found broken at begin or at the start of a table_sql script (server restart,
 * pg_terminate_backend, database dropped by a reset elsewhere) is opened anew, provisioning the
 * database when missing.
 *
 * Rows: inserts into a table being fully loaded (table_was_empty) stream into the table by
 * one COPY per call, inside a savepoint; the COPY ends before anything else runs on the
 * connection. Should it meet a key already there (a load sent again, or a key twice), the
 * savepoint is rolled back and the same rows are merged instead, and that table's loads are
 * merged from then on (until it is wiped or dropped). Every other chunk is COPYed into a
 * session temp table (ON COMMIT DELETE ROWS; seq numbers the rows) and merged by one
 * statement: the last change of each key (DISTINCT ON key ORDER BY seq DESC), deletes by
 * DELETE ... USING, the rest by INSERT ... ON CONFLICT (key) DO UPDATE. COPY uses the text
 * format (\ tab newline CR escaped, NULL as \N, bytea as \\x hex). A failure (a constraint
 * or trigger the operator added) names the table, and the row and column where the server
 * names a line and column of the table's COPY. */
#include "store/store.h"

#include <ctype.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/schema.h"
#include "proto/value.h"
#include "store/sqltext.h"

enum {
    PG_NAME_MAX = 63,          /* NAMEDATALEN - 1 */
    PG_NAME_KEEP = 54,         /* characters kept of a longer name, then '_' and 8 hex digits */
    STAGE_CACHE_MAX = 64,      /* temp tables kept per connection before starting over */
    CONNECT_TRIES = 3,
    SLOTS_PAUSE_MS = 100,      /* before a connection refused for want of slots is tried again */
    COPY_PIECE = 1 << 20       /* COPY data is sent in pieces of at most this many bytes */
};

static const uint64_t LOCK_SALT = 0x736f6d6972726f72ULL;   /* "somirror" */

struct pg_backend {
    char *conninfo;            /* NULL: libpq's defaults and environment */
    char *password;
    int lock_timeout;          /* seconds */
    int script_timeout;        /* seconds: a table_sql script (hooks.timeout) */
    PGconn *admin;
    int slots_refused;         /* the last connection was refused for want of slots (53300) */
    int service;               /* conninfo or PGSERVICE names a service: no connect_defaults */
};

/* A temp table for one table schema, and the statements that use it. */
struct stage {
    char *table;               /* the metadata's table name */
    char hash[SM_HASH_HEX + 1];
    char *copy_sql;            /* COPY into the temp table */
    char *merge_sql;           /* merge into the table, then empty the temp table */
    char *direct_sql;          /* COPY straight into the table */
    char *replay_sql;          /* COPY of direct rows into the temp table (seq and op default) */
    int committed;             /* the temp table exists beyond the current transaction */
};

struct pg_conn {
    struct pg_backend *backend;
    char *tenant;
    char *dbname;
    char *meta;                /* "<ctx>_mirroring" lowercased, unquoted */
    PGconn *db;
    int64_t lock_key;
    unsigned stage_serial;
    struct stage *stages;
    size_t nstages, stages_cap;
    char **nodirect;           /* tables whose direct COPY met a key already there */
    size_t nnodirect, nodirect_cap;
    struct buf data;           /* COPY data scratch */
    /* An open direct COPY (a full load streaming into a table) inside a savepoint, ended
     * before anything else runs on the connection (stream_finish). */
    char *stream_table;        /* its table (metadata name), or NULL */
    char *stream_replay_sql;
    char *stream_merge_sql;
    struct buf replay;         /* the rows sent, merged instead when the COPY meets a key */
    long *stream_rownos;       /* the call's row number of each row sent, by COPY line */
    size_t nstream_rownos, stream_rownos_cap;
};

static int stream_finish(struct pg_conn *c, struct fault *f);
static void stream_abort(struct pg_conn *c);

/* ---- names and SQL text ---- */

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* name lowercased, then suffix, shortened past 63 bytes (the start of the name, the suffix, '_'
 * and a hash of the whole name). */
static void pg_name_suffixed(char out[PG_NAME_MAX + 1], const char *name, const char *suffix)
{
    char lower[SM_IDENT_MAX + 1];
    size_t len = strlen(name), suffix_len = strlen(suffix);
    if (len > SM_IDENT_MAX)
        len = SM_IDENT_MAX;
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[len] = '\0';
    if (len + suffix_len <= PG_NAME_MAX) {
        memcpy(out, lower, len);
        memcpy(out + len, suffix, suffix_len + 1);
        return;
    }
    snprintf(out, PG_NAME_MAX + 1, "%.*s%s_%08x", (int)(PG_NAME_KEEP - suffix_len), lower, suffix,
             (unsigned)(fnv1a(lower, len) & 0xffffffffu));
}

/* A table or column name as PostgreSQL keeps it: lowercased, shortened past 63 bytes. */
static void pg_name(char out[PG_NAME_MAX + 1], const char *name)
{
    pg_name_suffixed(out, name, "");
}

/* PostgreSQL's system columns (every table has them; oid no longer since PostgreSQL 12): a column
 * of such a name cannot be made. */
static const char *pg_column_name_refused(const char *name)
{
    static const char *const system_columns[] = {"xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"};
    for (size_t i = 0; i < sizeof(system_columns) / sizeof(system_columns[0]); i++)
        if (strcasecmp(name, system_columns[i]) == 0)
            return "a system column's name in PostgreSQL, which no table may have";
    return NULL;
}

/* The name of a table's primary key constraint (and its index), out of the names tables can
 * have ('$' is in no identifier the protocol takes): PostgreSQL's own "<table>_pkey" is a name
 * another table may have, and the index takes it first. */
static void pg_key_name(char out[PG_NAME_MAX + 1], const char *table)
{
    pg_name_suffixed(out, table, "$pk");
}

static void put_quoted(struct buf *sql, const char *name)
{
    sqltext_put_quoted(sql, name, '"', '"');
}

/* A validated identifier (table or column), lowercased and quoted. */
static void put_ident(struct buf *sql, const char *name)
{
    char pg[PG_NAME_MAX + 1];
    pg_name(pg, name);
    put_quoted(sql, pg);
}

static int schema_names_check(const struct table_schema *s, struct fault *f)
{
    return sqltext_schema_names_check("postgresql", s, f);
}

/* ---- errors and statements ---- */

static void trim_newlines(char *s)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        s[--len] = '\0';
}

static int sqlstate_is(const PGresult *res, const char *state)
{
    const char *got = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return got && strcmp(got, state) == 0;
}

/* A StorageError with the server's message and SQLSTATE (TenantBusy for a lock timeout). */
static int pg_fail(PGconn *db, const PGresult *res, const char *what, struct fault *f)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    char msg[700];
    snprintf(msg, sizeof(msg), "%s",
             primary ? primary : db ? PQerrorMessage(db) : "out of memory");
    trim_newlines(msg);
    if (!msg[0])
        snprintf(msg, sizeof(msg), "failed");
    enum fault_code code = FAULT_STORAGE_ERROR;
    if (state && strcmp(state, "55P03") == 0)
        code = FAULT_TENANT_BUSY;
    fault_set(f, code, "postgresql: %s: %s%s%s%s%s%s", what, msg, detail ? " (" : "",
              detail ? detail : "", detail ? ")" : "", state ? " SQLSTATE " : "",
              state ? state : "");
    return -1;
}

static int result_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Runs SQL (one or more statements) that returns nothing needed. */
static int exec_sql(PGconn *db, const char *sql, const char *what, struct fault *f)
{
    PGresult *res = PQexec(db, sql);
    int rc = result_ok(res) ? 0 : pg_fail(db, res, what, f);
    PQclear(res);
    return rc;
}

static int exec_buf(PGconn *db, struct buf *sql, const char *what, struct fault *f)
{
    int rc = exec_sql(db, sql->data, what, f);
    buf_free(sql);
    return rc;
}

/* A statement with text parameters; the result (tuples or not) or NULL with f set. */
static PGresult *exec_params(PGconn *db, const char *sql, int n, const char *const *params,
                             const char *what, struct fault *f)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (result_ok(res))
        return res;
    pg_fail(db, res, what, f);
    PQclear(res);
    return NULL;
}

/* ---- connections ---- */

/* What the server says outside a statement's result (a warning, or the FATAL it sends to
 * every session as it shuts down) goes to the log, not to libpq's default, stderr (which a
 * daemon has closed). */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char text[1024];
    snprintf(text, sizeof(text), "%s", message);
    trim_newlines(text);
    log_info("postgresql: the server says: %s", text);
}

/* Settings of libpq's that default to what no daemon wants, given before conninfo (and only
 * when libpq's environment variable, where it has one, is not set either), so that what the
 * operator writes wins:
 * connect_timeout, because libpq waits for ever by default for a server that accepts the
 * connection and never answers (a stopped or hung postgres, a blackholed host), and the
 * worker, blocked in libpq, serves no one meanwhile; target_session_attrs, because the store
 * only writes: of several hosts (a failover pair) libpq takes the first that answers, a
 * read-only standby too, where every call would fail;
 * the TCP keepalives and tcp_user_timeout, because a server host that vanishes without a reset
 * (powered off, a failover moving its address, a firewall dropping the flow) otherwise leaves
 * the worker blocked in libpq until the kernel gives up retransmitting (about 15 minutes on
 * Linux), and an idle connection is probed only after 2 hours: a connection idle for 60 s is
 * probed every 10 s and given up after 6 probes unanswered (dead after 2 minutes), and data
 * sent and unacknowledged for 2 minutes gives it up too (a server busy with a long statement
 * still acknowledges; Linux also gives up on one that reads none of a COPY's data for as long,
 * where lock_timeout has ended any lock wait before). Unix sockets ignore these four. */
static const struct {
    const char *keyword, *env, *value;   /* env NULL: libpq reads none */
} connect_defaults[] = {
    {"connect_timeout", "PGCONNECT_TIMEOUT", "10"},
    {"target_session_attrs", "PGTARGETSESSIONATTRS", "read-write"},
    {"keepalives_idle", NULL, "60"},
    {"keepalives_interval", NULL, "10"},
    {"keepalives_count", NULL, "6"},
    {"tcp_user_timeout", NULL, "120000"},   /* milliseconds */
};

enum { CONNECT_DEFAULTS = sizeof(connect_defaults) / sizeof(connect_defaults[0]) };

/* Whether the server refused the connection for want of connection slots, SQLSTATE 53300 (its
 * max_connections taken, those left reserved, the role's CONNECTION LIMIT). libpq keeps the
 * SQLSTATE of a refused connection to itself, so the server's message tells, in the words it
 * sends untranslated (lc_messages C or English); in another language the open fails as any
 * other. */
static int refused_for_slots(const PGconn *db)
{
    static const char *const messages[] = {
        "too many clients already",
        "remaining connection slots are reserved",
        "too many connections for role",
    };
    const char *text = PQerrorMessage(db);
    for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++)
        if (strstr(text, messages[i]))
            return 1;
    return 0;
}

/* A connection to dbname (NULL: conninfo's), to check with PQstatus; b->slots_refused says
 * whether the server refused it for want of slots. */
static PGconn *connect_db(struct pg_backend *b, const char *dbname)
{
    const char *keys[6 + CONNECT_DEFAULTS], *values[6 + CONNECT_DEFAULTS];
    int n = 0;
    for (size_t i = 0; i < CONNECT_DEFAULTS && !b->service; i++) {
        if (connect_defaults[i].env && getenv(connect_defaults[i].env))
            continue;
        keys[n] = connect_defaults[i].keyword;
        values[n++] = connect_defaults[i].value;
    }
    if (b->conninfo && *b->conninfo) {
        keys[n] = "dbname";
        values[n++] = b->conninfo;
    }
    if (dbname) {
        keys[n] = "dbname";
        values[n++] = dbname;
    }
    if (b->password) {
        keys[n] = "password";
        values[n++] = b->password;
    }
    keys[n] = "client_encoding";
    values[n++] = "UTF8";
    keys[n] = "fallback_application_name";
    values[n++] = "somirrord";
    keys[n] = NULL;
    values[n] = NULL;
    PGconn *db = PQconnectdbParams(keys, values, 1);
    b->slots_refused = db && PQstatus(db) == CONNECTION_BAD && refused_for_slots(db);
    if (db)
        PQsetNoticeProcessor(db, notice_to_log, NULL);
    return db;
}

static int connect_fail(PGconn *db, const char *what, struct fault *f)
{
    char msg[700];
    snprintf(msg, sizeof(msg), "%s", db ? PQerrorMessage(db) : "out of memory");
    trim_newlines(msg);
    fault_set(f, FAULT_STORAGE_ERROR, "postgresql: %s: %s", what, msg);
    return -1;
}

/* The admin connection, (re)opened when missing or broken. */
static PGconn *admin_conn(struct pg_backend *b, struct fault *f)
{
    if (b->admin && PQstatus(b->admin) == CONNECTION_OK)
        return b->admin;
    PQfinish(b->admin);
    b->admin = connect_db(b, NULL);
    if (PQstatus(b->admin) != CONNECTION_OK) {
        connect_fail(b->admin, "connecting to the server", f);
        PQfinish(b->admin);
        b->admin = NULL;
        return NULL;
    }
    return b->admin;
}

/* Runs one admin statement with parameters; retried once on a connection found broken. The
 * result, or NULL with f set. */
static PGresult *admin_exec(struct pg_backend *b, const char *sql, int n,
                            const char *const *params, const char *what, struct fault *f)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *db = admin_conn(b, f);
        if (!db)
            return NULL;
        PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
        if (result_ok(res))
            return res;
        if (PQstatus(db) == CONNECTION_BAD && attempt == 0) {
            PQclear(res);
            continue;
        }
        pg_fail(db, res, what, f);
        PQclear(res);
        return NULL;
    }
    return NULL;
}

static int dbname_check(const char *dbname, struct fault *f)
{
    if (*dbname && strlen(dbname) <= PG_NAME_MAX)
        return 0;
    fault_set(f, FAULT_INTERNAL, "postgresql: database name %s is empty or longer than %d bytes",
              dbname, PG_NAME_MAX);
    return -1;
}

static int database_exists(struct pg_backend *b, const char *dbname, int *exists, struct fault *f)
{
    const char *params[1] = {dbname};
    PGresult *res = admin_exec(b, "SELECT 1 FROM pg_database WHERE datname = $1", 1, params,
                               "looking up the tenant database", f);
    if (!res)
        return -1;
    *exists = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}

static int pg_tenant_exists(void *backend, const char *tenant, const char *dbname, int *exists,
                            struct fault *f)
{
    (void)tenant;
    return dbname_check(dbname, f) == 0 ? database_exists(backend, dbname, exists, f) : -1;
}

/* Creates the tenant database when missing; another host creating it at the same time is no
 * error. */
static int database_ensure(struct pg_backend *b, const char *dbname, struct fault *f)
{
    int exists = 0;
    if (database_exists(b, dbname, &exists, f) != 0)
        return -1;
    if (exists)
        return 0;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "CREATE DATABASE ");
    put_quoted(&sql, dbname);
    /* UTF-8 whatever the cluster's default (SQL_ASCII would count bytes against varchar(n),
     * LATIN1 could not hold every value); template0 is the template any encoding may copy. */
    buf_puts(&sql, " ENCODING 'UTF8' TEMPLATE template0");
    int rc = -1;
    for (int attempt = 0; attempt < 10; attempt++) {
        PGconn *db = admin_conn(b, f);
        if (!db)
            break;
        PGresult *res = PQexec(db, sql.data);
        /* 42P04: another host created it meanwhile; 55006: template1 in use (a concurrent
         * CREATE DATABASE), tried again */
        if (result_ok(res) || sqlstate_is(res, "42P04")) {
            rc = 0;
        } else if (sqlstate_is(res, "55006") || PQstatus(db) == CONNECTION_BAD) {
            pg_fail(db, res, "creating the tenant database", f);
            PQclear(res);
            struct timespec pause = {0, 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
            continue;
        } else {
            pg_fail(db, res, "creating the tenant database", f);
        }
        PQclear(res);
        break;
    }
    buf_free(&sql);
    if (rc == 0)
        fault_clear(f);
    return rc;
}

static void stages_forget(struct pg_conn *c, int keep_committed)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->nstages; i++) {
        struct stage *s = &c->stages[i];
        if (keep_committed && s->committed) {
            c->stages[kept++] = *s;
            continue;
        }
        free(s->table);
        free(s->copy_sql);
        free(s->merge_sql);
        free(s->direct_sql);
        free(s->replay_sql);
    }
    c->nstages = kept;
}

static void stream_forget(struct pg_conn *c)
{
    free(c->stream_table);
    free(c->stream_replay_sql);
    free(c->stream_merge_sql);
    c->stream_table = c->stream_replay_sql = c->stream_merge_sql = NULL;
    buf_reset(&c->replay);
    c->nstream_rownos = 0;
}

/* The index of table in c->nodirect, or c->nnodirect when it is not there. */
static size_t nodirect_find(const struct pg_conn *c, const char *table)
{
    size_t i = 0;
    while (i < c->nnodirect && !ident_equal(c->nodirect[i], table))
        i++;
    return i;
}

/* The table is emptied or gone: its loads may COPY straight again (the other tables' stay
 * merged, their rows are still there). A table is listed once (stream_finish adds it only
 * after a direct COPY, which its listing rules out). */
static void nodirect_forget(struct pg_conn *c, const char *table)
{
    size_t i = nodirect_find(c, table);
    if (i == c->nnodirect)
        return;
    free(c->nodirect[i]);
    c->nodirect[i] = c->nodirect[--c->nnodirect];
}

static void conn_disconnect(struct pg_conn *c)
{
    stages_forget(c, 0);
    stream_forget(c);
    PQfinish(c->db);
    c->db = NULL;
}

/* Session settings, then the metadata table (created under the tenant lock). */
static int conn_prepare(struct pg_conn *c, struct fault *f)
{
    struct buf sql = BUF_INIT;
    buf_printf(&sql,
               /* pg_catalog last: a mirrored table named like a catalog (pg_class) is the
                * mirror's, not the catalog, in every unqualified name below. A table also
                * makes a type of its name, so the types that are not keywords (text, date,
                * bytea, "char") are always written pg_catalog.<type>. */
               "SET search_path = \"$user\", public, pg_catalog;"
               " SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
               " SET standard_conforming_strings = on; SET extra_float_digits = 1;"
               " SET lock_timeout = '%ds'; SET client_min_messages = warning",
               c->backend->lock_timeout);
    if (exec_buf(c->db, &sql, "session settings", f) != 0)
        return -1;
    /* GUIDs compare in any case, as in SQL Server: a key sent in lowercase finds the row sent
     * in uppercase. That takes an ICU collation that ignores case (nondeterministic); a server
     * built without ICU gets a plain one of the same name, and compares GUIDs as text. */
    buf_printf(&sql, "BEGIN; SELECT pg_advisory_xact_lock(%lld);"
               " DO $$BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE collprovider = 'i')"
               " THEN CREATE COLLATION IF NOT EXISTS somirror_guid (provider = icu,"
               " locale = 'und-u-ks-level2', deterministic = false);"
               " ELSE CREATE COLLATION IF NOT EXISTS somirror_guid FROM \"C\"; END IF; END$$;"
               " CREATE TABLE IF NOT EXISTS ",
               (long long)c->lock_key);
    put_quoted(&sql, c->meta);
    char key_name[PG_NAME_MAX + 1];
    pg_key_name(key_name, c->meta);
    buf_puts(&sql, " (tablename pg_catalog.text NOT NULL CONSTRAINT ");
    put_quoted(&sql, key_name);
    buf_puts(&sql, " PRIMARY KEY, schema pg_catalog.text NOT NULL,"
                   " schemahash pg_catalog.text NOT NULL, lsn bigint NOT NULL,"
                   " updated timestamp NOT NULL);"
                   " COMMIT");
    if (exec_buf(c->db, &sql, "creating the metadata table", f) != 0) {
        exec_sql(c->db, "ROLLBACK", "rollback", f);
        return -1;
    }
    return 0;
}

/* Opens the tenant's connection, creating the database when missing. A failure is tried
 * again: a database dropped meanwhile by a reset elsewhere is provisioned again, and a server out
 * of connection slots may have one after a pause (that of a session just closed, by this store
 * too, frees only when its backend has exited). */
static int conn_connect(struct pg_conn *c, struct fault *f)
{
    struct pg_backend *b = c->backend;
    conn_disconnect(c);
    for (int attempt = 0; attempt < CONNECT_TRIES && !c->db; attempt++) {
        if (attempt > 0 && b->slots_refused) {
            struct timespec pause = {0, SLOTS_PAUSE_MS * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        b->slots_refused = 0;
        if (database_ensure(b, c->dbname, f) != 0) {
            if (!b->slots_refused)
                return -1;
            continue;
        }
        c->db = connect_db(b, c->dbname);
        if (PQstatus(c->db) != CONNECTION_OK) {
            connect_fail(c->db, "connecting to the tenant database", f);
            PQfinish(c->db);
            c->db = NULL;
        }
    }
    if (!c->db)
        return -1;
    if (conn_prepare(c, f) != 0) {
        conn_disconnect(c);
        return -1;
    }
    return 0;
}

/* The settings' checks (also somirrord -t): conninfo parses as libpq's keywords or a URI, so
 * that a typo is told where it is written, not when a tenant's call first connects. libpq's
 * message may quote a piece of the text, so none is shown of one that holds a password. */
static int pg_backend_check(const struct config *cfg, char *err, size_t errlen)
{
    const char *conninfo = cfg->postgresql.conninfo;
    if (!conninfo || !*conninfo)
        return 0;
    char *why = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &why);
    if (options) {
        PQconninfoFree(options);
        return 0;
    }
    if (!why || cfg_conninfo_may_hold_password(conninfo))
        snprintf(err, errlen, "store.postgresql.conninfo: not libpq connection keywords or a URI (its "
                 "text is not shown: it may hold a password)");
    else
        snprintf(err, errlen, "store.postgresql.conninfo: %.*s", (int)strcspn(why, "\n"), why);
    PQfreemem(why);
    cfg_locate(cfg, "store.postgresql.conninfo", err, errlen);
    return -1;
}

/* Whether conninfo (parsed already by pg_backend_check) or PGSERVICE names a service of
 * pg_service.conf: libpq lets no setting of the service replace one given beside conninfo, so
 * connect_defaults would override the operator's file; that file's settings then stand alone. */
static int names_service(const char *conninfo)
{
    if (getenv("PGSERVICE"))
        return 1;
    PQconninfoOption *options = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;
    int named = 0;
    for (PQconninfoOption *o = options; o && o->keyword; o++)
        if (!strcmp(o->keyword, "service") && o->val && *o->val)
            named = 1;
    PQconninfoFree(options);
    return named;
}

static void *pg_backend_open(const struct config *cfg, char *err, size_t errlen)
{
    if (pg_backend_check(cfg, err, errlen) < 0)
        return NULL;
    struct pg_backend *b = xcalloc(1, sizeof(*b));
    if (cfg->postgresql.conninfo)
        b->conninfo = xstrdup(cfg->postgresql.conninfo);
    b->service = names_service(b->conninfo);
    if (cfg->postgresql.password)
        b->password = xstrdup(cfg->postgresql.password);
    b->lock_timeout = cfg->lock_timeout > 0 ? cfg->lock_timeout : 60;
    b->script_timeout = cfg->hooks.timeout > 0 ? cfg->hooks.timeout : 60;
    return b;   /* connections are opened when first needed */
}

static void pg_backend_idle(void *backend)
{
    struct pg_backend *b = backend;
    PQfinish(b->admin);
    b->admin = NULL;   /* admin_conn opens it again when needed */
}

static void pg_backend_close(void *backend)
{
    struct pg_backend *b = backend;
    if (!b)
        return;
    PQfinish(b->admin);
    free(b->conninfo);
    free(b->password);
    free(b);
}

/* "<ctx>_mirroring" always fits a PostgreSQL name: a tenant has at most SM_TENANT_MAX characters. */
_Static_assert(SM_TENANT_MAX + sizeof(SCHEMA_META_SUFFIX) - 1 <= PG_NAME_MAX, "metadata table name fits");

static int pg_tenant_open(void *backend, const char *tenant, const char *dbname, void **conn,
                          struct fault *f)
{
    if (dbname_check(dbname, f) != 0)
        return -1;
    struct pg_conn *c = xcalloc(1, sizeof(*c));
    c->backend = backend;
    c->tenant = xstrdup(tenant);
    c->dbname = xstrdup(dbname);
    c->meta = sqltext_meta_table("postgresql", tenant, f);
    for (char *p = c->meta; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    c->lock_key = (int64_t)(fnv1a(tenant, strlen(tenant)) ^ LOCK_SALT);
    struct pg_backend *b = backend;
    b->slots_refused = 0;
    if (!c->meta || conn_connect(c, f) != 0) {
        free(c->meta);
        free(c->dbname);
        free(c->tenant);
        free(c);
        /* the last connection tried, the admin one or the tenant's */
        return b->slots_refused ? STORE_OPEN_SHORT : -1;
    }
    *conn = c;
    return 0;
}

static void pg_tenant_close(void *conn)
{
    struct pg_conn *c = conn;
    if (!c)
        return;
    conn_disconnect(c);
    free(c->stages);
    for (size_t i = 0; i < c->nnodirect; i++)
        free(c->nodirect[i]);
    free(c->nodirect);
    buf_free(&c->replay);
    free(c->stream_rownos);
    buf_free(&c->data);
    free(c->meta);
    free(c->dbname);
    free(c->tenant);
    free(c);
}

static int pg_tenant_drop(void *backend, const char *tenant, const char *dbname, struct fault *f)
{
    (void)tenant;
    if (dbname_check(dbname, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "DROP DATABASE IF EXISTS ");
    put_quoted(&sql, dbname);
    buf_puts(&sql, " WITH (FORCE)");
    PGresult *res = admin_exec(backend, sql.data, 0, NULL, "dropping the tenant database", f);
    buf_free(&sql);
    PQclear(res);
    return res ? 0 : -1;
}

/* ---- transactions ---- */

/* Runs sql, the first statement of a use of the tenant's connection (nothing before it in the
 * session is relied on), on the connection opened first when missing or known broken, and
 * opened anew and run once more when sql finds it broken: the server closed it while it was
 * idle (a restart, pg_terminate_backend, the database dropped by a reset elsewhere), which
 * libpq learns only when it next uses it. 0, or -1 with f. */
static int conn_exec_first(struct pg_conn *c, const char *sql, const char *what, struct fault *f)
{
    for (int attempt = 0;; attempt++) {
        if ((!c->db || PQstatus(c->db) != CONNECTION_OK) && conn_connect(c, f) != 0)
            return -1;
        PGresult *res = PQexec(c->db, sql);
        int ok = result_ok(res);
        if (!ok && PQstatus(c->db) == CONNECTION_BAD && attempt == 0) {
            PQclear(res);
            log_info("postgresql: connection to %s lost; reconnecting", c->dbname);
            continue;
        }
        if (!ok)
            pg_fail(c->db, res, what, f);
        PQclear(res);
        return ok ? 0 : -1;
    }
}

static int pg_begin(void *conn, struct fault *f)
{
    struct pg_conn *c = conn;
    stream_forget(c);
    char sql[96];
    snprintf(sql, sizeof(sql), "BEGIN; SELECT pg_advisory_xact_lock(%lld)",
             (long long)c->lock_key);
    if (conn_exec_first(c, sql, "begin", f) == 0)
        return 0;
    if (f->code == FAULT_TENANT_BUSY)
        fault_set(f, FAULT_TENANT_BUSY, "tenant %s: the mirror is locked by another host",
                  c->tenant);
    if (c->db && PQtransactionStatus(c->db) != PQTRANS_IDLE)   /* c->db NULL: not opened */
        exec_sql(c->db, "ROLLBACK", "rollback", f);
    return -1;
}

static int pg_commit(void *conn, struct fault *f)
{
    struct pg_conn *c = conn;
    if (stream_finish(c, f) != 0)
        return -1;
    PGresult *res = PQexec(c->db, "COMMIT");
    /* COMMIT of a failed transaction answers ROLLBACK: the status says which */
    int ok = result_ok(res) && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok) {
        if (result_ok(res))
            fault_set(f, FAULT_STORAGE_ERROR, "postgresql: commit: the transaction was rolled back");
        else
            pg_fail(c->db, res, "commit", f);
    }
    PQclear(res);
    if (ok)
        for (size_t i = 0; i < c->nstages; i++)
            c->stages[i].committed = 1;
    else
        stages_forget(c, 1);
    return ok ? 0 : -1;
}

static void pg_rollback(void *conn)
{
    struct pg_conn *c = conn;
    stream_abort(c);
    if (c->db && PQtransactionStatus(c->db) != PQTRANS_IDLE &&
        PQtransactionStatus(c->db) != PQTRANS_UNKNOWN) {
        PGresult *res = PQexec(c->db, "ROLLBACK");
        PQclear(res);
    }
    stages_forget(c, 1);   /* temp tables created in the transaction are gone */
}

/* ---- metadata ---- */

static int pg_meta_read(void *conn, struct arena *arena, struct table_meta **out, size_t *n,
                        struct fault *f)
{
    struct pg_conn *c = conn;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "SELECT tablename, schema, schemahash, lsn,"
                   " CAST(extract(epoch FROM updated AT TIME ZONE 'UTC') AS bigint) FROM ");
    put_quoted(&sql, c->meta);
    buf_puts(&sql, " ORDER BY tablename");
    PGresult *res = exec_params(c->db, sql.data, 0, NULL, "reading the metadata", f);
    buf_free(&sql);
    if (!res)
        return -1;
    size_t rows = (size_t)PQntuples(res);
    struct table_meta *m = arena_calloc(arena, rows + 1, sizeof(*m));
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;
        m[i].name = arena_strdup(arena, PQgetvalue(res, r, 0));
        m[i].canonical = arena_strdup(arena, PQgetvalue(res, r, 1));
        snprintf(m[i].hash, sizeof(m[i].hash), "%s", PQgetvalue(res, r, 2));
        m[i].lsn = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        m[i].updated = strtoll(PQgetvalue(res, r, 4), NULL, 10);
    }
    PQclear(res);
    *out = m;
    *n = rows;
    return 0;
}

static int pg_meta_put(void *conn, const char *table, const char *canonical, const char *hash,
                       int64_t lsn, struct fault *f)
{
    struct pg_conn *c = conn;
    if (stream_finish(c, f) != 0)
        return -1;
    char lsn_text[24];
    snprintf(lsn_text, sizeof(lsn_text), "%lld", (long long)lsn);
    const char *params[4] = {table, canonical, hash, lsn_text};
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "WITH changed AS (UPDATE ");
    put_quoted(&sql, c->meta);
    buf_puts(&sql, " SET schema = $2, schemahash = $3, lsn = $4::bigint,"
                   " updated = now() AT TIME ZONE 'UTC' WHERE lower(tablename) = lower($1)"
                   " RETURNING 1) INSERT INTO ");
    put_quoted(&sql, c->meta);
    buf_puts(&sql, " (tablename, schema, schemahash, lsn, updated) SELECT $1, $2, $3,"
                   " $4::bigint, now() AT TIME ZONE 'UTC' WHERE NOT EXISTS (SELECT 1 FROM changed)");
    PGresult *res = exec_params(c->db, sql.data, 4, params, "writing the metadata", f);
    buf_free(&sql);
    PQclear(res);
    return res ? 0 : -1;
}

static int pg_meta_delete(void *conn, const char *table, struct fault *f)
{
    struct pg_conn *c = conn;
    if (stream_finish(c, f) != 0)
        return -1;
    const char *params[1] = {table};
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "DELETE FROM ");
    put_quoted(&sql, c->meta);
    buf_puts(&sql, " WHERE lower(tablename) = lower($1)");
    PGresult *res = exec_params(c->db, sql.data, 1, params, "removing the metadata", f);
    buf_free(&sql);
    PQclear(res);
    return res ? 0 : -1;
}

/* ---- column declarations ---- */

/* Types whose values are kept as text because PostgreSQL's own type would change them. */
static int stored_as_text_time(const struct sql_type *t)
{
    return t->kind == SQL_DATETIMEOFFSET ||
           ((t->kind == SQL_TIME || t->kind == SQL_DATETIME2) && t->scale > 6);
}

/* A checked date/time value as stored: without the fraction zeros past the type's digits (the
 * text columns are sized for them), and in the text forms with a space for the 'T'. */
static size_t time_text(const struct sql_type *t, const char *text, size_t len,
                        char out[VALUE_COMPACT_MAX])
{
    size_t n = value_compact_text(t, text, len, out);
    if (stored_as_text_time(t))
        sqltext_datetime_space(out, n);
    return n;
}

static void put_type(struct buf *sql, const struct sql_type *t)
{
    switch (t->kind) {
    case SQL_BIGINT: buf_puts(sql, "bigint"); return;
    case SQL_INT: buf_puts(sql, "integer"); return;
    case SQL_SMALLINT:
    case SQL_TINYINT: buf_puts(sql, "smallint"); return;
    case SQL_BIT: buf_puts(sql, "boolean"); return;
    case SQL_DECIMAL:
    case SQL_NUMERIC: buf_printf(sql, "numeric(%d,%d)", t->precision, t->scale); return;
    case SQL_MONEY: buf_puts(sql, "numeric(19,4)"); return;
    case SQL_SMALLMONEY: buf_puts(sql, "numeric(10,4)"); return;
    case SQL_FLOAT: buf_puts(sql, "double precision"); return;
    case SQL_REAL: buf_puts(sql, "real"); return;
    case SQL_DATE: buf_puts(sql, "pg_catalog.date"); return;
    case SQL_TIME:
        if (t->scale > 6)
            buf_puts(sql, "varchar(16)");
        else
            buf_printf(sql, "time(%d)", t->scale);
        return;
    case SQL_DATETIME: buf_puts(sql, "timestamp(3)"); return;
    case SQL_SMALLDATETIME: buf_puts(sql, "timestamp(0)"); return;
    case SQL_DATETIME2:
        if (t->scale > 6)
            buf_puts(sql, "varchar(27)");
        else
            buf_printf(sql, "timestamp(%d)", t->scale);
        return;
    case SQL_DATETIMEOFFSET: buf_puts(sql, "varchar(34)"); return;
    case SQL_UNIQUEIDENTIFIER: buf_puts(sql, "varchar(36) COLLATE somirror_guid"); return;
    case SQL_CHAR:
    case SQL_VARCHAR:
    case SQL_NCHAR:
    case SQL_NVARCHAR:
        if (t->length == SQL_LEN_MAX || t->length <= 0)
            buf_puts(sql, "pg_catalog.text");
        else
            buf_printf(sql, "varchar(%d)", t->length);
        return;
    case SQL_TEXT:
    case SQL_NTEXT:
    case SQL_XML: buf_puts(sql, "pg_catalog.text"); return;
    case SQL_BINARY:
    case SQL_VARBINARY:
    case SQL_IMAGE:
    case SQL_TIMESTAMP: buf_puts(sql, "pg_catalog.bytea"); return;
    }
    buf_puts(sql, "pg_catalog.text");
}

/* The current time for a function default, as the column's type wants it. */
static void put_time_default(struct buf *sql, enum default_function fn, const struct sql_type *t)
{
    int utc = fn == FN_GETUTCDATE || fn == FN_SYSUTCDATETIME || fn == FN_SYSDATETIMEOFFSET;
    const char *now = utc ? "(now() AT TIME ZONE 'UTC')" : "localtimestamp";
    switch (t->kind) {
    case SQL_DATE:
        buf_printf(sql, "CAST(%s AS pg_catalog.date)", now);
        return;
    case SQL_TIME:
        if (t->scale > 6)
            buf_printf(sql, "to_char(%s, 'HH24:MI:SS.US')", now);
        else
            buf_printf(sql, "CAST(%s AS time(%d))", now, t->scale);
        return;
    case SQL_DATETIME:
        buf_printf(sql, "CAST(%s AS timestamp(3))", now);
        return;
    case SQL_SMALLDATETIME:   /* whole minutes, as the type holds */
        buf_printf(sql, "date_trunc('minute', %s)", now);
        return;
    case SQL_DATETIME2:
        if (t->scale <= 6) {
            buf_printf(sql, "CAST(%s AS timestamp(%d))", now, t->scale);
            return;
        }
        break;
    case SQL_DATETIMEOFFSET:   /* the type's fraction digits (microseconds at most) */
        buf_printf(sql, "(substr(to_char(%s, 'YYYY-MM-DD HH24:MI:SS.US'), 1, %d) || '+00:00')", now,
                   t->scale == 0 ? 19 : 20 + (t->scale < 6 ? t->scale : 6));
        return;
    default:
        break;
    }
    buf_printf(sql, fn == FN_SYSDATETIMEOFFSET && t->kind != SQL_DATETIME2
                        ? "(to_char(%s, 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00')"
                        : "to_char(%s, 'YYYY-MM-DD HH24:MI:SS.US')", now);
}

/* " DEFAULT <value>" for a checked default (sqltext_default_fn); -1 for a string with a NUL. */
static int put_default_value(struct buf *sql, const struct column *col)
{
    const struct default_expr *d = &col->def;
    switch (d->kind) {
    case DEF_NUMBER: {
        const char *digits = d->text[0] == '+' ? d->text + 1 : d->text;
        if (col->type.kind == SQL_BIT) {
            buf_puts(sql, strtod(digits, NULL) != 0 ? " DEFAULT true" : " DEFAULT false");
            return 0;
        }
        buf_puts(sql, " DEFAULT ");
        sqltext_put_string(sql, digits, strlen(digits));
        return 0;
    }
    case DEF_STRING:
        if (memchr(d->text, '\0', d->len))
            return -1;
        buf_puts(sql, " DEFAULT ");
        if (sqltype_is_temporal(col->type.kind)) {
            char text[VALUE_COMPACT_MAX];
            sqltext_put_string(sql, text, time_text(&col->type, d->text, d->len, text));
            return 0;
        }
        sqltext_put_string(sql, d->text, d->len);
        return 0;
    case DEF_BINARY:
        buf_printf(sql, " DEFAULT '\\x%s%.*s'::pg_catalog.bytea", d->len % 2 ? "0" : "", (int)d->len,
                   d->text);
        return 0;
    case DEF_FUNCTION:
        buf_puts(sql, " DEFAULT ");
        if (d->function == FN_NEWID || d->function == FN_NEWSEQUENTIALID)
            buf_puts(sql, "upper(CAST(gen_random_uuid() AS pg_catalog.text))");
        else
            put_time_default(sql, d->function, &col->type);
        return 0;
    case DEF_NULL:
        break;
    }
    return -1;
}

static void put_column(struct buf *sql, const struct column *col, int with_default)
{
    put_ident(sql, col->name);
    buf_putc(sql, ' ');
    put_type(sql, &col->type);
    if (!col->nullable)
        buf_puts(sql, " NOT NULL");
    if (with_default)
        sqltext_put_default(sql, col, put_default_value);
}

/* ---- tables ---- */

static int pg_table_create(void *conn, const struct table_schema *schema, struct fault *f)
{
    struct pg_conn *c = conn;
    if (stream_finish(c, f) != 0 || schema_names_check(schema, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "CREATE TABLE ");
    put_ident(&sql, schema->name);
    buf_puts(&sql, " (");
    for (size_t k = 0; k < schema->ncolumns; k++) {
        if (k)
            buf_puts(&sql, ", ");
        put_column(&sql, &schema->columns[k], 1);
    }
    char key_name[PG_NAME_MAX + 1];
    pg_key_name(key_name, schema->name);
    buf_puts(&sql, ", CONSTRAINT ");
    put_quoted(&sql, key_name);
    buf_puts(&sql, " PRIMARY KEY (");
    sqltext_put_keys(&sql, schema, put_ident);
    buf_puts(&sql, "))");
    return exec_buf(c->db, &sql, "create table", f);
}

static int table_statement(struct pg_conn *c, const char *prefix, const char *table,
                           const char *what, struct fault *f)
{
    if (stream_finish(c, f) != 0 || sqltext_name_check("postgresql", table, f) != 0)
        return -1;
    nodirect_forget(c, table);
    struct buf sql = BUF_INIT;
    buf_puts(&sql, prefix);
    put_ident(&sql, table);
    return exec_buf(c->db, &sql, what, f);
}

static int pg_table_drop(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, "DROP TABLE IF EXISTS ", table, "drop table", f);
}

static int pg_table_wipe(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, "TRUNCATE TABLE ", table, "wipe", f);
}

/* "ALTER TABLE t ALTER COLUMN c SET DEFAULT ...;", or DROP DEFAULT when the column's default
 * renders nothing. */
static void put_alter_default(struct buf *sql, const char *table, const struct column *col)
{
    buf_puts(sql, "ALTER TABLE ");
    put_ident(sql, table);
    buf_puts(sql, " ALTER COLUMN ");
    put_ident(sql, col->name);
    size_t before = sql->len;
    buf_puts(sql, " SET");
    size_t mark = sql->len;
    sqltext_put_default(sql, col, put_default_value);
    if (sql->len == mark) {
        sql->len = before;   /* nothing rendered: leave the default out */
        sql->data[sql->len] = '\0';
        buf_puts(sql, " DROP DEFAULT");
    }
    buf_puts(sql, ";\n");
}

/* Added columns: existing rows get NULL (nullable) or the constant default (NOT NULL, which
 * the planner only allows with one); new rows get the default. Dropped columns go; changed
 * defaults are set or dropped. */
static int pg_table_alter(void *conn, const struct table_schema *old_schema,
                          const struct table_schema *new_schema, const struct schema_diff *diff,
                          struct fault *f)
{
    struct pg_conn *c = conn;
    if (stream_finish(c, f) != 0 || schema_names_check(old_schema, f) != 0 ||
        schema_names_check(new_schema, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    for (size_t i = 0; i < diff->nadded; i++) {
        const struct column *col = &new_schema->columns[diff->added[i]];
        buf_puts(&sql, "ALTER TABLE ");
        put_ident(&sql, old_schema->name);
        buf_puts(&sql, " ADD COLUMN ");
        put_column(&sql, col, !col->nullable);
        buf_puts(&sql, ";\n");
        if (col->nullable && col->has_default)
            put_alter_default(&sql, old_schema->name, col);
    }
    sqltext_put_drop_columns(&sql, old_schema, diff, put_ident);
    for (size_t i = 0; i < diff->ndefault_changed; i++)
        put_alter_default(&sql, old_schema->name, &new_schema->columns[diff->default_changed[i]]);
    if (!sql.len)
        return 0;
    return exec_buf(c->db, &sql, "alter table", f);
}

/* ---- rows: the statements of a table schema ---- */

static void put_stage_name(struct buf *sql, unsigned serial)
{
    buf_printf(sql, "\"_somirror_stage_%u\"", serial);
}

/* Creates the temp table for s and fills the statements of st. */
static int stage_create(struct pg_conn *c, const struct table_schema *s, struct stage *st,
                        struct fault *f)
{
    unsigned serial = ++c->stage_serial;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "CREATE TEMP TABLE ");
    put_stage_name(&sql, serial);
    buf_puts(&sql, " (seq bigint GENERATED ALWAYS AS IDENTITY (CACHE 1024),"
                   " op pg_catalog.\"char\" NOT NULL DEFAULT 'U'");
    for (size_t k = 0; k < s->ncolumns; k++) {
        buf_printf(&sql, ", c%zu ", k);
        put_type(&sql, &s->columns[k].type);
    }
    buf_puts(&sql, ") ON COMMIT DELETE ROWS");
    if (exec_buf(c->db, &sql, "creating the staging table", f) != 0)
        return -1;

    buf_puts(&sql, "COPY ");
    put_stage_name(&sql, serial);
    buf_puts(&sql, " (op");
    for (size_t k = 0; k < s->ncolumns; k++)
        buf_printf(&sql, ", c%zu", k);
    buf_puts(&sql, ") FROM STDIN");
    st->copy_sql = buf_steal(&sql);

    buf_puts(&sql, "COPY ");
    put_stage_name(&sql, serial);
    buf_puts(&sql, " (");
    for (size_t k = 0; k < s->ncolumns; k++)
        buf_printf(&sql, "%sc%zu", k ? ", " : "", k);
    buf_puts(&sql, ") FROM STDIN");
    st->replay_sql = buf_steal(&sql);

    buf_puts(&sql, "COPY ");
    put_ident(&sql, s->name);
    buf_puts(&sql, " (");
    sqltext_put_columns(&sql, s, put_ident);
    buf_puts(&sql, ") FROM STDIN");
    st->direct_sql = buf_steal(&sql);

    /* the last change of each key wins */
    buf_puts(&sql, "WITH s AS (SELECT DISTINCT ON (");
    for (size_t p = 0; p < s->npk; p++)
        buf_printf(&sql, "%sc%zu", p ? ", " : "", s->pk[p]);
    buf_puts(&sql, ") * FROM ");
    put_stage_name(&sql, serial);
    buf_puts(&sql, " ORDER BY ");
    for (size_t p = 0; p < s->npk; p++)
        buf_printf(&sql, "c%zu, ", s->pk[p]);
    buf_puts(&sql, "seq DESC), d AS (DELETE FROM ");
    put_ident(&sql, s->name);
    buf_puts(&sql, " t USING s WHERE s.op = 'D'");
    for (size_t p = 0; p < s->npk; p++) {
        buf_puts(&sql, " AND t.");
        put_ident(&sql, s->columns[s->pk[p]].name);
        buf_printf(&sql, " = s.c%zu", s->pk[p]);
    }
    buf_puts(&sql, ") ");
    sqltext_put_insert(&sql, s, put_ident);
    buf_puts(&sql, " SELECT ");
    for (size_t k = 0; k < s->ncolumns; k++)
        buf_printf(&sql, "%sc%zu", k ? ", " : "", k);
    buf_puts(&sql, " FROM s WHERE s.op <> 'D'");
    sqltext_put_on_conflict(&sql, s, put_ident);
    buf_puts(&sql, "; TRUNCATE TABLE ");
    put_stage_name(&sql, serial);
    st->merge_sql = buf_steal(&sql);
    return 0;
}

static struct stage *stage_for(struct pg_conn *c, const struct table_schema *s, struct fault *f)
{
    for (size_t i = 0; i < c->nstages; i++)
        if (strcmp(c->stages[i].hash, s->hash) == 0 && ident_equal(c->stages[i].table, s->name))
            return &c->stages[i];
    if (schema_names_check(s, f) != 0)
        return NULL;
    if (s->npk == 0) {
        fault_set(f, FAULT_INTERNAL, "postgresql: table %s has no primary key", s->name);
        return NULL;
    }
    if (stream_finish(c, f) != 0)
        return NULL;
    if (c->nstages >= STAGE_CACHE_MAX) {
        /* start over: the old temp tables go with the statements that name them */
        struct buf sql = BUF_INIT;
        buf_puts(&sql, "DISCARD TEMP");
        if (exec_buf(c->db, &sql, "discarding staging tables", f) != 0)
            return NULL;
        stages_forget(c, 0);
    }
    struct stage st;
    memset(&st, 0, sizeof(st));
    if (stage_create(c, s, &st, f) != 0)
        return NULL;
    st.table = xstrdup(s->name);
    snprintf(st.hash, sizeof(st.hash), "%s", s->hash);
    c->stages = xgrow(c->stages, &c->stages_cap, c->nstages + 1, sizeof(*c->stages));
    c->stages[c->nstages] = st;
    return &c->stages[c->nstages++];
}

/* ---- rows: COPY text format ---- */

static void put_copy_text(struct buf *out, const char *s, size_t len)
{
    static const char *const copy_escapes[256] = {
        ['\\'] = "\\\\", ['\t'] = "\\t", ['\n'] = "\\n", ['\r'] = "\\r",
    };
    buf_put_replaced(out, s, len, copy_escapes);
}

/* A double in the "C" form, whatever the process's locale says. */
static void put_double(struct buf *out, double d, int digits)
{
    char text[40];
    snprintf(text, sizeof(text), "%.*g", digits, d);
    for (char *p = text; *p; p++)
        if (*p == ',')
            *p = '.';
    buf_puts(out, text);
}

static const char *pg_value_refused(const struct value *v)
{
    return v->cls == VAL_TEXT && v->len && memchr(v->text, '\0', v->len)
               ? "the value holds the character U+0000, which PostgreSQL cannot store"
               : NULL;
}

static void put_copy_value(struct buf *out, const struct column *col, const struct value *v)
{
    switch (v->cls) {
    case VAL_NULL:
        buf_append(out, "\\N", 2);
        return;
    case VAL_INT:
        if (col->type.kind == SQL_BIT)
            buf_putc(out, v->i ? 't' : 'f');
        else
            buf_put_int(out, v->i);
        return;
    case VAL_REAL:
        if (col->type.kind == SQL_REAL)
            put_double(out, (double)(float)v->d, 9);
        else
            put_double(out, v->d, 17);
        return;
    case VAL_DECIMAL:
        put_copy_text(out, v->text ? v->text : "0", v->text ? v->len : 1);
        return;
    case VAL_DATETIME: {
        char text[VALUE_COMPACT_MAX];
        size_t len = time_text(&col->type, v->text ? v->text : "", v->text ? v->len : 0, text);
        put_copy_text(out, text, len);
        return;
    }
    case VAL_TEXT:   /* never with U+0000: pg_value_refused */
        put_copy_text(out, v->text ? v->text : "", v->text ? v->len : 0);
        return;
    case VAL_BINARY:
        buf_append(out, "\\\\x", 3);
        buf_put_hex(out, v->text, v->len);
        return;
    }
}

static int copy_start(struct pg_conn *c, const char *copy_sql, const char *what,
                      struct fault *f)
{
    PGresult *res = PQexec(c->db, copy_sql);
    int rc = PQresultStatus(res) == PGRES_COPY_IN ? 0 : pg_fail(c->db, res, what, f);
    PQclear(res);
    return rc;
}

static int copy_put(struct pg_conn *c, const struct buf *data, const char *what, struct fault *f)
{
    for (size_t off = 0; off < data->len;) {
        size_t piece = data->len - off < COPY_PIECE ? data->len - off : COPY_PIECE;
        if (PQputCopyData(c->db, data->data + off, (int)piece) != 1)
            return connect_fail(c->db, what, f);
        off += piece;
    }
    return 0;
}

/* Why a COPY failed, as far as the server says. */
struct copy_failure {
    int unique_violation;              /* on a key already there */
    long line;                         /* the line of the data it failed at; 0: not said */
    char column[PG_NAME_MAX + 1];      /* the column it failed at; "": not said */
};

/* The line and column a COPY's error names: the COPY's line of its context ("COPY t, line 2,
 * column c: ..."), the context's last, after the lines of a trigger's statements when one
 * failed (whose text may read like a COPY's line too), and the error's column field where it
 * is of the COPY's table (a trigger's statement names the column of its own table). */
static void copy_failure_read(const PGresult *res, struct copy_failure *why)
{
    why->unique_violation = sqlstate_is(res, "23505");
    const char *context = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *copy = context ? strrchr(context, '\n') : NULL;
    copy = copy ? copy + 1 : context;
    if (!copy || strncmp(copy, "COPY ", 5) != 0)
        return;
    copy += 5;
    size_t table_len = strcspn(copy, ",");
    static const char line_at[] = ", line ", column_at[] = ", column ";
    char *end = NULL;
    if (strncmp(copy + table_len, line_at, strlen(line_at)) == 0)
        why->line = strtol(copy + table_len + strlen(line_at), &end, 10);
    const char *table = PQresultErrorField(res, PG_DIAG_TABLE_NAME);
    const char *column = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
    if (column && table && strlen(table) == table_len && strncmp(table, copy, table_len) == 0)
        snprintf(why->column, sizeof(why->column), "%s", column);
    else if (end && strncmp(end, column_at, strlen(column_at)) == 0)
        snprintf(why->column, sizeof(why->column), "%.*s",
                 (int)strcspn(end + strlen(column_at), ":"), end + strlen(column_at));
}

/* Ends a COPY (abort_reason: cancels it) and collects its outcome, and why it failed (why may
 * be NULL). */
static int copy_end(struct pg_conn *c, const char *abort_reason, const char *what,
                    struct copy_failure *why, struct fault *f)
{
    int rc = 0;
    if (PQputCopyEnd(c->db, abort_reason) != 1)
        rc = connect_fail(c->db, what, f);
    PGresult *res;
    while ((res = PQgetResult(c->db)) != NULL) {
        if (!result_ok(res) && rc == 0) {
            rc = pg_fail(c->db, res, what, f);
            if (why)
                copy_failure_read(res, why);
        }
        PQclear(res);
    }
    return rc;
}

/* A whole COPY FROM STDIN of data; one that could not all be sent is cancelled. */
static int copy_run(struct pg_conn *c, const char *copy_sql, const struct buf *data,
                    const char *what, struct fault *f)
{
    if (copy_start(c, copy_sql, what, f) != 0)
        return -1;
    if (copy_put(c, data, what, f) != 0) {
        copy_end(c, "the client failed to send", what, NULL, f);
        return -1;
    }
    return copy_end(c, NULL, what, NULL, f);
}

/* Ends the open direct COPY. When it met a key already in the table (a load sent again), its
 * rows are merged instead, and this table's loads are merged from now on. A failure names the
 * table, and the row and column the server names. */
static int stream_finish(struct pg_conn *c, struct fault *f)
{
    if (!c->stream_table)
        return 0;
    struct copy_failure why;
    memset(&why, 0, sizeof(why));
    int rc = copy_end(c, NULL, "copy", &why, f);
    if (rc == 0) {
        rc = exec_sql(c->db, "RELEASE SAVEPOINT somirror_load", "copy", f);
    } else if (why.unique_violation) {
        fault_clear(f);
        c->nodirect = xgrow(c->nodirect, &c->nodirect_cap, c->nnodirect + 1,
                            sizeof(*c->nodirect));
        c->nodirect[c->nnodirect++] = xstrdup(c->stream_table);
        rc = exec_sql(c->db, "ROLLBACK TO SAVEPOINT somirror_load; RELEASE SAVEPOINT somirror_load",
                      "copy", f);
        if (rc == 0)
            rc = copy_run(c, c->stream_replay_sql, &c->replay, "copy to the staging table", f);
        if (rc == 0)
            rc = exec_sql(c->db, c->stream_merge_sql, "merge", f);
        memset(&why, 0, sizeof(why));   /* the merge's failure names no row */
    }
    if (rc != 0)
        fault_at(f, c->stream_table, why.column[0] ? why.column : NULL,
                 why.line >= 1 && (size_t)why.line <= c->nstream_rownos
                     ? c->stream_rownos[why.line - 1] : 0);
    stream_forget(c);
    return rc;
}

/* Cancels an open direct COPY (the transaction is rolled back after). */
static void stream_abort(struct pg_conn *c)
{
    if (!c->stream_table)
        return;
    struct fault ignored;
    fault_clear(&ignored);
    if (c->db)
        copy_end(c, "rolled back", "copy", NULL, &ignored);
    stream_forget(c);
}

static void render_rows(struct pg_conn *c, const struct table_schema *s,
                        const struct row_change *rows, size_t n, int with_op)
{
    buf_reset(&c->data);
    for (size_t r = 0; r < n; r++) {
        const struct row_change *row = &rows[r];
        int remove = row->op == 'D';
        if (with_op)
            buf_puts(&c->data, remove ? "D\t" : "U\t");
        for (size_t k = 0; k < s->ncolumns; k++) {
            if (k)
                buf_putc(&c->data, '\t');
            const struct value *v = &row->values[k];
            if (remove) {
                /* a D row carries the key values in key order; the other columns are NULL */
                size_t p = s->columns[k].pk_position;
                if (!p) {
                    buf_append(&c->data, "\\N", 2);
                    continue;
                }
                v = &row->values[p - 1];
            }
            put_copy_value(&c->data, &s->columns[k], v);
        }
        buf_putc(&c->data, '\n');
    }
}

/* Inserts of a full load: streamed into the table by one COPY per call inside a savepoint. */
static int rows_direct(struct pg_conn *c, const struct table_schema *s, const struct stage *st,
                       const struct row_change *rows, size_t n, struct fault *f)
{
    render_rows(c, s, rows, n, 0);
    if (!c->stream_table) {
        if (exec_sql(c->db, "SAVEPOINT somirror_load", "copy", f) != 0 ||
            copy_start(c, st->direct_sql, "copy", f) != 0)
            return -1;
        c->stream_table = xstrdup(s->name);
        c->stream_replay_sql = xstrdup(st->replay_sql);
        c->stream_merge_sql = xstrdup(st->merge_sql);
    }
    buf_append(&c->replay, c->data.data, c->data.len);
    c->stream_rownos = xgrow(c->stream_rownos, &c->stream_rownos_cap, c->nstream_rownos + n,
                             sizeof(*c->stream_rownos));
    for (size_t r = 0; r < n; r++)
        c->stream_rownos[c->nstream_rownos++] = rows[r].rowno;
    return copy_put(c, &c->data, "copy", f);
}

static int rows_merge(struct pg_conn *c, const struct table_schema *s, const struct stage *st,
                      const struct row_change *rows, size_t n, struct fault *f)
{
    render_rows(c, s, rows, n, 1);
    if (copy_run(c, st->copy_sql, &c->data, "copy to the staging table", f) != 0)
        return -1;
    return exec_sql(c->db, st->merge_sql, "merge", f);
}

/* Whether rows go by the direct COPY: inserts only, into a table being loaded and not moved to
 * merges (see the top of this file). */
static int direct_for(const struct pg_conn *c, const struct table_schema *schema,
                      const struct row_change *rows, size_t n, int table_was_empty)
{
    if (!table_was_empty || nodirect_find(c, schema->name) != c->nnodirect)
        return 0;
    for (size_t r = 0; r < n; r++)
        if (rows[r].op != 'I')
            return 0;
    return 1;
}

/* Partial chunks only for the direct COPY, which stays open across chunks; a merge is a COPY
 * and a statement per chunk. */
static int pg_small_chunks_ok(void *conn, const struct table_schema *schema,
                              const struct row_change *rows, size_t n, int table_was_empty)
{
    return direct_for(conn, schema, rows, n, table_was_empty);
}

static int pg_rows_apply(void *conn, const struct table_schema *schema,
                         const struct row_change *rows, size_t n, int table_was_empty,
                         struct fault *f)
{
    struct pg_conn *c = conn;
    if (n == 0)
        return 0;
    int direct = direct_for(c, schema, rows, n, table_was_empty);
    if (c->stream_table && (!direct || !ident_equal(c->stream_table, schema->name)) &&
        stream_finish(c, f) != 0)
        return -1;
    struct stage *st = stage_for(c, schema, f);
    if (!st)
        return -1;
    if (direct)
        return rows_direct(c, schema, st, rows, n, f);
    return rows_merge(c, schema, st, rows, n, f);
}

static void pg_put_table(void *conn, struct buf *sql, const char *table)
{
    (void)conn;
    put_ident(sql, table);
}

enum { SCRIPT_CANCEL_WAIT_MS = 5000 };   /* for the end of a script asked to cancel */

/* Runs an operator's script (statements separated by ;) to its end, reading every result, or
 * until seconds have passed, when the server is asked to cancel it (*stopped set): a bound on
 * the whole script, where statement_timeout bounds each of its statements (PostgreSQL 13 and
 * later) and the script itself may change it. 0, or -1 with f. */
static int exec_script_bounded(PGconn *db, const char *sql, int seconds, int *stopped,
                               struct fault *f)
{
    *stopped = 0;
    if (!PQsendQuery(db, sql))
        return pg_fail(db, NULL, "table_sql", f);
    int64_t deadline = monotonic_ms() + (int64_t)seconds * 1000;
    int rc = 0;
    for (;;) {
        while (PQisBusy(db)) {
            int64_t left = deadline - monotonic_ms();
            if (left <= -SCRIPT_CANCEL_WAIT_MS) {   /* a server that answers nothing */
                fault_set(f, FAULT_STORAGE_ERROR, "postgresql: table_sql: no answer to its cancel");
                return -1;
            }
            if (left <= 0 && !*stopped) {
                PGcancel *cancel = PQgetCancel(db);
                char why[256];
                if (cancel)
                    PQcancel(cancel, why, sizeof(why));
                PQfreeCancel(cancel);
                *stopped = 1;
            }
            struct pollfd pfd = {.fd = PQsocket(db), .events = POLLIN};
            poll(&pfd, 1, *stopped ? 1000 : (int)(left < INT_MAX ? left : INT_MAX));
            if (!PQconsumeInput(db))
                return pg_fail(db, NULL, "table_sql", f);
        }
        PGresult *res = PQgetResult(db);
        if (!res)
            return rc;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* libpq hands this result again at every PQgetResult until the copy is fed or read,
             * which a script cannot do: the session, closed after the script, ends it. */
            PQclear(res);
            fault_set(f, FAULT_STORAGE_ERROR, "postgresql: table_sql: a COPY from or to the client "
                      "(STDIN, STDOUT) cannot run in a script");
            return -1;
        }
        if (rc == 0 && !result_ok(res))
            rc = pg_fail(db, res, "table_sql", f);
        PQclear(res);
    }
}

static int pg_exec_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct pg_conn *c = conn;
    struct fault f;
    fault_clear(&f);
    stream_abort(c);
    /* The script is bounded by hooks.timeout, and what it leaves behind (an open transaction,
     * a SET, a temporary table) goes with the session, closed after it: the next call opens a
     * clean one. A transaction left open is rolled back and is a failure. The server's own
     * statement_timeout stays as a backstop: a worker killed while the script runs (at
     * shutdown_timeout) leaves its statement to the server. */
    char limit[64];
    snprintf(limit, sizeof(limit), "SET statement_timeout = '%ds'", c->backend->script_timeout);
    int stopped = 0;
    int rc = conn_exec_first(c, limit, "table_sql", &f) == 0
                 ? exec_script_bounded(c->db, sql, c->backend->script_timeout, &stopped, &f) : -1;
    if (rc != 0 && stopped) {
        snprintf(err, errlen, "stopped after hooks.timeout (%d s)", c->backend->script_timeout);
    } else if (rc != 0) {
        snprintf(err, errlen, "%s", f.message);
    } else if (PQtransactionStatus(c->db) != PQTRANS_IDLE) {
        snprintf(err, errlen, "the script left a transaction open: rolled back");
        rc = -1;
    }
    conn_disconnect(c);
    return rc;
}

const struct store_driver store_driver_postgresql = {
    .name = "postgresql",
    .backend_check = pg_backend_check,
    .backend_open = pg_backend_open,
    .backend_close = pg_backend_close,
    .backend_idle = pg_backend_idle,
    .tenant_open = pg_tenant_open,
    .tenant_exists = pg_tenant_exists,
    .tenant_close = pg_tenant_close,
    .tenant_drop = pg_tenant_drop,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .meta_read = pg_meta_read,
    .meta_put = pg_meta_put,
    .meta_delete = pg_meta_delete,
    .table_create = pg_table_create,
    .table_drop = pg_table_drop,
    .table_alter = pg_table_alter,
    .table_wipe = pg_table_wipe,
    .rows_apply = pg_rows_apply,
    .small_chunks_ok = pg_small_chunks_ok,
    .exec_script = pg_exec_script,
    .put_table = pg_put_table,
    .stored_name = pg_name,
    .column_name_refused = pg_column_name_refused,
    .value_refused = pg_value_refused,
};
