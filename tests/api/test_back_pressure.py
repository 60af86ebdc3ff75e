"""What cannot be served quickly is refused quickly: 503 with Retry-After, never a hang.

No stopwatch: each answer is awaited while the lock that would make it hang is
still held, so getting it at all shows that the service gave up by itself.
"""

import asyncio

import asyncpg

from service.app import create_app

from ..apps import app_settings

from ..people import USER
from ..polling import wait_until
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


def held_up(held: HeldOptionLock):
    """The condition: one call waits for the held lock."""
    async def one_waits():
        return await held.blocked_calls() == 1
    return one_waits


async def test_an_exhausted_pool_is_answered_503_fast(aiohttp_client, api_database_url, admin_database_url, database_url):
    app = create_app(app_settings(api_database_url, admin_database_url, pool_size=1, pool_timeout=0.2,
                                  database_settings={"lock_timeout": "30s"}))
    client = await aiohttp_client(app)
    option = await create_option(client, 10)
    async with HeldOptionLock(database_url, option["id"]) as held:
        # This purchase waits for the lock, holding the pool's only connection ...
        stuck = asyncio.create_task(client.post(
            f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": USER}))
        await wait_until(held_up(held), "the purchase to wait for the option's lock")
        # ... so a burst of reads finds no connection and is told to retry, while the purchase still waits.
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.get(f"/ticket_options/{option['id']}") for _ in range(20))), 60)
        for response in responses:
            body = await assert_problem(response, 503, "/problems/database-unavailable")
            assert response.headers["Retry-After"]
            assert "nothing was changed" in body["detail"]  # no connection: the call never started
        assert not stuck.done()
    assert (await stuck).status == 201  # the lock came free: the waiting purchase completes


async def test_a_call_cut_mid_flight_says_its_outcome_is_unknown(client, database_url, server_url):
    """The session serving a purchase ends while the purchase waits for its lock: the answer must not
    claim that nothing was changed (in general the call may have committed), and says how to find out."""
    option = await create_option(client, 10)
    async with HeldOptionLock(database_url, option["id"]) as held:
        waiting = asyncio.create_task(client.post(
            f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": USER},
            headers={"Idempotency-Key": "cut-1"}))
        await wait_until(held_up(held), "the purchase to wait for the option's lock")
        blocked = await held.conn.fetch(
            "SELECT pid FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))")
        superuser = await asyncpg.connect(server_url)  # only it may end another role's session
        try:
            await superuser.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
                                    [row["pid"] for row in blocked])
        finally:
            await superuser.close()
        body = await assert_problem(await asyncio.wait_for(waiting, 60), 503, "/problems/database-unavailable")
    assert "nothing was changed" not in body["detail"]
    assert "Idempotency-Key" in body["detail"]


async def test_oversized_and_too_many_headers_are_4xx(client):
    huge = await client.get("/openapi.json", headers={"X-Padding": "x" * 20_000})
    assert 400 <= huge.status < 500
    many = await client.get("/openapi.json", headers={f"X-H{i}": "1" for i in range(200)})
    assert 400 <= many.status < 500
    assert (await client.get("/openapi.json")).status == 200  # and the server is fine
