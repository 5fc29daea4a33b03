/* common/base64: strict base64 and base64url over OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock.
 * The shape is checked here because EVP_DecodeBlock is lenient (it reads '=' anywhere as zero
 * bits and drops some trailing characters); OpenSSL's int lengths are kept small by working in
 * chunks of whole quanta (4 characters stand for 3 bytes). */
#include "common/base64.h"

#include <string.h>

#include <openssl/evp.h>

enum { CHUNK_CHARS = 4096, CHUNK_BYTES = CHUNK_CHARS / 4 * 3 };

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static int in_url_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

size_t base64_encode_into(const unsigned char *in, size_t len, enum base64_form form,
                          char *out)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t at = 0; at < len; at += CHUNK_BYTES)
        used += (size_t)EVP_EncodeBlock((unsigned char *)out + used, in + at,
                                        (int)min_size(len - at, CHUNK_BYTES));
    if (form == BASE64_URL) {
        while (used > 0 && out[used - 1] == '=')
            used--;
        out[used] = '\0';
        for (size_t i = 0; i < used; i++)
            out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    return used;
}

/* How many '=' the text has or (base64url) leaves out, or -1 when it is not of the form. In the
 * standard form only the '=' are looked for (memchr, not a test of each character): every
 * other character outside the alphabet is one EVP_DecodeBlock refuses, or trims off an end,
 * which the count it returns shows; '=' it reads anywhere as zero bits. base64url text is
 * translated for OpenSSL, so its alphabet is checked here. */
static int padding_of(const char *in, size_t len, enum base64_form form)
{
    if (form == BASE64_URL) {
        if (len % 4 == 1)
            return -1;
        for (size_t i = 0; i < len; i++)
            if (!in_url_alphabet(in[i]))
                return -1;
        return (int)((4 - len % 4) % 4);
    }
    if (len % 4 != 0)
        return -1;
    size_t data = len;
    while (data > 0 && len - data < 2 && in[data - 1] == '=')
        data--;
    return memchr(in, '=', data) ? -1 : (int)(len - data);
}

int base64_decode_into(const char *in, size_t len, enum base64_form form, unsigned char *out,
                       size_t *outlen)
{
    int padding = padding_of(in, len, form);
    if (padding < 0)
        return -1;
    /* base64url goes to OpenSSL through a buffer, in the standard alphabet and padded. */
    size_t total = form == BASE64_URL ? len + (size_t)padding : len;
    unsigned char standard[CHUNK_CHARS];
    size_t done = 0;
    for (size_t at = 0; at < total; at += CHUNK_CHARS) {
        size_t chunk = min_size(total - at, CHUNK_CHARS);
        const unsigned char *text = (const unsigned char *)in + at;
        if (form == BASE64_URL) {
            for (size_t i = 0; i < chunk; i++) {
                char c = at + i < len ? in[at + i] : '=';
                standard[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
            }
            text = standard;
        }
        if (EVP_DecodeBlock(out + done, text, (int)chunk) != (int)(chunk / 4 * 3))
            return -1;
        done += chunk / 4 * 3;
    }
    /* EVP_DecodeBlock counts the zero bytes that stand for the padding: take them off. */
    *outlen = done - (size_t)padding;
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

size_t base64_drop_blanks(const char *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (!is_blank(in[i]))
            out[n++] = in[i];
    return n;
}
