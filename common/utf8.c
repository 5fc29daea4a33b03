/* common/utf8: the one UTF-8 decoder (validation, UTF-16 measuring and conversion, XML
 * character checks are built on it). */
#include "common/utf8.h"

size_t utf8_decode(const char *s, size_t avail, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lead = u[0], min2 = 0x80, max2 = 0xBF;
    size_t need;
    uint32_t value;
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    }
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2, value = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3, value = lead & 0x0F;
        if (lead == 0xE0)
            min2 = 0xA0;        /* overlong */
        else if (lead == 0xED)
            max2 = 0x9F;        /* surrogates */
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4, value = lead & 0x07;
        if (lead == 0xF0)
            min2 = 0x90;        /* overlong */
        else if (lead == 0xF4)
            max2 = 0x8F;        /* above U+10FFFF */
    } else {
        return 0;               /* continuation byte, overlong C0/C1, or F5 and above */
    }
    if (avail < need || u[1] < min2 || u[1] > max2)
        return 0;
    for (size_t k = 1; k < need; k++) {
        if ((u[k] & 0xC0) != 0x80)
            return 0;
        value = (value << 6) | (u[k] & 0x3F);
    }
    *cp = value;
    return need;
}

size_t utf8_valid_prefix(const char *s, size_t len)
{
    size_t at = 0, n;
    uint32_t cp;
    while (at < len && (n = utf8_decode(s + at, len - at, &cp)) > 0)
        at += n;
    return at;
}
