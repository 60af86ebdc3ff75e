"""Least privilege: the API role buys and reads, the admin role administers, neither touches tables.

The same rules hold from psql as from asyncpg: they are the database's.
"""

import asyncio
import re
import subprocess
import uuid
from importlib.resources import files

import asyncpg
import pytest

from service import embedded

from .helpers import ticket_requests

PRIVILEGES_SQL = files("service.sql") / "privileges.sql"
CALLING_ROLES = (embedded.API_ROLE, embedded.PSQL_ROLE, embedded.ADMIN_ROLE)
GRANT = re.compile(r"GRANT EXECUTE ON FUNCTION api\.(\w+) TO (\w+(?:, \w+)*)")
# What else privileges.sql may say: nothing that grants in a way the list below would miss.
OTHER_STATEMENTS = (
    "REVOKE ALL ON ALL TABLES IN SCHEMA ticket_allocation FROM PUBLIC",
    "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ticket_allocation, api FROM PUBLIC",
    f"GRANT USAGE ON SCHEMA api TO {', '.join(CALLING_ROLES)}",
)


def granted() -> dict[str, set[str]]:
    """{api function name: the roles sql/privileges.sql grants EXECUTE on it}, read from its plain
    GRANT lines; any other statement in the file fails the test."""
    text = re.sub(r"--[^\n]*", "", PRIVILEGES_SQL.read_text())
    grants: dict[str, set[str]] = {}
    for statement in (" ".join(s.split()) for s in text.split(";")):
        if not statement:
            continue
        grant = GRANT.fullmatch(statement)
        assert grant or statement in OTHER_STATEMENTS, f"privileges.sql: not a plain grant: {statement}"
        if grant:
            assert grant[1] not in grants, f"privileges.sql grants {grant[1]} twice"
            grants[grant[1]] = set(grant[2].split(", "))
    return grants

ADMIN_FUNCTIONS = [
    "SELECT * FROM create_ticket_option('Gig', '', 10)",
    "SELECT * FROM cancel_purchase(gen_random_uuid())",
    "SELECT purge_expired_idempotency_keys()",
    "SELECT * FROM check_consistency()",
]


def test_the_buyer_facing_roles_share_one_list_and_the_admin_role_has_both():
    buyer_facing = {embedded.API_ROLE, embedded.PSQL_ROLE, embedded.ADMIN_ROLE}
    odd = {function: roles for function, roles in granted().items() if roles not in (buyer_facing, {embedded.ADMIN_ROLE})}
    assert odd == {}


async def test_each_role_may_execute_exactly_the_api_functions_the_list_grants_it(conn):
    """Every function of schema api has its line in sql/privileges.sql (a new one without fails
    here), and each calling role's EXECUTE on it is what the line says."""
    rows = await conn.fetch(
        """SELECT p.proname, r.role, has_function_privilege(r.role, p.oid, 'EXECUTE') AS allowed
           FROM pg_proc p CROSS JOIN unnest($1::text[]) AS r (role)
           WHERE p.pronamespace = 'api'::regnamespace""", list(CALLING_ROLES))
    listed = granted()
    assert {row["proname"] for row in rows} == set(listed)
    actual = {(row["proname"], row["role"]) for row in rows if row["allowed"]}
    assert actual == {(function, role) for function, roles in listed.items() for role in roles}


async def test_no_calling_role_may_execute_anything_in_ticket_allocation(conn):
    executable = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS function, r.role
           FROM pg_proc p CROSS JOIN unnest($1::text[]) AS r (role)
           WHERE p.pronamespace = 'ticket_allocation'::regnamespace
             AND has_function_privilege(r.role, p.oid, 'EXECUTE')""", list(CALLING_ROLES))
    assert [tuple(row) for row in executable] == []


@pytest.fixture
async def api(api_database_url):
    connection = await asyncpg.connect(api_database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def admin(admin_database_url):
    connection = await asyncpg.connect(admin_database_url)
    yield connection
    await connection.close()


@pytest.fixture(params=["api", "admin"])
async def caller(request, api_database_url, admin_database_url):
    """Each calling role in turn."""
    connection = await asyncpg.connect(api_database_url if request.param == "api" else admin_database_url)
    yield connection
    await connection.close()


async def test_the_api_role_can_buy_and_read(api, admin):
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10, 3, 'key-1')")
    assert (await api.fetchrow("SELECT * FROM get_ticket_option($1)", option["id"]))["remaining"] == 10
    user = uuid.uuid4()
    bought = await api.fetchrow("SELECT * FROM purchase_tickets($1, $2, 2, 'key-2')", option["id"], user)
    batch = await api.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                            ticket_requests(option["id"], [uuid.uuid4()], [1]))
    assert batch[0]["receipt"]["quantity"] == 1
    assert (await api.fetchrow("SELECT * FROM get_purchase($1)", bought["id"]))["quantity"] == 2
    assert len(await api.fetch("SELECT * FROM list_purchases($1)", option["id"])) == 2
    assert (await api.fetchval("SELECT idempotency_key_ttl()")).total_seconds() == 86400
    assert await api.fetch("SELECT * FROM applied_migrations()")


async def test_the_admin_role_can_administer(admin):
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    bought = await admin.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 2)", option["id"])
    assert (await admin.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"]))["status"] == "cancelled"
    assert await admin.fetchval("SELECT purge_expired_idempotency_keys()") == 0
    assert await admin.fetch("SELECT * FROM check_consistency()") == []


@pytest.mark.parametrize("statement", ADMIN_FUNCTIONS)
async def test_the_api_role_may_not_call_admin_functions(api, statement):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute(statement)


@pytest.mark.parametrize("role", [embedded.ADMIN_ROLE, embedded.OWNER_ROLE])
async def test_the_api_role_cannot_become_another_role(api, role):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute(f"SET ROLE {role}")


@pytest.mark.parametrize("statement", [
    "UPDATE ticket_allocation.ticket_options SET remaining = 1000000",
    "SELECT * FROM ticket_allocation.ticket_options",
    "INSERT INTO ticket_allocation.purchases (ticket_option_id, user_id, quantity) "
    "VALUES (gen_random_uuid(), gen_random_uuid(), 1)",
    "DELETE FROM ticket_allocation.tickets",
    "SELECT * FROM ticket_allocation.idempotency_keys",
    "SELECT * FROM ticket_allocation.purchase_receipts",
    "UPDATE ticket_allocation.settings SET idempotency_key_ttl = '100 years'",
    "SELECT * FROM ticket_allocation.claim_idempotency_key('', 'k', '{}')",
    "SELECT ticket_allocation.remember_idempotency_keys('{}', '{k}', '{}', '{}', '{}')",
    "SELECT ticket_allocation.assert_session_limits()",
    "CREATE TABLE public.sneaky (id int)",
    "CREATE TABLE api.sneaky (id int)",
    "CREATE FUNCTION api.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
])
async def test_calling_roles_cannot_touch_tables_internals_or_schemas(caller, statement):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await caller.execute(statement)


async def test_api_schema_holds_only_functions_and_their_types(conn):
    kinds = await conn.fetch(
        "SELECT DISTINCT c.relkind FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace")
    assert {row["relkind"] for row in kinds} <= {b"c"}  # composite types only: no table, view or sequence


async def test_every_function_pins_its_search_path(conn):
    unpinned = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS function FROM pg_proc p
           WHERE p.pronamespace IN ('api'::regnamespace, 'ticket_allocation'::regnamespace)
             AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')""")
    assert [row["function"] for row in unpinned] == []


