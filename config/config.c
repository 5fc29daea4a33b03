/* config/config: reads somirrord.yaml (its document read by config/yamldoc) into a struct config.
 * Every key lives in one table below with its default (written as it would be in the file)
 * and its validation; defaults, parsing, required-key checks and freeing all walk that table.
 * Errors are collected, never fatal one by one: each names file:line:column and the dotted key. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "config/yamldoc.h"
#include "proto/types.h"

#define PASSWORD_FILE_MAX 4096
#define GOT_TEXT_MAX 60

enum key_kind {
    KEY_STRING,    /* a non-empty string (optionally checked) -> char * */
    KEY_SCALAR,    /* a scalar turned into a number or enum by convert -> that field */
    KEY_LIST,      /* a list of strings, or one string -> struct cfg_strings */
    KEY_SECTION,   /* a mapping described by keys */
    KEY_NODE,      /* any shape, parsed by parse_node (listen) */
};

struct loader;
struct key_spec;

/* Where a value was found: its dotted key and the position reported for it. */
struct place {
    const char *key;
    yaml_mark_t mark;
};

/* Checks a string's text; on failure writes what was expected to why. */
typedef bool check_fn(const char *text, const struct key_spec *spec, char *why, size_t whylen);
/* Converts a scalar's text into field; on failure writes what was expected to why. */
typedef bool convert_fn(const char *text, const struct key_spec *spec, void *field, char *why,
                        size_t whylen);
typedef void node_fn(struct loader *ld, const struct place *at, yaml_node_t *node, void *base);

struct key_spec {
    const char *name;
    enum key_kind kind;
    size_t offset;                   /* of the field in the struct being filled */
    const char *fallback;            /* the default, written as in the file; NULL: none */
    bool required;
    const char *noun;                /* KEY_STRING, KEY_LIST items: what is expected ("a path") */
    check_fn *check;                 /* KEY_STRING, KEY_LIST items: NULL accepts any text */
    convert_fn *convert;             /* KEY_SCALAR */
    const char *const *choices;      /* KEY_SCALAR by to_choice: the words, in value order */
    long long min, max;              /* KEY_SCALAR numbers: range; KEY_LIST: minimum items */
    const struct key_spec *keys;     /* KEY_SECTION */
    bool optional;                   /* KEY_SECTION: its required keys apply only when present */
    node_fn *parse_node;             /* KEY_NODE */
};

/* One key found in the file, for checks made after the whole file is read. */
struct seen_key {
    char *key;
    yaml_mark_t mark;
};

struct loader {
    const char *path;
    yaml_document_t doc;
    struct config *cfg;
    struct cfg_errors *errs;
    struct seen_key *seen;
    size_t nseen, seen_cap;
};

/* ---- error collection ---- */

void cfg_errors_init(struct cfg_errors *errs)
{
    errs->messages = NULL;
    errs->n = 0;
    errs->found = 0;
    errs->cap = 0;
}

/* A configuration that is wrong everywhere (a generated one, an alias of a bad mapping repeated)
 * is told by its first errors: no operator reads a thousand, and a reload writes each one to the
 * log. */
#define CFG_ERRORS_MAX 50

void cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...)
{
    errs->found++;
    if (errs->n > CFG_ERRORS_MAX)
        return;
    if (errs->n == CFG_ERRORS_MAX) {
        errs->messages = xgrow(errs->messages, &errs->cap, errs->n + 1, sizeof(*errs->messages));
        errs->messages[errs->n++] = xstrdup("(more errors left out: fix these first)");
        return;
    }
    struct buf msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    errs->messages = xgrow(errs->messages, &errs->cap, errs->n + 1, sizeof(*errs->messages));
    errs->messages[errs->n++] = buf_steal(&msg);
}

void cfg_errors_free(struct cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        free(errs->messages[i]);
    free(errs->messages);
    cfg_errors_init(errs);
}

__attribute__((format(printf, 4, 0)))
static void vreport(struct loader *ld, const yaml_mark_t *mark, const char *key, const char *fmt,
                    va_list ap)
{
    struct buf msg = BUF_INIT;
    buf_puts(&msg, ld->path);
    if (mark)
        buf_printf(&msg, ":%zu:%zu", mark->line + 1, mark->column + 1);
    buf_puts(&msg, ": ");
    if (key)
        buf_printf(&msg, "%s: ", key);
    buf_vprintf(&msg, fmt, ap);
    cfg_errors_add(ld->errs, "%s", msg.data);
    buf_free(&msg);
}

/* An error about the value at a place: "file:line:col: key: text". */
__attribute__((format(printf, 3, 4)))
static void report(struct loader *ld, const struct place *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, &at->mark, at->key, fmt, ap);
    va_end(ap);
}

/* An error at a position that belongs to no key: "file:line:col: text" (mark NULL: "file: text"). */
__attribute__((format(printf, 3, 4)))
static void report_at(struct loader *ld, const yaml_mark_t *mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, mark, NULL, fmt, ap);
    va_end(ap);
}

static bool is_null_scalar(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *text = (const char *)node->data.scalar.value;
    return strcmp(text, "") == 0 || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

/* "key: expected <why>, got <what the node is>". */
static void report_expected(struct loader *ld, const struct place *at, const yaml_node_t *node,
                            const char *why)
{
    if (node->type == YAML_MAPPING_NODE)
        report(ld, at, "expected %s, got a mapping", why);
    else if (node->type == YAML_SEQUENCE_NODE)
        report(ld, at, "expected %s, got a list", why);
    else if (is_null_scalar(node))
        report(ld, at, "expected %s, got nothing", why);
    else if (node->data.scalar.length > GOT_TEXT_MAX)
        report(ld, at, "expected %s, got \"%.*s...\"", why, GOT_TEXT_MAX,
               (const char *)node->data.scalar.value);
    else
        report(ld, at, "expected %s, got \"%s\"", why, (const char *)node->data.scalar.value);
}

/* The text of a scalar without NUL bytes, or NULL after reporting what was expected. */
static const char *scalar_text(struct loader *ld, const struct place *at, const yaml_node_t *node,
                               const char *why)
{
    if (node->type != YAML_SCALAR_NODE || is_null_scalar(node)) {
        report_expected(ld, at, node, why);
        return NULL;
    }
    const char *text = (const char *)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length) {
        report(ld, at, "expected %s, got text with a NUL character", why);
        return NULL;
    }
    return text;
}

/* ---- keys seen, by dotted name ---- */

