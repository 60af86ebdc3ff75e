"""purchase_tickets, called directly, alone and from many connections at once."""

import asyncio
import random
import uuid

import asyncpg
import pytest

from tests.people import USER_ID

from .helpers import create_option, purchase


async def test_purchase_returns_the_purchase_with_its_tickets(conn, books):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 3)
    assert bought["ticket_option_id"] == option_id
    assert bought["user_id"] == USER_ID
    assert bought["quantity"] == 3
    assert len(set(bought["ticket_ids"])) == 3
    stored = await conn.fetch("SELECT id FROM tickets WHERE purchase_id = $1", bought["id"])
    assert {row["id"] for row in stored} == set(bought["ticket_ids"])
    assert await books(option_id) == {"remaining": 7, "sold": 3, "total": 10}


async def test_buying_exactly_what_remains_sells_out(conn, books):
    option_id = await create_option(conn, 5)
    await purchase(conn, option_id, 5)
    assert (await books(option_id))["remaining"] == 0


async def test_asking_more_than_remains_raises_TA003_and_buys_nothing(conn, books):
    option_id = await create_option(conn, 4)
    await purchase(conn, option_id, 3)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 2)
    assert raised.value.sqlstate == "TA003"
    assert "2 requested, 1 remaining" in raised.value.message
    assert raised.value.detail == "remaining: 1"
    assert await books(option_id) == {"remaining": 1, "sold": 3, "total": 4}


async def test_unknown_option_raises_TA002(conn):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, uuid.uuid4(), 1)
    assert raised.value.sqlstate == "TA002"
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 0


@pytest.mark.parametrize(
    ("quantity", "user_id", "field"),
    [(0, USER_ID, "quantity"), (-1, USER_ID, "quantity"), (1001, USER_ID, "quantity"), (None, USER_ID, "quantity"),
     (1, None, "user_id")],
)
async def test_invalid_arguments_raise_TA001(conn, quantity, user_id, field, books):
    option_id = await create_option(conn, 2000)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, quantity, user_id)
    assert raised.value.sqlstate == "TA001"
    assert raised.value.column_name == field
    assert await books(option_id) == {"remaining": 2000, "sold": 0, "total": 2000}


async def test_null_option_id_raises_TA001(conn):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, None, 1)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "ticket_option_id")


async def test_largest_purchase_inserts_all_its_tickets(conn, books):
    option_id = await create_option(conn, 1000)
    bought = await purchase(conn, option_id, 1000)
    assert len(bought["ticket_ids"]) == 1000
    assert await books(option_id) == {"remaining": 0, "sold": 1000, "total": 1000}


async def test_a_ticket_cannot_point_at_another_options_purchase(conn):
    first, second = await create_option(conn, 5), await create_option(conn, 5)
    bought = await purchase(conn, first, 1)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            "INSERT INTO tickets (ticket_option_id, purchase_id) VALUES ($1, $2)", second, bought["id"]
        )


async def run_concurrently(pool, option_id, quantities):
    """Each quantity bought on a connection of the pool, all at once; returns (successes, TA003 refusals)."""
    async def attempt(quantity):
        try:
            return await pool.fetchrow(
                "SELECT * FROM purchase_tickets($1, $2, $3)", option_id, uuid.uuid4(), quantity
            )
        except asyncpg.PostgresError as error:
            assert error.sqlstate == "TA003", error
            return None

    results = await asyncio.gather(*(attempt(q) for q in quantities))
    return [r for r in results if r is not None], sum(r is None for r in results)


async def test_concurrent_purchases_never_oversell(conn, owner_pool, books):
    option_id = await create_option(conn, 50)
    successes, refused = await run_concurrently(owner_pool, option_id, [1] * 200)
    assert (len(successes), refused) == (50, 150)
    assert await books(option_id) == {"remaining": 0, "sold": 50, "total": 50}
    all_tickets = [t for s in successes for t in s["ticket_ids"]]
    assert len(set(all_tickets)) == 50


async def test_concurrent_mixed_quantities_account_for_every_ticket(conn, owner_pool, books):
    option_id = await create_option(conn, 100)
    quantities = [random.randint(1, 5) for _ in range(100)]  # about 3x the supply
    successes, _ = await run_concurrently(owner_pool, option_id, quantities)
    state = await books(option_id)  # tickets: check_consistency() matches them to the purchases
    bought = sum(s["quantity"] for s in successes)
    assert state["sold"] == bought
    assert state["sold"] + state["remaining"] == state["total"] == 100
    # Demand exceeds supply, so what is left is less than the smallest ask that was refused.
    assert state["remaining"] < 5
