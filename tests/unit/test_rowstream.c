/* tests/unit/test_rowstream: proto/rowstream. The events tell every batch and row of the
 * request, in document order, and the finished request is exactly soap_parse_request's,
 * whether the events are read in full, in part, or not at all (the parser then runs ahead and
 * must neither block nor stop); a body that is not well-formed ends the events and fails.
 * A large body is read in parts (two, three, four): the join is checked row by row, and so is
 * every way a split can go wrong (a guessed row end in a comment, a CDATA section or a later
 * batch, for the first part or a middle one; a fault before the first cut, in a middle part or
 * the last; an encoding libxml2 converts), each answered as the one-piece parse, and the finish
 * before the end in each state of the split. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/rowstream.h"
#include "proto/soap.h"

/* More rows in the first part than the first parser's ring holds (64 blocks of up to 64
 * events), so that it must wait for the reader; a body large enough to be read in four parts
 * (about 450 KB of rows, a part per 128 KiB). */
#define ROWS_T 10000
#define ROWS_U 3

static struct arena arena;
static struct soap_request req;
static struct buf doc;
static size_t parts_allowed;   /* for rowstream_start: 2 unless a test says otherwise */
static int threads_fail_from;  /* the first thread start that fails (1-based; 0: none) */
static int threads_started;

/* Linked in place of pthread_create (-Wl,--wrap): fails from start threads_fail_from on. */
int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*run)(void *),
                          void *arg);
int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*run)(void *),
                          void *arg);
int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*run)(void *),
                          void *arg)
{
    if (threads_fail_from && ++threads_started >= threads_fail_from)
        return EAGAIN;
    return __real_pthread_create(thread, attr, run, arg);
}

/* A batch of n rows; row bad (0: none) has op "X", between(i) goes right before row i (NULL:
 * nothing). p: the element prefix ("" or "m:"). */
static void put_batch(const char *p, const char *table, const char *columns, int n, int lsn,
                      int bad, const char *(*between)(int))
{
    buf_printf(&doc, "<%sBatch><%sTable>%s</%sTable><%sColumns>%s</%sColumns><%sRows>", p, p, table,
               p, p, columns, p, p);
    for (int i = 1; i <= n; i++) {
        if (between && between(i))
            buf_printf(&doc, "%s", between(i));
        buf_printf(&doc, "<%sRow op=\"%s\" lsn=\"%d\"><%sV>%d</%sV><%sV>v%d</%sV></%sRow>", p,
                   i == bad ? "X" : "I", i, p, i, p, p, i, p, p);
    }
    buf_printf(&doc, "</%sRows><%sLsn>%d</%sLsn></%sBatch>", p, p, lsn, p, p);
}

/* Two batches of two tables (the first with row bad of op "X", and between(i) before its row i);
 * tail goes right before </Batches>; p: the prefix of the operation's elements. */
static void build_with(const char *decl, const char *p, int bad, const char *(*between)(int),
                       const char *tail)
{
    buf_reset(&doc);
    buf_printf(&doc, "%s<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\" xmlns:m=\"" SOAP_NS "\"><s:Header>"
               "<SignedToken xmlns=\"" SOAP_NS "\">tok.en.sig</SignedToken></s:Header><s:Body>"
               "<%sRowDataRequest xmlns=\"" SOAP_NS "\"><%sBatches>", decl, p, p);
    put_batch(p, "t", "<Name>id</Name><Name>v</Name>", ROWS_T, 900, bad, between);
    put_batch(p, "u", "<Name>k</Name><Name>n</Name>", ROWS_U, 7, 0, NULL);
    buf_printf(&doc, "%s</%sBatches></%sRowDataRequest></s:Body></s:Envelope>", tail, p, p);
}

static void build(const char *tail)
{
    build_with("", "", 0, NULL, tail);
}

static struct rowstream *start(void)
{
    struct rowstream *rs = rowstream_start(doc.data, doc.len, NULL, parts_allowed, &arena, &req);
    ck_assert_ptr_nonnull(rs);
    return rs;
}

