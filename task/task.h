/* task/task: somirror-task, the reference Mirroring Task (the sender of protocol section 9).
 * This header is the library's interface (libsm_task.a), used by task/main.c and the unit
 * tests. Sections, one per file:
 *   source.c    the source SQLite database and its SQL Server schema (_somirror_columns)
 *   prng.c      the deterministic generator (splitmix64) behind gen and churn
 *   gen.c       `gen`: a CRM-like source database
 *   tracking.c  `provision`: change tracking with triggers, versions, retention
 *   churn.c     `churn`: random inserts, updates and deletes
 *   verify.c    `verify`: compares a SQLite mirror with its source
 *   keygen.c    `keys`: vendor and application keys for tests and demos
 *   rowdata.c   values as sent, and RowData calls split at the batch size
 *   http.c      the HTTP client (libevent), one keep-alive connection per cycle
 *   loaded.c    which schema each receiver's rows of a table were loaded under
 *   cycle.c     one cycle for one tenant (Authenticate ... ReplicationCompleted)
 *   taskconf.c  task.yaml (libyaml)
 *   schedule.c  `run`: cycles of many tenants, once or on a schedule
 *   cli.c       the command line
 * Nothing here is shared between processes except through files. */
#ifndef SOMIRROR_TASK_TASK_H
#define SOMIRROR_TASK_TASK_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sqlite3.h>
#include <openssl/evp.h>

#include "common/arena.h"
#include "common/buf.h"
#include "config/config.h"
#include "proto/types.h"

#define TASK_RESERVED_PREFIX "_somirror_"
/* Exit statuses: 0 success, TASK_EXIT_FAILED, TASK_EXIT_USAGE (usage or setup error). */
#define TASK_EXIT_FAILED 1
#define TASK_EXIT_USAGE 2
#define TASK_DEFAULT_BATCH_SIZE 1000000
#define TASK_APP_ID_MAX 255          /* bytes of an application id in task.yaml */
#define TASK_TRIES_MAX 100           /* tries of one call (--tries, schedule.tries) */
#define TASK_PAUSE_MAX_MS 600000     /* the longest pause between tries (schedule.backoff_ms's
                                        largest first one; the doubling stops there) */

/* ---- source.c ---- */
struct source {
    sqlite3 *db;
    struct arena arena;
    struct table_schema *tables;   /* ordered by name; blocked tables included */
    size_t ntables;
};

/* sqlite3_open_v2 of path with flags; 0, or -1 with err naming the path, SQLite's message and
 * the system's reason where there is one (*db NULL). */
int task_sqlite_open(const char *path, int flags, sqlite3 **db, char *err, size_t errlen);
/* Opens path (which must exist) and loads its schema: from _somirror_columns when the file
 * has it, else from SQLite's declared column types (which must then be SQL Server type names).
 * Tables that cannot be described (no primary key, a type that does not parse, a name that is
 * not an identifier) are left out with a warning. 0, or -1 with err. */
int source_open(struct source *src, const char *path, int writable, char *err, size_t errlen);
void source_close(struct source *src);
const struct table_schema *source_find(const struct source *src, const char *name);

/* Names starting with _somirror_ (and sqlite_) are never tracked, sent or compared. */
int task_table_reserved(const char *name);
/* Whether name is on list (ASCII case-insensitive). list may be NULL. */
int task_name_listed(const char *name, const struct cfg_strings *list);
/* Not reserved, not blocked (built-in list), not on skip. */
int task_table_mirrored(const char *name, const struct cfg_strings *skip);
/* Splits "a,b, c" into a list (items malloc'd; free with task_strings_free). */
void task_strings_split(const char *text, struct cfg_strings *out);
void task_strings_free(struct cfg_strings *list);

/* Appends an identifier (validated when the schema was loaded) double-quoted. */
void sql_put_ident(struct buf *b, const char *name);
/* Appends prefix"c1", prefix"c2", ... for every column, or only the key columns. */
void sql_put_columns(struct buf *b, const struct table_schema *t, const char *prefix, int key_only);
/* Appends "SELECT <every column> FROM <table> ORDER BY <key columns>". */
void sql_put_select_in_key_order(struct buf *b, const struct table_schema *t);
/* Runs one or more statements. 0, or -1 with err. */
int sql_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* Ends the open transaction: COMMIT when rc is 0, else ROLLBACK (err keeps the first error).
 * Returns 0, or -1. */
