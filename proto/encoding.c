/* proto/encoding: UTF-8 validation and measuring, shortening text for messages, and base64
 * (through OpenSSL's EVP codec) for <B> values. Pure functions; output in the caller's arena. */
#include "proto/value.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

/* Length of the valid UTF-8 sequence at s (at most avail bytes), 0 if invalid. Rejects
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t avail, int *utf16_units)
{
    unsigned char lead = s[0];
    size_t need;
    unsigned char min2 = 0x80, max2 = 0xBF;
    *utf16_units = 1;
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        if (lead == 0xE0)
            min2 = 0xA0;        /* overlong */
        else if (lead == 0xED)
            max2 = 0x9F;        /* surrogates */
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        *utf16_units = 2;
        if (lead == 0xF0)
            min2 = 0x90;        /* overlong */
        else if (lead == 0xF4)
            max2 = 0x8F;        /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < need || s[1] < min2 || s[1] > max2)
        return 0;
    for (size_t k = 2; k < need; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return need;
}

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
        int seq_units;
        size_t n = utf8_sequence(p + pos, len - pos, &seq_units);
        if (n == 0)
            return -1;
        units += seq_units;
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
        int units;
        size_t n = utf8_sequence(p + pos, len - pos, &units);
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

/* Chunk sizes for OpenSSL's int-sized base64 calls: whole quanta (4 characters, 3 bytes). */
enum { BASE64_CHUNK_CHARS = 4 * (1 << 20), BASE64_CHUNK_BYTES = 3 * (1 << 20) };

static int base64_alphabet(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

static int xml_whitespace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int base64_decode(const char *in, size_t len, struct arena *arena, unsigned char **out,
                  size_t *outlen)
{
    /* Whitespace out, then the strict shape (whole quanta, '=' only as the last one or two
     * characters) before OpenSSL decodes, since EVP_DecodeBlock is lenient about both. */
    unsigned char *compact = arena_alloc(arena, len + 1);
    size_t n = 0;
    for (size_t k = 0; k < len; k++)
        if (!xml_whitespace((unsigned char)in[k]))
            compact[n++] = (unsigned char)in[k];
    compact[n] = '\0';
    if (n % 4 != 0)
        return -1;
    size_t padding = 0;
    if (n > 0 && compact[n - 1] == '=')
        padding = compact[n - 2] == '=' ? 2 : 1;
    for (size_t k = 0; k < n - padding; k++)
        if (!base64_alphabet(compact[k]))
            return -1;
    /* EVP_DecodeBlock takes an int length: decode in chunks of whole quanta. */
    unsigned char *bytes = arena_alloc(arena, n / 4 * 3 + 1);
    size_t done = 0;
    for (size_t at = 0; at < n; at += BASE64_CHUNK_CHARS) {
        int chunk = (int)(n - at < BASE64_CHUNK_CHARS ? n - at : BASE64_CHUNK_CHARS);
        int decoded = EVP_DecodeBlock(bytes + done, compact + at, chunk);
        if (decoded != chunk / 4 * 3)
            return -1;
        done += (size_t)decoded;
    }
    *outlen = done - padding;
    bytes[*outlen] = '\0';
    *out = bytes;
    return 0;
}

char *base64_encode(const unsigned char *in, size_t len, struct arena *arena)
{
    char *text = arena_alloc(arena, (len + 2) / 3 * 4 + 1);
    size_t used = 0;
    text[0] = '\0';
    for (size_t at = 0; at < len; at += BASE64_CHUNK_BYTES) {
        int chunk = (int)(len - at < BASE64_CHUNK_BYTES ? len - at : BASE64_CHUNK_BYTES);
        used += (size_t)EVP_EncodeBlock((unsigned char *)text + used, in + at, chunk);
    }
    return text;
}
