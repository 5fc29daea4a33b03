/* tests/unit/test_hooks: unit tests of hooks/ (the runner: environment, output lines in the
 * log, exit status, time limit, detaching, one exclusive run per tenant; table_sql file
 * selection, {table} substitution and failures; what runs after TableSchema, Wipe and
 * ReplicationCompleted). Uses a real registry, a real SQLite store in a temporary directory
 * and /bin/sh as the hook program. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "hooks/hooks.h"

static char dir[256];
static char log_path[320];
static struct registry *reg;
static uint32_t idx;

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/somirror-test-hooks-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(log_path, sizeof(log_path), "%s/test.log", dir);
    char err[256];
    ck_assert_int_eq(log_open(log_path, LOG_LVL_DEBUG, "test_hooks", err, sizeof(err)), 0);
    reg = reg_create(8, 2, err, sizeof(err));
    ck_assert_ptr_nonnull(reg);
    ck_assert_int_eq(reg_tenant_find(reg, "Cust1", 1, &idx, NULL), 0);
}

static void teardown(void)
{
    reg_destroy(reg);
    log_close();
    struct buf cmd = BUF_INIT;
    buf_printf(&cmd, "rm -rf '%s'", dir);
    if (system(cmd.data) != 0)
        fprintf(stderr, "test_hooks: could not remove %s\n", dir);
    buf_free(&cmd);
}

/* ---- helpers ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    if (!b.data)
        buf_puts(&b, "");
    return buf_steal(&b);
}

static char *path_in(const char *name)
{
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void put_file(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Waits up to seconds for path to exist. */
static int wait_file(const char *path, double seconds)
{
    double end = monotonic_seconds() + seconds;
    while (!file_exists(path))
        if (monotonic_seconds() > end)
            return 0;
        else
            sleep_ms(20);
    return 1;
}

static struct tenant_view view(void)
{
    struct tenant_view v;
    ck_assert_int_eq(reg_tenant_read(reg, idx, &v), 0);
    return v;
}

/* Waits until last_hook starts with prefix; returns whether it did. */
static int wait_last_hook(const char *prefix, double seconds)
{
    double end = monotonic_seconds() + seconds;
    for (;;) {
        if (strncmp(view().last_hook, prefix, strlen(prefix)) == 0)
            return 1;
        if (monotonic_seconds() > end)
            return 0;
        sleep_ms(20);
    }
}

/* Whether the tenant's hook word is free within seconds (its run's supervisor has ended). */
static int wait_hook_released(double seconds)
{
    double end = monotonic_seconds() + seconds;
    while (reg_tenant_hook_running(reg, idx) != 0) {
        if (monotonic_seconds() > end)
            return 0;
        sleep_ms(10);
    }
    return 1;
}

/* Whether pid is gone (or a zombie waiting for init). */
static int process_gone(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    char *stat = slurp(path);
    if (!stat)
        return 1;
    char *paren = strrchr(stat, ')');
    int zombie = paren && paren[1] == ' ' && paren[2] == 'Z';
    free(stat);
    return zombie;
}

/* The process whose pid a hook wrote to pid_file (in the test's directory) is gone within 3 s. */
static void assert_process_ends(const char *pid_file, const char *what)
{
    char *pid_text = slurp(path_in(pid_file));
    ck_assert_ptr_nonnull(pid_text);
    long pid = atol(pid_text);
    free(pid_text);
    ck_assert_int_gt(pid, 0);
    double end = monotonic_seconds() + 3;
    while (!process_gone(pid) && monotonic_seconds() < end)
        sleep_ms(20);
    ck_assert_msg(process_gone(pid), "%s %ld survived", what, pid);
}

static struct hook_job sh_job(const char *script, const struct hook_cmd *cmd)
{
    static char *argv[4];
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = (char *)script;
    argv[3] = NULL;
    return (struct hook_job){
        .name = "cycle_completed", .tenant = "Cust1", .reg = reg, .idx = idx, .argv = argv,
        .cmds = cmd, .ncmds = 1, .timeout_ms = 10000, .kill_grace_ms = 1000, .exclusive = 1,
    };
}

/* ---- the runner ---- */

