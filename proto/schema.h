/* proto/schema: everything about a table's shape that does not depend on a database:
 * identifier and tenant grammar, SQL Server type parsing (sqltype), the default-expression
 * grammar, the blocked-table list, the rules that reject a table, the canonical text and hash of
 * protocol 4.2, and the planner that decides Created/Unchanged/Altered/Recreated. Pure
 * functions; no I/O. */
#ifndef SOMIRROR_PROTO_SCHEMA_H
#define SOMIRROR_PROTO_SCHEMA_H
#include <stddef.h>

#include "common/arena.h"
#include "common/buf.h"
#include "config/config.h"
#include "proto/types.h"

struct fault;

/* What a tenant's metadata table is named after the tenant: "<ctx>_mirroring" (protocol 8). */
#define SCHEMA_META_SUFFIX "_mirroring"

/* ^[A-Za-z_][A-Za-z0-9_]{0,127}$ */
int ident_valid(const char *name);
/* ^[A-Za-z0-9][A-Za-z0-9_]{0,51}$ */
int tenant_valid(const char *ctx);
/* ASCII case-insensitive equality of identifiers. */
int ident_equal(const char *a, const char *b);
/* Whether name starts with prefix, ASCII case-insensitively. */
int ident_has_prefix(const char *name, const char *prefix);
/* A copy of name in arena with ASCII letters lowercased. */
char *ident_lower(const char *name, struct arena *arena);

/* Parses a SQL Server type name with SQL Server's limits (4.2). 0, or -1 with err. */
int sqltype_parse(const char *text, struct sql_type *out, char *err, size_t errlen);
/* A parsed type's normal spelling, its parameters as numbers ("decimal(18,0)", "nvarchar(max)",
 * "real"), for messages and generated SQL. */
void sqltype_normal(const struct sql_type *type, char *out, size_t outlen);
/* Protocol 4.2's canonical type, appended to out: as_sent (which parsed into type) lowercased,
 * without whitespace, then normalised by the spec's rules. Digits stay as written
 * ("varchar(010)"), since no rule changes them. */
void sqltype_canonical_text(const char *as_sent, const struct sql_type *type, struct buf *out);
/* Room for any normal type spelling ("datetimeoffset(7)", "decimal(38,38)"). */
#define SQLTYPE_TEXT_MAX 32
/* The most columns a table may have (SQL Server's limit for a table that is not wide). */
#define SQL_COLUMNS_MAX 1024
/* String types (char ... ntext, xml): take <V> text and <B> UTF-8. */
int sqltype_is_string(enum sql_kind kind);
/* Binary types (binary, varbinary, image, timestamp): take <B> bytes only. */
int sqltype_is_binary(enum sql_kind kind);
/* date, time, datetime, datetime2, smalldatetime, datetimeoffset. */
int sqltype_is_temporal(enum sql_kind kind);

/* Parses a default constraint's text (4.2 grammar). 0, or -1 with err. Strings in arena. */
int default_parse(const char *text, struct arena *arena, struct default_expr *out,
                  char *err, size_t errlen);
/* Whether a parsed default can be the default of a column of type (literals checked with the
 * value rules of section 5; functions by type family). A number fits the numeric types and bit;
 * a string fits the string, date/time and uniqueidentifier types; 0x... fits the binary types;
 * getdate() and its family fit date/time and string types; newid()/newsequentialid() fit
 * uniqueidentifier and string types of 36 characters or more. NULL fits every type here:
 * schema_prepare leaves a NULL default of a NOT NULL column out. */
int default_fits(const struct default_expr *def, const struct sql_type *type);

/* Built-in blocked list plus extra, case-insensitive. */
int table_blocked(const char *name, const struct cfg_strings *extra);
/* 0 when name may be mirrored; else -1 with the BlockedTable fault naming it in f (the one
 * wording for the service's check and the store's own). */
int table_refuse_blocked(const char *name, const struct cfg_strings *extra, struct fault *f);

/* Checks a table as sent against every rule of 4.2 for tenant ctx; fills types, parsed
 * defaults (a default that does not fit is left out with a log warning), pk indexes, canonical
 * text and hash. Sets t->reject (in arena) when the table is Rejected; returns 0 either way. */
void schema_prepare(struct table_schema *t, const char *tenant, const struct cfg_strings *blocked,
                    struct arena *arena);

/* Builds the canonical text of a prepared table into t->canonical and t->hash. */
void schema_canonicalize(struct table_schema *t, struct arena *arena);
/* Rebuilds a table (columns, types, nullability, defaults, pk) from stored canonical text.
 * Names come back lowercased. 0, or -1 with err. */
int schema_from_canonical(const char *name, const char *canonical, struct arena *arena,
                          struct table_schema *out, char *err, size_t errlen);

/* How an Altered table differs from its stored form. Indexes refer to the new table's columns
 * (added, default_changed) and to the old table's columns (dropped). */
struct schema_diff {
    size_t *added;
    size_t nadded;
    size_t *dropped;
    size_t ndropped;
    size_t *default_changed;   /* columns present in both whose default changed */
    size_t ndefault_changed;
};

/* Decides the change for a prepared, accepted table against its stored schema (old NULL: the
 * mirror has no such table): CHANGE_CREATED, CHANGE_UNCHANGED, CHANGE_ALTERED (diff filled, in
 * arena) or CHANGE_RECREATED, per the Change table of 4.2. Columns match by name; the kept
 * columns must keep their relative order, type and nullability, and the key must not change.
 * Added columns may stand anywhere (the store adds them; RowData names columns). diff may be
 * NULL; it is zeroed unless the answer is CHANGE_ALTERED. */
enum table_change schema_plan(const struct table_schema *new_schema,
                              const struct table_schema *old_schema, struct arena *arena,
                              struct schema_diff *diff);

#endif
