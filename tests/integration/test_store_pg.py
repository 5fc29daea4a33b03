#!/usr/bin/env python3
"""The store conformance suite (tests/unit/test_store) against a throwaway PostgreSQL 15
(pgserver.py, its default encoding SQL_ASCII; also on TCP, SOMIRROR_TEST_PG_TCP_CONNINFO), and
a second one that takes 4 connections (SOMIRROR_TEST_PG_FEW_CONNINFO): every test but the
sqlite_* ones must pass with the postgresql driver. Skipped (77) when PostgreSQL 15 is not
installed. SOMIRROR_TEST_STORE_BINARY overrides the suite's path."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import pgserver  # noqa: E402


def main():
    pgserver.require()
    binary = (os.environ.get("SOMIRROR_TEST_STORE_BINARY") or
              os.path.join(h.BUILDDIR, "tests", "unit", "test_store"))
    if not os.access(binary, os.X_OK):
        h.fail("%s is not built" % binary)
    # A cluster whose default encoding is not UTF-8: the store makes its mirrors UTF-8 anyway.
    # Also on TCP: pg_tcp_keepalives. A second one with few connections: pg_too_many_clients.
    with pgserver.PgServer(encoding="SQL_ASCII", tcp=True) as pg, \
            pgserver.PgServer(prefix="somirror-pg-few-", max_connections=4) as few:
        env = dict(os.environ, SOMIRROR_TEST_STORE_DRIVER="postgresql",
                   SOMIRROR_TEST_PG_CONNINFO=pg.conninfo(),
                   SOMIRROR_TEST_PG_TCP_CONNINFO=pg.tcp_conninfo(),
                   SOMIRROR_TEST_PG_FEW_CONNINFO=few.conninfo(), CK_DEFAULT_TIMEOUT="120")
        proc = subprocess.run([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=900)
        out = proc.stdout.decode(errors="replace")
        sys.stdout.write(out)
        if proc.returncode != 0:
            h.fail("test_store on PostgreSQL exited %d%s" % (proc.returncode, pg.log_tail()))
        if "100%" not in out:
            h.fail("test_store on PostgreSQL did not run every test")
        # the suite really wrote to this server
        tenants = pg.psql("SELECT count(*) FROM pg_database WHERE datname ~ '^Mirror_[0-9]+T'")
        assert int(tenants) > 0, tenants
    print("PASS: conformance suite on PostgreSQL")


if __name__ == "__main__":
    main()