START_TEST(runner_env_and_output)
{
    setenv("SOMIRROR_TENANT", "stale", 1);
    setenv("TEST_HOOKS_INHERITED", "yes", 1);
    char outfile[600];
    snprintf(outfile, sizeof(outfile), "OUTFILE=%s", path_in("env.txt"));
    char *env[] = {"SOMIRROR_TENANT=Cust1", "SOMIRROR_DATABASE=Mirror_Cust1", outfile, NULL};
    struct hook_cmd cmd = {.label = "cycle_completed", .env = env};
    struct hook_job job = sh_job("env > \"$OUTFILE\"; echo out-$SOMIRROR_TENANT; echo oops >&2; "
                                 "printf 'no newline'", &cmd);
    ck_assert_int_eq(hooks_supervise(&job), 0);
    ck_assert_str_eq(view().last_hook, "cycle_completed: exit 0");
    ck_assert_int_ne(view().last_hook_at, 0);
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), 0);   /* released */

    char *envs = slurp(path_in("env.txt"));
    ck_assert_ptr_nonnull(envs);
    ck_assert_ptr_nonnull(strstr(envs, "SOMIRROR_TENANT=Cust1\n"));
    ck_assert_ptr_null(strstr(envs, "SOMIRROR_TENANT=stale"));
    ck_assert_ptr_nonnull(strstr(envs, "SOMIRROR_DATABASE=Mirror_Cust1\n"));
    ck_assert_ptr_nonnull(strstr(envs, "TEST_HOOKS_INHERITED=yes\n"));
    free(envs);

    char *log = slurp(log_path);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "info"));
    ck_assert_ptr_nonnull(strstr(log, "hook cycle_completed: out-Cust1\n"));
    ck_assert_ptr_nonnull(strstr(log, "warn"));
    ck_assert_ptr_nonnull(strstr(log, "hook cycle_completed (stderr): oops\n"));
    ck_assert_ptr_nonnull(strstr(log, "hook cycle_completed: no newline\n"));
    ck_assert_ptr_nonnull(strstr(log, "hook cycle_completed: exit 0"));
    free(log);
    unsetenv("SOMIRROR_TENANT");
    unsetenv("TEST_HOOKS_INHERITED");
}
END_TEST

START_TEST(runner_exit_status_and_exec_failure)
{
    struct hook_cmd cmd = {.label = "table_changed contact Created", .env = NULL};
    struct hook_job job = sh_job("exit 3", &cmd);
    ck_assert_int_eq(hooks_supervise(&job), -1);
    ck_assert_str_eq(view().last_hook, "table_changed contact Created: exit 3");

    job = sh_job("kill -9 $$", &cmd);
    ck_assert_int_eq(hooks_supervise(&job), -1);
    ck_assert_str_eq(view().last_hook, "table_changed contact Created: killed by signal 9");

    char *argv[] = {"/nonexistent/hook-program", NULL};
    job.argv = argv;
    ck_assert_int_eq(hooks_supervise(&job), -1);
    ck_assert_str_eq(view().last_hook, "table_changed contact Created: cannot run "
                     "/nonexistent/hook-program: No such file or directory");

    /* A script whose #! names no program (here with the CR of CR LF line ends): the program is
     * there, its interpreter is not. Not under valgrind, which ends a process whose execve of an
     * existing file fails ("I can't recover from execve() failing") before our code can tell
     * why: its preload libraries say it is there. */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        return;
    put_file("crlf.sh", "#!/bin/sh\r\nexit 0\r\n");
    ck_assert_int_eq(chmod(path_in("crlf.sh"), 0755), 0);
    char *script_argv[] = {path_in("crlf.sh"), NULL};
    job.argv = script_argv;
    ck_assert_int_eq(hooks_supervise(&job), -1);
    char *log = slurp(log_path);   /* last_hook may cut a long TMPDIR's path short */
    ck_assert_ptr_nonnull(strstr(log, "crlf.sh: No such file or directory: its #! interpreter (or "
                                      "loader) was not found\n"));
    free(log);
}
END_TEST

