/* tests/unit/mssql_probe: a small driver for test layer 2 of the SQL Server store
 * (tests/integration/test_mssql_tds.py): runs store calls through store/mssql.c against the
 * server given on the command line (there, the TDS test peer tests/tds/tds_server.py) and prints
 * one line per step: "<step> ok <table>:<lsn>:<change or counts> ..." or
 * "<step> fault <FaultCode>: <message>". Steps: schema (TableSchema of table contact), wide
 * (TableSchema of table wide, WIDE_COLUMNS columns: a canonical text past 4,000 characters), rows
 * (RowData: I 1, I 2 with an empty name, U 1 with zeros past the digits, D 3; Lsn 10), list,
 * script (hooks.table_sql's "UPDATE {table} ..." on contact: "script ok" or "script failed: ..."),
 * exists ("exists 0" or "exists 1": whether the mirror database is there, making none), reset.
 * Tenant "acme"; the environment's MSSQL_PROBE_COLLATION is store.mssql.collation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "proto/schema.h"
#include "store/store.h"

static struct column contact_columns[] = {
    {.name = "contact_id", .type_text = "int"},
    {.name = "name", .type_text = "nvarchar(50)", .nullable = 1, .default_text = "(N'')"},
    {.name = "amount", .type_text = "decimal(18,4)", .default_text = "((0))"},
    {.name = "registered", .type_text = "datetime2(3)", .nullable = 1},
    {.name = "photo", .type_text = "varbinary(10)", .nullable = 1},
};
static char *contact_pk[] = {"contact_id"};
static char *contact_names[] = {"contact_id", "name", "amount", "registered", "photo"};

#define V(s) {.kind = RAW_TEXT, .data = s, .len = sizeof(s) - 1}
#define B(s) {.kind = RAW_BASE64, .data = s, .len = sizeof(s) - 1}
#define N {.kind = RAW_NULL, .data = NULL, .len = 0}
static struct raw_value row1[] = {V("1"), V("Acme"), V("1.5"), V("2026-01-02T03:04:05.123"),
                                  B("AAE=")};
static struct raw_value row2[] = {V("2"), V(""), V("0"), N, N};
static struct raw_value row3[] = {V("1"), V("Acme AS"), V("0002.250000000"),
                                  V("2026-01-02T03:04:05.1230000000"), N};
static struct raw_value row4[] = {V("3")};

enum { WIDE_COLUMNS = 200 };

/* TableSchema of table wide: c000 int (the key), then nvarchar(100) columns c001... */
static int wide_schema(struct store_tenant *t, struct arena *arena, struct table_state **states,
                       size_t *n, struct fault *f)
{
    struct column *cols = arena_calloc(arena, WIDE_COLUMNS, sizeof(*cols));
    for (size_t k = 0; k < WIDE_COLUMNS; k++) {
        char name[8];
        snprintf(name, sizeof(name), "c%03zu", k);
        cols[k].name = arena_strdup(arena, name);
        cols[k].type_text = k ? "nvarchar(100)" : "int";
        cols[k].nullable = k != 0;
    }
    static char *pk[] = {"c000"};
    struct table_schema table = {.name = "wide", .columns = cols, .ncolumns = WIDE_COLUMNS,
                                 .pk_names = pk, .npk = 1};
    struct cfg_strings none = {NULL, 0};
    schema_prepare(&table, "acme", &none, arena);
    return store_table_schema(t, &table, 1, arena, states, n, f);
}

static void print_states(const char *step, const struct table_state *s, size_t n)
{
    printf("%s ok", step);
    for (size_t i = 0; i < n; i++)
        printf(" %s:%lld:%s:%lld/%lld/%lld", s[i].name, (long long)s[i].lsn,
               table_change_name(s[i].change), (long long)s[i].inserted,
               (long long)s[i].updated, (long long)s[i].deleted);
    printf("\n");
}

static int step(struct store *store, const char *name)
{
    struct fault f;
    fault_clear(&f);
    struct arena arena;
    arena_init(&arena);
    int rc = -1;
    struct table_state *states = NULL;
    size_t n = 0;
    if (strcmp(name, "reset") == 0) {
        rc = store_reset(store, "acme", &f);
        if (rc == 0)
            printf("reset ok\n");
        goto done;
    }
    if (strcmp(name, "exists") == 0) {
        int exists = 0;
        rc = store_tenant_exists(store, "acme", &exists, &f);
        if (rc == 0)
            printf("exists %d\n", exists);
        goto done;
    }
    struct store_tenant *t = store_tenant(store, "acme", &f);
    if (!t)
        goto done;
    if (strcmp(name, "schema") == 0) {
        struct table_schema table = {.name = "contact", .columns = contact_columns,
                                     .ncolumns = 5, .pk_names = contact_pk, .npk = 1};
        struct cfg_strings none = {NULL, 0};
        schema_prepare(&table, "acme", &none, &arena);
        rc = store_table_schema(t, &table, 1, &arena, &states, &n, &f);
    } else if (strcmp(name, "wide") == 0) {
        rc = wide_schema(t, &arena, &states, &n, &f);
    } else if (strcmp(name, "rows") == 0) {
        struct row rows[] = {{'I', 0, 0, row1, 5}, {'I', 0, 0, row2, 5}, {'U', 0, 0, row3, 5},
                             {'D', 0, 0, row4, 1}};
        struct batch b = {"contact", contact_names, 5, rows, 4, 1, 10};
        rc = store_row_data(t, &b, 1, &arena, &states, &n, &f);
    } else if (strcmp(name, "script") == 0) {
        char err[512];
        rc = store_run_table_script(t, "contact", "UPDATE {table} SET name = N'x'", err, sizeof(err));
        printf(rc == 0 ? "script ok\n" : "script failed: %s\n", err);
        rc = 0;
        goto done;
    } else if (strcmp(name, "list") == 0) {
        struct table_meta *meta;
        rc = store_list_tables(t, &arena, &meta, &n, &f);
        if (rc == 0) {
            printf("list ok");
            for (size_t i = 0; i < n; i++)
                printf(" %s:%lld:%s", meta[i].name, (long long)meta[i].lsn, meta[i].hash);
            printf("\n");
        }
        goto done;
    } else {
        fprintf(stderr, "mssql_probe: unknown step %s\n", name);
        arena_free(&arena);
        return 2;
    }
    if (rc == 0)
        print_states(name, states, n);
done:
    if (rc != 0)
        printf("%s fault %s: %s\n", name, fault_code_name(f.code), f.message);
    fflush(stdout);
    arena_free(&arena);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mssql_probe SERVER USER PASSWORD STEP...\n");
        return 2;
    }
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.driver = STORE_MSSQL;
    cfg.lock_timeout = 5;
    cfg.mssql.server = argv[1];
    cfg.mssql.user = argv[2];
    cfg.mssql.password = argv[3];
    cfg.mssql.tds_version = "7.4";
    cfg.mssql.encrypt = "off";
    cfg.mssql.login_timeout = 5;
    cfg.mssql.query_timeout = 10;
    cfg.hooks.timeout = 2;   /* a table_sql script's limit, below query_timeout */
    cfg.mssql.max_connections = 16;
    cfg.mssql.collation = getenv("MSSQL_PROBE_COLLATION");
    char err[512];
    struct store *store = store_new(&cfg, err, sizeof(err));
    if (!store) {
        printf("open fault %s\n", err);
        return 1;
    }
    int rc = 0;
    for (int i = 4; i < argc && rc == 0; i++)
        rc = step(store, argv[i]);
    store_free(store);
    return rc;
}