static void seen_add(struct loader *ld, const char *key, yaml_mark_t mark)
{
    ld->seen = xgrow(ld->seen, &ld->seen_cap, ld->nseen + 1, sizeof(*ld->seen));
    ld->seen[ld->nseen].key = xstrdup(key);
    ld->seen[ld->nseen].mark = mark;
    ld->nseen++;
}

static const struct seen_key *seen_find(const struct loader *ld, const char *key)
{
    for (size_t i = 0; i < ld->nseen; i++)
        if (strcmp(ld->seen[i].key, key) == 0)
            return &ld->seen[i];
    return NULL;
}

static char *dotted_name(const char *prefix, const char *name)
{
    struct buf b = BUF_INIT;
    if (prefix)
        buf_printf(&b, "%s.%s", prefix, name);
    else
        buf_puts(&b, name);
    return buf_steal(&b);
}

/* ---- numbers, sizes and durations ---- */

/* Leading decimal digits of text into *value; *end after them. -1 without digits,
 * CFG_TOO_LARGE (with *end set) past what unsigned long long holds. */
static int parse_digits(const char *text, unsigned long long *value, const char **end)
{
    if (*text < '0' || *text > '9')
        return -1;
    char *stop;
    errno = 0;
    *value = strtoull(text, &stop, 10);
    *end = stop;
    return errno == ERANGE ? CFG_TOO_LARGE : 0;
}

struct unit {
    const char *suffix;
    unsigned long long factor;
};

/* A number with an optional unit from units (blanks allowed between) into *out: 0, -1 when
 * text is no such thing, CFG_TOO_LARGE when it is one above max. */
static int parse_with_unit(const char *text, const struct unit *units, unsigned long long max,
                           unsigned long long *out)
{
    unsigned long long number;
    const char *rest;
    int rc = parse_digits(text, &number, &rest);
    if (rc == -1)
        return -1;
    rest += strspn(rest, " ");
    for (const struct unit *u = units; u->suffix; u++) {
        if (strcmp(rest, u->suffix) != 0)
            continue;
        if (rc == CFG_TOO_LARGE || number > max / u->factor)
            return CFG_TOO_LARGE;
        *out = number * u->factor;
        return 0;
    }
    return -1;
}

int cfg_parse_size(const char *text, size_t *out)
{
    static const struct unit units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}, {NULL, 0},
    };
    unsigned long long bytes;
    int rc = parse_with_unit(text, units, SIZE_MAX, &bytes);
    if (rc == 0)
        *out = (size_t)bytes;
    return rc;
}

int cfg_parse_duration(const char *text, int *out)
{
    static const struct unit units[] = {
        {"", 1}, {"s", 1}, {"m", 60}, {"h", 3600}, {NULL, 0},
    };
    unsigned long long seconds;
    int rc = parse_with_unit(text, units, INT_MAX, &seconds);
    if (rc == 0)
        *out = (int)seconds;
    return rc;
}

/* ---- converters (KEY_SCALAR) ---- */

static bool to_number(const char *text, const struct key_spec *spec, void *field, char *why,
                      size_t whylen)
{
    unsigned long long value;
    const char *end;
    if (parse_digits(text, &value, &end) != 0 || *end != '\0' || value < (unsigned long long)spec->min ||
        value > (unsigned long long)spec->max) {
        snprintf(why, whylen, "a number from %lld to %lld", spec->min, spec->max);
        return false;
    }
    *(int *)field = (int)value;
    return true;
}

static bool to_workers(const char *text, const struct key_spec *spec, void *field, char *why,
                       size_t whylen)
{
    if (strcmp(text, "auto") != 0) {
        if (to_number(text, spec, field, why, whylen))
            return true;
        snprintf(why, whylen, "auto or a number from %lld to %lld", spec->min, spec->max);
        return false;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *(int *)field = (int)(cpus < spec->min ? spec->min : cpus > spec->max ? spec->max : cpus);
    return true;
}

static bool to_duration(const char *text, const struct key_spec *spec, void *field, char *why,
                        size_t whylen)
{
    int seconds = 0;
    int rc = cfg_parse_duration(text, &seconds);
    if (rc == -1) {
        snprintf(why, whylen, "seconds or a duration like 5m");
        return false;
    }
    if (rc == CFG_TOO_LARGE || seconds < spec->min || seconds > spec->max) {
        snprintf(why, whylen, "a duration from %lld to %lld seconds", spec->min, spec->max);
        return false;
    }
    *(int *)field = seconds;
    return true;
}

static bool to_size(const char *text, const struct key_spec *spec, void *field, char *why,
                    size_t whylen)
{
    size_t bytes = 0;
    int rc = cfg_parse_size(text, &bytes);
    if (rc == -1) {
        snprintf(why, whylen, "bytes or a size like 64MiB");
        return false;
    }
    if (rc == CFG_TOO_LARGE || bytes < (unsigned long long)spec->min || bytes > (unsigned long long)spec->max) {
        snprintf(why, whylen, "a size from %lld to %lld bytes", spec->min, spec->max);
        return false;
    }
    *(size_t *)field = bytes;
    return true;
}

static bool to_mode(const char *text, const struct key_spec *spec, void *field, char *why,
                    size_t whylen)
{
    size_t len = strlen(text);
    if (len == 0 || len > 4 || strspn(text, "01234567") != len || strtol(text, NULL, 8) > 0777) {
        snprintf(why, whylen, "an octal mode like 0600");
        return false;
    }
    int mode = (int)strtol(text, NULL, 8);
    if (!(mode & 0222)) {   /* connecting to a unix socket takes write permission */
        snprintf(why, whylen, "a mode that lets someone connect (a write bit, like 0600 or 0660)");
        return false;
    }
    *(int *)field = mode;
    return true;
}

/* Index of text in the NULL-terminated choices, or -1 with why listing them. */
static int choose(const char *text, const char *const *choices, char *why, size_t whylen)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(text, choices[i]) == 0)
            return i;
    struct buf list = BUF_INIT;
    for (int i = 0; choices[i]; i++)
        buf_printf(&list, "%s%s", i == 0 ? "" : choices[i + 1] ? ", " : " or ", choices[i]);
    snprintf(why, whylen, "%s", list.data);
    buf_free(&list);
    return -1;
}

static bool to_log_level(const char *text, const struct key_spec *spec, void *field, char *why,
                         size_t whylen)
{
    int level = log_level_parse(text);
    if (level < 0) {
        snprintf(why, whylen, "error, warn, info or debug");
        return false;
    }
    *(int *)field = level;
    return true;
}

_Static_assert(sizeof(enum store_kind) == sizeof(int) && sizeof(enum cfg_tls_version) == sizeof(int),
               "to_choice writes an int into these enum fields");