START_TEST(runner_kills_at_limit)
{
    char script[700];
    /* The shell and its background sleep ignore SIGTERM: only SIGKILL to the group ends them. */
    snprintf(script, sizeof(script), "trap '' TERM; sleep 30 & echo $! > '%s'; echo started; wait",
             path_in("sleep.pid"));
    struct hook_cmd cmd = {.label = "cycle_completed", .env = NULL};
    struct hook_job job = sh_job(script, &cmd);
    job.timeout_ms = 400;
    job.kill_grace_ms = 300;
    double t0 = monotonic_seconds();
    ck_assert_int_eq(hooks_supervise(&job), -1);
    double took = monotonic_seconds() - t0;
    ck_assert_msg(took >= 0.6 && took < 5, "took %.2f s", took);
    ck_assert_str_eq(view().last_hook, "cycle_completed: killed at the time limit (1 s)");
    assert_process_ends("sleep.pid", "the hook's background process");
    char *log = slurp(log_path);
    ck_assert_ptr_nonnull(strstr(log, "hook cycle_completed: started"));
    ck_assert_ptr_nonnull(strstr(log, "SIGTERM to process group"));
    ck_assert_ptr_nonnull(strstr(log, "SIGKILL"));
    free(log);
}
END_TEST

/* The program ends at the SIGTERM, but something it started ignores it: the supervisor kills
 * what is left of the group after the program has ended (it reaps the program only then, so
 * that the group's id cannot have gone to another process meanwhile). */
START_TEST(runner_kills_what_is_left_of_the_group)
{
    char script[700];
    snprintf(script, sizeof(script),
             "(trap '' TERM; exec sleep 30) & echo $! > '%s'; echo started; sleep 30",
             path_in("straggler.pid"));
    struct hook_cmd cmd = {.label = "cycle_completed", .env = NULL};
    struct hook_job job = sh_job(script, &cmd);
    job.timeout_ms = 300;
    job.kill_grace_ms = 20000;   /* the SIGKILL at the grace's end never comes into it */
    double t0 = monotonic_seconds();
    ck_assert_int_eq(hooks_supervise(&job), -1);
    double took = monotonic_seconds() - t0;
    ck_assert_msg(took < 10, "took %.2f s", took);
    ck_assert_str_eq(view().last_hook, "cycle_completed: killed at the time limit (1 s)");
    assert_process_ends("straggler.pid", "the hook's straggler");
}
END_TEST

