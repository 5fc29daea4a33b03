/* task/cli: somirror-task's command line: one subcommand per job (keys, gen, provision,
 * churn, run, verify), getopt_long for the options, exit status 0 success, 1 failure (or a
 * difference found by verify), 2 usage or setup errors. */
#include "task/task.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "config/keys.h"
#include "proto/schema.h"

static const char usage_text[] =
    "usage: somirror-task COMMAND [OPTIONS]\n"
    "  keys --out DIR [--force]\n"
    "  gen --db FILE [--scale N] [--seed S] [--force]\n"
    "  provision --db FILE [--retention N]\n"
    "  churn --db FILE --changes N [--seed S]\n"
    "  run --once --url URL --app-id ID --vendor-key FILE --vendor-cert FILE\n"
    "      --app-public-key FILE --tenant CTX --db FILE [--batch-size BYTES]\n"
    "      [--skip-tables a,b] [--json] [--tries N] [--insecure]\n"
    "  run -c task.yaml [--once] [--json]\n"
    "  verify --db FILE --mirror FILE --tenant CTX [--skip-tables a,b]\n"
    "See somirror-task(1).\n";

enum option_id {
    OPT_OUT = 256, OPT_FORCE, OPT_DB, OPT_SCALE, OPT_SEED, OPT_RETENTION, OPT_CHANGES, OPT_ONCE,
    OPT_URL, OPT_APP_ID, OPT_VENDOR_KEY, OPT_VENDOR_CERT, OPT_APP_PUBLIC_KEY, OPT_TENANT,
    OPT_BATCH_SIZE, OPT_SKIP_TABLES, OPT_JSON, OPT_TRIES, OPT_INSECURE, OPT_MIRROR, OPT_CONFIG,
    OPT_HELP, OPT_VERSION
};
#define OPT(id) (1UL << ((id) - OPT_OUT))

