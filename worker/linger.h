/* worker/linger: lingering close of the connections evhttp gives up on while their client may
 * still be sending (see linger.c). */
#ifndef SOMIRROR_WORKER_LINGER_H
#define SOMIRROR_WORKER_LINGER_H

#include <stddef.h>
#include <event2/event.h>

struct lingerer;

struct lingerer *lingerer_new(struct event_base *base);
/* Takes fd (a socket whose answer is written): sends its end (FIN) and reads and drops what
 * the client still sends until it closes, pauses LINGER_IDLE_MS, or LINGER_TOTAL_MS pass, then
 * closes it. Past LINGER_MAX sockets at once, fd is closed at once. */
void lingerer_add(struct lingerer *l, int fd);
/* How many sockets are lingering (a draining worker waits for them: each ends within
 * LINGER_TOTAL_MS). */
size_t lingerer_count(const struct lingerer *l);
/* Closes every socket still lingering. */
void lingerer_free(struct lingerer *l);

#endif
