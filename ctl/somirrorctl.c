/* ctl/somirrorctl: the admin client. Sends one command line to a running somirrord's status
 * socket and prints the answer; `tables CTX` instead reads the tenant's mirror metadata
 * directly through the store, and so does `resync CTX TABLE` before it sends, to refuse a
 * table the mirror lacks. Owns no shared state. A configuration that does not load (the
 * moment an operator most needs the client) still gives its top-level status_socket
 * (cfg_read_status_socket). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "ctl/commands.h"
#include "master/daemon.h"
#include "proto/fault.h"
#include "proto/schema.h"
#include "store/store.h"

enum {
    ANSWER_WAIT_DEFAULT_S = 60,
    ANSWER_WAIT_MAX_S = 86400
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: somirrorctl [-s SOCKET | -c CONFIG] [-w SECONDS] COMMAND [ARG...]\n"
            "       somirrorctl [-c CONFIG] tables CTX\n"
            "Commands: help, show info|workers|tenants|tenant CTX [json], metrics,\n"
            "          pause CTX|all, resume CTX|all, resync CTX TABLE|all, reset CTX, reload.\n"
            "CONFIG defaults to %s/somirrord.yaml; -w is how long to wait for the answer\n"
            "(default %d s).\n", SYSCONFDIR, ANSWER_WAIT_DEFAULT_S);
}

static void print_errors(const struct cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "somirrorctl: %s\n", errs->messages[i]);
}

static struct config *load_config(const char *path)
{
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(path, &errs);
    if (!cfg) {
        print_errors(&errs);
        fprintf(stderr, "somirrorctl: cannot use the configuration %s\n", path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

/* What to add to a message about a path from the configuration: a relative one is this
 * program's current directory's, and somirrord's is the directory it was started in. */
static const char *relative_hint(const char *path)
{
    return path[0] == '/' ? ""
                          : " (a relative path: taken from this current directory, while somirrord takes it "
                            "from the directory it was started in; run somirrorctl there, or make it "
                            "absolute)";
}

/* A timeout of SO_RCVTIMEO or SO_SNDTIMEO ran out: said as such, not as "Resource temporarily
 * unavailable". */
static void say_unanswered(const char *path, int wait_s)
{
    fprintf(stderr, "somirrorctl: no answer from %s within %d s (somirrord is busy or hung)\n", path,
            wait_s);
}

/* A connection to the status socket at path, whose connect, writes and reads wait wait_s seconds
 * at the most. */
static int connect_socket(const char *path, int wait_s)
{
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "somirrorctl: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Before the connect: a master that hangs stops accepting, and once its listen backlog is
     * full a unix socket's connect waits, for as long as SO_SNDTIMEO says (Linux). */
    struct timeval timeout = { .tv_sec = wait_s, .tv_usec = 0 };
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    }
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;
        const char *hint =
            e == ENOENT || e == ECONNREFUSED ? " (is somirrord running, with status_socket set?)"
            : e == EACCES ? " (status_socket_mode and the socket's owner decide who may use it)"
                          : "";
        if (e == EAGAIN || e == EWOULDBLOCK)
            say_unanswered(path, wait_s);
        else
            fprintf(stderr, "somirrorctl: cannot connect to %s: %s%s%s\n", path, strerror(e), hint,
                    relative_hint(path));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Sends line, prints the answer (waiting wait_s seconds for it at the most). 0, or 1 for an
 * error answer or a failure. */
static int run_command(const char *socket_path, const char *line, int wait_s)
{
    int fd = connect_socket(socket_path, wait_s);
    if (fd < 0)
        return 1;
    struct buf answer = BUF_INIT;
    int rc = 1;
    if (write_all(fd, line, strlen(line)) != 0 || shutdown(fd, SHUT_WR) != 0) {
        fprintf(stderr, "somirrorctl: cannot send to %s: %s\n", socket_path, strerror(errno));
        goto done;
    }
    char chunk[8192];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            say_unanswered(socket_path, wait_s);
            goto done;
        }
        if (n < 0) {
            fprintf(stderr, "somirrorctl: no answer from %s: %s\n", socket_path, strerror(errno));
            goto done;
        }
        buf_append(&answer, chunk, (size_t)n);
    }
    if (answer.len == 0) {
        fprintf(stderr, "somirrorctl: %s closed without an answer\n", socket_path);
        goto done;
    }
    fwrite(answer.data, 1, answer.len, stdout);
    rc = strncmp(answer.data, "error: ", 7) == 0 ? 1 : 0;
done:
    close(fd);
    buf_free(&answer);
    return rc;
}

static void print_time(int64_t t)
{
    char text[32] = "-";
    time_t tt = (time_t)t;
    struct tm tm;
    if (t > 0 && gmtime_r(&tt, &tm))
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fputs(text, stdout);
}

/* The tenant's metadata rows, read from its mirror through the store (in arena); a tenant
 * without a mirror is an error, and none is made for it. 0, or -1 with err set. */
