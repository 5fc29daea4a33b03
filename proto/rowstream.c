/* proto/rowstream: one request parsed on a helper thread, its RowData events handed to the
 * calling thread through a small ring of blocks (see rowstream.h).
 *
 * Threads: the parser thread alone touches the arena, the request and the block it fills
 * (blocks[head % QUEUE_BLOCKS], while head - tail < QUEUE_BLOCKS); the calling thread alone
 * reads blocks[tail % QUEUE_BLOCKS] while tail < head. head, tail, done and discard change only
 * under mu, and every change is signalled on cond. The thread is joined before
 * rowstream_finish returns, so none outlives the call (and none exists when a worker forks). */
#include "proto/rowstream.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "common/xalloc.h"

enum {
    BLOCK_EVENTS = 64,    /* events handed over at a time (one lock round trip each); what
                             the worker has left to apply once the parse ends */
    QUEUE_BLOCKS = 64     /* how far the parser may run ahead of the rows applied: about a
                             1 MB call's rows, so that a slow moment of the worker's (a
                             commit elsewhere, a busy CPU) never stops the parse */
};

struct block {
    size_t n;
    struct rowstream_event events[BLOCK_EVENTS];
};

struct rowstream {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t head;          /* blocks handed over */
    size_t tail;          /* blocks given back */
    int done;             /* the parse is over */
    int discard;          /* the caller wants nothing more */

    /* The parser thread's own. */
    const char *body;
    size_t len;
    const char *soapaction;
    struct arena *arena;
    struct soap_request *req;
    struct block *filling;            /* NULL between blocks */
    int quiet;                        /* seen discard: tell nothing more */
    int told_batch;
    struct rowstream_prologue prologue;   /* written before the first batch is handed over */
    int rc;
    struct fault env_fault;

    /* The calling thread's own. */
    int reading;                      /* blocks[tail % QUEUE_BLOCKS] is being read */
    size_t pos;
    struct rowstream_event end;

    struct block blocks[QUEUE_BLOCKS];
};

/* ---- the parser thread ---- */

static void hand_over(struct rowstream *rs)
{
    pthread_mutex_lock(&rs->mu);
    rs->head++;
    rs->quiet = rs->discard;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    rs->filling = NULL;
}

/* Waits for a free block; 0 when the caller wants nothing more. */
static int take_free_block(struct rowstream *rs)
{
    pthread_mutex_lock(&rs->mu);
    while (!rs->discard && rs->head - rs->tail == QUEUE_BLOCKS)
        pthread_cond_wait(&rs->cond, &rs->mu);
    rs->quiet = rs->discard;
    pthread_mutex_unlock(&rs->mu);
    if (rs->quiet)
        return 0;
    rs->filling = &rs->blocks[rs->head % QUEUE_BLOCKS];
    rs->filling->n = 0;
    return 1;
}

static void tell(struct rowstream *rs, const struct rowstream_event *ev, int now)
{
    if (rs->quiet || (!rs->filling && !take_free_block(rs)))
        return;
    rs->filling->events[rs->filling->n++] = *ev;
    if (now || rs->filling->n == BLOCK_EVENTS)
        hand_over(rs);
}

/* A batch is handed over at once, so that the caller can start while the rows are parsed. */
static void on_batch(void *ctx, const struct soap_request *req, const struct batch *batch)
{
    struct rowstream *rs = ctx;
    if (!rs->told_batch) {
        rs->told_batch = 1;
        rs->prologue = (struct rowstream_prologue){
            .token = req->token, .token_len = req->token_len, .ntokens = req->ntokens,
            .op = req->op, .op_fault = req->op_fault.code,
        };
    }
    struct rowstream_event ev = {.kind = ROWSTREAM_BATCH, .batch = *batch};
    tell(rs, &ev, 1);
}

static void on_row(void *ctx, const struct row *row)
{
    struct rowstream_event ev = {.kind = ROWSTREAM_ROW, .row = *row};
    tell(ctx, &ev, 0);
}

static void on_batch_end(void *ctx, const struct batch *batch)
{
    struct rowstream_event ev = {.kind = ROWSTREAM_BATCH_END, .batch = *batch};
    tell(ctx, &ev, 0);
}

static const struct soap_row_listener listener = {
    .batch = on_batch, .row = on_row, .batch_end = on_batch_end,
};

static void *parse_thread(void *arg)
{
    struct rowstream *rs = arg;
    rs->rc = soap_parse_request_told(rs->body, rs->len, rs->soapaction, rs->arena, rs->req,
                                     &rs->env_fault, &listener, rs);
    if (rs->filling)
        hand_over(rs);
    pthread_mutex_lock(&rs->mu);
    rs->done = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    return NULL;
}

/* ---- the calling thread ---- */

struct rowstream *rowstream_start(const char *body, size_t len, const char *soapaction,
                                  struct arena *arena, struct soap_request *req)
{
    xmlInitParser();   /* once per process, and never concurrently with a parse */
    struct rowstream *rs = xmalloc(sizeof(*rs));
    memset(rs, 0, offsetof(struct rowstream, blocks));
    rs->body = body;
    rs->len = len;
    rs->soapaction = soapaction;
    rs->arena = arena;
    rs->req = req;
    rs->end.kind = ROWSTREAM_END;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cond, NULL);
    /* Signals stay with the worker's own thread (its libevent loop handles them). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&rs->thread, NULL, parse_thread, rs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&rs->cond);
        pthread_mutex_destroy(&rs->mu);
        free(rs);
        return NULL;
    }
    return rs;
}

/* The next event; NULL when there is none yet and wait is 0. */
static const struct rowstream_event *take_event(struct rowstream *rs, int wait)
{
    if (rs->reading) {
        struct block *b = &rs->blocks[rs->tail % QUEUE_BLOCKS];
        if (rs->pos < b->n)
            return &b->events[rs->pos++];
        pthread_mutex_lock(&rs->mu);
        rs->tail++;
        pthread_cond_broadcast(&rs->cond);
        pthread_mutex_unlock(&rs->mu);
        rs->reading = 0;
    }
    pthread_mutex_lock(&rs->mu);
    while (wait && rs->head == rs->tail && !rs->done)
        pthread_cond_wait(&rs->cond, &rs->mu);
    int empty = rs->head == rs->tail, done = rs->done;
    pthread_mutex_unlock(&rs->mu);
    if (empty)
        return done ? &rs->end : NULL;   /* with wait, empty means done */
    rs->reading = 1;
    rs->pos = 1;   /* a block is handed over with one event at least */
    return &rs->blocks[rs->tail % QUEUE_BLOCKS].events[0];
}

const struct rowstream_event *rowstream_next(struct rowstream *rs)
{
    return take_event(rs, 1);
}

const struct rowstream_event *rowstream_poll(struct rowstream *rs)
{
    return take_event(rs, 0);
}

const struct rowstream_prologue *rowstream_prologue(const struct rowstream *rs)
{
    return &rs->prologue;
}

int rowstream_finish(struct rowstream *rs, struct fault *env_fault)
{
    pthread_mutex_lock(&rs->mu);
    rs->discard = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    pthread_join(rs->thread, NULL);
    int rc = rs->rc;
    *env_fault = rs->env_fault;
    pthread_cond_destroy(&rs->cond);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
    return rc;
}
