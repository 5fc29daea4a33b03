/* proto/fault: the fault codes of protocol section 6 and the one table that says, for each,
 * its SOAP faultcode, HTTP status and retryability. Every failure in somirrord and every store
 * is reported through a struct fault; the SOAP layer renders it. */
#ifndef SOMIRROR_PROTO_FAULT_H
#define SOMIRROR_PROTO_FAULT_H
#include <stdarg.h>

#include "proto/types.h"

enum fault_code {
    FAULT_NONE = 0,
    FAULT_REQUEST_TOO_LARGE, FAULT_MALFORMED_REQUEST, FAULT_UNKNOWN_OPERATION,
    FAULT_INVALID_TOKEN, FAULT_TOKEN_EXPIRED, FAULT_WRONG_ISSUER, FAULT_WRONG_AUDIENCE,
    FAULT_TENANT_NOT_ALLOWED, FAULT_TENANT_PAUSED, FAULT_UNKNOWN_TABLE, FAULT_BLOCKED_TABLE,
    FAULT_COLUMN_MISMATCH, FAULT_INVALID_VALUE, FAULT_TENANT_BUSY, FAULT_TENANT_LIMIT,
    FAULT_STORAGE_ERROR, FAULT_INTERNAL
};

/* Bytes of a table or column name a fault keeps. A fault names the table or column as sent
 * (protocol 6), also one that is no valid name (longer than SM_IDENT_MAX, say): only a name
 * longer than this is cut, as the faultstring is. */
#define FAULT_NAME_MAX 1023

struct fault {
    enum fault_code code;
    char message[1024];                 /* the faultstring */
    char table[FAULT_NAME_MAX + 1];
    char column[FAULT_NAME_MAX + 1];
    int names_table, names_column;      /* whether table and column apply (they may be "": a
                                           Wipe of <Name/> names the table "") */
    long row;                           /* 1-based; 0 when it does not apply */
};

void fault_clear(struct fault *f);
/* Sets code and message; table/column/row are left as they are (set them with fault_at). */
void fault_set(struct fault *f, enum fault_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fault_vset(struct fault *f, enum fault_code code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Where the fault is: table and column NULL where they do not apply, row 0. */
void fault_at(struct fault *f, const char *table, const char *column, long row);

const char *fault_code_name(enum fault_code code);        /* "InvalidValue" */
int fault_http_status(enum fault_code code);              /* 413 or 500 */
int fault_is_server(enum fault_code code);                /* s:Server (1) or s:Client (0) */
int fault_retryable(enum fault_code code);

#endif
