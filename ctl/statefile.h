/* ctl/statefile: the pause state file (config state_file), so that pauses survive reloads and
 * restarts. Written by the master after every pause/resume, read once by the master at start.
 * Contents: one JSON object {"paused_all": false, "paused": ["Cust1", ...]}. */
#ifndef SOMIRROR_CTL_STATEFILE_H
#define SOMIRROR_CTL_STATEFILE_H
#include <stddef.h>

struct registry;

/* Writes the global pause flag and every paused tenant, atomically (temporary file in the same
 * directory, fsync, rename). 0, or -1 with err. */
int statefile_save(const char *path, const struct registry *reg, char *err, size_t errlen);
/* Puts the pauses recorded in path into reg. A missing file is no error (nothing is paused);
 * an unreadable or malformed one, or a tenant that does not fit the registry, is -1 with err.
 * Invalid tenant names are skipped with a warning. */
int statefile_restore(const char *path, struct registry *reg, char *err, size_t errlen);

#endif
