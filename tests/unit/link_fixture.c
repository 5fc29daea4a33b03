/* tests/unit/link_fixture: see link_fixture.h. */
#include "tests/unit/link_fixture.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void link_fixture_check(const char *dir, const char *name, link_fixture_open open)
{
    char path[512], victim[512], absent[512], err[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(absent, sizeof(absent), "%s/absent", dir);
    FILE *f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(symlink(victim, path), 0);
    ck_assert_int_eq(open(path, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "a symbolic link is there (refused)"), "%s", err);
    unlink(path);
    ck_assert_int_eq(symlink(absent, path), 0);
    ck_assert_int_eq(open(path, err, sizeof(err)), -1);
    ck_assert_int_eq(access(absent, F_OK), -1);
    unlink(path);
    ck_assert_int_eq(link(victim, path), 0);
    ck_assert_int_eq(open(path, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "other hard links"), "%s", err);
    unlink(path);
    char text[32] = "";
    f = fopen(victim, "r");
    ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
    fclose(f);
    ck_assert_str_eq(text, "precious\n");
    unlink(victim);
}
