/* store/sqlite_walbuf: the gathering VFS over SQLite's default one (see sqlite_walbuf.h).
 *
 * Each file opened through it wraps the default VFS's file, allocated right after it, and
 * forwards every call to it, but for these. A WAL file's writes that follow one another are
 * copied into its thread's buffer (the thread-local `pending`: at most one WAL file's writes,
 * contiguous from `start`) and written in one pwrite on a descriptor of our own when the
 * buffer is full, when a write does not follow on, and before anything that reads or measures
 * that file (xRead, xFileSize, xTruncate, xSync, xClose). A database file's xShmBarrier, which
 * SQLite calls between a commit's frames and the wal-index header that publishes them, and its
 * release of the WAL's write lock (after a commit or a rollback) write out the thread's buffer
 * first, whatever file it holds: gathered writes never outlive the write lock they were made
 * under.
 *
 * Threads: a connection, and so each of its files, is used by one thread at a time, and a
 * thread's buffer holds only what that thread wrote: only it touches `pending`. Files are never
 * shared between threads while writes are gathered (a connection's statement is not left
 * half-done on one thread and resumed on another).
 *
 * Errors: the disk space a buffer may fill is reserved when it starts (fallocate, the size
 * kept), so that a full disk is told at the write, as the default VFS would tell it. A commit's
 * frames are written out as soon as its last frame is in (the frame whose header gives the
 * database's size after the commit, written right before its page), where a failure is still
 * told to SQLite, which then rolls the transaction back. The barrier cannot fail: a write that
 * fails there all the same (only frames rewritten after the commit frame can be left then)
 * ends the process before the commit is visible, so that no reader ever sees frames that are
 * not in the file. */
#include "store/sqlite_walbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"

#define WALBUF_NAME "somirror-walbuf"
#define WALBUF_BYTES (256 * 1024)   /* 62 frames of 4 KiB pages and their headers */

struct wb_file {
    sqlite3_file base;
    int fd;                        /* a WAL file's own descriptor for gathered writes; -1: none */
    sqlite3_int64 commit_page_at;  /* where the commit frame's page goes, once its header is
                                      written; -1 */
    sqlite3_file *real;
};

#define WAL_FRAME_HEADER 24

/* Whether a write is a WAL frame header whose second field, the database's size in pages after
 * a commit, is set: the header of a commit's last frame. */
static int commit_header(const unsigned char *data, size_t n)
{
    return n == WAL_FRAME_HEADER && (data[4] | data[5] | data[6] | data[7]) != 0;
}

static sqlite3_vfs *real_vfs;
static sqlite3_vfs walbuf_vfs;

static _Thread_local struct {
    struct wb_file *file;    /* whose writes the buffer holds, or NULL */
    sqlite3_int64 start;
    size_t len;
    unsigned char *data;     /* WALBUF_BYTES, the thread's, made at its first gathered write */
} pending;

/* Writes the thread's gathered writes out. SQLITE_OK, or an I/O error (what they held is
 * dropped: SQLite rolls the transaction back). */
static int flush_pending(void)
{
    struct wb_file *f = pending.file;
    const unsigned char *p = pending.data;
    size_t left = pending.len;
    sqlite3_int64 at = pending.start;
    pending.file = NULL;
    pending.len = 0;
    while (f && left > 0) {
        ssize_t n = pwrite(f->fd, p, left, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errno == ENOSPC || errno == EDQUOT || errno == EFBIG ? SQLITE_FULL : SQLITE_IOERR_WRITE;
        p += n;
        left -= (size_t)n;
        at += n;
    }
    return SQLITE_OK;
}

/* Writes out the buffer if it holds f's writes. */
static int flush_file(struct wb_file *f)
{
    return pending.file == f ? flush_pending() : SQLITE_OK;
}

#define REAL(file) (((struct wb_file *)(file))->real)

/* Adds a write to the thread's buffer, or makes it (after what the buffer holds) where it
 * cannot be gathered. */
static int gather(struct wb_file *f, const void *data, size_t n, sqlite3_int64 off)
{
    int amt = (int)n;
    if (pending.file == f && off == pending.start + (sqlite3_int64)pending.len &&
        pending.len + n <= WALBUF_BYTES) {
        memcpy(pending.data + pending.len, data, n);
        pending.len += n;
        return SQLITE_OK;
    }
    int rc = flush_pending();
    if (rc != SQLITE_OK)
        return rc;
    if (f->fd < 0 || n > WALBUF_BYTES / 2 ||
        (!pending.data && !(pending.data = malloc(WALBUF_BYTES))))
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    /* The room the buffer may fill, reserved now. Where it cannot be (a full disk, or a file
     * system without fallocate), this write goes as the default VFS makes it, and says why. */
    if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, WALBUF_BYTES) != 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS) {
            close(f->fd);
            f->fd = -1;
        }
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    }
    memcpy(pending.data, data, n);
    pending.file = f;
    pending.start = off;
    pending.len = n;
    return SQLITE_OK;
}

