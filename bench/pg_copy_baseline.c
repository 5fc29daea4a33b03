/* bench/pg_copy_baseline: the speed limit for a load into PostgreSQL. Reads a file in COPY's
 * text format (tab-separated, \N for NULL; produced by the benchmark script from the same rows
 * it sends to somirrord) into memory, creates the table with the given statement on CONNINFO,
 * then runs one COPY ... FROM STDIN in one transaction, sending the data in 1 MiB pieces, and
 * prints "rows seconds". Only the transactions are timed.
 *
 * With ROWS_PER_CALL, the rows go in transactions of that many rows each, every one run as
 * somirrord's store runs a RowData call of a full load (BEGIN with the tenant's advisory lock, a
 * SAVEPOINT, the COPY, RELEASE, COMMIT; without the store's read of its metadata table), one
 * after the other: the limit for a receiver that commits every call, as the protocol asks, with
 * nothing else between the calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(PGconn *conn, const char *what)
{
    fprintf(stderr, "pg_copy_baseline: %s: %s\n", what, conn ? PQerrorMessage(conn) : "");
    exit(1);
}

static void exec_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        die(conn, sql);
    PQclear(res);
}

/* One COPY of len bytes of rows, in 1 MiB pieces. */
static void copy_rows(PGconn *conn, const char *copy_sql, const char *data, size_t len)
{
    PGresult *res = PQexec(conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN)
        die(conn, "copy");
    PQclear(res);
    const size_t piece = 1 << 20;
    for (size_t off = 0; off < len; off += piece) {
        size_t k = len - off < piece ? len - off : piece;
        if (PQputCopyData(conn, data + off, (int)k) != 1)
            die(conn, "putCopyData");
    }
    if (PQputCopyEnd(conn, NULL) != 1)
        die(conn, "putCopyEnd");
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die(conn, "copy end");
        PQclear(res);
    }
}

/* The bytes of the first rows rows of data (or all of it). */
static size_t rows_span(const char *data, size_t len, size_t rows)
{
    size_t off = 0;
    while (rows-- > 0 && off < len) {
        const char *nl = memchr(data + off, '\n', len - off);
        off = nl ? (size_t)(nl - data) + 1 : len;
    }
    return off;
}

int main(int argc, char **argv)
{
    long per_call = argc == 6 ? atol(argv[5]) : 0;
    if ((argc != 5 && argc != 6) || (argc == 6 && per_call < 1)) {
        fprintf(stderr, "usage: pg_copy_baseline CONNINFO 'CREATE TABLE ...' 'COPY t FROM STDIN' "
                "FILE [ROWS_PER_CALL]\n");
        return 2;
    }
    FILE *in = fopen(argv[4], "rb");
    if (!in) {
        perror(argv[4]);
        return 1;
    }
    size_t len = 0, cap = 1 << 20;
    char *data = malloc(cap);
    size_t n;
    while (data && (n = fread(data + len, 1, cap - len, in)) > 0) {
        len += n;
        if (len == cap)
            data = realloc(data, cap *= 2);
    }
    fclose(in);
    if (!data) {
        fprintf(stderr, "pg_copy_baseline: out of memory\n");
        return 1;
    }
    size_t rows = 0;
    for (size_t i = 0; i < len; i++)
        rows += data[i] == '\n';

    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK)
        die(conn, "connect");
    exec_ok(conn, argv[2]);

    double start = now_seconds();
    if (per_call) {
        for (size_t off = 0; off < len;) {
            size_t span = rows_span(data + off, len - off, (size_t)per_call);
            exec_ok(conn, "BEGIN; SELECT pg_advisory_xact_lock(1)");
            exec_ok(conn, "SAVEPOINT load");
            copy_rows(conn, argv[3], data + off, span);
            exec_ok(conn, "RELEASE SAVEPOINT load");
            exec_ok(conn, "COMMIT");
            off += span;
        }
    } else {
        exec_ok(conn, "BEGIN");
        copy_rows(conn, argv[3], data, len);
        exec_ok(conn, "COMMIT");
    }
    double seconds = now_seconds() - start;
    PQfinish(conn);
    free(data);
    printf("%zu %.6f\n", rows, seconds);
    return 0;
}
