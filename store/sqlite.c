/* store/sqlite: the SQLite driver of the mirror store (struct store_driver, see store.h). Owns
 * the tenant files <sqlite.directory>/<database name>.db (created mode 0640; WAL,
 * synchronous=NORMAL), the SQL dialect (types, defaults, quoting, upserts) and the prepared
 * statements of one worker's connections. Identifiers are validated and always double-quoted;
 * values are always bound.
 *
 * Column types. SQLite picks a column's affinity from its declared type name (INT -> INTEGER;
 * CHAR, CLOB, TEXT -> TEXT; BLOB -> none; REAL, FLOA, DOUB -> REAL; anything else -> NUMERIC),
 * and NUMERIC affinity turns text that looks like a number into a REAL rounded to 15 digits.
 * The declared types keep SQL Server's names where the affinity is right, and say what is
 * stored where it is not:
 *
 *   SQL Server type            SQLite declared type        stored as
 *   bigint int smallint        same name                   INTEGER
 *   tinyint bit                same name                   INTEGER (bit: 0 or 1)
 *   single-column integer key  INTEGER PRIMARY KEY         INTEGER (the rowid: one B-tree)
 *   decimal(p,s) numeric(p,s)  decimal_text(p,s) ...       TEXT, the digits exactly as sent
 *   money smallmoney           money_text smallmoney_text  TEXT, the digits exactly as sent
 *   float real                 same name                   REAL (the double)
 *   date time(n)               same name                   TEXT as sent
 *   datetime datetime2(n)      same name                   TEXT 'YYYY-MM-DD HH:MM:SS[.f...]'
 *   smalldatetime              same name                     (the T replaced by a space,
 *   datetimeoffset(n)          same name                      every digit and offset kept)
 *   char(n) varchar(n)         same name                   TEXT
 *   nchar(n) nvarchar(n)       same name                   TEXT
 *   varchar(max)               varchar(2147483647)         TEXT
 *   nvarchar(max)              nvarchar(1073741823)        TEXT
 *   text ntext                 same name                   TEXT
 *   xml                        xml_text                    TEXT as sent
 *   uniqueidentifier           same name, COLLATE NOCASE   TEXT as sent (compared in any case)
 *   binary(n) varbinary(n)     same name                   BLOB
 *   varbinary(max)             varbinary(2147483647)       BLOB
 *   image                      same name                   BLOB
 *   timestamp rowversion       binary(8)                   BLOB
 *
 * Defaults are rendered from the parsed default, never from the request text: numbers as SQL
 * signed numbers (as strings for the exact numeric types), strings quoted with ' doubled, 0x... as
 * X'...', NULL; getdate() and sysdatetime() become the local time and getutcdate(),
 * sysutcdatetime() and sysdatetimeoffset() UTC, in the column's form (put_time_default: a date,
 * a time, the type's fraction digits up to 3, '+00:00' for a datetimeoffset, and for text
 * columns 'YYYY-MM-DD HH:MM:SS.fff', with '+00:00' from sysdatetimeoffset()); newid() and
 * newsequentialid() make an uppercase version-4 GUID.
 *
 * Metadata: "<tenant>_mirroring"(tablename TEXT PRIMARY KEY COLLATE NOCASE, schema, schemahash,
 * lsn INTEGER, updated TEXT 'YYYY-MM-DD HH:MM:SS' UTC).
 *
 * Connections are opened through store/sqlite_walbuf's VFS, which writes a commit's WAL frames
 * in a few large writes instead of two per page; the files are the default VFS's. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/schema.h"
#include "store/sqlite_checkpoint.h"
#include "store/sqlite_walbuf.h"
#include "store/sqltext.h"

enum {
    DB_FILE_MODE = 0640,
    DIRECTORY_MODE = 0750,
    APPLY_CACHE_MAX = 64,      /* cached statement pairs per connection before starting over */
    TIME_TEXT_MAX = 48,        /* date/time text bound from a column's scratch slot; longer
                                  * ones (zeros past the type's digits) from the heap */
    BUSY_SECONDS_MAX = 3600,   /* busy_timeout follows tenants.lock_timeout, up to this */
    WAL_CHECKPOINT_PAGES = 1000,   /* SQLite's own auto-checkpoint size */
    WAL_HARD_PAGES = 8000          /* checkpointed by the commit that reaches it (~32 MB) */
};

static const char REBUILD_TABLE[] = "_somirror_rebuild";

/* SQLite VM steps between two looks at a table_sql script's deadline. */
#define SCRIPT_PROGRESS_STEPS 10000

struct sqlite_backend {
    char *directory;
    int busy_ms;
    int script_timeout;        /* seconds: a table_sql script (hooks.timeout) */
    struct checkpointer *checkpointer;
};

/* The rows_apply statements of one table schema. */
struct apply_stmts {
    char *table;
    char hash[SM_HASH_HEX + 1];
    sqlite3_stmt *upsert;
    sqlite3_stmt *remove;
};

struct sqlite_conn {
    const struct sqlite_backend *backend;
    char *path;
    char *meta_table;                  /* "<tenant>_mirroring", unquoted */
    sqlite3 *db;
    dev_t dev;                         /* the file this connection opened (reset detection) */
    ino_t ino;
    sqlite3_stmt *meta_select;
    sqlite3_stmt *meta_upsert;
    sqlite3_stmt *meta_remove;
    struct apply_stmts *applies;
    size_t napplies, applies_cap;
    char (*time_text)[TIME_TEXT_MAX];  /* per-column scratch for date/time binding */
    size_t time_text_cap;
};

/* ---- errors and SQL text ---- */

/* The system's reason behind a failed open or I/O of db, as " (Too many open files)"; "" when
 * the error was not one (sqlite3_system_errno keeps the last system error, of any age). */
