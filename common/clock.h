/* common/clock: the monotonic clock (CLOCK_MONOTONIC), for durations and deadlines that must
 * not jump with the wall clock. */
#ifndef SOMIRROR_COMMON_CLOCK_H
#define SOMIRROR_COMMON_CLOCK_H
#include <stdint.h>

/* Seconds since an unspecified start, with nanosecond resolution. */
double monotonic_seconds(void);
/* Whole milliseconds since the same start. */
int64_t monotonic_ms(void);

#endif
