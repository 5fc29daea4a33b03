/* fuzz/default_expr: fuzz target for the two grammars of a column in protocol 4.2
 * (proto/schema.h): default_parse (the default-constraint text) and sqltype_parse (the type
 * name), both on the whole input as a C string (it stops at a NUL byte). A parsed default goes
 * through default_fits against a type of every family; a parsed type must survive a round trip
 * through its canonical spelling (sqltype_normal, parsed again, same spelling), or the
 * target aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "proto/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fit_type_names[] = {
    "int", "tinyint", "bit", "decimal(5,2)", "money", "float", "real", "date", "time(3)",
    "datetime", "datetimeoffset", "char(3)", "varchar(max)", "nvarchar(36)", "nchar(10)",
    "binary(4)", "varbinary(max)", "uniqueidentifier", "xml", "timestamp",
};
#define NFIT (sizeof(fit_type_names) / sizeof(fit_type_names[0]))

static struct sql_type fit_types[NFIT];
static volatile size_t sink;

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    for (size_t i = 0; i < NFIT; i++) {
        char err[256];
        if (sqltype_parse(fit_type_names[i], &fit_types[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz/default_expr: type %s does not parse: %s\n", fit_type_names[i], err);
            abort();
        }
    }
}

/* The canonical spelling of a parsed type parses to the same spelling. */
static void check_round_trip(const char *input, const struct sql_type *type)
{
    char canonical[SQLTYPE_TEXT_MAX + 8], again[SQLTYPE_TEXT_MAX + 8], err[256];
    struct sql_type reparsed;
    sqltype_normal(type, canonical, sizeof(canonical));
    if (sqltype_parse(canonical, &reparsed, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz/default_expr: \"%s\" parsed, but its canonical \"%s\" does not: %s\n",
                input, canonical, err);
        abort();
    }
    sqltype_normal(&reparsed, again, sizeof(again));
    if (strcmp(canonical, again) != 0) {
        fprintf(stderr, "fuzz/default_expr: canonical \"%s\" of \"%s\" reads back as \"%s\"\n",
                canonical, input, again);
        abort();
    }
    sink += strlen(canonical) + (size_t)sqltype_is_string(type->kind) +
            (size_t)sqltype_is_binary(type->kind) + (size_t)sqltype_is_temporal(type->kind);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        setup();
        initialised = 1;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct arena arena;
    arena_init(&arena);
    struct default_expr def;
    char err[512];
    memset(&def, 0, sizeof(def));
    int def_ok = default_parse(text, &arena, &def, err, sizeof(err)) == 0;
    if (def_ok) {
        size_t sum = (size_t)def.kind + (size_t)def.national;
        if (def.kind == DEF_FUNCTION)
            sum += (size_t)def.function;
        if (def.text)
            for (size_t i = 0; i < def.len; i++)
                sum += (unsigned char)def.text[i];
        for (size_t i = 0; i < NFIT; i++)
            sum += (size_t)default_fits(&def, &fit_types[i]);
        sink += sum;
    } else {
        sink += strlen(err);
    }

    struct sql_type type;
    if (sqltype_parse(text, &type, err, sizeof(err)) == 0) {
        check_round_trip(text, &type);
        if (def_ok)
            sink += (size_t)default_fits(&def, &type);
    } else {
        sink += strlen(err);
    }
    arena_free(&arena);
    free(text);
    return 0;
}
