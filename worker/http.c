/* worker/http: the worker's HTTP layer (see http.h). Owns, per worker process: one evhttp and
 * (for TLS) a reference to the SSL_CTX the master made for the listener, and the calls in
 * progress.
 *
 * Draining: accepting stops at once and every answer from then on closes its connection (on
 * a shutdown, the connections already waiting in a listening socket's backlog are taken first,
 * for LAST_ACCEPTS_MS at most: no other process would, and closing the socket's last copy would
 * reset them, requests sent and all; on a reload the next generation takes them). The
 * worker is done when no call is in hand, no request has part of it in (its own deadlines
 * bound how long one may take), and neither a connection nor request bytes have arrived for
 * DRAIN_QUIET_MS, so that a request still being uploaded, even with pauses, or sent on a
 * connection accepted just before, is answered, and no socket is lingering after a 413 (see
 * conn_closed). Idle keep-alive connections are closed when the worker exits. Arrivals are
 * seen through a callback on each connection's input buffer (evhttp itself uses only the
 * bufferevent's callbacks).
 *
 * Deadlines (like nginx's client_header_timeout, client_body_timeout and keepalive_timeout):
 * a connection's first request has header_timeout from the accept to finish its headers, a
 * later one header_timeout from its first byte; every request has request_timeout from its
 * first byte until it is complete (dispatched); an idle keep-alive connection is closed after
 * keepalive_timeout. On expiry the connection is closed, nothing is answered. A dispatched
 * request has no deadline (its call is never cut off): libevent's own inactivity timeout, a
 * backstop the rest of the time, is off from the dispatch until the answer is queued (see
 * hold_timeouts). libevent 2.1 has no new-request hook and hands its bufferevent callback no
 * connection, so each connection's state (struct conn) is made in that callback, tied to its
 * evhttp_connection just after libevent has made it (the close callback frees the state), and
 * found from a request through the socket. A request's start and the end of its headers are
 * seen on the connection's input buffer, which evhttp parses only after our callback. */
#include "worker/http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "worker/linger.h"

#define RETRY_FIRST_MS 5
#define RETRY_MAX_MS 50
#define DRAIN_QUIET_MS 1000
#define DRAIN_CHECK_MS 100
#define LAST_ACCEPTS_MS 1000
#define ACCEPT_PAUSE_MS 5       /* see accept_one_per_turn */
#define READ_AHEAD_MAX (1024 * 1024)   /* see read_ahead */
/* Request headers take at most this (libevent answers 400 past it, and without a limit one
 * line without an end is read and scanned again at every arrival). */
#define HEADERS_MAX (64 * 1024)
/* A connection's unread input is bounded like a request: while its answer is being written
 * (or its call runs) evhttp takes nothing from the input, so a client that sends on without
 * reading its answer would fill the worker's memory. Reading stops at a whole request's worth
 * (evhttp takes a body only once all of it is in, so less would never let one in; read_ahead
 * may add READ_AHEAD_MAX more) until the input is taken. */
static size_t input_high_water(const struct config *cfg)
{
    return (size_t)cfg->max_request_bytes + HEADERS_MAX + READ_AHEAD_MAX;
}

struct listener_http {
    struct wrk_http *owner;
    const char *address;                   /* as configured, for messages */
    struct evhttp *evhttp;
    struct evhttp_bound_socket *bound;    /* NULL once draining (on a shutdown, once no
                                              connection waits: close_listeners) */
    SSL_CTX *ssl;                          /* NULL for plain HTTP */
    struct event *resume;                  /* accepting again after one connection */
    struct log_repeat accept_errors;       /* see accept_failed */
};

struct pending_call {
    struct wrk_http *http;
    struct evhttp_request *req;
    struct call *call;
    struct event *retry;
    int retry_ms;
};

enum conn_phase {
    CONN_ATTACHING,      /* made by make_connection, not yet tied to its evhttp_connection */
    CONN_WAITING,        /* no byte of the next request yet: the idle deadline */
    CONN_HEADERS,        /* the request's headers arriving: header and request deadlines */
    CONN_BODY,           /* headers complete, the rest arriving: the request deadline */
    CONN_BUSY,           /* dispatched, being answered: no deadline */
    CONN_CLOSING,        /* a CONNECT answered: closed at once (see request_done) */
};

struct conn {
    struct wrk_http *http;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;       /* NULL while attaching */
    struct evbuffer_cb_entry *watch;       /* input_arrived on the input buffer */
    struct event *timer;                   /* the attach step, then the current deadline */
    evutil_socket_t fd;
    int plain;                             /* not TLS: its socket may be read directly */
    int reading_ahead;                     /* in read_ahead: no second one from its callback */
    enum conn_phase phase;
    int first;                             /* the first request: its wait is header time */
    int64_t header_deadline;               /* monotonic ms */
    int64_t request_deadline;
    char peer[96];                         /* the client's address, for the log */
    size_t line_len;                       /* header scan: bytes of the current line so far */
    unsigned char line_first;              /* and the first of them */
    unsigned char last;                    /* and the latest of them */
    size_t counted;                        /* its input and body_taken, as counted in
                                              http->arriving */
    size_t headers_left;                   /* the request's header bytes evhttp has yet to take
                                              from the input (CONN_BODY) */
    size_t body_taken;                     /* body bytes evhttp moved from the input into the
                                              request before its dispatch: a chunked body's */
    LIST_ENTRY(conn) held_link;            /* in http->held: reading paused (see hold) */
    int held;
    int linger;                            /* answered with request bytes still to come unread
                                              (bytes_may_follow): lingers when closed */
};

/* Why a request is refused before its call (see request_refused). */
enum refusal_kind { REFUSED_FRAMING, REFUSED_CODING_FRAMED, REFUSED_HOST, REFUSED_CONTENT_CODING,
                    REFUSAL_KINDS };

struct wrk_http {
    struct event_base *base;
    const struct wrk_params *params;
    struct service *svc;
    struct listener_http *listeners;
    size_t nlisteners;
    size_t calls_in_flight;
    int64_t last_input_ms;          /* when a connection or request bytes last arrived */
    struct conn **by_fd;            /* attached connections by socket */
    size_t by_fd_len;
    struct lingerer *lingerer;      /* sockets closed after an answer to a request not read whole */
    uint32_t connections;           /* open ones (struct conn alive), published in the registry */
    size_t arriving;                /* bytes in the connections' input buffers (see hold) */
    LIST_HEAD(held_conns, conn) held;   /* connections whose reading waits for arriving to drop */
    struct log_repeat bodies_unread;    /* see conn_closed */
    struct log_repeat headers_late;     /* see conn_timer */
    struct log_repeat bodies_late;
    struct log_repeat refused[REFUSAL_KINDS];   /* see refuse_request */
    struct event *drain_check;
    int admitted;                   /* the master let its generation accept (wrk_http_admit) */
    int draining;
    int shutting_down;
    int64_t last_accepts_until;     /* shutting down: listeners with connections waiting stay
                                       open until then (monotonic ms; 0: not at all) */
    void (*on_drained)(void *arg);
    void *on_drained_arg;
};

/* The worker's HTTP layer (one per process), for the one libevent callback that gets no
 * argument of ours (accept_failed). */
static struct wrk_http *worker_http;