static int read_tables(const struct config *cfg, const char *tenant, struct arena *arena,
                       struct table_meta **tables, size_t *n, char *err, size_t errlen)
{
    char why[512] = "";
    struct stat st;
    /* Opening the SQLite store makes its directory, as a worker needs: not for a look. */
    if (cfg->driver == STORE_SQLITE && stat(cfg->sqlite.directory, &st) != 0) {
        snprintf(err, errlen, "%s: no mirror (the mirror directory %s: %s)%s", tenant,
                 cfg->sqlite.directory, strerror(errno), relative_hint(cfg->sqlite.directory));
        return -1;
    }
    struct store *store = store_new(cfg, why, sizeof(why));
    if (!store) {
        snprintf(err, errlen, "cannot open the store: %s", why);
        return -1;
    }
    struct fault f;
    fault_clear(&f);
    struct store_tenant *t = NULL;
    int exists = 0, rc = -1;
    if (store_tenant_exists(store, tenant, &exists, &f) == 0 && !exists)
        snprintf(err, errlen, "%s: no mirror (the tenant has not called yet, or the name is wrong)%s",
                 tenant, cfg->driver == STORE_SQLITE ? relative_hint(cfg->sqlite.directory) : "");
    else if (f.code || !(t = store_tenant(store, tenant, &f)) ||
             store_list_tables(t, arena, tables, n, &f) != 0)
        snprintf(err, errlen, "%s: %s: %s", tenant, fault_code_name(f.code), f.message);
    else
        rc = 0;
    store_free(store);
    return rc;
}

/* A look at a tenant's tables (and, for resync, at one of them), run through daemon_run_as:
 * as the service's user when run as root where the service runs as user: (opening a SQLite
 * mirror can make its -wal and -shm files, which root's would make unusable to the service). */
struct tables_request {
    const struct config *cfg;
    const char *tenant;
    const char *table;
};

/* Prints the tenant's tables: status 0, or 1 with err. */
static int print_tables(void *arg, char *err, size_t errlen)
{
    const struct tables_request *r = arg;
    struct arena arena;
    arena_init(&arena);
    struct table_meta *tables = NULL;
    size_t n = 0;
    int status = read_tables(r->cfg, r->tenant, &arena, &tables, &n, err, errlen) == 0 ? 0 : 1;
    if (status == 0) {
        printf("table\tlsn\tschemahash\tupdated\n");
        for (size_t i = 0; i < n; i++) {
            printf("%s\t%lld\t%s\t", tables[i].name, (long long)tables[i].lsn, tables[i].hash);
            print_time(tables[i].updated);
            putchar('\n');
        }
        fflush(stdout);
    }
    arena_free(&arena);
    return status;
}

enum { TABLE_FOUND_OR_UNKNOWABLE = 0, TABLE_NOT_IN_MIRROR = 3 };

/* Whether the mirror has r->table (names compare in any case, as everywhere in the protocol):
 * TABLE_NOT_IN_MIRROR, said on stderr with the tables it has, or TABLE_FOUND_OR_UNKNOWABLE. A
 * check that cannot be made says nothing: somirrord's answer then says what becomes of a name
 * the mirror lacks. */
static int find_table(void *arg, char *err, size_t errlen)
{
    const struct tables_request *r = arg;
    struct arena arena;
    arena_init(&arena);
    struct table_meta *tables = NULL;
    size_t n = 0;
    int status = TABLE_FOUND_OR_UNKNOWABLE;
    if (read_tables(r->cfg, r->tenant, &arena, &tables, &n, err, errlen) == 0) {
        struct buf names = BUF_INIT;
        status = TABLE_NOT_IN_MIRROR;
        for (size_t i = 0; i < n && status == TABLE_NOT_IN_MIRROR; i++) {
            if (strcasecmp(tables[i].name, r->table) == 0)
                status = TABLE_FOUND_OR_UNKNOWABLE;
            buf_printf(&names, "%s%s", i ? ", " : "", tables[i].name);
        }
        if (status == TABLE_NOT_IN_MIRROR)
            fprintf(stderr, "somirrorctl: the mirror of %s has no table %s (its tables: %s); "
                    "nothing requested\n", r->tenant, r->table, n ? names.data : "none yet");
        buf_free(&names);
    }
    err[0] = '\0';
    arena_free(&arena);
    return status;
}

/* `tables CTX`: the tenant's metadata rows. */
static int list_tables(const char *config_path, const char *tenant)
{
    if (!tenant_valid(tenant)) {
        fprintf(stderr, "somirrorctl: not a tenant name: %s\n", tenant);
        return 1;
    }
    struct config *cfg = load_config(config_path);
    if (!cfg)
        return 1;
    char err[1200] = "";   /* a fault's message and the tenant's name */
    struct tables_request r = {cfg, tenant, NULL};
    int status = daemon_run_as(cfg->user, cfg->group, print_tables, &r, err, sizeof(err));
    if (status != 0)
        fprintf(stderr, "somirrorctl: %s\n", err[0] ? err : "cannot read the tables");
    cfg_free(cfg);
    return status == 0 ? 0 : 1;
}

