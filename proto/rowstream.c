/* proto/rowstream: one request parsed on helper threads, its RowData events handed to the
 * calling thread through a small ring of blocks per parser (see rowstream.h).
 *
 * A large body is read by two parsers at once. The first reads it from the start. As it opens
 * a batch's <Rows> that holds most of the body (judged by the text of end tags), it guesses
 * where a row ends about half way through those rows (the text of a </Row> end tag) and starts
 * a second parser on a copy of the body with the rows in between cut out: the body up to and
 * including that <Rows> start tag, then the body from the guessed end on. At a row's end inside
 * <Rows>, libxml2 is in the state it is in right after the <Rows> start tag (the same open
 * elements, the same namespaces, between two rows), so the second parser reads the rest as the
 * first would have; what it reads before the cut (the batches before, that batch's start) it
 * does not tell: the first parser does. The first parser checks the guess: when a row of that batch
 * ends exactly there, it stops, and the request is its rows, then the second parser's. When no
 * row ends there (the text was in a comment or a CDATA section, or past the batch), the second
 * parser is stopped and the first reads on alone. When the second parser fails after the first
 * has stopped, the calling thread is told ROWSTREAM_ABORT and the body is parsed again in one
 * piece, so that every answer is the one-piece parse's (its error lines and row numbers).
 *
 * Threads: each parser thread alone touches its arena, its request and the block it fills
 * (blocks[head % nblocks], while head - tail < nblocks); the calling thread alone reads
 * blocks[tail % nblocks] while tail < head. head, tail, done, discard, halt and a
 * settled split change only under mu, and every change is signalled on cond. The first parser
 * thread prepares and starts the second before it settles the split; the calling thread reads
 * the second's fields only once it has seen, under mu, the first done with the split made. Both
 * are joined before rowstream_finish returns, so none outlives the call (and none exists when a
 * worker forks). */
#include "proto/rowstream.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "common/xalloc.h"
#include "proto/soap_xml.h"

enum {
    BLOCK_EVENTS = 64,    /* events handed over at a time (one lock round trip each); what
                             the worker has left to apply once the parse ends */
    QUEUE_BLOCKS = 64,    /* how far the first parser may run ahead of the rows applied:
                             about a 1 MB call's rows, so that a slow moment of the worker's (a
                             commit elsewhere, a busy CPU) never stops the parse */
    ROW_BYTES_MIN = 16    /* shorter than any row (<Row op="D"><V/></Row>): the second parser,
                             whose events wait until the first parser's are applied, gets a
                             block for every BLOCK_EVENTS * ROW_BYTES_MIN bytes of its rows, so
                             that it never waits (blocks are touched only as they fill) */
};
/* Fewer rows are read by one parser: a second would cost about what it saves. */
#define SPLIT_MIN_BYTES (128 * 1024)

struct block {
    size_t n;
    struct rowstream_event events[BLOCK_EVENTS];
};

enum split { SPLIT_NONE, SPLIT_PENDING, SPLIT_MADE, SPLIT_FAILED };

struct parser {
    struct rowstream *rs;
    pthread_t thread;
    const char *doc;                  /* the body, or the second's own copy (until its first batch) */
    size_t len;
    struct arena *arena;
    struct soap_request *req;
    int rc;
    struct fault env_fault;
    struct block *blocks;
    size_t nblocks;
    size_t batches;                   /* batches read (the parser thread's own) */

    /* Under rs->mu. */
    size_t head;                      /* blocks handed over */
    size_t tail;                      /* blocks given back */
    int done;                         /* the parse is over */
    int discard;                      /* the caller wants nothing more: tell nothing */
    int halt;                         /* the second parser's guess was wrong: stop */

    /* The parser thread's own. */
    struct block *filling;            /* NULL between blocks */
    int quiet;                        /* seen discard or halt */

    /* The calling thread's own. */
    int reading;                      /* blocks[tail % nblocks] is being read */
    size_t pos;
};

