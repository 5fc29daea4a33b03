/* ctl/statefile: saves and restores the operator's state file (see statefile.h). Owns nothing in
 * shared memory: it reads pause flags and pending requests through shm/registry.h and, at
 * start, sets them there. Owns saved_requests, the master's record of what the file holds. */
#include "ctl/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/schema.h"
#include "shm/registry.h"

/* A digest of the pending requests the file was last written with (0: none), so that the file
 * is written again once a worker has carried them out (statefile_refresh). */
static uint64_t saved_requests;
/* The last write failed: the file is behind what is in force (a pause too), until one works. */
static int save_failed;

static uint64_t digest_add(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;   /* FNV-1a */
    return h;
}

/* The digest of every tenant's pending requests, whatever the order of the tenants in the
 * registry (a sum of one hash per tenant): 0 when there is none. */
static uint64_t requests_digest(const struct registry *reg)
{
    uint64_t sum = 0;
    int any = 0;
    uint32_t n = reg_tenant_count(reg);
    for (uint32_t idx = 0; idx < n; idx++) {
        struct tenant_requests req;
        struct tenant_view view;
        if (!reg_tenant_pending(reg, idx, &req) || reg_tenant_read(reg, idx, &view) != 0)
            continue;
        any = 1;
        uint64_t h = 14695981039346656037ull;
        h = digest_add(h, view.tenant, strlen(view.tenant) + 1);
        h = digest_add(h, &req.reset, sizeof(req.reset));
        h = digest_add(h, req.resync_tables, strlen(req.resync_tables) + 1);
        sum += h;
    }
    return any ? (sum ? sum : 1) : 0;
}

static json_t *state_to_json(const struct registry *reg)
{
    json_t *paused = json_array(), *reset = json_array(), *resync = json_object();
    uint32_t n = reg_tenant_count(reg);
    for (uint32_t idx = 0; idx < n; idx++) {
        struct tenant_view view;
        struct tenant_requests req;
        int pause = reg_tenant_pause_flag(reg, idx), pending = reg_tenant_pending(reg, idx, &req);
        if ((!pause && !pending) || reg_tenant_read(reg, idx, &view) != 0)
            continue;
        if (pause)
            json_array_append_new(paused, json_string(view.tenant));
        if (req.reset)
            json_array_append_new(reset, json_string(view.tenant));
        if (req.resync)
            json_object_set_new(resync, view.tenant, json_string(req.resync_tables));
    }
    return json_pack("{s:b, s:o, s:o, s:o}", "paused_all", reg_global_paused(reg), "paused", paused,
                     "reset", reset, "resync", resync);
}

/* Makes the rename itself durable; a failure here loses nothing already written. */
static void sync_directory_of(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* Creates path with text, synced to disk. 0, or -1 with err. */
static int write_synced(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    int rc = write_all(fd, text, strlen(text));
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    return rc;
}

int statefile_save(const char *path, const struct registry *reg, char *err, size_t errlen)
{
    uint64_t requests = requests_digest(reg);
    json_t *state = state_to_json(reg);
    char *text = json_dumps(state, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(state);
    if (!text) {
        snprintf(err, errlen, "%s: cannot encode the operator state", path);
        return -1;
    }
    struct buf content = BUF_INIT, tmp = BUF_INIT;
    buf_printf(&content, "%s\n", text);
    free(text);
    buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    int rc = write_synced(tmp.data, content.data, err, errlen);
    if (rc == 0 && rename(tmp.data, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp.data, path, strerror(errno));
        rc = -1;
    }
    if (rc == 0) {
        sync_directory_of(path);
        saved_requests = requests;
    } else {
        unlink(tmp.data);
    }
    save_failed = rc != 0;
    buf_free(&tmp);
    buf_free(&content);
    return rc;
}

int statefile_refresh(const char *path, const struct registry *reg, char *err, size_t errlen)
{
    if (!save_failed && (saved_requests == 0 || requests_digest(reg) == saved_requests))
        return 0;
    return statefile_save(path, reg, err, errlen);
}

int statefile_behind(void)
{
    return save_failed;
}

/* A tenant name of the file's list (or object key) "what": NULL, with a warning, when invalid. */
static const char *tenant_item(const char *path, const char *what, size_t i, const char *name)
{
    if (name && tenant_valid(name))
        return name;
    log_warn("%s: %s[%zu]: not a tenant name, skipped", path, what, i);
    return NULL;
}

static int restore_full(const char *path, const char *what, const char *name, char *err,
                        size_t errlen)
{
    snprintf(err, errlen, "%s: cannot restore the %s of %s: the tenant table is full (tenants.max)",
             path, what, name);
    return -1;
}

static int pause_tenant(struct registry *reg, const char *name)
{
    return reg_set_paused(reg, name, 1);
}

/* A list of tenant names ("what" in the file), each given to request (a pause, a reset). */
static int restore_tenants(const char *path, const char *what, const char *noun, json_t *list,
                           struct registry *reg, int (*request)(struct registry *, const char *),
                           char *err, size_t errlen)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *name = tenant_item(path, what, i, json_string_value(item));
        if (name && request(reg, name) != 0)
            return restore_full(path, noun, name, err, errlen);
    }
    return 0;
}

