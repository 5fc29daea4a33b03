/* proto/types: the data model shared by the protocol, the stores and somirror-task: SQL Server
 * types, parsed defaults, columns and tables as a sender describes them, values as they arrive,
 * rows and batches. Plain structs; every string is NUL-terminated UTF-8 unless a length is
 * given. Strings of a parsed request live in the request's arena (common/arena.h). */
#ifndef SOMIRROR_PROTO_TYPES_H
#define SOMIRROR_PROTO_TYPES_H
#include <stddef.h>
#include <stdint.h>

#define SM_TENANT_MAX 52          /* ^[A-Za-z0-9][A-Za-z0-9_]{0,51}$ */
#define SM_IDENT_MAX 128          /* ^[A-Za-z_][A-Za-z0-9_]{0,127}$ */
#define SM_HASH_HEX 64            /* SHA-256 in lowercase hex */

/* ---- SQL Server types (protocol 4.2, 5) ---- */
enum sql_kind {
    SQL_BIGINT, SQL_INT, SQL_SMALLINT, SQL_TINYINT, SQL_BIT,
    SQL_DECIMAL, SQL_NUMERIC, SQL_MONEY, SQL_SMALLMONEY, SQL_FLOAT, SQL_REAL,
    SQL_DATE, SQL_TIME, SQL_DATETIME, SQL_DATETIME2, SQL_SMALLDATETIME, SQL_DATETIMEOFFSET,
    SQL_CHAR, SQL_VARCHAR, SQL_NCHAR, SQL_NVARCHAR, SQL_TEXT, SQL_NTEXT,
    SQL_BINARY, SQL_VARBINARY, SQL_IMAGE,
    SQL_UNIQUEIDENTIFIER, SQL_XML, SQL_TIMESTAMP     /* rowversion is parsed as SQL_TIMESTAMP */
};

#define SQL_LEN_MAX (-1)

struct sql_type {
    enum sql_kind kind;
    int precision;   /* decimal/numeric: p (1-38); money 19, smallmoney 10 */
    int scale;       /* decimal/numeric: s; money/smallmoney 4; time types: fraction digits n (0-7) */
    int length;      /* char/varchar/nchar/nvarchar/binary/varbinary: n, or SQL_LEN_MAX; 0 otherwise */
};

/* ---- Default constraints (protocol 4.2 grammar) ---- */
enum default_kind { DEF_NULL, DEF_NUMBER, DEF_STRING, DEF_BINARY, DEF_FUNCTION };
enum default_function {
    FN_GETDATE, FN_GETUTCDATE, FN_SYSDATETIME, FN_SYSUTCDATETIME, FN_SYSDATETIMEOFFSET,
    FN_NEWID, FN_NEWSEQUENTIALID
};
struct default_expr {
    enum default_kind kind;
    enum default_function function;   /* DEF_FUNCTION */
    char *text;     /* DEF_NUMBER: the number as written, sign included, no spaces ("-1.5e3");
                       DEF_STRING: the string's value, quotes removed and '' undoubled;
                       DEF_BINARY: the hex digits without 0x (may be empty) */
    size_t len;     /* length of text */
    int national;   /* DEF_STRING written N'...' */
};

/* ---- Columns and tables ---- */
struct column {
    char *name;              /* as sent */
    char *type_text;         /* as sent */
    struct sql_type type;    /* parsed (valid once schema_prepare accepted the table) */
    int nullable;
    char *default_text;      /* as sent, trimmed; NULL when absent */
    struct default_expr def; /* parsed default, valid when has_default */
    int has_default;         /* a default that parsed and fits the column (else left out) */
    int pk_position;         /* 1-based position in the primary key, 0 when not a key column */
};

struct table_schema {
    char *name;              /* as sent */
    struct column *columns;
    size_t ncolumns;
    char **pk_names;         /* as sent in <PrimaryKey> */
    size_t npk;
    size_t *pk;              /* column indexes in key order (valid once prepared) */
    char *canonical;         /* canonical text of 4.2 (valid once prepared) */
    char hash[SM_HASH_HEX + 1];
    char *reject;            /* NULL, or why the table is Rejected ("column shape: ...") */
};

/* ---- Values (protocol 4.4, 5) ---- */
enum raw_kind { RAW_NULL, RAW_TEXT, RAW_BASE64 };   /* <N/>, <V>, <B> */
struct raw_value {
    enum raw_kind kind;
    int utf8_checked;        /* data is known to be valid UTF-8 (the XML parser checked it);
                                beside kind, in what would be padding: 24 bytes, not 32 */
    const char *data;        /* character data as sent (verbatim for <V>); NULL for RAW_NULL */
    size_t len;
};

/* A value checked against its column, in a storage-neutral form that every store maps to its
 * own types. */
enum value_class {
    VAL_NULL,
    VAL_INT,        /* integer types and bit (0/1): i */
    VAL_REAL,       /* float, real: d; text keeps the sent digits */
    VAL_DECIMAL,    /* decimal, numeric, money, smallmoney: text as sent (canonical digits) */
    VAL_TEXT,       /* strings, xml, uniqueidentifier: text (decoded from <B> when sent so) */
    VAL_DATETIME,   /* date, time, datetime, datetime2, smalldatetime, datetimeoffset: text
                       as sent ("2026-11-26T10:15:00.123", "10:15:00", "...+01:00") */
    VAL_BINARY      /* binary types: bytes decoded from <B> */
};
struct value {
    enum value_class cls;
    int64_t i;
    double d;
    const char *text;        /* VAL_REAL/DECIMAL/TEXT/DATETIME: characters; VAL_BINARY: bytes */
    size_t len;
};

/* ---- Rows and batches (RowData) ---- */
struct row {
    char op;                 /* 'I', 'U' or 'D' */
    int has_lsn;
    int64_t lsn;
    struct raw_value *values;  /* I/U: one per Columns entry in Columns order; D: key values in key order */
    size_t nvalues;
};

struct batch {
    char *table;
    char **columns;
    size_t ncolumns;
    struct row *rows;
    size_t nrows;
    int has_lsn;
    int64_t lsn;
};

struct table_summary {
    char *name;
    int64_t inserted, updated, deleted;
};

/* ---- TableSchema outcomes and per-table answers ---- */
enum table_change {
    CHANGE_CREATED, CHANGE_UNCHANGED, CHANGE_ALTERED, CHANGE_RECREATED, CHANGE_DROPPED,
    CHANGE_REJECTED
};
const char *table_change_name(enum table_change change);   /* "Created" ... */

struct table_state {
    const char *name;
    int64_t lsn;
    enum table_change change;   /* TableSchema answers */
    const char *error;          /* Rejected only */
    int64_t inserted, updated, deleted, skipped;   /* RowData answers */
};

#endif