/* One of spec->choices, into an enum field (int-sized, see above). */
static bool to_choice(const char *text, const struct key_spec *spec, void *field, char *why,
                      size_t whylen)
{
    int value = choose(text, spec->choices, why, whylen);
    if (value < 0)
        return false;
    *(int *)field = value;
    return true;
}

static const char *const tls_version_names[] = {[TLS_FROM_1_2] = "1.2", [TLS_FROM_1_3] = "1.3", NULL};

static const char *const driver_names[] = {
    [STORE_SQLITE] = "sqlite", [STORE_MSSQL] = "mssql", [STORE_POSTGRESQL] = "postgresql", NULL,
};

/* ---- string checks (KEY_STRING, KEY_LIST items) ---- */

static bool is_word_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static bool check_tenant(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    size_t len = strlen(text);
    if (len >= 1 && len <= SM_TENANT_MAX && text[0] != '_' && strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz0123456789_") == len)
        return true;
    snprintf(why, whylen, "a tenant name matching ^[A-Za-z0-9][A-Za-z0-9_]{0,51}$");
    return false;
}

static bool check_identifier(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    size_t len = strlen(text);
    bool ok = len >= 1 && len <= SM_IDENT_MAX && !(text[0] >= '0' && text[0] <= '9');
    for (size_t i = 0; ok && i < len; i++)
        ok = is_word_char(text[i]);
    if (!ok)
        snprintf(why, whylen, "a name matching ^[A-Za-z_][A-Za-z0-9_]{0,127}$");
    return ok;
}

static bool check_template(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    static const char placeholder[] = "{tenant}";
    const char *at = strstr(text, placeholder);
    bool ok = at && !strstr(at + 1, placeholder);
    for (const char *p = text; ok && *p; p++) {
        if (p == at)
            p += strlen(placeholder) - 1;
        else
            ok = is_word_char(*p);
    }
    if (!ok)
        snprintf(why, whylen, "a name with {tenant} exactly once and otherwise only A-Z, a-z, 0-9 and _");
    return ok;
}

static bool check_encrypt(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    static const char *const modes[] = {"off", "request", "require", NULL};
    return choose(text, modes, why, whylen) >= 0;
}

/* Whether the len bytes of host are digits and dots but not an IPv4 address in full: "1" or
 * "127.1", which the resolver takes as 0.0.0.1 and 127.0.0.1 (inet_aton's short forms), where
 * a part was most likely left out. No host name is all digits and dots. */
static bool short_ipv4(const char *host, size_t len)
{
    char text[INET_ADDRSTRLEN];
    struct in_addr addr;
    if (len == 0 || strspn(host, "0123456789.") < len)
        return false;
    if (len >= sizeof(text))
        return true;
    memcpy(text, host, len);
    text[len] = '\0';
    return inet_pton(AF_INET, text, &addr) != 1;
}

/* Splits "host:port", "[v6]:port" or ":port"; host and port may be NULL to only check. */
static bool split_address(const char *text, char **host, char **port)
{
    const char *host_start = text, *host_end, *colon;
    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':')
            return false;
        colon = host_end + 1;
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr addr;
        size_t len = (size_t)(host_end - host_start);
        if (len == 0 || len >= sizeof(v6))
            return false;
        memcpy(v6, host_start, len);
        v6[len] = '\0';
        if (inet_pton(AF_INET6, v6, &addr) != 1 || IN6_IS_ADDR_V4MAPPED(&addr))
            return false;   /* a v4-mapped one cannot be bound: IPv6 listeners are IPv6-only */
    } else {
        colon = strchr(text, ':');
        if (!colon || strchr(colon + 1, ':'))
            return false;
        host_end = colon;
        size_t len = (size_t)(host_end - host_start);
        if (strspn(host_start, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") != len ||
            short_ipv4(host_start, len))
            return false;
    }
    const char *port_text = colon + 1;
    unsigned long long number;
    const char *end;
    if (parse_digits(port_text, &number, &end) != 0 || *end != '\0' || number < 1 || number > 65535)
        return false;
    if (host)
        *host = host_end > host_start ? xstrndup(host_start, (size_t)(host_end - host_start)) : NULL;
    if (port)
        *port = xstrdup(port_text);
    return true;
}

static bool check_address(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    if (split_address(text, NULL, NULL))
        return true;
    const char *colon = strchr(text, ':');
    if (strncasecmp(text, "[::ffff:", 8) == 0 && strchr(text, '.'))
        snprintf(why, whylen, "an IPv4 address written as such (a.b.c.d:port): an IPv6 listener "
                 "takes IPv6 connections only");
    else if (colon && short_ipv4(text, (size_t)(colon - text)))
        snprintf(why, whylen, "an IPv4 address in full, four numbers like 127.0.0.1:8080");
    else
        snprintf(why, whylen, "an address like 127.0.0.1:8080, [::1]:8080 or :8080");
    return false;
}

/* log.file: a path, or the word stderr or syslog. The words are lowercase; another spelling
 * (STDERR, Syslog) would silently be a file of that name. */
static bool check_log_file(const char *text, const struct key_spec *spec, char *why, size_t whylen)
{
    (void)spec;
    if ((strcasecmp(text, "stderr") && strcasecmp(text, "syslog")) || !strcmp(text, "stderr") ||
        !strcmp(text, "syslog"))
        return true;
    snprintf(why, whylen, "a path, stderr or syslog (lowercase; ./%s for a file of that name)", text);
    return false;
}

/* ---- the keys ---- */

#define FIELD(type, member) .offset = offsetof(type, member)
#define CFG(member) FIELD(struct config, member)
#define PATH_KEY(key, member) {.name = key, .kind = KEY_STRING, CFG(member), .noun = "a path"}
#define DURATION_KEY(key, member, dflt, lo, hi) \
    {.name = key, .kind = KEY_SCALAR, CFG(member), .fallback = dflt, .convert = to_duration, .min = lo, .max = hi}

static const struct key_spec listen_tls_keys[] = {
    {.name = "certificate", .kind = KEY_STRING, FIELD(struct cfg_listen, tls_certificate),
     .required = true, .noun = "a path"},
    {.name = "key", .kind = KEY_STRING, FIELD(struct cfg_listen, tls_key), .required = true,
     .noun = "a path"},
    {.name = "min_version", .kind = KEY_SCALAR, FIELD(struct cfg_listen, tls_min_version),
     .convert = to_choice, .choices = tls_version_names},   /* absent: TLS_FROM_1_2, the entry's zero */
    {.name = "ciphers", .kind = KEY_STRING, FIELD(struct cfg_listen, tls_ciphers),
     .noun = "an OpenSSL cipher list"},   /* checked against OpenSSL by worker/tls.c */
    {.name = "ciphersuites", .kind = KEY_STRING, FIELD(struct cfg_listen, tls_ciphersuites),
     .noun = "an OpenSSL list of TLS 1.3 suites"},
    {0},
};