/* `resync CTX TABLE`: somirrord learns a tenant's tables from the store only at its next
 * call, so a misspelt name would be accepted and then ignored. The client looks first, through
 * the store as `tables` does (as the service's user, in a child process when it switches: the
 * switch must not keep this one from the status socket). 1 if the mirror lacks the table; 0 to
 * go on. */
static int check_resync_table(const char *config_path, const char *tenant, const char *table)
{
    if (!tenant_valid(tenant))
        return 0;   /* somirrord's answer says why */
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(config_path, &errs);
    cfg_errors_free(&errs);
    if (!cfg)
        return 0;   /* socket_from_config reports the errors */
    char err[1200];
    struct tables_request r = {cfg, tenant, table};
    int status = daemon_run_as(cfg->user, cfg->group, find_table, &r, err, sizeof(err));
    cfg_free(cfg);
    return status == TABLE_NOT_IN_MIRROR ? 1 : 0;
}

/* The status socket of a configuration that does not load (errs says why): its status_socket
 * where one can still be read, else none (the key has no default). One line says which. */
static char *socket_despite_errors(const char *config_path, const struct cfg_errors *errs)
{
    char *path = cfg_read_status_socket(config_path);
    if (!path) {
        print_errors(errs);
        fprintf(stderr, "somirrorctl: cannot use the configuration %s, nor find a status_socket in "
                "it (the key has no default); give one with -s SOCKET\n", config_path);
    } else {
        fprintf(stderr, "somirrorctl: using status_socket %s of %s, which does not load (%s",
                path, config_path, errs->messages[0]);
        if (errs->found > 1)
            fprintf(stderr, "; %zu more errors", errs->found - 1);
        fputs(")\n", stderr);
    }
    return path;
}

/* The status socket named by the configuration's status_socket. */
static char *socket_from_config(const char *config_path)
{
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(config_path, &errs);
    char *path = NULL;
    if (!cfg)
        path = socket_despite_errors(config_path, &errs);
    else if (cfg->status_socket)
        path = xstrdup(cfg->status_socket);
    else
        fprintf(stderr, "somirrorctl: %s sets no status_socket; give one with -s SOCKET\n", config_path);
    cfg_free(cfg);
    cfg_errors_free(&errs);
    return path;
}

/* -w's seconds: a whole number from 1 to ANSWER_WAIT_MAX_S (0 would be SO_RCVTIMEO's "for
 * ever"). */
static int parse_wait(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || text[0] == '+' || text[0] == ' ' ||
        v < 1 || v > ANSWER_WAIT_MAX_S)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *socket_option = NULL, *config_path = SYSCONFDIR "/somirrord.yaml";
    int opt, config_given = 0, wait_s = ANSWER_WAIT_DEFAULT_S;
    static const struct option long_options[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "+s:c:w:hV", long_options, NULL)) != -1) {
        switch (opt) {
        case 's': socket_option = optarg; break;
        case 'c': config_path = optarg; config_given = 1; break;
        case 'w':
            if (parse_wait(optarg, &wait_s) != 0) {
                fprintf(stderr, "somirrorctl: -w: expected whole seconds from 1 to %d, got \"%s\"\n",
                        ANSWER_WAIT_MAX_S, optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("somirrorctl %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || (socket_option && config_given)) {
        usage(stderr);
        return 2;
    }
    /* Each argument is one word of the command line: a space or a line break in one would make
     * it other words, or another command (pause "X<newline>reset Y"), and an empty one none. */
    for (int i = optind; i < argc; i++) {
        const char *p = argv[i];
        while (*p && (unsigned char)*p > ' ' && *p != 0x7f)
            p++;
        if (*p || p == argv[i]) {
            fprintf(stderr, "somirrorctl: argument %d is not one word (it is empty, or holds a space "
                            "or a control character)\n", i - optind + 1);
            return 2;
        }
    }
    /* Command words are read in any case, as the status socket reads them. */
    if (strcasecmp(argv[optind], "tables") == 0) {
        if (argc - optind != 2 || socket_option) {
            fprintf(stderr, "usage: somirrorctl [-c CONFIG] tables CTX\n");
            return 2;
        }
        return list_tables(config_path, argv[optind + 1]);
    }
    if (!socket_option && argc - optind == 3 && strcasecmp(argv[optind], "resync") == 0 &&
        strcmp(argv[optind + 2], "all") != 0 &&
        check_resync_table(config_path, argv[optind + 1], argv[optind + 2]) != 0)
        return 1;
    struct buf line = BUF_INIT;
    for (int i = optind; i < argc; i++)
        buf_printf(&line, "%s%s", i > optind ? " " : "", argv[i]);
    buf_putc(&line, '\n');
    int rc = 1;
    char *socket_path = socket_option ? xstrdup(socket_option) : socket_from_config(config_path);
    if (line.len > CTL_LINE_MAX)
        fprintf(stderr, "somirrorctl: command too long (at most %d bytes)\n", CTL_LINE_MAX);
    else if (socket_path)
        rc = run_command(socket_path, line.data, wait_s);
    free(socket_path);
    buf_free(&line);
    return rc;
}
