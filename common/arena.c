/* common/arena: bump allocator (see arena.h). Blocks grow geometrically so a large request
 * costs a handful of mallocs, and a single large object gets a block of its own. */
#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

struct arena_block {
    struct arena_block *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_MIN_BLOCK = 16 * 1024, ARENA_MAX_BLOCK = 4 * 1024 * 1024 };

void arena_init(struct arena *a)
{
    a->head = NULL;
    a->total = 0;
}

void arena_free(struct arena *a)
{
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    arena_init(a);
}

void *arena_alloc(struct arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t want = b ? b->size * 2 : ARENA_MIN_BLOCK;
        if (want > ARENA_MAX_BLOCK)
            want = ARENA_MAX_BLOCK;
        if (want < size)
            want = size;
        struct arena_block *nb = xmalloc(sizeof(*nb) + want);
        nb->size = want;
        nb->used = 0;
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->total += size;
    return p;
}

void *arena_calloc(struct arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = arena_alloc(a, count * size);
    memset(p, 0, count * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

void arena_adopt(struct arena *a, struct arena *from)
{
    struct arena_block *last = from->head;
    if (!last)
        return;
    while (last->next)
        last = last->next;
    if (a->head) {   /* behind a's current block, which goes on handing out */
        last->next = a->head->next;
        a->head->next = from->head;
    } else {
        a->head = from->head;
    }
    a->total += from->total;
    arena_init(from);
}
