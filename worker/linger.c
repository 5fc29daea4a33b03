/* worker/linger: lingering close, as nginx's lingering_close. When evhttp answers a request it
 * refused before reading its body (413 from Content-Length) and closes the connection, the
 * client may still be sending that body; closing a socket with unread input makes the kernel
 * reset the connection, and a reset can reach the client before it has read the answer (or
 * fail its sending before it reads at all). So such a socket (a duplicate of evhttp's, which
 * closes its own) is kept here: its end is sent, what arrives is read and dropped, and it is
 * closed once the client closes, pauses LINGER_IDLE_MS or LINGER_TOTAL_MS have passed. Owns,
 * per worker process, those sockets and their events; bounded to LINGER_MAX at once. */
#include "worker/linger.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/xalloc.h"

enum {
    LINGER_IDLE_MS = 5000,    /* nginx's lingering_timeout */
    LINGER_TOTAL_MS = 30000,  /* nginx's lingering_time */
    LINGER_MAX = 256,
    READS_PER_TURN = 16       /* one client's bytes do not hold the event loop */
};

struct lingering {
    struct lingerer *owner;
    int fd;
    struct event *ev;
    int64_t until_ms;
    LIST_ENTRY(lingering) link;
};

struct lingerer {
    struct event_base *base;
    LIST_HEAD(lingerings, lingering) sockets;
    size_t count;
};

struct lingerer *lingerer_new(struct event_base *base)
{
    struct lingerer *l = xcalloc(1, sizeof(*l));
    l->base = base;
    LIST_INIT(&l->sockets);
    return l;
}

static void lingering_end(struct lingering *g)
{
    struct lingerer *l = g->owner;
    LIST_REMOVE(g, link);
    l->count--;
    event_free(g->ev);
    close(g->fd);
    free(g);
}

/* Readable: drops what came, ends at the client's end of stream, an error or the total time.
 * Idle for LINGER_IDLE_MS (the event's timeout): ends. */
static void lingering_ready(evutil_socket_t fd, short what, void *arg)
{
    struct lingering *g = arg;
    if (what & EV_READ) {
        char dropped[16384];
        for (int i = 0; i < READS_PER_TURN; i++) {
            ssize_t n = recv(fd, dropped, sizeof(dropped), MSG_DONTWAIT);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            lingering_end(g);   /* the client's end, or the connection failed */
            return;
        }
        if (monotonic_ms() < g->until_ms)
            return;
    }
    lingering_end(g);
}

void lingerer_add(struct lingerer *l, int fd)
{
    shutdown(fd, SHUT_WR);
    if (l->count >= LINGER_MAX) {
        close(fd);
        return;
    }
    struct lingering *g = xcalloc(1, sizeof(*g));
    g->owner = l;
    g->fd = fd;
    g->until_ms = monotonic_ms() + LINGER_TOTAL_MS;
    g->ev = event_new(l->base, fd, EV_READ | EV_PERSIST, lingering_ready, g);
    struct timeval idle = {LINGER_IDLE_MS / 1000, (LINGER_IDLE_MS % 1000) * 1000};
    if (!g->ev || event_add(g->ev, &idle) != 0) {
        if (g->ev)
            event_free(g->ev);
        close(fd);
        free(g);
        return;
    }
    LIST_INSERT_HEAD(&l->sockets, g, link);
    l->count++;
}

size_t lingerer_count(const struct lingerer *l)
{
    return l->count;
}

void lingerer_free(struct lingerer *l)
{
    if (!l)
        return;
    while (!LIST_EMPTY(&l->sockets))
        lingering_end(LIST_FIRST(&l->sockets));
    free(l);
}
