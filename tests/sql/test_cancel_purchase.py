"""cancel_purchase: tickets go back on sale, once, even under concurrency."""

import asyncio
import random
import uuid

import asyncpg
import pytest

from .helpers import create_option, purchase


async def test_cancel_marks_voids_and_returns_the_tickets(conn, books):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 4)
    cancelled = await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] is not None
    assert cancelled["ticket_ids"] == bought["ticket_ids"]  # history stays
    assert await conn.fetchval(
        "SELECT count(*) FROM tickets WHERE purchase_id = $1 AND voided_at IS NOT NULL", bought["id"]) == 4
    assert await books(option_id) == {"remaining": 10, "sold": 0, "total": 10}


async def test_cancelling_twice_returns_the_tickets_once(conn, books):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 4)
    first = await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    second = await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    assert dict(first) == dict(second)
    assert (await books(option_id))["remaining"] == 10


async def test_cancelled_tickets_can_be_bought_again(conn, books):
    option_id = await create_option(conn, 3)
    bought = await purchase(conn, option_id, 3)
    await conn.execute("SELECT cancel_purchase($1)", bought["id"])
    again = await purchase(conn, option_id, 3)
    assert again["status"] == "active"
    assert (await books(option_id))["total"] == 3


async def test_unknown_purchase_raises_TA004(conn):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM cancel_purchase($1)", uuid.uuid4())
    assert raised.value.sqlstate == "TA004"
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM cancel_purchase(NULL)")
    assert raised.value.sqlstate == "TA001"


async def test_cancels_racing_purchases_keep_the_books_balanced(conn, owner_pool, books):
    option_id = await create_option(conn, 40)
    first_buyers = [await purchase(conn, option_id, 2, uuid.uuid4()) for _ in range(10)]

    async def buy():
        try:
            return await owner_pool.fetchrow(
                "SELECT * FROM purchase_tickets($1, $2, $3)", option_id, uuid.uuid4(), random.randint(1, 3))
        except asyncpg.PostgresError as error:
            assert error.sqlstate == "TA003", error
            return None

    async def cancel(purchase_id):
        return await owner_pool.fetchrow("SELECT * FROM cancel_purchase($1)", purchase_id)

    # Each early purchase is cancelled twice, while 60 new purchases compete.
    jobs = [buy() for _ in range(60)] + [cancel(p["id"]) for p in first_buyers for _ in range(2)]
    random.shuffle(jobs)
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=120)
    assert (await books(option_id))["total"] == 40
    assert await conn.fetchval("SELECT count(*) FROM purchases WHERE status = 'cancelled'") == 10