static const struct key_spec listen_entry_keys[] = {
    {.name = "address", .kind = KEY_STRING, FIELD(struct cfg_listen, address), .required = true,
     .check = check_address},
    {.name = "tls", .kind = KEY_SECTION, .keys = listen_tls_keys, .optional = true},
    {0},
};

static const struct key_spec log_keys[] = {
    {.name = "file", .kind = KEY_STRING, CFG(log_file), .fallback = "stderr",
     .noun = "a path, stderr or syslog", .check = check_log_file},
    {.name = "level", .kind = KEY_SCALAR, CFG(log_level), .fallback = "info", .convert = to_log_level},
    {0},
};

static const struct key_spec application_keys[] = {
    {.name = "id", .kind = KEY_STRING, CFG(app_id), .required = true, .noun = "the application id"},
    {.name = "private_key", .kind = KEY_STRING, CFG(app_private_key), .required = true, .noun = "a path"},
    {0},
};

static const struct key_spec vendor_keys[] = {
    {.name = "certificates", .kind = KEY_LIST, CFG(vendor_certificates), .required = true,
     .noun = "a path", .min = 1},
    {.name = "issuer", .kind = KEY_STRING, CFG(vendor_issuer), .fallback = "SuperOffice AS",
     .noun = "the issuer name"},
    DURATION_KEY("clock_skew", clock_skew, "300", 0, 86400),
    {0},
};

static const struct key_spec tenants_keys[] = {
    {.name = "allow", .kind = KEY_LIST, CFG(tenants_allow), .check = check_tenant},
    {.name = "max", .kind = KEY_SCALAR, CFG(tenants_max), .fallback = "10000", .convert = to_number,
     .min = 1, .max = 1000000},
    DURATION_KEY("lock_timeout", lock_timeout, "60", 1, 86400),
    {.name = "block_tables", .kind = KEY_LIST, CFG(block_tables), .check = check_identifier},
    {0},
};

static const struct key_spec sqlite_keys[] = {
    PATH_KEY("directory", sqlite.directory),
    {.name = "max_open", .kind = KEY_SCALAR, CFG(sqlite.max_open), .fallback = "64",
     .convert = to_number, .min = 1, .max = 65536},
    {0},
};

static const struct key_spec mssql_keys[] = {
    {.name = "server", .kind = KEY_STRING, CFG(mssql.server), .noun = "host:port or host\\instance"},
    {.name = "user", .kind = KEY_STRING, CFG(mssql.user), .noun = "a login name"},
    {.name = "password", .kind = KEY_STRING, CFG(mssql.password), .noun = "a password"},
    PATH_KEY("password_file", mssql.password_file),
    {.name = "tds_version", .kind = KEY_STRING, CFG(mssql.tds_version), .fallback = "7.4",
     .noun = "a TDS version like 7.4"},
    {.name = "encrypt", .kind = KEY_STRING, CFG(mssql.encrypt), .fallback = "request",
     .check = check_encrypt},
    DURATION_KEY("login_timeout", mssql.login_timeout, "15", 1, 3600),
    DURATION_KEY("query_timeout", mssql.query_timeout, "300", 0, 86400),
    {.name = "schema", .kind = KEY_STRING, CFG(mssql.schema), .check = check_identifier},
    {.name = "collation", .kind = KEY_STRING, CFG(mssql.collation), .check = check_identifier},
    {.name = "max_connections", .kind = KEY_SCALAR, CFG(mssql.max_connections), .fallback = "16",
     .convert = to_number, .min = 1, .max = 65536},
    {0},
};

static const struct key_spec postgresql_keys[] = {
    {.name = "conninfo", .kind = KEY_STRING, CFG(postgresql.conninfo), .noun = "libpq connection keywords"},
    PATH_KEY("password_file", postgresql.password_file),
    {.name = "max_connections", .kind = KEY_SCALAR, CFG(postgresql.max_connections), .fallback = "16",
     .convert = to_number, .min = 1, .max = 65536},
    {0},
};

static const struct key_spec store_keys[] = {
    {.name = "driver", .kind = KEY_SCALAR, CFG(driver), .fallback = "sqlite", .convert = to_choice,
     .choices = driver_names},
    {.name = "database_name", .kind = KEY_STRING, CFG(database_name), .fallback = "Mirror_{tenant}",
     .check = check_template},
    DURATION_KEY("idle_timeout", store_idle_timeout, "60", 0, 86400),
    {.name = "sqlite", .kind = KEY_SECTION, .keys = sqlite_keys},
    {.name = "mssql", .kind = KEY_SECTION, .keys = mssql_keys},
    {.name = "postgresql", .kind = KEY_SECTION, .keys = postgresql_keys},
    {0},
};

static const struct key_spec limits_keys[] = {
    {.name = "max_request_bytes", .kind = KEY_SCALAR, CFG(max_request_bytes), .fallback = "64MiB",
     .convert = to_size, .min = 4096, .max = 1LL << 40},
    {.name = "arriving_request_bytes", .kind = KEY_SCALAR, CFG(arriving_request_bytes),
     .fallback = "256MiB", .convert = to_size, .min = 4096, .max = 1LL << 40},
    DURATION_KEY("request_timeout", request_timeout, "300", 1, 86400),
    DURATION_KEY("header_timeout", header_timeout, "30", 1, 3600),
    DURATION_KEY("keepalive_timeout", keepalive_timeout, "120", 0, 86400),
    {0},
};

static const struct key_spec hooks_keys[] = {
    PATH_KEY("table_sql", hooks.table_sql),
    {.name = "cycle_completed", .kind = KEY_LIST, CFG(hooks.cycle_completed), .noun = "a program or argument"},
    {.name = "table_changed", .kind = KEY_LIST, CFG(hooks.table_changed), .noun = "a program or argument"},
    DURATION_KEY("timeout", hooks.timeout, "60", 1, 86400),
    {0},
};

static void parse_listen(struct loader *ld, const struct place *at, yaml_node_t *node, void *base);

