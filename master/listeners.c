/* master/listeners: opens and holds the listening sockets (see listeners.h). */
#include "master/listeners.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "common/xalloc.h"

#define LISTEN_BACKLOG 511

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* The addresses where names (to free with evutil_freeaddrinfo), or NULL with err. */
static struct evutil_addrinfo *resolve(const struct cfg_listen *where, char *err, size_t errlen)
{
    struct evutil_addrinfo hints = {0}, *found = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    int rc = evutil_getaddrinfo(where->host, where->port, &hints, &found);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s: %s", where->address, evutil_gai_strerror(rc));
        return NULL;
    }
    return found;
}

static int open_one(const struct cfg_listen *where, char *err, size_t errlen)
{
    struct evutil_addrinfo *found = resolve(where, err, errlen);
    if (!found)
        return -1;
    int fd = -1;
    int saved = 0;
    for (struct evutil_addrinfo *ai = found; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    evutil_freeaddrinfo(found);
    if (fd < 0)
        snprintf(err, errlen, "listen %s: %s", where->address, strerror(saved ? saved : EADDRNOTAVAIL));
    return fd;
}

int lsn_open(const struct config *cfg, struct listeners *out, char *err, size_t errlen)
{
    out->items = xcalloc(cfg->nlisten, sizeof(*out->items));
    out->n = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        int fd = open_one(&cfg->listen[i], err, errlen);
        if (fd < 0) {
            lsn_close(out);
            return -1;
        }
        struct wrk_listener *wl = &out->items[out->n++];
        wl->fd = fd;
        wl->conf.address = xstrdup(cfg->listen[i].address);
        wl->conf.host = dup_or_null(cfg->listen[i].host);
        wl->conf.port = xstrdup(cfg->listen[i].port);
    }
    return 0;
}

int lsn_check(const struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct evutil_addrinfo *found = resolve(&cfg->listen[i], err, errlen);
        if (!found)
            return -1;
        evutil_freeaddrinfo(found);
    }
    return 0;
}

int lsn_same_addresses(const struct listeners *lsn, const struct config *cfg)
{
    if (lsn->n != cfg->nlisten)
        return 0;
    for (size_t i = 0; i < lsn->n; i++) {
        size_t j = 0;
        while (j < cfg->nlisten && strcmp(lsn->items[i].conf.address, cfg->listen[j].address) != 0)
            j++;
        if (j == cfg->nlisten)
            return 0;
    }
    return 1;
}

SSL_CTX **lsn_swap_tls(struct listeners *lsn, const struct config *cfg, SSL_CTX **contexts)
{
    for (size_t i = 0; i < lsn->n; i++)
        for (size_t j = 0; j < cfg->nlisten; j++)
            if (strcmp(lsn->items[i].conf.address, cfg->listen[j].address) == 0) {
                SSL_CTX *previous = lsn->items[i].tls;
                lsn->items[i].tls = contexts[j];
                contexts[j] = previous;
                break;
            }
    return contexts;
}

void lsn_close(struct listeners *lsn)
{
    for (size_t i = 0; i < lsn->n; i++) {
        struct wrk_listener *wl = &lsn->items[i];
        close(wl->fd);
        free(wl->conf.address);
        free(wl->conf.host);
        free(wl->conf.port);
        SSL_CTX_free(wl->tls);
    }
    free(lsn->items);
    lsn->items = NULL;
    lsn->n = 0;
}
