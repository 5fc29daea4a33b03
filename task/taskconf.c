/* task/taskconf: task.yaml, the configuration of `somirror-task run -c`: the vendor's key and
 * certificate, the applications (id, public key, receiver URL, activated), the tenants (context
 * id, source database, approved applications, skip tables, batch size), the schedule and the
 * retry policy. Read by config/yamldoc (one document, bounded nesting and aliases); unknown keys,
 * keys given twice, empty values and two tenants or applications of one name are errors (each
 * would otherwise be silent). Relative paths are relative to the file. */
#include "task/task.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/xalloc.h"
#include "config/yamldoc.h"
#include "proto/schema.h"

struct conf_parse {
    yaml_document_t doc;
    const yaml_node_t *apps, *tenants;   /* their lists, for check_config's messages */
    const char *path;
    char *dir;                       /* the file's directory, with a trailing '/' or "" */
    char *err;
    size_t errlen;
    int failed;
};

/* The first error, "file:line:column: message" ("file: message" without a mark). -1. */
static int conf_error(struct conf_parse *cp, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int conf_error(struct conf_parse *cp, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (cp->failed)
        return -1;
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (mark)
        snprintf(cp->err, cp->errlen, "%s:%zu:%zu: %s", cp->path, mark->line + 1, mark->column + 1,
                 message);
    else
        snprintf(cp->err, cp->errlen, "%s: %s", cp->path, message);
    cp->failed = 1;
    return -1;
}

/* Where node starts, for conf_error (NULL: no node, no place). */
static const yaml_mark_t *at(const yaml_node_t *node)
{
    return node ? &node->start_mark : NULL;
}

/* The index'th item of a list node (NULL past its end or without one): where an item's error
 * found after the parse is. */
static const yaml_node_t *list_item(struct conf_parse *cp, const yaml_node_t *list, size_t index)
{
    if (!list || list->type != YAML_SEQUENCE_NODE ||
        index >= (size_t)(list->data.sequence.items.top - list->data.sequence.items.start))
        return NULL;
    return yaml_document_get_node(&cp->doc, list->data.sequence.items.start[index]);
}

/* A scalar's text: neither empty (`key:` is no value; leave the key out for its default) nor
 * with a NUL character in it (the text would end there). */
static const char *scalar(struct conf_parse *cp, const yaml_node_t *node, const char *key)
{
    if (!node || node->type != YAML_SCALAR_NODE) {
        conf_error(cp, at(node), "%s: expected a single value", key);
        return NULL;
    }
    const char *text = (const char *)node->data.scalar.value;
    if (node->data.scalar.length == 0) {
        conf_error(cp, at(node), "%s: no value (leave the key out for its default)", key);
        return NULL;
    }
    if (strlen(text) != node->data.scalar.length) {
        conf_error(cp, at(node), "%s: the value has a NUL character", key);
        return NULL;
    }
    return text;
}

static char *path_value(struct conf_parse *cp, const yaml_node_t *node, const char *key)
{
    const char *value = scalar(cp, node, key);
    if (!value)
        return NULL;
    struct buf b = BUF_INIT;
    if (value[0] != '/')
        buf_puts(&b, cp->dir);
    buf_puts(&b, value);
    return buf_steal(&b);
}

static int bool_value(struct conf_parse *cp, const yaml_node_t *node, const char *key, int *out)
{
    const char *value = scalar(cp, node, key);
    if (!value)
        return -1;
    if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcmp(value, "1"))
        *out = 1;
    else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") || !strcmp(value, "0"))
        *out = 0;
    else
        return conf_error(cp, at(node), "%s: expected true or false, got \"%s\"", key, value);
    return 0;
}

static int int_value(struct conf_parse *cp, const yaml_node_t *node, const char *key, int min,
                     int max, int *out)
{
    const char *value = scalar(cp, node, key);
    char *end = NULL;
    long n = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || end == value || n < min || n > max)
        return conf_error(cp, at(node), "%s: expected a number from %d to %d", key, min, max);
    *out = (int)n;
    return 0;
}

