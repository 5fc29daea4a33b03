/* config/config: the one module that owns every configuration key: its default, its
 * validation and its documentation (README, contrib/somirrord.yaml, docs/somirrord.yaml.5).
 * cfg_load parses one YAML file with libyaml into a struct config; nothing else reads YAML.
 * A loaded config is immutable; a reload loads a new one aside and swaps. */
#ifndef SOMIRROR_CONFIG_CONFIG_H
#define SOMIRROR_CONFIG_CONFIG_H
#include <stddef.h>
#include <stdint.h>

enum store_kind { STORE_SQLITE, STORE_MSSQL, STORE_POSTGRESQL };

struct cfg_listen {
    char *address;       /* as written: "127.0.0.1:8080", "[::1]:8443", ":8080" */
    char *host;          /* "127.0.0.1", "::1", or NULL for any address */
    char *port;          /* "8080" */
    char *tls_certificate;   /* NULL for plain HTTP */
    char *tls_key;
    enum cfg_tls_version { TLS_FROM_1_2, TLS_FROM_1_3 } tls_min_version;   /* default 1.2 */
    char *tls_ciphers;        /* OpenSSL cipher lists; NULL: worker/tls.c's TLS 1.2 list, */
    char *tls_ciphersuites;   /* OpenSSL's TLS 1.3 suites */
};

struct cfg_strings {
    char **items;
    size_t n;
};

/* Where a key was written in the file (1-based), for messages about what it names. */
struct cfg_place {
    char *key;                       /* dotted: "vendor.certificates[1]", "listen[0].tls.key" */
    size_t line, column;
};

struct config {
    char *path;                      /* the file this was loaded from */
    struct cfg_place *places;        /* every key and list item the file holds */
    size_t nplaces;

    struct cfg_listen *listen;       /* required, at least one */
    size_t nlisten;
    int workers;                     /* "auto" resolved to the CPU count; 1..1024 */
    char *pid_file;                  /* NULL: none */
    char *user;                      /* NULL: no privilege drop */
    char *group;                     /* NULL: the user's primary group */
    char *status_socket;             /* NULL: none */
    int status_socket_mode;          /* default 0600 */
    char *state_file;                /* default: pid_file + ".state", else NULL */
    char *log_file;                  /* "stderr" (default), "syslog" or a path */
    int log_level;                   /* enum log_level; default info */

    char *app_id;                    /* application.id, required */
    char *app_private_key;           /* application.private_key path, required */

    struct cfg_strings vendor_certificates;   /* required, at least one path */
    char *vendor_issuer;             /* default "SuperOffice AS" */
    int clock_skew;                  /* seconds, default 300 */

    struct cfg_strings tenants_allow;   /* empty: any tenant */
    int tenants_max;                 /* default 10000; restart to change */
    int lock_timeout;                /* seconds, default 60 */
    struct cfg_strings block_tables; /* added to the built-in list */

    enum store_kind driver;          /* default sqlite */
    char *database_name;             /* template, "{tenant}" exactly once; default "Mirror_{tenant}" */
    struct {
        char *directory;             /* required with driver sqlite */
        int max_open;                /* open tenant files per worker, default 64 */
    } sqlite;
    struct {
        char *server;                /* "host:port" or "host\instance" */
        char *user;
        char *password;              /* from password or password_file (file contents, trailing newline cut) */
        char *password_file;         /* as written, or NULL; read at load when the driver is mssql */
        char *tds_version;           /* default "7.4" */
        char *encrypt;               /* off|request|require, default "request" */
        int login_timeout;           /* seconds, default 15 */
        int query_timeout;           /* seconds, default 300 */
        char *schema;                /* NULL: the login's default schema */
        char *collation;             /* of new mirror databases; NULL: the server's default */
        int max_connections;         /* open tenant connections per worker, default 16 */
    } mssql;
    struct {
        char *conninfo;              /* libpq keywords; its database is used only to create/drop tenant databases */
        char *password;              /* from password_file, or NULL */
        char *password_file;         /* as written, or NULL; read at load when the driver is postgresql */
        int max_connections;         /* open tenant connections per worker, default 16 */
    } postgresql;
    int store_idle_timeout;          /* seconds a tenant's mirror stays open unused, default 60; 0: ever */

