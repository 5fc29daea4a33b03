/* tests/unit/test_walbuf: the gathering VFS (store/sqlite_walbuf). A writer opened through it
 * and a reader through the default VFS, in a temporary directory: every commit is seen by the
 * reader as it returns, survives the writer's process ending right after it (nothing is left
 * in a buffer), a commit whose frames cannot be written fails and is rolled back, and the
 * writes a transaction spills before its commit are read back, rolled back and written over as
 * SQLite expects; the barrier alone writes out what a commit still gathers (a writer killed
 * right after it loses nothing); the file passes integrity_check throughout. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/sqlite_walbuf.h"

static char dir[] = "/tmp/test_walbuf.XXXXXX";
static char path[256];

static sqlite3 *open_db(const char *vfs)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err ? err : "");
}

static long long query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void assert_intact(sqlite3 *db)
{
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* A writer through vfs: WAL and synchronous=NORMAL, as the SQLite store opens a mirror. */
static sqlite3 *open_writer_on(const char *vfs)
{
    sqlite3 *db = open_db(vfs);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    return db;
}

static sqlite3 *open_writer(void)
{
    return open_writer_on(sqlite_walbuf_vfs());
}

/* n rows of a blob of size bytes each, ids from first, in one transaction. */
static void insert_rows(sqlite3 *db, int first, int n, int size)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE k(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM k WHERE i < %d) "
             "INSERT INTO t SELECT i, randomblob(%d) FROM k", first, first + n - 1, size);
    exec(db, sql);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(strcpy(dir, "/tmp/test_walbuf.XXXXXX")));
    snprintf(path, sizeof(path), "%s/m.db", dir);
    ck_assert_ptr_nonnull(sqlite_walbuf_vfs());
    sqlite3 *w = open_writer();
    exec(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)");
    sqlite3_close(w);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Runs child(arg) in a child process, which ends itself; its wait status. */
static int child_status(void (*child)(int), int arg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child(arg);
        _exit(99);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

/* Transactions of 1 KiB to 1 MiB of frames (inside one buffer, and many buffers). */
START_TEST(test_each_commit_seen_at_once)
{
    sqlite3 *w = open_writer();
    sqlite3 *r = open_db(NULL);
    int next = 1;
    static const int sizes[][2] = {{1, 100}, {50, 1000}, {250, 4000}, {1, 3000000}, {700, 1500}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        insert_rows(w, next, sizes[i][0], sizes[i][1]);
        next += sizes[i][0];
        ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), next - 1);
        ck_assert_int_eq(query(r, "SELECT max(id) FROM t"), next - 1);
    }
    exec(w, "UPDATE t SET b = randomblob(10) WHERE id % 3 = 0");
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t WHERE length(b) = 10"), (next - 1) / 3);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
}
END_TEST

/* A child commits and is killed at once (no close, no exit handlers): every commit is in the files
 * the default VFS reads; one left open is not, and breaks nothing. */
static void write_and_crash(int committed)
{
    sqlite3 *w = open_writer();
    exec(w, "BEGIN");
    insert_rows(w, 1 + 10000 * committed, 3000, 700);
    if (committed)
        exec(w, "COMMIT");
    raise(SIGKILL);   /* as a crash ends it */
}

START_TEST(test_commits_outlive_the_writer)
{
    for (int committed = 0; committed <= 1; committed++) {
        int status = child_status(write_and_crash, committed);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    sqlite3 *r = open_db(NULL);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 3000);
    ck_assert_int_eq(query(r, "SELECT min(id) FROM t"), 10001);
    assert_intact(r);
    sqlite3_close(r);
}
END_TEST

/* A commit whose frames cannot all be written (here: past the file size limit, after the
 * space was reserved) fails as SQLite's own writes fail, rolled back; it does not end the
 * process at the barrier, and what was committed before stays. */
/* Exits 0 when a commit of 40 KiB of frames (one buffer, written out at the commit frame) past
 * the file size limit fails with SQLITE_FULL. */
