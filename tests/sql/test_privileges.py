"""Least privilege: the API role calls the functions and touches nothing else."""

import subprocess
import uuid

import asyncpg
import pytest

from service import embedded


@pytest.fixture
async def api(api_database_url):
    connection = await asyncpg.connect(api_database_url)
    yield connection
    await connection.close()


async def test_the_api_role_can_call_every_api_function(api):
    option = await api.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10, 3, 'key-1')")
    assert (await api.fetchrow("SELECT * FROM get_ticket_option($1)", option["id"]))["allocation"] == 10
    user = uuid.uuid4()
    bought = await api.fetchrow("SELECT * FROM purchase_tickets($1, $2, 2, 'key-2')", option["id"], user)
    batch = await api.fetch("SELECT * FROM purchase_tickets_batch($1, $2, $3)", option["id"], [uuid.uuid4()], [1])
    assert batch[0]["receipt"]["quantity"] == 1
    assert (await api.fetchrow("SELECT * FROM get_purchase($1)", bought["id"]))["quantity"] == 2
    assert len(await api.fetch("SELECT * FROM list_purchases($1)", option["id"])) == 2
    assert (await api.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"]))["status"] == "cancelled"
    assert await api.fetchval("SELECT purge_expired_idempotency_keys()") == 0
    assert (await api.fetchval("SELECT idempotency_key_ttl()")).total_seconds() == 86400


@pytest.mark.parametrize("statement", [
    "UPDATE ticket_options SET allocation = 1000000",
    "SELECT * FROM ticket_options",
    "INSERT INTO purchases (ticket_option_id, user_id, quantity) VALUES (gen_random_uuid(), gen_random_uuid(), 1)",
    "DELETE FROM tickets",
    "SELECT * FROM idempotency_keys",
    "SELECT * FROM purchase_receipts",
    "SELECT * FROM claim_idempotency_key('', 'k', '{}')",
    "SELECT remember_idempotency_keys('{}', '{k}', '{}', '{}', '{}')",
    "SELECT * FROM check_consistency()",
    "CREATE TABLE sneaky (id int)",
])
async def test_the_api_role_cannot_touch_tables_or_internals(api, statement):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute(statement)


async def test_a_temporary_look_alike_table_does_not_fool_the_functions(api):
    option = await api.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    # The functions pin search_path to public first, so pg_temp cannot shadow their tables.
    await api.execute("CREATE TEMP TABLE ticket_options (id uuid, allocation int)")
    assert (await api.fetchrow("SELECT * FROM get_ticket_option($1)", option["id"]))["allocation"] == 10


async def test_the_api_role_fails_fast_on_locks_and_long_statements(api):
    assert await api.fetchval("SHOW lock_timeout") == "1s"
    assert await api.fetchval("SHOW statement_timeout") == "5s"


def test_a_psql_user_in_the_api_role_cannot_raise_an_allocation(api_database_url):
    result = subprocess.run(
        [str(embedded.psql_path()), api_database_url, "-X", "-c", "UPDATE ticket_options SET allocation = 1000000"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "permission denied for table ticket_options" in result.stderr
