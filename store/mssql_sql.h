/* store/mssql_sql: the T-SQL text of the SQL Server store driver (store/mssql.c), kept apart so
 * that it can be checked as golden text (tests/unit/test_mssql_sql.c). Pure functions that
 * append to a struct buf; no I/O. Every identifier is bracket-quoted with ] doubled (callers
 * validate names with ident_valid first); no value ever appears in this text: values travel as
 * RPC parameters (@t, @s, @h, @l) or through bulk copy into the staging table.
 *
 * Names: `schema` is store.mssql.schema or NULL (then names are unqualified and resolve to the
 * login's default schema). Default constraints are named DF_<table>_<column>_<hash8>, names
 * lowercased, hash8 the FNV-1a 32 of "table\ncolumn" in hex, so the name is deterministic
 * (an alter finds it again) and two pairs like (a_b, c) and (a, b_c) cannot collide; names
 * over 128 characters keep their first 50 characters of each part.
 *
 * Staging (rows_apply): #somirror_x holds one chunk: [__seq] int (order of arrival), [__op]
 * 'U' (upsert) or 'D' (delete, key values only), [__e] varchar(n) ('1' at position k when
 * column k's value is an empty string or empty bytes: db-lib bulk copy cannot send an empty
 * value, it sends NULL), then [c1]..[cN] positionally (no clash with user column names):
 *   integer types and bit -> bigint;  float, real -> float;  binary types -> varbinary(n|max);
 *   everything else -> varbinary(2n|max): the text as sent, in UTF-16LE encoded by the driver,
 *   read back with CAST(CAST(s.[ck] AS nvarchar(n|max)) AS <column type>). Text travels as
 *   bytes because FreeTDS 1.3 bulk copy does not convert client text to UCS-2 for nvarchar
 *   columns (seen with the TDS test peer), and it is converted by the server because FreeTDS'
 *   client-side conversion mangles ISO date/time text (no 'T', no offsets, year 0001 read as
 *   2001). */
#ifndef SOMIRROR_STORE_MSSQL_SQL_H
#define SOMIRROR_STORE_MSSQL_SQL_H
#include <stddef.h>

#include "common/buf.h"
#include "proto/schema.h"
#include "proto/types.h"

#define MSSQL_STAGE_TABLE "#somirror_x"
#define MSSQL_NAME_MAX 128

enum mssql_stage { MSSQL_STAGE_INT, MSSQL_STAGE_FLOAT, MSSQL_STAGE_BINARY, MSSQL_STAGE_TEXT };

/* How a column's values travel in the staging table. */
enum mssql_stage mssql_stage_of(enum sql_kind kind);
/* Whether an empty value of this kind is possible (strings and binary types). */
int mssql_kind_may_be_empty(enum sql_kind kind);

/* [name] with ] doubled. */
void mssql_put_ident(struct buf *b, const char *name);
/* [schema].[table], or [table] when schema is NULL or empty. */
void mssql_put_table(struct buf *b, const char *schema, const char *table);
/* N'text' with ' doubled. */
void mssql_put_nstring(struct buf *b, const char *s, size_t len);
/* The column type in SQL Server's canonical spelling; timestamp/rowversion -> binary(8). */
void mssql_put_type(struct buf *b, const struct sql_type *t);
/* The default constraint name of table.column (see above); out has MSSQL_NAME_MAX + 1. */
void mssql_default_name(const char *table, const char *column, char *out, size_t outlen);
/* The default expression of a column from its parsed default: "(0)", "(N'x')", "(0x0A)",
 * "(getutcdate())", "(NULL)". 0, or -1 when nothing is rendered (no default, or a literal
 * whose text does not have the grammar's shape). */
int mssql_put_default(struct buf *b, const struct column *col);
/* [c] type NULL|NOT NULL [CONSTRAINT [DF_..] DEFAULT (..)] */
void mssql_put_column(struct buf *b, const char *table, const struct column *col);

void mssql_create_table(struct buf *b, const char *schema, const struct table_schema *s);
/* Drops the table when it exists. */
void mssql_drop_table(struct buf *b, const char *schema, const char *table);
void mssql_wipe_table(struct buf *b, const char *schema, const char *table);
/* The statements of an Altered change: added columns, dropped columns (their default dropped
 * first), changed defaults (old constraint dropped, new one added). Tables are named by
 * old_schema->name. Empty when the diff is. */