static const struct key_spec top_keys[] = {
    {.name = "listen", .kind = KEY_NODE, .required = true, .parse_node = parse_listen},
    {.name = "workers", .kind = KEY_SCALAR, CFG(workers), .fallback = "auto", .convert = to_workers,
     .min = 1, .max = 1024},
    PATH_KEY("pid_file", pid_file),
    {.name = "user", .kind = KEY_STRING, CFG(user), .noun = "a user name"},
    {.name = "group", .kind = KEY_STRING, CFG(group), .noun = "a group name"},
    PATH_KEY("status_socket", status_socket),
    {.name = "status_socket_mode", .kind = KEY_SCALAR, CFG(status_socket_mode), .fallback = "0600",
     .convert = to_mode},
    PATH_KEY("state_file", state_file),
    {.name = "log", .kind = KEY_SECTION, .keys = log_keys},
    {.name = "application", .kind = KEY_SECTION, .keys = application_keys},
    {.name = "vendor", .kind = KEY_SECTION, .keys = vendor_keys},
    {.name = "tenants", .kind = KEY_SECTION, .keys = tenants_keys},
    {.name = "store", .kind = KEY_SECTION, .keys = store_keys},
    {.name = "limits", .kind = KEY_SECTION, .keys = limits_keys},
    DURATION_KEY("shutdown_timeout", shutdown_timeout, "60", 0, 86400),
    {.name = "hooks", .kind = KEY_SECTION, .keys = hooks_keys},
    {0},
};

/* ---- walking the key tables ---- */

static void *field_of(void *base, const struct key_spec *spec)
{
    return (char *)base + spec->offset;
}

static void strings_free(struct cfg_strings *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

static void apply_defaults(const struct key_spec *keys, void *base)
{
    char why[160];
    for (const struct key_spec *spec = keys; spec->name; spec++) {
        if (spec->kind == KEY_SECTION)
            apply_defaults(spec->keys, base);
        else if (spec->fallback && spec->kind == KEY_STRING)
            *(char **)field_of(base, spec) = xstrdup(spec->fallback);
        else if (spec->fallback && !spec->convert(spec->fallback, spec, field_of(base, spec), why, sizeof(why)))
            abort();   /* a default that its own key rejects: a bug in the table above */
    }
}

static void free_fields(const struct key_spec *keys, void *base)
{
    for (const struct key_spec *spec = keys; spec->name; spec++) {
        if (spec->kind == KEY_SECTION)
            free_fields(spec->keys, base);
        else if (spec->kind == KEY_STRING)
            free(*(char **)field_of(base, spec));
        else if (spec->kind == KEY_LIST)
            strings_free(field_of(base, spec));
    }
}

/* Reports the absent keys of `keys` (under prefix) that are required, or that are sections
 * holding required keys. */
static void report_missing(struct loader *ld, const struct key_spec *keys, const char *prefix)
{
    for (const struct key_spec *spec = keys; spec->name; spec++) {
        char *key = dotted_name(prefix, spec->name);
        bool absent = !seen_find(ld, key);   /* a present key was checked where it was parsed */
        if (absent && spec->required)
            report_at(ld, NULL, "missing required key \"%s\"", key);
        else if (absent && spec->kind == KEY_SECTION && !spec->optional)
            report_missing(ld, spec->keys, key);
        free(key);
    }
}

static void parse_mapping(struct loader *ld, yaml_node_t *map, const struct key_spec *keys,
                          const char *prefix, void *base);

/* What a key expects, said of a value of the wrong shape: its noun, or what its check or
 * converter says of an empty text (which none of them accepts). */
static void expected_of(const struct key_spec *spec, char *why, size_t whylen)
{
    union {
        int number;
        size_t size;
        enum store_kind driver;
    } scratch;
    if (spec->noun)
        snprintf(why, whylen, "%s", spec->noun);
    else if (spec->check)
        spec->check("", spec, why, whylen);
    else
        spec->convert("", spec, &scratch, why, whylen);
}

static bool string_ok(struct loader *ld, const struct place *at, yaml_node_t *node,
                      const struct key_spec *spec, const char **out)
{
    char why[160];
    expected_of(spec, why, sizeof(why));
    const char *text = scalar_text(ld, at, node, why);
    if (!text)
        return false;
    if (text[0] == '\0' || (spec->check && !spec->check(text, spec, why, sizeof(why)))) {
        report_expected(ld, at, node, why);
        return false;
    }
    *out = text;
    return true;
}

static void parse_list(struct loader *ld, const struct place *at, yaml_node_t *node,
                       const struct key_spec *spec, struct cfg_strings *list)
{
    const char *text;
    strings_free(list);
    if (node->type != YAML_SEQUENCE_NODE) {
        if (string_ok(ld, at, node, spec, &text)) {
            list->items = xmalloc(sizeof(*list->items));
            list->items[list->n++] = xstrdup(text);
        }
        return;
    }
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (count < (size_t)spec->min) {
        report(ld, at, "expected at least %lld item(s), got an empty list", spec->min);
        return;
    }
    list->items = xcalloc(count ? count : 1, sizeof(*list->items));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        struct buf key = BUF_INIT;
        buf_printf(&key, "%s[%zu]", at->key, i);
        struct place item_at = {key.data, item->start_mark};
        seen_add(ld, key.data, item->start_mark);
        if (string_ok(ld, &item_at, item, spec, &text))
            list->items[list->n++] = xstrdup(text);
        buf_free(&key);
    }
}

static void parse_value(struct loader *ld, const struct place *at, yaml_node_t *node,
                        const struct key_spec *spec, void *base)
{
    void *field = field_of(base, spec);
    const char *text;
    char why[160];
    switch (spec->kind) {
    case KEY_STRING:
        if (string_ok(ld, at, node, spec, &text)) {
            free(*(char **)field);
            *(char **)field = xstrdup(text);
        }
        break;
    case KEY_SCALAR:
        expected_of(spec, why, sizeof(why));
        text = scalar_text(ld, at, node, why);
        if (text && !spec->convert(text, spec, field, why, sizeof(why)))
            report_expected(ld, at, node, why);
        break;
    case KEY_LIST:
        parse_list(ld, at, node, spec, field);
        break;
    case KEY_SECTION:
        if (node->type != YAML_MAPPING_NODE)
            report_expected(ld, at, node, "a mapping");
        else
            parse_mapping(ld, node, spec->keys, at->key, base);
        break;
    case KEY_NODE:
        spec->parse_node(ld, at, node, base);
        break;
    }
}

static const struct key_spec *find_key(const struct key_spec *keys, const char *name)
{
    for (const struct key_spec *spec = keys; spec->name; spec++)
        if (strcmp(spec->name, name) == 0)
            return spec;
    return NULL;
}

