"""purchase_tickets_batch: many requests, one lock, each decided alone, in order."""

import asyncio
import random
import uuid
from datetime import timedelta

import asyncpg
import pytest

from .helpers import create_option, ticket_requests

U1, U2, U3 = (uuid.uuid4() for _ in range(3))


async def batch(conn, option_id, requests):
    """requests: [(user_id, quantity, key)]; returns [(sqlstate or None, receipt or None)]."""
    rows = await conn.fetch(
        "SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
        ticket_requests(option_id, [r[0] for r in requests], [r[1] for r in requests], [r[2] for r in requests]),
    )
    assert [row["ordinal"] for row in rows] == list(range(1, len(requests) + 1))
    return [(row["refusal"]["sqlstate"] if row["refusal"] else None, row["receipt"]) for row in rows]


async def test_each_request_is_decided_alone_in_arrival_order(conn, books):
    option_id = await create_option(conn, 5, max_per_user=3)
    outcomes = await batch(conn, option_id, [
        (U1, 2, None),      # bought: 3 left
        (U1, 2, None),      # U1 would hold 4 > 3
        (U2, 3, None),      # bought: 0 left
        (U3, 1, None),      # sold out
        (None, 1, None),    # invalid user
        (U3, 0, None),      # invalid quantity
        (U1, 1, "k\n"),     # malformed key
    ])
    assert [sqlstate for sqlstate, _ in outcomes] == [None, "TA007", None, "TA003", "TA001", "TA001", "TA001"]
    assert [receipt["quantity"] for sqlstate, receipt in outcomes if sqlstate is None] == [2, 3]
    assert all(receipt is None for sqlstate, receipt in outcomes if sqlstate)
    assert await books(option_id) == {"remaining": 0, "sold": 5, "total": 5}


async def test_refusals_carry_what_purchase_tickets_would_raise(conn):
    option_id = await create_option(conn, 1)
    rows = await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                            ticket_requests(option_id, [U1, None], [2, 1]))
    insufficient, invalid = rows[0]["refusal"], rows[1]["refusal"]
    assert insufficient["message"] == "not enough tickets left: 2 requested, 1 remaining"
    assert insufficient["detail"] == "remaining: 1"
    assert (invalid["sqlstate"], invalid["column_name"]) == ("TA001", "user_id")
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM purchase_tickets($1, $2, 2)", option_id, U1)
    assert (raised.value.sqlstate, raised.value.message, raised.value.detail) == (
        insufficient["sqlstate"], insufficient["message"], insufficient["detail"])


async def test_duplicate_keys_in_one_batch_buy_once(conn, books):
    option_id = await create_option(conn, 10)
    outcomes = await batch(conn, option_id, [(U1, 1, "k"), (U1, 1, "k"), (U1, 2, "k"), (U2, 1, "other")])
    assert [sqlstate for sqlstate, _ in outcomes] == [None, None, "TA005", None]
    assert outcomes[0][1]["id"] == outcomes[1][1]["id"]
    assert (await books(option_id))["sold"] == 2
    # And in a later batch the key still answers with the same purchase.
    later = await batch(conn, option_id, [(U1, 1, "k")])
    assert later[0][1]["id"] == outcomes[0][1]["id"]
    assert (await books(option_id))["sold"] == 2


async def test_a_refused_first_use_of_a_key_answers_its_repeat_the_same(conn):
    option_id = await create_option(conn, 1)
    outcomes = await batch(conn, option_id, [(U1, 5, "big"), (U1, 5, "big"), (U2, 1, None)])
    assert [sqlstate for sqlstate, _ in outcomes] == ["TA003", "TA003", None]


async def test_requests_of_unknown_or_null_options_are_refused_alone(conn, books):
    option_id = await create_option(conn, 10)
    unknown = uuid.uuid4()
    rows = await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])", [
        (unknown, U1, 1, None, None, None), (option_id, U2, 1, None, None, None), (None, U3, 1, None, None, None),
        (option_id, U3, 1, None, None, timedelta(minutes=1))])
    assert [(r["refusal"] or {}).get("sqlstate") for r in rows] == ["TA002", None, "TA001", "TA001"]
    assert [(r["refusal"] or {}).get("column_name") for r in rows] == [None, None, "ticket_option_id", "ttl"]
    assert rows[0]["refusal"]["message"] == f"ticket option {unknown} does not exist"
    assert (await books(option_id))["sold"] == 1


async def test_one_batch_may_buy_from_many_options(conn, books):
    first, second = await create_option(conn, 3), await create_option(conn, 3)
    rows = await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])", [
        (second, U1, 2, None, None, None), (first, U1, 3, None, None, None), (second, U2, 2, None, None, None),
        (first, U2, 1, None, None, None)])
    assert [(r["refusal"] or {}).get("sqlstate") for r in rows] == [None, None, "TA003", "TA003"]
    assert [r["receipt"]["ticket_option_id"] for r in rows[:2]] == [second, first]
    assert (await books(first))["sold"] == 3 and (await books(second))["sold"] == 2


async def test_an_empty_batch_answers_nothing(conn):
    option_id = await create_option(conn, 10)
    assert await batch(conn, option_id, []) == []


async def test_concurrent_batches_never_oversell(conn, owner_pool, books):
    option_id = await create_option(conn, 300)

    async def one_batch():
        size = random.randint(1, 30)
        return await batch(owner_pool, option_id, [(uuid.uuid4(), random.randint(1, 4), None) for _ in range(size)])
    results = await asyncio.wait_for(asyncio.gather(*(one_batch() for _ in range(40))), timeout=120)
    outcomes = [outcome for result in results for outcome in result]
    assert {sqlstate for sqlstate, _ in outcomes} <= {None, "TA003"}
    bought = sum(receipt["quantity"] for sqlstate, receipt in outcomes if sqlstate is None)
    state = await books(option_id)
    assert state["sold"] == bought
    assert state["total"] == 300