static void commit_past_the_size_limit(int unused)
{
    (void)unused;
    sqlite3 *w = open_writer();
    char wal[300];
    struct stat st;
    snprintf(wal, sizeof(wal), "%s-wal", path);
    if (stat(wal, &st) != 0)
        _exit(3);
    struct rlimit limit = {(rlim_t)st.st_size + 10000, (rlim_t)st.st_size + 10000};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
        _exit(4);
    int rc = sqlite3_exec(w, "INSERT INTO t SELECT 100 + value, randomblob(4000) FROM "
                          "(WITH RECURSIVE k(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM k "
                          "WHERE value < 10) SELECT value FROM k)", NULL, NULL, NULL);
    _exit(rc == SQLITE_FULL ? 0 : 10 + (rc & 0xff));
}

START_TEST(test_commit_that_cannot_be_written_fails)
{
    sqlite3 *w = open_writer();
    insert_rows(w, 1, 10, 100);
    sqlite3_close(w);
    int status = child_status(commit_past_the_size_limit, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child %s %d",
                  WIFEXITED(status) ? "exited" : "was killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    sqlite3 *r = open_db(NULL);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 10);
    assert_intact(r);
    sqlite3_close(r);
}
END_TEST

/* A transaction larger than the page cache writes frames before its commit and reads them
 * back; rolled back, its frames are written over by the next one. */
START_TEST(test_spilled_frames_read_back_and_rolled_back)
{
    sqlite3 *w = open_writer();
    sqlite3 *r = open_db(NULL);
    exec(w, "PRAGMA cache_size = 8");
    insert_rows(w, 1, 10, 100);
    exec(w, "BEGIN");
    insert_rows(w, 11, 2000, 1000);
    ck_assert_int_eq(query(w, "SELECT sum(length(b)) FROM t"), 10 * 100 + 2000 * 1000);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 10);
    exec(w, "ROLLBACK");
    ck_assert_int_eq(query(w, "SELECT count(*) FROM t"), 10);
    insert_rows(w, 11, 500, 3000);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 510);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
}
END_TEST

/* Spilled, rolled back, and another writer commits where those frames went: the frames the
 * first connection gathered must never be written over the other's (here at its next read,
 * whose barrier writes out what the thread holds). */
START_TEST(test_rolled_back_frames_never_land_on_a_later_commit)
{
    sqlite3 *w = open_writer();
    exec(w, "CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)");
    exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");   /* both write from the WAL's start */
    exec(w, "PRAGMA cache_size = 8");
    exec(w, "BEGIN");
    insert_rows(w, 1, 200, 1000);
    exec(w, "ROLLBACK");
    sqlite3 *other = open_db(NULL);
    exec(other, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 100) "
                "INSERT INTO u SELECT i, 'committed by the other' FROM k");
    sqlite3_close(other);
    ck_assert_int_eq(query(w, "SELECT count(*) FROM t"), 0);
    sqlite3 *r = open_db(NULL);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM u"), 100);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM u WHERE v = 'committed by the other'"), 100);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
}
END_TEST

/* A transaction that spills, then changes pages it spilled, writes them over in place and
 * rewrites its frames' checksums after its commit frame: those rewrites must reach the file
 * (at the barrier, at the latest as the write lock is released), or a writer killed right
 * after the commit leaves a WAL whose recovery stops at the first frame it wrote. */
static void spill_and_write_over(sqlite3 *w)
{
    exec(w, "PRAGMA cache_size = 8");
    exec(w, "BEGIN");
    insert_rows(w, 1, 2000, 500);
    exec(w, "UPDATE t SET b = randomblob(20) WHERE id <= 50");
    insert_rows(w, 2001, 20, 500);
}

static void rewrite_spilled_and_crash(int unused)
{
    (void)unused;
    sqlite3 *w = open_writer();
    spill_and_write_over(w);
    exec(w, "COMMIT");
    raise(SIGKILL);
}

/* Runs child, which commits spill_and_write_over's transaction and is killed; then the
 * transaction is found whole. */