struct rowstream {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    const char *body;
    size_t len;
    const char *soapaction;
    struct parser first, second;

    /* The first parser thread's own until it is done (split: under mu once settled). */
    struct rowstream_prologue prologue;   /* written before the first batch is handed over */
    size_t split_batch;               /* the batch cut (0-based) */
    enum split split;
    size_t keep;                      /* the body up to here starts the second parser's */
    size_t cut;                       /* where the guessed row ends in the body: the rest of
                                         the second parser's */
    struct arena second_arena;
    struct soap_request second_req;

    /* The calling thread's own. */
    struct parser *from;              /* the parser whose events are read */
    struct rowstream_event end, abort;
};

static void *parse_thread(void *arg);

/* The second parser's copy of the body, once libxml2 has its own (or it never started). */
static void free_second_doc(struct rowstream *rs)
{
    free((char *)rs->second.doc);
    rs->second.doc = NULL;
}

/* ---- the parser threads ---- */

static void hand_over(struct parser *p)
{
    struct rowstream *rs = p->rs;
    pthread_mutex_lock(&rs->mu);
    p->head++;
    p->quiet = p->discard || p->halt;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    p->filling = NULL;
}

/* Waits for a free block; 0 when the caller wants nothing more. */
static int take_free_block(struct parser *p)
{
    struct rowstream *rs = p->rs;
    pthread_mutex_lock(&rs->mu);
    while (!p->discard && !p->halt && p->head - p->tail == p->nblocks)
        pthread_cond_wait(&rs->cond, &rs->mu);
    p->quiet = p->discard || p->halt;
    pthread_mutex_unlock(&rs->mu);
    if (p->quiet)
        return 0;
    p->filling = &p->blocks[p->head % p->nblocks];
    p->filling->n = 0;
    return 1;
}

static void tell(struct parser *p, const struct rowstream_event *ev, int now)
{
    if (p->quiet || (!p->filling && !take_free_block(p)))
        return;
    p->filling->events[p->filling->n++] = *ev;
    if (now || p->filling->n == BLOCK_EVENTS)
        hand_over(p);
}

static void set_split(struct rowstream *rs, enum split split)
{
    pthread_mutex_lock(&rs->mu);
    rs->split = split;
    if (split == SPLIT_FAILED)
        rs->second.halt = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.' || (unsigned char)c >= 0x80;
}

/* Whether the text of name at p (inside body, before stop) is the name of an end tag (any
 * prefix; blanks before its '>'): where that tag begins, with *end (may be NULL) where it ends;
 * 0 when it is not one. */
static size_t end_tag_at(const char *body, const char *p, const char *stop, size_t n, size_t *end)
{
    const char *open = p;
    if (open - body > 0 && open[-1] == ':')   /* a prefix: back to its start */
        for (open--; open - body > 0 && is_name_char(open[-1]); open--)
            ;
    if (open - body < 2 || open[-1] != '/' || open[-2] != '<')
        return 0;
    const char *q = p + n;
    while (q < stop && soap_xml_is_space(*q))
        q++;
    if (q == stop || *q != '>')
        return 0;
    if (end)
        *end = (size_t)(q + 1 - body);
    return (size_t)(open - 2 - body);
}

/* Where the first end tag of an element called name that lies in body[from, to) begins, with
 * *end (may be NULL) where it ends; 0 when there is none. Only a guess, for a parser to check:
 * the text may be in a comment or a CDATA section. */
static size_t first_end_tag(const char *body, size_t from, size_t to, const char *name,
                            size_t *end)
{
    size_t n = strlen(name), at;
    const char *stop = body + to;
    for (const char *p = body + from; (p = memmem(p, (size_t)(stop - p), name, n)); p += n)
        if ((at = end_tag_at(body, p, stop, n, end)))
            return at;
    return 0;
}