/* A list of names: a YAML sequence, or one comma-separated string. */
static int names_value(struct conf_parse *cp, const yaml_node_t *node, const char *key,
                       struct cfg_strings *out)
{
    if (node && node->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
        out->items = xcalloc(n ? n : 1, sizeof *out->items);
        out->n = 0;
        for (yaml_node_item_t *item = node->data.sequence.items.start;
             item < node->data.sequence.items.top; item++) {
            const char *value = scalar(cp, yaml_document_get_node(&cp->doc, *item), key);
            if (!value)
                return -1;
            out->items[out->n++] = xstrdup(value);
        }
        return 0;
    }
    const char *value = scalar(cp, node, key);
    if (!value)
        return -1;
    task_strings_split(value, out);
    return 0;
}

typedef int (*conf_field_fn)(struct conf_parse *cp, const char *key, const yaml_node_t *value,
                             void *target);

/* Calls field for each key of a mapping. */
static int each_field(struct conf_parse *cp, const yaml_node_t *node, const char *what,
                      conf_field_fn field, void *target)
{
    if (!node || node->type != YAML_MAPPING_NODE)
        return conf_error(cp, at(node), "%s: expected a mapping", what);
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key = yaml_document_get_node(&cp->doc, pair->key);
        const char *name = scalar(cp, key, what);
        if (!name)
            return -1;
        const yaml_node_t *first = yamldoc_earlier_key(&cp->doc, node, pair, name);
        if (first)
            return conf_error(cp, at(key), "%s: duplicate key \"%s\" (first at line %zu)", what, name,
                              first->start_mark.line + 1);
        if (field(cp, name, yaml_document_get_node(&cp->doc, pair->value), target) != 0)
            return -1;
    }
    return 0;
}

static int unknown_key(struct conf_parse *cp, const char *section, const char *key,
                       const yaml_node_t *value)
{
    return conf_error(cp, at(value), "%s%s%s: unknown key", section, *section ? "." : "", key);
}

static int vendor_field(struct conf_parse *cp, const char *key, const yaml_node_t *value, void *target)
{
    struct task_config *cfg = target;
    if (!strcmp(key, "key"))
        return (cfg->vendor_key = path_value(cp, value, "vendor.key")) ? 0 : -1;
    if (!strcmp(key, "certificate"))
        return (cfg->vendor_cert = path_value(cp, value, "vendor.certificate")) ? 0 : -1;
    return unknown_key(cp, "vendor", key, value);
}

static int app_field(struct conf_parse *cp, const char *key, const yaml_node_t *value, void *target)
{
    struct task_app *app = target;
    const char *text;
    if (!strcmp(key, "id")) {
        if (!(text = scalar(cp, value, "applications.id")))
            return -1;
        if (strlen(text) > TASK_APP_ID_MAX)
            return conf_error(cp, at(value), "applications.id: longer than %d bytes", TASK_APP_ID_MAX);
        app->id = xstrdup(text);
        return 0;
    }
    if (!strcmp(key, "url")) {
        if (!(text = scalar(cp, value, "applications.url")))
            return -1;
        if (!http_url_ok(text))
            return conf_error(cp, at(value), "applications.url: expected an http:// or https:// URL, got \"%s\"",
                              text);
        app->url = xstrdup(text);
        return 0;
    }
    if (!strcmp(key, "public_key"))
        return (app->public_key = path_value(cp, value, "applications.public_key")) ? 0 : -1;
    if (!strcmp(key, "activated"))
        return bool_value(cp, value, "applications.activated", &app->activated);
    return unknown_key(cp, "applications", key, value);
}

static int tenant_field(struct conf_parse *cp, const char *key, const yaml_node_t *value, void *target)
{
    struct task_tenant *tenant = target;
    const char *text;
    if (!strcmp(key, "context")) {
        if (!(text = scalar(cp, value, "tenants.context")))
            return -1;
        if (!tenant_valid(text))
            return conf_error(cp, at(value), "tenants.context: \"%s\" is not a context identifier", text);
        tenant->context = xstrdup(text);
        return 0;
    }
    if (!strcmp(key, "source"))
        return (tenant->source = path_value(cp, value, "tenants.source")) ? 0 : -1;
    if (!strcmp(key, "approved"))
        return names_value(cp, value, "tenants.approved", &tenant->approved);
    if (!strcmp(key, "skip_tables"))
        return names_value(cp, value, "tenants.skip_tables", &tenant->skip_tables);
    if (!strcmp(key, "batch_size")) {
        if (!(text = scalar(cp, value, "tenants.batch_size")))
            return -1;
        const char *why = taskconf_batch_size(text, &tenant->batch_size);
        return why ? conf_error(cp, at(value), "tenants.batch_size: %s, got \"%s\"", why, text) : 0;
    }
    return unknown_key(cp, "tenants", key, value);
}