int sql_finish(sqlite3 *db, int rc, char *err, size_t errlen);
/* Prepares sql. NULL with err on failure. */
sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* Prepares "INSERT INTO <table> (<every column>) VALUES (?, ...)". NULL with err on failure. */
sqlite3_stmt *sql_prepare_insert(sqlite3 *db, const struct table_schema *t, char *err,
                                 size_t errlen);
/* The SQLite storage class a source column of this type uses ("INTEGER", "REAL", "TEXT",
 * "BLOB"): exact values for every SQL Server type (decimals as text). */
const char *sql_storage_type(const struct sql_type *type);

/* ---- prng.c ---- */
struct prng {
    uint64_t state;
};
void prng_seed(struct prng *p, uint64_t seed);
uint64_t prng_next(struct prng *p);
/* Uniform in [0, n); n > 0. */
uint64_t prng_below(struct prng *p, uint64_t n);
/* Uniform in [lo, hi]. */
int64_t prng_range(struct prng *p, int64_t lo, int64_t hi);

/* ---- gen.c ---- */
struct gen_options {
    const char *path;
    long scale;          /* contacts; about 5 * scale rows in all */
    uint64_t seed;
    int force;           /* replace an existing file */
};
int gen_run(const struct gen_options *opt, char *err, size_t errlen);
/* Binds a generated value for col to parameter param. variant selects the value: small
 * variants give the special values of the type (extremes, empty, unicode, control
 * characters, NULL), larger ones random values. */
void gen_bind_value(sqlite3_stmt *stmt, int param, const struct column *col, struct prng *p,
                    uint64_t variant);

/* ---- tracking.c ---- */
/* Columns of a change table besides the key: the last operation ('I', 'U' or 'D'), its
 * version, and the version of the insert that began the key's current life (NULL: the key
 * existed before it was first tracked). */
#define CT_OP_COLUMN "\"_somirror_op\""
#define CT_VERSION_COLUMN "\"_somirror_version\""
#define CT_INSERTED_COLUMN "\"_somirror_inserted\""
/* Sets up change tracking (idempotent; migrates change tables of an older layout).
 * retention >= 0 also cleans changes older than current - retention and moves the minimum
 * valid version. 0, or -1 with err. */
int ct_provision(const char *path, long retention, char *err, size_t errlen);
int ct_versions(sqlite3 *db, int64_t *current, int64_t *min_valid, char *err, size_t errlen);
/* Whether the table's tracking is whole: its change table, in the current layout and with the
 * table's key, and its four triggers (a table rebuilt or dropped and made again loses them). */
int ct_table_tracked(sqlite3 *db, const struct table_schema *t);
/* The version the table's tracking last (re)started at (0: none recorded): a receiver at a
 * position below it needs a full load. */
int64_t ct_valid_from(sqlite3 *db, const char *table);
/* Appends the quoted name of table's change table. */
void ct_put_table(struct buf *b, const char *table);

/* ---- churn.c ---- */
int churn_run(const char *path, long changes, uint64_t seed, char *err, size_t errlen);

/* ---- verify.c ---- */
struct verify_options {
    const char *source_path;
    const char *mirror_path;
    const char *tenant;
    const struct cfg_strings *skip;
};
/* Writes what it compares and what differs to report. 0 equal, 1 different, 2 error. */
int verify_run(const struct verify_options *opt, FILE *report);
/* Lowercase hex SHA-256 of every table of a source (blocked ones included), in the normalised
 * row form verify compares. 0, or -1 with err. */
int verify_source_digest(const char *path, char hex[65], char *err, size_t errlen);

/* ---- keygen.c ---- */
/* vendor.key, vendor.crt, app.pem, app.pub, app.xml in dir (created if missing); existing
 * files are replaced only with force. */
int keygen_run(const char *dir, int force, char *err, size_t errlen);

/* ---- rowdata.c ---- */
/* The value of column col in result column idx of stmt, as sent: NULL as <N/>, binary and
 * text XML cannot carry as <B>, the rest as <V> in the form of protocol section 5. Text lives
 * in arena. */
void rowdata_format_value(const struct column *col, sqlite3_stmt *stmt, int idx,
                          struct arena *arena, struct raw_value *out);