static void mark_worker_state(struct wrk_http *http)
{
    enum worker_state state = http->calls_in_flight ? WORKER_BUSY
                              : http->draining      ? WORKER_STOPPING
                                                    : WORKER_IDLE;
    reg_worker_state(http->params->reg, http->params->slot, state, NULL, NULL, (int64_t)time(NULL));
}

/* ---- connections ---- */

static void connections_changed(struct wrk_http *http, int delta)
{
    http->connections = (uint32_t)((int64_t)http->connections + delta);
    reg_worker_connections(http->params->reg, http->params->slot, http->connections);
}

/* A connection closed, so a listener paused for being ahead (accept_one_per_turn) may be
 * behind now: it accepts again at once. A sender that opens a connection per call would
 * otherwise find every worker paused and wait out the pause on each call. */
static void resume_paused_listeners(struct wrk_http *http)
{
    for (size_t i = 0; i < http->nlisteners; i++) {
        struct event *resume = http->listeners[i].resume;
        if (resume && evtimer_pending(resume, NULL)) {
            evtimer_del(resume);
            event_active(resume, EV_TIMEOUT, 1);
        }
    }
}

/* libevent 2.1's TLS bufferevent stops reading at the input's high-water mark (see
 * input_high_water) with decrypted bytes left inside OpenSSL (SSL_pending), and when evhttp has
 * taken enough input for it to resume, it only waits for the socket again: bytes already in
 * would wait for more that may never come (a client that has sent all its pipelined requests).
 * So when evhttp takes input while OpenSSL holds some, the bufferevent's read event is run as
 * if the socket were readable (struct bufferevent's ev_read, from bufferevent_struct.h: the
 * one way in from outside libevent). */
static void resume_tls_reading(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl && SSL_pending(ssl) > 0)
        event_active(&c->bev->ev_read, EV_READ, 1);
}

/* ---- the bytes of requests still arriving, all connections together ----
 *
 * evhttp keeps a request's body in the connection's input buffer until the whole of it is in
 * (and input_high_water bounds that to one request's worth), a chunked one in the request's
 * own buffer, chunk by chunk (counted as the input shrinks: body_taken), but nothing bounded
 * the sum over connections: a dozen clients sending bodies near limits.max_request_bytes, their last byte
 * withheld, held gigabytes in one worker before any token was checked (and glibc kept it after).
 * Once the other connections' input reaches limits.arriving_request_bytes, a connection whose
 * own input passes HEADERS_MAX is paused (its read watermark set to what it holds, so libevent
 * stops) until theirs drops below it again: a call dispatched, a connection closed. Only while
 * another connection is still reading a request in, though: input that cannot drop by itself
 * (held connections', a pipelining client's that does not read its answers) must not hold the
 * last request still coming in, and when a drop leaves none coming in, the connection held
 * longest goes on. Some request is always completing, then: held connections never wait for
 * one another, and clients that send without reading cannot stop every large body. The sum
 * stays below the budget plus one request plus HEADERS_MAX a connection (besides what
 * input_high_water lets a connection that is not reading in a request keep). A small request
 * (a health check, an Authenticate) is never held, and goes through while large bodies wait. */

/* Reading stops at what the input holds (libevent reads only below the high watermark). It
 * resumes by itself as soon as the input shrinks (evhttp taking the headers), so a held
 * connection's watermark follows its input (count_arriving). */
static void stop_reading_at(struct conn *c, size_t len)
{
    bufferevent_setwatermark(c->bev, EV_READ, 0, len ? len : 1);
}

static void hold(struct conn *c)
{
    struct wrk_http *http = c->http;
    stop_reading_at(c, evbuffer_get_length(bufferevent_get_input(c->bev)));
    c->held = 1;
    LIST_INSERT_HEAD(&http->held, c, held_link);
}

static void unhold(struct conn *c)
{
    struct wrk_http *http = c->http;
    LIST_REMOVE(c, held_link);
    c->held = 0;
    bufferevent_setwatermark(c->bev, EV_READ, 0, input_high_water(http->params->cfg));
    if (!c->plain)
        resume_tls_reading(c);   /* the body's last bytes may be inside OpenSSL already */
}

/* Whether c's request is being read in: its headers or its body are arriving. */
static int reading_request(const struct conn *c)
{
    return c->phase == CONN_HEADERS || c->phase == CONN_BODY;
}

/* Whether some attached connection other than except is one that is(). */
static int some_conn(const struct wrk_http *http, int (*is)(const struct conn *),
                     const struct conn *except)
{
    for (size_t fd = 0; fd < http->by_fd_len; fd++) {
        const struct conn *c = http->by_fd[fd];
        if (c && c != except && is(c))
            return 1;
    }
    return 0;
}

/* A connection reading a request in, not held: its input will drop by itself, as its request
 * is dispatched or it is closed. Looked for only when the budget is full. */
static int reading_unheld(const struct conn *c)
{
    return !c->held && reading_request(c);
}

/* After gone's input dropped (or gone closed): held connections go on once the others' input
 * is under the budget, and the one held longest (of those reading a request in) goes on when
 * no connection but gone, whose request is then dispatched or done, is left reading one in. */
static void release_held(struct wrk_http *http, const struct conn *gone)
{
    size_t budget = http->params->cfg->arriving_request_bytes;
    struct conn *longest = NULL;   /* the list is newest first */
    for (struct conn *h = LIST_FIRST(&http->held), *next; h; h = next) {
        next = LIST_NEXT(h, held_link);
        if (http->arriving - h->counted < budget)
            unhold(h);
        else if (reading_request(h))
            longest = h;
    }
    if (longest && !some_conn(http, reading_unheld, gone))
        unhold(longest);
}

/* c holds len request bytes now (its input, and what evhttp took of a body still arriving):
 * the sum follows, and c is held if the others fill the budget while another request is
 * reading in. Returns whether c's bytes dropped. */
static int count_arriving(struct conn *c, size_t len)
{
    struct wrk_http *http = c->http;
    size_t budget = http->params->cfg->arriving_request_bytes;
    int dropped = len < c->counted;
    http->arriving = http->arriving - c->counted + len;
    c->counted = len;
    if (c->held)
        stop_reading_at(c, evbuffer_get_length(bufferevent_get_input(c->bev)));
    else if (len > HEADERS_MAX && http->arriving - len >= budget &&
             some_conn(http, reading_unheld, c))
        hold(c);
    return dropped;
}

static void conn_free(struct conn *c)
{
    if (c->held)
        unhold(c);
    count_arriving(c, 0);
    release_held(c->http, c);   /* also when c held nothing: it may have been reading a request in */
    connections_changed(c->http, -1);
    resume_paused_listeners(c->http);
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->watch);
    event_free(c->timer);
    free(c);
}