static int wal_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
    struct wb_file *f = (struct wb_file *)file;
    int rc = gather(f, data, (size_t)amt, off);
    if (rc != SQLITE_OK)
        return rc;
    if (commit_header(data, (size_t)amt)) {
        f->commit_page_at = off + amt;
    } else if (off == f->commit_page_at) {   /* the commit's frames are all in */
        f->commit_page_at = -1;
        return flush_file(f);
    }
    return SQLITE_OK;
}

static int wal_read(sqlite3_file *file, void *data, int amt, sqlite3_int64 off)
{
    int rc = flush_file((struct wb_file *)file);
    return rc != SQLITE_OK ? rc : REAL(file)->pMethods->xRead(REAL(file), data, amt, off);
}

static int wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    int rc = flush_file((struct wb_file *)file);
    return rc != SQLITE_OK ? rc : REAL(file)->pMethods->xTruncate(REAL(file), size);
}

static int wal_sync(sqlite3_file *file, int flags)
{
    int rc = flush_file((struct wb_file *)file);
    return rc != SQLITE_OK ? rc : REAL(file)->pMethods->xSync(REAL(file), flags);
}

static int wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    int rc = flush_file((struct wb_file *)file);
    return rc != SQLITE_OK ? rc : REAL(file)->pMethods->xFileSize(REAL(file), size);
}

static int file_close(sqlite3_file *file)
{
    struct wb_file *f = (struct wb_file *)file;
    flush_file(f);   /* at a close, only writes of a transaction not committed can be left */
    if (f->fd >= 0)
        close(f->fd);
    return f->real->pMethods->xClose(f->real);   /* installed only over an open file */
}

/* Between a commit's frames and the header that publishes them: the frames go to the file
 * first. A failure here cannot be told to SQLite, and going on would publish frames that are
 * not there. */
static void main_shm_barrier(sqlite3_file *file)
{
    if (flush_pending() != SQLITE_OK) {
        log_error("sqlite: cannot write a commit's WAL frames: %s; stopping before the commit is "
                  "visible", strerror(errno));
        abort();
    }
    REAL(file)->pMethods->xShmBarrier(REAL(file));
}

/* SQLite takes and releases the WAL's write lock (slot 0 of the wal-index's locks, exclusive)
 * on the database file. Released after a rollback, the thread's buffer may still hold frames
 * the transaction spilled: they are written out now, where the default VFS wrote them, while no
 * other writer (another connection, thread or process) can have put its own frames there;
 * gathered any longer, they would later be written over that writer's committed frames. A
 * failure is no harm: such frames are past the WAL's end. (After a commit the buffer is
 * empty: its frames went at the commit frame and the barrier.) */
static int main_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    if (offset == 0 && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE))
        flush_pending();
    return REAL(file)->pMethods->xShmLock(REAL(file), offset, n, flags);
}

/* ---- the calls forwarded as they are ---- */

