/* tests/unit/test_rowstream: proto/rowstream. The events tell every batch and row of the
 * request, in document order, and the finished request is exactly soap_parse_request's,
 * whether the events are read in full, in part, or not at all (the parser then runs ahead and
 * must neither block nor stop); a body that is not well-formed ends the events and fails. */
#include <sched.h>

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/rowstream.h"
#include "proto/soap.h"

/* More rows than the ring holds (64 blocks of up to 64 events), so that the parser must wait. */
#define ROWS_T 5000
#define ROWS_U 3

static struct arena arena;
static struct soap_request req;
static struct buf doc;

static void put_rows(const char *table, const char *columns, int n, int lsn)
{
    buf_printf(&doc, "<Batch><Table>%s</Table><Columns>%s</Columns><Rows>", table, columns);
    for (int i = 1; i <= n; i++)
        buf_printf(&doc, "<Row op=\"I\" lsn=\"%d\"><V>%d</V><V>v%d</V></Row>", i, i, i);
    buf_printf(&doc, "</Rows><Lsn>%d</Lsn></Batch>", lsn);
}

/* Two batches of two tables; tail goes right before </Batches>. */
static void build(const char *tail)
{
    buf_reset(&doc);
    buf_printf(&doc, "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\"><s:Header><SignedToken xmlns=\""
               SOAP_NS "\">tok.en.sig</SignedToken></s:Header><s:Body><RowDataRequest xmlns=\""
               SOAP_NS "\"><Batches>");
    put_rows("t", "<Name>id</Name><Name>v</Name>", ROWS_T, 900);
    put_rows("u", "<Name>k</Name><Name>n</Name>", ROWS_U, 7);
    buf_printf(&doc, "%s</Batches></RowDataRequest></s:Body></s:Envelope>", tail);
}

static struct rowstream *start(void)
{
    struct rowstream *rs = rowstream_start(doc.data, doc.len, NULL, &arena, &req);
    ck_assert_ptr_nonnull(rs);
    return rs;
}

static void setup(void)
{
    arena_init(&arena);
    buf_init(&doc);
    build("");
}

static void teardown(void)
{
    arena_free(&arena);
    buf_free(&doc);
}

START_TEST(test_every_event_in_order)
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
        case ROWSTREAM_END:
            break;
        }
    }
    ck_assert_ptr_eq(rowstream_next(rs), ev);   /* END stays END */
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f), 0);
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
END_TEST

/* rowstream_poll gives the events at hand without waiting: polled from the start, it finds the
 * parser behind (NULL) time and again, and still hands over every event, then the end, which
 * stays at hand. A poll that waited would never say NULL. */
START_TEST(test_poll_takes_what_is_at_hand)
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
    ck_assert_uint_gt(behind, 0);
    ck_assert_uint_eq(events, 2 + ROWS_T + ROWS_U + 2);   /* two batches, their rows, two ends */
    ev = rowstream_poll(rs);
    ck_assert_ptr_nonnull(ev);
    ck_assert_int_eq(ev->kind, ROWSTREAM_END);
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f), 0);
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
        ck_assert_int_eq(rowstream_finish(rs, &f), 0);
        ck_assert_uint_eq(req.nbatches, 2);
        ck_assert_uint_eq(req.batches[0].nrows, ROWS_T);
        ck_assert_uint_eq(req.batches[1].nrows, ROWS_U);
        ck_assert_int_eq(req.batches[1].lsn, 7);
    }
}
END_TEST

START_TEST(test_not_well_formed_ends_the_events)
{
    build("<Batch>");   /* opened, never closed: the error comes after every row */
    struct rowstream *rs = start();
    size_t rows = 0;
    const struct rowstream_event *ev;
    while ((ev = rowstream_next(rs))->kind != ROWSTREAM_END)
        rows += ev->kind == ROWSTREAM_ROW;
    ck_assert_uint_eq(rows, ROWS_T + ROWS_U);
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f), -1);
    ck_assert_int_eq(f.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(f.message, "XML error"));
}
END_TEST

/* After a shape error nothing more is told, and the request carries the body fault. */
START_TEST(test_shape_error_stops_telling)
{
    build("<Batch><Table>w</Table><Columns><Name>a</Name></Columns><Rows><Row op=\"X\"><V>1</V></Row>"
          "<Row op=\"I\"><V>2</V></Row></Rows></Batch>");
    struct rowstream *rs = start();
    size_t batches = 0, ends = 0, rows[4] = {0};   /* rows told per batch, 1-based */
    const struct rowstream_event *ev;
    while ((ev = rowstream_next(rs))->kind != ROWSTREAM_END) {
        batches += ev->kind == ROWSTREAM_BATCH;
        ends += ev->kind == ROWSTREAM_BATCH_END;
        if (ev->kind == ROWSTREAM_ROW && batches < 4)
            rows[batches]++;
    }
    ck_assert_uint_eq(batches, 3);
    ck_assert_uint_eq(rows[1], ROWS_T);
    ck_assert_uint_eq(rows[2], ROWS_U);
    ck_assert_uint_eq(rows[3], 0);   /* neither the bad row nor the good one after it */
    ck_assert_uint_eq(ends, 2);      /* the third batch never ends */
    struct fault f;
    ck_assert_int_eq(rowstream_finish(rs, &f), 0);
    ck_assert_int_eq(req.body_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(req.body_fault.message, "op \"X\""));
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
    ck_assert_int_eq(rowstream_finish(rs, &f), 0);
    ck_assert_int_eq(req.op, SOAP_OP_WIPE);
    ck_assert_uint_eq(req.nwipe, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rowstream");
    TCase *tc = tcase_create("rowstream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_event_in_order);
    tcase_add_test(tc, test_poll_takes_what_is_at_hand);
    tcase_add_test(tc, test_finish_without_reading);
    tcase_add_test(tc, test_not_well_formed_ends_the_events);
    tcase_add_test(tc, test_shape_error_stops_telling);
    tcase_add_test(tc, test_other_operation_tells_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
