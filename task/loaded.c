/* task/loaded: which schema each receiver's rows of a table were last loaded under, recorded in
 * the source (_somirror_loaded_schema: receiver URL, tenant, table, the hash of the schema as
 * sent), so that an Altered table gets its full load even when the cycle that was answered
 * Altered stopped before its Wipe: the next cycle is answered Unchanged, and only the record
 * tells that the rows were not reloaded (see replicate in cycle.c).
 *
 * run reads the source on a read-only connection; the record is written, only when a hash
 * changes (and before the Wipe of a table answered Altered that it does not tell of), on a
 * writable connection of its own opened for that moment and closed at once. A
 * source run cannot write gets a warning when the record is owed (a table answered Altered),
 * and everything else works as before. */
#include "task/task.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "proto/schema.h"

#define LOADED_TABLE TASK_RESERVED_PREFIX "loaded_schema"

void loaded_hash(const struct table_schema *t, char hash[SM_HASH_HEX + 1])
{
    struct table_schema copy = *t;
    struct arena arena;
    arena_init(&arena);
    schema_canonicalize(&copy, &arena);
    memcpy(hash, copy.hash, SM_HASH_HEX + 1);
    arena_free(&arena);
}

void loaded_hash_none(char hash[SM_HASH_HEX + 1])
{
    memset(hash, '0', SM_HASH_HEX);
    hash[SM_HASH_HEX] = '\0';
}

int loaded_lookup(sqlite3 *db, const char *receiver, const char *tenant, const char *table,
                  char hash[SM_HASH_HEX + 1])
{
    sqlite3_stmt *stmt = NULL;
    int found = 0;
    /* A source provisioned before the record existed has no such table: nothing recorded. */
    if (sqlite3_prepare_v2(db, "SELECT schema_hash FROM " LOADED_TABLE " WHERE receiver = ?1 AND "
                           "tenant = ?2 AND table_name = ?3", -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, receiver, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, table, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == SM_HASH_HEX) {
            memcpy(hash, sqlite3_column_text(stmt, 0), SM_HASH_HEX + 1);
            found = 1;
        }
    }
    sqlite3_finalize(stmt);
    return found ? 0 : -1;
}

static int record_all(sqlite3 *db, const char *receiver, const char *tenant,
                      const struct loaded_entry *entries, size_t n, char *err, size_t errlen)
{
    int rc = sql_exec(db, "BEGIN IMMEDIATE", err, errlen);
    if (rc != 0)
        return -1;
    rc = sql_exec(db, "CREATE TABLE IF NOT EXISTS " LOADED_TABLE " (receiver TEXT NOT NULL, "
                  "tenant TEXT NOT NULL, table_name TEXT NOT NULL COLLATE NOCASE, schema_hash TEXT "
                  "NOT NULL, PRIMARY KEY (receiver, tenant, table_name))", err, errlen);
    sqlite3_stmt *stmt = NULL;
    if (rc == 0 && sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO " LOADED_TABLE " VALUES (?1, ?2, ?3, ?4)",
                                      -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_text(stmt, 1, receiver, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, entries[i].table, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, entries[i].hash, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
            rc = -1;
        }
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    return sql_finish(db, rc, err, errlen);
}

void loaded_record(const char *db_path, const char *receiver, const char *tenant,
                   const struct loaded_entry *entries, size_t n)
{
    if (n == 0)
        return;
    char err[512] = "";
    sqlite3 *db = NULL;
    int rc = task_sqlite_open(db_path, SQLITE_OPEN_READWRITE, &db, err, sizeof err);
    if (rc == 0) {
        sqlite3_busy_timeout(db, 10000);
        rc = record_all(db, receiver, tenant, entries, n, err, sizeof err);
    }
    if (db)
        sqlite3_close(db);
    int owed = 0;
    for (size_t i = 0; i < n; i++)
        owed |= entries[i].owed;
    if (rc != 0 && owed)
        log_warn("tenant %s: cannot record in the source which schema the receiver's tables were "
                 "loaded under (%s): should a cycle stop between a table's Altered answer and its "
                 "Wipe, the next would not load that table in full", tenant, err);
    else if (rc != 0)
        log_debug("tenant %s: cannot record in the source which schema the receiver's tables were "
                  "loaded under (%s)", tenant, err);
}
