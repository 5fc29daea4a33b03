/* proto/encoding: UTF-8 validation and measuring, shortening text for messages, and base64
 * for <B> values (blanks allowed; common/base64 decodes). Pure functions; output in the
 * caller's arena. */
#include "proto/value.h"

#include <stdint.h>
#include <string.h>

#include "common/base64.h"
#include "common/utf8.h"

long utf8_utf16_units(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long units = 0;
    size_t pos = 0;
    while (pos < len) {
        /* ASCII runs, the common case, eight bytes at a time. */
        uint64_t word;
        if (len - pos >= sizeof(word)) {
            memcpy(&word, p + pos, sizeof(word));
            if ((word & UINT64_C(0x8080808080808080)) == 0) {
                units += (long)sizeof(word);
                pos += sizeof(word);
                continue;
            }
        }
        if (p[pos] < 0x80) {
            units++;
            pos++;
            continue;
        }
        uint32_t cp;
        size_t n = utf8_decode(s + pos, len - pos, &cp);
        if (n == 0)
            return -1;
        units += cp >= 0x10000 ? 2 : 1;
        pos += n;
    }
    return units;
}

int utf8_valid(const char *s, size_t len)
{
    return utf8_utf16_units(s, len) >= 0;
}

void utf8_shorten(const char *s, size_t len, size_t max_chars, char *out, size_t outlen)
{
    static const char ellipsis[] = "\xE2\x80\xA6";   /* U+2026 */
    const unsigned char *p = (const unsigned char *)s;
    size_t pos = 0, used = 0, chars = 0;
    if (outlen == 0)
        return;
    while (pos < len && chars < max_chars) {
        uint32_t cp;
        size_t n = utf8_decode(s + pos, len - pos, &cp);
        int replace = n == 0 || p[pos] < 0x20 || p[pos] == 0x7F;   /* invalid or control */
        size_t piece_len = replace ? 1 : n;
        if (used + piece_len + sizeof(ellipsis) > outlen)
            break;
        memcpy(out + used, replace ? "?" : s + pos, piece_len);
        used += piece_len;
        pos += n ? n : 1;
        chars++;
    }
    if (pos < len) {
        memcpy(out + used, ellipsis, sizeof(ellipsis) - 1);
        used += sizeof(ellipsis) - 1;
    }
    out[used] = '\0';
}

int base64_decode(const char *in, size_t len, struct arena *arena, unsigned char **out,
                  size_t *outlen)
{
    unsigned char *bytes = arena_alloc(arena, BASE64_DECODED_MAX(len) + 1);
    /* Decoded as sent, and again without blanks only where that fails: a <B> value seldom has
     * any, and looking for them first cost a test of every character. */
    if (base64_decode_into(in, len, BASE64_PADDED, bytes, outlen) != 0) {
        char *compact = arena_alloc(arena, len);
        size_t n = base64_drop_blanks(in, len, compact);
        if (n == len || base64_decode_into(compact, n, BASE64_PADDED, bytes, outlen) != 0)
            return -1;
    }
    bytes[*outlen] = '\0';
    *out = bytes;
    return 0;
}

char *base64_encode(const unsigned char *in, size_t len, struct arena *arena)
{
    char *text = arena_alloc(arena, BASE64_ENCODED_LEN(len) + 1);
    base64_encode_into(in, len, BASE64_PADDED, text);
    return text;
}
