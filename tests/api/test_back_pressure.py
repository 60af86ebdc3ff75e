"""What cannot be served quickly is refused quickly: 503 with Retry-After, never a hang.

No stopwatch: each answer is awaited while the lock that would make it hang is
still held, so getting it at all shows that the service gave up by itself.
"""

import asyncio

from service.app import create_app

from ..people import USER
from .helpers import HeldOptionLock, assert_problem, create_option


async def test_a_purchase_that_cannot_get_its_lock_is_503_after_lock_timeout(client, database_url):
    option = await create_option(client, 10)
    async with HeldOptionLock(database_url, option["id"]):
        # The API role's lock_timeout (1 s) ends the wait; the bound only keeps a broken build from hanging.
        response = await asyncio.wait_for(
            client.post(f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": USER}), 60)
        await assert_problem(response, 503, "/problems/database-unavailable")
        assert response.headers["Retry-After"] == "1"
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["allocation"] == 10


async def test_an_exhausted_pool_is_answered_503_fast(aiohttp_client, api_database_url, admin_database_url, database_url):
    app = create_app(api_database_url, admin_database_url, pool_size=1, pool_timeout=0.2, database_settings={"lock_timeout": "30s"})
    client = await aiohttp_client(app)
    option = await create_option(client, 10)
    async with HeldOptionLock(database_url, option["id"]) as held:
        # This purchase waits for the lock, holding the pool's only connection ...
        stuck = asyncio.create_task(client.post(
            f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": USER}))
        for _ in range(1500):
            if await held.blocked_calls() == 1:
                break
            await asyncio.sleep(0.02)
        assert await held.blocked_calls() == 1
        # ... so a burst of reads finds no connection and is told to retry, while the purchase still waits.
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.get(f"/ticket_options/{option['id']}") for _ in range(20))), 60)
        for response in responses:
            await assert_problem(response, 503, "/problems/database-unavailable")
            assert response.headers["Retry-After"]
        assert not stuck.done()
    assert (await stuck).status == 201  # the lock came free: the waiting purchase completes


async def test_oversized_and_too_many_headers_are_4xx(client):
    huge = await client.get("/openapi.json", headers={"X-Padding": "x" * 20_000})
    assert 400 <= huge.status < 500
    many = await client.get("/openapi.json", headers={f"X-H{i}": "1" for i in range(200)})
    assert 400 <= many.status < 500
    assert (await client.get("/openapi.json")).status == 200  # and the server is fine