/* first_end_tag's last one, searched from to back. */
static size_t last_end_tag(const char *body, size_t from, size_t to, const char *name)
{
    size_t n = strlen(name), at, end;
    if (to - from < n)
        return 0;
    /* i is one past the last place the name may start. */
    for (size_t i = to - n + 1; i > from;) {
        const char *p = memrchr(body + from, name[0], i - from);
        if (!p)
            return 0;
        if (memcmp(p, name, n) == 0 && (at = end_tag_at(body, p, body + to, n, &end)))
            return at;
        i = (size_t)(p - body);
    }
    return 0;
}

static int start_thread(pthread_t *thread, struct parser *p)
{
    /* Signals stay with the worker's own thread (its libevent loop handles them). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(thread, NULL, parse_thread, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}

/* A batch's <Rows> opens, its start tag read up to at: when its rows take SPLIT_MIN_BYTES or
 * more, and no more than that comes before them (which the second parser reads again), starts
 * the second parser on the body with the first half of the rows cut out. Only the rows' first
 * SPLIT_MIN_BYTES are searched for the batch's end tag (a scan of a whole 1 MB body costs about
 * a tenth of its parse, before the second parser can start); past that, its rows are taken to
 * end at the body's last </Rows>. When other batches follow, the guess may fall in one of them:
 * the first parser then sees the batch end before the cut and reads on alone. */
static void split_rows(struct rowstream *rs, size_t at)
{
    if (at >= rs->len || rs->len - at < SPLIT_MIN_BYTES || rs->body[at] != '>')
        return;   /* an unknown offset (a converted encoding), too little left, or <Rows/> */
    size_t keep = at + 1, cut = 0;
    size_t first_part = keep + SPLIT_MIN_BYTES < rs->len ? keep + SPLIT_MIN_BYTES : rs->len;
    if (first_end_tag(rs->body, keep, first_part, "Rows", NULL))
        return;   /* a small batch: a later one may be split */
    size_t rows_end = last_end_tag(rs->body, keep, rs->len, "Rows");
    if (rows_end == 0)
        rows_end = rs->len;
    size_t rows = rows_end - keep;
    if (rows < SPLIT_MIN_BYTES || keep > rows)   /* few rows, or much to read again before them */
        return;
    if (first_end_tag(rs->body, keep + rows / 2, rows_end, "Row", &cut) == 0)
        return;
    struct parser *second = &rs->second;
    second->nblocks = 1 + (rs->len - cut) / (BLOCK_EVENTS * ROW_BYTES_MIN);
    if (!(second->blocks = malloc(second->nblocks * sizeof(*second->blocks))))
        return;
    rs->keep = keep;
    rs->cut = cut;
    rs->split_batch = rs->first.batches - 1;
    if (start_thread(&second->thread, second) != 0) {
        free(second->blocks);
        second->blocks = NULL;
        return;
    }
    set_split(rs, SPLIT_PENDING);
}

/* Whether p tells an event of the batch it reads (at its start or not): the second parser
 * tells nothing the first did, neither the batches before the cut one nor its start. */
static int telling(const struct parser *p, int batch_start)
{
    const struct rowstream *rs = p->rs;
    if (p == &rs->first)
        return 1;
    size_t batch = p->batches - 1;
    return batch > rs->split_batch || (batch == rs->split_batch && !batch_start);
}

/* A batch is handed over at once, so that the caller can start while the rows are parsed. */
static void on_batch(void *ctx, const struct soap_request *req, const struct batch *batch)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    if (p->batches == 0 && p == &rs->second)   /* libxml2 reads its own copy by now */
        free_second_doc(rs);
    if (p->batches++ == 0 && p == &rs->first) {
        rs->prologue = (struct rowstream_prologue){
            .token = req->token, .token_len = req->token_len, .ntokens = req->ntokens,
            .op = req->op, .op_fault = req->op_fault.code,
        };
    }
    struct rowstream_event ev = {.kind = ROWSTREAM_BATCH, .batch = *batch};
    if (telling(p, 1))
        tell(p, &ev, 1);
}

static void on_rows(void *ctx, size_t at)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    if (p == &rs->first && rs->split == SPLIT_NONE)
        split_rows(rs, at);
}