void mssql_alter_table(struct buf *b, const char *schema, const struct table_schema *old_schema,
                       const struct table_schema *new_schema, const struct schema_diff *diff);

/* The metadata table <tenant>_mirroring. */
void mssql_meta_create(struct buf *b, const char *schema, const char *meta_table);
/* tablename, schema, schemahash, lsn, updated as Unix seconds (bigint). */
void mssql_meta_select(struct buf *b, const char *schema, const char *meta_table);
/* For sp_executesql with @t nvarchar(128), @s nvarchar(max), @h char(64), @l bigint. */
void mssql_meta_put_sql(struct buf *b, const char *schema, const char *meta_table);
void mssql_meta_delete_sql(struct buf *b, const char *schema, const char *meta_table);
#define MSSQL_META_PUT_PARAMS "@t nvarchar(128), @s nvarchar(max), @h char(64), @l bigint"
#define MSSQL_META_DELETE_PARAMS "@t nvarchar(128)"

/* Provisioning, for sp_executesql with @db nvarchar(128): 1 row, 1 column. */
#define MSSQL_DB_EXISTS_SQL "SELECT CASE WHEN DB_ID(@db) IS NULL THEN 0 ELSE 1 END"
#define MSSQL_DB_STATUS_SQL "SELECT CAST(DATABASEPROPERTYEX(@db, 'Status') AS nvarchar(128))"
#define MSSQL_DB_COLLATION_SQL "SELECT CAST(DATABASEPROPERTYEX(@db, 'Collation') AS nvarchar(128))"
#define MSSQL_DB_PARAMS "@db nvarchar(128)"
/* CREATE DATABASE, with the collation when not NULL (a checked name). */
void mssql_create_database(struct buf *b, const char *dbname, const char *collation);
void mssql_use_database(struct buf *b, const char *dbname);
/* Drops the database when it exists, closing other sessions first (for sp_executesql with
 * @db). */
void mssql_drop_database(struct buf *b, const char *dbname);
/* Creates the configured schema when missing (for sp_executesql with @sch nvarchar(128)). */
void mssql_create_schema(struct buf *b, const char *schema);

/* The session settings sent after every login. TEXTSIZE: SQL Server's session default (4,096
 * bytes, when freetds.conf sets no "text size") cuts every (max) value a SELECT returns, the
 * stored schemas among them, without an error. */
#define MSSQL_SESSION_SQL                                                                     \
    "SET XACT_ABORT ON; SET NOCOUNT ON; SET ANSI_NULLS ON; SET ANSI_PADDING ON; "            \
    "SET ANSI_WARNINGS ON; SET CONCAT_NULL_YIELDS_NULL ON; SET ARITHABORT ON; "              \
    "SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF; SET DATEFORMAT ymd; "             \
    "SET IMPLICIT_TRANSACTIONS OFF; SET TEXTSIZE 2147483647"
/* Around a bulk copy: its row count, which the driver checks, comes only with NOCOUNT off. */
#define MSSQL_COUNTS_ON_SQL "SET NOCOUNT OFF"
#define MSSQL_COUNTS_OFF_SQL "SET NOCOUNT ON"
#define MSSQL_BEGIN_SQL "BEGIN TRANSACTION"
#define MSSQL_COMMIT_SQL "COMMIT TRANSACTION"
/* Also NOCOUNT on again: a call that failed between MSSQL_COUNTS_ON_SQL and _OFF_SQL left it
 * off, and it belongs to the session, not the transaction. */
#define MSSQL_ROLLBACK_SQL "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION; SET NOCOUNT ON"

/* CREATE TABLE #somirror_x for a chunk of rows of table s. */
void mssql_stage_create(struct buf *b, const struct table_schema *s);
/* The set-based statements that apply the staged chunk to the table: duplicates per key
 * removed (last __seq wins), then UPDATE ... FROM join, INSERT ... WHERE NOT EXISTS (when
 * upserts), DELETE ... FROM join (when deletes), then the staging table dropped. */
void mssql_stage_apply(struct buf *b, const char *schema, const struct table_schema *s,
                       int upserts, int deletes);
#define MSSQL_STAGE_DROP_SQL \
    "IF OBJECT_ID(N'tempdb..#somirror_x', N'U') IS NOT NULL DROP TABLE #somirror_x"

#endif
