"""The psql login (ticket_allocation_psql): people given psql access may do what the API role may,
under the same limits, but are not the service's login, so they cannot cut, cancel or read the
service's connections (PostgreSQL lets a role signal and read its own backends)."""

import asyncio
import uuid

import asyncpg
import pytest

from service import embedded

from ..polling import wait_until
from .helpers import create_option

CALLING_ROLES = (embedded.API_ROLE, embedded.ADMIN_ROLE, embedded.PSQL_ROLE)
LIMITS = ("search_path", "lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")


@pytest.fixture
async def api(api_database_url):
    connection = await asyncpg.connect(api_database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def psql(psql_database_url):
    connection = await asyncpg.connect(psql_database_url)
    yield connection
    await connection.close()


async def test_the_psql_role_may_call_exactly_what_the_api_role_may(conn):
    rows = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS function,
                  has_function_privilege($1, p.oid, 'EXECUTE') AS api,
                  has_function_privilege($2, p.oid, 'EXECUTE') AS psql
           FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace""", embedded.API_ROLE, embedded.PSQL_ROLE)
    assert [row["function"] for row in rows if row["api"] != row["psql"]] == []
    assert sum(row["psql"] for row in rows) >= 10  # the buying and reading functions
    assert await conn.fetchval("SELECT has_schema_privilege($1, 'api', 'USAGE')", embedded.PSQL_ROLE)


async def test_the_psql_role_has_the_api_roles_limits(api, psql):
    settings = [*LIMITS, "transaction_timeout"]
    query = "SELECT array_agg(current_setting(s, true) ORDER BY s) FROM unnest($1::text[]) AS s"
    assert await psql.fetchval(query, settings) == await api.fetchval(query, settings)
    assert await psql.fetchval("SHOW statement_timeout") == "5s"


async def test_the_psql_role_can_buy_hold_and_read(conn, psql):
    option_id = await create_option(conn, 10)
    bought = await psql.fetchrow("SELECT * FROM purchase_tickets($1, $2, 2, 'psql-key')", option_id, uuid.uuid4())
    assert (await psql.fetchrow("SELECT * FROM get_purchase($1)", bought["id"]))["quantity"] == 2
    assert len(await psql.fetch("SELECT * FROM list_purchases($1)", option_id)) == 1
    held = await psql.fetchrow("SELECT * FROM hold_tickets($1, $2, 1)", option_id, uuid.uuid4())
    assert (await psql.fetchrow("SELECT * FROM confirm_hold($1)", held["id"]))["created"]
    assert (await psql.fetchrow("SELECT * FROM get_ticket_option($1)", option_id))["remaining"] == 7


@pytest.mark.parametrize("statement", [
    "SELECT * FROM create_ticket_option('Gig', '', 10)",
    "SELECT * FROM cancel_purchase(gen_random_uuid())",
    "SELECT * FROM check_consistency()",
    "SELECT * FROM events_after()",
    "SELECT * FROM end_overlong_transactions()",
    "SELECT * FROM ticket_allocation.ticket_options",
    "UPDATE ticket_allocation.settings SET max_transaction_timeout = '1 day'",
    *(f"SET ROLE {role}" for role in (embedded.API_ROLE, embedded.ADMIN_ROLE, embedded.OWNER_ROLE)),
])
async def test_the_psql_role_gets_permission_denied_beyond_the_api_roles_grants(psql, statement):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await psql.execute(statement)


async def test_no_calling_role_is_a_member_of_any_role(conn):
    """Not of each other, not of the owner: membership is what lets a role signal another's
    backends and read their queries (the owner's membership in them is the other way round)."""
    memberships = await conn.fetch(
        """SELECT member::regrole::text AS member, roleid::regrole::text AS role FROM pg_auth_members
           WHERE member::regrole::text = ANY($1::text[])""", list(CALLING_ROLES))
    assert [tuple(row) for row in memberships] == []
    for role in (embedded.API_ROLE, embedded.ADMIN_ROLE, embedded.OWNER_ROLE):
        assert not await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", embedded.PSQL_ROLE, role)


async def busy_service_connection(url: str) -> tuple[asyncpg.Connection, asyncio.Task]:
    """A connection of the service's login, in the middle of a statement (2 s)."""
    service = await asyncpg.connect(url)
    running = asyncio.create_task(service.fetchval("SELECT 'service' FROM pg_sleep(2)"))
    watcher = await asyncpg.connect(url)  # the same login sees its own backends' state
    try:
        await wait_until(lambda: watcher.fetchval("SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1",
                                                  service.get_server_pid()), "the service's statement to start")
    finally:
        await watcher.close()
    return service, running


@pytest.mark.parametrize("role", [embedded.API_ROLE, embedded.ADMIN_ROLE])
async def test_the_psql_login_cannot_signal_cancel_or_read_the_services_connections(
        api_database_url, admin_database_url, psql, role):
    service, running = await busy_service_connection(
        api_database_url if role == embedded.API_ROLE else admin_database_url)
    pid = service.get_server_pid()
    try:
        seen = await psql.fetchrow("SELECT usename, state, query FROM pg_stat_activity WHERE pid = $1", pid)
        assert (seen["usename"], seen["state"], seen["query"]) == (role, None, "<insufficient privilege>")
        for signal in ("pg_cancel_backend($1)", "pg_terminate_backend($1)"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await psql.fetchval(f"SELECT {signal}", pid)
        assert await running == "service"  # its statement ran to the end
        assert await service.fetchval("SELECT 1") == 1
    finally:
        running.cancel()
        await service.close()


async def test_the_api_role_could_cancel_and_read_its_own_connections(api_database_url, api):
    """Why people get a login of their own: the same check, as the service's login, succeeds."""
    service, running = await busy_service_connection(api_database_url)
    try:
        query = await api.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", service.get_server_pid())
        assert "pg_sleep" in query
        assert await api.fetchval("SELECT pg_cancel_backend($1)", service.get_server_pid())
        with pytest.raises(asyncpg.QueryCanceledError):
            await running
    finally:
        await service.close()
