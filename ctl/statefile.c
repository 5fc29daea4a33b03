/* ctl/statefile: saves and restores the pause state file (see statefile.h). Owns nothing in
 * shared memory: it reads pause flags through shm/registry.h and, at start, sets them there. */
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

static json_t *state_to_json(const struct registry *reg)
{
    json_t *paused = json_array();
    uint32_t n = reg_tenant_count(reg);
    for (uint32_t idx = 0; idx < n; idx++) {
        struct tenant_view view;
        if (reg_tenant_pause_flag(reg, idx) && reg_tenant_read(reg, idx, &view) == 0)
            json_array_append_new(paused, json_string(view.tenant));
    }
    return json_pack("{s:b, s:o}", "paused_all", reg_global_paused(reg), "paused", paused);
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
    json_t *state = state_to_json(reg);
    char *text = json_dumps(state, JSON_INDENT(1));
    json_decref(state);
    if (!text) {
        snprintf(err, errlen, "%s: cannot encode the pause state", path);
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
    if (rc == 0)
        sync_directory_of(path);
    else
        unlink(tmp.data);
    buf_free(&tmp);
    buf_free(&content);
    return rc;
}

static int restore_tenants(const char *path, json_t *paused, struct registry *reg, char *err,
                           size_t errlen)
{
    size_t i;
    json_t *item;
    json_array_foreach(paused, i, item) {
        const char *name = json_string_value(item);
        if (!name || !tenant_valid(name)) {
            log_warn("%s: paused[%zu]: not a tenant name, skipped", path, i);
            continue;
        }
        if (reg_set_paused(reg, name, 1) != 0) {
            snprintf(err, errlen, "%s: cannot restore the pause of %s: the tenant table is full (tenants.max)",
                     path, name);
            return -1;
        }
    }
    return 0;
}

int statefile_restore(const char *path, struct registry *reg, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot read the pause state: %s", path, strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *state = json_loadf(fp, 0, &jerr);
    fclose(fp);
    if (!state) {
        snprintf(err, errlen, "%s:%d:%d: pause state is not JSON: %s", path, jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    json_t *paused_all = json_object_get(state, "paused_all");
    json_t *paused = json_object_get(state, "paused");
    int rc = 0;
    if (!json_is_object(state) || (paused_all && !json_is_boolean(paused_all)) ||
        (paused && !json_is_array(paused))) {
        snprintf(err, errlen, "%s: pause state: expected {\"paused_all\": true|false, \"paused\": [tenants]}",
                 path);
        rc = -1;
    } else {
        if (json_is_true(paused_all))
            reg_set_paused(reg, NULL, 1);
        if (paused)
            rc = restore_tenants(path, paused, reg, err, errlen);
    }
    json_decref(state);
    return rc;
}