static void setup(void)
{
    arena_init(&arena);
    buf_init(&doc);
    build("");
    parts_allowed = 2;
    threads_fail_from = 0;
}

static void teardown(void)
{
    arena_free(&arena);
    buf_free(&doc);
}

/* The one-piece parse's answer to the document built. */
static int parse_in_one_piece(struct soap_request *out, struct arena *a, struct fault *f)
{
    arena_init(a);
    return soap_parse_request(doc.data, doc.len, NULL, a, out, f);
}

/* The finished request is the one-piece parse's, batch by batch, row by row, value by value. */
static void assert_one_piece_request(void)
{
    struct soap_request one;
    struct arena a;
    struct fault f;
    ck_assert_int_eq(parse_in_one_piece(&one, &a, &f), 0);
    ck_assert_int_eq(req.op, one.op);
    ck_assert_int_eq(req.ntokens, one.ntokens);
    ck_assert_int_eq(req.body_fault.code, one.body_fault.code);
    ck_assert_uint_eq(req.nbatches, one.nbatches);
    for (size_t b = 0; b < one.nbatches; b++) {
        const struct batch *got = &req.batches[b], *want = &one.batches[b];
        ck_assert_str_eq(got->table, want->table);
        ck_assert_uint_eq(got->ncolumns, want->ncolumns);
        ck_assert_int_eq(got->has_lsn, want->has_lsn);
        ck_assert_int_eq(got->lsn, want->lsn);
        ck_assert_uint_eq(got->nrows, want->nrows);
        for (size_t r = 0; r < want->nrows; r++) {
            const struct row *gr = &got->rows[r], *wr = &want->rows[r];
            ck_assert_int_eq(gr->op, wr->op);
            ck_assert_int_eq(gr->lsn, wr->lsn);
            ck_assert_uint_eq(gr->nvalues, wr->nvalues);
            for (size_t v = 0; v < wr->nvalues; v++) {
                ck_assert_int_eq(gr->values[v].kind, wr->values[v].kind);
                ck_assert_uint_eq(gr->values[v].len, wr->values[v].len);
                ck_assert(memcmp(gr->values[v].data, wr->values[v].data, wr->values[v].len) == 0);
            }
        }
    }
    arena_free(&a);
}

/* Reads every event of the document built, checks them against the finished request, and
 * that it was read in that many parts. */
static void read_every_event(size_t parts)
{
    struct rowstream *rs = start();
    /* What is told is remembered, to be compared with the finished request. */
    static struct row told[ROWS_T + ROWS_U];
    size_t ntold = 0, batches = 0, ends = 0;
    const struct rowstream_event *ev;
    while ((ev = rowstream_next(rs))->kind != ROWSTREAM_END) {
        switch (ev->kind) {
        case ROWSTREAM_BATCH:
            ck_assert_str_eq(ev->batch.table, batches == 0 ? "t" : "u");
            ck_assert_uint_eq(ev->batch.ncolumns, 2);
            ck_assert_uint_eq(ntold, batches == 0 ? 0 : ROWS_T);   /* before its rows */
            if (batches++ == 0) {
                const struct rowstream_prologue *pro = rowstream_prologue(rs);
                ck_assert_int_eq(pro->ntokens, 1);
                ck_assert_int_eq(pro->op, SOAP_OP_ROWDATA);
                ck_assert_int_eq(pro->op_fault, FAULT_NONE);
                ck_assert_int_eq((int)pro->token_len, 10);
                ck_assert(memcmp(pro->token, "tok.en.sig", 10) == 0);
            }
            break;
        case ROWSTREAM_ROW:
            ck_assert_uint_lt(ntold, ROWS_T + ROWS_U);
            told[ntold++] = ev->row;
            break;
        case ROWSTREAM_BATCH_END:
            ck_assert_uint_eq(ntold, ends == 0 ? ROWS_T : ROWS_T + ROWS_U);   /* after them */
            ck_assert(ev->batch.has_lsn);
            ck_assert_int_eq(ev->batch.lsn, ends == 0 ? 900 : 7);
            ends++;
            break;
        case ROWSTREAM_ABORT:
            ck_abort_msg("the parts did not join");
            break;
        case ROWSTREAM_END:
            break;
        }
    }
    ck_assert_ptr_eq(rowstream_next(rs), ev);   /* END stays END */
    struct fault f;
    size_t read_in = 0;
    ck_assert_int_eq(rowstream_finish(rs, &f, &read_in), 0);
    ck_assert_uint_eq(read_in, parts);
    assert_one_piece_request();
    ck_assert_uint_eq(batches, 2);
    ck_assert_uint_eq(ends, 2);
    ck_assert_uint_eq(ntold, ROWS_T + ROWS_U);
    ck_assert_int_eq(req.op, SOAP_OP_ROWDATA);
    ck_assert_int_eq(req.body_fault.code, FAULT_NONE);
    ck_assert_uint_eq(req.nbatches, 2);
    ck_assert_uint_eq(req.batches[0].nrows, ROWS_T);
    ck_assert_uint_eq(req.batches[1].nrows, ROWS_U);
    for (size_t i = 0; i < ntold; i++) {
        const struct row *r = i < ROWS_T ? &req.batches[0].rows[i] : &req.batches[1].rows[i - ROWS_T];
        ck_assert_int_eq(told[i].op, 'I');
        ck_assert_ptr_eq(told[i].values, r->values);   /* the same values, not copies */
        ck_assert_uint_eq(told[i].nvalues, 2);
        ck_assert_int_eq(told[i].lsn, r->lsn);
        char want[16];
        snprintf(want, sizeof(want), "%zu", i < ROWS_T ? i + 1 : i - ROWS_T + 1);
        ck_assert_str_eq(told[i].values[0].data, want);
    }
}

