"""Reading, listing and cancelling purchases over HTTP."""

import asyncio
import random
import uuid

import aiohttp

from ..people import USER
from .helpers import assert_problem, buy, create_option


async def test_a_purchase_can_be_read_back_from_its_location(client):
    option = await create_option(client, 10)
    response = await buy(client, option["id"], 2)
    bought = await response.json()
    assert response.headers["Location"] == f"/purchases/{bought['id']}"
    read = await client.get(response.headers["Location"])
    assert read.status == 200
    assert await read.json() == bought
    assert bought["status"] == "active" and bought["cancelled_at"] is None


async def test_unknown_or_malformed_purchase_is_404(client):
    for path in (f"/purchases/{uuid.uuid4()}", "/purchases/nope", f"/purchases/{uuid.uuid4()}/cancel"):
        method = client.post if path.endswith("/cancel") else client.get
        await assert_problem(await method(path), 404, "/problems/purchase-not-found")


async def test_cancel_returns_tickets_and_is_harmless_twice(client):
    option = await create_option(client, 5)
    bought = await (await buy(client, option["id"], 3)).json()
    first = await client.post(f"/purchases/{bought['id']}/cancel")
    assert first.status == 200
    cancelled = await first.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    second = await client.post(f"/purchases/{bought['id']}/cancel")
    assert second.status == 200 and await second.json() == cancelled
    state = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (state["allocation"], state["sold"]) == (5, 0)


async def test_list_pages_newest_first_with_an_opaque_cursor(client):
    option = await create_option(client, 100)
    ids = [(await (await buy(client, option["id"], user_id=uuid.uuid4())).json())["id"] for _ in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/ticket_options/{option['id']}/purchases", params=params)
        assert response.status == 200
        page = await response.json()
        assert len(page["purchases"]) <= 3
        seen += [p["id"] for p in page["purchases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


async def test_a_page_is_bounded_by_the_tickets_it_carries(client, conn):
    """limit=500 over purchases of 1,000 tickets: pages stop at the ticket budget, and the cursor
    still lists each purchase once."""
    budget = await conn.fetchval("SELECT list_purchases_ticket_budget()")
    option = await create_option(client, 5 * budget + 20)
    ids = [(await (await buy(client, option["id"], q, user_id=uuid.uuid4())).json())["id"]
           for q in [budget // 2, budget // 2, budget, 7, 13, budget, budget // 2, budget]]
    seen, cursor, pages = [], None, 0
    while pages < 20:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get(f"/ticket_options/{option['id']}/purchases", params=params)).json()
        pages += 1
        tickets = [p["quantity"] for p in page["purchases"]]
        assert sum(tickets[:-1]) < budget  # only the last purchase of a page may reach past the budget
        seen += [p["id"] for p in page["purchases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert pages > 3


async def test_list_default_limit_and_user_filter(client):
    option = await create_option(client, 100)
    mine = [(await (await buy(client, option["id"])).json())["id"] for _ in range(2)]
    await buy(client, option["id"], user_id=uuid.uuid4())
    everyone = await (await client.get(f"/ticket_options/{option['id']}/purchases")).json()
    assert len(everyone["purchases"]) == 3 and everyone["next_cursor"] is None
    filtered = await (await client.get(
        f"/ticket_options/{option['id']}/purchases", params={"user_id": USER})).json()
    assert [p["id"] for p in filtered["purchases"]] == mine[::-1]


async def test_list_rejects_bad_query_parameters(client):
    option = await create_option(client, 1)
    path = f"/ticket_options/{option['id']}/purchases"
    cases = [
        ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"), ({"limit": "99999999999"}, "limit"),
        ({"cursor": "garbage"}, "cursor"), ({"cursor": "Zm9vfGJhcg"}, "cursor"),
        ({"user_id": "bob"}, "user_id"), ({"userid": str(USER)}, "userid"),
    ]
    for params, field in cases:
        body = await assert_problem(await client.get(path, params=params), 422, "/problems/invalid-argument")
        assert [e["field"] for e in body["errors"]] == [field], params
    await assert_problem(
        await client.get(f"/ticket_options/{uuid.uuid4()}/purchases"), 404, "/problems/ticket-option-not-found")


async def test_option_body_shows_sold_and_max_per_user(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 10, "max_per_user": 4})
    option = await response.json()
    assert (option["allocation"], option["sold"], option["max_per_user"]) == (10, 0, 4)
    await buy(client, option["id"], 3)
    state = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (state["allocation"], state["sold"]) == (7, 3)


async def test_per_user_limit_is_409_with_its_own_type(client):
    option = await (await client.post(
        "/ticket_options", json={"name": "Gig", "allocation": 10, "max_per_user": 2})).json()
    assert (await buy(client, option["id"], 2)).status == 201
    body = await assert_problem(await buy(client, option["id"], 1), 409, "/problems/per-user-limit-exceeded")
    assert "at most 2" in body["detail"]
    assert (await buy(client, option["id"], 2, user_id=uuid.uuid4())).status == 201


async def test_per_user_limit_holds_under_concurrent_requests(client):
    option = await (await client.post(
        "/ticket_options", json={"name": "Gig", "allocation": 100, "max_per_user": 3})).json()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=40)) as session:
        async def attempt():
            async with session.post(client.make_url(f"/ticket_options/{option['id']}/purchases"),
                                    json={"quantity": 1, "user_id": str(USER)}) as response:
                return response.status
        statuses = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(40))), timeout=120)
    assert statuses.count(201) == 3 and statuses.count(409) == 37


async def test_cancels_racing_purchases_over_http_keep_the_books(client):
    option = await create_option(client, 30)
    early = [await (await buy(client, option["id"], 2, user_id=uuid.uuid4())).json() for _ in range(10)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def post(path, payload=None):
            async with session.post(client.make_url(path), json=payload) as response:
                return response.status, await response.json(content_type=None)

        jobs = [post(f"/purchases/{p['id']}/cancel") for p in early] + [
            post(f"/ticket_options/{option['id']}/purchases",
                 {"quantity": random.randint(1, 3), "user_id": str(uuid.uuid4())}) for _ in range(60)]
        random.shuffle(jobs)
        results = await asyncio.wait_for(asyncio.gather(*jobs), timeout=120)
    assert {status for status, _ in results} <= {200, 201, 409}
    state = await (await client.get(f"/ticket_options/{option['id']}")).json()
    listed = await (await client.get(f"/ticket_options/{option['id']}/purchases", params={"limit": "500"})).json()
    active = sum(p["quantity"] for p in listed["purchases"] if p["status"] == "active")
    assert state["sold"] == active
    assert state["allocation"] + state["sold"] == 30
