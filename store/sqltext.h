/* store/sqltext: SQL text pieces the store drivers share (sqlite.c, postgresql.c, mssql.c,
 * mssql_sql.c): quoted identifiers and string literals, the identifier checks made before any
 * name is pasted into SQL, the shape checks of default literals, the frame of a column's
 * DEFAULT clause, column lists, dropped columns and upsert statements. Functions that append to a
 * struct buf; no I/O but the log line of a default left out. */
#ifndef SOMIRROR_STORE_SQLTEXT_H
#define SOMIRROR_STORE_SQLTEXT_H
#include <stddef.h>

#include "common/buf.h"
#include "proto/fault.h"
#include "proto/schema.h"
#include "proto/types.h"

/* Appends one identifier as the driver spells it in SQL text. */
typedef void (*sqltext_ident_fn)(struct buf *sql, const char *name);

/* open name close, with every close character inside doubled: "a""b" or [a]]b]. */
void sqltext_put_quoted(struct buf *sql, const char *name, char open, char close);
/* 's' with ' doubled; len bytes of s. */
void sqltext_put_string(struct buf *sql, const char *s, size_t len);

/* "<tenant>_mirroring", the name of the tenant's metadata table (malloc'd), or NULL with
 * FAULT_INTERNAL when tenant breaks the grammar of protocol section 3 (checked with the token
 * already; this is the store's own guard). A tenant may start with a digit, so the name is not
 * an identifier of section 4.2's grammar: drivers always quote it. */
char *sqltext_meta_table(const char *driver, const char *tenant, struct fault *f);

/* 0 when name is a valid identifier (ident_valid), else -1 with FAULT_INTERNAL
 * "<driver>: refusing an invalid identifier". */
int sqltext_name_check(const char *driver, const char *name, struct fault *f);
/* sqltext_name_check of the table name and of every column name. */
int sqltext_schema_names_check(const char *driver, const struct table_schema *s,
                               struct fault *f);

/* Whether a default number's text has only digits, '.', 'e', 'E', '+' and '-' (not empty). */
int sqltext_number_valid(const char *text);
/* Whether the len bytes of text are all hex digits. */
int sqltext_hex_valid(const char *text, size_t len);

/* The date/time text form SQLite and PostgreSQL's text columns store: the 'T' between a date
 * and a time (text[10], when len > 10) becomes a space, in place; every digit is kept. */
void sqltext_datetime_space(char *text, size_t len);

/* Appends " DEFAULT <value>" for col's default as the driver spells it: 0; or -1, having
 * appended nothing, when the driver cannot render it safely. Called for DEF_NUMBER (that passed
 * sqltext_number_valid), DEF_STRING, DEF_BINARY (that passed sqltext_hex_valid) and
 * DEF_FUNCTION. */
typedef int (*sqltext_default_fn)(struct buf *sql, const struct column *col);
/* " DEFAULT ..." for col's parsed default: nothing when it has none, " DEFAULT NULL", or what
 * put_value appends; a default that fails its check or that put_value refuses is left out
 * (nothing appended) with a log warning. */
void sqltext_put_default(struct buf *sql, const struct column *col, sqltext_default_fn put_value);

/* "c1, c2, ..." for every column of s, each written by put_ident. */
void sqltext_put_columns(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident);
/* "k1, k2, ..." for the key columns of s in key order. */
void sqltext_put_keys(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident);
/* "ALTER TABLE t DROP COLUMN c;\n" for every column of old_schema (table t) that diff drops. */
void sqltext_put_drop_columns(struct buf *sql, const struct table_schema *old_schema,
                              const struct schema_diff *diff, sqltext_ident_fn put_ident);
/* "INSERT INTO t AS target (c1, c2, ...)" for table s and all its columns. The alias hides
 * the table's name, so that in a following sqltext_put_on_conflict "excluded" is always the row
 * proposed for insertion, even for a table named excluded (SQLite would otherwise read it as
 * the table itself and update nothing; PostgreSQL would call it ambiguous). */
void sqltext_put_insert(struct buf *sql, const struct table_schema *s, sqltext_ident_fn put_ident);
/* The end of an upsert into s: " ON CONFLICT (k1, ...) DO UPDATE SET c = excluded.c, ..." for
 * every column outside the key, or " ON CONFLICT (k1, ...) DO NOTHING" when every column is in
 * the key. */
void sqltext_put_on_conflict(struct buf *sql, const struct table_schema *s,
                             sqltext_ident_fn put_ident);

#endif
