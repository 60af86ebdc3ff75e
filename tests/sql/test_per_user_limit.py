"""max_per_user: what one user may hold of an option, cancelled purchases not counted."""

import asyncio
import uuid

import asyncpg
import pytest

from .helpers import USER, assert_consistent, create_option, option_state, purchase


async def test_limit_refuses_the_purchase_that_would_exceed_it(conn):
    option_id = await create_option(conn, 100, max_per_user=3)
    await purchase(conn, option_id, 2)
    await purchase(conn, option_id, 1)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 1)
    assert raised.value.sqlstate == "TA007"
    assert "at most 3" in raised.value.message
    assert raised.value.detail == "max_per_user: 3, held: 3"
    # Other users are not affected, and nothing was bought by the refusal.
    await purchase(conn, option_id, 3, uuid.uuid4())
    assert (await option_state(conn, option_id))["sold"] == 6


async def test_cancelled_purchases_do_not_count(conn):
    option_id = await create_option(conn, 100, max_per_user=2)
    bought = await purchase(conn, option_id, 2)
    await conn.execute("SELECT cancel_purchase($1)", bought["id"])
    assert (await purchase(conn, option_id, 2))["quantity"] == 2


async def test_a_single_purchase_above_the_limit_is_refused(conn):
    option_id = await create_option(conn, 100, max_per_user=2)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 3)
    assert raised.value.sqlstate == "TA007"


@pytest.mark.parametrize("max_per_user", [0, -5])
async def test_limit_must_be_positive(conn, max_per_user):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await create_option(conn, 10, max_per_user=max_per_user)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "max_per_user")


async def test_limit_holds_under_concurrent_purchases_by_one_user(conn, database_url):
    option_id = await create_option(conn, 100, max_per_user=5)
    pool = await asyncpg.create_pool(database_url, min_size=20, max_size=20)
    try:
        async def attempt():
            try:
                await pool.fetchrow("SELECT * FROM purchase_tickets($1, $2, 1)", option_id, USER)
                return "bought"
            except asyncpg.PostgresError as error:
                return error.sqlstate

        outcomes = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(50))), timeout=120)
    finally:
        await pool.close()
    assert outcomes.count("bought") == 5
    assert outcomes.count("TA007") == 45
    assert_consistent(await option_state(conn, option_id), 100)
