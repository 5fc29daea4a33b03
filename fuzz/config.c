/* fuzz/config: fuzz target for the configuration loader (config/config.h). Each input is written
 * to one temporary file per process (made at the first call, removed at exit) and loaded with
 * cfg_load; the config (or the error messages) is read back and freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4096];
static int fd = -1;
static volatile size_t sink;

static void remove_file(void)
{
    if (fd >= 0) {
        close(fd);
        unlink(path);
        fd = -1;
    }
}

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/somirror-fuzz-config-XXXXXX.yaml", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemps(path, 5);
    if (fd < 0) {
        perror("fuzz/config: mkstemps");
        abort();
    }
    atexit(remove_file);
}

static size_t touch(const char *s)
{
    return s ? strlen(s) : 0;
}

static size_t touch_strings(const struct cfg_strings *s)
{
    size_t sum = s->n;
    for (size_t i = 0; i < s->n; i++)
        sum += touch(s->items[i]);
    return sum;
}

static void walk(const struct config *cfg)
{
    size_t sum = touch(cfg->path) + (size_t)cfg->workers + cfg->max_request_bytes;
    for (size_t i = 0; i < cfg->nlisten; i++)
        sum += touch(cfg->listen[i].address) + touch(cfg->listen[i].host) +
               touch(cfg->listen[i].port) + touch(cfg->listen[i].tls_certificate) +
               touch(cfg->listen[i].tls_key);
    sum += touch(cfg->pid_file) + touch(cfg->user) + touch(cfg->group) + touch(cfg->status_socket) +
           touch(cfg->state_file) + touch(cfg->log_file) + touch(cfg->app_id) +
           touch(cfg->app_private_key) + touch(cfg->vendor_issuer) + touch(cfg->database_name) +
           touch(cfg->sqlite.directory) + touch(cfg->mssql.server) + touch(cfg->mssql.user) +
           touch(cfg->mssql.password) + touch(cfg->mssql.tds_version) + touch(cfg->mssql.encrypt) +
           touch(cfg->mssql.schema) + touch(cfg->postgresql.conninfo) +
           touch(cfg->postgresql.password) + touch(cfg->hooks.table_sql);
    sum += touch_strings(&cfg->vendor_certificates) + touch_strings(&cfg->tenants_allow) +
           touch_strings(&cfg->block_tables) + touch_strings(&cfg->hooks.cycle_completed) +
           touch_strings(&cfg->hooks.table_changed);
    char *name = cfg_database_name(cfg, "Cust12020");
    sum += touch(name);
    free(name);
    sink += sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        setup();
        initialised = 1;
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz/config: writing the input");
        abort();
    }
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct config *cfg = cfg_load(path, &errs);
    if (cfg) {
        walk(cfg);
        cfg_free(cfg);
    }
    for (size_t i = 0; i < errs.n; i++)
        sink += touch(errs.messages[i]);
    cfg_errors_free(&errs);
    return 0;
}
