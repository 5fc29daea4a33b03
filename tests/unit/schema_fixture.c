/* tests/unit/schema_fixture: tables from compact text for the store's tests (see
 * schema_fixture.h). */
#include "tests/unit/schema_fixture.h"

#include <string.h>

char *schema_fixture_field(char **cursor)
{
    char *start = *cursor;
    if (!start)
        return NULL;
    char *bar = strchr(start, '|');
    if (bar)
        *bar = '\0';
    *cursor = bar ? bar + 1 : NULL;
    return start;
}

struct table_schema schema_fixture_table(struct arena *arena, const char *tenant,
                                         const struct cfg_strings *blocked, const char *name,
                                         const char *pk, const char *const *cols)
{
    struct table_schema t;
    memset(&t, 0, sizeof(t));
    t.name = arena_strdup(arena, name);
    while (cols[t.ncolumns])
        t.ncolumns++;
    t.columns = arena_calloc(arena, t.ncolumns, sizeof(*t.columns));
    for (size_t k = 0; k < t.ncolumns; k++) {
        char *cursor = arena_strdup(arena, cols[k]);
        struct column *c = &t.columns[k];
        c->name = schema_fixture_field(&cursor);
        c->type_text = schema_fixture_field(&cursor);
        c->nullable = strcmp(schema_fixture_field(&cursor), "null") == 0;
        char *def = schema_fixture_field(&cursor);
        c->default_text = *def ? def : NULL;
    }
    char *keys = arena_strdup(arena, pk);
    t.pk_names = arena_calloc(arena, t.ncolumns, sizeof(*t.pk_names));
    for (char *save = NULL, *key = strtok_r(keys, ",", &save); key;
         key = strtok_r(NULL, ",", &save))
        t.pk_names[t.npk++] = key;
    schema_prepare(&t, tenant, blocked, arena);
    return t;
}
