/* task/http: somirror-task's HTTP client, libevent's evhttp used synchronously: one keep-alive
 * connection per tenant cycle (re-made after a failure), POSTs with the SOAPAction header,
 * plain HTTP or HTTPS (libevent_openssl). HTTP parsing is libevent's. */
#include "task/task.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/xalloc.h"

enum { PROBE_TIMEOUT_S = 3 };   /* see connect_problem */

struct http_client {
    struct event_base *base;
    struct evhttp_connection *conn;
    SSL_CTX *ssl_ctx;                /* NULL for plain HTTP */
    char *host;
    int port;
    char *host_header;
    char *target;                    /* path and query */
    int timeout_s;
    char tls_failure[128];           /* OpenSSL's reason for the last failed handshake */
};

struct http_exchange {
    struct http_client *client;
    int done;
    int failed;
    int status;
    struct buf *response;
    char error[128];
};

/* OpenSSL's progress on a handshake: a failure's reason is kept for the error message
 * (libevent reports only that the connection ended). */
static void tls_progress(const SSL *ssl, int where, int ret)
{
    unsigned long code = ERR_peek_last_error();
    if (where != SSL_CB_CONNECT_EXIT || ret > 0 || ERR_GET_LIB(code) != ERR_LIB_SSL)
        return;
    struct http_client *c = SSL_get_app_data(ssl);
    long verify = SSL_get_verify_result(ssl);
    const char *reason = ERR_reason_error_string(code);
    if (verify != X509_V_OK)
        snprintf(c->tls_failure, sizeof(c->tls_failure), "%s (%s)", reason ? reason : "failed",
                 X509_verify_cert_error_string(verify));
    else
        snprintf(c->tls_failure, sizeof(c->tls_failure), "%s%s", reason ? reason : "failed",
                 ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ? " (is it an https:// server?)" : "");
}

/* Why no answer came when libevent cannot say: the host does not resolve, or a connection
 * cannot be made (refused, unreachable, timed out). Tried again, blocking, for at most
 * PROBE_TIMEOUT_S an address (the call has waited its own timeout already); 0 when it connects
 * (the server then closed the connection itself). */
static int connect_problem(const struct http_client *c, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", c->port);
    int rc = getaddrinfo(c->host, port, &hints, &found);
    if (rc != 0) {
        snprintf(why, whylen, "cannot resolve %s: %s", c->host, gai_strerror(rc));
        return 1;
    }
    int failure = 0;
    for (struct addrinfo *ai = found; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            failure = errno;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        socklen_t len = sizeof(failure);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            failure = 0;
        else if (errno != EINPROGRESS)
            failure = errno;
        else if (poll(&p, 1, (c->timeout_s < PROBE_TIMEOUT_S ? c->timeout_s : PROBE_TIMEOUT_S) * 1000) <= 0)
            failure = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &len) != 0)
            failure = errno;
        close(fd);
        if (!failure)
            break;
    }
    freeaddrinfo(found);
    if (!failure)
        return 0;
    snprintf(why, whylen, "cannot connect: %s", strerror(failure));
    return 1;
}

static int connect_client(struct http_client *c, char *err, size_t errlen)
{
    if (c->ssl_ctx) {
        SSL *ssl = SSL_new(c->ssl_ctx);
        c->tls_failure[0] = '\0';
        if (ssl) {
            SSL_set_tlsext_host_name(ssl, c->host);
            SSL_set1_host(ssl, c->host);
            SSL_set_app_data(ssl, c);
            SSL_set_info_callback(ssl, tls_progress);
        }
        struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(
                                            c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
                                      : NULL;
        if (!bev && ssl)
            SSL_free(ssl);
        c->conn = bev ? evhttp_connection_base_bufferevent_new(c->base, NULL, bev, c->host,
                                                               (unsigned short)c->port)
                      : NULL;
    } else {
        c->conn = evhttp_connection_base_new(c->base, NULL, c->host, (unsigned short)c->port);
    }
    if (!c->conn) {
        snprintf(err, errlen, "cannot set up a connection to %s:%d", c->host, c->port);
        return -1;
    }
    evhttp_connection_set_timeout(c->conn, c->timeout_s);
    evhttp_connection_set_retries(c->conn, 0);
    /* A receiver that refuses a body by its Content-Length (413) answers before the body is
     * in, then ends its side of the connection: read that answer when the writing fails, or
     * the cycle would fail as "connection closed" without the hint to lower the batch size. */
    evhttp_connection_set_flags(c->conn, EVHTTP_CON_READ_ON_WRITE_ERROR);
    return 0;
}

/* uri's scheme and host when it is an http:// or https:// URL with a host (and a port, if it
 * names one, other than 0, which would be taken for none); else 0. */
static int web_url(const struct evhttp_uri *uri, const char **scheme, const char **host)
{
    *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    *host = uri ? evhttp_uri_get_host(uri) : NULL;
    return *scheme && *host && **host && (!strcmp(*scheme, "http") || !strcmp(*scheme, "https")) &&
           evhttp_uri_get_port(uri) != 0;
}

int http_url_ok(const char *url)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *scheme, *host;
    int ok = web_url(uri, &scheme, &host);
    if (uri)
        evhttp_uri_free(uri);
    return ok;
}

