/* proto/soap: the wire shapes of protocol sections 1, 2, 4 and 6, in one table-driven module
 * (so that they can be aligned with an official WSDL without touching anything else):
 *  - receiver side: parse a request with libxml2's SAX2 parser (one pass, no DOM, no DTD, no
 *    entities, no network) into a struct soap_request; write responses and faults;
 *  - sender side (somirror-task): build requests, parse responses and faults.
 * Element names and namespaces live only here. */
#ifndef SOMIRROR_PROTO_SOAP_H
#define SOMIRROR_PROTO_SOAP_H
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/fault.h"
#include "proto/types.h"

#define SOAP_NS "http://www.superoffice.com/online/mirroring/0.1"
#define SOAP_ENV_NS "http://schemas.xmlsoap.org/soap/envelope/"

enum soap_op {
    SOAP_OP_AUTHENTICATE, SOAP_OP_TABLESCHEMA, SOAP_OP_WIPE, SOAP_OP_ROWDATA,
    SOAP_OP_REPLICATIONCOMPLETED, SOAP_OP_COUNT
};
const char *soap_op_name(enum soap_op op);    /* "Authenticate" ... */
/* The inverse of fault_code_name(): "InvalidValue" -> FAULT_INVALID_VALUE; FAULT_NONE for a
 * name that is not a fault code. */
enum fault_code fault_code_from_name(const char *name);

struct soap_request {
    /* Faults are recorded by stage, so the caller reports the first in the order of section 6
     * (size, envelope, token, operation, body): */
    struct fault op_fault;       /* UnknownOperation, or MalformedRequest for a header/body
                                    mismatch or a Body with more than one element */
    struct fault body_fault;     /* MalformedRequest for a body shape error */
    enum soap_op op;             /* valid when op_fault.code == FAULT_NONE */

    const char *token;           /* SignedToken text, trimmed; NULL when absent */
    size_t token_len;
    int ntokens;                 /* how many SignedToken header blocks */
    int token_has_element;       /* a SignedToken held an element: not a token (InvalidToken) */

    /* Authenticate */
    const char *client_state;    /* verbatim; NULL when the element is absent */
    size_t client_state_len;
    /* TableSchema */
    struct table_schema *tables;
    size_t ntables;
    /* Wipe */
    char **wipe_tables;
    size_t nwipe;
    /* RowData */
    struct batch *batches;
    size_t nbatches;
    /* ReplicationCompleted */
    struct table_summary *summary;
    size_t nsummary;
};

/* Parses a request body. soapaction: the header's value (quotes allowed), or NULL/"" when
 * absent. Returns 0 (then check op_fault and body_fault), or -1 with env_fault set for a body
 * that is not a well-formed SOAP envelope (MalformedRequest). Everything lives in arena. */
int soap_parse_request(const char *body, size_t len, const char *soapaction, struct arena *arena,
                       struct soap_request *out, struct fault *env_fault);

/* RowData told as it is read (for applying rows while the rest is still being parsed): batch
 * when a batch's Table and Columns are read (the header and the operation are then complete in
 * req), rows when its <Rows> opens, row when a row is complete (its values stay where they
 * are, in the arena; the struct row itself is only lent), batch_end when the batch is complete
 * (its Lsn read). Nothing more is told after a shape error; the result is soap_parse_request's,
 * whatever was told. at: bytes of the body read (soap_xml_offset): for rows up to the start
 * tag's closing '>' (or "/>"), for row through the row's end tag; SIZE_MAX when unknown.
 * row returns 0 to go on, or 1 to end the parse right there: soap_parse_request_told then
 * returns 1, with the request as read so far (the open batch holds the rows read). cancelled
 * (may be NULL) is asked now and then, also after a shape error, whether the parse is still
 * wanted: nonzero ends it (the result is then 1, and the request not to be used). */
struct soap_row_listener {
    void (*batch)(void *ctx, const struct soap_request *req, const struct batch *batch);
    void (*rows)(void *ctx, size_t at);
    int (*row)(void *ctx, const struct row *row, size_t at);
    void (*batch_end)(void *ctx, const struct batch *batch);
    int (*cancelled)(void *ctx);
};
int soap_parse_request_told(const char *body, size_t len, const char *soapaction,
                            struct arena *arena, struct soap_request *out, struct fault *env_fault,
                            const struct soap_row_listener *listener, void *listener_ctx);

struct auth_answer {
    int ok;
    const char *error_message;          /* "" when ok */
    const char *signed_app_token;       /* "" when failed */
    const char *build;                  /* "somirrord/1.0.0" */
    const char *client_state;           /* echoed verbatim (NULL: empty element) */
    size_t client_state_len;
    int do_not_replicate;
};

void soap_write_fault(struct buf *out, const struct fault *f);
void soap_write_authenticate(struct buf *out, const struct auth_answer *a);
void soap_write_table_schema(struct buf *out, const struct table_state *states, size_t n);
void soap_write_wipe(struct buf *out, const struct table_state *states, size_t n);
void soap_write_row_data(struct buf *out, const struct table_state *states, size_t n);
void soap_write_replication_completed(struct buf *out);

/* ---- sender side ---- */
/* Each builder writes a whole envelope with the SignedToken header (token NULL: no Header at
 * all). Texts are escaped; tables are sent with their pk_names. */
void soap_build_authenticate(struct buf *out, const char *token, const char *client_state);
void soap_build_table_schema(struct buf *out, const char *token, const struct table_schema *tables,
                             size_t n);
void soap_build_wipe(struct buf *out, const char *token, char *const *tables, size_t n);
void soap_build_replication_completed(struct buf *out, const char *token,
                                      const struct table_summary *summary, size_t n);
/* RowData is built incrementally: begin, then per batch: batch_begin, rows, batch_end. */
void soap_build_rowdata_begin(struct buf *out, const char *token);
void soap_build_batch_begin(struct buf *out, const char *table, char *const *columns, size_t n);
/* values: raw values to send (RAW_TEXT written as <V> escaped, RAW_BASE64 as <B> with data
 * already base64 text, written as it is, RAW_NULL as <N/>). Text that XML 1.0 cannot carry
 * must be sent as <B> by the caller (soap_text_needs_base64 tells). */
void soap_build_row(struct buf *out, char op, int has_lsn, int64_t lsn,
                    const struct raw_value *values, size_t n);
void soap_build_batch_end(struct buf *out, int has_lsn, int64_t lsn);
void soap_build_rowdata_end(struct buf *out);
/* Whether text holds characters XML 1.0 cannot carry (or invalid UTF-8, or a \r that would be
 * normalised away). */
int soap_text_needs_base64(const char *text, size_t len);

struct soap_response {
    int is_fault;
    struct fault fault;            /* when is_fault: code from <Code> (FAULT_INTERNAL if unknown) */
    int retryable;
    /* Authenticate */
    struct auth_answer auth;
    /* TableSchema, Wipe, RowData */
    struct table_state *states;
    size_t nstates;
};
/* Parses a response to op. 0, or -1 with err when it is not a valid response or fault. */
int soap_parse_response(const char *body, size_t len, enum soap_op op, struct arena *arena,
                        struct soap_response *out, char *err, size_t errlen);

#endif
