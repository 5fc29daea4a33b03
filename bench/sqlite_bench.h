/* bench/sqlite_bench: what the two SQLite baselines (sqlite_baseline, crm_baseline) share: their
 * clocks, their exit on an SQLite error, the destination file both load (WAL,
 * synchronous=NORMAL) and the one timed transaction around their insert loops. */
#ifndef SOMIRROR_BENCH_SQLITE_BENCH_H
#define SOMIRROR_BENCH_SQLITE_BENCH_H
#include <time.h>

#include <sqlite3.h>

/* The program's name, for its error messages; each baseline defines it. */
extern const char bench_program[];

/* Prints "<bench_program>: what: <db's error>" and exits 1. */
_Noreturn void bench_die(sqlite3 *db, const char *what);

/* Opens (creating) the SQLite file path for loading: journal_mode=WAL, synchronous=NORMAL. Dies
 * with what when it cannot be opened. */
sqlite3 *bench_open_dest(const char *path, const char *what);

/* The insert loop's clocks: wall (CLOCK_MONOTONIC) and CPU of the process. */
struct bench_timing {
    double start, cpu_start;
};

/* Starts the clocks, then BEGIN on db. */
void bench_begin(sqlite3 *db, struct bench_timing *t);
/* COMMIT on db, then the seconds since bench_begin: wall into *seconds, CPU into *cpu. */
void bench_commit(sqlite3 *db, const struct bench_timing *t, double *seconds, double *cpu);

#endif
