"""Databases with a large sales history, in the three states of statistics a planner can face."""

import os

import psycopg
import pytest
from psycopg import sql

from tests.conftest import create_database, drop_database, owner_url

from .history import NO_AUTOVACUUM_SQL, history_sql


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "plpgsql_check: needs a server with plpgsql_check; runs only with REQUIRE_PLPGSQL_CHECK=1 (.ci/run)")


def pytest_collection_modifyitems(config, items):
    """Without REQUIRE_PLPGSQL_CHECK=1 the lint is deselected (reported as such), never skipped."""
    if os.environ.get("REQUIRE_PLPGSQL_CHECK") == "1":
        return
    lint = [item for item in items if item.get_closest_marker("plpgsql_check")]
    if lint:
        config.hook.pytest_deselected(items=lint)
        items[:] = [item for item in items if not item.get_closest_marker("plpgsql_check")]


def copy_database(server_url: str, name: str, template: str) -> None:
    # FILE_COPY: copying a few hundred MB through the WAL would take longer.
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))


def run_script(url: str, script: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script)


@pytest.fixture(scope="session")
def history_databases(server_url, template_database):
    """{state: database name}, each holding the history of tests/sql/history.py:
    'never_analysed' (no statistics at all) and 'analysed' (fresh statistics).
    (Statistics and plans older than the data: see test_plan_stability.py.)
    The tests add to them, as callers of the API would."""
    prefix = f"ticket_allocation_history_{os.getpid()}"
    names = {state: f"{prefix}_{state}" for state in ("never_analysed", "analysed")}
    for name in names.values():
        drop_database(server_url, name)
    create_database(server_url, names["never_analysed"], template=template_database)
    run_script(owner_url(server_url, names["never_analysed"]), NO_AUTOVACUUM_SQL + history_sql())
    copy_database(server_url, names["analysed"], names["never_analysed"])
    run_script(owner_url(server_url, names["analysed"]), "ANALYZE")
    yield names
    for name in names.values():
        drop_database(server_url, name)
