"""An app's shutdown in order (service/lifecycle.py): what the coalescers hold is decided before the
pools close, even for requests whose handlers the shutdown cancelled."""

import asyncio
import uuid

import aiohttp
from aiohttp import web

from service.app import create_app
from service.keys import PURCHASES

from ..apps import app_settings
from ..polling import wait_until
from ..processes import free_port
from .helpers import HeldOptionLock

FOLLOWERS = 5


async def test_a_shutdown_sends_what_the_coalescers_hold_before_the_pools_close(
        api_database_url, admin_database_url, database_url, books):
    # The option's lock is held through the shutdown: the API role's 1 s lock_timeout would end the wait.
    app = create_app(app_settings(api_database_url, admin_database_url, database_settings={"lock_timeout": "60s"}))
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # the handlers still waiting are cancelled at once
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        async with session.post("/ticket_options", json={"name": "Gig", "allocation": 100}) as response:
            option_id = uuid.UUID((await response.json())["id"])

        def purchase():
            return asyncio.create_task(session.post(f"/ticket_options/{option_id}/purchases",
                                                    json={"quantity": 1, "user_id": str(uuid.uuid4())}))

        async with HeldOptionLock(database_url, option_id) as held:
            leader = purchase()  # its call waits for the lock; the followers queue behind it

            async def leader_blocked():
                return await held.blocked_calls() == 1
            await wait_until(leader_blocked, "the leader's call to wait on the option's lock")
            followers = [purchase() for _ in range(FOLLOWERS)]

            async def followers_queued():
                return app[PURCHASES].waiting_for(option_id) == FOLLOWERS
            await wait_until(followers_queued, "the followers to queue behind it")
            cleanup = asyncio.create_task(runner.cleanup())
            await asyncio.wait([leader, *followers])  # every client cut off, no answer
        await cleanup  # the lock is free: the leader's call commits, then the followers' goes
    assert all(isinstance(task.exception(), aiohttp.ClientError) for task in [leader, *followers])
    assert (await books(option_id))["sold"] == 1 + FOLLOWERS
