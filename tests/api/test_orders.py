"""Orders and quotas over HTTP: the contract of issue 18, real concurrent requests, expiry by the SQL clock."""

import asyncio
import uuid

import asyncpg

from tests.conftest import read_books

from ..people import USER
from .helpers import advance_clock, assert_problem, buy, create_option, hold


async def create_quota(client, size, option_ids, name="Hall"):
    response = await client.post("/quotas", json={"name": name, "size": size, "ticket_option_ids": option_ids})
    assert response.status == 201, await response.text()
    return await response.json()


async def order(client, lines, user_id=USER, key=None, **extra):
    """POST /orders; lines: [(option_id, quantity)]."""
    body = {"user_id": str(user_id), "lines": [{"ticket_option_id": o, "quantity": q} for o, q in lines], **extra}
    return await client.post("/orders", json=body, headers={"Idempotency-Key": key} if key else None)


async def option(client, option_id):
    return await (await client.get(f"/ticket_options/{option_id}")).json()


async def books_balance(database_url, option_id):
    conn = await asyncpg.connect(database_url)
    try:
        return await read_books(conn, option_id)
    finally:
        await conn.close()


async def test_a_quota_is_created_read_and_changed(client):
    standing, seated = await create_option(client, 100), await create_option(client, 50)
    response = await client.post("/quotas", json={"name": "Hall", "size": 120,
                                                  "ticket_option_ids": [standing["id"], seated["id"]]})
    assert response.status == 201
    quota = await response.json()
    assert response.headers["Location"] == f"/quotas/{quota['id']}"
    assert set(quota) == {"id", "name", "size", "sold", "held", "remaining", "ticket_option_ids", "created_at"}
    assert (quota["size"], quota["sold"], quota["held"], quota["remaining"]) == (120, 0, 0, 120)
    assert sorted(quota["ticket_option_ids"]) == sorted([standing["id"], seated["id"]])
    assert (await option(client, standing["id"]))["quota_ids"] == [quota["id"]]
    assert (await buy(client, standing["id"], 30)).status == 201
    seen = await (await client.get(f"/quotas/{quota['id']}")).json()
    assert (seen["sold"], seen["remaining"]) == (30, 90)
    assert (await option(client, seated["id"]))["available"] == 50
    smaller = await client.patch(f"/quotas/{quota['id']}", json={"size": 60})
    assert smaller.status == 200 and (await smaller.json())["remaining"] == 30
    assert (await option(client, seated["id"]))["available"] == 30
    problem = await assert_problem(await client.patch(f"/quotas/{quota['id']}", json={"size": 29}), 409,
                                   "/problems/quota-too-small")
    assert problem["detail"] == "size 29 is below what the quota's options have sold and hold now: 30 (30 sold, 0 held)"
    only_seated = await client.patch(f"/quotas/{quota['id']}", json={"ticket_option_ids": [seated["id"]]})
    assert (await only_seated.json())["sold"] == 0
    assert (await option(client, standing["id"]))["available"] == 70


async def test_a_short_quota_is_a_409_naming_it(client, database_url):
    a, b = await create_option(client, 10), await create_option(client, 10)
    quota = await create_quota(client, 5, [a["id"], b["id"]])
    assert (await buy(client, a["id"], 4)).status == 201
    problem = await assert_problem(await buy(client, b["id"], 2), 409, "/problems/quota-exhausted")
    assert problem["quota_id"] == quota["id"]
    assert problem["detail"] == f'not enough tickets left in quota "Hall" ({quota["id"]}): 2 requested, 1 remaining'
    held = await hold(client, b["id"], 2)
    assert (await assert_problem(held, 409, "/problems/quota-exhausted"))["quota_id"] == quota["id"]
    await books_balance(database_url, a["id"])


async def test_bad_quota_requests_are_4xx(client):
    a = await create_option(client, 10)
    for body, field in [({"name": "Q", "size": 1}, "ticket_option_ids"),
                        ({"name": "Q", "size": 1, "ticket_option_ids": ["nope"]}, "ticket_option_ids"),
                        ({"name": "Q", "size": -1, "ticket_option_ids": [a["id"]]}, "size"),
                        ({"name": "Q", "size": 1, "ticket_option_ids": [a["id"], a["id"]]}, "ticket_option_ids")]:
        problem = await assert_problem(await client.post("/quotas", json=body), 422, "/problems/invalid-argument")
        assert [e["field"] for e in problem["errors"]] == [field], body
    await assert_problem(await client.post("/quotas", json={"name": "Q", "size": 1,
                                                            "ticket_option_ids": [str(uuid.uuid4())]}),
                         404, "/problems/ticket-option-not-found")
    await assert_problem(await client.get(f"/quotas/{uuid.uuid4()}"), 404, "/problems/quota-not-found")
    await assert_problem(await client.get("/quotas/nope"), 404, "/problems/quota-not-found")
    await assert_problem(await client.patch(f"/quotas/{uuid.uuid4()}", json={"size": 3}), 404,
                         "/problems/quota-not-found")


