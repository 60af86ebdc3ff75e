"""A real PostgreSQL for every test.

Without TEST_DATABASE_URL the suite starts an embedded PostgreSQL in a
temporary folder. Either way it migrates one template database per run, and
every test that asks for `database_url` gets a fresh copy of it.
"""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import psycopg
import pytest
from psycopg import sql

from service import embedded
from service.app import create_app
from service.migrations import migrate

from .apps import app_settings


# Every role gets this password: it works where the server asks for one, and trust ignores it.
ROLE_PASSWORD = "Tq7-role-secret"


def owner_url(server_url: str, database: str) -> str:
    return embedded.role_url(server_url, embedded.OWNER_ROLE, database, ROLE_PASSWORD)


def api_url(server_url: str, database: str) -> str:
    return embedded.role_url(server_url, embedded.API_ROLE, database, ROLE_PASSWORD)


def admin_url(server_url: str, database: str) -> str:
    return embedded.role_url(server_url, embedded.ADMIN_ROLE, database, ROLE_PASSWORD)


def psql_url(server_url: str, database: str) -> str:
    return embedded.role_url(server_url, embedded.PSQL_ROLE, database, ROLE_PASSWORD)


def create_database(server_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(embedded.OWNER_ROLE))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(query)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_roles(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(embedded.ROLES_SQL.read_text())
        for role in (embedded.OWNER_ROLE, embedded.API_ROLE, embedded.ADMIN_ROLE, embedded.PSQL_ROLE):
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(ROLE_PASSWORD)))


CALLING_ROLES = (embedded.API_ROLE, embedded.ADMIN_ROLE, embedded.PSQL_ROLE)


def set_transaction_bound(server_url: str, database: str, seconds: float) -> None:
    """settings.max_transaction_timeout of `database` (a short one keeps tests short), and the
    transaction_timeout that sql/server/roles.sql gives each calling role (PostgreSQL 17+) lowered
    to match in it (at their defaults the functions would refuse them: TA008); a role that has none
    keeps none. Connections opened after it get the new timeout."""
    with psycopg.connect(owner_url(server_url, database), autocommit=True) as owner:
        owner.execute("UPDATE settings SET max_transaction_timeout = make_interval(secs => %s)", (seconds,))
    with psycopg.connect(server_url, autocommit=True) as superuser:
        timed = [row[0] for row in superuser.execute(
            """SELECT r.rolname FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
               WHERE s.setdatabase = 0 AND r.rolname = ANY(%s)
                 AND EXISTS (SELECT FROM unnest(s.setconfig) AS c WHERE c LIKE 'transaction_timeout=%%')""",
            (list(CALLING_ROLES),))]
        for role in timed:
            superuser.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET transaction_timeout = {}").format(
                sql.Identifier(role), sql.Identifier(database), sql.Literal(f"{int(seconds * 1000)}ms")))


@pytest.fixture(scope="session")
def server_url():
    """Admin URL of the server the tests use (a superuser, or CREATEDB and CREATEROLE rights)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        create_roles(external)
        yield external
        return
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-tests-"))
    server = embedded.start(folder / "pgdata", cleanup_mode="delete")
    create_roles(server.get_uri())
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def server_has_transaction_timeout(server_url: str) -> bool:
    """Whether the server has transaction_timeout (PostgreSQL 17+)."""
    with psycopg.connect(server_url) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 170000


@pytest.fixture(scope="session")
def has_transaction_timeout(server_url) -> bool:
    return server_has_transaction_timeout(server_url)


@pytest.fixture(scope="session")
def template_database(server_url):
    name = f"ticket_allocation_template_{os.getpid()}"
    drop_database(server_url, name)
    create_database(server_url, name)
    migrate(owner_url(server_url, name))
    yield name
    drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url):
    """The owner's URL of a new database with nothing in it (for migration tests)."""
    name = f"ticket_allocation_test_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name)
    yield owner_url(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def database_name(server_url, template_database):
    """A new, migrated database for this test alone."""
    name = f"ticket_allocation_test_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name, template=template_database)
    yield name
    drop_database(server_url, name)


@pytest.fixture
def database_url(server_url, database_name):
    """The test's database as the owner: functions, tables, DDL."""
    return owner_url(server_url, database_name)


@pytest.fixture
def api_database_url(server_url, database_name):
    """The test's database as the API role: the functions of the API only."""
    return api_url(server_url, database_name)


@pytest.fixture
def admin_database_url(server_url, database_name):
    """The test's database as the admin role: the API and the admin functions."""
    return admin_url(server_url, database_name)


@pytest.fixture
def psql_database_url(server_url, database_name):
    """The test's database as the psql role: people's psql login, with the API role's grants."""
    return psql_url(server_url, database_name)


@pytest.fixture
async def conn(database_url):
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def owner_pool(database_url):
    """20 owner connections to the test's database, for calls that must run at once."""
    pool = await asyncpg.create_pool(database_url, min_size=20, max_size=20)
    yield pool
    await pool.close()


async def read_books(conn, option_id) -> dict:
    """{"remaining", "sold", "total"} of the option as get_ticket_option tells them, after asserting
    that check_consistency() finds no broken invariant anywhere in the books."""
    violations = [dict(row) for row in await conn.fetch("SELECT * FROM check_consistency()")]
    assert violations == [], violations
    row = await conn.fetchrow("SELECT remaining, sold, total FROM get_ticket_option($1)", uuid.UUID(str(option_id)))
    return dict(row)


def read_books_sync(conn, option_id) -> dict:
    """read_books on a psycopg connection (the tests that drive server processes)."""
    violations = conn.execute("SELECT * FROM check_consistency()").fetchall()
    assert violations == [], violations
    remaining, sold, total = conn.execute(
        "SELECT remaining, sold, total FROM get_ticket_option(%s)", (str(option_id),)).fetchone()
    return {"remaining": remaining, "sold": sold, "total": total}


@pytest.fixture
def books(conn):
    """books(option_id): read_books on the test's owner connection (`conn`)."""
    return lambda option_id: read_books(conn, option_id)


@pytest.fixture
async def client(aiohttp_client, api_database_url, admin_database_url):
    return await aiohttp_client(create_app(app_settings(api_database_url, admin_database_url)))