/* In as many parts as allowed, one to four. */
START_TEST(test_every_event_in_order)
{
    for (parts_allowed = 1; parts_allowed <= ROWSTREAM_PARTS_MAX; parts_allowed++) {
        read_every_event(parts_allowed);
        arena_free(&arena);
        arena_init(&arena);
    }
}
END_TEST

/* The split holds with prefixed elements (the guess looks for any prefix's </...:Row>). */
START_TEST(test_prefixed_elements_in_parts)
{
    build_with("", "m:", 0, NULL, "");
    parts_allowed = ROWSTREAM_PARTS_MAX;
    read_every_event(ROWSTREAM_PARTS_MAX);
}
END_TEST

/* Reads the events to the last one, counting the rows told per batch (1-based, up to 3). */
static const struct rowstream_event *read_to_the_end(struct rowstream *rs, size_t rows[4],
                                                     size_t *batches, size_t *ends)
{
    const struct rowstream_event *ev;
    while ((ev = rowstream_next(rs))->kind != ROWSTREAM_END && ev->kind != ROWSTREAM_ABORT) {
        *batches += ev->kind == ROWSTREAM_BATCH;
        *ends += ev->kind == ROWSTREAM_BATCH_END;
        if (ev->kind == ROWSTREAM_ROW && *batches < 4)
            rows[*batches]++;
    }
    return ev;
}

/* Two batches in an envelope of their own: u of nu rows, then t of nt rows; reads their events
 * and checks that the body was read in that many parts, the finished request against the
 * one-piece parse, and that its rows are the ones told, in order. */
