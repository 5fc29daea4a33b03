/* proto/value: the value rules of protocol section 5, one parser/checker per SQL Server type,
 * used by somirrord (every RowData value) and by somirror-task (formatting what it sends).
 * Pure functions; decoded bytes go into the caller's arena. */
#ifndef SOMIRROR_PROTO_VALUE_H
#define SOMIRROR_PROTO_VALUE_H
#include <stddef.h>

#include "common/arena.h"
#include "proto/types.h"

/* Checks raw against a column of type (nullable tells whether <N/> is allowed) and fills out.
 * Returns 0, or -1 with a message that names the value and the type, e.g.
 * "value 123456789012345678901 does not fit decimal(18,4)" (long values are shortened).
 * For a <V> value, out->text points into raw->data (not copied); bytes decoded from <B> are in
 * arena, NUL-terminated. Floats that underflow read as 0 or a subnormal (accepted). */
int value_check(const struct sql_type *type, int nullable, const struct raw_value *raw,
                struct arena *arena, struct value *out, char *err, size_t errlen);

/* A checked decimal or date/time value's text without the digits that carry nothing, which
 * section 5 allows in any number: a decimal's leading zeros, and fraction zeros past the type's
 * digits (its scale; 3 for datetime, none for smalldatetime). Into out (VALUE_COMPACT_MAX bytes,
 * NUL-terminated); returns the length. A checked value's compact text is at most 40 bytes (a
 * decimal(38,s) with its sign and point); longer, unchecked text is cut, never written past out. For stores whose columns or conversions are bounded
 * (SQL Server parses at most 7 fraction digits, and 3 for datetime). */
#define VALUE_COMPACT_MAX 48
size_t value_compact_text(const struct sql_type *type, const char *text, size_t len, char *out);

/* Whether len bytes fit a binary type (binary/varbinary(n) at most n, timestamp exactly 8). */
int value_binary_fits(const struct sql_type *type, size_t len);

/* Strict booleans, as bit values and the protocol's flags: true/false (any case) and 1/0.
 * Returns 1, 0, or -1. */
int value_parse_bool(const char *s, size_t len);

/* Standard base64 with '=' padding, strict but for XML blanks (space, tab, CR, LF) anywhere in
 * the text (decode); common/base64 on OpenSSL EVP. Decoded bytes are NUL-terminated. */
int base64_decode(const char *in, size_t len, struct arena *arena, unsigned char **out,
                  size_t *outlen);
char *base64_encode(const unsigned char *in, size_t len, struct arena *arena);

/* Counts UTF-16 code units of valid UTF-8; -1 if invalid. */
long utf8_utf16_units(const char *s, size_t len);
int utf8_valid(const char *s, size_t len);
/* Copies at most max_chars characters of s into out (always NUL-terminated, valid UTF-8),
 * adding "\u2026" when shortened; invalid bytes and control characters become '?'. For
 * quoting values in messages. */
void utf8_shorten(const char *s, size_t len, size_t max_chars, char *out, size_t outlen);
/* How many characters of a value a message quotes, and a buffer that holds them. */
#define VALUE_QUOTE_CHARS 40
#define VALUE_QUOTE_MAX (VALUE_QUOTE_CHARS * 4 + 4)

#endif
