"""Holds over HTTP: the contract of issue 12, real concurrent requests, expiry by the SQL clock."""

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from ..polling import wait_until
from ..sql.helpers import sessions_waiting_for_a_lock
from .helpers import HeldOptionLock, advance_clock, assert_problem, buy, create_option, hold


async def test_hold_then_confirm(client):
    option = await create_option(client, allocation=10)
    response = await hold(client, option["id"], 3)
    assert response.status == 201
    held = await response.json()
    assert response.headers["Location"] == f"/holds/{held['id']}"
    assert held["status"] == "held" and held["purchase_id"] is None and held["quantity"] == 3
    assert set(held) == {"id", "ticket_option_id", "user_id", "quantity", "status", "expires_at", "created_at",
                         "purchase_id", "order_id"}
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"], seen["sold"]) == (7, 3, 0)

    confirmed = await client.post(f"/holds/{held['id']}/confirm")
    assert confirmed.status == 201
    purchase = await confirmed.json()
    assert confirmed.headers["Location"] == f"/purchases/{purchase['id']}"
    assert purchase["quantity"] == 3 and len(purchase["ticket_ids"]) == 3
    again = await client.post(f"/holds/{held['id']}/confirm")
    assert again.status == 200 and (await again.json())["id"] == purchase["id"]
    now = await (await client.get(f"/holds/{held['id']}")).json()
    assert now["status"] == "confirmed" and now["purchase_id"] == purchase["id"]
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"], seen["sold"]) == (7, 0, 3)
    await assert_problem(await client.post(f"/holds/{held['id']}/release"), 409, "/problems/hold-confirmed")
    # Cancelling a purchase made from a hold works as for any purchase.
    cancelled = await client.post(f"/purchases/{purchase['id']}/cancel")
    assert cancelled.status == 200
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"], seen["sold"]) == (10, 0, 0)


async def test_release_puts_tickets_on_sale_and_is_idempotent(client):
    option = await create_option(client, allocation=2)
    held = await (await hold(client, option["id"], 2)).json()
    await assert_problem(await hold(client, option["id"], 1), 409, "/problems/insufficient-tickets")
    for _ in range(2):
        released = await client.post(f"/holds/{held['id']}/release")
        assert released.status == 200 and (await released.json())["status"] == "released"
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["allocation"] == 2
    await assert_problem(await client.post(f"/holds/{held['id']}/confirm"), 409, "/problems/hold-released")


async def test_only_a_release_that_released_counts_in_the_metrics(client):
    option = await create_option(client, allocation=2)
    held = await (await hold(client, option["id"], 1)).json()
    for _ in range(3):
        assert (await client.post(f"/holds/{held['id']}/release")).status == 200
    metrics = await (await client.get("/metrics")).text()
    released = [line for line in metrics.splitlines()
                if line.startswith('ticket_allocation_hold_outcomes_total{outcome="released"')]
    assert len(released) == 1 and released[0].endswith(" 1.0"), released


async def test_an_expired_hold(client, database_url):
    option = await create_option(client, allocation=2)
    held = await (await hold(client, option["id"], 2, ttl_seconds=60)).json()
    await advance_clock(database_url, "60 seconds")
    assert (await (await client.get(f"/holds/{held['id']}")).json())["status"] == "expired"
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"]) == (2, 0)
    await assert_problem(await client.post(f"/holds/{held['id']}/confirm"), 409, "/problems/hold-expired")
    released = await client.post(f"/holds/{held['id']}/release")
    assert released.status == 200 and (await released.json())["status"] == "expired"


async def test_unknown_and_malformed_holds_are_404(client):
    for path in (f"/holds/{uuid.uuid4()}", "/holds/not-a-uuid"):
        await assert_problem(await client.get(path), 404, "/problems/hold-not-found")
        await assert_problem(await client.post(f"{path}/confirm"), 404, "/problems/hold-not-found")
        await assert_problem(await client.post(f"{path}/release"), 404, "/problems/hold-not-found")
    await assert_problem(await hold(client, uuid.uuid4()), 404, "/problems/ticket-option-not-found")


async def test_bad_input(client):
    option = await create_option(client, allocation=2)
    for ttl in (0, 86401, -5):
        body = await assert_problem(await hold(client, option["id"], ttl_seconds=ttl), 422, "/problems/invalid-argument")
        assert body["errors"][0]["field"] == "ttl_seconds"
    await assert_problem(await hold(client, option["id"], ttl_seconds="600"), 422, "/problems/invalid-argument")
    await assert_problem(await hold(client, option["id"], 0), 422, "/problems/invalid-argument")
    await assert_problem(await hold(client, option["id"], colour="red"), 422, "/problems/invalid-argument")
    await assert_problem(
        await client.post(f"/ticket_options/{option['id']}/holds", data="x", headers={"Content-Type": "text/plain"}),
        415, "/problems/unsupported-media-type")
    await assert_problem(
        await client.post(f"/ticket_options/{option['id']}/holds", data="{", headers={"Content-Type": "application/json"}),
        400, "/problems/malformed-body")