struct http_client *http_client_new(const char *url, int timeout_s, int insecure, char *err,
                                    size_t errlen)
{
    err[0] = '\0';
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *scheme, *host;
    if (!web_url(uri, &scheme, &host)) {
        snprintf(err, errlen, "%s: not an http:// or https:// URL", url);
        if (uri)
            evhttp_uri_free(uri);
        return NULL;
    }
    struct http_client *c = xcalloc(1, sizeof *c);
    int tls = strcmp(scheme, "https") == 0;
    c->host = xstrdup(host);
    c->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : tls ? 443 : 80;
    struct buf text = BUF_INIT;
    if (strchr(host, ':'))
        buf_printf(&text, "[%s]", host);
    else
        buf_puts(&text, host);
    if (evhttp_uri_get_port(uri) > 0)
        buf_printf(&text, ":%d", c->port);
    c->host_header = buf_steal(&text);
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    buf_puts(&text, path && *path ? path : "/");
    if (query)
        buf_printf(&text, "?%s", query);
    c->target = buf_steal(&text);
    evhttp_uri_free(uri);
    c->timeout_s = timeout_s;
    c->base = event_base_new();
    if (tls) {
        c->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (c->ssl_ctx && !insecure) {
            SSL_CTX_set_default_verify_paths(c->ssl_ctx);
            SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    if (!c->base || (tls && !c->ssl_ctx) || connect_client(c, err, errlen) != 0) {
        if (!*err)
            snprintf(err, errlen, "cannot set up the HTTP client");
        http_client_free(c);
        return NULL;
    }
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    if (c->conn)
        evhttp_connection_free(c->conn);
    if (c->base)
        event_base_free(c->base);
    SSL_CTX_free(c->ssl_ctx);
    free(c->host);
    free(c->host_header);
    free(c->target);
    free(c);
}

static void on_error(enum evhttp_request_error error, void *arg)
{
    struct http_exchange *ex = arg;
    static const char *const names[] = {
        [EVREQ_HTTP_TIMEOUT] = "timed out", [EVREQ_HTTP_EOF] = "connection closed",
        [EVREQ_HTTP_INVALID_HEADER] = "invalid response header",
        [EVREQ_HTTP_BUFFER_ERROR] = "connection error", [EVREQ_HTTP_REQUEST_CANCEL] = "cancelled",
        [EVREQ_HTTP_DATA_TOO_LONG] = "response too long",
    };
    unsigned idx = (unsigned)error;
    snprintf(ex->error, sizeof ex->error, "%s",
             idx < sizeof names / sizeof names[0] && names[idx] ? names[idx] : "request failed");
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct http_exchange *ex = arg;
    ex->done = 1;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        ex->failed = 1;
    } else {
        ex->status = evhttp_request_get_response_code(req);
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        buf_reserve(ex->response, len);
        evbuffer_remove(in, ex->response->data + ex->response->len, len);
        ex->response->len += len;
        ex->response->data[ex->response->len] = '\0';
    }
    event_base_loopbreak(ex->client->base);
}

int http_post(struct http_client *c, const char *soapaction, const char *body, size_t len,
              int *status, struct buf *response, char *err, size_t errlen)
{
    struct http_exchange ex = {.client = c, .response = response};
    buf_reset(response);
    if (!c->conn && connect_client(c, err, errlen) != 0)
        return -1;
    struct evhttp_request *req = evhttp_request_new(on_response, &ex);
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct buf action = BUF_INIT;
    buf_printf(&action, "\"%s\"", soapaction);
    evhttp_add_header(headers, "Host", c->host_header);
    evhttp_add_header(headers, "Content-Type", "text/xml; charset=utf-8");
    evhttp_add_header(headers, "SOAPAction", action.data);
    evhttp_add_header(headers, "User-Agent", "somirror-task/" PACKAGE_VERSION);
    buf_free(&action);
    evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    /* On failure libevent frees the request itself. */
    if (evhttp_make_request(c->conn, req, EVHTTP_REQ_POST, c->target) != 0) {
        snprintf(err, errlen, "%s:%d: the request could not be started", c->host, c->port);
        return -1;
    }
    /* The socket exists once the request is started (connect in progress, nothing written yet).
     * Without TCP_NODELAY, Nagle holds the tail of a request larger than one segment until the
     * server's delayed ACK: about 40 ms a call. */
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->conn));
    if (fd >= 0) {
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    event_base_dispatch(c->base);
    if (!ex.done || ex.failed) {
        char why[160];
        if (c->tls_failure[0])
            snprintf(why, sizeof(why), "TLS handshake failed: %s", c->tls_failure);
        else if (!connect_problem(c, why, sizeof(why)))
            snprintf(why, sizeof(why), "%s", ex.error[0] ? ex.error : "the server closed the connection without an answer");
        snprintf(err, errlen, "%s:%d: %s", c->host, c->port, why);
        /* A fresh connection for the next attempt (an HTTPS one cannot be reused after this). */
        evhttp_connection_free(c->conn);
        c->conn = NULL;
        return -1;
    }
    *status = ex.status;
    return 0;
}
