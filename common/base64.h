/* common/base64: strict base64 on OpenSSL's EVP codec, into buffers the caller provides: the
 * standard alphabet with '=' padding, and unpadded base64url (RFC 4648 section 5). */
#ifndef SOMIRROR_COMMON_BASE64_H
#define SOMIRROR_COMMON_BASE64_H
#include <stddef.h>

enum base64_form {
    BASE64_PADDED,      /* A-Z a-z 0-9 + /, whole quanta, '=' only as the last one or two */
    BASE64_URL,         /* A-Z a-z 0-9 - _, no '=', length % 4 != 1 */
};

/* Characters of the padded text for len bytes (base64url text is at most as long). */
#define BASE64_ENCODED_LEN(len) (((len) + 2) / 3 * 4)
/* Most bytes that len characters of text decode to (in either form). */
#define BASE64_DECODED_MAX(len) (((len) + 3) / 4 * 3)

/* Writes the text for in[0..len) to out, which has room for BASE64_ENCODED_LEN(len) + 1 bytes
 * (either form), NUL-terminated. Returns the text's length. */
size_t base64_encode_into(const unsigned char *in, size_t len, enum base64_form form,
                          char *out);
/* Decodes in[0..len) when it is strictly of the given form (no blanks; an empty text is valid)
 * into out, which has room for BASE64_DECODED_MAX(len) bytes; 0 with *outlen set, or -1. */
int base64_decode_into(const char *in, size_t len, enum base64_form form, unsigned char *out,
                       size_t *outlen);

/* Copies in[0..len) to out (room for len bytes) without the blanks XML allows around and
 * inside base64 text (space, tab, CR, LF); returns the length copied. */
size_t base64_drop_blanks(const char *in, size_t len, char *out);

#endif