static void read_u_then_t(int nu, int nt, size_t parts)
{
    buf_reset(&doc);
    buf_printf(&doc, "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\"><s:Header><SignedToken xmlns=\""
               SOAP_NS "\">tok.en.sig</SignedToken></s:Header><s:Body><RowDataRequest xmlns=\""
               SOAP_NS "\"><Batches>");
    put_batch("", "u", "<Name>k</Name><Name>n</Name>", nu, 7, 0, NULL);
    put_batch("", "t", "<Name>id</Name><Name>v</Name>", nt, 900, 0, NULL);
    buf_printf(&doc, "</Batches></RowDataRequest></s:Body></s:Envelope>");
    struct rowstream *rs = start();
    /* The values of each row told, to be found in the finished request. */
    static const struct raw_value *told[3 * ROWS_T];
    size_t ntold = 0, batches = 0, ends = 0;
    const struct rowstream_event *ev;
    while ((ev = rowstream_next(rs))->kind != ROWSTREAM_END) {
        ck_assert_int_ne(ev->kind, ROWSTREAM_ABORT);
        batches += ev->kind == ROWSTREAM_BATCH;
        ends += ev->kind == ROWSTREAM_BATCH_END;
        if (ev->kind == ROWSTREAM_ROW) {
            ck_assert_uint_lt(ntold, (size_t)(nu + nt));
            told[ntold++] = ev->row.values;
        }
    }
    ck_assert_uint_eq(batches, 2);
    ck_assert_uint_eq(ends, 2);
    struct fault f;
    size_t read_in = 0;
    ck_assert_int_eq(rowstream_finish(rs, &f, &read_in), 0);
    ck_assert_uint_eq(read_in, parts);
    assert_one_piece_request();
    ck_assert_uint_eq(req.batches[0].nrows, nu);
    ck_assert_uint_eq(req.batches[1].nrows, nt);
    ck_assert_uint_eq(ntold, (size_t)(nu + nt));
    for (size_t i = 0; i < ntold; i++) {   /* the very rows told, not a second reading of them */
        const struct row *r = i < (size_t)nu ? &req.batches[0].rows[i] : &req.batches[1].rows[i - nu];
        ck_assert_ptr_eq(told[i], r->values);
    }
}

/* The bulk of the rows in a later batch: the small batch's end tag is found, the cut is made in
 * the large one; the second parser reads the small batch before it again and tells none of
 * it. */
START_TEST(test_cut_in_a_later_batch)
{
    read_u_then_t(ROWS_U, ROWS_T, 2);
}
END_TEST

/* A large batch, then a larger one: the guess for two parts, 3/8 of the way to the body's last
 * </Rows>, falls in the second; the first parser sees its batch end before the cut and reads on
 * alone. A limit, not a goal: the second batch is not split either (one split is tried per
 * body). In four parts, the first two guesses fall in the first batch and the third in the
 * second: the third part's parser reads on alone, the fourth is stopped. */
START_TEST(test_guess_past_the_batch_in_one_piece)
{
    read_u_then_t(ROWS_T, 2 * ROWS_T, 1);
    arena_free(&arena);
    arena_init(&arena);
    parts_allowed = ROWSTREAM_PARTS_MAX;
    read_u_then_t(ROWS_T, 2 * ROWS_T, 3);
}
END_TEST

/* A body libxml2 converts from another encoding has no offsets in the body: one piece. */
START_TEST(test_converted_encoding_in_one_piece)
{
    build_with("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>", "", 0, NULL, "");
    read_every_event(1);
}
END_TEST

/* head, unit 60,000 times, tail: built once into b, and put before row ROWS_T / 3. */
static const char *large_before_a_third(struct buf *b, int i, const char *head, const char *unit,
                                        const char *tail)
{
    if (i != ROWS_T / 3)
        return NULL;
    if (!b->len) {
        buf_printf(b, "%s", head);
        for (int k = 0; k < 60000; k++)
            buf_printf(b, "%s", unit);
        buf_printf(b, "%s", tail);
    }
    return b->data;
}

/* A comment as large as the rest, full of "</Row>", sits where the guess looks: the guessed end
 * is no row's end, so the first parser reads on alone, and every row is told once, in order. */
static const char *big_comment(int i)
{
    static struct buf comment;
    return large_before_a_third(&comment, i, "<!--", " </Row>", " -->");
}

START_TEST(test_guess_in_a_comment_in_one_piece)
{
    build_with("", "", 0, big_comment, "");
    read_every_event(1);
}
END_TEST

/* In four parts, the first guess falls before that comment and the second and third in it: the
 * second part's parser reads on alone to the end, the later ones are stopped. */
START_TEST(test_guess_in_a_comment_for_a_middle_part)
{
    build_with("", "", 0, big_comment, "");
    parts_allowed = ROWSTREAM_PARTS_MAX;
    read_every_event(2);
}
END_TEST

/* The same in a CDATA section, as large as the rest, that ends "</Row> x]]>": the second
 * parser's document then goes on with " x]]>", an XML error raised while libxml2 reads text
 * (where xmlStopParser once freed the input under its reader: a crash). One parser, and every
 * row as the one-piece parse has it. */
