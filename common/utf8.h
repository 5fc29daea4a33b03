/* common/utf8: decoding one UTF-8 sequence, strictly (RFC 3629). */
#ifndef SOMIRROR_COMMON_UTF8_H
#define SOMIRROR_COMMON_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s (avail >= 1 bytes there): its length (1 to 4) with the code point
 * in *cp, or 0 when it is not valid UTF-8: a stray continuation or invalid lead byte, a
 * truncated sequence, an overlong form, a surrogate, or a code point above U+10FFFF. */
size_t utf8_decode(const char *s, size_t avail, uint32_t *cp);

/* The length of the longest prefix of s (len bytes) that is valid UTF-8: text cut to fit a
 * buffer may end inside a character, which a JSON writer would refuse whole. */
size_t utf8_valid_prefix(const char *s, size_t len);

#endif
