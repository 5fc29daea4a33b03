/* master/status: serves the status socket (see status.h). Owns the listening unix socket and
 * the client connections, each alive until its answer is written and what the client still
 * sends is drained (bounded), so that a client sending too much reads the answer, not a reset. */
#include "master/status.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/clock.h"
#include "common/fdio.h"
#include "common/log.h"
#include "common/xalloc.h"

#define CLIENT_TIMEOUT_SECONDS 10
/* After the answer, input is discarded until the client closes, for at most this long and this
 * much; then the connection is closed anyway (the client may see a reset). */
#define DRAIN_SECONDS 2
#define DRAIN_BYTES_MAX (1024 * 1024)

struct status_server {
    char *path;
    struct evconnlistener *listener;
    struct event *resume;              /* accepting again after a shortage */
    struct log_repeat accept_errors;
    status_handler handler;
    void *handler_arg;
};

/* A connection whose answer has gone out, its input being discarded. */
struct drain {
    size_t discarded;
    int64_t deadline_ms;   /* monotonic */
};

static void drain_end(struct bufferevent *bev, struct drain *drain)
{
    bufferevent_free(bev);
    free(drain);
}

static void drain_readable(struct bufferevent *bev, void *arg)
{
    struct drain *drain = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    drain->discarded += evbuffer_get_length(input);
    evbuffer_drain(input, evbuffer_get_length(input));
    if (drain->discarded > DRAIN_BYTES_MAX || monotonic_ms() >= drain->deadline_ms)
        drain_end(bev, drain);
}

/* End of input, an error or DRAIN_SECONDS without input. */
static void drain_event(struct bufferevent *bev, short what, void *arg)
{
    drain_end(bev, arg);
}

/* The answer has gone out: end the client's input with an end of file, then drain its input. */
static void client_flushed(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return;
    if (shutdown(bufferevent_getfd(bev), SHUT_WR) != 0) {
        bufferevent_free(bev);
        return;
    }
    struct drain *drain = xcalloc(1, sizeof(*drain));
    drain->deadline_ms = monotonic_ms() + DRAIN_SECONDS * 1000;
    struct timeval timeout = {DRAIN_SECONDS, 0};
    bufferevent_set_timeouts(bev, &timeout, NULL);
    bufferevent_setcb(bev, drain_readable, NULL, drain_event, drain);
    bufferevent_enable(bev, EV_READ);
    drain_readable(bev, drain);   /* what was read with the command; last: it may free bev */
}

static void client_event(struct bufferevent *bev, short what, void *arg);

static const char too_long[] = "error: command longer than 4096 bytes\n";

/* Writes the answer; the connection is freed once it has gone out. */
static void reply(struct status_server *server, struct bufferevent *bev, const char *text, size_t len)
{
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, client_flushed, client_event, server);
    bufferevent_write(bev, text, len);
    client_flushed(bev, server);
}

static void answer(struct status_server *server, struct bufferevent *bev, const char *line, size_t len)
{
    struct buf out = BUF_INIT;
    server->handler(server->handler_arg, line, len, &out);
    reply(server, bev, out.data ? out.data : "", out.len);
    buf_free(&out);
}

static void client_readable(struct bufferevent *bev, void *arg)
{
    struct status_server *server = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    size_t len;
    char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF);
    if (line) {
        if (len < STATUS_LINE_MAX)
            answer(server, bev, line, len);
        else
            reply(server, bev, too_long, sizeof(too_long) - 1);
        free(line);
    } else if (evbuffer_get_length(input) >= STATUS_LINE_MAX) {
        reply(server, bev, too_long, sizeof(too_long) - 1);
    }
}

/* Whether the client has closed its socket altogether, not only its writing side (a unix
 * socket's peer that closes leaves it hung up; one that shuts down its writing does not). */