static void killed_after_the_commit_leaves_it_whole(void (*child)(int))
{
    int status = child_status(child, 0);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
    sqlite3 *r = open_db(NULL);   /* the only connection: recovers the wal-index from the WAL */
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 2020);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t WHERE length(b) = 20"), 50);
    assert_intact(r);
    sqlite3_close(r);
}

START_TEST(test_checksums_rewritten_at_commit_survive_a_crash)
{
    killed_after_the_commit_leaves_it_whole(rewrite_spilled_and_crash);
}
END_TEST

/* A VFS over the gathering one whose database files end the process right after the
 * gathering VFS's barrier, once armed: the moment between a commit's frames and the wal-index
 * header that publishes them, before the write lock is released (whose own write-out would
 * otherwise cover a barrier that wrote nothing). */
static sqlite3_vfs kill_vfs;
static sqlite3_io_methods kill_methods;
static const sqlite3_io_methods *gathering_methods;
static volatile int kill_at_barrier;

static void barrier_then_kill(sqlite3_file *file)
{
    gathering_methods->xShmBarrier(file);
    if (kill_at_barrier)
        raise(SIGKILL);
}

static int kill_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
    sqlite3_vfs *gathering = vfs->pAppData;
    int rc = gathering->xOpen(gathering, name, file, flags, out);
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_MAIN_DB) && file->pMethods) {
        gathering_methods = file->pMethods;
        kill_methods = *gathering_methods;
        kill_methods.xShmBarrier = barrier_then_kill;
        file->pMethods = &kill_methods;
    }
    return rc;
}

static void rewrite_spilled_and_crash_at_the_barrier(int unused)
{
    (void)unused;
    sqlite3_vfs *gathering = sqlite3_vfs_find(sqlite_walbuf_vfs());
    kill_vfs = *gathering;
    kill_vfs.zName = "test-kill-at-barrier";
    kill_vfs.pAppData = gathering;
    kill_vfs.xOpen = kill_open;
    ck_assert_int_eq(sqlite3_vfs_register(&kill_vfs, 0), SQLITE_OK);
    sqlite3 *w = open_writer_on(kill_vfs.zName);
    spill_and_write_over(w);
    kill_at_barrier = 1;
    exec(w, "COMMIT");
    _exit(98);   /* no barrier came */
}

/* The barrier alone writes out what the commit still gathers (the last checksums it rewrote):
 * a writer that ends right after it, before the write lock is released, leaves a committed
 * transaction that recovery finds whole. */
START_TEST(test_barrier_writes_the_commit_out)
{
    killed_after_the_commit_leaves_it_whole(rewrite_spilled_and_crash_at_the_barrier);
}
END_TEST

/* Checkpointed by another connection (as the store's checkpoint thread does), the WAL starts
 * again from its beginning at the next write. */
START_TEST(test_wal_written_again_from_its_start)
{
    sqlite3 *w = open_writer();
    sqlite3 *r = open_db(NULL);
    for (int round = 0; round < 3; round++) {
        insert_rows(w, 1 + round * 1000, 1000, 2000);
        ck_assert_int_eq(query(r, "PRAGMA wal_checkpoint(RESTART)"), 0);   /* not busy */
        insert_rows(w, 100000 + round, 1, 10);
        ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), (round + 1) * 1001);
    }
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
    r = open_db(NULL);
    ck_assert_int_eq(query(r, "SELECT count(*) FROM t"), 3003);
    sqlite3_close(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("walbuf");
    TCase *tc = tcase_create("walbuf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_each_commit_seen_at_once);
    tcase_add_test(tc, test_commits_outlive_the_writer);
    tcase_add_test(tc, test_commit_that_cannot_be_written_fails);
    tcase_add_test(tc, test_spilled_frames_read_back_and_rolled_back);
    tcase_add_test(tc, test_rolled_back_frames_never_land_on_a_later_commit);
    tcase_add_test(tc, test_checksums_rewritten_at_commit_survive_a_crash);
    tcase_add_test(tc, test_barrier_writes_the_commit_out);
    tcase_add_test(tc, test_wal_written_again_from_its_start);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
