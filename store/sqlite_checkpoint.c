/* store/sqlite_checkpoint: WAL checkpoints on a helper thread (see sqlite_checkpoint.h).
 *
 * Why: a checkpoint copies the WAL's pages into the database file. For the ~1,000 pages of a
 * few 1 MB RowData calls that takes ~10 ms, half of it waiting for the writes; on the worker's
 * thread it held up every fifth call of a load by that much. SQLite lets a passive checkpoint
 * run on another connection while the tenant's writer goes on: the writer appends to the WAL,
 * the checkpoint copies what was committed before it began, and neither waits for the other.
 *
 * Threads: the worker's thread calls checkpointer_request/forget/free; the helper runs the
 * checkpoints, each on a connection of its own opened for it. queue, nqueued, running, started
 * and stop change only under mu, and every change is broadcast on cond. The helper never logs:
 * a hook's supervisor is forked from the worker while this thread may hold the log's lock. */
#include "store/sqlite_checkpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/xalloc.h"

enum { QUEUE_MAX = 64 };   /* files waiting; past that a caller checkpoints itself */

struct checkpointer {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    int started;
    int stop;
    char *queue[QUEUE_MAX];   /* paths, oldest first, each once */
    size_t nqueued;
    char *running;            /* the path being checkpointed, NULL between them */
};

static void checkpoint(const char *path)
{
    sqlite3 *db = NULL;
    /* No SQLITE_OPEN_CREATE: a file removed meanwhile stays removed. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX,
                        NULL) == SQLITE_OK) {
        /* Closing must leave the WAL alone even as the file's last connection: removing it
         * is the tenant connection's business. */
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        /* A connection learns that the file is in WAL mode from its first read; until then a
         * checkpoint does nothing. */
        sqlite3_exec(db, "PRAGMA schema_version", NULL, NULL, NULL);
        /* Passive: never waits for a reader or the writer. Whatever it could not copy is
         * copied by the next one, asked for at the next commit. */
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    sqlite3_close(db);
}

static void *checkpoint_thread(void *arg)
{
    struct checkpointer *cp = arg;
    pthread_mutex_lock(&cp->mu);
    for (;;) {
        while (!cp->stop && cp->nqueued == 0)
            pthread_cond_wait(&cp->cond, &cp->mu);
        if (cp->stop)
            break;
        cp->running = cp->queue[0];
        memmove(cp->queue, cp->queue + 1, --cp->nqueued * sizeof(cp->queue[0]));
        pthread_mutex_unlock(&cp->mu);
        checkpoint(cp->running);
        pthread_mutex_lock(&cp->mu);
        free(cp->running);
        cp->running = NULL;
        pthread_cond_broadcast(&cp->cond);
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

struct checkpointer *checkpointer_new(void)
{
    struct checkpointer *cp = xcalloc(1, sizeof(*cp));
    pthread_mutex_init(&cp->mu, NULL);
    pthread_cond_init(&cp->cond, NULL);
    return cp;
}

/* Under mu. Signals stay with the worker's own thread (its libevent loop handles them). */
static int start_thread(struct checkpointer *cp)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    cp->started = pthread_create(&cp->thread, NULL, checkpoint_thread, cp) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return cp->started ? 0 : -1;
}

static size_t queued_at(const struct checkpointer *cp, const char *path)
{
    size_t i = 0;
    while (i < cp->nqueued && strcmp(cp->queue[i], path) != 0)
        i++;
    return i;
}

int checkpointer_request(struct checkpointer *cp, const char *path)
{
    int rc = 0;
    pthread_mutex_lock(&cp->mu);
    if (!cp->started && start_thread(cp) != 0)
        rc = -1;
    else if (queued_at(cp, path) < cp->nqueued)
        rc = 0;
    else if (cp->nqueued == QUEUE_MAX)
        rc = -1;
    else
        cp->queue[cp->nqueued++] = xstrdup(path);
    pthread_cond_broadcast(&cp->cond);
    pthread_mutex_unlock(&cp->mu);
    return rc;
}

void checkpointer_forget(struct checkpointer *cp, const char *path)
{
    pthread_mutex_lock(&cp->mu);
    size_t i = queued_at(cp, path);
    if (i < cp->nqueued) {
        free(cp->queue[i]);
        memmove(cp->queue + i, cp->queue + i + 1, (--cp->nqueued - i) * sizeof(cp->queue[0]));
    }
    while (cp->running && strcmp(cp->running, path) == 0)
        pthread_cond_wait(&cp->cond, &cp->mu);
    pthread_mutex_unlock(&cp->mu);
}

void checkpointer_free(struct checkpointer *cp)
{
    if (!cp)
        return;
    pthread_mutex_lock(&cp->mu);
    cp->stop = 1;
    pthread_cond_broadcast(&cp->cond);
    pthread_mutex_unlock(&cp->mu);
    if (cp->started)
        pthread_join(cp->thread, NULL);
    for (size_t i = 0; i < cp->nqueued; i++)
        free(cp->queue[i]);
    pthread_cond_destroy(&cp->cond);
    pthread_mutex_destroy(&cp->mu);
    free(cp);
}