static void parse_mapping(struct loader *ld, yaml_node_t *map, const struct key_spec *keys,
                          const char *prefix, void *base)
{
    /* Where each of keys was first given in this mapping: a key given twice is found without
     * looking back through the mapping for every key, which took the square of the keys' number
     * (100,000 unknown keys in a 1 MB file held -t, or the master at a reload, for minutes). */
    size_t nkeys = 0;
    while (keys[nkeys].name)
        nkeys++;
    const yaml_node_t **firsts = xcalloc(nkeys, sizeof(*firsts));
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *value = yaml_document_get_node(&ld->doc, pair->value);
        if (key_node->type != YAML_SCALAR_NODE ||
            strlen((const char *)key_node->data.scalar.value) != key_node->data.scalar.length) {
            struct place at = {prefix ? prefix : "(top level)", key_node->start_mark};
            report_expected(ld, &at, key_node, "a key name (without a NUL character)");
            continue;
        }
        const char *name = (const char *)key_node->data.scalar.value;
        char *key = dotted_name(prefix, name);
        const struct key_spec *spec = find_key(keys, name);
        const yaml_node_t **first = spec ? &firsts[spec - keys] : NULL;
        if (!spec) {
            report_at(ld, &key_node->start_mark, "unknown key \"%s\"", key);
        } else if (*first) {
            report_at(ld, &key_node->start_mark, "duplicate key \"%s\" (first at line %zu)", key,
                      (*first)->start_mark.line + 1);
        } else {
            *first = key_node;
            struct place at = {key, key_node->start_mark};
            seen_add(ld, key, key_node->start_mark);
            parse_value(ld, &at, value, spec, base);
        }
        free(key);
    }
    free(firsts);
    report_missing(ld, keys, prefix);
}

/* How a listen host binds: the family's every address (NULL and 0.0.0.0, or ::), one address
 * (a literal, in addr), or a name (resolved at start). */
enum bind_kind { BIND_ANY, BIND_ADDRESS, BIND_NAME };