static const char *system_reason(sqlite3 *db, char *out, size_t outlen)
{
    int code = db ? sqlite3_errcode(db) & 0xff : 0;
    int sys = code == SQLITE_CANTOPEN || code == SQLITE_IOERR || code == SQLITE_FULL
                  ? sqlite3_system_errno(db) : 0;
    if (sys)
        snprintf(out, outlen, " (%s)", strerror(sys));
    else
        out[0] = '\0';
    return out;
}

static int db_fail(sqlite3 *db, struct fault *f, const char *what)
{
    char reason[128];
    fault_set(f, FAULT_STORAGE_ERROR, "sqlite: %s: %s%s", what,
              db ? sqlite3_errmsg(db) : "out of memory", system_reason(db, reason, sizeof(reason)));
    return -1;
}

static void put_ident(struct buf *sql, const char *name)
{
    sqltext_put_quoted(sql, name, '"', '"');
}

static int schema_names_check(const struct table_schema *s, struct fault *f)
{
    return sqltext_schema_names_check("sqlite", s, f);
}

static int exec_sql(struct sqlite_conn *c, const char *sql, const char *what, struct fault *f)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    char reason[128];
    fault_set(f, FAULT_STORAGE_ERROR, "sqlite: %s: %s%s", what, msg ? msg : "failed",
              system_reason(c->db, reason, sizeof(reason)));
    sqlite3_free(msg);
    return -1;
}

static int exec_buf(struct sqlite_conn *c, struct buf *sql, const char *what, struct fault *f)
{
    int rc = exec_sql(c, sql->data, what, f);
    buf_free(sql);
    return rc;
}