static const char *big_cdata_row(int i)
{
    static struct buf row;
    return large_before_a_third(&row, i, "<Row op=\"I\"><V>0</V><V><![CDATA[", "yyyyyyy",
                                "</Row> x]]></V></Row>");
}

START_TEST(test_guess_in_a_cdata_section_in_one_piece)
{
    build_with("", "", 0, big_cdata_row, "");
    struct rowstream *rs = start();
    size_t rows[4] = {0}, batches = 0, ends = 0;
    ck_assert_int_eq(read_to_the_end(rs, rows, &batches, &ends)->kind, ROWSTREAM_END);
    ck_assert_uint_eq(rows[1], ROWS_T + 1);
    struct fault f;
    size_t parts = 0;
    ck_assert_int_eq(rowstream_finish(rs, &f, &parts), 0);
    ck_assert_uint_eq(parts, 1);
    assert_one_piece_request();
    ck_assert_uint_eq(req.batches[0].rows[ROWS_T / 3 - 1].values[1].len, 7 * 60000 + 8);
}
END_TEST

/* A fault before the cut: the first parser never reaches it, the second is stopped, and the
 * events end as a one-piece parse's do (nothing after the bad row). */
START_TEST(test_fault_before_the_cut)
{
    build_with("", "", 10, NULL, "");
    struct rowstream *rs = start();
    size_t rows[4] = {0}, batches = 0, ends = 0;
    ck_assert_int_eq(read_to_the_end(rs, rows, &batches, &ends)->kind, ROWSTREAM_END);
    ck_assert_uint_eq(batches, 1);
    ck_assert_uint_eq(rows[1], 9);
    ck_assert_uint_eq(ends, 0);
    struct fault f;
    size_t parts = 0;
    ck_assert_int_eq(rowstream_finish(rs, &f, &parts), 0);
    ck_assert_uint_eq(parts, 1);
    ck_assert_int_eq(req.body_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(req.body_fault.message, "batch 1: row 10: op \"X\""));
}
END_TEST

/* A fault after the cut, found by a later parser (the last of two; the second of four, which
 * then never reaches its end): the events end in ABORT, and the request is parsed again in one
 * piece, so that the fault names the row as counted from the batch's start (a later parser
 * counts from its cut). */
static void fault_after_the_cut(int bad)
{
    build_with("", "", bad, NULL, "");
    struct rowstream *rs = start();
    size_t rows[4] = {0}, batches = 0, ends = 0;
    ck_assert_int_eq(read_to_the_end(rs, rows, &batches, &ends)->kind, ROWSTREAM_ABORT);
    ck_assert_uint_eq(rows[1], (size_t)bad - 1);
    struct fault f;
    size_t parts = 0;
    ck_assert_int_eq(rowstream_finish(rs, &f, &parts), 0);
    ck_assert_uint_eq(parts, 1);
    ck_assert_int_eq(req.body_fault.code, FAULT_MALFORMED_REQUEST);
    char want[64];
    snprintf(want, sizeof(want), "batch 1: row %d: op \"X\"", bad);
    ck_assert_ptr_nonnull(strstr(req.body_fault.message, want));
}

START_TEST(test_fault_after_the_cut_named_as_one_piece)
{
    fault_after_the_cut(ROWS_T * 3 / 4);
}
END_TEST

START_TEST(test_fault_in_a_middle_part_named_as_one_piece)
{
    parts_allowed = ROWSTREAM_PARTS_MAX;
    fault_after_the_cut(ROWS_T / 5);
}
END_TEST

/* One stream polled from the start: every event, then the end, which stays at hand. Returns
 * how many polls found the parser behind (NULL). */
