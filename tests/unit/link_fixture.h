/* tests/unit/link_fixture: the check that a file root opens in a directory the service's user
 * may write (the pid file, the log file) refuses a link planted at its path, symbolic,
 * dangling or hard, and neither writes nor makes what it points at. */
#ifndef SOMIRROR_TESTS_UNIT_LINK_FIXTURE_H
#define SOMIRROR_TESTS_UNIT_LINK_FIXTURE_H
#include <stddef.h>

/* Opens path as the code under test does: 0 when taken (and given up again), -1 with err. */
typedef int (*link_fixture_open)(const char *path, char *err, size_t errlen);

/* Plants each kind of link at dir/name (dir exists) and asserts that open refuses it, with
 * err naming why; the victim file it points at keeps its contents, and a dangling link's
 * target is not made. Leaves dir as it found it. */
void link_fixture_check(const char *dir, const char *name, link_fixture_open open);

#endif