static const struct option long_options[] = {
    {"out", required_argument, NULL, OPT_OUT},
    {"force", no_argument, NULL, OPT_FORCE},
    {"db", required_argument, NULL, OPT_DB},
    {"scale", required_argument, NULL, OPT_SCALE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"retention", required_argument, NULL, OPT_RETENTION},
    {"changes", required_argument, NULL, OPT_CHANGES},
    {"once", no_argument, NULL, OPT_ONCE},
    {"url", required_argument, NULL, OPT_URL},
    {"app-id", required_argument, NULL, OPT_APP_ID},
    {"vendor-key", required_argument, NULL, OPT_VENDOR_KEY},
    {"vendor-cert", required_argument, NULL, OPT_VENDOR_CERT},
    {"app-public-key", required_argument, NULL, OPT_APP_PUBLIC_KEY},
    {"tenant", required_argument, NULL, OPT_TENANT},
    {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
    {"skip-tables", required_argument, NULL, OPT_SKIP_TABLES},
    {"json", no_argument, NULL, OPT_JSON},
    {"tries", required_argument, NULL, OPT_TRIES},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"mirror", required_argument, NULL, OPT_MIRROR},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

struct args {
    const char *out, *db, *url, *app_id, *vendor_key, *vendor_cert, *app_public_key, *tenant;
    const char *skip_tables, *mirror, *config, *batch_size;
    long scale, retention, changes, tries;
    uint64_t seed;
    int force, once, json, insecure;
    unsigned long given;   /* OPT() of each option given */
};

/* The options each command takes; any other is a usage error, not ignored. */
static const struct command {
    const char *name;
    unsigned long options;
} commands[] = {
    {"keys", OPT(OPT_OUT) | OPT(OPT_FORCE)},
    {"gen", OPT(OPT_DB) | OPT(OPT_SCALE) | OPT(OPT_SEED) | OPT(OPT_FORCE)},
    {"provision", OPT(OPT_DB) | OPT(OPT_RETENTION)},
    {"churn", OPT(OPT_DB) | OPT(OPT_CHANGES) | OPT(OPT_SEED)},
    {"run", OPT(OPT_ONCE) | OPT(OPT_URL) | OPT(OPT_APP_ID) | OPT(OPT_VENDOR_KEY) |
                OPT(OPT_VENDOR_CERT) | OPT(OPT_APP_PUBLIC_KEY) | OPT(OPT_TENANT) | OPT(OPT_DB) |
                OPT(OPT_BATCH_SIZE) | OPT(OPT_SKIP_TABLES) | OPT(OPT_JSON) | OPT(OPT_TRIES) |
                OPT(OPT_INSECURE)},
    {"verify", OPT(OPT_DB) | OPT(OPT_MIRROR) | OPT(OPT_TENANT) | OPT(OPT_SKIP_TABLES)},
};
/* run -c: the rest comes from task.yaml. */
#define RUN_CONFIG_OPTIONS (OPT(OPT_CONFIG) | OPT(OPT_ONCE) | OPT(OPT_JSON))

/* --scale past this would make more rows than a long counts (and than any test wants). */
#define SCALE_MAX 100000000L

static int parse_long(const char *text, const char *name, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (!*text || *end || errno == ERANGE || value < min || value > max) {
        fprintf(stderr, "somirror-task: --%s: expected a number from %ld to %ld, got \"%s\"\n",
                name, min, max, text);
        return -1;
    }
    *out = (long)value;
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->scale = 100;
    a->seed = 1;
    a->retention = -1;
    a->changes = -1;
    a->tries = 4;
    int c;
    long seed;
    while ((c = getopt_long(argc, argv, "c:h", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_OUT: a->out = optarg; break;
        case OPT_FORCE: a->force = 1; break;
        case OPT_DB: a->db = optarg; break;
        case OPT_SCALE: rc = parse_long(optarg, "scale", 1, SCALE_MAX, &a->scale); break;
        case OPT_SEED: rc = parse_long(optarg, "seed", 0, LONG_MAX, &seed); a->seed = (uint64_t)seed; break;
        case OPT_RETENTION: rc = parse_long(optarg, "retention", 0, LONG_MAX, &a->retention); break;
        case OPT_CHANGES: rc = parse_long(optarg, "changes", 0, LONG_MAX, &a->changes); break;
        case OPT_ONCE: a->once = 1; break;
        case OPT_URL: a->url = optarg; break;
        case OPT_APP_ID: a->app_id = optarg; break;
        case OPT_VENDOR_KEY: a->vendor_key = optarg; break;
        case OPT_VENDOR_CERT: a->vendor_cert = optarg; break;
        case OPT_APP_PUBLIC_KEY: a->app_public_key = optarg; break;
        case OPT_TENANT: a->tenant = optarg; break;
        case OPT_BATCH_SIZE: a->batch_size = optarg; break;
        case OPT_SKIP_TABLES: a->skip_tables = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_TRIES: rc = parse_long(optarg, "tries", 1, TASK_TRIES_MAX, &a->tries); break;
        case OPT_INSECURE: a->insecure = 1; break;
        case OPT_MIRROR: a->mirror = optarg; break;
        case 'c':
        case OPT_CONFIG: a->config = optarg; c = OPT_CONFIG; break;
        case 'h':
        case OPT_HELP: fputs(usage_text, stdout); exit(0);
        case OPT_VERSION: puts("somirror-task " PACKAGE_VERSION); exit(0);
        default: rc = -1; break;
        }
        if (rc != 0)
            return -1;
        a->given |= OPT(c);
    }
    if (optind < argc) {
        fprintf(stderr, "somirror-task: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Reports the first option given that command does not take. */
static int check_options(const struct command *command, const struct args *a)
{
    unsigned long takes = a->config && !strcmp(command->name, "run") ? RUN_CONFIG_OPTIONS
                                                                       : command->options;
    for (const struct option *o = long_options; o->name; o++) {
        if (o->val >= OPT_OUT && o->val < OPT_HELP && (a->given & ~takes & OPT(o->val))) {
            fprintf(stderr, "somirror-task %s%s: --%s does not apply\n%s", command->name,
                    takes == RUN_CONFIG_OPTIONS ? " -c" : "", o->name, usage_text);
            return -1;
        }
    }
    return 0;
}

/* Reports the first missing option of a command. */
static int require(const char *command, const char *const *names, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!values[i]) {
            fprintf(stderr, "somirror-task %s: --%s is required\n%s", command, names[i], usage_text);
            return -1;
        }
    }
    return 0;
}

static int report(const char *command, int rc, const char *err)
{
    if (rc != 0)
        fprintf(stderr, "somirror-task %s: %s\n", command, err);
    return rc == 0 ? 0 : TASK_EXIT_FAILED;
}

static int run_single(const struct args *a)
{
    const char *names[] = {"url", "app-id", "vendor-key", "vendor-cert", "app-public-key", "tenant", "db"};
    const char *values[] = {a->url, a->app_id, a->vendor_key, a->vendor_cert, a->app_public_key,
                            a->tenant, a->db};
    if (require("run", names, values, sizeof names / sizeof names[0]) != 0)
        return TASK_EXIT_USAGE;
    if (!a->once) {
        fprintf(stderr, "somirror-task run: without -c task.yaml, run does one cycle: add --once\n");
        return TASK_EXIT_USAGE;
    }
    if (!tenant_valid(a->tenant)) {
        fprintf(stderr, "somirror-task run: --tenant: \"%s\" is not a context identifier\n",
                a->tenant);
        return TASK_EXIT_USAGE;
    }
    size_t batch_size = TASK_DEFAULT_BATCH_SIZE;
    const char *why = a->batch_size ? taskconf_batch_size(a->batch_size, &batch_size) : NULL;
    if (why) {
        fprintf(stderr, "somirror-task run: --batch-size: %s, got \"%s\"\n", why, a->batch_size);
        return TASK_EXIT_USAGE;
    }
    char err[1024], warning[256] = "";
    struct vendor_cert cert = {0};
    struct cfg_strings skip = {0};
    EVP_PKEY *vendor_key = keys_load_private(a->vendor_key, err, sizeof err, warning, sizeof warning);
    EVP_PKEY *app_key = NULL;
    int rc = TASK_EXIT_USAGE;
    if (warning[0])
        log_warn("%s", warning);
    if (vendor_key && keys_load_cert(a->vendor_cert, &cert, err, sizeof err) == 0 &&
        (app_key = keys_load_public(a->app_public_key, err, sizeof err))) {
        task_strings_split(a->skip_tables, &skip);
        struct cycle_options o = {
            .url = a->url, .app_id = a->app_id, .tenant = a->tenant, .db_path = a->db,
            .vendor_key = vendor_key, .vendor_x5t = cert.x5t, .app_public_key = app_key,
            .batch_size = batch_size, .skip = &skip, .progress = isatty(STDERR_FILENO),
            .tries = (int)a->tries, .backoff_ms = 1000, .timeout_s = 300, .insecure = a->insecure,
        };
        rc = schedule_one(&o, a->json, stdout);
        task_strings_free(&skip);
    } else {
        fprintf(stderr, "somirror-task run: %s\n", err);
    }
    EVP_PKEY_free(app_key);
    EVP_PKEY_free(vendor_key);
    if (cert.cert)
        keys_cert_free(&cert);
    return rc;
}

static int run_verify(const struct args *a)
{
    const char *names[] = {"db", "mirror", "tenant"};
    const char *values[] = {a->db, a->mirror, a->tenant};
    if (require("verify", names, values, 3) != 0)
        return TASK_EXIT_USAGE;
    struct cfg_strings skip = {0};
    task_strings_split(a->skip_tables, &skip);
    struct verify_options o = {a->db, a->mirror, a->tenant, &skip};
    int rc = verify_run(&o, stdout);
    task_strings_free(&skip);
    return rc;
}

int task_main(int argc, char **argv)
{
    /* A receiver that goes away (its worker killed, a connection reset) while a request is
     * written is an error to report and retry: libevent and OpenSSL write with write(2), whose
     * SIGPIPE would end somirror-task without a word. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && !strcmp(argv[1], "--version")) {
            puts("somirror-task " PACKAGE_VERSION);
            return 0;
        }
        int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        fputs(usage_text, help ? stdout : stderr);
        return help ? 0 : TASK_EXIT_USAGE;
    }
    const char *command = argv[1];
    const struct command *known = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(command, commands[i].name))
            known = &commands[i];
    if (!known) {
        fprintf(stderr, "somirror-task: unknown command \"%s\"\n%s", command, usage_text);
        return TASK_EXIT_USAGE;
    }
    struct args a;
    if (parse_args(argc - 1, argv + 1, &a) != 0 || check_options(known, &a) != 0)
        return TASK_EXIT_USAGE;
    char err[1024] = "";
    if (!strcmp(command, "keys")) {
        const char *names[] = {"out"}, *values[] = {a.out};
        if (require(command, names, values, 1) != 0)
            return TASK_EXIT_USAGE;
        return report(command, keygen_run(a.out, a.force, err, sizeof err), err);
    }
    if (!strcmp(command, "gen")) {
        const char *names[] = {"db"}, *values[] = {a.db};
        if (require(command, names, values, 1) != 0)
            return TASK_EXIT_USAGE;
        struct gen_options o = {a.db, a.scale, a.seed, a.force};
        return report(command, gen_run(&o, err, sizeof err), err);
    }
    if (!strcmp(command, "provision")) {
        const char *names[] = {"db"}, *values[] = {a.db};
        if (require(command, names, values, 1) != 0)
            return TASK_EXIT_USAGE;
        return report(command, ct_provision(a.db, a.retention, err, sizeof err), err);
    }
    if (!strcmp(command, "churn")) {
        const char *names[] = {"db", "changes"};
        const char *values[] = {a.db, a.changes >= 0 ? "" : NULL};
        if (require(command, names, values, 2) != 0)
            return TASK_EXIT_USAGE;
        return report(command, churn_run(a.db, a.changes, a.seed, err, sizeof err), err);
    }
    if (!strcmp(command, "run")) {
        if (!a.config)
            return run_single(&a);
        struct schedule_options o = {a.config, a.once, a.json};
        return schedule_run(&o);
    }
    return run_verify(&a);
}
