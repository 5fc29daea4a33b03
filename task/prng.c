/* task/prng: splitmix64, the deterministic generator behind gen and churn (the same seed gives
 * the same database on every platform). */
#include "task/task.h"

void prng_seed(struct prng *p, uint64_t seed)
{
    p->state = seed;
}

uint64_t prng_next(struct prng *p)
{
    uint64_t z = (p->state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint64_t prng_below(struct prng *p, uint64_t n)
{
    /* Rejection keeps the distribution uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = prng_next(p);
    while (x >= limit);
    return x % n;
}

int64_t prng_range(struct prng *p, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    if (span == UINT64_MAX)
        return (int64_t)prng_next(p);
    return (int64_t)((uint64_t)lo + prng_below(p, span + 1));
}
