/* store/sqlite_checkpoint: WAL checkpoints of a worker's SQLite mirrors on a helper thread, off
 * the calls' path (see sqlite_checkpoint.c). Used by store/sqlite.c only. */
#ifndef SOMIRROR_STORE_SQLITE_CHECKPOINT_H
#define SOMIRROR_STORE_SQLITE_CHECKPOINT_H
#include <stddef.h>
#include <sys/types.h>

struct checkpointer;

/* Whether path still names the file dev/ino (not removed, not replaced by a reset). */
int sqlite_file_is(const char *path, dev_t dev, ino_t ino);

/* No thread yet: it starts with the first request, so a process that never commits (the
 * master checking a config) never has one. */
struct checkpointer *checkpointer_new(void);

/* Queues a passive checkpoint of the database file at path, the file dev/ino that the caller's
 * connection has open (once, however often asked before it runs; a file found replaced by
 * then is left alone). -1 when no thread could be started or the queue is full: then the
 * caller checkpoints itself. failure gets what went wrong since the last request (a checkpoint
 * that failed, or the thread that could not start, said once), "" when nothing did: the
 * thread cannot log, the caller does. */
int checkpointer_request(struct checkpointer *cp, const char *path, dev_t dev, ino_t ino,
                         char *failure, size_t failure_len);

/* Returns once the thread neither runs nor will run a checkpoint of path (until asked again):
 * before the file is closed for good or removed. */
void checkpointer_forget(struct checkpointer *cp, const char *path);

/* Stops the thread (a checkpoint under way is finished, queued ones are dropped) and frees cp. */
void checkpointer_free(struct checkpointer *cp);

#endif
