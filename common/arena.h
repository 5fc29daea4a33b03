/* common/arena: a bump allocator for everything that lives exactly as long as one request
 * (parsed rows, decoded values). Freed in one go; never shared between processes. */
#ifndef SOMIRROR_COMMON_ARENA_H
#define SOMIRROR_COMMON_ARENA_H
#include <stddef.h>

struct arena_block;
struct arena {
    struct arena_block *head;
    size_t total;          /* bytes handed out, for accounting */
};

void arena_init(struct arena *a);
void arena_free(struct arena *a);          /* releases every block; a is reusable afterwards */
void *arena_alloc(struct arena *a, size_t size);   /* 16-byte aligned, uninitialised */
void *arena_calloc(struct arena *a, size_t count, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);
/* Moves every block of from into a (what from handed out now lives as long as a); from is left
 * empty. */
void arena_adopt(struct arena *a, struct arena *from);

#endif