async def test_max_per_user_counts_holds(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 10, "max_per_user": 2})
    option = await response.json()
    assert (await hold(client, option["id"], 2)).status == 201
    await assert_problem(await hold(client, option["id"], 1), 409, "/problems/per-user-limit-exceeded")
    await assert_problem(
        await buy(client, option["id"]),
        409, "/problems/per-user-limit-exceeded")


async def test_a_retried_hold_holds_once(client):
    option = await create_option(client, allocation=10)
    first = await (await hold(client, option["id"], 2, key="k1")).json()
    retry = await hold(client, option["id"], 2, key="k1")
    assert retry.status == 201 and (await retry.json())["id"] == first["id"]
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["held"] == 2
    await assert_problem(await hold(client, option["id"], 3, key="k1"), 422,
                         "/problems/idempotency-key-reused")


async def test_300_concurrent_holds_for_100_tickets(client):
    option = await create_option(client, allocation=100)
    responses = await asyncio.gather(*(hold(client, option["id"], 1, user_id=uuid.uuid4()) for _ in range(300)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 100 and statuses.count(409) == 200
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"], seen["sold"]) == (0, 100, 0)


async def test_concurrent_confirms_releases_and_purchases_do_not_deadlock(client):
    option = await create_option(client, allocation=60)
    holds = [await (await hold(client, option["id"], 2, user_id=uuid.uuid4())).json() for _ in range(20)]
    requests = [client.post(f"/holds/{h['id']}/confirm") for h in holds]
    requests += [client.post(f"/holds/{h['id']}/release") for h in holds]
    requests += [buy(client, option["id"], user_id=uuid.uuid4()) for _ in range(20)]
    requests += [hold(client, option["id"], 1, user_id=uuid.uuid4()) for _ in range(20)]
    responses = await asyncio.gather(*requests)
    assert {r.status for r in responses} <= {200, 201, 409}
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert seen["allocation"] + seen["held"] + seen["sold"] == 60
    statuses = [(await (await client.get(f"/holds/{h['id']}")).json())["status"] for h in holds]
    assert set(statuses) <= {"confirmed", "released"}
    assert seen["sold"] == 2 * statuses.count("confirmed") + sum(
        r.status == 201 and r.url.path.endswith("/purchases") for r in responses)


async def test_the_servers_sweeper_stores_expired_holds_and_metrics_count_holds(client, database_url):
    from service.db import sweep_once
    from service.keys import ADMIN_POOL

    option = await create_option(client, allocation=5)
    held = await (await hold(client, option["id"], 2, ttl_seconds=60)).json()
    await advance_clock(database_url, "61 seconds")
    assert await sweep_once(client.app[ADMIN_POOL]) == 1  # what the server's loop calls every few seconds
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", uuid.UUID(held["id"])) == "expired"
        assert await conn.fetch("SELECT * FROM check_consistency()") == []
    finally:
        await conn.close()
    metrics = await (await client.get("/metrics")).text()
    assert any(line.startswith("ticket_allocation_holds_total{") and line.endswith(" 1.0")
               for line in metrics.splitlines())


@pytest.mark.parametrize("database_settings", [{"lock_timeout": "10s"}])  # the lock outlives the role's 1 s
async def test_a_confirm_queued_on_the_lock_past_expiry_answers_expired(client, database_url):
    # Issue 17's race: a session holds the option's lock from before expires_at to after it; a confirm
    # sent before expiry and a read sent after it both wait, and both say expired.
    option = await create_option(client, allocation=10)
    held = await (await hold(client, option["id"], 2, ttl_seconds=1)).json()
    async with HeldOptionLock(database_url, option["id"]) as lock:
        confirming = asyncio.ensure_future(client.post(f"/holds/{held['id']}/confirm"))

        async def queued(calls):
            return await sessions_waiting_for_a_lock(lock.conn) >= calls
        await wait_until(lambda: queued(1), "the confirm to queue on the option's lock")
        # Real time passes the hold's expires_at (this race is about real time, not the test clock).
        expires_at = datetime.fromisoformat(held["expires_at"])
        await wait_until(lambda: datetime.now(timezone.utc) > expires_at, "the hold's expires_at to pass")
        reading = asyncio.ensure_future(client.get(f"/holds/{held['id']}"))
        # It waits for the decision in progress (the second waiter of a row waits for the first), or has its answer.
        await wait_until(lambda: reading.done() or queued(2), "the read to queue behind the confirm")
    await assert_problem(await confirming, 409, "/problems/hold-expired")
    read = await reading
    assert read.status == 200 and (await read.json())["status"] == "expired"
    seen = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (seen["allocation"], seen["held"], seen["sold"]) == (10, 0, 0)


async def test_an_options_max_hold_seconds_caps_its_holds(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 10, "max_hold_seconds": 60})
    assert response.status == 201
    option = await response.json()
    assert option["max_hold_seconds"] == 60
    held = await (await hold(client, option["id"], 1, ttl_seconds=3600)).json()
    lifetime = datetime.fromisoformat(held["expires_at"]) - datetime.fromisoformat(held["created_at"])
    assert lifetime == timedelta(seconds=60)
    for bad in (0, 86401, "60", 1.5):
        problem = await assert_problem(
            await client.post("/ticket_options", json={"name": "Gig", "allocation": 10, "max_hold_seconds": bad}), 422)
        assert "max_hold_seconds" in str(problem)
