/* tests/unit/test_master: the master's pure parts: command line, respawn throttle, pid file (and
 * its race with a somirrord that exits). */
#include <check.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master/master.h"
#include "master/pidfile.h"
#include "master/throttle.h"
#include "tests/unit/link_fixture.h"

static int parse(struct master_options *opts, char *err, size_t errlen, int argc, ...)
{
    char *argv[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    return master_parse_args(argc, argv, opts, err, errlen);
}

START_TEST(test_args)
{
    struct master_options opts;
    char err[128];
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 1, "somirrord"), 0);
    ck_assert_str_eq(opts.config_path, SYSCONFDIR "/somirrord.yaml");
    ck_assert_int_eq(opts.foreground, 0);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 4, "somirrord", "-f", "-c", "/x.yaml"), 0);
    ck_assert_str_eq(opts.config_path, "/x.yaml");
    ck_assert_int_eq(opts.foreground, 1);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "-t"), 0);
    ck_assert_int_eq(opts.test_config, 1);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "-c"), -1);
    ck_assert(strstr(err, "-c") != NULL);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "-z"), -1);
    ck_assert(strstr(err, "-z") != NULL);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "extra"), -1);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "--help"), 0);
    ck_assert_int_eq(opts.show_help, 1);
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 4, "somirrord", "--version", "--config", "/y.yaml"), 0);
    ck_assert_int_eq(opts.show_version, 1);
    ck_assert_str_eq(opts.config_path, "/y.yaml");
    ck_assert_int_eq(parse(&opts, err, sizeof(err), 2, "somirrord", "--bogus"), -1);
    ck_assert_str_eq(err, "unknown option --bogus");
}
END_TEST

START_TEST(test_throttle)
{
    struct throttle t = {0};
    ck_assert_int_eq(throttle_worker_exited(&t, 5000), 0);
    ck_assert_int_eq(throttle_worker_exited(&t, 10), 100);
    ck_assert_int_eq(throttle_worker_exited(&t, 10), 200);
    ck_assert_int_eq(throttle_worker_exited(&t, 999), 400);
    for (int i = 0; i < 20; i++)
        throttle_worker_exited(&t, 0);
    ck_assert_int_eq(t.delay_ms, THROTTLE_MAX_MS);
    ck_assert_int_eq(throttle_worker_exited(&t, 0), THROTTLE_MAX_MS);
    ck_assert_int_eq(throttle_worker_exited(&t, 1000), 0);
    throttle_worker_exited(&t, 0);
    throttle_reset(&t);
    ck_assert_int_eq(throttle_worker_exited(&t, 0), 100);
}
END_TEST

START_TEST(test_pidfile)
{
    char dir[] = "/tmp/test_master.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/x.pid", dir);

    /* A stale file (no lock) is taken over. */
    FILE *f = fopen(path, "w");
    fputs("999999\n", f);
    fclose(f);
    struct pidfile pf;
    ck_assert_int_eq(pidfile_acquire(&pf, path, err, sizeof(err)), 0);
    ck_assert_int_eq(pidfile_write(&pf, getpid(), err, sizeof(err)), 0);

    /* Another process sees it held and is refused, naming us. */
    pid_t child = fork();
    if (child == 0) {
        struct pidfile other;
        char msg[256];
        int rc = pidfile_acquire(&other, path, msg, sizeof(msg));
        char expect[64];
        snprintf(expect, sizeof(expect), "pid %ld", (long)getppid());
        _exit(rc == -1 && strstr(msg, "already running") && strstr(msg, expect) ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    char text[32] = "";
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
    fclose(f);
    ck_assert_int_eq(atol(text), (long)getpid());

    pidfile_release(&pf);
    ck_assert_int_eq(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/missing/x.pid", dir);
    ck_assert_int_eq(pidfile_acquire(&pf, path, err, sizeof(err)), -1);
    ck_assert(strstr(err, "missing") != NULL);
    rmdir(dir);
}
END_TEST

/* The race of two starts on one pid file: this test's fcntl, which stands in for the C
 * library's, runs before_lock once, just before the next lock taken (F_SETLK), then goes on
 * to the system call. */
static void (*before_lock)(void);

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (cmd == F_SETLK && before_lock) {
        void (*hook)(void) = before_lock;
        before_lock = NULL;
        hook();
    }
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

static int holder_release[2];
static pid_t holder;

/* The somirrord that held the pid file exits: removes the file, then closes (and so unlocks) it. */
static void holder_exits(void)
{
    ck_assert_int_eq(write(holder_release[1], "x", 1), 1);
    int status;
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A start that opens the pid file of a somirrord that exits before the start locks it: the
 * lock it then gets is on a removed file, which keeps no third one out, and the running
 * somirrord would have no pid file. The start locks the file at the path instead. */
START_TEST(test_pidfile_removed_before_lock)
{
    char dir[] = "/tmp/test_master.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/x.pid", dir);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(holder_release), 0);
    holder = fork();
    if (holder == 0) {
        struct pidfile pf;
        char byte;
        if (pidfile_acquire(&pf, path, err, sizeof(err)) != 0 || write(ready[1], "x", 1) != 1 ||
            read(holder_release[0], &byte, 1) != 1)
            _exit(1);
        pidfile_release(&pf);
        _exit(0);
    }
    char byte;
    ck_assert_int_eq(read(ready[0], &byte, 1), 1);

    before_lock = holder_exits;
    struct pidfile pf;
    ck_assert_int_eq(pidfile_acquire(&pf, path, err, sizeof(err)), 0);
    ck_assert_ptr_null(before_lock);
    struct stat locked, named;
    ck_assert_int_eq(fstat(pf.fd, &locked), 0);
    ck_assert_msg(stat(path, &named) == 0, "the locked pid file is not at %s", path);
    ck_assert(locked.st_dev == named.st_dev && locked.st_ino == named.st_ino);
    pidfile_release(&pf);
    for (int i = 0; i < 2; i++) {
        close(ready[i]);
        close(holder_release[i]);
    }
    rmdir(dir);
}
END_TEST

static int acquire_pidfile(const char *path, char *err, size_t errlen)
{
    struct pidfile pf;
    if (pidfile_acquire(&pf, path, err, errlen) != 0)
        return -1;
    pidfile_release(&pf);
    return 0;
}

/* The pid file's directory may be the service user's, and root opens the file: a link put there
 * is refused (link_fixture). */
START_TEST(test_pidfile_refuses_links)
{
    char dir[] = "/tmp/test_master.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    link_fixture_check(dir, "x.pid", acquire_pidfile);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("master");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_args);
    tcase_add_test(tc, test_throttle);
    tcase_add_test(tc, test_pidfile);
    tcase_add_test(tc, test_pidfile_removed_before_lock);
    tcase_add_test(tc, test_pidfile_refuses_links);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
