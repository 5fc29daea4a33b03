/* bench/sqlite_bench: the SQLite baselines' clocks, error exit, destination file and timed
 * transaction (see sqlite_bench.h). */
#include "bench/sqlite_bench.h"

#include <stdio.h>
#include <stdlib.h>

/* Clock id's reading in seconds. */
static double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", bench_program, what, db ? sqlite3_errmsg(db) : "");
    exit(1);
}

sqlite3 *bench_open_dest(const char *path, const char *what)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        bench_die(db, what);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK)
        bench_die(db, "pragmas");
    return db;
}

void bench_begin(sqlite3 *db, struct bench_timing *t)
{
    t->start = bench_clock(CLOCK_MONOTONIC);
    t->cpu_start = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        bench_die(db, "begin");
}

void bench_commit(sqlite3 *db, const struct bench_timing *t, double *seconds, double *cpu)
{
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        bench_die(db, "commit");
    *seconds = bench_clock(CLOCK_MONOTONIC) - t->start;
    *cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - t->cpu_start;
}
