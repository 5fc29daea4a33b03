/* task/verify: `somirror-task verify`, compares a SQLite mirror with its source, table by
 * table: row count, then an ordered SHA-256 digest of the rows in a normalised form, then the
 * first row that differs. The normalisation tolerates exactly the storage differences of the
 * SQLite mirror and nothing else: datetime text with ' ' where the source has 'T', decimals
 * with trailing fraction zeros dropped (or stored as INTEGER), uniqueidentifier case. Every
 * other value must have the same storage class and the same bytes. Also reports blocked and
 * unexpected tables found in the mirror, and tables whose schema the mirror's metadata records
 * otherwise than the source has it. */
#include "task/task.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

#include "proto/schema.h"
#include "proto/value.h"

#define SHOWN_VALUE_MAX 60

/* Canonical decimal text: no leading zeros, no trailing fraction zeros, no "-0". */
static void put_decimal(struct buf *out, const char *text, size_t len)
{
    size_t i = 0;
    int negative = 0;
    if (i < len && (text[i] == '-' || text[i] == '+'))
        negative = text[i++] == '-';
    while (i + 1 < len && text[i] == '0' && text[i + 1] != '.')
        i++;
    const char *dot = memchr(text + i, '.', len - i);
    size_t end = len;
    if (dot) {
        while (end > (size_t)(dot - text) + 1 && text[end - 1] == '0')
            end--;
        if (end == (size_t)(dot - text) + 1)
            end--;
    }
    int zero = end - i == 1 && text[i] == '0';
    if (negative && !zero)
        buf_putc(out, '-');
    buf_append(out, text + i, end - i);
}

/* Appends the normalised form of one value: a tag, the length, ':' and the bytes. A value whose
 * storage class is not the one the type is kept in gets a tag with '?', so it never compares
 * equal to a properly stored one; but on the source (from_source) the forms the sender reads
 * and sends as they are kept too (rowdata.c): a decimal SQLite rounded to REAL (NUMERIC
 * affinity, in a table described by its declared types) as its scale's digits, a string
 * column's number or blob as its text, a bit column's number or true/false as 1 or 0, and a
 * binary column's text or number as its bytes. */
