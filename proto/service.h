/* proto/service: one mirroring call from request body to response body: parse, token, tenant
 * lock, operator requests, store, registry accounting. The worker's HTTP layer hands it a
 * complete body and sends back what it answers; it never blocks on a tenant lock (a busy lock
 * answers CALL_WAIT and the worker retries on a timer).
 * A struct service belongs to one worker process and one config generation. */
#ifndef SOMIRROR_PROTO_SERVICE_H
#define SOMIRROR_PROTO_SERVICE_H
#include <stddef.h>

#include "common/buf.h"
#include "config/config.h"
#include "config/keys.h"
#include "shm/registry.h"

struct service;
struct call;

struct service *service_new(const struct config *cfg, const struct keyring *keys,
                            struct registry *reg, int worker_slot, char *err, size_t errlen);
void service_free(struct service *svc);
/* Closes the store connections unused for store.idle_timeout (store_close_idle): for the
 * worker's timer, between calls. */
void service_close_idle(struct service *svc);

/* Starts a call on a complete request body (soapaction: the SOAPAction header or NULL; peer:
 * the client's address, "1.2.3.4:5678", named in the log lines of refusals and faults). */
struct call *call_start(struct service *svc, const char *body, size_t len, const char *soapaction,
                        const char *peer);
enum call_status { CALL_DONE, CALL_WAIT };
/* Carries the call on: CALL_WAIT means the tenant's lock is busy, run again a little later
 * (the call itself answers TenantBusy once tenants.lock_timeout has passed). */
enum call_status call_run(struct call *call);
int call_http_status(const struct call *call);
const struct buf *call_response(const struct call *call);
void call_free(struct call *call);

#endif