static int fwd_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
    return REAL(file)->pMethods->xWrite(REAL(file), data, amt, off);
}
static int fwd_read(sqlite3_file *file, void *data, int amt, sqlite3_int64 off)
{
    return REAL(file)->pMethods->xRead(REAL(file), data, amt, off);
}
static int fwd_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    return REAL(file)->pMethods->xTruncate(REAL(file), size);
}
static int fwd_sync(sqlite3_file *file, int flags)
{
    return REAL(file)->pMethods->xSync(REAL(file), flags);
}
static int fwd_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    return REAL(file)->pMethods->xFileSize(REAL(file), size);
}
static int fwd_lock(sqlite3_file *file, int lock)
{
    return REAL(file)->pMethods->xLock(REAL(file), lock);
}
static int fwd_unlock(sqlite3_file *file, int lock)
{
    return REAL(file)->pMethods->xUnlock(REAL(file), lock);
}
static int fwd_check_reserved_lock(sqlite3_file *file, int *out)
{
    return REAL(file)->pMethods->xCheckReservedLock(REAL(file), out);
}
static int fwd_file_control(sqlite3_file *file, int op, void *arg)
{
    return REAL(file)->pMethods->xFileControl(REAL(file), op, arg);
}
static int fwd_sector_size(sqlite3_file *file)
{
    return REAL(file)->pMethods->xSectorSize(REAL(file));
}
static int fwd_device_characteristics(sqlite3_file *file)
{
    return REAL(file)->pMethods->xDeviceCharacteristics(REAL(file));
}
static int fwd_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out)
{
    return REAL(file)->pMethods->xShmMap(REAL(file), region, size, extend, out);
}
static int fwd_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return REAL(file)->pMethods->xShmLock(REAL(file), offset, n, flags);
}
static void fwd_shm_barrier(sqlite3_file *file)
{
    REAL(file)->pMethods->xShmBarrier(REAL(file));
}
static int fwd_shm_unmap(sqlite3_file *file, int delete_flag)
{
    return REAL(file)->pMethods->xShmUnmap(REAL(file), delete_flag);
}
static int fwd_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **out)
{
    return REAL(file)->pMethods->xFetch(REAL(file), off, amt, out);
}
static int fwd_unfetch(sqlite3_file *file, sqlite3_int64 off, void *page)
{
    return REAL(file)->pMethods->xUnfetch(REAL(file), off, page);
}

/* Version 3 (shared memory, memory-mapped reads): files are opened through this VFS only over
 * a default VFS whose files have it (unix). */
static const sqlite3_io_methods wal_methods = {
    3, file_close, wal_read, wal_write, wal_truncate, wal_sync, wal_file_size, fwd_lock, fwd_unlock,
    fwd_check_reserved_lock, fwd_file_control, fwd_sector_size, fwd_device_characteristics,
    fwd_shm_map, fwd_shm_lock, fwd_shm_barrier, fwd_shm_unmap, fwd_fetch, fwd_unfetch,
};
static const sqlite3_io_methods other_methods = {
    3, file_close, fwd_read, fwd_write, fwd_truncate, fwd_sync, fwd_file_size, fwd_lock, fwd_unlock,
    fwd_check_reserved_lock, fwd_file_control, fwd_sector_size, fwd_device_characteristics,
    fwd_shm_map, main_shm_lock, main_shm_barrier, fwd_shm_unmap, fwd_fetch, fwd_unfetch,
};

static int walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                       int *out_flags)
{
    (void)vfs;
    struct wb_file *f = (struct wb_file *)file;
    f->base.pMethods = NULL;
    f->fd = -1;
    f->commit_page_at = -1;
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (!f->real->pMethods)
        return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
    if (rc == SQLITE_OK && f->real->pMethods->iVersion < 3)   /* not a VFS this one can wrap */
        rc = SQLITE_CANTOPEN;
    if (rc != SQLITE_OK) {
        f->real->pMethods->xClose(f->real);
        return rc;
    }
    int wal = (flags & SQLITE_OPEN_WAL) && name && !(flags & SQLITE_OPEN_READONLY);
    if (wal)   /* where this fails, the WAL's writes are made as the default VFS makes them */
        f->fd = open(name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    f->base.pMethods = wal ? &wal_methods : &other_methods;
    return SQLITE_OK;
}

/* ---- the VFS's own calls, the default VFS's ---- */

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return real_vfs->xDlOpen(real_vfs, name);
}
static void vfs_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs->xDlError(real_vfs, n, out);
}
static void (*vfs_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void)
{
    (void)vfs;
    return real_vfs->xDlSym(real_vfs, handle, symbol);
}
static void vfs_dl_close(sqlite3_vfs *vfs, void *handle)
{
    (void)vfs;
    real_vfs->xDlClose(real_vfs, handle);
}
static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int vfs_sleep(sqlite3_vfs *vfs, int microseconds)
{
    (void)vfs;
    return real_vfs->xSleep(real_vfs, microseconds);
}
static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int vfs_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xGetLastError(real_vfs, n, out);
}
static int vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static pthread_once_t registered = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void register_vfs(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 2)
        return;
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wb_file) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = WALBUF_NAME,
        .xOpen = walbuf_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_pathname,
        .xDlOpen = vfs_dl_open,
        .xDlError = vfs_dl_error,
        .xDlSym = vfs_dl_sym,
        .xDlClose = vfs_dl_close,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_get_last_error,
        .xCurrentTimeInt64 = vfs_current_time_int64,
    };
    register_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

const char *sqlite_walbuf_vfs(void)
{
    pthread_once(&registered, register_vfs);
    return register_rc == SQLITE_OK ? WALBUF_NAME : NULL;
}