const char *taskconf_batch_size(const char *text, size_t *out)
{
    int rc = cfg_parse_size(text, out);
    if (rc == -1)
        return "expected a size like 1MiB";
    if (rc == CFG_TOO_LARGE)
        return "too large a size";
    if (*out == 0)
        return "expected a size of 1 byte or more";
    return NULL;
}

static int parse_clock(const char *text, int *minutes)
{
    int h, m;
    char tail;
    if (sscanf(text, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m != 0))   /* 24:00 ends a day; 24:30 is no time */
        return -1;
    *minutes = h * 60 + m;
    return 0;
}

static int schedule_field(struct conf_parse *cp, const char *key, const yaml_node_t *value, void *target)
{
    struct task_config *cfg = target;
    const char *text;
    if (!strcmp(key, "every")) {
        if (!(text = scalar(cp, value, "schedule.every")))
            return -1;
        int rc = cfg_parse_duration(text, &cfg->every_s);
        if (rc == -1)
            return conf_error(cp, at(value), "schedule.every: expected a duration like 20m, got \"%s\"", text);
        if (rc == CFG_TOO_LARGE || cfg->every_s <= 0)
            return conf_error(cp, at(value), "schedule.every: expected a duration from 1 to %d seconds, "
                              "got \"%s\"", INT_MAX, text);
        return 0;
    }
    if (!strcmp(key, "pause")) {
        if (!(text = scalar(cp, value, "schedule.pause")))
            return -1;
        const char *dash = strchr(text, '-');
        char from[16];
        snprintf(from, sizeof from, "%.*s", dash ? (int)(dash - text) : 0, text);
        if (!dash || parse_clock(from, &cfg->pause_from_min) != 0 ||
            parse_clock(dash + 1, &cfg->pause_to_min) != 0)
            return conf_error(cp, at(value), "schedule.pause: expected \"HH:MM-HH:MM\", got \"%s\"", text);
        return 0;
    }
    if (!strcmp(key, "parallel"))
        return int_value(cp, value, "schedule.parallel", 1, 256, &cfg->parallel);
    if (!strcmp(key, "tries"))
        return int_value(cp, value, "schedule.tries", 1, TASK_TRIES_MAX, &cfg->tries);
    if (!strcmp(key, "backoff_ms"))
        return int_value(cp, value, "schedule.backoff_ms", 0, TASK_PAUSE_MAX_MS, &cfg->backoff_ms);
    if (!strcmp(key, "timeout"))
        return int_value(cp, value, "schedule.timeout", 1, 86400, &cfg->timeout_s);
    if (!strcmp(key, "insecure"))
        return bool_value(cp, value, "schedule.insecure", &cfg->insecure);
    return unknown_key(cp, "schedule", key, value);
}

/* Parses each mapping of a sequence into a new element of *items (elem_size bytes each, set up
 * by init when not NULL). */
static int each_item(struct conf_parse *cp, const yaml_node_t *node, const char *what,
                     conf_field_fn field, void (*init)(void *element), void **items, size_t *n,
                     size_t elem_size)
{
    if (!node || node->type != YAML_SEQUENCE_NODE)
        return conf_error(cp, at(node), "%s: expected a list", what);
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    *items = xcalloc(count ? count : 1, elem_size);
    *n = 0;
    for (yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        void *element = (char *)*items + *n * elem_size;
        (*n)++;
        if (init)
            init(element);
        if (each_field(cp, yaml_document_get_node(&cp->doc, *item), what, field, element) != 0)
            return -1;
    }
    return 0;
}

static void app_init(void *element)
{
    struct task_app *app = element;
    app->activated = 1;
}

static int top_field(struct conf_parse *cp, const char *key, const yaml_node_t *value, void *target)
{
    struct task_config *cfg = target;
    if (!strcmp(key, "vendor"))
        return each_field(cp, value, "vendor", vendor_field, cfg);
    if (!strcmp(key, "schedule"))
        return each_field(cp, value, "schedule", schedule_field, cfg);
    if (!strcmp(key, "applications")) {
        cp->apps = value;
        return each_item(cp, value, "applications", app_field, app_init, (void **)&cfg->apps, &cfg->napps,
                         sizeof *cfg->apps);
    }
    if (!strcmp(key, "tenants")) {
        cp->tenants = value;
        return each_item(cp, value, "tenants", tenant_field, NULL, (void **)&cfg->tenants,
                         &cfg->ntenants, sizeof *cfg->tenants);
    }
    return unknown_key(cp, "", key, value);
}

