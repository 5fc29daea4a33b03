/* proto/ident: the grammar of table/column identifiers and tenant context identifiers
 * (protocol 4.2, 3), and ASCII case-insensitive comparison of names. */
#include "proto/schema.h"

static int ascii_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int ascii_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* first char accepted by first_ok, then [A-Za-z0-9_], total 1..max_len. */
static int word_valid(const char *s, int (*first_ok)(unsigned char), size_t max_len)
{
    if (!s || !first_ok((unsigned char)s[0]))
        return 0;
    size_t len = 1;
    for (; s[len]; len++) {
        unsigned char c = (unsigned char)s[len];
        if (!ascii_alpha(c) && !ascii_digit(c) && c != '_')
            return 0;
    }
    return len <= max_len;
}

static int ident_first(unsigned char c)
{
    return ascii_alpha(c) || c == '_';
}

static int tenant_first(unsigned char c)
{
    return ascii_alpha(c) || ascii_digit(c);
}

int ident_valid(const char *name)
{
    return word_valid(name, ident_first, SM_IDENT_MAX);
}

int tenant_valid(const char *ctx)
{
    return word_valid(ctx, tenant_first, SM_TENANT_MAX);
}

int ident_equal(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    for (; *a && *b; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b))
            return 0;
    return *a == *b;
}

int ident_has_prefix(const char *name, const char *prefix)
{
    for (; *prefix; name++, prefix++)
        if (ascii_lower((unsigned char)*name) != ascii_lower((unsigned char)*prefix))
            return 0;
    return 1;
}

char *ident_lower(const char *name, struct arena *arena)
{
    char *lower = arena_strdup(arena, name);
    for (char *p = lower; *p; p++)
        *p = (char)ascii_lower((unsigned char)*p);
    return lower;
}
