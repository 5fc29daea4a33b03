/* store/sqlite_checkpoint: WAL checkpoints on a helper thread (see sqlite_checkpoint.h).
 *
 * Why: a checkpoint copies the WAL's pages into the database file. For the ~1,000 pages of a
 * few 1 MB RowData calls that takes ~10 ms, half of it waiting for the writes; on the worker's
 * thread it held up every fifth call of a load by that much. SQLite lets a passive checkpoint
 * run on another connection while the tenant's writer goes on: the writer appends to the WAL,
 * the checkpoint copies what was committed before it began, and neither waits for the other.
 *
 * Files: the helper opens a file by path outside the tenant's lock, so another worker may
 * reset the tenant (remove the files, create new ones) meanwhile. A checkpoint pairing the old
 * main file with the new file's WAL would mark the new WAL's pages as copied and lose them, so
 * the helper goes on only if the path names the file the tenant's connection had open both
 * before it opens it and after its first read has opened the WAL and shared memory. A reset
 * by this worker closes the tenant's connection first, which waits for the helper
 * (checkpointer_forget).
 *
 * Threads: the worker's thread calls checkpointer_request/forget/free; the helper runs the
 * checkpoints, each on a connection of its own opened for it. queue, nqueued, running, started,
 * stop and failure change only under mu, and every change is broadcast on cond. The helper
 * never logs (a hook's supervisor is forked from the worker while this thread may hold the
 * log's lock): it keeps its latest failure for the next request to hand to the worker. */
#include "store/sqlite_checkpoint.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "common/xalloc.h"

enum { QUEUE_MAX = 64 };   /* files waiting; past that a caller checkpoints itself */

struct job {
    char *path;   /* NULL: none */
    dev_t dev;
    ino_t ino;
};

struct checkpointer {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    int started;                   /* 1 running, -1 could not start (not tried again) */
    int stop;
    char failure[256];             /* not yet handed over; "" when none */
    struct job queue[QUEUE_MAX];   /* oldest first, each path once */
    size_t nqueued;
    struct job running;            /* the checkpoint under way */
};

int sqlite_file_is(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

static int still_the_file(const struct job *job)
{
    return sqlite_file_is(job->path, job->dev, job->ino);
}

/* Checkpoints job's file; "" in failure, or what went wrong. A file replaced or removed
 * meanwhile is no failure: it is not the tenant's any more. */
static void checkpoint(const struct job *job, char *failure, size_t len)
{
    sqlite3 *db = NULL;
    int rc = SQLITE_OK;
    failure[0] = '\0';
    /* No SQLITE_OPEN_CREATE: a file removed meanwhile stays removed. */
    if (still_the_file(job) &&
        (rc = sqlite3_open_v2(job->path, &db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX,
                              NULL)) == SQLITE_OK) {
        /* Closing must leave the WAL alone even as the file's last connection: removing it
         * is the tenant connection's business. */
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        /* A connection learns that the file is in WAL mode from its first read, which also
         * opens the WAL and shared memory by name; until then a checkpoint does nothing. */
        rc = sqlite3_exec(db, "PRAGMA schema_version", NULL, NULL, NULL);
        /* Passive: never waits for a reader or the writer. Whatever it could not copy is
         * copied by the next one, asked for at the next commit. */
        if (rc == SQLITE_OK && still_the_file(job))
            rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        snprintf(failure, len, "checkpoint of %s: %s", job->path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
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
        char failure[sizeof(cp->failure)];
        checkpoint(&cp->running, failure, sizeof(failure));
        pthread_mutex_lock(&cp->mu);
        if (failure[0])
            memcpy(cp->failure, failure, sizeof(failure));
        free(cp->running.path);
        cp->running.path = NULL;
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
    int rc = pthread_create(&cp->thread, NULL, checkpoint_thread, cp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    cp->started = rc == 0 ? 1 : -1;
    if (rc != 0)
        snprintf(cp->failure, sizeof(cp->failure),
                 "cannot start the checkpoint thread (%s): every commit past the WAL's "
                 "threshold checkpoints itself", strerror(rc));
    return rc == 0 ? 0 : -1;
}

static size_t queued_at(const struct checkpointer *cp, const char *path)
{
    size_t i = 0;
    while (i < cp->nqueued && strcmp(cp->queue[i].path, path) != 0)
        i++;
    return i;
}

int checkpointer_request(struct checkpointer *cp, const char *path, dev_t dev, ino_t ino,
                         char *failure, size_t failure_len)
{
    int rc = 0;
    pthread_mutex_lock(&cp->mu);
    size_t i = queued_at(cp, path);
    if (cp->started < 0 || (!cp->started && start_thread(cp) != 0)) {
        rc = -1;
    } else if (i < cp->nqueued) {   /* the file the tenant has open now */
        cp->queue[i].dev = dev;
        cp->queue[i].ino = ino;
    } else if (cp->nqueued == QUEUE_MAX) {
        rc = -1;
    } else {
        cp->queue[cp->nqueued++] = (struct job){.path = xstrdup(path), .dev = dev, .ino = ino};
    }
    snprintf(failure, failure_len, "%s", cp->failure);
    cp->failure[0] = '\0';
    pthread_cond_broadcast(&cp->cond);
    pthread_mutex_unlock(&cp->mu);
    return rc;
}

void checkpointer_forget(struct checkpointer *cp, const char *path)
{
    pthread_mutex_lock(&cp->mu);
    size_t i = queued_at(cp, path);
    if (i < cp->nqueued) {
        free(cp->queue[i].path);
        memmove(cp->queue + i, cp->queue + i + 1, (--cp->nqueued - i) * sizeof(cp->queue[0]));
    }
    while (cp->running.path && strcmp(cp->running.path, path) == 0)
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
    if (cp->started > 0)
        pthread_join(cp->thread, NULL);
    for (size_t i = 0; i < cp->nqueued; i++)
        free(cp->queue[i].path);
    pthread_cond_destroy(&cp->cond);
    pthread_mutex_destroy(&cp->mu);
    free(cp);
}