static void put_normalised(struct buf *out, const struct column *col, sqlite3_stmt *stmt, int idx,
                           int from_source)
{
    int storage = sqlite3_column_type(stmt, idx);
    struct buf value = BUF_INIT;
    const char *tag;
    if (storage == SQLITE_NULL) {
        buf_puts(out, "N;");
        return;
    }
    const char *text = (const char *)sqlite3_column_text(stmt, idx);
    size_t len = (size_t)sqlite3_column_bytes(stmt, idx);
    switch (col->type.kind) {
    case SQL_BIGINT: case SQL_INT: case SQL_SMALLINT: case SQL_TINYINT:
        tag = storage == SQLITE_INTEGER ? "I" : "I?";
        buf_append(&value, text, len);
        break;
    case SQL_BIT: {
        /* On the source, what the sender sends (rowdata.c) and the receiver keeps as 0 or 1: a
         * number as 1 when it is not zero, the text true or false in any case. */
        int bit = -1;
        if (from_source && (storage == SQLITE_INTEGER || storage == SQLITE_FLOAT))
            bit = sqlite3_column_double(stmt, idx) != 0.0;
        else if (from_source && storage == SQLITE_TEXT)
            bit = value_parse_bool(text, len);
        if (bit >= 0) {
            tag = "I";
            buf_putc(&value, bit ? '1' : '0');
        } else {
            tag = storage == SQLITE_INTEGER ? "I" : "I?";
            buf_append(&value, text, len);
        }
        break;
    }
    case SQL_FLOAT: case SQL_REAL:
        if (storage == SQLITE_INTEGER || storage == SQLITE_FLOAT) {
            tag = "R";
            buf_printf(&value, "%.17g", sqlite3_column_double(stmt, idx));
        } else {
            tag = "R?";
            buf_append(&value, text, len);
        }
        break;
    case SQL_DECIMAL: case SQL_NUMERIC: case SQL_MONEY: case SQL_SMALLMONEY:
        if (from_source && storage == SQLITE_FLOAT) {
            struct buf digits = BUF_INIT;
            buf_printf(&digits, "%.*f", col->type.scale, sqlite3_column_double(stmt, idx));
            tag = "D";
            put_decimal(&value, digits.data, digits.len);
            buf_free(&digits);
            break;
        }
        tag = storage == SQLITE_TEXT || storage == SQLITE_INTEGER ? "D" : "D?";
        put_decimal(&value, text, len);
        break;
    case SQL_DATE: case SQL_TIME: case SQL_DATETIME: case SQL_DATETIME2:
    case SQL_SMALLDATETIME: case SQL_DATETIMEOFFSET:
        tag = storage == SQLITE_TEXT ? "T" : "T?";
        buf_append(&value, text, len);
        if (value.len > 10 && value.data[10] == 'T')
            value.data[10] = ' ';
        break;
    case SQL_UNIQUEIDENTIFIER:
        tag = storage == SQLITE_TEXT ? "G" : "G?";
        for (size_t i = 0; i < len; i++)
            buf_putc(&value, (char)tolower((unsigned char)text[i]));
        break;
    case SQL_BINARY: case SQL_VARBINARY: case SQL_IMAGE: case SQL_TIMESTAMP:
        /* the sender sends the bytes of any source value (rowdata.c) */
        tag = storage == SQLITE_BLOB || from_source ? "B" : "B?";
        buf_append(&value, sqlite3_column_blob(stmt, idx), (size_t)sqlite3_column_bytes(stmt, idx));
        break;
    default:
        tag = storage == SQLITE_TEXT || from_source ? "S" : "S?";
        buf_append(&value, text, len);
        break;
    }
    buf_printf(out, "%s%zu:", tag, value.len);
    buf_append(out, value.data ? value.data : "", value.len);
    buf_putc(out, ';');
    buf_free(&value);
}

/* A readable, shortened form of a normalised value for messages: whole UTF-8 characters only,
 * control characters and invalid bytes shown as '?'. */
static void put_shown(struct buf *out, const char *form, size_t len)
{
    char shown[SHOWN_VALUE_MAX * 4 + 4];
    utf8_shorten(form, len, SHOWN_VALUE_MAX, shown, sizeof(shown));
    buf_puts(out, shown);
}

/* Rows of one table in key order, every column of the source's schema by name. */
struct table_reader {
    sqlite3_stmt *stmt;
    int state;                /* SQLITE_ROW, SQLITE_DONE, or an error */
    EVP_MD_CTX *sha;
    struct buf row;           /* normalised current row */
    struct buf key;           /* normalised key of the current row */
    int from_source;          /* reads the source (see put_normalised) */
};

static int reader_open(struct table_reader *r, sqlite3 *db, int from_source,
                       const struct table_schema *t, EVP_MD_CTX *shared_sha, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->from_source = from_source;
    struct buf sql = BUF_INIT;
    sql_put_select_in_key_order(&sql, t);
    r->stmt = sql_prepare(db, sql.data, err, errlen);
    buf_free(&sql);
    if (!r->stmt)
        return -1;
    r->sha = shared_sha ? shared_sha : EVP_MD_CTX_new();
    if (!shared_sha)
        EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL);
    return 0;
}

static void reader_step(struct table_reader *r, const struct table_schema *t)
{
    r->state = sqlite3_step(r->stmt);
    buf_reset(&r->row);
    buf_reset(&r->key);
    if (r->state != SQLITE_ROW)
        return;
    for (size_t c = 0; c < t->ncolumns; c++) {
        size_t start = r->row.len;
        put_normalised(&r->row, &t->columns[c], r->stmt, (int)c, r->from_source);
        if (t->columns[c].pk_position) {
            buf_printf(&r->key, "%s%s=", r->key.len ? ", " : "", t->columns[c].name);
            put_shown(&r->key, r->row.data + start, r->row.len - start);
        }
    }
    EVP_DigestUpdate(r->sha, r->row.data, r->row.len);
}

