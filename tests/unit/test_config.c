/* tests/unit/test_config: cfg_load on the sample configuration, on defaults, and on one bad
 * file per error path (each message asserted in full), plus the size, duration and database
 * name helpers. YAML is written to a temporary directory by each test. */
#include <check.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "config/config.h"

/* The smallest valid file; vendor comes last so that a test can append vendor keys. */
#define MINIMAL                                  \
    "listen: [ \"127.0.0.1:8080\" ]\n"           \
    "application:\n"                             \
    "  id: \"123\"\n"                            \
    "  private_key: app.xml\n"                   \
    "store:\n"                                   \
    "  sqlite: { directory: /var/lib/somirror }\n" \
    "vendor:\n"                                  \
    "  certificates: [ vendor.crt ]\n"

static char tmpdir[256];
static char yaml_path[300];
static char pass_path[300];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_config.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        abort();
    snprintf(yaml_path, sizeof(yaml_path), "%s/somirrord.yaml", tmpdir);
    snprintf(pass_path, sizeof(pass_path), "%s/db.pass", tmpdir);
}

static void remove_tmpdir(void)
{
    unlink(yaml_path);
    unlink(pass_path);
    rmdir(tmpdir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static struct config *load(const char *text, struct cfg_errors *errs)
{
    write_file(yaml_path, text);
    cfg_errors_init(errs);
    return cfg_load(yaml_path, errs);
}

static struct config *load_ok(const char *text)
{
    struct cfg_errors errs;
    struct config *cfg = load(text, &errs);
    ck_assert_msg(cfg != NULL, "unexpected error: %s", errs.n ? errs.messages[0] : "(none)");
    ck_assert_uint_eq(errs.n, 0);
    cfg_errors_free(&errs);
    return cfg;
}

/* Asserts that text fails with exactly these messages; each is what follows the file name. */
static void expect_errors(const char *text, size_t n, const char *const *tails)
{
    struct cfg_errors errs;
    struct config *cfg = load(text, &errs);
    ck_assert_ptr_null(cfg);
    for (size_t i = 0; i < n && i < errs.n; i++) {
        char expected[2048];
        snprintf(expected, sizeof(expected), "%s%s", yaml_path, tails[i]);
        ck_assert_str_eq(errs.messages[i], expected);
    }
    ck_assert_msg(errs.n == n, "%zu errors, expected %zu; first: %s", errs.n, n, errs.n ? errs.messages[0] : "");
    cfg_errors_free(&errs);
}

static void expect_error(const char *text, const char *tail)
{
    expect_errors(text, 1, &tail);
}

START_TEST(test_defaults)
{
    struct config *cfg = load_ok(MINIMAL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_str_eq(cfg->path, yaml_path);
    ck_assert_uint_eq(cfg->nlisten, 1);
    ck_assert_str_eq(cfg->listen[0].address, "127.0.0.1:8080");
    ck_assert_str_eq(cfg->listen[0].host, "127.0.0.1");
    ck_assert_str_eq(cfg->listen[0].port, "8080");
    ck_assert_ptr_null(cfg->listen[0].tls_certificate);
    ck_assert_int_eq(cfg->workers, cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus);
    ck_assert_ptr_null(cfg->pid_file);
    ck_assert_ptr_null(cfg->user);
    ck_assert_ptr_null(cfg->group);
    ck_assert_ptr_null(cfg->status_socket);
    ck_assert_int_eq(cfg->status_socket_mode, 0600);
    ck_assert_ptr_null(cfg->state_file);
    ck_assert_str_eq(cfg->log_file, "stderr");
    ck_assert_int_eq(cfg->log_level, LOG_LVL_INFO);
    ck_assert_str_eq(cfg->app_id, "123");
    ck_assert_str_eq(cfg->app_private_key, "app.xml");
    ck_assert_uint_eq(cfg->vendor_certificates.n, 1);
    ck_assert_str_eq(cfg->vendor_certificates.items[0], "vendor.crt");
    ck_assert_str_eq(cfg->vendor_issuer, "SuperOffice AS");
    ck_assert_int_eq(cfg->clock_skew, 300);
    ck_assert_uint_eq(cfg->tenants_allow.n, 0);
    ck_assert_int_eq(cfg->tenants_max, 10000);
    ck_assert_int_eq(cfg->lock_timeout, 60);
    ck_assert_uint_eq(cfg->block_tables.n, 0);
    ck_assert_int_eq(cfg->driver, STORE_SQLITE);
    ck_assert_str_eq(cfg->database_name, "Mirror_{tenant}");
    ck_assert_str_eq(cfg->sqlite.directory, "/var/lib/somirror");
    ck_assert_int_eq(cfg->sqlite.max_open, 64);
    ck_assert_int_eq(cfg->store_idle_timeout, 60);
    ck_assert_int_eq(cfg->mssql.max_connections, 16);
    ck_assert_int_eq(cfg->postgresql.max_connections, 16);
    ck_assert_ptr_null(cfg->mssql.server);
    ck_assert_ptr_null(cfg->mssql.password);
    ck_assert_str_eq(cfg->mssql.tds_version, "7.4");
    ck_assert_str_eq(cfg->mssql.encrypt, "request");
    ck_assert_int_eq(cfg->mssql.login_timeout, 15);
    ck_assert_int_eq(cfg->mssql.query_timeout, 300);
    ck_assert_ptr_null(cfg->mssql.schema);
    ck_assert_ptr_null(cfg->mssql.collation);
    ck_assert_ptr_null(cfg->postgresql.conninfo);
    ck_assert_uint_eq(cfg->max_request_bytes, 64u * 1024 * 1024);
    ck_assert_uint_eq(cfg->arriving_request_bytes, 256u * 1024 * 1024);
    ck_assert_int_eq(cfg->request_timeout, 300);
    ck_assert_int_eq(cfg->header_timeout, 30);
    ck_assert_int_eq(cfg->keepalive_timeout, 120);
    ck_assert_int_eq(cfg->shutdown_timeout, 60);
    ck_assert_ptr_null(cfg->hooks.table_sql);
    ck_assert_uint_eq(cfg->hooks.cycle_completed.n, 0);
    ck_assert_uint_eq(cfg->hooks.table_changed.n, 0);
    ck_assert_int_eq(cfg->hooks.timeout, 60);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_sample)
{
    char path[PATH_MAX];
    struct cfg_errors errs;
    snprintf(path, sizeof(path), "%s/contrib/somirrord.yaml", TOP_SRCDIR);
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(path, &errs);
    ck_assert_msg(cfg != NULL, "%s", errs.n ? errs.messages[0] : "");
    ck_assert_str_eq(cfg->pid_file, "/run/somirror/somirrord.pid");
    ck_assert_str_eq(cfg->state_file, "/var/lib/somirror/somirrord.state");
    ck_assert_str_eq(cfg->user, "somirror");
    ck_assert_str_eq(cfg->app_id, "123123123123123123");
    ck_assert_str_eq(cfg->mssql.server, "sql1:1433");
    ck_assert_str_eq(cfg->mssql.schema, "dbo");
    ck_assert_ptr_null(cfg->mssql.password);   /* read only when mssql is the driver */
    ck_assert_str_eq(cfg->postgresql.conninfo, "host=/var/run/postgresql user=somirror");
    ck_assert_ptr_null(cfg->hooks.table_sql);   /* shown commented out: no such directory yet */
    cfg_free(cfg);
    cfg_errors_free(&errs);
}
END_TEST

START_TEST(test_all_keys)
{
    write_file(pass_path, "s3cret\r\n");
    char text[4096];
    snprintf(text, sizeof(text),
             "listen:\n"
             "  - \"[::1]:8443\"\n"
             "  - :8080\n"
             "  - { address: \"0.0.0.0:443\", tls: { certificate: t.crt, key: t.key } }\n"
             "workers: 3\n"
             "pid_file: run/x.pid\n"
             "user: u\n"
             "group: g\n"
             "status_socket: s.sock\n"
             "status_socket_mode: 0660\n"
             "log: { file: syslog, level: debug }\n"
             "application: { id: 42, private_key: k.pem }\n"
             "vendor: { certificates: one.crt, issuer: Someone, clock_skew: 5m }\n"
             "tenants: { allow: [ Cust1, c_2 ], max: 7, lock_timeout: 2m, block_tables: [ Secret_1 ] }\n"
             "store:\n"
             "  driver: mssql\n"
             "  database_name: \"{tenant}_db\"\n"
             "  mssql: { server: 'sql\\inst', user: sa, password_file: %s, schema: m1, encrypt: require,\n"
             "           login_timeout: 20s, query_timeout: 0, tds_version: \"7.3\",\n"
             "           collation: Latin1_General_100_CI_AS_SC }\n"
             "limits: { max_request_bytes: 1 GiB, arriving_request_bytes: 2GiB, request_timeout: 1h, header_timeout: 10,\n"
             "          keepalive_timeout: 0 }\n"
             "shutdown_timeout: 90s\n"
             "hooks: { table_sql: sql, cycle_completed: [ /bin/x, --flag ], table_changed: /bin/y, timeout: 1m }\n",
             pass_path);
    struct config *cfg = load_ok(text);
    ck_assert_uint_eq(cfg->nlisten, 3);
    ck_assert_str_eq(cfg->listen[0].host, "::1");
    ck_assert_str_eq(cfg->listen[0].port, "8443");
    ck_assert_ptr_null(cfg->listen[1].host);
    ck_assert_str_eq(cfg->listen[1].port, "8080");
    ck_assert_str_eq(cfg->listen[2].address, "0.0.0.0:443");
    ck_assert_str_eq(cfg->listen[2].tls_certificate, "t.crt");
    ck_assert_str_eq(cfg->listen[2].tls_key, "t.key");
    ck_assert_int_eq(cfg->workers, 3);
    ck_assert_str_eq(cfg->pid_file, "run/x.pid");
    ck_assert_str_eq(cfg->state_file, "run/x.pid.state");
    ck_assert_str_eq(cfg->group, "g");
    ck_assert_int_eq(cfg->status_socket_mode, 0660);
    ck_assert_str_eq(cfg->log_file, "syslog");
    ck_assert_int_eq(cfg->log_level, LOG_LVL_DEBUG);
    ck_assert_str_eq(cfg->app_id, "42");
    ck_assert_str_eq(cfg->vendor_certificates.items[0], "one.crt");
    ck_assert_str_eq(cfg->vendor_issuer, "Someone");
    ck_assert_int_eq(cfg->clock_skew, 300);
    ck_assert_uint_eq(cfg->tenants_allow.n, 2);
    ck_assert_str_eq(cfg->tenants_allow.items[1], "c_2");
    ck_assert_int_eq(cfg->tenants_max, 7);
    ck_assert_int_eq(cfg->lock_timeout, 120);
    ck_assert_str_eq(cfg->block_tables.items[0], "Secret_1");
    ck_assert_int_eq(cfg->driver, STORE_MSSQL);
    ck_assert_str_eq(cfg->mssql.server, "sql\\inst");
    ck_assert_str_eq(cfg->mssql.password, "s3cret");
    ck_assert_str_eq(cfg->mssql.encrypt, "require");
    ck_assert_str_eq(cfg->mssql.tds_version, "7.3");
    ck_assert_int_eq(cfg->mssql.login_timeout, 20);
    ck_assert_int_eq(cfg->mssql.query_timeout, 0);
    ck_assert_str_eq(cfg->mssql.collation, "Latin1_General_100_CI_AS_SC");
    ck_assert_uint_eq(cfg->max_request_bytes, 1024u * 1024 * 1024);
    ck_assert_uint_eq(cfg->arriving_request_bytes, 2048u * 1024 * 1024);
    ck_assert_int_eq(cfg->request_timeout, 3600);
    ck_assert_int_eq(cfg->keepalive_timeout, 0);
    ck_assert_int_eq(cfg->shutdown_timeout, 90);
    ck_assert_uint_eq(cfg->hooks.cycle_completed.n, 2);
    ck_assert_str_eq(cfg->hooks.cycle_completed.items[1], "--flag");
    ck_assert_str_eq(cfg->hooks.table_changed.items[0], "/bin/y");
    ck_assert_int_eq(cfg->hooks.timeout, 60);
    char *name = cfg_database_name(cfg, "Cust1");
    ck_assert_str_eq(name, "Cust1_db");
    free(name);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_postgresql)
{
    write_file(pass_path, "pw\n");
    char text[2048];
    snprintf(text, sizeof(text),
             "listen: :1\napplication: { id: a, private_key: k }\nvendor: { certificates: [ c ] }\n"
             "store: { driver: postgresql, postgresql: { conninfo: \"host=db\", password_file: %s } }\n",
             pass_path);
    struct config *cfg = load_ok(text);
    ck_assert_int_eq(cfg->driver, STORE_POSTGRESQL);
    ck_assert_str_eq(cfg->postgresql.conninfo, "host=db");
    ck_assert_str_eq(cfg->postgresql.password, "pw");
    cfg_free(cfg);
}
END_TEST

START_TEST(test_unknown_key)
{
    expect_error(MINIMAL "wrokers: 4\n", ":9:1: unknown key \"wrokers\"");
    expect_error(MINIMAL "hooks:\n  table_changed: [sh, -c, x]\n",
                 ":10:3: hooks.table_changed: expected the program as an absolute path, got \"sh\"");
    expect_error(MINIMAL "group: nogroup\n",
                 ":9:1: group: group applies only with user (the privilege drop); set user too, or remove group");
    expect_error(MINIMAL "  isser: x\n", ":9:3: unknown key \"vendor.isser\"");
}
END_TEST

START_TEST(test_bad_duration)
{
    expect_error(MINIMAL "  clock_skew: soon\n",
                 ":9:3: vendor.clock_skew: expected seconds or a duration like 5m, got \"soon\"");
    expect_error(MINIMAL "  clock_skew: 25h\n",
                 ":9:3: vendor.clock_skew: expected a duration from 0 to 86400 seconds, got \"25h\"");
    expect_error(MINIMAL "  clock_skew: -5\n",
                 ":9:3: vendor.clock_skew: expected seconds or a duration like 5m, got \"-5\"");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_error(MINIMAL "workers: [ 1 ]\n", ":9:1: workers: expected auto or a number from 1 to 1024, got a list");
    expect_error(MINIMAL "workers: 0\n", ":9:1: workers: expected auto or a number from 1 to 1024, got \"0\"");
    expect_error(MINIMAL "log: stderr\n", ":9:1: log: expected a mapping, got \"stderr\"");
    expect_error(MINIMAL "log: { file: STDERR }\n",
                 ":9:8: log.file: expected a path, stderr or syslog (lowercase; ./STDERR for a file of that name), got \"STDERR\"");
    expect_error(MINIMAL "pid_file:\n", ":9:1: pid_file: expected a path, got nothing");
    expect_error(MINIMAL "user: \"\"\n", ":9:1: user: expected a user name, got \"\"");
    expect_error(MINIMAL "group: { a: b }\n", ":9:1: group: expected a group name, got a mapping");
    expect_error(MINIMAL "log: { level: verbose }\n",
                 ":9:8: log.level: expected error, warn, info or debug, got \"verbose\"");
    expect_error(MINIMAL "status_socket_mode: 0800\n",
                 ":9:1: status_socket_mode: expected an octal mode like 0600, got \"0800\"");
    expect_error(MINIMAL "status_socket_mode: 0444\n",
                 ":9:1: status_socket_mode: expected a mode that lets someone connect (a write bit, like 0600 "
                 "or 0660), got \"0444\"");
    expect_error(MINIMAL "tenants: { max: 1000001 }\n",
                 ":9:12: tenants.max: expected a number from 1 to 1000000, got \"1000001\"");
    expect_error(MINIMAL "? [ a ]\n: b\n", ":9:3: (top level): expected a key name (without a NUL character), got a list");
    static const char nul_key[] = MINIMAL "\"workers\\0x\": 2\n";
    expect_error(nul_key, ":9:1: (top level): expected a key name (without a NUL character), got \"workers\"");
}
END_TEST

START_TEST(test_sizes_in_file)
{
    expect_error(MINIMAL "limits: { max_request_bytes: lots }\n",
                 ":9:11: limits.max_request_bytes: expected bytes or a size like 64MiB, got \"lots\"");
    expect_error(MINIMAL "limits: { max_request_bytes: 1KiB }\n",
                 ":9:11: limits.max_request_bytes: expected a size from 4096 to 1099511627776 bytes, got \"1KiB\"");
    /* too large to hold is out of range too, not "no size" */
    expect_error(MINIMAL "limits: { max_request_bytes: 99999999999999999999 GiB }\n",
                 ":9:11: limits.max_request_bytes: expected a size from 4096 to 1099511627776 bytes, got "
                 "\"99999999999999999999 GiB\"");
    expect_error(MINIMAL "shutdown_timeout: 99999999999999999999\n",
                 ":9:1: shutdown_timeout: expected a duration from 0 to 86400 seconds, got \"99999999999999999999\"");
}
END_TEST

START_TEST(test_duplicate_key)
{
    expect_error(MINIMAL "listen: [ \":9\" ]\n", ":9:1: duplicate key \"listen\" (first at line 1)");
    expect_error(MINIMAL "  issuer: a\n  issuer: b\n", ":10:3: duplicate key \"vendor.issuer\" (first at line 9)");
}
END_TEST

/* Listen entries that would take one port twice fail at start, after -t passed: refused here,
 * at the second entry. A v4-mapped address cannot be bound (IPv6 listeners are IPv6-only). */
#define LISTEN_TAIL "application: { id: x, private_key: k }\nstore: { sqlite: { directory: d } }\n" \
                    "vendor: { certificates: c }\n"
START_TEST(test_listen_overlaps)
{
    expect_error("listen: [ \"127.0.0.1:80\", \"127.0.0.1:0080\" ]\n" LISTEN_TAIL,
                 ":1:27: listen[1]: expected each port once per address: 127.0.0.1:0080 takes the port "
                 "that 127.0.0.1:80 (listen[0]) takes");
    expect_error("listen: [ \":80\", \"127.0.0.1:80\" ]\n" LISTEN_TAIL,
                 ":1:18: listen[1]: expected each port once per address: 127.0.0.1:80 takes the port "
                 "that :80 (listen[0]) takes");
    expect_error("listen: [ \"[::1]:80\", \"[::]:80\" ]\n" LISTEN_TAIL,
                 ":1:23: listen[1]: expected each port once per address: [::]:80 takes the port "
                 "that [::1]:80 (listen[0]) takes");
    expect_error("listen: [ \"Example.com:80\", \"example.COM:80\" ]\n" LISTEN_TAIL,
                 ":1:29: listen[1]: expected each port once per address: example.COM:80 takes the port "
                 "that Example.com:80 (listen[0]) takes");
    expect_error("listen: \"[::ffff:127.0.0.1]:80\"\n" LISTEN_TAIL,
                 ":1:1: listen: expected an IPv4 address written as such (a.b.c.d:port): an IPv6 "
                 "listener takes IPv6 connections only, got \"[::ffff:127.0.0.1]:80\"");
    /* Both families' any address, other ports, another address: all fine. */
    struct cfg_errors errs;
    struct config *cfg = load("listen: [ \":80\", \"[::]:80\", \"127.0.0.1:81\", \"127.0.0.2:81\", "
                              "\"[::1]:81\" ]\n" LISTEN_TAIL, &errs);
    ck_assert_msg(cfg != NULL, "%s", errs.n ? errs.messages[0] : "");
    ck_assert_uint_eq(cfg->nlisten, 5);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_missing_required)
{
    static const char *const tails[] = {
        ": missing required key \"listen\"",
        ": missing required key \"application.id\"",
        ": missing required key \"application.private_key\"",
        ": missing required key \"vendor.certificates\"",
    };
    expect_errors("workers: 2\n", 4, tails);
    expect_errors("", 4, tails);
    expect_error("listen: :80\napplication: { id: x, private_key: k }\nvendor: { certificates: [] }\n",
                 ":3:11: vendor.certificates: expected at least 1 item(s), got an empty list");
    expect_error("listen: []\napplication: { id: x, private_key: k }\nvendor: { certificates: c }\n",
                 ":1:1: listen: expected at least one address, got an empty list");
    expect_error("listen: :80\napplication: { private_key: k }\nvendor: { certificates: c }\n",
                 ": missing required key \"application.id\"");
    expect_error("listen: :80\napplication: { id: x, private_key: k }\nvendor: { certificates: c }\n",
                 ": missing required key \"store.sqlite.directory\" (store.driver is sqlite)");
}
END_TEST

START_TEST(test_store_errors)
{
    static const char *const mssql_missing[] = {
        ": missing required key \"store.mssql.server\" (store.driver is mssql)",
        ": missing required key \"store.mssql.user\" (store.driver is mssql)",
        ": missing required key \"store.mssql.password\" or \"store.mssql.password_file\" (store.driver is mssql)",
    };
    expect_errors("listen: :80\napplication: { id: x, private_key: k }\nvendor: { certificates: c }\n"
                  "store: { driver: mssql }\n", 3, mssql_missing);
    expect_error(MINIMAL "store: x\n", ":9:1: duplicate key \"store\" (first at line 5)");
    const char *base = "listen: :80\napplication: { id: x, private_key: k }\nvendor: { certificates: c }\n";
    char text[2048];
    snprintf(text, sizeof(text), "%sstore: { driver: postgres }\n", base);
    expect_error(text, ":4:10: store.driver: expected sqlite, mssql or postgresql, got \"postgres\"");
    snprintf(text, sizeof(text), "%sstore:\n  database_name: Mirror\n  sqlite: { directory: d }\n", base);
    expect_error(text, ":5:3: store.database_name: expected a name with {tenant} exactly once and "
                       "otherwise only A-Z, a-z, 0-9 and _, got \"Mirror\"");
    snprintf(text, sizeof(text), "%sstore:\n  database_name: \"{tenant}{tenant}\"\n  sqlite: { directory: d }\n", base);
    expect_error(text, ":5:3: store.database_name: expected a name with {tenant} exactly once and "
                       "otherwise only A-Z, a-z, 0-9 and _, got \"{tenant}{tenant}\"");
    snprintf(text, sizeof(text), "%sstore:\n  driver: postgresql\n  database_name: \"Mirror_copy_{tenant}\"\n"
                                 "  postgresql: { conninfo: x }\n", base);
    expect_error(text, ":6:3: store.database_name: expected at most 11 characters besides {tenant} with "
                       "store.driver postgresql, got \"Mirror_copy_{tenant}\"");
    /* sqlite: the longest tenant's <name>.db-journal and -wal files within NAME_MAX (255) */
    char tail[1024];
    snprintf(text, sizeof(text), "%sstore:\n  database_name: \"%0193d{tenant}\"\n  sqlite: { directory: d }\n",
             base, 0);
    snprintf(tail, sizeof(tail), ":5:3: store.database_name: expected at most 192 characters besides {tenant} "
             "with store.driver sqlite, got \"%0193d{tenant}\"", 0);
    expect_error(text, tail);
    snprintf(text, sizeof(text), "%sstore:\n  database_name: \"%0192d{tenant}\"\n  sqlite: { directory: d }\n",
             base, 0);
    cfg_free(load_ok(text));
    snprintf(text, sizeof(text), "%sstore:\n  driver: mssql\n  mssql: { server: s, user: u,\n"
                                 "    password_file: %s/absent.pass }\n", base, tmpdir);
    snprintf(tail, sizeof(tail), ":7:5: store.mssql.password_file: cannot read %s/absent.pass: No such file or directory",
             tmpdir);
    expect_error(text, tail);
    write_file(pass_path, "\n");
    snprintf(text, sizeof(text), "%sstore:\n  driver: mssql\n  mssql: { server: s, user: u, password_file: %s }\n",
             base, pass_path);
    snprintf(tail, sizeof(tail), ":6:32: store.mssql.password_file: %s holds no password on its first line", pass_path);
    expect_error(text, tail);
    snprintf(text, sizeof(text), "%sstore:\n  driver: mssql\n  mssql: { server: s, user: u, password: p,\n"
                                 "           password_file: %s }\n", base, pass_path);
    expect_error(text, ":7:12: store.mssql.password_file: expected either store.mssql.password or "
                       "store.mssql.password_file, got both");
    snprintf(text, sizeof(text), "%sstore:\n  sqlite: { directory: d }\n  mssql: { schema: \"dbo.x\", encrypt: yes }\n", base);
    static const char *const shape[] = {
        ":6:12: store.mssql.schema: expected a name matching ^[A-Za-z_][A-Za-z0-9_]{0,127}$, got \"dbo.x\"",
        ":6:29: store.mssql.encrypt: expected off, request or require, got \"yes\"",
    };
    expect_errors(text, 2, shape);
}
END_TEST

START_TEST(test_lists)
{
    expect_error(MINIMAL "tenants: { allow: [ ok1, \"bad-name\" ] }\n",
                 ":9:26: tenants.allow[1]: expected a tenant name matching ^[A-Za-z0-9][A-Za-z0-9_]{0,51}$, "
                 "got \"bad-name\"");
    expect_error(MINIMAL "tenants: { allow: _x }\n",
                 ":9:12: tenants.allow: expected a tenant name matching ^[A-Za-z0-9][A-Za-z0-9_]{0,51}$, got \"_x\"");
    expect_error(MINIMAL "tenants:\n  block_tables:\n    - ok\n    - 1abc\n",
                 ":12:7: tenants.block_tables[1]: expected a name matching ^[A-Za-z_][A-Za-z0-9_]{0,127}$, got \"1abc\"");
    expect_error(MINIMAL "hooks: { cycle_completed: [ [ a ] ] }\n",
                 ":9:29: hooks.cycle_completed[0]: expected a program or argument, got a list");
}
END_TEST

#define LISTEN_REST "application: { id: x, private_key: k }\nvendor: { certificates: c }\n" \
                    "store: { sqlite: { directory: d } }\n"

/* A listen entry refused, saying what was expected. */
static void expect_listen_refused(const char *address, const char *expected)
{
    char text[1024], tail[256];
    snprintf(text, sizeof(text), "listen: [ \"%s\" ]\n%s", address, LISTEN_REST);
    snprintf(tail, sizeof(tail), ":1:11: listen[0]: expected %s, got \"%s\"", expected, address);
    expect_error(text, tail);
}

START_TEST(test_listen_errors)
{
    const char *rest = LISTEN_REST;
    char text[1024];
    static const char *const bad[] = {"127.0.0.1", "::1:80", "[::1]80", "[nothost]:80", ":0", "h:65536", "a b:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_listen_refused(bad[i], "an address like 127.0.0.1:8080, [::1]:8080 or :8080");
    /* digits and dots that are not a whole IPv4 address: the resolver would read "1" as 0.0.0.1 */
    static const char *const short_v4[] = {"1:30", "127.1:80", "10.0.0:80", "1.2.3.4.5:80", "1..2.3:80"};
    for (size_t i = 0; i < sizeof(short_v4) / sizeof(short_v4[0]); i++)
        expect_listen_refused(short_v4[i], "an IPv4 address in full, four numbers like 127.0.0.1:8080");
    snprintf(text, sizeof(text), "listen:\n  - { address: \":1\", tls: { certificate: c } }\n%s", rest);
    expect_error(text, ": missing required key \"listen[0].tls.key\"");
    snprintf(text, sizeof(text), "listen:\n  - { tls: { certificate: c, key: k }, port: 1 }\n%s", rest);
    static const char *const two[] = {
        ":2:40: unknown key \"listen[0].port\"",
        ": missing required key \"listen[0].address\"",
    };
    expect_errors(text, 2, two);

    /* A mapping entry without tls is a plain HTTP listener. */
    snprintf(text, sizeof(text), "listen: [ \"127.0.0.1:1\", { address: \"[::1]:2\" },\n"
                                 "  { address: \":3\", tls: { certificate: c, key: k } } ]\n%s", rest);
    struct config *cfg = load_ok(text);
    ck_assert_int_eq(cfg->nlisten, 3);
    ck_assert_str_eq(cfg->listen[1].host, "::1");
    ck_assert_str_eq(cfg->listen[1].port, "2");
    ck_assert_ptr_null(cfg->listen[1].tls_certificate);
    ck_assert_ptr_null(cfg->listen[2].host);
    ck_assert_str_eq(cfg->listen[2].tls_key, "k");
    ck_assert_int_eq(cfg->listen[2].tls_min_version, TLS_FROM_1_2);   /* the default */
    ck_assert_ptr_null(cfg->listen[2].tls_ciphers);                     /* worker/tls.c's */
    ck_assert_ptr_null(cfg->listen[2].tls_ciphersuites);
    cfg_free(cfg);

    snprintf(text, sizeof(text), "listen: [ { address: \":3\", tls: { certificate: c, key: k, min_version: 1.3,\n"
                                 "  ciphers: \"ECDHE+AESGCM:!SHA384\", ciphersuites: TLS_AES_256_GCM_SHA384 } } ]\n%s",
             rest);
    cfg = load_ok(text);
    ck_assert_int_eq(cfg->listen[0].tls_min_version, TLS_FROM_1_3);
    ck_assert_str_eq(cfg->listen[0].tls_ciphers, "ECDHE+AESGCM:!SHA384");
    ck_assert_str_eq(cfg->listen[0].tls_ciphersuites, "TLS_AES_256_GCM_SHA384");
    cfg_free(cfg);
    snprintf(text, sizeof(text), "listen: [ { address: \":3\", tls: { certificate: c, key: k, ciphers: \"\" } } ]\n%s",
             rest);
    expect_error(text, ":1:59: listen[0].tls.ciphers: expected an OpenSSL cipher list, got \"\"");
    snprintf(text, sizeof(text), "listen: [ { address: \":3\", tls: { certificate: c, key: k, min_version: 1.1 } } ]\n%s",
             rest);
    expect_error(text, ":1:59: listen[0].tls.min_version: expected 1.2 or 1.3, got \"1.1\"");
}
END_TEST

START_TEST(test_yaml_errors)
{
    expect_error(MINIMAL "hooks: [\n",
                 ":10:1: YAML syntax error: did not find expected node content (while parsing a flow node)");
    expect_error("listen: :1\n  bad: indent\n",
                 ":2:6: YAML syntax error: mapping values are not allowed in this context");
    expect_error("- a\n- b\n", ":1:1: (top level): expected a mapping of keys, got a list");
    expect_error(MINIMAL "---\nworkers: 1\n", ":9:1: expected one YAML document, got more");
    /* bytes that are not UTF-8: libyaml gives an offset, told as a line and column too */
    expect_error(MINIMAL "user: \"ab\xff\"\n", ":9:10: YAML syntax error: invalid leading UTF-8 octet (byte 175)");
    /* counted as libyaml counts: a byte order mark is no column, a CR alone ends a line */
    expect_error("\xef\xbb\xbfuser: \"ab\xff\"\n", ":1:10: YAML syntax error: invalid leading UTF-8 octet (byte 12)");
    expect_error("workers: 1\ruser: \"ab\xff\"\r\n", ":2:10: YAML syntax error: invalid leading UTF-8 octet (byte 20)");
}
END_TEST

/* Deep nesting is refused before libyaml's scanner spends quadratic time on it. */
START_TEST(test_deep_nesting)
{
    size_t depth = 100000;
    char *text = malloc(depth + 16);
    memcpy(text, "listen: ", 8);
    memset(text + 8, '[', depth);
    strcpy(text + 8 + depth, "\n");
    time_t start = time(NULL);
    expect_error(text, ":1:40: nesting deeper than 32 levels");
    ck_assert_int_le(time(NULL) - start, 1);
    free(text);
}
END_TEST

START_TEST(test_unreadable)
{
    struct cfg_errors errs;
    char path[300];
    snprintf(path, sizeof(path), "%s/absent.yaml", tmpdir);
    cfg_errors_init(&errs);
    ck_assert_ptr_null(cfg_load(path, &errs));
    ck_assert_uint_eq(errs.n, 1);
    char expected[400];
    snprintf(expected, sizeof(expected), "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(errs.messages[0], expected);
    ck_assert_ptr_null(cfg_load(tmpdir, &errs));
    ck_assert_uint_eq(errs.n, 2);
    snprintf(expected, sizeof(expected), "%s: cannot open: not a regular file", tmpdir);
    ck_assert_str_eq(errs.messages[1], expected);
    /* a FIFO is refused at once: opening it to read would wait for a writer */
    snprintf(path, sizeof(path), "%s/fifo.yaml", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    alarm(5);
    ck_assert_ptr_null(cfg_load(path, &errs));
    ck_assert_ptr_null(cfg_read_status_socket(path));
    alarm(0);
    unlink(path);
    ck_assert_uint_eq(errs.n, 3);
    snprintf(expected, sizeof(expected), "%s: cannot open: not a regular file", path);
    ck_assert_str_eq(errs.messages[2], expected);
    cfg_errors_free(&errs);
    ck_assert_uint_eq(errs.n, 0);
}
END_TEST

START_TEST(test_all_errors_collected)
{
    static const char *const tails[] = {
        ":9:1: workers: expected auto or a number from 1 to 1024, got \"many\"",
        ":10:1: unknown key \"colour\"",
        ":11:11: limits.request_timeout: expected seconds or a duration like 5m, got \"1d\"",
    };
    expect_errors(MINIMAL "workers: many\ncolour: blue\nlimits: { request_timeout: 1d }\n", 3, tails);
}
END_TEST

/* A tag whose meaning reading the text would lose is refused where it is written; the core
 * schema's say nothing the text does not. */
START_TEST(test_yaml_tags)
{
    expect_error(MINIMAL "hooks: { table_sql: !!binary L2V0Yy9zcWw= }\n",
                 ":9:21: the YAML tag !!binary is not supported (values are read as their text; only the core "
                 "schema's tags, such as !!str, may be written)");
    static const char *const lost[][2] = {{"tenants: !local { max: 5 }\n", ":9:10: the YAML tag !local"},
                                          {"tenants: { allow: !!set { a: null } }\n", ":9:19: the YAML tag !!set"}};
    for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++) {
        char text[512], tail[512];
        snprintf(text, sizeof(text), MINIMAL "%s", lost[i][0]);
        snprintf(tail, sizeof(tail), "%s is not supported (values are read as their text; only the core schema's "
                 "tags, such as !!str, may be written)", lost[i][1]);
        expect_error(text, tail);
    }
    struct config *cfg = load_ok(MINIMAL "workers: !!int 3\nstatus_socket_mode: !!str 0660\n");
    ck_assert_int_eq(cfg->workers, 3);
    ck_assert_int_eq(cfg->status_socket_mode, 0660);
    cfg_free(cfg);
}
END_TEST

/* A few aliases are fine (a mapping shared by two keys); many are refused before the document
 * is walked, since each walks its anchor's node again. */
START_TEST(test_aliases_bounded)
{
    struct config *cfg = load_ok(MINIMAL "tenants: { allow: &a [ ok ], block_tables: *a }\n");
    ck_assert_uint_eq(cfg->block_tables.n, 1);
    ck_assert_str_eq(cfg->block_tables.items[0], "ok");
    cfg_free(cfg);
    struct buf text = BUF_INIT;
    buf_puts(&text, MINIMAL "tenants: { allow: &a [ ok ], block_tables: [ x ] }\nhooks:\n  cycle_completed: [");
    for (int i = 0; i < 65; i++)
        buf_puts(&text, i ? ", *a" : "*a");
    buf_puts(&text, "]\n");
    expect_error(text.data, ":11:277: more than 64 aliases (*name): a configuration needs a few at most");
    buf_free(&text);
}
END_TEST

/* The shortest of tries loads of MINIMAL with nkeys keys more (half unknown, half "workers"
 * again), each refused with every key but the first workers in error. */
static double keys_load_seconds(int nkeys, int tries)
{
    struct buf text = BUF_INIT;
    buf_puts(&text, MINIMAL);
    for (int i = 0; i < nkeys / 2; i++)
        buf_printf(&text, "unknown%d: 1\n", i);
    for (int i = 0; i < nkeys / 2; i++)
        buf_puts(&text, "workers: 1\n");
    double best = 0;
    for (int t = 0; t < tries; t++) {
        struct cfg_errors errs;
        double started = monotonic_seconds();
        ck_assert_ptr_null(load(text.data, &errs));
        double took = monotonic_seconds() - started;
        ck_assert_uint_eq(errs.found, (size_t)nkeys - 1);
        cfg_errors_free(&errs);
        best = t == 0 || took < best ? took : best;
    }
    buf_free(&text);
    return best;
}

/* A configuration wrong everywhere is told by its first 50 errors and a line saying more were
 * left out. */
START_TEST(test_errors_bounded)
{
    struct buf text = BUF_INIT;
    buf_puts(&text, MINIMAL);
    for (int i = 0; i < 200; i++)
        buf_printf(&text, "unknown%d: 1\n", i);
    struct cfg_errors errs;
    ck_assert_ptr_null(load(text.data, &errs));
    ck_assert_uint_eq(errs.n, 51);
    ck_assert_uint_eq(errs.found, 200);
    ck_assert_ptr_nonnull(strstr(errs.messages[49], "unknown key \"unknown49\""));
    ck_assert_str_eq(errs.messages[50], "(more errors left out: fix these first)");
    cfg_errors_free(&errs);
    /* what is parsed after the 50th error is still checked as wrong (a listen entry without its
     * address was taken for a good one, and crashed the loader) */
    buf_reset(&text);
    for (int i = 0; i < 60; i++)
        buf_printf(&text, "unknown%d: 1\n", i);
    buf_puts(&text, "listen:\n  - address: [ 1 ]\n");
    ck_assert_ptr_null(load(text.data, &errs));
    ck_assert_uint_eq(errs.n, 51);
    ck_assert_uint_gt(errs.found, 60);
    cfg_errors_free(&errs);
    /* A mapping of many keys (here unknown ones, then a known one again and again) is read in
     * time that grows with its size, not with its square (100,000 keys took minutes): ten times
     * the keys take about ten times as long, not a hundred. A ratio of times, as valgrind or a
     * busy host slows both alike; the best of a few tries of each. */
    double small = keys_load_seconds(4000, 3), large = keys_load_seconds(40000, 2);
    ck_assert_msg(large < 40 * small, "40,000 keys took %.3f s, 4,000 keys %.3f s", large, small);
    buf_free(&text);
}
END_TEST

START_TEST(test_explicit_state_file)
{
    struct config *cfg = load_ok(MINIMAL "pid_file: /run/a.pid\nstate_file: /var/lib/a.state\n");
    ck_assert_str_eq(cfg->state_file, "/var/lib/a.state");
    cfg_free(cfg);
    cfg = load_ok(MINIMAL "workers: auto\nstatus_socket_mode: 640\n");
    ck_assert_int_eq(cfg->status_socket_mode, 0640);
    ck_assert_int_ge(cfg->workers, 1);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_parse_size)
{
    size_t size = 7;
    ck_assert_int_eq(cfg_parse_size("0", &size), 0);
    ck_assert_uint_eq(size, 0);
    ck_assert_int_eq(cfg_parse_size("100", &size), 0);
    ck_assert_uint_eq(size, 100);
    ck_assert_int_eq(cfg_parse_size("100B", &size), 0);
    ck_assert_uint_eq(size, 100);
    ck_assert_int_eq(cfg_parse_size("3KiB", &size), 0);
    ck_assert_uint_eq(size, 3072);
    ck_assert_int_eq(cfg_parse_size("64MiB", &size), 0);
    ck_assert_uint_eq(size, 64u << 20);
    ck_assert_int_eq(cfg_parse_size("2 GiB", &size), 0);
    ck_assert_uint_eq(size, 2ull << 30);
    size = 7;
    ck_assert_int_eq(cfg_parse_size("", &size), -1);
    ck_assert_int_eq(cfg_parse_size("MiB", &size), -1);
    ck_assert_int_eq(cfg_parse_size("1MB", &size), -1);
    ck_assert_int_eq(cfg_parse_size("-1", &size), -1);
    ck_assert_int_eq(cfg_parse_size("1.5MiB", &size), -1);
    ck_assert_int_eq(cfg_parse_size("99999999999999999999", &size), CFG_TOO_LARGE);
    ck_assert_int_eq(cfg_parse_size("18014398509481984GiB", &size), CFG_TOO_LARGE);
    ck_assert_int_eq(cfg_parse_size("99999999999999999999 lots", &size), -1);
    ck_assert_uint_eq(size, 7);
}
END_TEST

START_TEST(test_parse_duration)
{
    int seconds = 7;
    ck_assert_int_eq(cfg_parse_duration("45", &seconds), 0);
    ck_assert_int_eq(seconds, 45);
    ck_assert_int_eq(cfg_parse_duration("300s", &seconds), 0);
    ck_assert_int_eq(seconds, 300);
    ck_assert_int_eq(cfg_parse_duration("5m", &seconds), 0);
    ck_assert_int_eq(seconds, 300);
    ck_assert_int_eq(cfg_parse_duration("2h", &seconds), 0);
    ck_assert_int_eq(seconds, 7200);
    seconds = 7;
    ck_assert_int_eq(cfg_parse_duration("soon", &seconds), -1);
    ck_assert_int_eq(cfg_parse_duration("1d", &seconds), -1);
    ck_assert_int_eq(cfg_parse_duration("5 min", &seconds), -1);
    ck_assert_int_eq(cfg_parse_duration("+5", &seconds), -1);
    ck_assert_int_eq(cfg_parse_duration("2147483648", &seconds), CFG_TOO_LARGE);
    ck_assert_int_eq(cfg_parse_duration("600000h", &seconds), CFG_TOO_LARGE);
    ck_assert_int_eq(cfg_parse_duration("99999999999999999999d", &seconds), -1);
    ck_assert_int_eq(seconds, 7);
}
END_TEST

START_TEST(test_database_name)
{
    struct config *cfg = load_ok(MINIMAL);
    char *name = cfg_database_name(cfg, "Cust1234");
    ck_assert_str_eq(name, "Mirror_Cust1234");
    free(name);
    cfg_free(cfg);
}
END_TEST

/* Where a key is written, for messages about what it names (a key file that does not open). */
START_TEST(test_where)
{
    struct config *cfg = load_ok("listen:\n"
                                 "  - \"127.0.0.1:8080\"\n"
                                 "  - { address: \"127.0.0.1:8443\", tls: { certificate: c.pem, key: k.pem } }\n"
                                 "application:\n"
                                 "  id: \"123\"\n"
                                 "  private_key: app.xml\n"
                                 "store:\n"
                                 "  sqlite: { directory: /var/lib/somirror }\n"
                                 "vendor:\n"
                                 "  certificates:\n"
                                 "    - one.crt\n"
                                 "    - two.crt\n");
    char out[400], want[400];
    snprintf(want, sizeof(want), "%s:6:3", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "application.private_key", out, sizeof(out)), want);
    snprintf(want, sizeof(want), "%s:12:7", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "vendor.certificates[1]", out, sizeof(out)), want);
    snprintf(want, sizeof(want), "%s:3:5", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "listen[1]", out, sizeof(out)), want);
    ck_assert_str_eq(cfg_where(cfg, "log.file", out, sizeof(out)), yaml_path);   /* a default */
    cfg_free(cfg);
    cfg = load_ok(MINIMAL);   /* a list in flow style: each item where it is on the line */
    snprintf(want, sizeof(want), "%s:8:19", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "vendor.certificates[0]", out, sizeof(out)), want);
    cfg_free(cfg);
    /* A single listen entry, without a list, is listen[0] to the checks after the load (the TLS
     * files): their messages say where its keys are too. */
    cfg = load_ok("listen:\n"
                  "  address: \"127.0.0.1:8443\"\n"
                  "  tls: { certificate: c.pem, key: k.pem }\n"
                  "application: { id: \"123\", private_key: app.xml }\n"
                  "store: { sqlite: { directory: /var/lib/somirror } }\n"
                  "vendor: { certificates: one.crt }\n");
    snprintf(want, sizeof(want), "%s:3:30", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "listen[0].tls.key", out, sizeof(out)), want);
    snprintf(want, sizeof(want), "%s:2:3", yaml_path);
    ck_assert_str_eq(cfg_where(cfg, "listen[0].address", out, sizeof(out)), want);
    cfg_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_unchecked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_sample);
    tcase_add_test(tc, test_all_keys);
    tcase_add_test(tc, test_postgresql);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_bad_duration);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_sizes_in_file);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_listen_overlaps);
    tcase_add_test(tc, test_missing_required);
    tcase_add_test(tc, test_store_errors);
    tcase_add_test(tc, test_lists);
    tcase_add_test(tc, test_listen_errors);
    tcase_add_test(tc, test_yaml_errors);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_unreadable);
    tcase_add_test(tc, test_all_errors_collected);
    tcase_add_test(tc, test_aliases_bounded);
    tcase_add_test(tc, test_yaml_tags);
    tcase_add_test(tc, test_errors_bounded);
    tcase_add_test(tc, test_explicit_state_file);
    tcase_add_test(tc, test_parse_size);
    tcase_add_test(tc, test_parse_duration);
    tcase_add_test(tc, test_database_name);
    tcase_add_test(tc, test_where);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(config_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