/* Required keys and cross references, each error at the item it is about. */
static int check_config(struct conf_parse *cp, struct task_config *cfg)
{
    if (!cfg->vendor_key || !cfg->vendor_cert)
        return conf_error(cp, NULL, "vendor.key and vendor.certificate are required");
    for (size_t i = 0; i < cfg->napps; i++) {
        struct task_app *app = &cfg->apps[i];
        const yaml_node_t *item = list_item(cp, cp->apps, i);
        if (!app->id || !app->url || !app->public_key)
            return conf_error(cp, at(item), "applications[%zu]: id, url and public_key are required", i + 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->apps[j].id, app->id))
                return conf_error(cp, at(item), "applications[%zu]: id \"%s\" is applications[%zu]'s too",
                                  i + 1, app->id, j + 1);
    }
    for (size_t i = 0; i < cfg->ntenants; i++) {
        struct task_tenant *tenant = &cfg->tenants[i];
        const yaml_node_t *item = list_item(cp, cp->tenants, i);
        if (!tenant->context || !tenant->source)
            return conf_error(cp, at(item), "tenants[%zu]: context and source are required", i + 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->tenants[j].context, tenant->context))
                return conf_error(cp, at(item), "tenants[%zu]: context %s is tenants[%zu]'s too", i + 1,
                                  tenant->context, j + 1);
        for (size_t a = 0; a < tenant->approved.n; a++)
            if (!taskconf_app(cfg, tenant->approved.items[a]))
                return conf_error(cp, at(item), "tenant %s approves an unknown application \"%s\"",
                                  tenant->context, tenant->approved.items[a]);
        if (!tenant->batch_size)
            tenant->batch_size = TASK_DEFAULT_BATCH_SIZE;
    }
    return 0;
}

struct task_config *taskconf_load(const char *path, char *err, size_t errlen)
{
    struct conf_parse cp = {.path = path, .err = err, .errlen = errlen};
    struct yamldoc_error yerr;
    if (yamldoc_load(path, &cp.doc, &yerr) != 0) {
        conf_error(&cp, yerr.has_mark ? &yerr.mark : NULL, "%s", yerr.message);
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    cp.dir = xstrndup(path, slash ? (size_t)(slash - path) + 1 : 0);
    struct task_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->every_s = 20 * 60;
    cfg->pause_from_min = cfg->pause_to_min = -1;
    cfg->parallel = 4;
    cfg->tries = 4;
    cfg->backoff_ms = 1000;
    cfg->timeout_s = 300;
    const yaml_node_t *root = yaml_document_get_root_node(&cp.doc);
    if (!root)
        conf_error(&cp, NULL, "the file is empty");
    else if (each_field(&cp, root, "task.yaml", top_field, cfg) == 0)
        check_config(&cp, cfg);
    yaml_document_delete(&cp.doc);
    free(cp.dir);
    if (cp.failed) {
        taskconf_free(cfg);
        return NULL;
    }
    return cfg;
}

void taskconf_free(struct task_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->napps; i++) {
        free(cfg->apps[i].id);
        free(cfg->apps[i].public_key);
        free(cfg->apps[i].url);
    }
    for (size_t i = 0; i < cfg->ntenants; i++) {
        free(cfg->tenants[i].context);
        free(cfg->tenants[i].source);
        task_strings_free(&cfg->tenants[i].approved);
        task_strings_free(&cfg->tenants[i].skip_tables);
    }
    free(cfg->apps);
    free(cfg->tenants);
    free(cfg->vendor_key);
    free(cfg->vendor_cert);
    free(cfg);
}

const struct task_app *taskconf_app(const struct task_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->napps; i++)
        if (cfg->apps[i].id && strcmp(cfg->apps[i].id, id) == 0)
            return &cfg->apps[i];
    return NULL;
}

int taskconf_paused(const struct task_config *cfg, int minute_of_day)
{
    int from = cfg->pause_from_min, to = cfg->pause_to_min;
    if (from < 0 || from == to)
        return 0;
    return from < to ? minute_of_day >= from && minute_of_day < to
                     : minute_of_day >= from || minute_of_day < to;
}
