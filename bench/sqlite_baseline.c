/* bench/sqlite_baseline: the speed limit somirrord's initial load is measured against. Reads
 * rows from a tab-separated file (one row a line, \N for NULL; produced by the benchmark
 * script from the same rows it sends to somirrord), then inserts them into a fresh SQLite file
 * with a plain prepared-statement loop in one transaction (WAL, synchronous=NORMAL), binding
 * every value as text, and prints "rows seconds cpu-seconds". Only the insert loop is timed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_seconds(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "sqlite_baseline: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    exit(1);
}

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

    sqlite3 *db;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK)
        die(db, "open");
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK)
        die(db, "pragmas");
    if (sqlite3_exec(db, argv[3], NULL, NULL, NULL) != SQLITE_OK)
        die(db, "create");
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, argv[4], -1, &stmt, NULL) != SQLITE_OK)
        die(db, "prepare");
    int ncols = sqlite3_bind_parameter_count(stmt);

    double start = now_seconds(), cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        die(db, "begin");
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
            die(db, "insert");
        sqlite3_reset(stmt);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        die(db, "commit");
    double seconds = now_seconds() - start;
    double cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;

    sqlite3_finalize(stmt);
    sqlite3_close(db);
    printf("%zu %.6f %.6f\n", nlines, seconds, cpu);
    for (size_t r = 0; r < nlines; r++)
        free(lines[r]);
    free(lines);
    return 0;
}