START_TEST(spawn_detached_one_per_tenant)
{
    char script[700];
    snprintf(script, sizeof(script), "sleep 1; echo done > '%s'", path_in("done"));
    struct hook_cmd cmd = {.label = "cycle_completed", .env = NULL};
    struct hook_job job = sh_job(script, &cmd);
    double t0 = monotonic_seconds();
    ck_assert_int_eq(hooks_spawn(&job), HOOK_STARTED);
    double waited = monotonic_seconds() - t0;
    ck_assert_msg(waited < 0.5, "hooks_spawn waited %.2f s", waited);
    /* Detached: nothing of it is this process's child. */
    int status;
    ck_assert_int_eq(waitpid(-1, &status, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);

    double end = monotonic_seconds() + 5;
    while (reg_tenant_hook_running(reg, idx) == 0 && monotonic_seconds() < end)
        sleep_ms(10);
    pid_t holder = reg_tenant_hook_running(reg, idx);
    ck_assert_int_ne(holder, 0);
    ck_assert_int_ne(holder, getpid());

    /* A second run for the tenant while the first runs: skipped, logged, recorded. */
    ck_assert_int_eq(hooks_spawn(&job), HOOK_SKIPPED);
    ck_assert_ptr_nonnull(strstr(view().last_hook, "cycle_completed: skipped"));
    /* ... also when the supervisor itself finds the word taken. */
    ck_assert_int_eq(hooks_supervise(&job), -1);
    ck_assert_ptr_nonnull(strstr(view().last_hook, "skipped"));

    ck_assert(wait_file(path_in("done"), 10));
    ck_assert(wait_last_hook("cycle_completed: exit 0", 10));
    ck_assert(wait_hook_released(5));
    char *log = slurp(log_path);
    ck_assert_ptr_nonnull(strstr(log, "skipped: the previous run"));
    free(log);
}
END_TEST

/* A stop signal to the supervisor (a ^C of somirrord -f reaches its whole process group) ends
 * the program, in a session of its own, before the supervisor goes: never left running past
 * hooks.timeout. */
START_TEST(spawn_stop_signal_ends_the_program)
{
    char script[700];
    snprintf(script, sizeof(script), "echo $$ > '%s.tmp' && mv '%s.tmp' '%s' && exec sleep 30",
             path_in("program.pid"), path_in("program.pid"), path_in("program.pid"));
    struct hook_cmd cmd = {.label = "cycle_completed", .env = NULL};
    struct hook_job job = sh_job(script, &cmd);
    ck_assert_int_eq(hooks_spawn(&job), HOOK_STARTED);
    ck_assert(wait_file(path_in("program.pid"), 10));
    pid_t supervisor = reg_tenant_hook_running(reg, idx);
    ck_assert_int_gt(supervisor, 0);
    ck_assert_int_eq(kill(supervisor, SIGINT), 0);
    assert_process_ends("program.pid", "the hook's program");
    ck_assert(wait_last_hook("cycle_completed: killed, its supervisor got signal 2", 10));
    /* The commands after the one it stopped (table_changed's tables) are not started, and the
     * last_hook says so, not the stopped one's result alone. */
    unlink(path_in("program.pid"));
    ck_assert(wait_hook_released(10));
    struct hook_cmd cmds[] = {{.label = "table_changed a Created"}, {.label = "table_changed b Created"}};
    job.cmds = cmds;
    job.ncmds = 2;
    ck_assert_int_eq(hooks_spawn(&job), HOOK_STARTED);
    ck_assert(wait_file(path_in("program.pid"), 10));
    ck_assert_int_eq(kill(reg_tenant_hook_running(reg, idx), SIGTERM), 0);
    assert_process_ends("program.pid", "the hook's program");
    ck_assert(wait_last_hook("table_changed b Created: not run, its supervisor got signal 15", 10));
}
END_TEST

START_TEST(hook_word_claims)
{
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        _exit(0);
    int status;
    waitpid(child, &status, 0);
    pid_t self = getpid(), other = getppid();
    ck_assert_int_eq(reg_tenant_hook_claim(reg, idx, child, NULL), 0);
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), 0);   /* its holder is gone */
    /* A live process that is no hook supervisor (the holder's pid reused): no holder either. */
    ck_assert_int_eq(reg_tenant_hook_claim(reg, idx, other, NULL), 0);
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), 0);
    char name[32] = "";
    prctl(PR_GET_NAME, name);
    prctl(PR_SET_NAME, REG_HOOK_PROCESS_NAME);   /* this process as a supervisor from here */
    ck_assert_int_eq(reg_tenant_hook_claim(reg, idx, self, NULL), 0);   /* taken over */
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), self);
    pid_t holder = 0;
    ck_assert_int_eq(reg_tenant_hook_claim(reg, idx, other, &holder), 1);
    ck_assert_int_eq(holder, self);
    reg_tenant_hook_release(reg, idx, other);                  /* not the holder: no effect */
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), self);
    reg_tenant_hook_release(reg, idx, self);
    ck_assert_int_eq(reg_tenant_hook_running(reg, idx), 0);
    prctl(PR_SET_NAME, name);
    reg_tenant_hook_ran_unlocked(reg, idx, "x: exit 0", 0, 42);
    ck_assert_str_eq(view().last_hook, "x: exit 0");
    ck_assert_int_eq(view().last_hook_at, 42);
}
END_TEST

/* ---- table_sql ---- */

static struct config cfg;
static char sql_dir[320];
static char mirror_dir[320];

static void sql_setup(void)
{
    setup();
    memset(&cfg, 0, sizeof(cfg));
    snprintf(sql_dir, sizeof(sql_dir), "%s/sql", dir);
    snprintf(mirror_dir, sizeof(mirror_dir), "%s/mirrors", dir);
    ck_assert_int_eq(mkdir(sql_dir, 0700), 0);
    ck_assert_int_eq(mkdir(mirror_dir, 0700), 0);
    cfg.driver = STORE_SQLITE;
    cfg.sqlite.directory = mirror_dir;
    cfg.sqlite.max_open = 4;
    cfg.hooks.table_sql = sql_dir;
    cfg.hooks.timeout = 10;
}

