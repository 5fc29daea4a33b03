/* proto/rowstream: a request parsed on helper threads while the calling thread takes its
 * RowData batches and rows as they are read, so that a large RowData call is applied while the
 * rest of it is still being parsed (see service.c); a large body is read in parts at once, one
 * parser thread each.
 * The request and its result are exactly soap_parse_request's; the events only tell early what
 * it will hold. */
#ifndef SOMIRROR_PROTO_ROWSTREAM_H
#define SOMIRROR_PROTO_ROWSTREAM_H
#include <stddef.h>

#include "common/arena.h"
#include "proto/fault.h"
#include "proto/soap.h"

/* ABORT: what was told is not to be trusted (the parts did not join); the finished request is
 * still exactly soap_parse_request's, from a parse in one piece. */
enum rowstream_kind {
    ROWSTREAM_BATCH, ROWSTREAM_ROW, ROWSTREAM_BATCH_END, ROWSTREAM_END, ROWSTREAM_ABORT
};

struct rowstream_event {
    enum rowstream_kind kind;
    union {
        struct batch batch;   /* BATCH: table and columns; BATCH_END: also has_lsn/lsn */
        struct row row;       /* ROW: its values live in the request's arena */
    };
};

/* What the request said before its first batch (the header is complete by then). */
struct rowstream_prologue {
    const char *token;    /* SignedToken text in the arena, NULL when absent */
    size_t token_len;
    int ntokens;
    enum soap_op op;
    enum fault_code op_fault;
};

struct rowstream;

/* The most parts a body is read in at once. */
#define ROWSTREAM_PARTS_MAX 4

/* Starts parsing body into req (allocating in arena) on helper threads, in up to parts parts
 * (1 to ROWSTREAM_PARTS_MAX; a large body only). Until rowstream_finish returns, arena and req
 * belong to them: the caller reads neither, and body stays as it is. NULL when no thread could
 * be started (then parse as usual). */
struct rowstream *rowstream_start(const char *body, size_t len, const char *soapaction,
                                  size_t parts, struct arena *arena, struct soap_request *req);

/* The next event in document order, waiting while the parser is behind; ROWSTREAM_END (or
 * ROWSTREAM_ABORT) when nothing more will come (the parse is over or stopped telling). The
 * event is valid until the next call. */
const struct rowstream_event *rowstream_next(struct rowstream *rs);

/* rowstream_next without the wait: NULL where it would wait for the parser. */
const struct rowstream_event *rowstream_poll(struct rowstream *rs);

/* Valid once a ROWSTREAM_BATCH event was returned. */
const struct rowstream_prologue *rowstream_prologue(const struct rowstream *rs);

/* Lets the parsers run to the end without telling anything more, waits for them, frees rs and
 * returns soap_parse_request's result (env_fault set when -1). parts (may be NULL) gets the
 * number of parts the request was read in (1: in one piece). */
int rowstream_finish(struct rowstream *rs, struct fault *env_fault, size_t *parts);

#endif