enum rowdata_mode { ROWDATA_FULL, ROWDATA_CHANGES };
struct rowdata_cursor {
    const struct table_schema *table;
    enum rowdata_mode mode;
    sqlite3_stmt *stmt;
    int64_t since;           /* the receiver's position: ops are relative to it (changes) */
    int64_t position;        /* the version read before the rows: the table's final <Lsn> */
    int in_transaction;      /* rowdata_start's read transaction is open */
    int stepped;             /* a row is waiting in stmt */
    int done;
    int64_t inserted, updated, deleted;   /* rows written so far */
};
/* Prepares the rows of a full load (every row, key order), or of the changes with
 * since < version <= position, collapsed per key (ordered by version); a key's op is I when
 * it was inserted after since and is still there, D when it is gone, else U. 0, or -1 with
 * err. */
int rowdata_open(struct rowdata_cursor *c, sqlite3 *db, const struct table_schema *t,
                 enum rowdata_mode mode, int64_t since, int64_t position, char *err,
                 size_t errlen);
/* What a sender does for a receiver at since: begins a read transaction on db, reads the
 * current and minimum valid versions in it, and opens the cursor: a full load when since is
 * -1 or older than the minimum valid version, else the changes in (since, current]. The
 * versions and the rows come from one snapshot, so a retention cleanup committed meanwhile
 * cannot remove changes before they are read. rowdata_close ends the transaction. 0, or -1
 * with err (no transaction left open). */
int rowdata_start(struct rowdata_cursor *c, sqlite3 *db, const struct table_schema *t,
                  int64_t since, char *err, size_t errlen);
/* Finalizes the statement and ends rowdata_start's transaction. */
void rowdata_close(struct rowdata_cursor *c);
/* Writes one RowData request into out (reset first): one batch of this table with rows until
 * the body passes batch_size bytes (at least one row), then <Lsn>: position on the last batch,
 * the last row's version on an earlier batch of changes, none on an earlier batch of a full
 * load. A table without rows gives one batch with only <Lsn>. Sets c->done after the last.
 * 0, or -1 with err. */
int rowdata_next_call(struct rowdata_cursor *c, const char *token, size_t batch_size,
                      struct buf *out, char *err, size_t errlen);

/* ---- http.c ---- */
struct http_client;
/* Whether url is an http:// or https:// URL with a host, as http_client_new takes. */
int http_url_ok(const char *url);
/* url: http:// or https:// (certificates are not verified when insecure is set). */
struct http_client *http_client_new(const char *url, int timeout_s, int insecure, char *err,
                                    size_t errlen);
void http_client_free(struct http_client *client);
/* POSTs body with SOAPAction soapaction. 0 with *status and response filled, or -1 (no HTTP
 * answer: connection refused, reset, timed out) with err. */
int http_post(struct http_client *client, const char *soapaction, const char *body, size_t len,
              int *status, struct buf *response, char *err, size_t errlen);

/* ---- loaded.c ---- */
struct loaded_entry {
    const char *table;
    char hash[SM_HASH_HEX + 1];
    int owed;    /* the record is what tells a later cycle of a full load (an Altered table's);
                    else it only says what the receiver's Lsn and rows say already */
};

/* The hash of t's schema as sent (the canonical text of protocol 4.2). */
void loaded_hash(const struct table_schema *t, char hash[SM_HASH_HEX + 1]);
/* A hash no schema has: the rows are loaded under none known (awaiting a full load). */
void loaded_hash_none(char hash[SM_HASH_HEX + 1]);
/* The hash recorded for the rows of table that receiver (its URL) holds for tenant: 0, or -1
 * when none is recorded. Reads on db, which may be read-only. */
int loaded_lookup(sqlite3 *db, const char *receiver, const char *tenant, const char *table,
                  char hash[SM_HASH_HEX + 1]);
/* Records entries in the source at db_path, on a writable connection of its own; a source
 * that cannot be written gets a warning when an entry is owed (a debug line else: a read-only
 * source is not warned of every cycle). */
void loaded_record(const char *db_path, const char *receiver, const char *tenant,
                   const struct loaded_entry *entries, size_t n);

