/* proto/rowstream: one request parsed on helper threads, its RowData events handed to the
 * calling thread through a small ring of blocks per parser (see rowstream.h).
 *
 * A large body is read in up to ROWSTREAM_PARTS_MAX parts at once, one parser each. The first
 * reads it from the start. As it opens a batch's <Rows> that holds most of the body (judged by
 * the text of end tags), it guesses where rows end at a few points through those rows (the text
 * of a </Row> end tag) and starts a parser for each later part on a copy of the body with the
 * rows before that part cut out: the body up to and including that <Rows> start tag, then the
 * body from the guessed end on. At a row's end inside <Rows>, libxml2 is in the state it is in
 * right after the <Rows> start tag (the same open elements, the same namespaces, between two
 * rows), so a later parser reads the rest as the first would have; what it reads before its cut
 * (the batches before, that batch's start) it does not tell: the first parser does. Each parser
 * but the last checks the guess where its part ends: when a row of that batch ends exactly
 * there, it stops, and the request is its rows, then the next part's. When no row ends there
 * (the text was in a comment or a CDATA section, or past the batch), the later parsers are
 * stopped and that parser reads on alone. When a later parser fails after the one before it
 * has stopped, the calling thread is told ROWSTREAM_ABORT and the body is parsed again in one
 * piece, so that every answer is the one-piece parse's (its error lines and row numbers).
 *
 * The parts grow (see part_starts): the worker applies the rows as they come, part after part,
 * faster than one parser reads them, so it waits for the first part's parser, and a later part
 * should be read by the time the worker is through the parts before it.
 *
 * Threads: each parser thread alone touches its arena, its request and the block it fills
 * (blocks[head % nblocks], while head - tail < nblocks); the calling thread alone reads
 * blocks[tail % nblocks] while tail < head. head, tail, done, discard, halt and a settled end
 * change only under mu, and every change is signalled on cond. The first parser thread
 * prepares every later parser before it starts any, and starts them all before it settles its
 * own end; the calling thread reads a later parser's fields only once it has seen, under mu, the
 * one before it done with its end made. All are joined before rowstream_finish returns, so none
 * outlives the call (and none exists when a worker forks). */
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
    ROW_BYTES_MIN = 13    /* the shortest row (<Row op="D"/>): a later parser, whose events
                             wait until those before it are applied, gets a block for every
                             BLOCK_EVENTS * ROW_BYTES_MIN bytes from its part's start to the
                             body's end (it reads on there when its end is not where guessed),
                             so that it does not wait (blocks are touched only as they fill).
                             Only a body of many small batches, a block each, can fill them:
                             that parser then waits for the caller to reach its part */
};
/* Rows per parser, at the least: fewer are read by one, as another would cost about what it
 * saves (the first part, the smallest, may hold less). */
#define SPLIT_MIN_BYTES (128 * 1024)
/* How much larger each part is than the one before it (see part_starts). */
#define PART_GROWTH (5.0 / 3.0)

struct block {
    size_t n;
    struct rowstream_event events[BLOCK_EVENTS];
};

/* Where a parser's part ends, for all but the last: PENDING until it reads there (MADE) or
 * past it (FAILED: it reads on alone). NONE: it reads to the body's end. */
enum split { SPLIT_NONE, SPLIT_PENDING, SPLIT_MADE, SPLIT_FAILED };

struct parser {
    struct rowstream *rs;
    size_t part;                      /* 0: reads the body from its start */
    pthread_t thread;
    const char *doc;                  /* the body, or a later part's own copy (until its first
                                         batch) */
    size_t len;
    struct arena *arena;
    struct soap_request *req;
    int rc;
    struct fault env_fault;
    struct block *blocks;
    size_t nblocks;
    size_t batches;                   /* batches read (the parser thread's own) */
    struct arena own_arena;           /* a later part's arena and request */
    struct soap_request own_req;