static void reader_close(struct table_reader *r, int owns_sha)
{
    sqlite3_finalize(r->stmt);
    if (owns_sha)
        EVP_MD_CTX_free(r->sha);
    buf_free(&r->row);
    buf_free(&r->key);
}

static void digest_hex(EVP_MD_CTX *sha, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Names the first column where two normalised rows differ. */
static void describe_difference(const struct table_schema *t, sqlite3_stmt *source_stmt,
                                sqlite3_stmt *mirror_stmt, struct buf *out)
{
    for (size_t c = 0; c < t->ncolumns; c++) {
        struct buf a = BUF_INIT, b = BUF_INIT;
        put_normalised(&a, &t->columns[c], source_stmt, (int)c, 1);
        put_normalised(&b, &t->columns[c], mirror_stmt, (int)c, 0);
        int differs = a.len != b.len || memcmp(a.data, b.data, a.len) != 0;
        if (differs) {
            buf_printf(out, "column %s: source ", t->columns[c].name);
            put_shown(out, a.data, a.len);
            buf_puts(out, ", mirror ");
            put_shown(out, b.data, b.len);
        }
        buf_free(&a);
        buf_free(&b);
        if (differs)
            return;
    }
}

static long count_rows(sqlite3 *db, const char *table)
{
    struct buf sql = BUF_INIT;
    buf_puts(&sql, "SELECT count(*) FROM ");
    sql_put_ident(&sql, table);
    sqlite3_stmt *stmt = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(db, sql.data, -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    buf_free(&sql);
    return n;
}

/* Reports the columns of the mirror's table that the source's lacks (a column dropped at the
 * source and not in the mirror, say): the values compared would not show them. Returns how
 * many. */
static int extra_mirror_columns(sqlite3 *mirror_db, const struct table_schema *t, FILE *report)
{
    sqlite3_stmt *stmt = NULL;
    int extra = 0;
    if (sqlite3_prepare_v2(mirror_db, "SELECT name FROM pragma_table_info(?1)", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC) == SQLITE_OK) {
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(stmt, 0);
            size_t c = 0;
            while (name && c < t->ncolumns && !ident_equal(t->columns[c].name, name))
                c++;
            if (name && c == t->ncolumns) {
                fprintf(report, "%s: DIFFERS: column %s is in the mirror, not in the source\n", t->name, name);
                extra++;
            }
        }
    }
    sqlite3_finalize(stmt);
    return extra;
}

/* Prints the first line where two canonical texts differ. */
static void put_first_line_difference(FILE *report, const char *source, const char *mirror)
{
    for (;;) {
        size_t a = strcspn(source, "\n"), b = strcspn(mirror, "\n");
        if (a != b || memcmp(source, mirror, a) != 0 || !source[a] || !mirror[b]) {
            fprintf(report, "source \"%.*s\", mirror \"%.*s\"", (int)a, source, (int)b, mirror);
            return;
        }
        source += a + 1;
        mirror += b + 1;
    }
}

/* Reports a table whose schema as the mirror recorded it (the canonical text of protocol 4.2,
 * in the metadata table) is not the one the source's table is sent with: a type, nullability,
 * default or key that the values compared would not show. 1 when reported. */
static int schema_differs(sqlite3 *mirror_db, const char *tenant, const struct table_schema *t,
                          FILE *report)
{
    struct arena arena;
    arena_init(&arena);
    /* Prepared as the receiver prepares what it is sent (defaults trimmed, say), on a copy. */
    struct table_schema sent = *t;
    sent.columns = arena_calloc(&arena, t->ncolumns, sizeof *sent.columns);
    memcpy(sent.columns, t->columns, t->ncolumns * sizeof *sent.columns);
    schema_prepare(&sent, tenant, NULL, &arena);
    struct buf name = BUF_INIT, sql = BUF_INIT;
    buf_printf(&name, "%s" SCHEMA_META_SUFFIX, tenant);
    buf_puts(&sql, "SELECT schema FROM ");
    sql_put_ident(&sql, name.data);
    buf_puts(&sql, " WHERE tablename = ?1 COLLATE NOCASE");
    sqlite3_stmt *stmt = NULL;
    const char *recorded = NULL;
    if (sqlite3_prepare_v2(mirror_db, sql.data, -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            recorded = (const char *)sqlite3_column_text(stmt, 0);
    }
    int differs = 1;
    if (sent.reject) {
        fprintf(report, "%s: DIFFERS: in the mirror, where the receiver rejects its schema: %s\n",
                t->name, sent.reject);
    } else if (!recorded) {
        fprintf(report, "%s: DIFFERS: no schema recorded for it in the mirror's %s\n", t->name,
                name.data);
    } else if (strcmp(recorded, sent.canonical) != 0) {
        fprintf(report, "%s: DIFFERS: schema: ", t->name);
        put_first_line_difference(report, sent.canonical, recorded);
        fputc('\n', report);
    } else {
        differs = 0;
    }
    sqlite3_finalize(stmt);
    buf_free(&name);
    buf_free(&sql);
    arena_free(&arena);
    return differs;
}

/* 0 equal, 1 different (reported). */
static int compare_table(sqlite3 *source_db, sqlite3 *mirror_db, const char *tenant,
                         const struct table_schema *t, FILE *report)
{
    long source_rows = count_rows(source_db, t->name), mirror_rows = count_rows(mirror_db, t->name);
    if (mirror_rows < 0) {
        fprintf(report, "%s: missing in the mirror\n", t->name);
        return 1;
    }
    struct table_reader src, mir;
    char err[512];
    if (reader_open(&src, source_db, 1, t, NULL, err, sizeof err) != 0) {
        fprintf(report, "%s: cannot read the source: %s\n", t->name, err);
        return 1;
    }
    if (reader_open(&mir, mirror_db, 0, t, NULL, err, sizeof err) != 0) {
        fprintf(report, "%s: cannot read the mirror (columns differ?): %s\n", t->name, err);
        reader_close(&src, 1);
        return 1;
    }
    struct buf first = BUF_INIT;
    long position = 0;
    for (;;) {
        reader_step(&src, t);
        reader_step(&mir, t);
        if (src.state != SQLITE_ROW && mir.state != SQLITE_ROW)
            break;
        position++;
        if (first.len)
            continue;
        if (src.state != SQLITE_ROW || mir.state != SQLITE_ROW) {
            buf_printf(&first, "row %ld: only the %s has key (%s)", position,
                       src.state == SQLITE_ROW ? "source" : "mirror",
                       src.state == SQLITE_ROW ? src.key.data : mir.key.data);
        } else if (src.row.len != mir.row.len || memcmp(src.row.data, mir.row.data, src.row.len) != 0) {
            buf_printf(&first, "row %ld: source key (%s), mirror key (%s): ", position,
                       src.key.data, mir.key.data);
            if (strcmp(src.key.data, mir.key.data) == 0)
                describe_difference(t, src.stmt, mir.stmt, &first);
            else
                buf_puts(&first, "keys differ");
        }
    }
    char source_hex[65] = "", mirror_hex[65] = "";
    digest_hex(src.sha, source_hex);
    digest_hex(mir.sha, mirror_hex);
    int extra = extra_mirror_columns(mirror_db, t, report);
    int schema = schema_differs(mirror_db, tenant, t, report);
    int differs = source_rows != mirror_rows || strcmp(source_hex, mirror_hex) != 0 || first.len || extra ||
                  schema;
    if (differs)
        fprintf(report, "%s: DIFFERS: rows %ld/%ld (source/mirror), sha256 %.16s/%.16s; first difference: %s\n",
                t->name, source_rows, mirror_rows, source_hex, mirror_hex,
                first.len ? first.data : "none found");
    else
        fprintf(report, "%s: ok, %ld rows, sha256 %s\n", t->name, source_rows, source_hex);
    buf_free(&first);
    reader_close(&src, 1);
    reader_close(&mir, 1);
    return differs;
}

/* Reports the mirror's tables that should not be there (blocked, or not mirrored from this
 * source). Returns how many. */
static int check_mirror_tables(sqlite3 *mirror_db, const struct source *src,
                               const struct verify_options *opt, FILE *report)
{
    sqlite3_stmt *stmt = NULL;
    int bad = 0;
    struct buf metadata = BUF_INIT;
    buf_printf(&metadata, "%s" SCHEMA_META_SUFFIX, opt->tenant);
    if (sqlite3_prepare_v2(mirror_db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                           -1, &stmt, NULL) == SQLITE_OK) {
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(stmt, 0);
            if (!name || ident_equal(name, metadata.data) || strncmp(name, "sqlite_", 7) == 0)
                continue;
            if (table_blocked(name, NULL)) {
                fprintf(report, "%s: BLOCKED table present in the mirror\n", name);
                bad++;
            } else if (!source_find(src, name) || !task_table_mirrored(name, opt->skip)) {
                fprintf(report, "%s: in the mirror but not mirrored from the source\n", name);
                bad++;
            }
        }
    }
    sqlite3_finalize(stmt);
    buf_free(&metadata);
    return bad;
}

int verify_run(const struct verify_options *opt, FILE *report)
{
    char err[512];
    if (!tenant_valid(opt->tenant)) {
        fprintf(report, "verify: \"%s\" is not a valid context identifier\n", opt->tenant);
        return 2;
    }
    struct source src;
    if (source_open(&src, opt->source_path, 0, err, sizeof err) != 0) {
        fprintf(report, "verify: %s\n", err);
        return 2;
    }
    sqlite3 *mirror_db = NULL;
    if (task_sqlite_open(opt->mirror_path, SQLITE_OPEN_READONLY, &mirror_db, err, sizeof err) != 0) {
        fprintf(report, "verify: %s\n", err);
        source_close(&src);
        return 2;
    }
    sqlite3_busy_timeout(mirror_db, 10000);
    int differing = 0, compared = 0;
    for (size_t i = 0; i < src.ntables; i++) {
        if (!task_table_mirrored(src.tables[i].name, opt->skip))
            continue;
        compared++;
        differing += compare_table(src.db, mirror_db, opt->tenant, &src.tables[i], report);
    }
    int unexpected = check_mirror_tables(mirror_db, &src, opt, report);
    fprintf(report, "verify %s: %d tables compared, %d differ, %d unexpected in the mirror: %s\n",
            opt->tenant, compared, differing, unexpected,
            differing || unexpected ? "DIFFERENT" : "EQUAL");
    sqlite3_close(mirror_db);
    source_close(&src);
    return differing || unexpected ? 1 : 0;
}

int verify_source_digest(const char *path, char hex[65], char *err, size_t errlen)
{
    struct source src;
    if (source_open(&src, path, 0, err, errlen) != 0)
        return -1;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < src.ntables; i++) {
        const struct table_schema *t = &src.tables[i];
        struct table_reader r;
        EVP_DigestUpdate(sha, t->name, strlen(t->name) + 1);
        if (reader_open(&r, src.db, 1, t, sha, err, errlen) != 0) {
            rc = -1;
            break;
        }
        do
            reader_step(&r, t);
        while (r.state == SQLITE_ROW);
        if (r.state != SQLITE_DONE) {
            snprintf(err, errlen, "%s: %s", t->name, sqlite3_errmsg(src.db));
            rc = -1;
        }
        reader_close(&r, 0);
    }
    digest_hex(sha, hex);
    EVP_MD_CTX_free(sha);
    source_close(&src);
    return rc;
}
