/* bench/crm_baseline: the speed limit for a full load of many tables into SQLite. Copies every
 * user table of SOURCE (a mirror somirrord has just loaded, so the declared types, keys and the
 * stored forms of the values are the mirror's own) into a fresh SQLite file DEST: the CREATE
 * TABLE statements are taken from SOURCE's sqlite_master, every row is read into memory first,
 * then a plain prepared-statement insert loop runs in one transaction (WAL,
 * synchronous=NORMAL), binding each value as SOURCE stored it. Tables whose name ends in
 * "_mirroring" (the metadata) are left out. Only the insert loop is timed; prints
 * "rows seconds tables cpu-seconds". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sqlite_bench.h"

const char bench_program[] = "crm_baseline";

struct table {
    char *name;
    char *create_sql;
    int ncols;
    size_t nrows, cap;
    sqlite3_value **values;   /* nrows * ncols */
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "crm_baseline: out of memory\n");
        exit(1);
    }
    return q;
}

static char *quoted(const char *name)
{
    size_t len = strlen(name);
    char *out = xrealloc(NULL, 2 * len + 3), *o = out;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void load_table(sqlite3 *src, struct table *t)
{
    char *q = quoted(t->name);
    char *sql = xrealloc(NULL, strlen(q) + 32);
    snprintf(sql, strlen(q) + 32, "SELECT * FROM %s", q);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(src, sql, -1, &stmt, NULL) != SQLITE_OK)
        bench_die(src, "select");
    t->ncols = sqlite3_column_count(stmt);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (t->nrows == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 1024;
            t->values = xrealloc(t->values, t->cap * (size_t)t->ncols * sizeof(*t->values));
        }
        for (int c = 0; c < t->ncols; c++) {
            sqlite3_value *v = sqlite3_value_dup(sqlite3_column_value(stmt, c));
            if (!v)
                bench_die(src, "value_dup");
            t->values[t->nrows * (size_t)t->ncols + (size_t)c] = v;
        }
        t->nrows++;
    }
    if (rc != SQLITE_DONE)
        bench_die(src, "step");
    sqlite3_finalize(stmt);
    free(sql);
    free(q);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: crm_baseline SOURCE.db DEST.db\n");
        return 2;
    }
    sqlite3 *src;
    if (sqlite3_open_v2(argv[1], &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_die(src, "open source");
    sqlite3_stmt *list;
    if (sqlite3_prepare_v2(src, "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND "
                           "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", -1, &list, NULL) != SQLITE_OK)
        bench_die(src, "list tables");
    struct table *tables = NULL;
    size_t ntables = 0;
    while (sqlite3_step(list) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(list, 0);
        const char *sql = (const char *)sqlite3_column_text(list, 1);
        if (!name || !sql || ends_with(name, "_mirroring"))
            continue;
        tables = xrealloc(tables, (ntables + 1) * sizeof(*tables));
        memset(&tables[ntables], 0, sizeof(*tables));
        tables[ntables].name = strdup(name);
        tables[ntables].create_sql = strdup(sql);
        ntables++;
    }
    sqlite3_finalize(list);
    for (size_t i = 0; i < ntables; i++)
        load_table(src, &tables[i]);

    sqlite3 *db = bench_open_dest(argv[2], "open dest");
    for (size_t i = 0; i < ntables; i++)
        if (sqlite3_exec(db, tables[i].create_sql, NULL, NULL, NULL) != SQLITE_OK)
            bench_die(db, "create");

    size_t rows = 0;
    struct bench_timing timing;
    bench_begin(db, &timing);
    for (size_t i = 0; i < ntables; i++) {
        struct table *t = &tables[i];
        char *q = quoted(t->name);
        size_t cap = strlen(q) + 32 + 2 * (size_t)t->ncols;
        char *sql = xrealloc(NULL, cap);
        int n = snprintf(sql, cap, "INSERT INTO %s VALUES (", q);
        for (int c = 0; c < t->ncols; c++)
            n += snprintf(sql + n, cap - (size_t)n, c ? ",?" : "?");
        snprintf(sql + n, cap - (size_t)n, ")");
        sqlite3_stmt *stmt;
        if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
            bench_die(db, "prepare");
        for (size_t r = 0; r < t->nrows; r++) {
            for (int c = 0; c < t->ncols; c++)
                sqlite3_bind_value(stmt, c + 1, t->values[r * (size_t)t->ncols + (size_t)c]);
            if (sqlite3_step(stmt) != SQLITE_DONE)
                bench_die(db, "insert");
            sqlite3_reset(stmt);
        }
        rows += t->nrows;
        sqlite3_finalize(stmt);
        free(sql);
        free(q);
    }
    double seconds, cpu;
    bench_commit(db, &timing, &seconds, &cpu);
    sqlite3_close(db);
    printf("%zu %.6f %zu %.6f\n", rows, seconds, ntables, cpu);

    for (size_t i = 0; i < ntables; i++) {
        struct table *t = &tables[i];
        for (size_t k = 0; k < t->nrows * (size_t)t->ncols; k++)
            sqlite3_value_free(t->values[k]);
        free(t->values);
        free(t->name);
        free(t->create_sql);
    }
    free(tables);
    sqlite3_close(src);
    return 0;
}
