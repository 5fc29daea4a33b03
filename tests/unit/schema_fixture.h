/* tests/unit/schema_fixture: tables for the store's tests (test_store, test_mssql_sql), built
 * from compact text: one "name|type|null or notnull|default text" string a column. */
#ifndef SOMIRROR_TESTS_UNIT_SCHEMA_FIXTURE_H
#define SOMIRROR_TESTS_UNIT_SCHEMA_FIXTURE_H

#include "common/arena.h"
#include "config/config.h"
#include "proto/schema.h"

/* Cuts *cursor at the next '|' and returns the field before it; NULL once the text is used up. */
char *schema_fixture_field(char **cursor);

/* Table name with cols ("name|type|null or notnull|default text (empty: none)", NULL-ended) and
 * key pk ("a" or "a,b"), in arena, prepared by schema_prepare for tenant and blocked. */
struct table_schema schema_fixture_table(struct arena *arena, const char *tenant,
                                         const struct cfg_strings *blocked, const char *name,
                                         const char *pk, const char *const *cols);

#endif