async def test_no_function_is_executable_by_public(conn):
    public = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS function FROM pg_proc p
           WHERE p.pronamespace IN ('api'::regnamespace, 'ticket_allocation'::regnamespace)
             AND has_function_privilege('public', p.oid, 'EXECUTE')""")
    assert [row["function"] for row in public] == []


async def test_nobody_but_the_owner_creates_in_public(conn):
    assert await conn.fetchval("SELECT has_schema_privilege('public', 'public', 'CREATE')") is False


async def test_a_temporary_look_alike_table_does_not_fool_the_functions(api, admin):
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    await api.execute("CREATE TEMP TABLE ticket_options (id uuid, remaining int)")
    await api.execute("SET search_path = pg_temp, api")
    assert (await api.fetchrow("SELECT * FROM api.get_ticket_option($1)", option["id"]))["remaining"] == 10


async def test_the_calling_roles_fail_fast_on_locks_long_statements_and_idle_transactions(api, admin):
    for connection in (api, admin):
        assert await connection.fetchval("SHOW lock_timeout") == "1s"
        assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
    assert await api.fetchval("SHOW statement_timeout") == "5s"


@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout"])
@pytest.mark.parametrize("value", ["0", "1h"])
async def test_a_session_that_lifts_a_limit_may_not_lock(api, admin, setting, value):
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    await api.execute(f"SET {setting} = '{value}'")
    with pytest.raises(asyncpg.PostgresError) as refused:
        await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option["id"])
    assert refused.value.sqlstate == "TA008"
    assert setting in refused.value.message
    await api.execute(f"RESET {setting}")
    assert (await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option["id"]))


async def test_a_session_cannot_stretch_the_idempotency_key_ttl(api, admin):
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    await api.execute("SET ticket_allocation.idempotency_key_ttl = '100 years'")
    await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1, 'ttl-key')", option["id"])
    assert (await api.fetchval("SELECT idempotency_key_ttl()")).total_seconds() == 86400


async def test_an_idle_psql_transaction_cannot_stall_sales(api_database_url, api, admin):
    """A session that bought in an open transaction and went idle is ended by the role's
    idle_in_transaction_session_timeout, and the option sells again."""
    option = await admin.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    idle = subprocess.Popen(
        [str(embedded.psql_path()), api_database_url, "-X", "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    idle.stdin.write(f"BEGIN;\nSELECT id FROM purchase_tickets('{option['id']}', gen_random_uuid(), 1);\n")
    idle.stdin.flush()  # and then nothing: the transaction stays open, holding the option's lock
    try:
        bought = None
        for _ in range(40):  # bounded: 40 tries of at most ~1 s (lock_timeout) each
            try:
                bought = await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option["id"])
                break
            except asyncpg.LockNotAvailableError:
                await asyncio.sleep(0.2)
        assert bought is not None, "the idle transaction was never ended"
    finally:
        idle.kill()
        idle.communicate(timeout=10)
    assert (await admin.fetchrow("SELECT * FROM get_ticket_option($1)", option["id"]))["remaining"] == 9


def psql_as(url: str, statement: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(embedded.psql_path()), url, "-X", "-c", statement], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("statement", [
    *ADMIN_FUNCTIONS,
    "UPDATE ticket_allocation.ticket_options SET remaining = 1000000",
    "SET ROLE ticket_allocation_admin",
    "SET ROLE ticket_allocation_owner",
])
def test_a_psql_user_in_the_api_role_gets_permission_denied(api_database_url, statement):
    result = psql_as(api_database_url, statement)
    assert result.returncode != 0
    assert "permission denied" in result.stderr, result.stderr