/* The rows of the mirror's ran table, one per line. */
static char *ran_rows(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/Mirror_Cust1.db", mirror_dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *stmt;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT what FROM ran ORDER BY seq", -1, &stmt, NULL),
                     SQLITE_OK);
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    while (sqlite3_step(stmt) == SQLITE_ROW)
        buf_printf(&b, "%s\n", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return buf_steal(&b);
}

/* The store of cfg, tenant Cust1's mirror in it, and hooks of cfg: what the table_sql and
 * table_changed checks run on. */
static struct store_tenant *tenant_with_hooks(struct store **store, struct hooks **h)
{
    char err[256];
    *store = store_new(&cfg, err, sizeof(err));
    ck_assert_msg(*store != NULL, "%s", err);
    struct fault f;
    fault_clear(&f);
    struct store_tenant *t = store_tenant(*store, "Cust1", &f);
    ck_assert_ptr_nonnull(t);
    *h = hooks_new(&cfg, reg);
    return t;
}

#define RAN_TABLE "CREATE TABLE IF NOT EXISTS ran(seq INTEGER PRIMARY KEY, what TEXT);\n"

START_TEST(table_sql_selection_and_substitution)
{
    /* Matched ignoring case; run before the every-table script. */
    put_file("sql/Contact.sql", RAN_TABLE "INSERT INTO ran(what) VALUES ('own {table}');\n");
    put_file("sql/*.sql", RAN_TABLE "INSERT INTO ran(what) VALUES ('all {table} {table}');\n");
    put_file("sql/person.txt", RAN_TABLE "INSERT INTO ran(what) VALUES ('never');\n");
    struct store *store;
    struct hooks *h;
    struct store_tenant *t = tenant_with_hooks(&store, &h);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "contact"), 0);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "person"), 0);
    ck_assert_str_eq(view().last_hook, "table_sql *.sql (person): ok");
    char *rows = ran_rows();
    ck_assert_str_eq(rows, "own \"contact\"\nall \"contact\" \"contact\"\nall \"person\" \"person\"\n");
    free(rows);

    /* A table name that is no identifier never reaches the database. */
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "no'table"), -1);
    ck_assert_str_eq(view().last_hook, "table_sql *.sql (no'table): error: invalid table name");

    /* Without *.sql only the table's own file runs; a table without one runs nothing. */
    ck_assert_int_eq(unlink(path_in("sql/*.sql")), 0);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "person"), 0);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "CONTACT"), 0);
    rows = ran_rows();
    ck_assert_str_eq(rows, "own \"contact\"\nall \"contact\" \"contact\"\nall \"person\" \"person\"\n"
                           "own \"CONTACT\"\n");
    free(rows);
    hooks_free(h);
    store_free(store);
}
END_TEST

START_TEST(table_sql_failure_recorded)
{
    put_file("sql/broken.sql", "CREATE TABLE oops(;\n");
    put_file("sql/*.sql", RAN_TABLE "INSERT INTO ran(what) VALUES ('all {table}');\n");
    struct store *store;
    struct hooks *h;
    struct store_tenant *t = tenant_with_hooks(&store, &h);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "broken"), -1);
    /* The every-table script still ran, but its success does not hide the failure. */
    const char *want = "table_sql broken.sql: error: near \";\": syntax error";
    ck_assert_str_eq(view().last_hook, want);
    char *rows = ran_rows();
    ck_assert_str_eq(rows, "all \"broken\"\n");
    free(rows);
    char *log = slurp(log_path);
    ck_assert_ptr_nonnull(strstr(log, "broken.sql for table broken: near \";\": syntax error"));
    free(log);

    /* A script that cannot be read is a failure too. */
    ck_assert_int_eq(unlink(path_in("sql/*.sql")), 0);
    ck_assert_int_eq(mkdir(path_in("sql/*.sql"), 0700), 0);   /* not a regular file: ignored */
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "other"), 0);
    hooks_free(h);
    store_free(store);
}
END_TEST

