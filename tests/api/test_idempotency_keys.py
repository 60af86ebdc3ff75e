"""The Idempotency-Key header on POST /ticket_options and POST .../purchases."""

import asyncio

import aiohttp
import asyncpg

from service import db
from service.app import create_app

from ..apps import app_settings

from ..people import USER
from ..polling import wait_until
from .helpers import assert_problem, buy, create_option


async def test_a_retry_replays_the_first_purchase(client):
    option = await create_option(client, 10)
    first = await buy(client, option["id"], 2, key="order-1")
    again = await buy(client, option["id"], 2, key="order-1")
    assert first.status == again.status == 201
    assert await again.json() == await first.json()
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["allocation"] == 8


async def test_same_key_different_request_is_422(client):
    option = await create_option(client, 10)
    await buy(client, option["id"], 2, key="order-1")
    body = await assert_problem(await buy(client, option["id"], 3, key="order-1"), 422, "/problems/idempotency-key-reused")
    assert "order-1" in body["detail"]


async def test_malformed_key_is_422_naming_it(client):
    option = await create_option(client, 10)
    for key in ("", "x" * 256, "caf\u00e9"):
        body = await assert_problem(await buy(client, option["id"], key=key), 422, "/problems/invalid-argument")
        assert body["errors"][0]["field"] == "idempotency_key"


async def test_creating_an_option_with_a_key_is_idempotent(client):
    payload = {"name": "Gig", "allocation": 5}
    first = await client.post("/ticket_options", json=payload, headers={"Idempotency-Key": "gig-1"})
    again = await client.post("/ticket_options", json=payload, headers={"Idempotency-Key": "gig-1"})
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]
    other = await client.post("/ticket_options", json={**payload, "allocation": 6}, headers={"Idempotency-Key": "gig-1"})
    await assert_problem(other, 422, "/problems/idempotency-key-reused")


async def test_50_concurrent_retries_buy_once(client, conn, books):
    option = await create_option(client, 100)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
        async def attempt():
            async with session.post(client.make_url(f"/ticket_options/{option['id']}/purchases"),
                                    json={"quantity": 2, "user_id": str(USER)},
                                    headers={"Idempotency-Key": "checkout-7"}) as response:
                return response.status, response.headers.get("Retry-After"), await response.json(content_type=None)
        results = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(50))), timeout=120)
    created = {body["id"] for status, _, body in results if status == 201}
    assert len(created) == 1
    for status, retry_after, body in results:
        if status == 409:
            assert body["type"] == "/problems/idempotency-key-in-flight" and retry_after
        else:
            assert status == 201
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 1
    assert (await books(option["id"]))["sold"] == 2


async def test_configured_ttl_applies_and_expired_keys_are_purged(
    aiohttp_client, api_database_url, admin_database_url, database_url, monkeypatch
):
    monkeypatch.setattr(db, "PURGE_INTERVAL_SECONDS", 0.05)
    owner = await asyncpg.connect(database_url)
    await owner.execute("UPDATE settings SET idempotency_key_ttl = '0 seconds'")
    await owner.close()
    client = await aiohttp_client(create_app(app_settings(api_database_url, admin_database_url)))
    option = await create_option(client, 10)
    first = await (await buy(client, option["id"], key="short")).json()
    second = await (await buy(client, option["id"], key="short")).json()
    assert first["id"] != second["id"]  # expired at once, so the retry is a new request
    conn = await asyncpg.connect(database_url)
    try:
        async def purged():
            return await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0
        await wait_until(purged, "the server's purger to delete the expired keys")
    finally:
        await conn.close()
