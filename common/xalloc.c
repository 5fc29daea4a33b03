/* common/xalloc: allocation wrappers that abort on exhaustion (see xalloc.h). */
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* To the log (stderr until one is opened): a daemon's stderr is /dev/null, and the operator
 * would otherwise see only a worker killed by SIGABRT. log_write allocates nothing. */
static void out_of_memory(size_t size)
{
    log_error("out of memory allocating %zu bytes: aborting", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        out_of_memory(count * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *xgrow(void *array, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return array;
    size_t next = *cap ? *cap : 8;
    while (next < need)
        next *= 2;
    if (next > ((size_t)-1) / elem_size)
        out_of_memory(next);
    *cap = next;
    return xrealloc(array, next * elem_size);
}