/* A directory that cannot be read (here a file; in service, one the workers' user may not
 * read) runs no script: a failure, logged and recorded, not a silence. */
START_TEST(table_sql_unreadable_directory)
{
    put_file("not-a-directory", "");
    cfg.hooks.table_sql = path_in("not-a-directory");
    struct store *store;
    struct hooks *h;
    struct store_tenant *t = tenant_with_hooks(&store, &h);
    ck_assert_int_eq(hooks_run_table_sql(h, t, idx, "contact"), -1);
    ck_assert_ptr_nonnull(strstr(view().last_hook, "table_sql: error: cannot read the directory "));
    ck_assert_ptr_nonnull(strstr(view().last_error, "not-a-directory: Not a directory"));
    char *log = slurp(log_path);
    ck_assert_ptr_nonnull(strstr(log, "hook table_sql: cannot read the directory "));
    free(log);
    hooks_free(h);
    store_free(store);
}
END_TEST

/* ---- after TableSchema, Wipe, ReplicationCompleted ---- */

/* cfg's cycle_completed: a program that writes SOMIRROR_SUMMARY to <dir>/summary. */
static void summary_hook(void)
{
    static char script[1024];
    static char *argv[] = {"/bin/sh", "-c", script};
    snprintf(script, sizeof(script),
             "printf '%%s' \"$SOMIRROR_SUMMARY\" > '%s/summary.tmp' && mv '%s/summary.tmp' '%s/summary'",
             dir, dir, dir);
    cfg.hooks.cycle_completed = (struct cfg_strings){argv, 3};
}

/* The SOMIRROR_SUMMARY that summary_hook's program got for a cycle with summary. */
static json_t *cycle_summary(struct hooks *h, const struct table_summary *summary, size_t n)
{
    unlink(path_in("summary"));
    hooks_after_cycle(h, "Cust1", idx, summary, n);
    ck_assert(wait_file(path_in("summary"), 10));
    ck_assert(wait_last_hook("cycle_completed: exit 0", 10));
    char *text = slurp(path_in("summary"));
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    ck_assert_msg(root != NULL, "SOMIRROR_SUMMARY is no JSON: %s", text);
    free(text);
    return root;
}

START_TEST(after_calls_run_the_programs)
{
    char script[700];
    snprintf(script, sizeof(script),
             "env | grep -E '^SOMIRROR_(TENANT|DATABASE|TABLE|CHANGE|SUMMARY)=' | sort > '%s/changed-'$SOMIRROR_TABLE-$SOMIRROR_CHANGE", dir);
    char *changed[] = {"/bin/sh", "-c", script};
    cfg.hooks.table_changed = (struct cfg_strings){changed, 3};
    summary_hook();
    put_file("sql/contact.sql", RAN_TABLE "INSERT INTO ran(what) VALUES ('own {table}');\n");

    struct store *store;
    struct hooks *h;
    struct store_tenant *t = tenant_with_hooks(&store, &h);

    struct table_state states[] = {
        {.name = "contact", .change = CHANGE_CREATED},
        {.name = "person", .change = CHANGE_UNCHANGED},
        {.name = "bad", .change = CHANGE_REJECTED, .error = "column shape"},
        {.name = "sale", .change = CHANGE_ALTERED},
        {.name = "old", .change = CHANGE_DROPPED},
    };
    hooks_after_table_schema(h, t, "Cust1", idx, states, 5);
    /* table_sql ran at once, in the call, for the created table only. */
    char *rows = ran_rows();
    ck_assert_str_eq(rows, "own \"contact\"\n");
    free(rows);
    ck_assert(wait_file(path_in("changed-old-Dropped"), 10));   /* the last of the call */
    ck_assert(file_exists(path_in("changed-contact-Created")));
    ck_assert(file_exists(path_in("changed-sale-Altered")));
    ck_assert(!file_exists(path_in("changed-person-Unchanged")));
    ck_assert(!file_exists(path_in("changed-bad-Rejected")));
    ck_assert(wait_last_hook("table_changed old Dropped: exit 0", 10));
    char *env = slurp(path_in("changed-contact-Created"));
    ck_assert_str_eq(env, "SOMIRROR_CHANGE=Created\nSOMIRROR_DATABASE=Mirror_Cust1\n"
                          "SOMIRROR_TABLE=contact\nSOMIRROR_TENANT=Cust1\n");
    free(env);

    struct table_state wiped[] = {{.name = "contact", .lsn = -1}};
    hooks_after_wipe(h, t, "Cust1", idx, wiped, 1);
    rows = ran_rows();
    ck_assert_str_eq(rows, "own \"contact\"\nown \"contact\"\n");
    free(rows);
    ck_assert(wait_file(path_in("changed-contact-Wiped"), 10));
    /* Each run records its result when it ends, so let this one end before the next starts:
     * otherwise a slow machine can record it after the cycle's, which then looks lost. */
    ck_assert(wait_last_hook("table_changed contact Wiped: exit 0", 10));

    struct table_summary summary[] = {{"contact", 10, 3, 1}, {"sale", 5, 0, 2}};
    json_t *root = cycle_summary(h, summary, 2);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "inserted")), 15);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "updated")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "deleted")), 3);
    json_t *tables = json_object_get(root, "tables");
    ck_assert_int_eq(json_array_size(tables), 2);
    json_t *first = json_array_get(tables, 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "name")), "contact");
    ck_assert_int_eq(json_integer_value(json_object_get(first, "inserted")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "updated")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "deleted")), 1);
    json_decref(root);

    hooks_free(h);
    store_free(store);
}
END_TEST

