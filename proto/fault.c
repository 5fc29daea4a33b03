/* proto/fault: fault codes and their properties, one table (protocol section 6). */
#include "proto/fault.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int http;
    int server;
    int retryable;
} fault_table[] = {
    [FAULT_NONE] = {"None", 200, 0, 0},
    [FAULT_REQUEST_TOO_LARGE] = {"RequestTooLarge", 413, 0, 0},
    [FAULT_MALFORMED_REQUEST] = {"MalformedRequest", 500, 0, 0},
    [FAULT_UNKNOWN_OPERATION] = {"UnknownOperation", 500, 0, 0},
    [FAULT_INVALID_TOKEN] = {"InvalidToken", 500, 0, 0},
    [FAULT_TOKEN_EXPIRED] = {"TokenExpired", 500, 0, 0},
    [FAULT_WRONG_ISSUER] = {"WrongIssuer", 500, 0, 0},
    [FAULT_WRONG_AUDIENCE] = {"WrongAudience", 500, 0, 0},
    [FAULT_TENANT_NOT_ALLOWED] = {"TenantNotAllowed", 500, 0, 0},
    [FAULT_TENANT_PAUSED] = {"TenantPaused", 500, 1, 0},
    [FAULT_UNKNOWN_TABLE] = {"UnknownTable", 500, 0, 0},
    [FAULT_BLOCKED_TABLE] = {"BlockedTable", 500, 0, 0},
    [FAULT_COLUMN_MISMATCH] = {"ColumnMismatch", 500, 0, 0},
    [FAULT_INVALID_VALUE] = {"InvalidValue", 500, 0, 0},
    [FAULT_TENANT_BUSY] = {"TenantBusy", 500, 1, 1},
    [FAULT_TENANT_LIMIT] = {"TenantLimit", 500, 1, 1},
    [FAULT_STORAGE_ERROR] = {"StorageError", 500, 1, 1},
    [FAULT_INTERNAL] = {"Internal", 500, 1, 1},
};

static const char *const change_names[] = {
    [CHANGE_CREATED] = "Created", [CHANGE_UNCHANGED] = "Unchanged", [CHANGE_ALTERED] = "Altered",
    [CHANGE_RECREATED] = "Recreated", [CHANGE_DROPPED] = "Dropped", [CHANGE_REJECTED] = "Rejected",
};

const char *table_change_name(enum table_change change)
{
    return change_names[change];
}

void fault_clear(struct fault *f)
{
    memset(f, 0, sizeof(*f));
}

void fault_vset(struct fault *f, enum fault_code code, const char *fmt, va_list ap)
{
    f->code = code;
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
}

void fault_set(struct fault *f, enum fault_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fault_vset(f, code, fmt, ap);
    va_end(ap);
}

void fault_at(struct fault *f, const char *table, const char *column, long row)
{
    snprintf(f->table, sizeof(f->table), "%s", table ? table : "");
    snprintf(f->column, sizeof(f->column), "%s", column ? column : "");
    f->names_table = table != NULL;
    f->names_column = column != NULL;
    f->row = row;
}

const char *fault_code_name(enum fault_code code)
{
    return fault_table[code].name;
}

int fault_http_status(enum fault_code code)
{
    return fault_table[code].http;
}

int fault_is_server(enum fault_code code)
{
    return fault_table[code].server;
}

int fault_retryable(enum fault_code code)
{
    return fault_table[code].retryable;
}
