/* worker/http: the worker's HTTP layer (see http.h). Owns, per worker process: one evhttp and
 * (for TLS) one SSL_CTX per listener, and the calls in progress.
 *
 * Draining: accepting stops at once and every answer from then on closes its connection. The
 * worker is done when no call is in hand and no request bytes have arrived for DRAIN_QUIET_MS,
 * so that a request still being uploaded, or sent on a connection accepted just before, is
 * answered. Idle keep-alive connections are closed when the worker exits. Arrivals are seen
 * through a callback on each connection's input buffer (evhttp itself uses only the
 * bufferevent's callbacks). */
#include "worker/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "worker/tls.h"

#define RETRY_FIRST_MS 5
#define RETRY_MAX_MS 50
#define DRAIN_QUIET_MS 1000
#define DRAIN_CHECK_MS 100

struct listener_http {
    struct wrk_http *owner;
    struct evhttp *evhttp;
    struct evhttp_bound_socket *bound;    /* NULL once draining */
    SSL_CTX *ssl;                          /* NULL for plain HTTP */
};

struct pending_call {
    struct wrk_http *http;
    struct evhttp_request *req;
    struct call *call;
    struct event *retry;
    int retry_ms;
};

struct wrk_http {
    struct event_base *base;
    const struct wrk_params *params;
    struct service *svc;
    struct listener_http *listeners;
    size_t nlisteners;
    size_t calls_in_flight;
    int64_t last_input_ms;          /* when request bytes last arrived */
    struct event *drain_check;
    int draining;
    int shutting_down;
    void (*on_drained)(void *arg);
    void *on_drained_arg;
};

static void mark_worker_state(struct wrk_http *http)
{
    enum worker_state state = http->calls_in_flight ? WORKER_BUSY
                              : http->draining      ? WORKER_STOPPING
                                                    : WORKER_IDLE;
    reg_worker_state(http->params->reg, http->params->slot, state, NULL, NULL, (int64_t)time(NULL));
}

/* ---- connections ---- */

static void input_arrived(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
    struct wrk_http *http = arg;
    if (info->n_added > 0)
        http->last_input_ms = monotonic_ms();
}

/* evhttp's bevcb: each connection's bufferevent (TLS for a TLS listener), input watched. */
static struct bufferevent *make_connection(struct event_base *base, void *arg)
{
    struct listener_http *lh = arg;
    struct bufferevent *bev;
    if (lh->ssl)
        bev = bufferevent_openssl_socket_new(base, -1, SSL_new(lh->ssl), BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    else
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev || !evbuffer_add_cb(bufferevent_get_input(bev), input_arrived, lh->owner)) {
        log_error("cannot create a connection buffer (out of memory)");
        abort();
    }
    return bev;
}

static void send_answer(struct wrk_http *http, struct evhttp_request *req, int status,
                        const char *content_type, const void *body, size_t len)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    if (http->draining)
        evhttp_add_header(headers, "Connection", "close");
    if (len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    evhttp_send_reply(req, status, NULL, NULL);
}

/* ---- service calls ---- */

static void finish_call(struct pending_call *pc)
{
    struct wrk_http *http = pc->http;
    const struct buf *response = call_response(pc->call);
    send_answer(http, pc->req, call_http_status(pc->call), "text/xml; charset=utf-8",
                response->data, response->len);
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
    if (call_run(pc->call) == CALL_DONE) {
        finish_call(pc);
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

static void start_call(struct wrk_http *http, struct evhttp_request *req)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    const char *body = len ? (const char *)evbuffer_pullup(input, -1) : "";
    const char *soapaction = evhttp_find_header(evhttp_request_get_input_headers(req), "SOAPAction");

    struct pending_call *pc = xcalloc(1, sizeof(*pc));
    pc->http = http;
    pc->req = req;
    pc->call = call_start(http->svc, body, len, soapaction);
    http->calls_in_flight++;
    mark_worker_state(http);
    run_call(-1, 0, pc);
}

/* ---- routing (protocol.md section 1) ---- */

static void route_request(struct evhttp_request *req, void *arg)
{
    struct wrk_http *http = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int is_health = path && strcmp(path, "/healthz") == 0;

    if (method == EVHTTP_REQ_POST) {
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

static void check_drained(evutil_socket_t fd, short what, void *arg)
{
    struct wrk_http *http = arg;
    if (http->calls_in_flight == 0 && monotonic_ms() - http->last_input_ms >= DRAIN_QUIET_MS) {
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
    if (wl->conf.tls_certificate) {
        lh->ssl = wrk_tls_context_new(&wl->conf, err, errlen);
        if (!lh->ssl)
            return -1;
    }
    lh->evhttp = evhttp_new(http->base);
    if (!lh->evhttp) {
        snprintf(err, errlen, "listen %s: cannot create the HTTP server", wl->conf.address);
        return -1;
    }
    evhttp_set_allowed_methods(lh->evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    /* libevent answers 413 itself, from Content-Length before reading the body; lingering
     * close reads and drops the rest of the body first, so that a client still sending it gets
     * the 413 rather than a reset connection. */
    evhttp_set_max_body_size(lh->evhttp, (ev_ssize_t)cfg->max_request_bytes);
    evhttp_set_flags(lh->evhttp, EVHTTP_SERVER_LINGERING_CLOSE);
    /* libevent 2.1 has one inactivity timeout per connection: an idle keep-alive connection
     * and a stalled request both end after it. */
    int idle = cfg->keepalive_timeout > cfg->header_timeout ? cfg->keepalive_timeout : cfg->header_timeout;
    evhttp_set_timeout(lh->evhttp, idle);
    evhttp_set_bevcb(lh->evhttp, make_connection, lh);
    evhttp_set_gencb(lh->evhttp, route_request, http);
    lh->bound = evhttp_accept_socket_with_handle(lh->evhttp, wl->fd);
    if (!lh->bound) {
        snprintf(err, errlen, "listen %s: cannot accept on the inherited socket: %s",
                 wl->conf.address, strerror(errno));
        return -1;
    }
    return 0;
}


struct wrk_http *wrk_http_new(struct event_base *base, const struct wrk_params *params,
                              struct service *svc, void (*on_drained)(void *arg), void *arg,
                              char *err, size_t errlen)
{
    struct wrk_http *http = xcalloc(1, sizeof(*http));
    http->base = base;
    http->params = params;
    http->svc = svc;
    http->on_drained = on_drained;
    http->on_drained_arg = arg;
    http->drain_check = evtimer_new(base, check_drained, http);
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
    for (size_t i = 0; i < http->nlisteners; i++) {
        struct listener_http *lh = &http->listeners[i];
        if (lh->bound) {
            /* Closes this worker's copy only: the master keeps the socket listening. */
            evhttp_del_accept_socket(lh->evhttp, lh->bound);
            lh->bound = NULL;
        }
    }
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
    }
    free(http->listeners);
    if (http->drain_check)
        event_free(http->drain_check);
    free(http);
}