/* {"Cust1": "*", "Cust2": "contact,person"}. Names that do not fit a list any more (or that
 * are not table names) make it a resync of every table: more than asked, never less. */
static int restore_resync(const char *path, json_t *resync, struct registry *reg, char *err,
                          size_t errlen)
{
    const char *key;
    json_t *value;
    size_t i = 0;
    json_object_foreach(resync, key, value) {
        const char *name = tenant_item(path, "resync", i++, key);
        const char *tables = json_string_value(value);
        if (!name)
            continue;
        int all = !tables || !*tables || strcmp(tables, "*") == 0;
        for (const char *p = tables; !all && *p;) {
            size_t len = strcspn(p, ",");
            char table[SM_IDENT_MAX + 1];
            if (len == 0 || len > SM_IDENT_MAX) {
                all = 1;
                break;
            }
            memcpy(table, p, len);
            table[len] = '\0';
            int rc = ident_valid(table) ? reg_request_resync(reg, name, table) : REG_RESYNC_LIST_FULL;
            if (rc == -1)
                return restore_full(path, "resync", name, err, errlen);
            all = rc != 0;
            p += len + (p[len] == ',');
        }
        if (all && reg_request_resync(reg, name, NULL) != 0)
            return restore_full(path, "resync", name, err, errlen);
    }
    return 0;
}

static int kept_at(const struct registry *reg, uint32_t idx)
{
    struct tenant_requests req;
    return reg_tenant_pause_flag(reg, idx) || reg_tenant_pending(reg, idx, &req);
}

size_t statefile_kept(const struct registry *reg)
{
    size_t kept = 0;
    uint32_t n = reg_tenant_count(reg);
    for (uint32_t idx = 0; idx < n; idx++)
        kept += (size_t)kept_at(reg, idx);
    return kept;
}

int statefile_keeps(struct registry *reg, const char *tenant)
{
    uint32_t idx;
    return reg_tenant_find(reg, tenant, 0, &idx, NULL) == 0 && kept_at(reg, idx);
}

int statefile_restore(const char *path, struct registry *reg, char *err, size_t errlen)
{
    const char *why;
    FILE *fp = fopen_regular(path, &why);
    if (!fp) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot read the operator state: %s", path, why);
        return -1;
    }
    json_error_t jerr;
    json_t *state = json_loadf(fp, 0, &jerr);
    fclose(fp);
    if (!state) {
        snprintf(err, errlen, "%s:%d:%d: operator state is not JSON: %s", path, jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    json_t *paused_all = json_object_get(state, "paused_all");
    json_t *paused = json_object_get(state, "paused");
    json_t *reset = json_object_get(state, "reset");
    json_t *resync = json_object_get(state, "resync");
    int rc = 0;
    if (!json_is_object(state) || (paused_all && !json_is_boolean(paused_all)) ||
        (paused && !json_is_array(paused)) || (reset && !json_is_array(reset)) ||
        (resync && !json_is_object(resync))) {
        snprintf(err, errlen, "%s: operator state: expected {\"paused_all\": true|false, \"paused\": "
                 "[tenants], \"reset\": [tenants], \"resync\": {tenant: \"*\" or \"table,...\"}}", path);
        rc = -1;
    } else {
        if (json_is_true(paused_all))
            reg_set_paused(reg, NULL, 1);
        if ((paused && restore_tenants(path, "paused", "pause", paused, reg, pause_tenant, err,
                                       errlen) != 0) ||
            (reset && restore_tenants(path, "reset", "reset", reset, reg, reg_request_reset, err,
                                      errlen) != 0) ||
            (resync && restore_resync(path, resync, reg, err, errlen) != 0))
            rc = -1;
        saved_requests = requests_digest(reg);
    }
    json_decref(state);
    return rc;
}