async def test_an_order_buys_every_line_at_once(client, database_url):
    a, b = await create_option(client, 10), await create_option(client, 10)
    response = await order(client, [(a["id"], 2), (b["id"], 3)])
    assert response.status == 201
    placed = await response.json()
    assert response.headers["Location"] == f"/orders/{placed['id']}"
    assert set(placed) == {"id", "user_id", "status", "lines", "expires_at", "created_at", "purchases", "holds"}
    assert placed["status"] == "confirmed" and placed["expires_at"] is None and placed["holds"] == []
    assert placed["lines"] == [{"ticket_option_id": a["id"], "quantity": 2}, {"ticket_option_id": b["id"], "quantity": 3}]
    assert [(p["ticket_option_id"], p["quantity"], p["order_id"]) for p in placed["purchases"]] == [
        (a["id"], 2, placed["id"]), (b["id"], 3, placed["id"])]
    bought = await (await client.get(f"/purchases/{placed['purchases'][0]['id']}")).json()
    assert bought["order_id"] == placed["id"]
    assert await (await client.get(f"/orders/{placed['id']}")).json() == placed
    confirmed = await client.post(f"/orders/{placed['id']}/confirm")  # bought at once: bought before
    assert confirmed.status == 200 and (await confirmed.json())["id"] == placed["id"]
    await books_balance(database_url, a["id"])


async def test_an_order_is_refused_whole_listing_every_failing_line(client):
    a, b = await create_option(client, 10), await create_option(client, 5)
    quota = await create_quota(client, 12, [a["id"], b["id"]])
    missing = str(uuid.uuid4())
    response = await order(client, [(a["id"], 10), (b["id"], 3), (missing, 1), (b["id"], 1)])
    problem = await assert_problem(response, 422, "/problems/invalid-argument")  # b twice: invalid first
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(4, "ticket_option_id")]
    response = await order(client, [(a["id"], 10), (b["id"], 3), (missing, 1)])
    problem = await assert_problem(response, 409, "/problems/quota-exhausted")  # line 2's (3 > 12 - 10 left)
    assert problem["errors"] == [
        {"line": 2, "type": "/problems/quota-exhausted", "quota_id": quota["id"],
         "detail": f'not enough tickets left in quota "Hall" ({quota["id"]}): 3 requested, 2 remaining'},
        {"line": 3, "type": "/problems/ticket-option-not-found", "detail": f"ticket option {missing} does not exist"}]
    problem = await assert_problem(await order(client, [(missing, 1), (a["id"], 1)]), 404,
                                   "/problems/ticket-option-not-found")
    assert [e["line"] for e in problem["errors"]] == [1]
    assert (await option(client, a["id"]))["sold"] == 0 and (await option(client, b["id"]))["sold"] == 0


async def test_invalid_orders_are_422_naming_each_line_and_field(client):
    a = await create_option(client, 10)
    problem = await assert_problem(await client.post("/orders", json={
        "user_id": USER, "lines": [{"ticket_option_id": a["id"], "quantity": "2"}, {"quantity": 1},
                                   {"ticket_option_id": a["id"], "quantity": 1, "price": 3}]}), 422)
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [
        (1, "quantity"), (2, "ticket_option_id"), (3, "price")]
    for body, field in [({"user_id": USER, "lines": []}, None), ({"user_id": USER, "lines": {}}, "lines"),
                        ({"lines": [{"ticket_option_id": a["id"], "quantity": 1}]}, "user_id"),
                        ({"user_id": USER, "lines": [{"ticket_option_id": a["id"], "quantity": 1}] * 51}, "lines"),
                        ({"user_id": USER, "lines": [{"ticket_option_id": a["id"], "quantity": 0}]}, "quantity"),
                        ({"user_id": USER, "lines": [{"ticket_option_id": a["id"], "quantity": 1}], "ttl_seconds": 0},
                         "ttl_seconds")]:
        problem = await assert_problem(await client.post("/orders", json=body), 422, "/problems/invalid-argument")
        assert field is None or field in {e.get("field") for e in problem.get("errors", [])} or field in problem["detail"], (body, problem)


