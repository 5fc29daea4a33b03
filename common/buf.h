/* common/buf: a growable byte buffer, always NUL-terminated after len (so data can be used as
 * a C string when it holds text). Owned by whoever declared it; not shared between processes. */
#ifndef SOMIRROR_COMMON_BUF_H
#define SOMIRROR_COMMON_BUF_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s with every byte that replace[byte] names (not NULL) written as that text instead. */
void buf_put_replaced(struct buf *b, const char *s, size_t len, const char *const replace[256]);
/* Appends s with the five XML special characters escaped (for element text and attributes), and
 * a carriage return as &#13; (a parser would read it back as a newline). */
void buf_put_xml_escaped(struct buf *b, const char *s, size_t len);
/* Appends v in decimal. */
void buf_put_int(struct buf *b, int64_t v);
/* Appends len bytes as lowercase hexadecimal digits, two per byte. */
void buf_put_hex(struct buf *b, const void *bytes, size_t len);
/* Hands the data over to the caller (NUL-terminated, never NULL) and leaves b empty. */
char *buf_steal(struct buf *b);

#endif