    /* Under rs->mu. */
    size_t head;                      /* blocks handed over */
    size_t tail;                      /* blocks given back */
    int done;                         /* the parse is over */
    int halt;                         /* a part before it did not end where guessed: stop */
    enum split end;                   /* set before its thread starts, then written by that
                                         thread only */

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
    size_t most;                      /* parts allowed */
    struct parser parsers[ROWSTREAM_PARTS_MAX];
    int discard;                      /* under mu: the caller wants nothing more, from any
                                         parser, started or not: tell nothing */

    /* The first parser thread's own until it is done (then the caller's, after the join, or
     * read before: see the top of the file). */
    struct rowstream_prologue prologue;   /* written before the first batch is handed over */
    size_t nparts;                    /* parsers started, the first included (lowered under mu
                                         when one cannot start) */
    size_t split_batch;               /* the batch cut (0-based) */
    size_t keep;                      /* the body up to here starts each later part's document */
    size_t starts[ROWSTREAM_PARTS_MAX];   /* where part i's rows begin in the body (i >= 1) */

    /* The calling thread's own. */
    size_t from;                      /* the part whose events are read */
    struct rowstream_event end, abort;
};

static void *parse_thread(void *arg);

/* A later part's copy of the body, once libxml2 has its own (or it never started). */
static void free_part_doc(struct parser *p)
{
    if (p->part > 0) {
        free((char *)p->doc);
        p->doc = NULL;
    }
}

/* ---- the parser threads ---- */

static void hand_over(struct parser *p)
{
    struct rowstream *rs = p->rs;
    pthread_mutex_lock(&rs->mu);
    p->head++;
    p->quiet = rs->discard || p->halt;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    p->filling = NULL;
}