static void conn_arm(struct conn *c, int64_t deadline_ms)
{
    int64_t left = deadline_ms - monotonic_ms();
    if (left < 0)
        left = 0;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Feeds n request bytes from offset from of buf to the header scan; once the line that ends
 * the headers is in, returns the offset in buf right after it, else 0. That line is, as evhttp
 * reads lines (ending in LF or CRLF), an empty one or one that starts with a NUL byte. */
static size_t headers_end_in(struct conn *c, struct evbuffer *buf, size_t from, size_t n)
{
    struct evbuffer_ptr pos;
    unsigned char chunk[512];
    if (evbuffer_ptr_set(buf, &pos, from, EVBUFFER_PTR_SET) < 0)
        return 0;
    for (;;) {
        size_t want = n < sizeof(chunk) ? n : sizeof(chunk);
        ev_ssize_t got = want ? evbuffer_copyout_from(buf, &pos, chunk, want) : 0;
        if (got <= 0)
            return 0;
        for (ev_ssize_t i = 0; i < got; i++) {
            if (chunk[i] == '\n') {
                if (c->line_len == 0 || (c->line_len == 1 && c->last == '\r') || c->line_first == '\0')
                    return from + (size_t)i + 1;
                c->line_len = 0;
            } else {
                if (c->line_len++ == 0)
                    c->line_first = chunk[i];
            }
            c->last = chunk[i];
        }
        n -= (size_t)got;
        from += (size_t)got;
        if (n == 0 || evbuffer_ptr_set(buf, &pos, (size_t)got, EVBUFFER_PTR_ADD) < 0)
            return 0;
    }
}

/* Drains the empty lines (CRLF or LF) at the start of buf. Returns whether what is left is a
 * request's start: not nothing, nor a lone CR that may be the start of another empty line. */
static int drain_empty_lines(struct evbuffer *buf)
{
    unsigned char two[2];
    for (;;) {
        ev_ssize_t got = evbuffer_copyout(buf, two, sizeof(two));
        if (got <= 0 || (got == 1 && two[0] == '\r'))
            return 0;
        if (two[0] == '\n')
            evbuffer_drain(buf, 1);
        else if (two[0] == '\r' && two[1] == '\n')
            evbuffer_drain(buf, 2);
        else
            return 1;
    }
}

/* n bytes of the connection's request stream arrived (or were left over from the one
 * before), at offset from of its input buffer. */
static void request_bytes(struct conn *c, struct evbuffer *buf, size_t from, size_t n)
{
    const struct config *cfg = c->http->params->cfg;
    if (c->phase == CONN_WAITING) {
        /* Empty lines before a request line are passed over (RFC 9112 2.2: a client may end a
         * body with an extra CRLF), where evhttp would answer 400. They start no request, so no
         * deadline but the idle one runs while they come. */
        if (!drain_empty_lines(buf))
            return;
        from = 0;
        n = evbuffer_get_length(buf);
        int64_t now = monotonic_ms();
        if (!c->first)
            c->header_deadline = now + (int64_t)cfg->header_timeout * 1000;
        c->request_deadline = now + (int64_t)cfg->request_timeout * 1000;
        c->line_len = 0;
        c->last = 0;
        c->phase = CONN_HEADERS;
        conn_arm(c, c->header_deadline < c->request_deadline ? c->header_deadline : c->request_deadline);
    }
    size_t headers_end;
    if (c->phase == CONN_HEADERS && (headers_end = headers_end_in(c, buf, from, n)) > 0) {
        c->phase = CONN_BODY;
        c->headers_left = headers_end;
        c->first = 0;
        conn_arm(c, c->request_deadline);
    }
}

static void input_arrived(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg);

/* c's client as text for a log line ("unknown" before the connection was attached). */
static const char *peer_name(const struct conn *c)
{
    return c && c->peer[0] ? c->peer : "unknown";
}

/* An info line about a client, at most one a minute for each repeat (what libevent refuses
 * alone, and timeouts: a flood of them must not flood the log), counting the ones left out. */
static void log_client_repeat(struct log_repeat *repeat, const struct conn *c, const char *what)
{
    unsigned unlogged;
    if (log_repeat_due(repeat, monotonic_ms(), &unlogged))
        log_info("%s (client %s; %u more since the last such line, one a minute at most)", what,
                 peer_name(c), unlogged);
}

/* evhttp's close callback: the connection is going; its bufferevent is still there. A TLS
 * connection whose answers are all out says so first (close_notify, which libevent 2.1 never
 * sends): without it a client cannot tell the end of an answer framed by the close from a cut
 * connection. */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct conn *c = arg;
    struct wrk_http *http = c->http;
    (void)evcon;
    SSL *ssl = c->plain ? NULL : bufferevent_openssl_get_ssl(c->bev);
    /* Not after an answer cut short (output left): the client must not take it for whole. */
    if (ssl && SSL_is_init_finished(ssl) && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    if (c->fd >= 0 && (size_t)c->fd < http->by_fd_len && http->by_fd[c->fd] == c)
        http->by_fd[c->fd] = NULL;
    /* A request whose headers are in but whose body was not read (evhttp refused it, a 413,
     * or its client left), or one answered with more of it to come (c->linger): the client may
     * still be sending, so the socket lingers (worker/linger.c) rather than being reset under
     * the answer. Not for headers that never ended (a flood of header lines is cut, as nginx
     * does). evhttp closes its own descriptor next. */
    if ((c->phase == CONN_BODY || c->linger) && c->fd >= 0) {
        int lingering = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
        if (lingering >= 0)
            lingerer_add(http->lingerer, lingering);
    }
    /* libevent answers such a request itself (no callback of ours runs), and a sender refused
     * this way every cycle must not go unseen. */
    if (c->phase == CONN_BODY && c->fd >= 0)
        log_client_repeat(&http->bodies_unread, c,
                          "a request was refused by the HTTP layer before its body was read (413: its "
                          "length over limits.max_request_bytes or a chunked body that cannot be "
                          "read; 400: a malformed request; 417: an unknown Expect), or its client "
                          "stopped sending the body");
    conn_free(c);
}

/* The address of the peer of socket fd as text ("1.2.3.4:5678"), for messages. */
static void peer_text(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage addr;
    socklen_t addrlen = sizeof(addr);
    char host[64], port[16];
    if (getpeername(fd, (struct sockaddr *)&addr, &addrlen) != 0 ||
        getnameinfo((struct sockaddr *)&addr, addrlen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, outlen, "an unknown client");
    else
        snprintf(out, outlen, addr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Ties c to the evhttp_connection that evhttp made around c->bev (the bufferevent's callback
 * argument), from the next turn of the loop after the accept: no request byte can have been
 * read then. Our reference kept the bufferevent alive until here; without callbacks it was
 * freed (or never used) by evhttp, and so is c. Returns -1 when c was freed. */
static int conn_attach(struct conn *c)
{
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    struct bufferevent *bev = c->bev;
    event_del(c->timer);
    bufferevent_getcb(bev, NULL, NULL, &eventcb, &cbarg);
    if (!eventcb || !cbarg) {
        conn_free(c);
        bufferevent_decref(bev);
        return -1;
    }
    struct wrk_http *http = c->http;
    c->evcon = cbarg;
    c->fd = bufferevent_getfd(bev);
    if (c->fd >= 0) {
        peer_text(c->fd, c->peer, sizeof(c->peer));
        /* Answers go out at once: without this, Nagle holds the tail of an answer larger than
         * a segment until the sender's delayed ACK (about 40 ms). */
        int on = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if ((size_t)c->fd >= http->by_fd_len) {
            size_t len = http->by_fd_len ? http->by_fd_len : 64;
            while (len <= (size_t)c->fd)
                len *= 2;
            http->by_fd = xrealloc(http->by_fd, len * sizeof(*http->by_fd));
            memset(http->by_fd + http->by_fd_len, 0, (len - http->by_fd_len) * sizeof(*http->by_fd));
            http->by_fd_len = len;
        }
        http->by_fd[c->fd] = c;
    }
    evhttp_connection_set_closecb(c->evcon, conn_closed, c);
    c->phase = CONN_WAITING;
    c->first = 1;
    c->header_deadline = monotonic_ms() + (int64_t)http->params->cfg->header_timeout * 1000;
    conn_arm(c, c->header_deadline);
    bufferevent_decref(bev);
    return 0;
}

static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->phase == CONN_ATTACHING) {
        conn_attach(c);
        return;
    }
    if (c->phase == CONN_BUSY)
        return;
    struct wrk_http *http = c->http;
    if (c->phase == CONN_CLOSING || (c->phase == CONN_WAITING && !c->first))
        log_debug("closing a connection: %s (client %s)",
                  c->phase == CONN_CLOSING ? "answered a CONNECT" : "idle past keepalive_timeout",
                  peer_name(c));
    else if (c->phase == CONN_BODY)
        log_client_repeat(&http->bodies_late, c,
                          "closing a connection: request not complete within request_timeout");
    else
        log_client_repeat(&http->headers_late, c,
                          "closing a connection: request headers late (header_timeout)");
    /* Outside evhttp's callbacks, on a connection with no dispatched request: evhttp frees the
     * request it reads into, and conn_closed frees c (and this timer). Nothing was answered:
     * no lingering either. */
    c->phase = CONN_CLOSING;
    evhttp_connection_free(c->evcon);
}

/* The connection of a request (NULL when it has none or is not tracked). */
static struct conn *conn_of_request(struct wrk_http *http, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return NULL;
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (fd < 0 || (size_t)fd >= http->by_fd_len)
        return NULL;
    struct conn *c = http->by_fd[fd];
    return c && c->evcon == evcon ? c : NULL;
}

/* evhttp's on-complete callback of a dispatched request: its answer is written, the
 * connection waits for the next request (or evhttp closes it right after this). Bytes of the
 * next request may be in already: evhttp consumed exactly this one's. */
static void request_done(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT) {
        c->phase = CONN_CLOSING;
        conn_arm(c, 0);   /* conn_timer closes it, outside evhttp's callbacks */
        return;
    }
    c->phase = CONN_WAITING;
    c->first = 0;
    conn_arm(c, monotonic_ms() + (int64_t)c->http->params->cfg->keepalive_timeout * 1000);
    if (!c->plain)
        resume_tls_reading(c);   /* evhttp reads again next, and libevent only waits for the socket */
    struct evbuffer *input = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(input);
    if (len)
        request_bytes(c, input, 0, len);
}

/* libevent 2.1 reads a socket at most 4096 bytes at a time (EVBUFFER_MAX_READ), one turn of
 * the event loop each: 256 turns, each with its epoll_wait, readv and evhttp step, for a 1 MB
 * RowData body, which took ~0.65 ms of a 9 ms call before its parse could start. While a body
 * is arriving on a plain connection, whatever its socket already holds is read here at once (up
 * to READ_AHEAD_MAX per turn), into the same input buffer that evhttp takes the body from.
 * Bytes past the body are the next request's, as they can be after any read: request_done
 * scans them. Only in CONN_BODY on entry, so that evhttp has normally parsed the headers (and
 * refused a body over the limit, from Content-Length) first; a pipelined request's headers may
 * still be unparsed then, which READ_AHEAD_MAX bounds. Errors and the end of the stream are
 * left to the bufferevent's next read, which reports them as usual. */
static void read_ahead(struct conn *c, struct evbuffer *input)
{
    size_t total = 0;
    while (total < READ_AHEAD_MAX && !c->held) {
        int ready = 0;
        if (ioctl(c->fd, FIONREAD, &ready) < 0 || ready <= 0)
            return;
        size_t want = (size_t)ready < READ_AHEAD_MAX - total ? (size_t)ready : READ_AHEAD_MAX - total;
        struct evbuffer_iovec space;   /* one extent: want bytes in one piece */
        if (evbuffer_reserve_space(input, (ev_ssize_t)want, &space, 1) != 1)
            return;
        ssize_t got = recv(c->fd, space.iov_base, want, 0);
        space.iov_len = got > 0 ? (size_t)got : 0;
        if (evbuffer_commit_space(input, &space, got > 0) != 0) {
            /* Bytes taken from the socket and lost: the stream can no longer be framed. The
             * shutdown makes the bufferevent's next read fail, and evhttp drop the request. */
            log_error("cannot keep request bytes read ahead; closing the connection");
            shutdown(c->fd, SHUT_RDWR);
            return;
        }
        if (got <= 0)
            return;
        total += (size_t)got;
    }
}

static void input_arrived(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    if (c->phase == CONN_BODY && info->n_deleted) {
        /* evhttp takes the headers first, then, for a chunked body, each chunk as it is in:
         * those stay in memory, with the request, until it is dispatched. */
        size_t headers = info->n_deleted < c->headers_left ? info->n_deleted : c->headers_left;
        c->headers_left -= headers;
        c->body_taken += info->n_deleted - headers;
    }
    if (count_arriving(c, evbuffer_get_length(input) + c->body_taken))
        release_held(c->http, c);
    if (info->n_deleted && !c->plain)
        resume_tls_reading(c);
    if (info->n_added == 0)
        return;
    c->http->last_input_ms = monotonic_ms();
    if (c->phase == CONN_BODY && c->plain && !c->reading_ahead && !c->held) {
        c->reading_ahead = 1;
        read_ahead(c, input);
        c->reading_ahead = 0;
        return;
    }
    if (c->phase == CONN_ATTACHING && conn_attach(c) < 0)
        return;
    if (c->phase == CONN_WAITING || c->phase == CONN_HEADERS) {
        size_t len = evbuffer_get_length(input);
        size_t n = info->n_added < len ? info->n_added : len;
        request_bytes(c, input, len - n, n);
    }
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct listener_http *lh = arg;
    if (lh->bound && lh->owner->admitted)
        evconnlistener_enable(evhttp_bound_socket_get_listener(lh->bound));
}

/* accept() failed and libevent gave up for this turn. Out of descriptors or memory, accepting
 * pauses (accept_shortage), or until a connection closes. Other errors are the connection's
 * own. */
static void accept_failed(struct evconnlistener *listener, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* arg is evhttp's own (the struct evhttp): the listener is found by it. */
    struct listener_http *lh = NULL;
    for (size_t i = 0; worker_http && i < worker_http->nlisteners && !lh; i++)
        if (worker_http->listeners[i].evhttp == arg)
            lh = &worker_http->listeners[i];
    if (!lh)
        return;
    char what[320];
    snprintf(what, sizeof(what), "listen %s", lh->address);
    struct timeval pause;
    if (!accept_shortage(err, &lh->accept_errors, what, &pause))
        return;   /* a connection's own error (accept(2): EPROTO, ENETDOWN, EPERM...): go on */
    evconnlistener_disable(listener);
    evtimer_add(lh->resume, &pause);
}

/* Sharing out new connections (nginx's accept_mutex and multi_accept off do the same job).
 * Every worker is woken by the shared listening socket, but libevent accepts the whole backlog
 * in whichever worker runs first, so a burst of keep-alive senders would all sit on one worker
 * for as long as they stay connected. A worker therefore accepts one connection per turn of its
 * loop, and once it has more open than the least loaded other worker of its generation, it
 * pauses accepting for ACCEPT_PAUSE_MS, or until one of its connections closes, so that the
 * others take the next ones (a busy or slow worker does not hold them up longer than that).
 * Pausing only from two ahead left 16 keep-alive senders on 16 workers as 2/2/.../1/0/0: the
 * senders sharing a worker ran at half speed and set the pace of the whole (bench many_tenants
 * on a 16-core machine was no faster with 16 workers than with 8). */
static void accept_one_per_turn(struct listener_http *lh)
{
    struct wrk_http *http = lh->owner;
    if (!lh->bound)
        return;
    evconnlistener_disable(evhttp_bound_socket_get_listener(lh->bound));
    uint32_t fewest = reg_workers_fewest_connections(http->params->reg, http->params->slot,
                                                     http->params->generation);
    if (fewest != UINT32_MAX && http->connections > fewest) {
        struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
        evtimer_add(lh->resume, &pause);
    } else {
        event_active(lh->resume, EV_TIMEOUT, 1);
    }
}

/* Answers plain HTTP sent to a TLS port with a 400 that says so (as nginx does), where a bare
 * close would leave the sender's operator guessing. Written straight to the socket: TLS never
 * started. What the client sent after its first bytes is read and dropped (boundedly), so that
 * the close does not reset the connection before the client reads the answer. */
static void answer_plain_http(int fd)
{
    static const char body[] = "This port speaks HTTPS: the request was plain HTTP.\n";
    char answer[256];
    int len = snprintf(answer, sizeof(answer),
                       "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s", sizeof(body) - 1, body);
    if (send(fd, answer, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        return;
    shutdown(fd, SHUT_WR);
    char dropped[4096];
    for (int i = 0; i < 16 && recv(fd, dropped, sizeof(dropped), MSG_DONTWAIT) > 0; i++)
        ;
}

/* Whether the handshake step OpenSSL just ended with ret failed for good, rather than waiting
 * for the socket: OpenSSL queued why (libevent takes the queue after each failure it sees, and
 * so do we after our own SSL calls, so nothing older is there). */
static int handshake_failed(int ret)
{
    return ret <= 0 && ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_SSL;
}

/* A failed handshake is logged at info (as nginx does), with the client and OpenSSL's reason,
 * unless the client sent nothing (a TCP health check, a port scan); plain HTTP is answered.
 * OpenSSL's error stays queued for libevent, which closes the connection next. */
static void tls_failed(const SSL *ssl)
{
    BIO *rbio = SSL_get_rbio(ssl);
    int fd = SSL_get_rfd(ssl);
    if (!rbio || BIO_number_read(rbio) == 0 || fd < 0)
        return;
    char peer[96];
    peer_text(fd, peer, sizeof(peer));
    unsigned long code = ERR_peek_last_error();
    if (ERR_GET_REASON(code) == SSL_R_HTTP_REQUEST) {
        answer_plain_http(fd);
        log_info("tls handshake with %s failed: plain HTTP sent to a TLS port (answered 400)", peer);
        return;
    }
    const char *reason = ERR_reason_error_string(code);
    log_info("tls handshake with %s failed: %s", peer, reason ? reason : "unknown reason");
}

/* OpenSSL's progress on a TLS handshake: the bytes it reads count as input for the drain
 * (check_drained), as request bytes do; a request sent right after a handshake that ends as a
 * worker drains is then awaited, however long the handshake took. A failure is told (tls_failed). */
static void tls_progress(const SSL *ssl, int where, int ret)
{
    if (where & (SSL_CB_ACCEPT_LOOP | SSL_CB_HANDSHAKE_DONE)) {
        struct wrk_http *http = SSL_get_app_data(ssl);
        http->last_input_ms = monotonic_ms();
    }
    if (where == SSL_CB_ACCEPT_EXIT && handshake_failed(ret))
        tls_failed(ssl);
}

/* A server SSL for a new connection of lh, its progress watched (tls_progress). */
static SSL *tls_new(struct listener_http *lh)
{
    SSL *ssl = SSL_new(lh->ssl);
    if (ssl) {
        SSL_set_app_data(ssl, lh->owner);
        SSL_set_info_callback(ssl, tls_progress);
    }
    return ssl;
}

/* evhttp's bevcb: each connection's bufferevent (TLS for a TLS listener), input watched. */
static struct bufferevent *make_connection(struct event_base *base, void *arg)
{
    struct listener_http *lh = arg;
    lh->owner->last_input_ms = monotonic_ms();   /* its first request is awaited when draining */
    connections_changed(lh->owner, +1);
    accept_one_per_turn(lh);
    struct bufferevent *bev;
    if (lh->ssl)
        bev = bufferevent_openssl_socket_new(base, -1, tls_new(lh), BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    else
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_setwatermark(bev, EV_READ, 0, input_high_water(lh->owner->params->cfg));
    struct conn *c = xcalloc(1, sizeof(*c));
    c->http = lh->owner;
    c->bev = bev;
    c->fd = -1;
    c->plain = lh->ssl == NULL;
    c->phase = CONN_ATTACHING;
    c->timer = evtimer_new(base, conn_timer, c);
    if (!bev || !c->timer || !(c->watch = evbuffer_add_cb(bufferevent_get_input(bev), input_arrived, c))) {
        log_error("cannot create a connection buffer (out of memory)");
        abort();
    }
    /* evhttp makes its connection around bev once this returns: attach to it next (a
     * reference keeps bev until then, in case evhttp frees it first). */
    bufferevent_incref(bev);
    event_active(c->timer, EV_TIMEOUT, 1);
    return bev;
}

/* Whether the request declared a body that libevent did not read: it reads none for HEAD,
 * TRACE and methods it does not know. Whatever follows on the connection is then that body,
 * not a request, so the answer closes the connection. */
static int body_left_unread(struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    int reads_body = (method & (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                                EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_CONNECT)) != 0;
    if (reads_body)
        return 0;
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    const char *length = evhttp_find_header(headers, "Content-Length");
    return evhttp_find_header(headers, "Transfer-Encoding") != NULL ||
           (length && strspn(length, " \t0") != strlen(length));
}

/* Whether an HTTP/1.0 request carries Transfer-Encoding, which HTTP/1.0 does not have: a proxy
 * in front may have framed it otherwise, so its framing is taken for faulty and the answer
 * closes the connection (RFC 9112 section 6.1), as libevent reads it chunked all the same. */
static int coded_in_http10(struct evhttp_request *req)
{
    return req->major == 1 && req->minor == 0 &&
           evhttp_find_header(evhttp_request_get_input_headers(req), "Transfer-Encoding") != NULL;
}

/* The refusals of a request before its call (see refusal_kind): the status, the answer's text,
 * and whether the connection closes after it. */
static const struct refusal {
    int status;
    const char *text;
    int close;
} refusals[REFUSAL_KINDS] = {
    [REFUSED_FRAMING] = {400, "The request's length is told by conflicting or unsupported Content-Length "
                              "and Transfer-Encoding headers.", 1},
    [REFUSED_CODING_FRAMED] = {501, "The request's length is told by a Transfer-Encoding other than "
                                    "chunked.", 1},
    [REFUSED_HOST] = {400, "The request has more than one Host header.", 0},
    [REFUSED_CONTENT_CODING] = {415, "The body has a Content-Encoding: send it unencoded (identity); "
                                     "somirrord decodes none.", 0},
};

/* Whether the request's headers tell its length in a way that cannot be trusted (RFC 9112
 * section 6.3). libevent frames a body by the first Content-Length it finds, or as chunked when
 * Transfer-Encoding is exactly "chunked", and reads no body for any other coding. A proxy in
 * front may have framed the same bytes by another of those headers, and what follows on the
 * connection would then be taken for a request the proxy never saw (request smuggling). So
 * two Content-Length or Transfer-Encoding headers, or both, are 400, and a coding other than
 * chunked 501; so is whitespace before a header's colon (RFC 9112 section 5.1). The answer
 * closes the connection. Its refusal_kind, or -1. */
static int framing_refused(struct evhttp_request *req)
{
    const struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    int lengths = 0, encodings = 0, bad = 0;
    const char *encoding = NULL;
    for (const struct evkeyval *h = headers->tqh_first; h && !bad; h = h->next.tqe_next) {
        size_t n = strlen(h->key);
        if (n && (h->key[n - 1] == ' ' || h->key[n - 1] == '\t')) {
            bad = 1;   /* "Transfer-Encoding : chunked" would be read as no header at all */
        } else if (evutil_ascii_strcasecmp(h->key, "Content-Length") == 0) {
            lengths++;
            /* Digits only (RFC 9110 8.6), after the whitespace libevent leaves before a value
             * (a tab): its strtoll would take "+5", which a proxy in front may frame otherwise. */
            const char *digits = h->value + strspn(h->value, " \t");
            bad = !digits[0] || strspn(digits, "0123456789") != strlen(digits);
        } else if (evutil_ascii_strcasecmp(h->key, "Transfer-Encoding") == 0) {
            encodings++;
            encoding = h->value;
        }
    }
    if (bad || lengths > 1 || encodings > 1 || (lengths && encodings))
        return REFUSED_FRAMING;
    if (encoding && evutil_ascii_strcasecmp(encoding, "chunked") != 0)
        return REFUSED_CODING_FRAMED;
    return -1;
}

/* Whether bytes of the request may still come that evhttp does not read: a body it left unread,
 * one whose framing was refused (its end is not known), what follows a CONNECT. The answer
 * closes the connection, which then lingers (conn_closed), as after a 413: closed at once, it
 * would be reset by the client's next bytes, and the reset can destroy the answer before the
 * client has read it. */
static int bytes_may_follow(struct evhttp_request *req)
{
    return body_left_unread(req) || framing_refused(req) >= 0 ||
           evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT;
}

/* How many times the request carries the header key. */
static int header_count(struct evhttp_request *req, const char *key)
{
    const struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    int count = 0;
    for (const struct evkeyval *h = headers->tqh_first; h; h = h->next.tqe_next)
        count += evutil_ascii_strcasecmp(h->key, key) == 0;
    return count;
}

/* Whether the request is refused before its call: its refusal_kind, or -1. Its framing first;
 * then a repeated Host (RFC 9112 3.2: a proxy in front may have routed by the other one); then,
 * for a POST, a body with a content coding (it would be parsed as the XML it is not and fail
 * without saying why: RFC 9110 15.5.16). The framing of the last two is sound, so their
 * connection is kept. An HTTP/1.1 request without Host, which RFC 9112 would have refused, is
 * served: somirrord serves every host alike, and the protocol (section 1) asks only for a POST. */
static int request_refused(struct evhttp_request *req)
{
    int framing = framing_refused(req);
    if (framing >= 0)
        return framing;
    if (header_count(req, "Host") > 1)
        return REFUSED_HOST;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return -1;
    const char *coding = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    if (coding && coding[0] && evutil_ascii_strcasecmp(coding, "identity") != 0)
        return REFUSED_CONTENT_CODING;
    return -1;
}

/* Whether the request's Connection header (a list: RFC 9110 7.6.1) holds the close option
 * alongside others ("keep-alive, close"): libevent closes only for a header that is exactly
 * "close". */
static int connection_listed_close(struct evhttp_request *req)
{
    const struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    for (const struct evkeyval *h = headers->tqh_first; h; h = h->next.tqe_next) {
        if (evutil_ascii_strcasecmp(h->key, "Connection") != 0)
            continue;
        for (const char *p = h->value; *p;) {
            p += strspn(p, " \t,");
            size_t n = strcspn(p, " \t,");
            if (n == 5 && evutil_ascii_strncasecmp(p, "close", 5) == 0)
                return 1;
            p += n;
        }
    }
    return 0;
}

/* libevent's inactivity timeout (reads and writes): a backstop to the deadlines above, and the
 * limit for a client that does not read its answer. */
static struct timeval inactivity_timeout(const struct config *cfg)
{
    struct timeval tv = {cfg->keepalive_timeout > cfg->header_timeout ? cfg->keepalive_timeout
                                                                      : cfg->header_timeout, 0};
    return tv;
}

/* A call runs on the worker's loop, which can be held for longer than the inactivity timeout
 * (a long call, a tenant lock): evhttp would then close the connection at the next turn, and
 * the committed call's answer would be lost. So the timeout is off while a request is
 * dispatched (held) and on again, counted from the real time, when its answer is queued. */
static void hold_timeouts(struct wrk_http *http, struct evhttp_request *req, int held)
{
    struct conn *c = conn_of_request(http, req);
    if (!c)
        return;
    if (held) {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        return;
    }
    event_base_update_cache_time(http->base);
    struct timeval tv = inactivity_timeout(http->params->cfg);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void send_answer(struct wrk_http *http, struct evhttp_request *req, int status,
                        const char *content_type, const void *body, size_t len)
{
    hold_timeouts(http, req, 0);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    /* libevent gives an answer to CONNECT no Content-Length, so its body ends at the close, and
     * never closes after one itself: request_done does. */
    struct conn *c = conn_of_request(http, req);
    int unread = bytes_may_follow(req);
    if (c && unread)
        c->linger = 1;
    if ((http->draining || http->params->cfg->keepalive_timeout == 0 || unread || coded_in_http10(req) ||
         connection_listed_close(req)) &&
        !evhttp_find_header(headers, "Connection"))
        evhttp_add_header(headers, "Connection", "close");
    /* libevent adds "Connection: keep-alive" to the answer of an HTTP/1.0 request that asked
     * for it, even beside our close: the answer said both. Without the request's headers it adds
     * none, and closes; but it then gives the answer no Content-Length either (as to any HTTP/1.0
     * request without keep-alive), so the length is given here, as a HEAD's is the GET's. */
    const char *connection = evhttp_find_header(headers, "Connection");
    if (connection && evutil_ascii_strcasecmp(connection, "close") == 0)
        while (evhttp_remove_header(evhttp_request_get_input_headers(req), "Connection") == 0)
            ;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_CONNECT) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", len);
        evhttp_add_header(headers, "Content-Length", length);
    }
    if (len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    evhttp_send_reply(req, status, NULL, NULL);
}

/* ---- service calls ---- */

/* Whether the client of req has gone: evhttp has let go of its connection, or the peer has
 * closed or reset the socket (POLLRDHUP: its end of stream is in, even behind unread bytes such
 * as a TLS close_notify). A call whose client has gone is not run. Its sender died, and a new
 * one may have run a cycle since (this worker was held up, or the call waited for its tenant's
 * lock): a stale RowData of a full load applied after that cycle would bring back rows the
 * cycle deleted, as full-load rows carry no lsn to skip them by. Like nginx, an end of stream
 * is taken for a client that has gone (no sender half-closes and then waits for its answer). */
static int client_gone(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return 1;
    struct pollfd p = {.fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)),
                       .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Answers the call (or, when its client has gone, closes) and frees it; nothing is committed
 * of a call that did not run (call_free rolls back rows applied while parsing). */
static void finish_call(struct pending_call *pc, int gone)
{
    struct wrk_http *http = pc->http;
    if (gone) {
        static const char text[] = "The connection was closed (or half-closed) before the call "
                                   "ran: the call was not run.\n";
        const struct conn *c = conn_of_request(http, pc->req);
        log_info("the client closed (or half-closed) its connection before its call ran: the call "
                 "is not run (client %s)", peer_name(c));
        struct evkeyvalq *headers = evhttp_request_get_output_headers(pc->req);
        if (!evhttp_find_header(headers, "Connection"))
            evhttp_add_header(headers, "Connection", "close");
        send_answer(http, pc->req, 503, "text/plain; charset=utf-8", text, sizeof(text) - 1);
    } else {
        const struct buf *response = call_response(pc->call);
        send_answer(http, pc->req, call_http_status(pc->call), "text/xml; charset=utf-8",
                    response->data, response->len);
    }
    call_free(pc->call);
    if (pc->retry)
        event_free(pc->retry);
    free(pc);
    http->calls_in_flight--;
    mark_worker_state(http);
}

static void run_call(evutil_socket_t fd, short what, void *arg)
{
    struct pending_call *pc = arg;
    if (client_gone(pc->req)) {
        finish_call(pc, 1);
        return;
    }
    if (call_run(pc->call) == CALL_DONE) {
        finish_call(pc, 0);
        return;
    }
    /* The tenant's lock is busy: try again shortly, backing off, without blocking the loop. */
    pc->retry_ms = pc->retry_ms ? pc->retry_ms * 2 : RETRY_FIRST_MS;
    if (pc->retry_ms > RETRY_MAX_MS)
        pc->retry_ms = RETRY_MAX_MS;
    if (!pc->retry)
        pc->retry = evtimer_new(pc->http->base, run_call, pc);
    struct timeval delay = {0, pc->retry_ms * 1000};
    evtimer_add(pc->retry, &delay);
}

/* The request's SOAPAction: its one header's value, NULL without one, or, sent more than once,
 * the values joined by ", " (as RFC 9110 5.3 combines repeated fields; in SOAPAction, which is
 * no list, that names no operation, and the call is an UnknownOperation fault saying what was
 * sent, rather than the first header silently winning). Combined in *joined (freed by the
 * caller). */
static const char *soapaction_of(struct evhttp_request *req, struct buf *joined)
{
    const struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    const char *first = NULL;
    int count = 0;
    for (const struct evkeyval *h = headers->tqh_first; h; h = h->next.tqe_next) {
        if (evutil_ascii_strcasecmp(h->key, "SOAPAction") != 0)
            continue;
        buf_printf(joined, "%s%s", count++ ? ", " : "", h->value);
        if (!first)
            first = h->value;
    }
    return count > 1 ? joined->data : first;
}

static void start_call(struct wrk_http *http, struct evhttp_request *req)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    const char *body = len ? (const char *)evbuffer_pullup(input, -1) : "";

    struct pending_call *pc = xcalloc(1, sizeof(*pc));
    pc->http = http;
    pc->req = req;
    /* Busy from here: call_start may do most of a large RowData call (see service.c). */
    http->calls_in_flight++;
    mark_worker_state(http);
    if (client_gone(req)) {
        finish_call(pc, 1);
        return;
    }
    const struct conn *c = conn_of_request(http, req);
    struct buf joined = BUF_INIT;
    pc->call = call_start(http->svc, body, len, soapaction_of(req, &joined), c && c->peer[0] ? c->peer : NULL);
    buf_free(&joined);
    run_call(-1, 0, pc);
}

/* ---- routing (protocol.md section 1) ---- */

/* Answers a request refused before its call, and says so in the log (a sender refused every
 * cycle must not go unseen), each kind at most once a minute. */
static void refuse_request(struct wrk_http *http, struct evhttp_request *req, const struct conn *c,
                           enum refusal_kind kind)
{
    const struct refusal *r = &refusals[kind];
    char what[256];
    snprintf(what, sizeof(what), "a request was refused with %d: %s", r->status, r->text);
    log_client_repeat(&http->refused[kind], c, what);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (r->close)
        evhttp_add_header(headers, "Connection", "close");
    if (kind == REFUSED_CONTENT_CODING)
        evhttp_add_header(headers, "Accept-Encoding", "identity");
    char text[256];
    int len = snprintf(text, sizeof(text), "%s\n", r->text);
    send_answer(http, req, r->status, "text/plain; charset=utf-8", text, (size_t)len);
}

static void route_request(struct evhttp_request *req, void *arg)
{
    struct wrk_http *http = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int is_health = path && strcmp(path, "/healthz") == 0;

    struct conn *c = conn_of_request(http, req);
    if (c && c->phase == CONN_CLOSING)
        return;   /* sent after a CONNECT, whose answer ends at the close: never answered */
    /* A request target in absolute form (POST http://host/ HTTP/1.1, which servers must accept:
     * RFC 9112 3.2.2) makes libevent 2.1 take the request for a proxy's and close the connection
     * after the answer, without saying so: this is no proxy, and keep-alive must hold. */
    req->flags &= ~EVHTTP_PROXY_REQUEST;
    /* libevent answers in the request's version: "HTTP/1.10" or "HTTP/1.2", which this server
     * does not speak (and a client may not parse); also "HTTP/0.9" or "HTTP/1.-1", as its parse
     * takes any integers up to major 1. An HTTP/1.x server answers 1.1 to any later 1.x (RFC
     * 9110 section 6.2); an earlier version, which libevent serves by HTTP/1.0's rules, in 1.0. */
    if (req->major == 1 && req->minor > 1) {
        req->minor = 1;
    } else if (req->major != 1 || req->minor < 0) {
        req->major = 1;
        req->minor = 0;
    }
    if (c) {
        event_del(c->timer);
        c->phase = CONN_BUSY;
        if (c->held)
            unhold(c);   /* held by the very read that completed its request */
        /* Its body is the call's now, no longer a request arriving. */
        c->headers_left = 0;
        c->body_taken = 0;
        if (count_arriving(c, evbuffer_get_length(bufferevent_get_input(c->bev))))
            release_held(http, c);
        evhttp_request_set_on_complete_cb(req, request_done, c);
        hold_timeouts(http, req, 1);
    }

    int refused = request_refused(req);
    if (refused >= 0) {
        refuse_request(http, req, c, (enum refusal_kind)refused);
    } else if (method == EVHTTP_REQ_POST) {
        start_call(http, req);
    } else if (is_health && (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD)) {
        if (http->shutting_down)
            send_answer(http, req, 503, "text/plain; charset=utf-8", "shutting down\n", 14);
        else
            send_answer(http, req, 200, "text/plain; charset=utf-8", "ok\n", 3);
    } else {
        static const char text[] =
            "This is a somirror mirroring endpoint: it takes SOAP calls sent with HTTP POST.\n";
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        send_answer(http, req, 405, "text/plain; charset=utf-8", text, sizeof(text) - 1);
    }
}


/* ---- setup and drain ---- */

/* Whether c is a TLS connection whose handshake has begun and is still going on: its first
 * request is on its way (header_timeout bounds it, as it does headers). One with no byte in yet
 * holds a drain no more than a plain one does. */
static int tls_handshaking(const struct conn *c)
{
    const SSL *ssl = c->plain ? NULL : bufferevent_openssl_get_ssl(c->bev);
    return ssl && !SSL_in_before(ssl) && !SSL_is_init_finished(ssl);
}

/* Whether a connection has part of a request in: its handshake, headers or body are still
 * arriving. */
static int request_arriving(const struct conn *c)
{
    return reading_request(c) || tls_handshaking(c);
}

/* Whether a connection waits in the backlog of a listening socket. */
static int connection_waiting(evutil_socket_t fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Closes this worker's copies of the listening sockets (the master's copy keeps a socket
 * listening across a reload), but for those with connections waiting until the last accepts
 * end. Returns how many stay open. */
static size_t close_listeners(struct wrk_http *http)
{
    size_t open = 0;
    int taking = monotonic_ms() < http->last_accepts_until;
    for (size_t i = 0; i < http->nlisteners; i++) {
        struct listener_http *lh = &http->listeners[i];
        if (!lh->bound)
            continue;
        if (taking && connection_waiting(evhttp_bound_socket_get_fd(lh->bound))) {
            open++;
            continue;
        }
        evhttp_del_accept_socket(lh->evhttp, lh->bound);
        lh->bound = NULL;
    }
    return open;
}

static void check_drained(evutil_socket_t fd, short what, void *arg)
{
    struct wrk_http *http = arg;
    if (close_listeners(http) == 0 && http->calls_in_flight == 0 &&
        monotonic_ms() - http->last_input_ms >= DRAIN_QUIET_MS &&
        !some_conn(http, request_arriving, NULL) && lingerer_count(http->lingerer) == 0) {
        http->on_drained(http->on_drained_arg);
        return;
    }
    struct timeval later = {0, DRAIN_CHECK_MS * 1000};
    evtimer_add(http->drain_check, &later);
}

static int listener_setup(struct wrk_http *http, struct listener_http *lh,
                          const struct wrk_listener *wl, char *err, size_t errlen)
{
    const struct config *cfg = http->params->cfg;
    lh->owner = http;
    lh->address = wl->conf.address;
    if (wl->tls) {
        SSL_CTX_up_ref(wl->tls);   /* the master's, inherited: no file is read here */
        lh->ssl = wl->tls;
    }
    lh->evhttp = evhttp_new(http->base);
    if (!lh->evhttp) {
        snprintf(err, errlen, "listen %s: cannot create the HTTP server", wl->conf.address);
        return -1;
    }
    /* Every method reaches route_request, which answers 405 to all but POST and GET/HEAD
     * /healthz (protocol section 1). libevent 2.1 gives a method it does not know (PROPFIND, a
     * lowercase "post") a bit of its own outside the public enum, and answers 501 itself to any
     * method whose bit is not allowed: hence all sixteen bits, not the enum's nine. */
    evhttp_set_allowed_methods(lh->evhttp, UINT16_MAX);
    /* libevent answers 413 itself, from Content-Length as soon as the headers are in (a
     * chunked body once it is past the limit), and closes the connection; conn_closed then
     * lets the socket linger, so that a client still sending the body gets the 413 rather than
     * a reset. (libevent's own lingering close, EVHTTP_SERVER_LINGERING_CLOSE, would answer
     * only once the whole declared body had come in.) */
    evhttp_set_max_body_size(lh->evhttp, (ev_ssize_t)cfg->max_request_bytes);
    evhttp_set_max_headers_size(lh->evhttp, HEADERS_MAX);
    struct timeval idle = inactivity_timeout(cfg);
    evhttp_set_timeout_tv(lh->evhttp, &idle);
    lh->resume = evtimer_new(http->base, resume_accepting, lh);
    if (!lh->resume) {
        snprintf(err, errlen, "listen %s: out of memory", wl->conf.address);
        return -1;
    }
    evhttp_set_bevcb(lh->evhttp, make_connection, lh);
    evhttp_set_gencb(lh->evhttp, route_request, http);
    lh->bound = evhttp_accept_socket_with_handle(lh->evhttp, wl->fd);
    if (!lh->bound) {
        snprintf(err, errlen, "listen %s: cannot accept on the inherited socket: %s",
                 wl->conf.address, strerror(errno));
        return -1;
    }
    struct evconnlistener *listener = evhttp_bound_socket_get_listener(lh->bound);
    evconnlistener_set_error_cb(listener, accept_failed);
    evconnlistener_disable(listener);   /* until admitted */
    return 0;
}

void wrk_http_admit(struct wrk_http *http)
{
    http->admitted = 1;
    for (size_t i = 0; i < http->nlisteners; i++)
        if (http->listeners[i].bound)
            evconnlistener_enable(evhttp_bound_socket_get_listener(http->listeners[i].bound));
}

struct wrk_http *wrk_http_new(struct event_base *base, const struct wrk_params *params,
                              struct service *svc, void (*on_drained)(void *arg), void *arg,
                              char *err, size_t errlen)
{
    struct wrk_http *http = xcalloc(1, sizeof(*http));
    worker_http = http;
    http->base = base;
    http->params = params;
    http->svc = svc;
    http->on_drained = on_drained;
    http->on_drained_arg = arg;
    http->drain_check = evtimer_new(base, check_drained, http);
    http->lingerer = lingerer_new(base);
    LIST_INIT(&http->held);
    http->listeners = xcalloc(params->nlisteners, sizeof(*http->listeners));
    http->nlisteners = params->nlisteners;
    for (size_t i = 0; i < params->nlisteners; i++) {
        if (listener_setup(http, &http->listeners[i], &params->listeners[i], err, errlen) < 0) {
            wrk_http_free(http);
            return NULL;
        }
    }
    return http;
}

void wrk_http_drain(struct wrk_http *http, int shutting_down)
{
    http->shutting_down |= shutting_down;
    if (http->draining)
        return;
    http->draining = 1;
    if (shutting_down && http->admitted)
        http->last_accepts_until = monotonic_ms() + LAST_ACCEPTS_MS;
    mark_worker_state(http);
    check_drained(-1, 0, http);
}

void wrk_http_free(struct wrk_http *http)
{
    if (!http)
        return;
    /* Frees the connections left, idle keep-alive ones included. */
    for (size_t i = 0; i < http->nlisteners; i++) {
        if (http->listeners[i].evhttp)
            evhttp_free(http->listeners[i].evhttp);
        if (http->listeners[i].ssl)
            SSL_CTX_free(http->listeners[i].ssl);
        if (http->listeners[i].resume) {
            event_free(http->listeners[i].resume);
            /* The next listeners' evhttp_free closes connections, whose conn_free looks at
             * every listener's resume timer (resume_paused_listeners). */
            http->listeners[i].resume = NULL;
        }
    }
    free(http->listeners);
    free(http->by_fd);              /* after evhttp_free: conn_closed clears its slots */
    lingerer_free(http->lingerer);  /* after evhttp_free too: conn_closed may add to it */
    if (worker_http == http)
        worker_http = NULL;
    if (http->drain_check)
        event_free(http->drain_check);
    free(http);
}
