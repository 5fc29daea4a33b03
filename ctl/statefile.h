/* ctl/statefile: the operator's state file (config state_file), so that pauses and the resyncs
 * and resets not yet carried out survive reloads and restarts. Written by the master after
 * every operator request, and again once the requests it holds have been carried out; read
 * once by the master at start. Contents: one JSON object {"paused_all": false, "paused":
 * ["Cust1", ...], "reset": ["Cust2", ...], "resync": {"Cust3": "*", "Cust4": "contact,person"}}. */
#ifndef SOMIRROR_CTL_STATEFILE_H
#define SOMIRROR_CTL_STATEFILE_H
#include <stddef.h>

struct registry;

/* Writes the global pause flag, every paused tenant and every tenant's pending requests,
 * atomically (temporary file in the same directory, fsync, rename). 0, or -1 with err. */
int statefile_save(const char *path, const struct registry *reg, char *err, size_t errlen);
/* Writes the file again if the requests it holds are no longer what is pending (a worker
 * carried them out), or if the last write failed (a full disk: what an operator asked for
 * then is written once it can be): the master, once a second. 0 when nothing was to be done
 * or it was written; -1 with err. */
int statefile_refresh(const char *path, const struct registry *reg, char *err, size_t errlen);
/* Whether the last write failed, so that the file is behind what is in force. */
int statefile_behind(void);
/* The tenants the file keeps (paused, or with a resync or reset pending), as reg holds them now;
 * with tenant, whether it is one of them (0 or 1). The next start restores them into a registry of
 * tenants.max entries, and refuses to start when they do not fit. */
size_t statefile_kept(const struct registry *reg);
int statefile_keeps(struct registry *reg, const char *tenant);
/* Puts the pauses and requests recorded in path into reg. A missing file is no error (nothing
 * is paused or pending); an unreadable or malformed one, or a tenant that does not fit the
 * registry, is -1 with err. Invalid tenant names are skipped with a warning. */
int statefile_restore(const char *path, struct registry *reg, char *err, size_t errlen);

#endif
