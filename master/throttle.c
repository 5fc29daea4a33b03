/* master/throttle: the respawn delay (see throttle.h). */
#include "master/throttle.h"

int64_t throttle_worker_exited(struct throttle *t, int64_t lived_ms)
{
    if (lived_ms >= THROTTLE_QUICK_DEATH_MS)
        t->delay_ms = 0;
    else if (t->delay_ms == 0)
        t->delay_ms = THROTTLE_FIRST_MS;
    else if (t->delay_ms * 2 < THROTTLE_MAX_MS)
        t->delay_ms *= 2;
    else
        t->delay_ms = THROTTLE_MAX_MS;
    return t->delay_ms;
}

void throttle_reset(struct throttle *t)
{
    t->delay_ms = 0;
}