/* The second parser, once its guess turned out wrong, stops (even after a shape error). */
static int on_cancelled(void *ctx)
{
    struct parser *p = ctx;
    pthread_mutex_lock(&p->rs->mu);
    int halt = p->halt;
    pthread_mutex_unlock(&p->rs->mu);
    return halt;
}

/* 1 ends the first parser's parse at the guessed row end. */
static int on_row(void *ctx, const struct row *row, size_t at)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    struct rowstream_event ev = {.kind = ROWSTREAM_ROW, .row = *row};
    if (telling(p, 0))
        tell(p, &ev, 0);
    if (p == &rs->second || rs->split != SPLIT_PENDING)
        return 0;
    if (at == rs->cut) {
        set_split(rs, SPLIT_MADE);
        return 1;
    }
    if (at > rs->cut)   /* SIZE_MAX too */
        set_split(rs, SPLIT_FAILED);
    return 0;
}

static void on_batch_end(void *ctx, const struct batch *batch)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    struct rowstream_event ev = {.kind = ROWSTREAM_BATCH_END, .batch = *batch};
    if (telling(p, 0))
        tell(p, &ev, 0);
    if (p == &rs->first && rs->split == SPLIT_PENDING)   /* the batch ended before the cut */
        set_split(rs, SPLIT_FAILED);
}

static const struct soap_row_listener listener = {
    .batch = on_batch, .rows = on_rows, .row = on_row, .batch_end = on_batch_end,
    .cancelled = on_cancelled,
};

/* The second parser's document: the body up to keep, then from cut on. Made on its own thread,
 * so that the first parser reads on meanwhile. NULL when out of memory. */
static char *second_doc(struct rowstream *rs, size_t *len)
{
    *len = rs->keep + (rs->len - rs->cut);
    char *doc = malloc(*len);
    if (doc) {
        memcpy(doc, rs->body, rs->keep);
        memcpy(doc + rs->keep, rs->body + rs->cut, rs->len - rs->cut);
    }
    return doc;
}

static void *parse_thread(void *arg)
{
    struct parser *p = arg;
    struct rowstream *rs = p->rs;
    if (p == &rs->second && !(p->doc = second_doc(rs, &p->len))) {
        p->rc = -1;   /* the split is then given up: the body is parsed again in one piece */
        fault_set(&p->env_fault, FAULT_INTERNAL, "out of memory for the second parser");
    } else {
        p->rc = soap_parse_request_told(p->doc, p->len, rs->soapaction, p->arena, p->req,
                                        &p->env_fault, &listener, p);
    }
    if (p == &rs->first && rs->split == SPLIT_PENDING)   /* a fault before it */
        set_split(rs, SPLIT_FAILED);
    if (p->filling)
        hand_over(p);
    pthread_mutex_lock(&rs->mu);
    p->done = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    return NULL;
}

/* ---- the calling thread ---- */

struct rowstream *rowstream_start(const char *body, size_t len, const char *soapaction,
                                  struct arena *arena, struct soap_request *req)
{
    xmlInitParser();   /* once per process, and never concurrently with a parse */
    struct rowstream *rs = xcalloc(1, sizeof(*rs));
    rs->body = body;
    rs->len = len;
    rs->soapaction = soapaction;
    rs->first = (struct parser){.rs = rs, .doc = body, .len = len, .arena = arena, .req = req,
                                .blocks = xmalloc(QUEUE_BLOCKS * sizeof(struct block)),
                                .nblocks = QUEUE_BLOCKS};
    rs->second = (struct parser){.rs = rs, .arena = &rs->second_arena, .req = &rs->second_req};
    arena_init(&rs->second_arena);
    rs->from = &rs->first;
    rs->end.kind = ROWSTREAM_END;
    rs->abort.kind = ROWSTREAM_ABORT;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cond, NULL);
    if (start_thread(&rs->first.thread, &rs->first) != 0) {
        pthread_cond_destroy(&rs->cond);
        pthread_mutex_destroy(&rs->mu);
        free(rs->first.blocks);
        free(rs);
        return NULL;
    }
    return rs;
}