/* Each count a sender sends may be as large as int64 goes: the totals stop there rather than
 * overflow (into negative numbers). */
START_TEST(cycle_summary_totals_held)
{
    summary_hook();
    struct hooks *h = hooks_new(&cfg, reg);
    struct table_summary summary[] = {{"contact", INT64_MAX, 1, 0}, {"sale", INT64_MAX, 2, 0}};
    json_t *root = cycle_summary(h, summary, 2);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "inserted")), INT64_MAX);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "updated")), 3);
    json_t *first = json_array_get(json_object_get(root, "tables"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "inserted")), INT64_MAX);
    json_decref(root);
    hooks_free(h);
}
END_TEST

START_TEST(no_hooks_configured)
{
    struct config empty;
    memset(&empty, 0, sizeof(empty));
    struct hooks *h = hooks_new(&empty, reg);
    struct table_state states[] = {{.name = "contact", .change = CHANGE_CREATED}};
    hooks_after_table_schema(h, NULL, "Cust1", idx, states, 1);
    hooks_after_wipe(h, NULL, "Cust1", idx, states, 1);
    hooks_after_cycle(h, "Cust1", idx, NULL, 0);
    ck_assert_str_eq(view().last_hook, "");
    int status;
    ck_assert_int_eq(waitpid(-1, &status, WNOHANG), -1);
    hooks_free(h);
    hooks_free(NULL);
}
END_TEST

static Suite *hooks_suite(void)
{
    Suite *s = suite_create("hooks");
    TCase *tc = tcase_create("runner");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, runner_env_and_output);
    tcase_add_test(tc, runner_exit_status_and_exec_failure);
    tcase_add_test(tc, runner_kills_at_limit);
    tcase_add_test(tc, runner_kills_what_is_left_of_the_group);
    tcase_add_test(tc, spawn_detached_one_per_tenant);
    tcase_add_test(tc, spawn_stop_signal_ends_the_program);
    tcase_add_test(tc, hook_word_claims);
    tcase_add_test(tc, no_hooks_configured);
    suite_add_tcase(s, tc);
    TCase *sq = tcase_create("table_sql");
    tcase_set_timeout(sq, 30);
    tcase_add_checked_fixture(sq, sql_setup, teardown);
    tcase_add_test(sq, table_sql_selection_and_substitution);
    tcase_add_test(sq, table_sql_failure_recorded);
    tcase_add_test(sq, table_sql_unreadable_directory);
    tcase_add_test(sq, after_calls_run_the_programs);
    tcase_add_test(sq, cycle_summary_totals_held);
    suite_add_tcase(s, sq);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hooks_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
