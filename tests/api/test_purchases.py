"""POST /ticket_options/{id}/purchases, alone and many at once over real HTTP."""

import asyncio
import random
import uuid

import aiohttp

from ..people import USER
from .helpers import assert_problem, buy, create_option


async def test_purchase_returns_201_with_ticket_ids_and_decrements(client):
    option = await create_option(client, 10)
    response = await buy(client, option["id"], 3)
    assert response.status == 201
    purchase = await response.json()
    assert purchase["ticket_option_id"] == option["id"]
    assert purchase["user_id"] == USER
    assert purchase["quantity"] == 3
    assert len(set(purchase["ticket_ids"])) == 3
    uuid.UUID(purchase["id"])
    remaining = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert remaining["allocation"] == 7


async def test_asking_more_than_remains_is_409_and_buys_nothing(client, conn):
    option = await create_option(client, 2)
    body = await assert_problem(await buy(client, option["id"], 3), 409, "/problems/insufficient-tickets")
    assert "3 requested, 2 remaining" in body["detail"]
    remaining = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert remaining["allocation"] == 2
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 0
    assert await conn.fetchval("SELECT count(*) FROM tickets") == 0


async def test_sold_out_option_refuses_even_one(client):
    option = await create_option(client, 1)
    assert (await buy(client, option["id"], 1)).status == 201
    await assert_problem(await buy(client, option["id"], 1), 409, "/problems/insufficient-tickets")


async def test_unknown_option_is_404(client):
    await assert_problem(await buy(client, uuid.uuid4(), 1), 404, "/problems/ticket-option-not-found")
    await assert_problem(await buy(client, "nope", 1), 404, "/problems/ticket-option-not-found")


async def test_quantity_rules_from_sql_are_422(client):
    option = await create_option(client, 5000)
    for quantity in (0, -3, 1001):
        body = await assert_problem(await buy(client, option["id"], quantity), 422, "/problems/invalid-argument")
        assert body["errors"][0]["field"] == "quantity"


async def fire(client, option_id, quantities):
    """Sends every purchase at once on its own connection; returns [(status, body)]."""
    connector = aiohttp.TCPConnector(limit=len(quantities))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = client.make_url(f"/ticket_options/{option_id}/purchases")

        async def one(quantity):
            async with session.post(url, json={"quantity": quantity, "user_id": str(uuid.uuid4())}) as response:
                return response.status, await response.json(content_type=None)

        return await asyncio.wait_for(asyncio.gather(*(one(q) for q in quantities)), timeout=120)


async def test_300_concurrent_purchases_sell_exactly_100(client, books):
    option = await create_option(client, 100)
    results = await fire(client, option["id"], [1] * 300)
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 100
    assert statuses.count(409) == 200
    ticket_ids = [t for status, body in results if status == 201 for t in body["ticket_ids"]]
    assert len(set(ticket_ids)) == 100
    assert await books(option["id"]) == {"remaining": 0, "sold": 100, "total": 100}


async def test_concurrent_mixed_quantities_never_oversell(client, books):
    option = await create_option(client, 100)
    quantities = [random.randint(1, 5) for _ in range(100)]  # about 3x the supply
    results = await fire(client, option["id"], quantities)
    assert {status for status, _ in results} <= {201, 409}
    bought = sum(body["quantity"] for status, body in results if status == 201)
    state = await books(option["id"])  # tickets: check_consistency() matches them to the purchases
    assert state["sold"] == bought
    assert state["sold"] + state["remaining"] == state["total"] == 100
    assert state["remaining"] < 5