static enum bind_kind classify_listen_host(const char *host, int *family, unsigned char addr[16])
{
    memset(addr, 0, 16);
    *family = AF_UNSPEC;
    if (!host || inet_pton(AF_INET, host, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        *family = AF_INET6;
    else
        return BIND_NAME;
    static const unsigned char zero[16] = {0};
    return memcmp(addr, zero, 16) == 0 ? BIND_ANY : BIND_ADDRESS;
}

/* Whether two listen entries would take the same port on one address, so that the second bind
 * fails at start (after -t passed): the same address, or one that the other's "any address" of
 * the same family covers. */
static bool listens_overlap(const struct cfg_listen *a, const struct cfg_listen *b)
{
    if (strtoul(a->port, NULL, 10) != strtoul(b->port, NULL, 10))
        return false;
    int fa, fb;
    unsigned char aa[16], ab[16];
    enum bind_kind ka = classify_listen_host(a->host, &fa, aa);
    enum bind_kind kb = classify_listen_host(b->host, &fb, ab);
    if (ka == BIND_NAME || kb == BIND_NAME)
        return ka == kb && strcasecmp(a->host, b->host) == 0;
    return fa == fb && (ka == BIND_ANY || kb == BIND_ANY || memcmp(aa, ab, 16) == 0);
}

static void listen_entry_free(struct cfg_listen *entry)
{
    free_fields(listen_entry_keys, entry);
    free(entry->host);
    free(entry->port);
}

static void parse_listen_entry(struct loader *ld, const struct place *at, yaml_node_t *node,
                               struct config *cfg, size_t *cap)
{
    struct cfg_listen entry = {0};
    size_t errors_before = ld->errs->found;
    if (node->type == YAML_MAPPING_NODE)
        parse_mapping(ld, node, listen_entry_keys, at->key, &entry);
    else
        parse_value(ld, at, node, &listen_entry_keys[0], &entry);
    if (ld->errs->found != errors_before) {
        free_fields(listen_entry_keys, &entry);
        return;
    }
    split_address(entry.address, &entry.host, &entry.port);
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (listens_overlap(&cfg->listen[i], &entry)) {
            report(ld, at, "expected each port once per address: %s takes the port that %s (listen[%zu]) "
                   "takes", entry.address, cfg->listen[i].address, i);
            listen_entry_free(&entry);
            return;
        }
    cfg->listen = xgrow(cfg->listen, cap, cfg->nlisten + 1, sizeof(*cfg->listen));
    cfg->listen[cfg->nlisten++] = entry;
}

/* listen: one address, or a list of addresses and {address, tls} mappings. */
static void parse_listen(struct loader *ld, const struct place *at, yaml_node_t *node, void *base)
{
    size_t cap = 0;
    if (node->type != YAML_SEQUENCE_NODE) {
        size_t first = ld->nseen;
        parse_listen_entry(ld, at, node, base, &cap);
        size_t end = ld->nseen;
        /* A single entry is a list of one: where its keys are is known by listen[0]'s names
         * too, which the checks after the load use (worker/tls.c: "listen[0].tls.key"). */
        seen_add(ld, "listen[0]", node->start_mark);
        for (size_t i = first; i < end; i++) {
            struct buf key = BUF_INIT;
            buf_printf(&key, "listen[0]%s", ld->seen[i].key + strlen(at->key));
            seen_add(ld, key.data, ld->seen[i].mark);
            buf_free(&key);
        }
        return;
    }
    yaml_node_item_t *items = node->data.sequence.items.start;
    size_t count = (size_t)(node->data.sequence.items.top - items);
    if (count == 0)
        report(ld, at, "expected at least one address, got an empty list");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *entry = yaml_document_get_node(&ld->doc, items[i]);
        struct buf key = BUF_INIT;
        buf_printf(&key, "%s[%zu]", at->key, i);
        struct place entry_at = {key.data, entry->start_mark};
        seen_add(ld, key.data, entry->start_mark);
        parse_listen_entry(ld, &entry_at, entry, base, &cap);
        buf_free(&key);
    }
}

/* ---- checks made once the whole file is read ---- */

/* Where key was written in the file (no line when it was not). */
static struct place place_of(const struct loader *ld, const char *key)
{
    const struct seen_key *seen = seen_find(ld, key);
    struct place at = {key, {0}};
    if (seen)
        at.mark = seen->mark;
    return at;
}

static void require_for_driver(struct loader *ld, const char *value, const char *key)
{
    if (!value)
        report_at(ld, NULL, "missing required key \"%s\" (store.driver is %s)", key,
                  driver_names[ld->cfg->driver]);
}

const char *cfg_secret_exposed(const char *path, char *out, size_t outlen)
{
    struct stat st;
    out[0] = '\0';
    if (path && stat(path, &st) == 0 && (st.st_mode & S_IROTH))
        snprintf(out, outlen, "%s is readable by every user (mode %04o); 0600, or 0640 with the "
                 "group somirrord runs as, is enough", path, (unsigned)(st.st_mode & 07777));
    return out;
}

int cfg_conninfo_may_hold_password(const char *conninfo)
{
    return conninfo && (strstr(conninfo, "password") || strchr(conninfo, '@'));
}

/* Whether conninfo writes a password: the keyword (key=value form, or a URI's ?password=), or
 * a URI's user:password@ (a URI's user@ alone holds none). Narrower than
 * cfg_conninfo_may_hold_password, which errs the other way as it hides libpq's messages. */
static int conninfo_holds_password(const char *conninfo)
{
    if (strstr(conninfo, "password"))
        return 1;
    const char *scheme = strstr(conninfo, "://");
    const char *userinfo = scheme ? scheme + 3 : NULL;
    const char *at = userinfo ? strchr(userinfo, '@') : NULL;
    return at && memchr(userinfo, ':', (size_t)(at - userinfo)) != NULL;
}

/* A password written in the configuration file itself (key): the warning cfg_secret_exposed
 * gives of a key or password file, here of the configuration file. */
static void warn_secret_in_exposed_config(struct loader *ld, const char *key)
{
    char exposed[PATH_MAX + 128];
    if (!*cfg_secret_exposed(ld->path, exposed, sizeof(exposed)))
        return;
    struct place at = place_of(ld, key);
    log_warn("%s:%zu:%zu: %s: a password in the configuration file: %s", ld->path, (size_t)at.mark.line + 1,
             (size_t)at.mark.column + 1, key, exposed);
}

/* Reads password_file (one line; the trailing newline cut) into *password. */
static void read_password(struct loader *ld, const char *section, const char *password_file,
                          char **password, bool required)
{
    char *file_key = dotted_name(section, "password_file");
    char *inline_key = dotted_name(section, "password");
    struct place at = place_of(ld, file_key);
    if (password_file && *password) {
        report(ld, &at, "expected either %s or %s, got both", inline_key, file_key);
    } else if (password_file) {
        const char *why;
        FILE *f = fopen_regular(password_file, &why);
        char text[PASSWORD_FILE_MAX + 1];
        size_t len = f ? fread(text, 1, sizeof(text), f) : 0;
        if (!f || ferror(f)) {
            report(ld, &at, "cannot read %s: %s", password_file, f ? strerror(errno) : why);
        } else {
            text[len < sizeof(text) ? len : sizeof(text) - 1] = '\0';
            text[strcspn(text, "\r\n")] = '\0';
            if (len > PASSWORD_FILE_MAX)
                report(ld, &at, "%s is longer than %d bytes", password_file, PASSWORD_FILE_MAX);
            else if (text[0] == '\0')
                report(ld, &at, "%s holds no password on its first line", password_file);
            else
                *password = xstrdup(text);
            char exposed[PATH_MAX + 128];
            if (*cfg_secret_exposed(password_file, exposed, sizeof(exposed)))
                log_warn("%s:%zu:%zu: %s: %s", ld->path, (size_t)at.mark.line + 1,
                         (size_t)at.mark.column + 1, file_key, exposed);
        }
        explicit_bzero(text, sizeof(text));
        if (f)
            fclose(f);
    } else if (required && !*password) {
        report_at(ld, NULL, "missing required key \"%s\" or \"%s\" (store.driver is %s)", inline_key,
                  file_key, driver_names[ld->cfg->driver]);
    } else if (*password) {
        warn_secret_in_exposed_config(ld, inline_key);
    }
    free(inline_key);
    free(file_key);
}

static void check_store(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    size_t name_max = 244;   /* sqlite: "<name>.db-journal" (and -wal, -shm) within NAME_MAX */
    switch (cfg->driver) {
    case STORE_SQLITE:
        require_for_driver(ld, cfg->sqlite.directory, "store.sqlite.directory");
        break;
    case STORE_MSSQL:
        require_for_driver(ld, cfg->mssql.server, "store.mssql.server");
        require_for_driver(ld, cfg->mssql.user, "store.mssql.user");
        read_password(ld, "store.mssql", cfg->mssql.password_file, &cfg->mssql.password, true);
        name_max = 128;
        break;
    case STORE_POSTGRESQL:
        require_for_driver(ld, cfg->postgresql.conninfo, "store.postgresql.conninfo");
        if (cfg->postgresql.conninfo && conninfo_holds_password(cfg->postgresql.conninfo))
            warn_secret_in_exposed_config(ld, "store.postgresql.conninfo");
        read_password(ld, "store.postgresql", cfg->postgresql.password_file, &cfg->postgresql.password,
                      false);
        name_max = 63;
        break;
    }
    size_t fixed = strlen(cfg->database_name) - strlen("{tenant}");
    if (fixed + SM_TENANT_MAX > name_max) {
        struct place at = place_of(ld, "store.database_name");
        report(ld, &at, "expected at most %zu characters besides {tenant} with store.driver %s, got \"%s\"",
               name_max - SM_TENANT_MAX, driver_names[cfg->driver], cfg->database_name);
    }
}

int cfg_log_to_file(const struct config *cfg)
{
    return strcmp(cfg->log_file, "stderr") != 0 && strcmp(cfg->log_file, "syslog") != 0;
}

static char *base_directory;   /* see cfg_set_base_directory */

void cfg_set_base_directory(const char *dir)
{
    free(base_directory);
    base_directory = dir ? xstrdup(dir) : NULL;
}

static void make_absolute(char **path)
{
    if (!base_directory || !*path || (*path)[0] == '/' || (*path)[0] == '\0')
        return;
    struct buf full = BUF_INIT;
    buf_printf(&full, "%s/%s", base_directory, *path);
    free(*path);
    *path = buf_steal(&full);
}

/* Every path key of the table above. */
static void make_paths_absolute(struct config *cfg)
{
    char **paths[] = {&cfg->pid_file, &cfg->status_socket, &cfg->state_file, &cfg->app_private_key,
                      &cfg->sqlite.directory, &cfg->mssql.password_file,
                      &cfg->postgresql.password_file, &cfg->hooks.table_sql};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        make_absolute(paths[i]);
    if (cfg_log_to_file(cfg))
        make_absolute(&cfg->log_file);
    for (size_t i = 0; i < cfg->vendor_certificates.n; i++)
        make_absolute(&cfg->vendor_certificates.items[i]);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        make_absolute(&cfg->listen[i].tls_certificate);
        make_absolute(&cfg->listen[i].tls_key);
    }
}