    size_t max_request_bytes;        /* default 64 MiB */
    size_t arriving_request_bytes;   /* per worker, of requests still arriving; default 256 MiB */
    int request_timeout;             /* seconds, default 300 */
    int header_timeout;              /* seconds, default 30 */
    int keepalive_timeout;           /* seconds, default 120 */
    int shutdown_timeout;            /* seconds, default 60 */

    struct {
        char *table_sql;             /* directory of <table>.sql / *.sql, or NULL */
        struct cfg_strings cycle_completed;   /* argv, empty: none */
        struct cfg_strings table_changed;     /* argv, empty: none */
        int timeout;                 /* seconds, default 60 */
    } hooks;
};

/* Errors collected while loading; each message is complete and names file, line, column and
 * key where there is one: "somirrord.yaml:12:3: vendor.clock_skew: expected seconds or a
 * duration like 5m, got \"soon\"". */
struct cfg_errors {
    char **messages;
    size_t n;                        /* messages listed (at most 50 and a line saying so) */
    size_t found;                    /* errors found, listed or not: compare this one */
    size_t cap;
};

/* Loads and validates path. Returns the config, or NULL with at least one message in errs.
 * Only checks what can be checked without opening keys (keys.h does those). */
struct config *cfg_load(const char *path, struct cfg_errors *errs);
/* From now on cfg_load makes every relative path in a configuration (files, directories, the
 * status socket; not hook programs) absolute against dir, the directory somirrord was started
 * in: a daemon works from / and reloads later. NULL: paths stay as written. */
void cfg_set_base_directory(const char *dir);
void cfg_free(struct config *cfg);
/* Whether log.file is a file (not stderr or syslog). */
int cfg_log_to_file(const struct config *cfg);
/* The top-level status_socket of a file that may not load as a configuration (somirrorctl
 * still finds the daemon then): the first non-empty scalar under that key among libyaml's
 * events before any YAML error or too deep a nesting; malloc'd, or NULL when none is found. */
char *cfg_read_status_socket(const char *path);

void cfg_errors_init(struct cfg_errors *errs);
void cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_errors_free(struct cfg_errors *errs);

/* "file:line:column" where key (dotted, as in struct cfg_place; a list's item falls back on
 * the list's key) is written in cfg's file, or the file alone for a key it does not hold (a
 * default): the start of a message about the value, as the loader's own are. */
const char *cfg_where(const struct config *cfg, const char *key, char *out, size_t outlen);
/* Puts cfg_where(key) and ": " before the message in msg (a check's finding about key). */
void cfg_locate(const struct config *cfg, const char *key, char *msg, size_t msglen);
/* A secret's file (a private key, a password file) that every user may read: a warning for
 * the log, as ssh warns of an unprotected key; "" when its mode keeps others out (or it
 * cannot be looked at: reading it will say why). */
const char *cfg_secret_exposed(const char *path, char *out, size_t outlen);
/* Whether a PostgreSQL conninfo may hold a password: a password keyword, or a URI's
 * user:password@ (a user@ alone counts too). */
int cfg_conninfo_may_hold_password(const char *conninfo);
/* The mirror database name of a tenant from the template ("Mirror_{tenant}"). */
char *cfg_database_name(const struct config *cfg, const char *tenant);

/* "64MiB" -> bytes, "5m" -> seconds. Return 0, -1 when text is no size or duration, or
 * CFG_TOO_LARGE when it is one too large to hold. Plain numbers are bytes and seconds. */
#define CFG_TOO_LARGE (-2)
int cfg_parse_size(const char *text, size_t *out);
int cfg_parse_duration(const char *text, int *out);

#endif
