/* proto/plan: schema_plan, the Change table of protocol 4.2: how a prepared table compares
 * with the schema the mirror stored for it (Created, Unchanged, Altered in place with the
 * differences listed, or Recreated). Columns are matched by name, case-insensitively. */
#include "proto/schema.h"

#include <string.h>
#include <sys/types.h>

/* By the canonical text, as the hash compares them: varchar(10) and varchar(010) differ. */
static int same_type(const struct column *a, const struct column *b)
{
    struct buf a_text = BUF_INIT, b_text = BUF_INIT;
    sqltype_canonical_text(a->type_text, &a->type, &a_text);
    sqltype_canonical_text(b->type_text, &b->type, &b_text);
    int same = a_text.len == b_text.len && memcmp(a_text.data, b_text.data, a_text.len) == 0;
    buf_free(&a_text);
    buf_free(&b_text);
    return same && a->nullable == b->nullable;
}

static int same_default(const struct column *a, const struct column *b)
{
    return strcmp(a->default_text ? a->default_text : "", b->default_text ? b->default_text : "") ==
           0;
}

static int same_key(const struct table_schema *a, const struct table_schema *b)
{
    if (a->npk != b->npk)
        return 0;
    for (size_t k = 0; k < a->npk; k++)
        if (!ident_equal(a->columns[a->pk[k]].name, b->columns[b->pk[k]].name))
            return 0;
    return 1;
}

/* An added column is possible in place when existing rows can get a value: NULL, or a literal
 * default that fits (a function default would give old rows the time of the change). */
static int addable_in_place(const struct column *c)
{
    return c->nullable ||
           (c->has_default && c->def.kind != DEF_NULL && c->def.kind != DEF_FUNCTION);
}

enum table_change schema_plan(const struct table_schema *new_schema,
                              const struct table_schema *old_schema, struct arena *arena,
                              struct schema_diff *diff)
{
    if (diff)
        memset(diff, 0, sizeof(*diff));
    if (!old_schema)
        return CHANGE_CREATED;
    if (strcmp(new_schema->canonical, old_schema->canonical) == 0)
        return CHANGE_UNCHANGED;
    if (!same_key(new_schema, old_schema))
        return CHANGE_RECREATED;

    size_t nnew = new_schema->ncolumns, nold = old_schema->ncolumns;
    size_t *added = arena_calloc(arena, nnew ? nnew : 1, sizeof(*added));
    size_t *changed = arena_calloc(arena, nnew ? nnew : 1, sizeof(*changed));
    size_t *dropped = arena_calloc(arena, nold ? nold : 1, sizeof(*dropped));
    unsigned char *kept = arena_calloc(arena, nold ? nold : 1, 1);
    size_t nadded = 0, nchanged = 0, ndropped = 0;
    ssize_t previous_old = -1;
    for (size_t k = 0; k < nnew; k++) {
        const struct column *c = &new_schema->columns[k];
        ssize_t old_index = -1;
        for (size_t j = 0; j < nold && old_index < 0; j++)
            if (ident_equal(c->name, old_schema->columns[j].name))
                old_index = (ssize_t)j;
        if (old_index < 0) {
            if (!addable_in_place(c))
                return CHANGE_RECREATED;
            added[nadded++] = k;
            continue;
        }
        const struct column *old = &old_schema->columns[old_index];
        /* Kept columns keep their relative order, type and nullability. */
        if (old_index < previous_old || !same_type(c, old))
            return CHANGE_RECREATED;
        previous_old = old_index;
        kept[old_index] = 1;
        if (!same_default(c, old))
            changed[nchanged++] = k;
    }
    for (size_t j = 0; j < nold; j++)
        if (!kept[j]) {
            if (old_schema->columns[j].pk_position)
                return CHANGE_RECREATED;
            dropped[ndropped++] = j;
        }
    if (nadded > 0 && ndropped > 0)
        return CHANGE_RECREATED;   /* may be a rename */
    if (diff) {
        diff->added = added;
        diff->nadded = nadded;
        diff->dropped = dropped;
        diff->ndropped = ndropped;
        diff->default_changed = changed;
        diff->ndefault_changed = nchanged;
    }
    return CHANGE_ALTERED;
}
