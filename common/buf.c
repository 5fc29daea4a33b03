/* common/buf: growable byte buffer (see buf.h). */
#include "common/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_putc(struct buf *b, char c)
{
    buf_append(b, &c, 1);
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n <= 0)
        return;
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_put_replaced(struct buf *b, const char *s, size_t len, const char *const replace[256])
{
    buf_reserve(b, len);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep = replace[(unsigned char)s[i]];
        if (!rep)
            continue;
        buf_append(b, s + start, i - start);
        buf_puts(b, rep);
        start = i + 1;
    }
    buf_append(b, s + start, len - start);
}

void buf_put_xml_escaped(struct buf *b, const char *s, size_t len)
{
    static const char *const xml[256] = {
        ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&apos;",
        ['\r'] = "&#13;",
    };
    buf_put_replaced(b, s, len, xml);
}

void buf_put_int(struct buf *b, int64_t v)
{
    char text[24];
    char *end = text + sizeof(text), *p = end;
    uint64_t magnitude = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (v < 0)
        *--p = '-';
    buf_append(b, p, (size_t)(end - p));
}

void buf_put_hex(struct buf *b, const void *bytes, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *in = bytes;
    buf_reserve(b, 2 * len);
    char *out = b->data + b->len;
    for (size_t i = 0; i < len; i++) {
        *out++ = hex[in[i] >> 4];
        *out++ = hex[in[i] & 15];
    }
    b->len += 2 * len;
    b->data[b->len] = '\0';
}

char *buf_steal(struct buf *b)
{
    if (!b->data)
        return xstrdup("");
    char *d = b->data;
    buf_init(b);
    return d;
}
