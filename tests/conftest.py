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
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import pytest
from psycopg import sql

from service import embedded
from service.app import create_app
from service.migrations import migrate


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def create_database(server_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(query)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def server_url():
    """URL of a database on the server the tests use (with CREATEDB rights)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-tests-"))
    server = embedded.start(folder / "pgdata", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(server_url):
    name = f"ticket_allocation_template_{os.getpid()}"
    drop_database(server_url, name)
    create_database(server_url, name)
    migrate(with_database(server_url, name))
    yield name
    drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url):
    """A new database with nothing in it (for migration tests)."""
    name = f"ticket_allocation_test_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name)
    yield with_database(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def database_url(server_url, template_database):
    """A new, migrated database for this test alone."""
    name = f"ticket_allocation_test_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name, template=template_database)
    yield with_database(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
async def conn(database_url):
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def client(aiohttp_client, database_url):
    return await aiohttp_client(create_app(database_url))
