/* bench/sqlite_baseline: the speed limit somirrord's initial load is measured against. Reads
 * rows from a tab-separated file (one row a line, \N for NULL; produced by the benchmark
 * script from the same rows it sends to somirrord), then inserts them into a fresh SQLite file
 * with a plain prepared-statement loop in one transaction (WAL, synchronous=NORMAL), binding
 * every value as text, and prints "rows seconds cpu-seconds". Only the insert loop is timed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sqlite_bench.h"

const char bench_program[] = "sqlite_baseline";

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: sqlite_baseline DBFILE TSVFILE 'CREATE TABLE ...' 'INSERT ...'\n");
        return 2;
    }
    FILE *in = fopen(argv[2], "r");
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    /* Load every line first so that only the database work is timed. */
    size_t nlines = 0, cap = 1024;
    char **lines = malloc(cap * sizeof(*lines));
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    while ((len = getline(&line, &linecap, in)) > 0) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        if (nlines == cap)
            lines = realloc(lines, (cap *= 2) * sizeof(*lines));
        lines[nlines++] = strdup(line);
    }
    fclose(in);
    free(line);

    sqlite3 *db = bench_open_dest(argv[1], "open");
    if (sqlite3_exec(db, argv[3], NULL, NULL, NULL) != SQLITE_OK)
        bench_die(db, "create");
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, argv[4], -1, &stmt, NULL) != SQLITE_OK)
        bench_die(db, "prepare");
    int ncols = sqlite3_bind_parameter_count(stmt);

    struct bench_timing timing;
    bench_begin(db, &timing);
    for (size_t r = 0; r < nlines; r++) {
        char *field = lines[r];
        for (int c = 1; c <= ncols; c++) {
            char *tab = strchr(field, '\t');
            size_t flen = tab ? (size_t)(tab - field) : strlen(field);
            if (flen == 2 && field[0] == '\\' && field[1] == 'N')
                sqlite3_bind_null(stmt, c);
            else
                sqlite3_bind_text(stmt, c, field, (int)flen, SQLITE_STATIC);
            field = tab ? tab + 1 : field + flen;
        }
        if (sqlite3_step(stmt) != SQLITE_DONE)
            bench_die(db, "insert");
        sqlite3_reset(stmt);
    }
    double seconds, cpu;
    bench_commit(db, &timing, &seconds, &cpu);

    sqlite3_finalize(stmt);
    sqlite3_close(db);
    printf("%zu %.6f %.6f\n", nlines, seconds, cpu);
    for (size_t r = 0; r < nlines; r++)
        free(lines[r]);
    free(lines);
    return 0;
}