/* Steps a statement that returns no rows and resets it. */
static int step_done(struct sqlite_conn *c, sqlite3_stmt *stmt, const char *what,
                     struct fault *f)
{
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        db_fail(c->db, f, what);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Date/time text as stored, every digit kept, into out (len + 1 bytes): a 'T' between date and
 * time becomes a space. */
static void datetime_text(const char *in, size_t len, char *out)
{
    memcpy(out, in, len);
    out[len] = '\0';
    sqltext_datetime_space(out, len);
}

/* ---- column declarations ---- */

static int is_exact_numeric(enum sql_kind kind)
{
    return kind == SQL_DECIMAL || kind == SQL_NUMERIC || kind == SQL_MONEY ||
           kind == SQL_SMALLMONEY;
}

static int is_datetime(enum sql_kind kind)
{
    return kind == SQL_DATETIME || kind == SQL_DATETIME2 || kind == SQL_SMALLDATETIME ||
           kind == SQL_DATETIMEOFFSET;
}

static int is_integer(enum sql_kind kind)
{
    return kind == SQL_BIGINT || kind == SQL_INT || kind == SQL_SMALLINT || kind == SQL_TINYINT;
}

/* A single integer key column becomes the rowid (INTEGER PRIMARY KEY). */
static int has_rowid_key(const struct table_schema *s)
{
    return s->npk == 1 && is_integer(s->columns[s->pk[0]].type.kind);
}

static void put_sized(struct buf *sql, const char *name, int length, long max_length)
{
    buf_printf(sql, "%s(%ld)", name, length == SQL_LEN_MAX ? max_length : (long)length);
}

static void put_type(struct buf *sql, const struct sql_type *t)
{
    switch (t->kind) {
    case SQL_BIGINT: buf_puts(sql, "bigint"); break;
    case SQL_INT: buf_puts(sql, "int"); break;
    case SQL_SMALLINT: buf_puts(sql, "smallint"); break;
    case SQL_TINYINT: buf_puts(sql, "tinyint"); break;
    case SQL_BIT: buf_puts(sql, "bit"); break;
    case SQL_DECIMAL: buf_printf(sql, "decimal_text(%d,%d)", t->precision, t->scale); break;
    case SQL_NUMERIC: buf_printf(sql, "numeric_text(%d,%d)", t->precision, t->scale); break;
    case SQL_MONEY: buf_puts(sql, "money_text"); break;
    case SQL_SMALLMONEY: buf_puts(sql, "smallmoney_text"); break;
    case SQL_FLOAT: buf_puts(sql, "float"); break;
    case SQL_REAL: buf_puts(sql, "real"); break;
    case SQL_DATE: buf_puts(sql, "date"); break;
    case SQL_TIME: buf_printf(sql, "time(%d)", t->scale); break;
    case SQL_DATETIME: buf_puts(sql, "datetime"); break;
    case SQL_DATETIME2: buf_printf(sql, "datetime2(%d)", t->scale); break;
    case SQL_SMALLDATETIME: buf_puts(sql, "smalldatetime"); break;
    case SQL_DATETIMEOFFSET: buf_printf(sql, "datetimeoffset(%d)", t->scale); break;
    case SQL_CHAR: put_sized(sql, "char", t->length, 8000); break;
    case SQL_VARCHAR: put_sized(sql, "varchar", t->length, 2147483647L); break;
    case SQL_NCHAR: put_sized(sql, "nchar", t->length, 4000); break;
    case SQL_NVARCHAR: put_sized(sql, "nvarchar", t->length, 1073741823L); break;
    case SQL_TEXT: buf_puts(sql, "text"); break;
    case SQL_NTEXT: buf_puts(sql, "ntext"); break;
    case SQL_BINARY: put_sized(sql, "binary", t->length, 8000); break;
    case SQL_VARBINARY: put_sized(sql, "varbinary", t->length, 2147483647L); break;
    case SQL_IMAGE: buf_puts(sql, "image"); break;
    case SQL_UNIQUEIDENTIFIER: buf_puts(sql, "uniqueidentifier"); break;
    case SQL_XML: buf_puts(sql, "xml_text"); break;
    case SQL_TIMESTAMP: buf_puts(sql, "binary(8)"); break;
    }
}

/* newid() and newsequentialid(): a version 4 GUID, uppercase as SQL Server writes them. */
#define NEW_GUID_SQL                                                                             \
    "(hex(randomblob(4))||'-'||hex(randomblob(2))||'-4'||substr(hex(randomblob(2)),2)"         \
    "||'-'||substr('89AB',1+(abs(random())%4),1)||substr(hex(randomblob(2)),2)"               \
    "||'-'||hex(randomblob(6)))"

/* The current time for a getdate()-family default, in the column's stored form (README "SQLite
 * storage forms"): a date alone, a time alone, smalldatetime's seconds 00, the type's fraction
 * digits (SQLite's clock has milliseconds: at most 3 of them), and the offset of a
 * datetimeoffset (dropped from sysdatetimeoffset() into a datetime2, as SQL Server's conversion
 * does). A text column gets the datetime2 form, with the offset of sysdatetimeoffset(). */
static void put_time_default(struct buf *sql, enum default_function fn, const struct sql_type *t)
{
    int utc = fn == FN_GETUTCDATE || fn == FN_SYSUTCDATETIME || fn == FN_SYSDATETIMEOFFSET;
    const char *format = "%Y-%m-%d %H:%M:%f";   /* 23 characters, the last 3 milliseconds */
    size_t length = 23;
    int digits = 3, offset = 0;
    switch (t->kind) {
    case SQL_DATE:
        format = "%Y-%m-%d";
        digits = -1;
        break;
    case SQL_TIME:
        format = "%H:%M:%f";
        length = 12;
        digits = t->scale;
        break;
    case SQL_SMALLDATETIME:
        format = "%Y-%m-%d %H:%M:00";
        digits = -1;
        break;
    case SQL_DATETIME:
        break;
    case SQL_DATETIME2:
        digits = t->scale;
        break;
    case SQL_DATETIMEOFFSET:
        digits = t->scale;
        offset = 1;
        break;
    default:
        offset = fn == FN_SYSDATETIMEOFFSET;
        break;
    }
    int cut = digits >= 0 && digits < 3;
    buf_printf(sql, "(%sstrftime('%s','now'%s)", cut ? "substr(" : "", format, utc ? "" : ",'localtime'");
    if (cut)   /* the fraction's first digits, or no fraction and no point */
        buf_printf(sql, ",1,%zu)", length - 3 + (size_t)digits - (digits == 0));
    buf_puts(sql, offset ? "||'+00:00')" : ")");
}

/* " DEFAULT <value>" for a checked default (sqltext_default_fn); never refuses one. */
static int put_default_value(struct buf *sql, const struct column *col)
{
    const struct default_expr *d = &col->def;
    switch (d->kind) {
    case DEF_NUMBER:
        if (is_exact_numeric(col->type.kind)) {
            const char *digits = d->text[0] == '+' ? d->text + 1 : d->text;
            buf_puts(sql, " DEFAULT ");
            sqltext_put_string(sql, digits, strlen(digits));
        } else {
            buf_printf(sql, " DEFAULT %s", d->text);
        }
        return 0;
    case DEF_STRING:
        buf_puts(sql, " DEFAULT ");
        if (is_datetime(col->type.kind)) {
            char *text = xmalloc(d->len + 1);
            datetime_text(d->text, d->len, text);
            sqltext_put_string(sql, text, d->len);
            free(text);
        } else {
            sqltext_put_string(sql, d->text, d->len);
        }
        return 0;
    case DEF_BINARY:
        buf_printf(sql, " DEFAULT X'%s%.*s'", d->len % 2 ? "0" : "", (int)d->len, d->text);
        return 0;
    case DEF_FUNCTION:
        buf_puts(sql, " DEFAULT ");
        if (d->function == FN_NEWID || d->function == FN_NEWSEQUENTIALID)
            buf_puts(sql, NEW_GUID_SQL);
        else
            put_time_default(sql, d->function, &col->type);
        return 0;
    case DEF_NULL:
        break;
    }
    return -1;
}

static void put_column(struct buf *sql, const struct column *col, int rowid_key)
{
    put_ident(sql, col->name);
    if (rowid_key) {
        buf_puts(sql, " INTEGER NOT NULL PRIMARY KEY");
    } else {
        buf_putc(sql, ' ');
        put_type(sql, &col->type);
        /* One GUID in any case, as SQL Server compares them: a key sent in lowercase finds
         * the row sent in uppercase (the text is kept as first sent). */
        if (col->type.kind == SQL_UNIQUEIDENTIFIER)
            buf_puts(sql, " COLLATE NOCASE");
        if (!col->nullable)
            buf_puts(sql, " NOT NULL");
    }
    sqltext_put_default(sql, col, put_default_value);
}

static void put_create(struct buf *sql, const char *name, const struct table_schema *s)
{
    int rowid_key = has_rowid_key(s);
    buf_puts(sql, "CREATE TABLE ");
    put_ident(sql, name);
    buf_puts(sql, " (");
    for (size_t k = 0; k < s->ncolumns; k++) {
        if (k)
            buf_puts(sql, ", ");
        put_column(sql, &s->columns[k], rowid_key && k == s->pk[0]);
    }
    if (!rowid_key) {
        buf_puts(sql, ", PRIMARY KEY (");
        sqltext_put_keys(sql, s, put_ident);
        buf_putc(sql, ')');
    }
    buf_puts(sql, ")");
}

/* ---- connections ---- */

static void applies_clear(struct sqlite_conn *c)
{
    for (size_t i = 0; i < c->napplies; i++) {
        sqlite3_finalize(c->applies[i].upsert);
        sqlite3_finalize(c->applies[i].remove);
        free(c->applies[i].table);
    }
    c->napplies = 0;
}

static void conn_disconnect(struct sqlite_conn *c)
{
    applies_clear(c);
    sqlite3_finalize(c->meta_select);
    sqlite3_finalize(c->meta_upsert);
    sqlite3_finalize(c->meta_remove);
    c->meta_select = c->meta_upsert = c->meta_remove = NULL;
    sqlite3_close_v2(c->db);
    c->db = NULL;
}

static int prepare(struct sqlite_conn *c, struct buf *sql, sqlite3_stmt **stmt, struct fault *f)
{
    int rc = sqlite3_prepare_v3(c->db, sql->data, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
    buf_free(sql);
    return rc == SQLITE_OK ? 0 : db_fail(c->db, f, "prepare");
}

static int meta_prepare(struct sqlite_conn *c, struct fault *f)
{
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "CREATE TABLE IF NOT EXISTS ");
    put_ident(&sql, c->meta_table);
    buf_puts(&sql, " (tablename TEXT NOT NULL PRIMARY KEY COLLATE NOCASE, schema TEXT NOT NULL,"
                   " schemahash TEXT NOT NULL, lsn INTEGER NOT NULL, updated TEXT NOT NULL)");
    if (exec_buf(c, &sql, "creating the metadata table", f) != 0)
        return -1;
    buf_puts(&sql, "SELECT tablename, schema, schemahash, lsn,"
                   " CAST(strftime('%s', updated) AS INTEGER) FROM ");
    put_ident(&sql, c->meta_table);
    buf_puts(&sql, " ORDER BY tablename");
    if (prepare(c, &sql, &c->meta_select, f) != 0)
        return -1;
    buf_puts(&sql, "INSERT INTO ");
    put_ident(&sql, c->meta_table);
    buf_puts(&sql, " (tablename, schema, schemahash, lsn, updated) VALUES (?1, ?2, ?3, ?4,"
                   " strftime('%Y-%m-%d %H:%M:%S', 'now')) ON CONFLICT (tablename) DO UPDATE"
                   " SET schema = excluded.schema, schemahash = excluded.schemahash,"
                   " lsn = excluded.lsn, updated = excluded.updated");
    if (prepare(c, &sql, &c->meta_upsert, f) != 0)
        return -1;
    buf_puts(&sql, "DELETE FROM ");
    put_ident(&sql, c->meta_table);
    buf_puts(&sql, " WHERE tablename = ?1");
    return prepare(c, &sql, &c->meta_remove, f);
}

/* The WAL checkpoint. SQLite's auto-checkpoint runs inside the commit that takes the WAL over
 * 1000 pages, on the committing call's clock. This hook replaces it: past that size the file is
 * handed to the worker's checkpointer thread (store/sqlite_checkpoint), and only past
 * WAL_HARD_PAGES (the checkpointer is behind, or a reader holds old pages), or when that thread
 * cannot start or has a full queue, does the commit checkpoint itself: the WAL stays bounded. */
static int wal_noted(void *arg, sqlite3 *db, const char *name, int pages)
{
    const struct sqlite_conn *c = arg;
    char failure[256] = "";
    int itself = pages >= WAL_HARD_PAGES ||
                 (pages >= WAL_CHECKPOINT_PAGES &&
                  checkpointer_request(c->backend->checkpointer, c->path, c->dev, c->ino, failure,
                                       sizeof(failure)) != 0);
    if (failure[0])
        log_warn("%s", failure);
    if (itself) {
        int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("checkpoint of %s: %s (its write-ahead log holds %d pages)", c->path,
                     sqlite3_errmsg(db), pages);
    }
    return SQLITE_OK;
}

/* Creates the file (mode 0640) when missing, opens it and provisions the metadata table. */
static int conn_connect(struct sqlite_conn *c, struct fault *f)
{
    int fd = open(c->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, DB_FILE_MODE);
    if (fd >= 0) {
        int rc = fchmod(fd, DB_FILE_MODE);
        close(fd);
        if (rc != 0) {
            fault_set(f, FAULT_STORAGE_ERROR, "sqlite: chmod %s: %s", c->path, strerror(errno));
            return -1;
        }
    } else if (errno != EEXIST) {
        fault_set(f, FAULT_STORAGE_ERROR, "sqlite: create %s: %s", c->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(c->path, &st) != 0) {
        fault_set(f, FAULT_STORAGE_ERROR, "sqlite: stat %s: %s", c->path, strerror(errno));
        return -1;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    /* NOMUTEX: a connection is only ever used by the worker's own thread (the helper thread
     * that parses a large RowData body never touches the store), so SQLite need not lock it
     * around every call. Through the gathering VFS: a commit's WAL frames in a few writes
     * (store/sqlite_walbuf). */
    if (sqlite3_open_v2(c->path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX,
                        sqlite_walbuf_vfs()) != SQLITE_OK) {
        char reason[128];
        fault_set(f, FAULT_STORAGE_ERROR, "sqlite: open %s: %s%s", c->path,
                  c->db ? sqlite3_errmsg(c->db) : "out of memory",
                  system_reason(c->db, reason, sizeof(reason)));
        conn_disconnect(c);
        return -1;
    }
    sqlite3_busy_timeout(c->db, c->backend->busy_ms);
    sqlite3_wal_hook(c->db, wal_noted, c);
    /* The -wal and -shm files stay when the last connection closes (an idle mirror): a reader
     * who may read the mirror but not write its directory (the service's group, a report job)
     * can then open it read-only at any time, not only while a worker has it open. */
    int persist_wal = 1;
    sqlite3_file_control(c->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist_wal);
    if (exec_sql(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", "open", f) != 0 ||
        meta_prepare(c, f) != 0) {
        conn_disconnect(c);
        return -1;
    }
    return 0;
}

/* Reconnects when the file was replaced or removed since (a reset by another worker). */
static int conn_current(struct sqlite_conn *c, struct fault *f)
{
    if (c->db && sqlite_file_is(c->path, c->dev, c->ino))
        return 0;
    conn_disconnect(c);
    return conn_connect(c, f);
}

/* The mirror directory: a directory, or missing with a directory to be made in (create).
 * 0, or -1 with err. */
static int mirror_directory(const char *dir, int create, char *err, size_t errlen)
{
    if (!dir || !*dir) {
        snprintf(err, errlen, "store.sqlite.directory is not set");
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        int missing = errno;
        char *copy = xstrdup(dir);
        int parent_ok = missing == ENOENT && stat(dirname(copy), &st) == 0 && S_ISDIR(st.st_mode);
        free(copy);
        if (!parent_ok) {
            snprintf(err, errlen, "store.sqlite.directory %s: %s", dir,
                     missing == ENOENT ? "its parent directory does not exist" : strerror(missing));
            return -1;
        }
        if (!create)
            return 0;
        if (mkdir(dir, DIRECTORY_MODE) != 0) {
            snprintf(err, errlen, "store.sqlite.directory %s: %s", dir, strerror(errno));
            return -1;
        }
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "store.sqlite.directory %s is not a directory", dir);
        return -1;
    }
    return 0;
}

/* The user this process runs as, for messages. */
static void current_user(char *out, size_t outlen)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw)
        snprintf(out, outlen, "%s", pw->pw_name);
    else
        snprintf(out, outlen, "uid %ld", (long)geteuid());
}

/* Run as the user the workers run as (somirrord -t does it in a child that switches to it):
 * the mirror directory must be one that user can make files in. One it cannot write in, or
 * make, is a warning (1), not an error: the init script and the systemd unit make it and give
 * it to that user, as root, just before the start (after their own -t). */
static int sqlite_backend_check(const struct config *cfg, char *err, size_t errlen)
{
    const char *dir = cfg->sqlite.directory;
    if (mirror_directory(dir, 0, err, errlen) < 0) {
        cfg_locate(cfg, "store.sqlite.directory", err, errlen);
        return -1;
    }
    char user[64];
    current_user(user, sizeof(user));
    int exists = access(dir, F_OK) == 0;
    char *copy = xstrdup(dir);
    int writable = access(exists ? dir : dirname(copy), W_OK | X_OK) == 0;
    free(copy);
    if (writable)
        return 0;
    snprintf(err, errlen, "store.sqlite.directory %s: %s cannot %s (the workers run as that user): the "
             "start fails unless %s first", dir, user, exists ? "make files there" : "make it",
             exists ? "it is given to that user" : "it is made for that user");
    cfg_locate(cfg, "store.sqlite.directory", err, errlen);
    return 1;
}

static void *sqlite_backend_open(const struct config *cfg, char *err, size_t errlen)
{
    const char *dir = cfg->sqlite.directory;
    if (mirror_directory(dir, 1, err, errlen) < 0)
        return NULL;
    /* Nothing reads SQLite's memory statistics, and keeping them takes a global lock around
     * every allocation. Only possible before SQLite is initialised (else left as it is). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    struct sqlite_backend *backend = xcalloc(1, sizeof(*backend));
    backend->directory = xstrdup(dir);
    int seconds = cfg->lock_timeout > 0 ? cfg->lock_timeout : 60;
    backend->busy_ms = seconds < BUSY_SECONDS_MAX ? seconds * 1000 : BUSY_SECONDS_MAX * 1000;
    backend->script_timeout = cfg->hooks.timeout > 0 ? cfg->hooks.timeout : 60;
    backend->checkpointer = checkpointer_new();
    return backend;
}

static void sqlite_backend_close(void *backend_ptr)
{
    struct sqlite_backend *backend = backend_ptr;
    if (!backend)
        return;
    checkpointer_free(backend->checkpointer);
    free(backend->directory);
    free(backend);
}

static char *db_path(const struct sqlite_backend *backend, const char *dbname, const char *suffix,
                     struct fault *f)
{
    if (!*dbname || dbname[0] == '.' || strchr(dbname, '/')) {
        fault_set(f, FAULT_INTERNAL, "sqlite: invalid database name");
        return NULL;
    }
    struct buf path = BUF_INIT;
    buf_printf(&path, "%s/%s.db%s", backend->directory, dbname, suffix);
    return buf_steal(&path);
}

static int sqlite_tenant_open(void *backend_ptr, const char *tenant, const char *dbname,
                              void **conn, struct fault *f)
{
    struct sqlite_backend *backend = backend_ptr;
    char *path = db_path(backend, dbname, "", f);
    if (!path)
        return -1;
    struct sqlite_conn *c = xcalloc(1, sizeof(*c));
    c->backend = backend;
    c->path = path;
    c->meta_table = sqltext_meta_table("sqlite", tenant, f);
    if (!c->meta_table || conn_connect(c, f) != 0) {
        free(c->meta_table);
        free(c->path);
        free(c);
        return -1;
    }
    *conn = c;
    return 0;
}

static int sqlite_tenant_exists(void *backend, const char *tenant, const char *dbname, int *exists,
                                struct fault *f)
{
    (void)tenant;
    char *path = db_path(backend, dbname, "", f);
    if (!path)
        return -1;
    struct stat st;
    int rc = 0;
    if (stat(path, &st) == 0) {
        *exists = 1;
    } else if (errno == ENOENT) {
        *exists = 0;
    } else {
        fault_set(f, FAULT_STORAGE_ERROR, "sqlite: %s: %s", path, strerror(errno));
        rc = -1;
    }
    free(path);
    return rc;
}

static void sqlite_tenant_close(void *conn)
{
    struct sqlite_conn *c = conn;
    if (!c)
        return;
    /* Leave the file whole: fold the WAL into it now rather than rely on being the last
     * connection at close (workers stopping together each see the other and skip it), so a
     * stopped service's mirrors can be copied as single files. */
    checkpointer_forget(c->backend->checkpointer, c->path);
    if (c->db) {
        /* Never wait for a writer here: closing the least recently used tenant happens on
         * another tenant's call, and a busy checkpoint is then left to the next close. */
        sqlite3_busy_timeout(c->db, 0);
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    conn_disconnect(c);
    free(c->applies);
    free(c->time_text);
    free(c->meta_table);
    free(c->path);
    free(c);
}

static int sqlite_tenant_drop(void *backend_ptr, const char *tenant, const char *dbname,
                              struct fault *f)
{
    (void)tenant;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char *path = db_path(backend_ptr, dbname, suffixes[i], f);
        if (!path)
            return -1;
        int rc = unlink(path);
        if (rc != 0 && errno != ENOENT) {
            fault_set(f, FAULT_STORAGE_ERROR, "sqlite: unlink %s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        free(path);
    }
    return 0;
}

/* ---- transactions ---- */

static int sqlite_begin(void *conn, struct fault *f)
{
    struct sqlite_conn *c = conn;
    if (conn_current(c, f) != 0)
        return -1;
    return exec_sql(c, "BEGIN IMMEDIATE", "begin", f);
}

static int sqlite_commit(void *conn, struct fault *f)
{
    return exec_sql(conn, "COMMIT", "commit", f);
}

static void sqlite_rollback(void *conn)
{
    struct sqlite_conn *c = conn;
    if (c->db && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- metadata ---- */

static char *column_text(sqlite3_stmt *stmt, int col, struct arena *arena)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    return arena_strndup(arena, text ? (const char *)text : "",
                         (size_t)sqlite3_column_bytes(stmt, col));
}

static int sqlite_meta_read(void *conn, struct arena *arena, struct table_meta **out, size_t *n,
                            struct fault *f)
{
    struct sqlite_conn *c = conn;
    struct table_meta *rows = NULL;
    size_t nrows = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(c->meta_select)) == SQLITE_ROW) {
        rows = xgrow(rows, &cap, nrows + 1, sizeof(*rows));
        struct table_meta *m = &rows[nrows++];
        m->name = column_text(c->meta_select, 0, arena);
        m->canonical = column_text(c->meta_select, 1, arena);
        const unsigned char *hash = sqlite3_column_text(c->meta_select, 2);
        snprintf(m->hash, sizeof(m->hash), "%s", hash ? (const char *)hash : "");
        m->lsn = sqlite3_column_int64(c->meta_select, 3);
        m->updated = sqlite3_column_int64(c->meta_select, 4);
    }
    if (rc != SQLITE_DONE)
        db_fail(c->db, f, "reading the metadata");
    sqlite3_reset(c->meta_select);
    *out = arena_alloc(arena, (nrows + 1) * sizeof(**out));
    if (nrows)
        memcpy(*out, rows, nrows * sizeof(*rows));
    *n = nrows;
    free(rows);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sqlite_meta_put(void *conn, const char *table, const char *canonical,
                           const char *hash, int64_t lsn, struct fault *f)
{
    struct sqlite_conn *c = conn;
    sqlite3_bind_text(c->meta_upsert, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->meta_upsert, 2, canonical, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->meta_upsert, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->meta_upsert, 4, lsn);
    int rc = step_done(c, c->meta_upsert, "writing the metadata", f);
    sqlite3_clear_bindings(c->meta_upsert);
    return rc;
}

static int sqlite_meta_delete(void *conn, const char *table, struct fault *f)
{
    struct sqlite_conn *c = conn;
    sqlite3_bind_text(c->meta_remove, 1, table, -1, SQLITE_STATIC);
    int rc = step_done(c, c->meta_remove, "removing the metadata", f);
    sqlite3_clear_bindings(c->meta_remove);
    return rc;
}

/* ---- tables ---- */

static int sqlite_table_create(void *conn, const struct table_schema *schema, struct fault *f)
{
    if (schema_names_check(schema, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    put_create(&sql, schema->name, schema);
    return exec_buf(conn, &sql, "create table", f);
}

/* One statement on a named table: "<prefix> "table"<suffix>". */
static int table_statement(void *conn, const char *prefix, const char *table, const char *what,
                           struct fault *f)
{
    if (sqltext_name_check("sqlite", table, f) != 0)
        return -1;
    struct buf sql = BUF_INIT;
    buf_puts(&sql, prefix);
    put_ident(&sql, table);
    return exec_buf(conn, &sql, what, f);
}

static int sqlite_table_drop(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, "DROP TABLE IF EXISTS ", table, "drop table", f);
}

static int sqlite_table_wipe(void *conn, const char *table, struct fault *f)
{
    return table_statement(conn, "DELETE FROM ", table, "wipe", f);
}

/* SQLite's ADD COLUMN gives existing rows the column's default, and only takes constant
 * defaults; a default change cannot be made in place; DROP COLUMN refuses a column an index
 * uses (an operator's, from hooks.table_sql, which runs again after an Altered table). Those
 * cases rebuild the table. */
static int alter_needs_rebuild(const struct table_schema *new_schema,
                               const struct schema_diff *diff)
{
    if (diff->ndefault_changed || diff->ndropped)
        return 1;
    for (size_t i = 0; i < diff->nadded; i++) {
        const struct column *col = &new_schema->columns[diff->added[i]];
        if (col->has_default && col->def.kind != DEF_NULL &&
            (col->nullable || col->def.kind == DEF_FUNCTION))
            return 1;
    }
    return 0;
}

static const struct column *column_named(const struct table_schema *s, const char *name)
{
    for (size_t k = 0; k < s->ncolumns; k++)
        if (ident_equal(s->columns[k].name, name))
            return &s->columns[k];
    return NULL;
}

/* New table aside, rows copied (added nullable columns NULL, added NOT NULL ones their
 * default), old table dropped, new one renamed: all inside the caller's transaction. */
static int table_rebuild(struct sqlite_conn *c, const struct table_schema *old_schema,
                         const struct table_schema *new_schema, struct fault *f)
{
    struct buf sql = BUF_INIT, into = BUF_INIT, from = BUF_INIT;
    put_create(&sql, REBUILD_TABLE, new_schema);
    for (size_t k = 0; k < new_schema->ncolumns; k++) {
        const struct column *col = &new_schema->columns[k];
        int kept = column_named(old_schema, col->name) != NULL;
        if (!kept && !col->nullable)
            continue;
        if (into.len) {
            buf_puts(&into, ", ");
            buf_puts(&from, ", ");
        }
        put_ident(&into, col->name);
        if (kept)
            put_ident(&from, col->name);
        else
            buf_puts(&from, "NULL");
    }
    /* OR REPLACE, in insertion order: a table made before GUID keys compared in any case may
     * hold one key in two cases (two rows the source has as one); the later row is kept. */
    buf_printf(&sql, ";\nINSERT OR REPLACE INTO \"%s\" (%s) SELECT %s FROM ", REBUILD_TABLE, into.data,
               from.data);
    put_ident(&sql, old_schema->name);
    buf_puts(&sql, " ORDER BY rowid;\nDROP TABLE ");
    put_ident(&sql, old_schema->name);
    buf_printf(&sql, ";\nALTER TABLE \"%s\" RENAME TO ", REBUILD_TABLE);
    put_ident(&sql, old_schema->name);
    buf_free(&into);
    buf_free(&from);
    /* The rename does not check the views and triggers that name the table (a reader's view
     * of it): they lack their table only between the DROP and the RENAME, which gives it
     * back. Checked, as since SQLite 3.26, every such change failed for as long as one stood. */
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, 1, (int *)NULL);
    int rc = exec_buf(c, &sql, "rebuild table", f);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, 0, (int *)NULL);
    return rc;
}

static int sqlite_table_alter(void *conn, const struct table_schema *old_schema,
                              const struct table_schema *new_schema,
                              const struct schema_diff *diff, struct fault *f)
{
    struct sqlite_conn *c = conn;
    if (schema_names_check(old_schema, f) != 0 || schema_names_check(new_schema, f) != 0)
        return -1;
    if (alter_needs_rebuild(new_schema, diff))
        return table_rebuild(c, old_schema, new_schema, f);
    struct buf sql = BUF_INIT;
    for (size_t i = 0; i < diff->nadded; i++) {
        buf_puts(&sql, "ALTER TABLE ");
        put_ident(&sql, old_schema->name);
        buf_puts(&sql, " ADD COLUMN ");
        put_column(&sql, &new_schema->columns[diff->added[i]], 0);
        buf_puts(&sql, ";\n");
    }
    if (!sql.len)
        return 0;
    return exec_buf(c, &sql, "alter table", f);
}

/* ---- rows ---- */

static int apply_prepare(struct sqlite_conn *c, const struct table_schema *s,
                         struct apply_stmts *a, struct fault *f)
{
    struct buf sql = BUF_INIT;
    sqltext_put_insert(&sql, s, put_ident);
    buf_puts(&sql, " VALUES (");
    for (size_t k = 0; k < s->ncolumns; k++)
        buf_puts(&sql, k ? ", ?" : "?");
    buf_putc(&sql, ')');
    sqltext_put_on_conflict(&sql, s, put_ident);
    if (prepare(c, &sql, &a->upsert, f) != 0)
        return -1;
    buf_puts(&sql, "DELETE FROM ");
    put_ident(&sql, s->name);
    for (size_t p = 0; p < s->npk; p++) {
        buf_puts(&sql, p ? " AND " : " WHERE ");
        put_ident(&sql, s->columns[s->pk[p]].name);
        buf_puts(&sql, " = ?");
    }
    return prepare(c, &sql, &a->remove, f);
}

/* The cached statements for a table schema (keyed by name and schema hash). */
static struct apply_stmts *apply_stmts_for(struct sqlite_conn *c, const struct table_schema *s,
                                           struct fault *f)
{
    for (size_t i = 0; i < c->napplies; i++)
        if (strcmp(c->applies[i].hash, s->hash) == 0 && ident_equal(c->applies[i].table, s->name))
            return &c->applies[i];
    if (schema_names_check(s, f) != 0)
        return NULL;
    if (c->napplies >= APPLY_CACHE_MAX)
        applies_clear(c);
    struct apply_stmts a = {.table = NULL};
    if (apply_prepare(c, s, &a, f) != 0) {
        sqlite3_finalize(a.upsert);
        return NULL;
    }
    a.table = xstrdup(s->name);
    snprintf(a.hash, sizeof(a.hash), "%s", s->hash);
    c->applies = xgrow(c->applies, &c->applies_cap, c->napplies + 1, sizeof(*c->applies));
    c->applies[c->napplies] = a;
    return &c->applies[c->napplies++];
}

/* Binds a checked value; text and bytes live in the request arena (SQLITE_STATIC), date/time
 * text in the connection's scratch slot, or, when longer, on the heap for SQLite to free. */
static int bind_value(struct sqlite_conn *c, sqlite3_stmt *stmt, int index, size_t slot,
                      const struct value *v)
{
    switch (v->cls) {
    case VAL_NULL:
        return sqlite3_bind_null(stmt, index);
    case VAL_INT:
        return sqlite3_bind_int64(stmt, index, v->i);
    case VAL_REAL:
        return sqlite3_bind_double(stmt, index, v->d);
    case VAL_BINARY:
        if (!v->text)
            return sqlite3_bind_zeroblob(stmt, index, 0);
        return sqlite3_bind_blob64(stmt, index, v->text, v->len, SQLITE_STATIC);
    case VAL_DATETIME: {
        if (!v->text)
            break;
        /* Protocol section 5 allows any number of zeros past the type's digits. */
        size_t len = v->len;
        char *text = len < TIME_TEXT_MAX ? c->time_text[slot] : xmalloc(len + 1);
        datetime_text(v->text, len, text);
        return sqlite3_bind_text64(stmt, index, text, len,
                                   text == c->time_text[slot] ? SQLITE_STATIC : free, SQLITE_UTF8);
    }
    case VAL_DECIMAL:
    case VAL_TEXT:
        break;
    }
    return sqlite3_bind_text64(stmt, index, v->text ? v->text : "", v->text ? v->len : 0,
                               SQLITE_STATIC, SQLITE_UTF8);
}

static int sqlite_rows_apply(void *conn, const struct table_schema *schema,
                             const struct row_change *rows, size_t n, int table_was_empty,
                             struct fault *f)
{
    (void)table_was_empty;   /* the upsert is as fast as a plain insert on an empty table */
    struct sqlite_conn *c = conn;
    struct apply_stmts *a = apply_stmts_for(c, schema, f);
    if (!a)
        return -1;
    c->time_text = xgrow(c->time_text, &c->time_text_cap, schema->ncolumns + 1,
                         sizeof(*c->time_text));
    for (size_t r = 0; r < n; r++) {
        int remove = rows[r].op == 'D';
        sqlite3_stmt *stmt = remove ? a->remove : a->upsert;
        size_t nvalues = remove ? schema->npk : schema->ncolumns;
        for (size_t k = 0; k < nvalues; k++)
            if (bind_value(c, stmt, (int)k + 1, k, &rows[r].values[k]) != SQLITE_OK)
                return db_fail(c->db, f, "binding a value");
        if (step_done(c, stmt, remove ? "delete" : "upsert", f) != 0)
            return -1;
    }
    return 0;
}

static int sqlite_small_chunks_ok(void *conn, const struct table_schema *schema,
                                  const struct row_change *rows, size_t n, int table_was_empty)
{
    (void)conn, (void)schema, (void)rows, (void)n, (void)table_was_empty;
    return 1;   /* prepared statements, no round trips */
}

static void sqlite_put_table(void *conn, struct buf *sql, const char *table)
{
    (void)conn;
    put_ident(sql, table);
}

/* The progress handler of a table_sql script: nonzero (SQLite then interrupts the script) once
 * its deadline has passed. */
static int script_past_deadline(void *deadline_ms)
{
    return monotonic_ms() >= *(const int64_t *)deadline_ms;
}

static int sqlite_exec_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct sqlite_conn *c = conn;
    struct fault f;
    if (conn_current(c, &f) != 0) {
        snprintf(err, errlen, "%s", f.message);
        return -1;
    }
    /* Bounded by hooks.timeout, as the PostgreSQL driver bounds its scripts: the worker
     * waits for the script, and a script that runs on would hold up every call it serves. */
    int64_t deadline = monotonic_ms() + (int64_t)c->backend->script_timeout * 1000;
    sqlite3_progress_handler(c->db, SCRIPT_PROGRESS_STEPS, script_past_deadline, &deadline);
    /* A wait for the mirror's lock is no progress: bounded by the same limit (the connection
     * is closed after the script, its own busy timeout with it). */
    if (c->backend->script_timeout * 1000 < c->backend->busy_ms)
        sqlite3_busy_timeout(c->db, c->backend->script_timeout * 1000);
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg) == SQLITE_OK ? 0 : -1;
    if (rc != 0 && sqlite3_errcode(c->db) == SQLITE_INTERRUPT)
        snprintf(err, errlen, "stopped after hooks.timeout (%d s)", c->backend->script_timeout);
    else if (rc != 0)
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    sqlite3_progress_handler(c->db, 0, NULL, NULL);
    /* A script that began a transaction, failed or not, would leave it open, holding the
     * mirror's write lock for every worker and failing the next call's begin: it is rolled
     * back, and then a failure, as in the PostgreSQL driver. */
    if (!sqlite3_get_autocommit(c->db)) {
        if (rc == 0)
            snprintf(err, errlen, "the script left a transaction open: rolled back");
        sqlite_rollback(c);
        rc = -1;
    }
    /* What else the script leaves in the connection (a PRAGMA such as query_only, a TEMP table
     * or trigger, an ATTACH) goes with it: closed here, the next call opens a clean one, as the
     * PostgreSQL and SQL Server drivers end the script's session. */
    conn_disconnect(c);
    return rc;
}

const struct store_driver store_driver_sqlite = {
    .name = "sqlite",
    .backend_open = sqlite_backend_open,
    .backend_check = sqlite_backend_check,
    .backend_close = sqlite_backend_close,
    .tenant_open = sqlite_tenant_open,
    .tenant_exists = sqlite_tenant_exists,
    .tenant_close = sqlite_tenant_close,
    .tenant_drop = sqlite_tenant_drop,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .meta_read = sqlite_meta_read,
    .meta_put = sqlite_meta_put,
    .meta_delete = sqlite_meta_delete,
    .table_create = sqlite_table_create,
    .table_drop = sqlite_table_drop,
    .table_alter = sqlite_table_alter,
    .table_wipe = sqlite_table_wipe,
    .rows_apply = sqlite_rows_apply,
    .small_chunks_ok = sqlite_small_chunks_ok,
    .exec_script = sqlite_exec_script,
    .put_table = sqlite_put_table,
};