static int client_closed(struct bufferevent *bev)
{
    struct pollfd p = {.fd = bufferevent_getfd(bev), .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLHUP);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    struct status_server *server = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    /* End of input without a newline: the bytes sent are the command, when the client ended
     * its writing side to say so. One that closed altogether reads no answer, and may have
     * died in the middle of its line: "reset Cust12" of "reset Cust123" is not run. */
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && evbuffer_get_length(input) > 0 &&
        evbuffer_get_length(input) < STATUS_LINE_MAX) {
        if (client_closed(bev)) {
            log_info("status socket: a client closed its connection before its command line "
                     "ended (no newline; it may have died in the middle of the line): the command "
                     "is not run");
            bufferevent_free(bev);
            return;
        }
        size_t len = evbuffer_get_length(input);
        char *line = xmalloc(len + 1);
        evbuffer_remove(input, line, len);
        line[len] = '\0';
        answer(server, bev, line, len);
        free(line);
        return;
    }
    bufferevent_free(bev);
}

static void client_accepted(struct evconnlistener *listener, evutil_socket_t fd,
                            struct sockaddr *addr, int addrlen, void *arg)
{
    struct status_server *server = arg;
    struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(listener), fd,
                                                     BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    struct timeval timeout = {CLIENT_TIMEOUT_SECONDS, 0};
    bufferevent_set_timeouts(bev, &timeout, &timeout);
    bufferevent_setcb(bev, client_readable, NULL, client_event, server);
    bufferevent_enable(bev, EV_READ);
}

/* Whether a server answers on path (a live somirrord): then it must not be replaced. */
static int someone_listens(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0;
    close(fd);
    return live;
}

/* Out of descriptors or memory, accepting pauses (accept_shortage), as the workers' listeners
 * do. */
static void accept_failed(struct evconnlistener *listener, void *arg)
{
    struct status_server *server = arg;
    char what[PATH_MAX + 32];
    struct timeval pause;
    snprintf(what, sizeof(what), "status socket %s", server->path);
    if (!accept_shortage(EVUTIL_SOCKET_ERROR(), &server->accept_errors, what, &pause))
        return;   /* the connection's own error: go on */
    evconnlistener_disable(listener);
    evtimer_add(server->resume, &pause);
}

static void accept_again(evutil_socket_t fd, short what, void *arg)
{
    struct status_server *server = arg;
    evconnlistener_enable(server->listener);
}

struct status_server *status_open(struct event_base *base, const char *path, int mode,
                                  status_handler handler, void *arg, char *err, size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "status socket %s: path too long (at most %zu bytes)", path,
                 sizeof(addr.sun_path) - 1);
        return NULL;
    }
    strcpy(addr.sun_path, path);
    if (someone_listens(&addr)) {
        snprintf(err, errlen, "status socket %s: another process is serving it", path);
        return NULL;
    }
    /* A socket left by a somirrord that died is replaced; anything else at the path (a typo
     * naming a file) is never removed. */
    struct stat there;
    if (lstat(path, &there) == 0 && !S_ISSOCK(there.st_mode)) {
        snprintf(err, errlen, "status socket %s: something that is not a socket is there (not replaced)",
                 path);
        return NULL;
    }
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "status socket %s: %s", path, strerror(errno));
        return NULL;
    }
    /* Created with the configured mode and no more, by the umask: a chmod by path afterwards
     * would follow a link that the service's user (whose directory this usually is) put there
     * in the meantime. */
    mode_t old_umask = umask(~(mode_t)mode & 0777);
    int bound = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old_umask);
    if (bound < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "status socket %s: %s", path, strerror(errno));
        close(fd);
        if (bound == 0)
            unlink(path);
        return NULL;
    }
    struct status_server *server = xcalloc(1, sizeof(*server));
    server->path = xstrdup(path);
    server->resume = evtimer_new(base, accept_again, server);
    server->listener = evconnlistener_new(base, client_accepted, server, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!server->listener || !server->resume) {
        snprintf(err, errlen, "status socket %s: cannot listen", path);
        if (server->listener)
            evconnlistener_free(server->listener);
        else
            close(fd);
        if (server->resume)
            event_free(server->resume);
        unlink(path);
        free(server->path);
        free(server);
        return NULL;
    }
    evconnlistener_set_error_cb(server->listener, accept_failed);
    server->handler = handler;
    server->handler_arg = arg;
    return server;
}

int status_fd(const struct status_server *server)
{
    return evconnlistener_get_fd(server->listener);
}

void status_close(struct status_server *server)
{
    if (!server)
        return;
    evconnlistener_free(server->listener);
    event_free(server->resume);
    unlink_at_exit("status_socket", server->path);
    free(server->path);
    free(server);
}
