/* fuzz/value: fuzz target for the value rules of protocol section 5 (value_check in
 * proto/value.h). Input layout:
 *   byte 0: the column type, an index (modulo its size) into the table of type names below,
 *           parsed with sqltype_parse;
 *   byte 1: flags: bit 0 the value is <B> (RAW_BASE64) rather than <V> (RAW_TEXT), bit 1 the
 *           column is nullable, bit 2 the value is <N/> (RAW_NULL; the rest is ignored);
 *   the rest: the value's character data, in a buffer of exactly its size.
 * An input shorter than two bytes is skipped. A checked value is read back whole. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "proto/schema.h"
#include "proto/value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every kind, with the limits at both ends where the type has them. */
static const char *const type_names[] = {
    "bigint", "int", "smallint", "tinyint", "bit",
    "decimal", "decimal(18,4)", "decimal(38,38)", "decimal(38,0)", "decimal(1,0)", "numeric(10,2)",
    "money", "smallmoney", "float", "float(24)", "real",
    "date", "time", "time(0)", "time(3)", "datetime", "datetime2", "datetime2(0)",
    "smalldatetime", "datetimeoffset", "datetimeoffset(2)",
    "char", "char(10)", "varchar(1)", "varchar(8000)", "varchar(max)",
    "nchar(5)", "nvarchar(1)", "nvarchar(4000)", "nvarchar(max)", "text", "ntext",
    "binary(1)", "binary(16)", "varbinary(8000)", "varbinary(max)", "image",
    "uniqueidentifier", "xml", "timestamp", "rowversion",
};
#define NTYPES (sizeof(type_names) / sizeof(type_names[0]))

static struct sql_type types[NTYPES];
static volatile size_t sink;

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    for (size_t i = 0; i < NTYPES; i++) {
        char err[256];
        if (sqltype_parse(type_names[i], &types[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz/value: type %s does not parse: %s\n", type_names[i], err);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        setup();
        initialised = 1;
    }
    if (size < 2)
        return 0;
    const struct sql_type *type = &types[data[0] % NTYPES];
    unsigned flags = data[1];
    size_t len = size - 2;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 2, len);

    struct raw_value raw = {.kind = RAW_NULL};   /* utf8_checked 0: value_check checks it */
    if (!(flags & 4u)) {
        raw.kind = (flags & 1u) ? RAW_BASE64 : RAW_TEXT;
        raw.data = copy;
        raw.len = len;
    }
    struct arena arena;
    arena_init(&arena);
    struct value out;
    memset(&out, 0, sizeof(out));
    char err[512];
    err[0] = '\0';
    if (value_check(type, (flags & 2u) != 0, &raw, &arena, &out, err, sizeof(err)) == 0) {
        size_t sum = (size_t)out.cls + (size_t)out.i;
        if (out.cls != VAL_NULL && out.cls != VAL_INT && out.text) {
            for (size_t i = 0; i < out.len; i++)
                sum += (unsigned char)out.text[i];
        }
        if (out.cls == VAL_BINARY)
            sum += (size_t)value_binary_fits(type, out.len);
        sink += sum;
    } else {
        sink += strlen(err);
    }
    arena_free(&arena);
    free(copy);
    return 0;
}
