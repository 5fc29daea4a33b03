/* store/drivers_pending: placeholders for the PostgreSQL and SQL Server drivers until
 * store/postgresql.c and store/mssql.c land (then this file is removed). A driver without
 * backend_open is refused by store_new ("store driver X is not available in this build"). */
#include "store/store.h"

const struct store_driver store_driver_postgresql = {.name = "postgresql"};
const struct store_driver store_driver_mssql = {.name = "mssql"};
