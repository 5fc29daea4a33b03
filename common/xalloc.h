/* common/xalloc: allocation that cannot fail. Out of memory is not a condition somirror can
 * serve through (a half-built request or response would be worse), so these log and abort. */
#ifndef SOMIRROR_COMMON_XALLOC_H
#define SOMIRROR_COMMON_XALLOC_H
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);
/* Grows an array of *cap elements of elem_size so that it holds at least need elements. */
void *xgrow(void *array, size_t *cap, size_t need, size_t elem_size);

#endif