/* Waits for a free block; 0 when the caller wants nothing more. */
static int take_free_block(struct parser *p)
{
    struct rowstream *rs = p->rs;
    pthread_mutex_lock(&rs->mu);
    while (!rs->discard && !p->halt && p->head - p->tail == p->nblocks)
        pthread_cond_wait(&rs->cond, &rs->mu);
    p->quiet = rs->discard || p->halt;
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

/* Settles (or, PENDING, opens) where p's part ends; FAILED stops every later part. */
static void set_end(struct parser *p, enum split end)
{
    struct rowstream *rs = p->rs;
    pthread_mutex_lock(&rs->mu);
    p->end = end;
    if (end == SPLIT_FAILED)
        for (size_t i = p->part + 1; i < rs->nparts; i++)
            rs->parsers[i].halt = 1;
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

/* Where each of nparts parts of the rows in body[keep, rows_end) begins, at a guessed row end
 * (starts[0] is keep); the number of parts made, fewer where no row end is found. The parts
 * grow by PART_GROWTH: where a parser takes p seconds to read a row and the worker w to apply
 * it (w < p), a part should be read by the time the worker is through the parts before it,
 * each of which it applies as its parser reads it, so each part is p / (p - w) times the one
 * before. Measured with the SQLite store (thread CPU times, 1 MB calls), p / w is 2 to 2.5:
 * 5/3 suits 2.5 and loses little at 2 (bench/RESULTS.md). Where the worker is the slower
 * (another store), any sizes keep it busy once the first part is read, the smallest. */
static size_t part_starts(const char *body, size_t keep, size_t rows_end, size_t nparts,
                          size_t starts[])
{
    double total = 0, size = 1, before = 0;
    for (size_t i = 0; i < nparts; i++, size *= PART_GROWTH)
        total += size;
    starts[0] = keep;
    size = 1;
    for (size_t i = 1; i < nparts; i++, size *= PART_GROWTH) {
        before += size;
        size_t from = keep + (size_t)((double)(rows_end - keep) * (before / total)), cut = 0;
        if (first_end_tag(body, from, rows_end, "Row", &cut) == 0 || cut <= starts[i - 1])
            return i;
        starts[i] = cut;
    }
    return nparts;
}

/* Makes ready the later parsers of the parts whose rows begin at starts[1 .. nparts) (no other
 * thread reads them before they start); how many parts are ready, fewer when out of memory. */
static size_t prepare_parts(struct rowstream *rs, const size_t starts[], size_t nparts)
{
    for (size_t i = 1; i < nparts; i++) {
        struct parser *p = &rs->parsers[i];
        size_t nblocks = 1 + (rs->len - starts[i]) / (BLOCK_EVENTS * ROW_BYTES_MIN);
        struct block *blocks = malloc(nblocks * sizeof(*blocks));
        if (!blocks)
            return i;
        *p = (struct parser){.rs = rs, .part = i, .blocks = blocks, .nblocks = nblocks,
                             .arena = &p->own_arena, .req = &p->own_req};
        arena_init(&p->own_arena);
        rs->starts[i] = starts[i];
    }
    return nparts;
}

/* A batch's <Rows> opens, its start tag read up to at: when its rows take SPLIT_MIN_BYTES or
 * more, and no more than that comes before them (which each later parser reads again), starts
 * the parsers of the later parts. Only the rows' first SPLIT_MIN_BYTES are searched for the
 * batch's end tag (a scan of a whole 1 MB body costs about a tenth of its parse, before the
 * other parsers can start); past that, its rows are taken to end at the body's last </Rows>.
 * When other batches follow, a guess may fall in one of them: the parser before it then sees
 * the batch end before its part's end and reads on alone. */
static void split_rows(struct rowstream *rs, size_t at)
{
    if (at >= rs->len || rs->len - at < SPLIT_MIN_BYTES || rs->body[at] != '>')
        return;   /* an unknown offset (a converted encoding), too little left, or <Rows/> */
    size_t keep = at + 1;
    size_t first_part = keep + SPLIT_MIN_BYTES < rs->len ? keep + SPLIT_MIN_BYTES : rs->len;
    if (first_end_tag(rs->body, keep, first_part, "Rows", NULL))
        return;   /* a small batch: a later one may be split */
    size_t rows_end = last_end_tag(rs->body, keep, rs->len, "Rows");
    if (rows_end == 0)
        rows_end = rs->len;
    size_t rows = rows_end - keep;
    if (rows < SPLIT_MIN_BYTES || keep > rows)   /* few rows, or much to read again before them */
        return;
    size_t most = 1 + rows / SPLIT_MIN_BYTES, starts[ROWSTREAM_PARTS_MAX];
    size_t nparts = part_starts(rs->body, keep, rows_end, most < rs->most ? most : rs->most, starts);
    rs->keep = keep;
    rs->split_batch = rs->parsers[0].batches - 1;
    if (nparts > 1)
        nparts = prepare_parts(rs, starts, nparts);
    if (nparts < 2)
        return;
    for (size_t i = 1; i < nparts; i++)
        rs->parsers[i].end = i + 1 < nparts ? SPLIT_PENDING : SPLIT_NONE;
    rs->nparts = nparts;   /* read by the others under mu only */
    for (size_t i = 1; i < nparts; i++)
        if (start_thread(&rs->parsers[i].thread, &rs->parsers[i]) != 0) {
            pthread_mutex_lock(&rs->mu);
            rs->nparts = i;
            pthread_mutex_unlock(&rs->mu);
            set_end(&rs->parsers[0], SPLIT_FAILED);   /* read alone; those started stop */
            return;
        }
    set_end(&rs->parsers[0], SPLIT_PENDING);
}

/* Whether p tells an event of the batch it reads (at its start or not): a later part tells
 * nothing the first did, neither the batches before the cut one nor its start. */
static int telling(const struct parser *p, int batch_start)
{
    if (p->part == 0)
        return 1;
    size_t batch = p->batches - 1;
    return batch > p->rs->split_batch || (batch == p->rs->split_batch && !batch_start);
}

/* A batch is handed over at once, so that the caller can start while the rows are parsed. */
static void on_batch(void *ctx, const struct soap_request *req, const struct batch *batch)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    if (p->batches == 0)   /* libxml2 reads its own copy by now */
        free_part_doc(p);
    if (p->batches++ == 0 && p->part == 0) {
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
    if (p->part == 0 && p->end == SPLIT_NONE)
        split_rows(p->rs, at);
}

/* A later part, once a part before it did not end where guessed, stops (even after a shape
 * error). */
static int on_cancelled(void *ctx)
{
    struct parser *p = ctx;
    pthread_mutex_lock(&p->rs->mu);
    int halt = p->halt;
    pthread_mutex_unlock(&p->rs->mu);
    return halt;
}

/* 1 ends the parse at the guessed end of the parser's part. at is where the row ends in the
 * parser's document: a later part's holds the body before keep, then its rows. */
static int on_row(void *ctx, const struct row *row, size_t at)
{
    struct parser *p = ctx;
    struct rowstream *rs = p->rs;
    struct rowstream_event ev = {.kind = ROWSTREAM_ROW, .row = *row};
    if (!telling(p, 0))
        return 0;
    tell(p, &ev, 0);
    if (p->end != SPLIT_PENDING)
        return 0;
    size_t in_body = at;
    if (p->part > 0 && at != SIZE_MAX)
        in_body = at - rs->keep + rs->starts[p->part];
    if (in_body == rs->starts[p->part + 1]) {
        set_end(p, SPLIT_MADE);
        return 1;
    }
    if (in_body > rs->starts[p->part + 1])   /* SIZE_MAX too */
        set_end(p, SPLIT_FAILED);
    return 0;
}

static void on_batch_end(void *ctx, const struct batch *batch)
{
    struct parser *p = ctx;
    struct rowstream_event ev = {.kind = ROWSTREAM_BATCH_END, .batch = *batch};
    if (!telling(p, 0))
        return;
    tell(p, &ev, 0);
    if (p->end == SPLIT_PENDING)   /* the batch ended before the part's end */
        set_end(p, SPLIT_FAILED);
}

static const struct soap_row_listener listener = {
    .batch = on_batch, .rows = on_rows, .row = on_row, .batch_end = on_batch_end,
    .cancelled = on_cancelled,
};

/* A later part's document: the body up to keep, then from the part's start on. Made on its own
 * thread, so that the first parser reads on meanwhile. NULL when out of memory. */
static char *part_doc(const struct parser *p, size_t *len)
{
    const struct rowstream *rs = p->rs;
    size_t from = rs->starts[p->part];
    *len = rs->keep + (rs->len - from);
    char *doc = malloc(*len);
    if (doc) {
        memcpy(doc, rs->body, rs->keep);
        memcpy(doc + rs->keep, rs->body + from, rs->len - from);
    }
    return doc;
}

static void *parse_thread(void *arg)
{
    struct parser *p = arg;
    struct rowstream *rs = p->rs;
    if (p->part > 0 && !(p->doc = part_doc(p, &p->len))) {
        p->rc = -1;   /* the split is then given up: the body is parsed again in one piece */
        fault_set(&p->env_fault, FAULT_INTERNAL, "out of memory for a parser of part %zu",
                  p->part + 1);
    } else {
        p->rc = soap_parse_request_told(p->doc, p->len, rs->soapaction, p->arena, p->req,
                                        &p->env_fault, &listener, p);
    }
    if (p->end == SPLIT_PENDING)   /* a fault before its end */
        set_end(p, SPLIT_FAILED);
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
                                  size_t parts, struct arena *arena, struct soap_request *req)
{
    xmlInitParser();   /* once per process, and never concurrently with a parse */
    struct rowstream *rs = xcalloc(1, sizeof(*rs));
    rs->body = body;
    rs->len = len;
    rs->soapaction = soapaction;
    rs->most = parts < 1 ? 1 : parts > ROWSTREAM_PARTS_MAX ? ROWSTREAM_PARTS_MAX : parts;
    rs->nparts = 1;
    rs->parsers[0] = (struct parser){.rs = rs, .doc = body, .len = len, .arena = arena,
                                     .req = req, .nblocks = QUEUE_BLOCKS,
                                     .blocks = xmalloc(QUEUE_BLOCKS * sizeof(struct block))};
    rs->end.kind = ROWSTREAM_END;
    rs->abort.kind = ROWSTREAM_ABORT;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cond, NULL);
    if (start_thread(&rs->parsers[0].thread, &rs->parsers[0]) != 0) {
        pthread_cond_destroy(&rs->cond);
        pthread_mutex_destroy(&rs->mu);
        free(rs->parsers[0].blocks);
        free(rs);
        return NULL;
    }
    return rs;
}

/* Whether a later part's parser read on to the body's end without a fault (the part before it
 * then stands); valid once it is done. */
static int part_clean(const struct parser *p)
{
    return p->rc == 0 && p->req->op_fault.code == FAULT_NONE &&
           p->req->body_fault.code == FAULT_NONE;
}

/* The next event; NULL when there is none yet and wait is 0. */
static const struct rowstream_event *take_event(struct rowstream *rs, int wait)
{
    for (;;) {
        struct parser *p = &rs->parsers[rs->from];
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
        enum split end = p->end;
        pthread_mutex_unlock(&rs->mu);
        if (!empty) {
            p->reading = 1;
            p->pos = 1;   /* a block is handed over with one event at least */
            return &p->blocks[p->tail % p->nblocks].events[0];
        }
        if (!done)
            return NULL;   /* with wait, empty means done */
        if (end == SPLIT_MADE) {
            rs->from++;
            continue;
        }
        return p->part > 0 && !part_clean(p) ? &rs->abort : &rs->end;
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

/* The last part's request, with the first parser's batches before the cut one and, in the cut
 * one, the rows of parts 0 .. last in order (every later part's arena is now the caller's):
 * every row is the one told. */
static void join_parts(struct rowstream *rs, size_t last)
{
    struct soap_request *req = rs->parsers[0].req, whole = *rs->parsers[last].req;
    /* The batches before the cut one: the first parser's, whose rows were told (the later
     * parsers read them again, and told none). */
    memcpy(whole.batches, req->batches, rs->split_batch * sizeof(*whole.batches));
    struct batch *batch = &whole.batches[rs->split_batch];
    size_t n = 0;
    for (size_t i = 0; i <= last; i++)
        n += rs->parsers[i].req->batches[rs->split_batch].nrows;
    struct row *rows = arena_alloc(rs->parsers[0].arena, n * sizeof(*rows)), *to = rows;
    for (size_t i = 0; i <= last; i++) {
        const struct batch *part = &rs->parsers[i].req->batches[rs->split_batch];
        if (part->nrows)
            memcpy(to, part->rows, part->nrows * sizeof(*rows));
        to += part->nrows;
    }
    batch->rows = rows;
    batch->nrows = n;
    for (size_t i = 1; i <= last; i++)
        arena_adopt(rs->parsers[0].arena, &rs->parsers[i].own_arena);
    *req = whole;
}

int rowstream_finish(struct rowstream *rs, struct fault *env_fault, size_t *parts)
{
    pthread_mutex_lock(&rs->mu);
    rs->discard = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->mu);
    pthread_join(rs->parsers[0].thread, NULL);
    for (size_t i = 1; i < rs->nparts; i++)
        pthread_join(rs->parsers[i].thread, NULL);
    size_t last = 0;   /* the parts read: up to the first that did not end where guessed */
    while (last + 1 < rs->nparts && rs->parsers[last].end == SPLIT_MADE)
        last++;
    int rc;
    if (last == 0) {
        rc = rs->parsers[0].rc;
        *env_fault = rs->parsers[0].env_fault;
    } else if (part_clean(&rs->parsers[last])) {
        join_parts(rs, last);
        fault_clear(env_fault);
        rc = 0;
    } else {
        last = 0;
        rc = soap_parse_request(rs->body, rs->len, rs->soapaction, rs->parsers[0].arena,
                                rs->parsers[0].req, env_fault);
    }
    if (parts)
        *parts = last + 1;
    for (size_t i = 1; i < ROWSTREAM_PARTS_MAX; i++) {
        struct parser *p = &rs->parsers[i];
        if (p->blocks) {   /* prepared (an arena joined is empty) */
            arena_free(&p->own_arena);
            free_part_doc(p);
            free(p->blocks);
        }
    }
    free(rs->parsers[0].blocks);
    pthread_cond_destroy(&rs->cond);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
    return rc;
}