static size_t poll_to_the_end(void)
{
    struct rowstream *rs = start();
    size_t events = 0, behind = 0;
    const struct rowstream_event *ev;
    for (;;) {
        ev = rowstream_poll(rs);
        if (!ev) {
            behind++;
            sched_yield();
            continue;
        }
        if (ev->kind == ROWSTREAM_END)
            break;
        events++;
    }
    ck_assert_uint_eq(events, 2 + ROWS_T + ROWS_U + 2);   /* two batches, their rows, two ends */
    ev = rowstream_poll(rs);
    ck_assert_ptr_nonnull(ev);
    ck_assert_int_eq(ev->kind, ROWSTREAM_END);
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f, NULL), 0);
    return behind;
}

/* rowstream_poll gives the events at hand without waiting: polled from the start, it finds the
 * parser behind (NULL) time and again, and still hands over every event. A poll that waited
 * would never say NULL. On a busy machine the parser may be through the body before the first
 * poll, which proves nothing either way: such a run is tried again, up to 20 times. */
START_TEST(test_poll_takes_what_is_at_hand)
{
    size_t behind = 0;
    for (int run = 0; run < 20 && behind == 0; run++) {
        arena_free(&arena);
        arena_init(&arena);
        behind = poll_to_the_end();
    }
    ck_assert_uint_gt(behind, 0);
}
END_TEST

/* Finished early, after none or a few events: the parse still completes. */
START_TEST(test_finish_without_reading)
{
    for (int read = 0; read <= 3; read += 3) {
        struct rowstream *rs = start();
        for (int i = 0; i < read; i++)
            ck_assert_int_ne(rowstream_next(rs)->kind, ROWSTREAM_END);
        struct fault f;
        size_t parts = 0;
        ck_assert_int_eq(rowstream_finish(rs, &f, &parts), 0);
        ck_assert_uint_eq(parts, 2);   /* the split is made, and joined, told or not */
        assert_one_piece_request();
        ck_assert_uint_eq(req.nbatches, 2);
        ck_assert_uint_eq(req.batches[0].nrows, ROWS_T);
        ck_assert_uint_eq(req.batches[1].nrows, ROWS_U);
        ck_assert_int_eq(req.batches[1].lsn, 7);
    }
}
END_TEST

/* Finished right after the first event, as the worker does when the token does not verify:
 * the later parsers start after that, and must still let the finish end (a later part's ring,
 * one block per batch, fills with the small batches after the large one; they once waited on it
 * for ever), in two, three and four parts. */
START_TEST(test_finish_before_the_split)
{
    buf_reset(&doc);
    buf_printf(&doc, "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\"><s:Body><RowDataRequest xmlns=\""
               SOAP_NS "\"><Batches>");
    put_batch("", "t", "<Name>id</Name><Name>v</Name>", ROWS_T, 900, 0, NULL);
    for (int k = 0; k < 2000; k++)
        put_batch("", "u", "<Name>k</Name>", 1, k, 0, NULL);
    buf_printf(&doc, "</Batches></RowDataRequest></s:Body></s:Envelope>");
    parts_allowed = (size_t)_i;
    struct rowstream *rs = start();
    ck_assert_int_eq(rowstream_next(rs)->kind, ROWSTREAM_BATCH);
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f, NULL), 0);
    assert_one_piece_request();
    ck_assert_uint_eq(req.nbatches, 2001);
}
END_TEST

/* Not well-formed after the cut: the second parser fails, the events end in ABORT, and the
 * answer is the one-piece parse's (its error line). */
START_TEST(test_not_well_formed_ends_the_events)
{
    build("<Batch>");   /* opened, never closed: the error comes after every row */
    struct rowstream *rs = start();
    size_t rows[4] = {0}, batches = 0, ends = 0;
    ck_assert_int_eq(read_to_the_end(rs, rows, &batches, &ends)->kind, ROWSTREAM_ABORT);
    ck_assert_uint_eq(rows[1] + rows[2], ROWS_T + ROWS_U);
    struct fault f, want;
    ck_assert_int_eq(rowstream_finish(rs, &f, NULL), -1);
    ck_assert_int_eq(f.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(f.message, "XML error"));
    struct soap_request one;
    struct arena a;
    ck_assert_int_eq(parse_in_one_piece(&one, &a, &want), -1);
    ck_assert_str_eq(f.message, want.message);
    arena_free(&a);
}
END_TEST

