"""max_per_user: what one user may hold of an option, cancelled purchases not counted."""

import asyncio
import uuid

import asyncpg
import pytest

from tests.people import USER_ID

from .helpers import create_option, purchase


async def test_limit_refuses_the_purchase_that_would_exceed_it(conn, books):
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
    assert (await books(option_id))["sold"] == 6


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


async def test_limit_holds_under_concurrent_purchases_by_one_user(conn, owner_pool, books):
    option_id = await create_option(conn, 100, max_per_user=5)

    async def attempt():
        try:
            await owner_pool.fetchrow("SELECT * FROM purchase_tickets($1, $2, 1)", option_id, USER_ID)
            return "bought"
        except asyncpg.PostgresError as error:
            return error.sqlstate

    outcomes = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(50))), timeout=120)
    assert outcomes.count("bought") == 5
    assert outcomes.count("TA007") == 45
    assert (await books(option_id))["total"] == 100