/* ---- cycle.c ---- */
struct cycle_options {
    const char *url;
    const char *app_id;
    const char *tenant;
    const char *db_path;
    EVP_PKEY *vendor_key;
    const char *vendor_x5t;          /* header x5t of the vendor certificate */
    EVP_PKEY *app_public_key;        /* checks SignedApplicationToken */
    size_t batch_size;
    const struct cfg_strings *skip;
    int progress;                    /* a progress line per table on stderr (a terminal) */
    int tries;                       /* attempts per call for retryable failures (>= 1) */
    int backoff_ms;                  /* first pause between attempts, doubled each time */
    int timeout_s;                   /* per HTTP call */
    int insecure;                    /* https without certificate checks */
};

struct cycle_table {
    char name[SM_IDENT_MAX + 1];
    int full_load;
    int64_t lsn;                     /* the position sent */
    int sent;                        /* every row sent and accepted, the position with them */
    int64_t inserted, updated, deleted;  /* rows of the calls the receiver accepted */
    const char *change;              /* TableSchema's answer */
};

enum cycle_outcome { CYCLE_OK, CYCLE_SKIPPED, CYCLE_FAILED };
struct cycle_result {
    enum cycle_outcome outcome;
    int setup_error;      /* failed in the local setup (source, tracking, URL) before any call */
    char error[1024];
    struct cycle_table *tables;
    size_t ntables;
    int64_t inserted, updated, deleted;
    long calls;
    long tokens;          /* vendor tokens signed (one serves many calls) */
    double seconds;
};
/* Runs one cycle; fills result (free with cycle_result_free). 0 when the cycle completed or
 * was skipped (doNotReplicate), -1 when it failed (result->error says why). */
int cycle_run(const struct cycle_options *opt, struct cycle_result *result);
void cycle_result_free(struct cycle_result *result);
const char *cycle_outcome_name(enum cycle_outcome outcome);
/* The --json form of one result: {"tenant", "application", "result", "error", "tables",
 * "rows": {"I","U","D"}, "calls", "tokens", "seconds"}; malloc'd, one line. */
char *cycle_result_json(const struct cycle_result *result, const char *tenant, const char *app_id);

/* ---- taskconf.c ---- */
struct task_app {
    char *id;
    char *public_key;                /* path */
    char *url;
    int activated;
};
struct task_tenant {
    char *context;
    char *source;                    /* path of the source SQLite file */
    struct cfg_strings approved;     /* application ids */
    struct cfg_strings skip_tables;
    size_t batch_size;
};
struct task_config {
    char *vendor_key;                /* paths */
    char *vendor_cert;
    struct task_app *apps;
    size_t napps;
    struct task_tenant *tenants;
    size_t ntenants;
    int every_s;                     /* schedule.every, default 20m */
    int pause_from_min, pause_to_min;   /* minutes of the day (UTC); -1: no pause window */
    int parallel;                    /* default 4 */
    int tries;
    int backoff_ms;
    int timeout_s;
    int insecure;
};
/* Loads path (relative key and source paths are taken relative to the file). NULL with err. */
struct task_config *taskconf_load(const char *path, char *err, size_t errlen);
void taskconf_free(struct task_config *cfg);
const struct task_app *taskconf_app(const struct task_config *cfg, const char *id);
/* Whether minute_of_day (UTC) falls in the pause window ("01:00-03:00", may wrap midnight). */
int taskconf_paused(const struct task_config *cfg, int minute_of_day);
/* A batch size ("1MiB", "500000": 1 byte or more) into *out: NULL, or what is wrong with text,
 * for tenants.batch_size and --batch-size alike. */
const char *taskconf_batch_size(const char *text, size_t *out);

/* ---- schedule.c ---- */
struct schedule_options {
    const char *config_path;
    int once;
    int json;
};
/* Runs the cycles of every approved, activated (tenant, application) pair: once, or until
 * SIGTERM/SIGINT, rereading the file on SIGHUP. Returns the process exit status:
 * TASK_EXIT_USAGE when the file or its keys do not load or a cycle failed in its setup,
 * else TASK_EXIT_FAILED when a cycle failed, else 0. */
int schedule_run(const struct schedule_options *opt);
/* Runs one cycle with the given keys and prints its outcome (log line, or JSON line). Returns
 * the exit status (0 ok or skipped, TASK_EXIT_USAGE for a setup error, else
 * TASK_EXIT_FAILED). */
int schedule_one(const struct cycle_options *opt, int json, FILE *json_out);

/* ---- cli.c ---- */
int task_main(int argc, char **argv);

#endif
