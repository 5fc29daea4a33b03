/* proto/temporal: the date and time forms of protocol section 5 (date, time(n), datetime,
 * smalldatetime, datetime2(n), datetimeoffset(n)). Internal to libsm_values (used by value.c). */
#ifndef SOMIRROR_PROTO_TEMPORAL_H
#define SOMIRROR_PROTO_TEMPORAL_H
#include <stddef.h>

#include "proto/types.h"

/* Whether text (len bytes, not NUL-terminated) is a value of the temporal type. */
int temporal_fits(const struct sql_type *type, const char *text, size_t len);

#endif