/* A hook's first item is its program: an absolute path (no shell, no PATH search). */
static void check_hook_program(struct loader *ld, const char *key, const struct cfg_strings *hook)
{
    if (hook->n == 0 || hook->items[0][0] == '/')
        return;
    struct place at = place_of(ld, key);
    report(ld, &at, "expected the program as an absolute path, got \"%s\"", hook->items[0]);
}

static void check_whole(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    make_paths_absolute(cfg);
    check_hook_program(ld, "hooks.cycle_completed", &cfg->hooks.cycle_completed);
    check_hook_program(ld, "hooks.table_changed", &cfg->hooks.table_changed);
    check_store(ld);
    if (cfg->group && !cfg->user) {
        struct place at = place_of(ld, "group");
        report(ld, &at, "group applies only with user (the privilege drop); set user too, or remove group");
    }
    if (!cfg->state_file && cfg->pid_file) {
        struct buf state = BUF_INIT;
        buf_printf(&state, "%s.state", cfg->pid_file);
        cfg->state_file = buf_steal(&state);
    }
}

/* ---- loading ---- */

/* Whether event starts a node (a key or a value, when in a mapping). */
static bool starts_node(const yaml_event_t *event)
{
    return event->type == YAML_SCALAR_EVENT || event->type == YAML_ALIAS_EVENT ||
           event->type == YAML_SEQUENCE_START_EVENT || event->type == YAML_MAPPING_START_EVENT;
}

char *cfg_read_status_socket(const char *path)
{
    struct yamldoc_error err;
    FILE *file = yamldoc_open(path, &err);
    if (!file)
        return NULL;
    yaml_parser_t parser;
    yaml_event_t event;
    int depth = 0;   /* open mappings and sequences */
    bool root_mapping = false, want_key = true, socket_key = false, done = false;
    char *found = NULL;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, file);
    while (!done && yaml_parser_parse(&parser, &event)) {
        if (depth == 1 && root_mapping && starts_node(&event)) {
            bool scalar = event.type == YAML_SCALAR_EVENT;
            const char *text = scalar ? (const char *)event.data.scalar.value : "";
            if (!want_key && socket_key && text[0] != '\0')
                found = xstrdup(text);
            socket_key = want_key && scalar && strcmp(text, "status_socket") == 0;
            want_key = !want_key;
        }
        if (event.type == YAML_MAPPING_START_EVENT && depth == 0)
            root_mapping = true;
        if (event.type == YAML_MAPPING_START_EVENT || event.type == YAML_SEQUENCE_START_EVENT)
            depth++;
        else if (event.type == YAML_MAPPING_END_EVENT || event.type == YAML_SEQUENCE_END_EVENT)
            depth--;
        done = found || event.type == YAML_STREAM_END_EVENT || (root_mapping && depth == 0) ||
               depth > YAMLDOC_NESTING_MAX;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    fclose(file);
    return found;
}

struct config *cfg_load(const char *path, struct cfg_errors *errs)
{
    struct loader ld = {.path = path, .errs = errs};
    size_t errors_before = errs->found;
    struct yamldoc_error err;
    if (yamldoc_load(path, &ld.doc, &err) != 0) {
        report_at(&ld, err.has_mark ? &err.mark : NULL, "%s", err.message);
        return NULL;
    }

    ld.cfg = xcalloc(1, sizeof(*ld.cfg));
    ld.cfg->path = xstrdup(path);
    apply_defaults(top_keys, ld.cfg);
    yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
    if (!root) {
        report_missing(&ld, top_keys, NULL);
    } else if (root->type != YAML_MAPPING_NODE) {
        struct place at = {"(top level)", root->start_mark};
        report_expected(&ld, &at, root, "a mapping of keys");
    } else {
        parse_mapping(&ld, root, top_keys, NULL, ld.cfg);
        if (errs->found == errors_before)
            check_whole(&ld);
    }
    yaml_document_delete(&ld.doc);
    ld.cfg->places = xcalloc(ld.nseen ? ld.nseen : 1, sizeof(*ld.cfg->places));
    for (size_t i = 0; i < ld.nseen; i++)
        ld.cfg->places[ld.cfg->nplaces++] = (struct cfg_place){
            ld.seen[i].key, ld.seen[i].mark.line + 1, ld.seen[i].mark.column + 1};
    free(ld.seen);
    if (errs->found != errors_before) {
        cfg_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void cfg_free(struct config *cfg)
{
    if (!cfg)
        return;
    if (cfg->mssql.password)
        explicit_bzero(cfg->mssql.password, strlen(cfg->mssql.password));
    free_fields(top_keys, cfg);
    for (size_t i = 0; i < cfg->nlisten; i++)
        listen_entry_free(&cfg->listen[i]);
    free(cfg->listen);
    if (cfg->postgresql.password) {
        explicit_bzero(cfg->postgresql.password, strlen(cfg->postgresql.password));
        free(cfg->postgresql.password);
    }
    for (size_t i = 0; i < cfg->nplaces; i++)
        free(cfg->places[i].key);
    free(cfg->places);
    free(cfg->path);
    free(cfg);
}

const char *cfg_where(const struct config *cfg, const char *key, char *out, size_t outlen)
{
    size_t len = strlen(key);
    const char *bracket = len && key[len - 1] == ']' ? strrchr(key, '[') : NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t want = pass == 0 ? len : bracket ? (size_t)(bracket - key) : 0;
        for (size_t i = 0; want && i < cfg->nplaces; i++)
            if (strlen(cfg->places[i].key) == want && strncmp(cfg->places[i].key, key, want) == 0) {
                snprintf(out, outlen, "%s:%zu:%zu", cfg->path, cfg->places[i].line,
                         cfg->places[i].column);
                return out;
            }
    }
    snprintf(out, outlen, "%s", cfg->path ? cfg->path : "(configuration)");
    return out;
}

void cfg_locate(const struct config *cfg, const char *key, char *msg, size_t msglen)
{
    char where[PATH_MAX + 64];
    char *text = xstrdup(msg);
    snprintf(msg, msglen, "%s: %s", cfg_where(cfg, key, where, sizeof(where)), text);
    free(text);
}

char *cfg_database_name(const struct config *cfg, const char *tenant)
{
    const char *template = cfg->database_name ? cfg->database_name : "Mirror_{tenant}";
    const char *at = strstr(template, "{tenant}");
    struct buf name = BUF_INIT;
    if (!at) {
        buf_puts(&name, template);
        return buf_steal(&name);
    }
    buf_append(&name, template, (size_t)(at - template));
    buf_puts(&name, tenant);
    buf_puts(&name, at + strlen("{tenant}"));
    return buf_steal(&name);
}