/* Whether the second parser read the rest of the body without a fault (the first's stop then
 * stands); valid once it is done. */
static int second_clean(const struct rowstream *rs)
{
    return rs->second.rc == 0 && rs->second_req.op_fault.code == FAULT_NONE &&
           rs->second_req.body_fault.code == FAULT_NONE;
}

/* The next event; NULL when there is none yet and wait is 0. */
static const struct rowstream_event *take_event(struct rowstream *rs, int wait)
{
    for (;;) {
        struct parser *p = rs->from;
        if (p->reading) {
            struct block *b = &p->blocks[p->tail % p->nblocks];
            if (p->pos < b->n)
                return &b->events[p->pos++];
            pthread_mutex_lock(&rs->mu);
            p->tail++;
            pthread_cond_broadcast(&rs->cond);
            pthread_mutex_unlock(&rs->mu);
            p->reading = 0;
        }
        pthread_mutex_lock(&rs->mu);
        while (wait && p->head == p->tail && !p->done)
            pthread_cond_wait(&rs->cond, &rs->mu);
        int empty = p->head == p->tail, done = p->done;
        enum split split = rs->split;
        pthread_mutex_unlock(&rs->mu);
        if (!empty) {
            p->reading = 1;
            p->pos = 1;   /* a block is handed over with one event at least */
            return &p->blocks[p->tail % p->nblocks].events[0];
        }
        if (!done)
            return NULL;   /* with wait, empty means done */
        if (p == &rs->first && split == SPLIT_MADE) {
            rs->from = &rs->second;
            continue;
        }
        return p == &rs->second && !second_clean(rs) ? &rs->abort : &rs->end;
    }
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

/* The second parser's request, with the first parser's batches before the cut one and, in the
 * cut one, the first parser's rows, then the second's (the second's arena is now the
 * caller's): every row is the one told. */
static void join_halves(struct rowstream *rs)
{
    struct soap_request *req = rs->first.req, whole = rs->second_req;
    /* The batches before the cut one: the first parser's, whose rows were told (the second
     * read them again, and told none). */
    memcpy(whole.batches, req->batches, rs->split_batch * sizeof(*whole.batches));
    const struct batch *head = &req->batches[rs->split_batch];
    struct batch *batch = &whole.batches[rs->split_batch];
    size_t n = head->nrows + batch->nrows;
    struct row *rows = arena_alloc(rs->first.arena, n * sizeof(*rows));
    memcpy(rows, head->rows, head->nrows * sizeof(*rows));
    if (batch->nrows)
        memcpy(rows + head->nrows, batch->rows, batch->nrows * sizeof(*rows));
    batch->rows = rows;
    batch->nrows = n;
    arena_adopt(rs->first.arena, &rs->second_arena);
    *req = whole;
}

int rowstream_finish(struct rowstream *rs, struct fault *env_fault, int *halves)
{
    pthread_mutex_lock(&rs->mu);
    rs->first.discard = 1;
    rs->second.discard = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    pthread_join(rs->first.thread, NULL);
    if (rs->split != SPLIT_NONE)
        pthread_join(rs->second.thread, NULL);
    int rc, parts = 1;
    if (rs->split != SPLIT_MADE) {
        rc = rs->first.rc;
        *env_fault = rs->first.env_fault;
    } else if (second_clean(rs)) {
        join_halves(rs);
        fault_clear(env_fault);
        rc = 0;
        parts = 2;
    } else {
        rc = soap_parse_request(rs->body, rs->len, rs->soapaction, rs->first.arena, rs->first.req,
                                env_fault);
    }
    if (halves)
        *halves = parts;
    arena_free(&rs->second_arena);
    free_second_doc(rs);
    free(rs->second.blocks);
    free(rs->first.blocks);
    pthread_cond_destroy(&rs->cond);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
    return rc;
}