/* After a shape error nothing more is told, and the request carries the body fault. */
START_TEST(test_shape_error_stops_telling)
{
    build("<Batch><Table>w</Table><Columns><Name>a</Name></Columns><Rows><Row op=\"X\"><V>1</V></Row>"
          "<Row op=\"I\"><V>2</V></Row></Rows></Batch>");
    struct rowstream *rs = start();
    size_t rows[4] = {0}, batches = 0, ends = 0;
    read_to_the_end(rs, rows, &batches, &ends);
    ck_assert_uint_eq(batches, 3);   /* the second parser's first batch is not told again */
    ck_assert_uint_eq(rows[1], ROWS_T);
    ck_assert_uint_eq(rows[2], ROWS_U);
    ck_assert_uint_eq(rows[3], 0);   /* neither the bad row nor the good one after it */
    ck_assert_uint_eq(ends, 2);      /* the third batch never ends */
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f, NULL), 0);
    ck_assert_int_eq(req.body_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(req.body_fault.message, "batch 3: row 1: op \"X\""));
}
END_TEST

/* A parser thread that cannot start: the first, and rowstream_start says so (the caller then
 * parses as usual); a later part's, and the first parser reads the body alone, those already
 * started stopped (second of four: none; third: the second part's, which must not be read). */
START_TEST(test_thread_start_failures)
{
    threads_fail_from = 1;
    ck_assert_ptr_null(rowstream_start(doc.data, doc.len, NULL, parts_allowed, &arena, &req));
    parts_allowed = ROWSTREAM_PARTS_MAX;
    for (threads_fail_from = 2; threads_fail_from <= 4; threads_fail_from++) {
        threads_started = 0;
        read_every_event(1);
        ck_assert_int_eq(threads_started, threads_fail_from);
        arena_free(&arena);
        arena_init(&arena);
    }
}
END_TEST

/* Other operations tell nothing. */
START_TEST(test_other_operation_tells_nothing)
{
    buf_reset(&doc);
    buf_printf(&doc, "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\"><s:Body><WipeRequest xmlns=\"" SOAP_NS
               "\"><Tables><Name>t</Name></Tables></WipeRequest></s:Body></s:Envelope>");
    struct rowstream *rs = start();
    ck_assert_int_eq(rowstream_next(rs)->kind, ROWSTREAM_END);
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f, NULL), 0);
    ck_assert_int_eq(req.op, SOAP_OP_WIPE);
    ck_assert_uint_eq(req.nwipe, 1);
}
END_TEST

int main(void)
{
    /* Blocks of 64 KiB and more get mappings of their own, unmapped when freed: a read of a freed
     * large input then crashes here instead of reading stale memory (valgrind sees it anyway). */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    Suite *s = suite_create("rowstream");
    TCase *tc = tcase_create("rowstream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_event_in_order);
    tcase_add_test(tc, test_prefixed_elements_in_parts);
    tcase_add_test(tc, test_cut_in_a_later_batch);
    tcase_add_test(tc, test_guess_past_the_batch_in_one_piece);
    tcase_add_test(tc, test_converted_encoding_in_one_piece);
    tcase_add_test(tc, test_guess_in_a_comment_in_one_piece);
    tcase_add_test(tc, test_guess_in_a_comment_for_a_middle_part);
    tcase_add_test(tc, test_guess_in_a_cdata_section_in_one_piece);
    tcase_add_test(tc, test_fault_before_the_cut);
    tcase_add_test(tc, test_fault_after_the_cut_named_as_one_piece);
    tcase_add_test(tc, test_fault_in_a_middle_part_named_as_one_piece);
    tcase_add_test(tc, test_poll_takes_what_is_at_hand);
    tcase_add_test(tc, test_finish_without_reading);
    tcase_add_loop_test(tc, test_finish_before_the_split, 2, ROWSTREAM_PARTS_MAX + 1);
    tcase_add_test(tc, test_not_well_formed_ends_the_events);
    tcase_add_test(tc, test_shape_error_stops_telling);
    tcase_add_test(tc, test_other_operation_tells_nothing);
    tcase_add_test(tc, test_thread_start_failures);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
