/* fuzz/rowstream: differential fuzz target for proto/rowstream, the parse that tells a request's
 * rows as it reads them and reads a large body in parts at once. An input is a template, head
 * \x01 unit \x01 tail (an input without two \x01 bytes is the body as it is): the body is the
 * head, the unit repeated until the body holds AMPLIFIED_BYTES or more (four parts need 384 KiB
 * of rows), then the tail. It is parsed by rowstream, in up to four parts, with every event
 * read, and by soap_parse_request; a difference aborts: the result, each fault, and every batch,
 * row and value of the finished requests, and, where nothing was aborted and nothing refused,
 * the rows told (the very rows of the finished request, in its order). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/fault.h"
#include "proto/rowstream.h"
#include "proto/soap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define AMPLIFIED_BYTES (400 * 1024)
#define TEMPLATE_MARK '\x01'

static void build_body(struct buf *body, const char *in, size_t size)
{
    const char *first = memchr(in, TEMPLATE_MARK, size);
    const char *second = first ? memchr(first + 1, TEMPLATE_MARK, size - (size_t)(first + 1 - in))
                               : NULL;
    if (!second) {
        buf_append(body, in, size);
        return;
    }
    const char *unit = first + 1, *tail = second + 1;
    size_t unit_len = (size_t)(second - unit);
    buf_append(body, in, (size_t)(first - in));
    while (unit_len > 0 && body->len < AMPLIFIED_BYTES)
        buf_append(body, unit, unit_len);
    buf_append(body, tail, size - (size_t)(tail - in));
}

static void same(int equal)
{
    if (!equal)
        abort();
}

static void same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    same(alen == blen && (!a) == (!b) && (alen == 0 || memcmp(a, b, alen) == 0));
}

static void same_str(const char *a, const char *b)
{
    same_bytes(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0);
}

static void same_fault(const struct fault *a, const struct fault *b)
{
    same(a->code == b->code && a->row == b->row);
    same_str(a->message, b->message);
    same_str(a->table, b->table);
    same_str(a->column, b->column);
}

static void same_row(const struct row *a, const struct row *b)
{
    same(a->op == b->op && a->has_lsn == b->has_lsn && a->lsn == b->lsn &&
         a->nvalues == b->nvalues);
    for (size_t v = 0; v < a->nvalues; v++) {
        same(a->values[v].kind == b->values[v].kind);
        same_bytes(a->values[v].data, a->values[v].len, b->values[v].data, b->values[v].len);
    }
}

static void same_request(const struct soap_request *a, const struct soap_request *b)
{
    same_fault(&a->op_fault, &b->op_fault);
    same_fault(&a->body_fault, &b->body_fault);
    same(a->op == b->op && a->ntokens == b->ntokens && a->ntables == b->ntables &&
         a->nwipe == b->nwipe && a->nsummary == b->nsummary && a->nbatches == b->nbatches);
    same_bytes(a->token, a->token_len, b->token, b->token_len);
    same_bytes(a->client_state, a->client_state_len, b->client_state, b->client_state_len);
    for (size_t i = 0; i < a->nbatches; i++) {
        const struct batch *x = &a->batches[i], *y = &b->batches[i];
        same_str(x->table, y->table);
        same(x->ncolumns == y->ncolumns && x->nrows == y->nrows && x->has_lsn == y->has_lsn &&
             x->lsn == y->lsn);
        for (size_t c = 0; c < x->ncolumns; c++)
            same_str(x->columns[c], y->columns[c]);
        for (size_t r = 0; r < x->nrows; r++)
            same_row(&x->rows[r], &y->rows[r]);
    }
}

/* The rows told are the finished request's own rows (the same values), all of them, in order. */
static void same_rows_told(const struct soap_request *req, const struct row *told, size_t ntold)
{
    size_t k = 0;
    for (size_t i = 0; i < req->nbatches; i++)
        for (size_t r = 0; r < req->batches[i].nrows; r++, k++) {
            same(k < ntold && told[k].values == req->batches[i].rows[r].values);
            same_row(&told[k], &req->batches[i].rows[r]);
        }
    same(k == ntold);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf body = BUF_INIT;
    build_body(&body, (const char *)data, size);
    const char *text = body.data ? body.data : "";

    struct arena one_arena, streamed_arena;
    arena_init(&one_arena);
    arena_init(&streamed_arena);
    struct soap_request one, streamed;
    struct fault one_fault, streamed_fault;
    fault_clear(&one_fault);
    fault_clear(&streamed_fault);
    int one_rc = soap_parse_request(text, body.len, NULL, &one_arena, &one, &one_fault);

    struct rowstream *rs = rowstream_start(text, body.len, NULL, ROWSTREAM_PARTS_MAX,
                                           &streamed_arena, &streamed);
    if (rs) {
        struct row *told = NULL;
        size_t ntold = 0, cap = 0;
        int aborted = 0;
        const struct rowstream_event *ev;
        while (!aborted && (ev = rowstream_next(rs))->kind != ROWSTREAM_END) {
            aborted = ev->kind == ROWSTREAM_ABORT;
            if (ev->kind == ROWSTREAM_ROW) {
                if (ntold == cap) {
                    cap = cap ? 2 * cap : 1024;
                    told = realloc(told, cap * sizeof(*told));
                    same(told != NULL);
                }
                told[ntold++] = ev->row;
            }
        }
        int rc = rowstream_finish(rs, &streamed_fault, NULL);
        same(rc == one_rc);
        if (rc != 0) {
            same_fault(&streamed_fault, &one_fault);
        } else {
            same_request(&streamed, &one);
            if (!aborted && streamed.op_fault.code == FAULT_NONE &&
                streamed.body_fault.code == FAULT_NONE)
                same_rows_told(&streamed, told, ntold);
        }
        free(told);
    }
    arena_free(&one_arena);
    arena_free(&streamed_arena);
    buf_free(&body);
    return 0;
}
