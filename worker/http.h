/* worker/http: the worker's HTTP side (internal to worker/). One evhttp per listener on the
 * worker's event loop; routes requests (protocol.md section 1), drives service calls without
 * blocking (a busy tenant lock is retried on a timer), tracks every connection so that a
 * graceful stop can finish the calls in hand, close idle keep-alive connections at once and
 * close the others after their current response. */
#ifndef SOMIRROR_WORKER_HTTP_H
#define SOMIRROR_WORKER_HTTP_H
#include <stddef.h>
#include <event2/event.h>

#include "proto/service.h"
#include "worker/worker.h"

struct wrk_http;

/* on_drained is called once, after wrk_http_drain, when the last connection has gone. */
struct wrk_http *wrk_http_new(struct event_base *base, const struct wrk_params *params,
                              struct service *svc, void (*on_drained)(void *arg), void *arg,
                              char *err, size_t errlen);
/* Starts accepting: a new worker waits for its generation to be the serving one (a reload's new
 * generation accepts only once all of its workers could start). */
void wrk_http_admit(struct wrk_http *http);
/* Stops accepting, closes idle connections now and busy ones after their current response.
 * With shutting_down, health checks answer 503 from then on (a generation replaced by a
 * reload keeps answering 200: the service goes on). */
void wrk_http_drain(struct wrk_http *http, int shutting_down);
void wrk_http_free(struct wrk_http *http);

#endif
