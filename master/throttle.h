/* master/throttle: the respawn throttle (after Postfix master_spawn.c). A worker that dies
 * within a second of starting doubles the delay before the next spawn, from 100 ms up to 30 s,
 * so that a worker crashing at once on every start cannot fork-storm; a worker that lived
 * longer resets it. Pure arithmetic, owned by the master. */
#ifndef SOMIRROR_MASTER_THROTTLE_H
#define SOMIRROR_MASTER_THROTTLE_H
#include <stdint.h>

#define THROTTLE_QUICK_DEATH_MS 1000
#define THROTTLE_FIRST_MS 100
#define THROTTLE_MAX_MS 30000

struct throttle {
    int64_t delay_ms;       /* current delay before a respawn, 0 = none */
};

/* A worker exited after lived_ms: returns the delay before its replacement is forked. */
int64_t throttle_worker_exited(struct throttle *t, int64_t lived_ms);
void throttle_reset(struct throttle *t);

#endif
