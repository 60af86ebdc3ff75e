"""get_purchase and list_purchases (keyset pagination, newest first)."""

import asyncio
import uuid

import asyncpg
import pytest

from tests.people import USER_ID

from .helpers import create_option, purchase


async def test_get_purchase_returns_it_with_its_tickets(conn):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 3)
    fetched = await conn.fetchrow("SELECT * FROM get_purchase($1)", bought["id"])
    assert dict(fetched) == dict(bought)
    assert fetched["status"] == "active" and fetched["cancelled_at"] is None


async def test_get_unknown_purchase_raises_TA004(conn):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM get_purchase($1)", uuid.uuid4())
    assert raised.value.sqlstate == "TA004"


async def page(conn, option_id, limit, user_id=None, before=None):
    created_at, purchase_id = before or (None, None)
    return await conn.fetch(
        "SELECT * FROM list_purchases($1, $2, $3, $4, $5)", option_id, limit, user_id, created_at, purchase_id)


async def test_list_is_newest_first_and_filters_by_user(conn):
    option_id = await create_option(conn, 100)
    other = uuid.uuid4()
    ids = [(await purchase(conn, option_id, 1, USER_ID if i % 2 else other))["id"] for i in range(6)]
    listed = await page(conn, option_id, 50)
    assert [row["id"] for row in listed] == ids[::-1]
    mine = await page(conn, option_id, 50, USER_ID)
    assert [row["id"] for row in mine] == ids[1::2][::-1]


async def test_pages_list_each_purchase_once_while_new_ones_arrive(conn, owner_pool):
    option_id = await create_option(conn, 1000)
    existing = {(await purchase(conn, option_id, 1, uuid.uuid4()))["id"] for _ in range(30)}
    seen, before = [], None
    while True:
        # New purchases land between (and while) pages are read.
        arrivals = asyncio.gather(*(purchase(owner_pool, option_id, 1, uuid.uuid4()) for _ in range(5)))
        rows = await page(conn, option_id, 7, before=before)
        await arrivals
        seen += [row["id"] for row in rows]
        if len(rows) < 7:
            break
        before = (rows[-1]["created_at"], rows[-1]["id"])
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


@pytest.mark.parametrize("limit", [0, 501, None])
async def test_limit_must_be_1_to_500(conn, limit):
    option_id = await create_option(conn, 1)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await page(conn, option_id, limit)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "limit")


async def test_half_a_cursor_is_refused_and_unknown_option_is_TA002(conn):
    option_id = await create_option(conn, 1)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetch("SELECT * FROM list_purchases($1, 10, NULL, now(), NULL)", option_id)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "cursor")
    with pytest.raises(asyncpg.PostgresError) as raised:
        await page(conn, uuid.uuid4(), 10)
    assert raised.value.sqlstate == "TA002"
