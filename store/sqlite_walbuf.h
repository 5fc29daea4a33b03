/* store/sqlite_walbuf: a SQLite VFS over the default one that gathers a transaction's writes to
 * a WAL file into large writes. SQLite writes each WAL frame with two pwrite calls (its 24-byte
 * header, then the page): a 1 MB RowData call's commit makes some 500 system calls on the
 * worker's own thread, a third of its time on the load benchmark; gathered, they are a few.
 * The files, and what is in them when a commit returns, are exactly what the default VFS makes.
 *
 * Needs WAL mode with the normal locking mode (never PRAGMA locking_mode=EXCLUSIVE, whose
 * wal-index lives in heap memory): the gathered writes of a thread are written out before a
 * commit becomes visible, at the barrier SQLite puts between a commit's frames and the
 * wal-index header that makes them part of the database. */
#ifndef SOMIRROR_STORE_SQLITE_WALBUF_H
#define SOMIRROR_STORE_SQLITE_WALBUF_H

/* The VFS's name for sqlite3_open_v2, registered once per process (not as the default) by
 * sqlite_walbuf_vfs(); NULL when it could not be (then open with the default VFS). */
const char *sqlite_walbuf_vfs(void);

#endif
