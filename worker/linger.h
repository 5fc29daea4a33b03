/* worker/linger: lingering close of the connections evhttp gives up on while their client may
 * still be sending (see linger.c). */
#ifndef SOMIRROR_WORKER_LINGER_H
#define SOMIRROR_WORKER_LINGER_H

#include <event2/event.h>

struct lingerer;

struct lingerer *lingerer_new(struct event_base *base);
/* Takes fd (a socket whose answer is written): sends its end (FIN) and reads and drops what
 * the client still sends until it closes, pauses LINGER_IDLE_MS, or LINGER_TOTAL_MS pass, then
 * closes it. Past LINGER_MAX sockets at once, fd is closed at once. */
void lingerer_add(struct lingerer *l, int fd);
/* Closes every socket still lingering. */
void lingerer_free(struct lingerer *l);

#endif