async def test_a_held_order_is_confirmed_as_a_whole(client, database_url):
    a, b = await create_option(client, 10), await create_option(client, 10)
    response = await order(client, [(a["id"], 2), (b["id"], 1)], ttl_seconds=900)
    assert response.status == 201
    held = await response.json()
    assert held["status"] == "held" and held["purchases"] == []
    assert [(h["status"], h["order_id"], h["expires_at"]) for h in held["holds"]] == [
        ("held", held["id"], held["expires_at"])] * 2
    assert (await option(client, a["id"]))["held"] == 2
    await assert_problem(await client.post(f"/holds/{held['holds'][0]['id']}/confirm"), 409, "/problems/hold-of-order")
    confirmed = await client.post(f"/orders/{held['id']}/confirm")
    assert confirmed.status == 201 and confirmed.headers["Location"] == f"/orders/{held['id']}"
    bought = await confirmed.json()
    assert bought["status"] == "confirmed" and [p["quantity"] for p in bought["purchases"]] == [2, 1]
    again = await client.post(f"/orders/{held['id']}/confirm")
    assert again.status == 200 and (await again.json())["purchases"] == bought["purchases"]
    await assert_problem(await client.post(f"/orders/{held['id']}/release"), 409, "/problems/order-bought")
    await books_balance(database_url, a["id"])


async def test_a_held_order_expires_or_is_released_and_then_buys_nothing(client, database_url):
    a = await create_option(client, 4)
    expiring = await (await order(client, [(a["id"], 2)], ttl_seconds=60)).json()
    released = await (await order(client, [(a["id"], 2)], ttl_seconds=600, user_id=str(uuid.uuid4()))).json()
    assert (await option(client, a["id"]))["allocation"] == 0
    let_go = await client.post(f"/orders/{released['id']}/release")
    assert let_go.status == 200 and (await let_go.json())["status"] == "released"
    await advance_clock(database_url, "61 seconds")
    assert (await (await client.get(f"/orders/{expiring['id']}")).json())["status"] == "expired"
    await assert_problem(await client.post(f"/orders/{expiring['id']}/confirm"), 409, "/problems/order-expired")
    await assert_problem(await client.post(f"/orders/{released['id']}/confirm"), 409, "/problems/order-released")
    assert (await option(client, a["id"]))["allocation"] == 4
    await assert_problem(await client.post(f"/orders/{released['id']}/cancel"), 409, "/problems/order-not-bought")
    await books_balance(database_url, a["id"])


async def test_partial_and_full_cancel(client, database_url):
    a, b = await create_option(client, 5), await create_option(client, 5)
    quota = await create_quota(client, 6, [a["id"], b["id"]])
    placed = await (await order(client, [(a["id"], 3), (b["id"], 3)])).json()
    assert (await client.post(f"/purchases/{placed['purchases'][0]['id']}/cancel")).status == 200
    partial = await (await client.get(f"/orders/{placed['id']}")).json()
    assert partial["status"] == "partially_cancelled"
    assert (await (await client.get(f"/quotas/{quota['id']}")).json())["remaining"] == 3
    cancelled = await client.post(f"/orders/{placed['id']}/cancel")
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
    assert (await (await client.get(f"/quotas/{quota['id']}")).json())["remaining"] == 6
    assert [(await option(client, o["id"]))["allocation"] for o in (a, b)] == [5, 5]
    await books_balance(database_url, a["id"])


async def test_a_retried_order_with_its_key_is_placed_once(client):
    a = await create_option(client, 10)
    first = await order(client, [(a["id"], 2)], key="checkout-9")
    again = await order(client, [(a["id"], 2)], key="checkout-9")
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]
    assert (await option(client, a["id"]))["sold"] == 2
    await assert_problem(await order(client, [(a["id"], 3)], key="checkout-9"), 422, "/problems/idempotency-key-reused")
    other_user = await order(client, [(a["id"], 2)], key="checkout-9", user_id=uuid.uuid4())
    assert (await other_user.json())["id"] != (await first.json())["id"]


async def test_concurrent_orders_and_purchases_over_http_never_oversell_a_quota(client, database_url):
    options = [await create_option(client, 30) for _ in range(3)]
    quota = await create_quota(client, 40, [o["id"] for o in options])

    async def one(n):
        if n % 3:
            return await buy(client, options[n % 3]["id"], 1, user_id=uuid.uuid4())
        lines = [(o["id"], 1) for o in (options if n % 2 else reversed(options))]
        return await order(client, lines, user_id=uuid.uuid4())
    responses = await asyncio.gather(*(one(n) for n in range(90)))
    assert {r.status for r in responses} <= {201, 409}
    placed = [await r.json() for r in responses if r.status == 201 and r.url.path == "/orders"]
    assert all(len(p["purchases"]) == 3 for p in placed)
    state = await (await client.get(f"/quotas/{quota['id']}")).json()
    bought = sum(1 for r in responses if r.status == 201 and r.url.path != "/orders") + 3 * len(placed)
    assert state["sold"] == bought and 38 <= bought <= 40  # 150 tickets asked for 40: at most an order short
    await books_balance(database_url, options[0]["id"])
