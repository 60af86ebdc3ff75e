"""A flood of large list reads must not starve buyers of other options (issue 9, item 3)."""

import asyncio
import time
import uuid

import aiohttp
import psycopg

from ..processes import Server, request, served_env

SECONDS = 4.0  # each phase; loops are also bounded in count
READERS = 16
BIG_PURCHASES = 300  # of 1,000 tickets each: 300,000 ticket ids on one option


async def buy_for(port: int, option_id: str, seconds: float) -> int:
    """Purchases one buyer completes, one after another, in `seconds` (at most 5,000)."""
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and done < 5_000:
            async with session.post(f"http://127.0.0.1:{port}/ticket_options/{option_id}/purchases",
                                    json={"quantity": 1, "user_id": str(uuid.uuid4())}) as response:
                assert response.status == 201, await response.text()
            done += 1
    return done


async def read_for(port: int, option_id: str, seconds: float) -> tuple[int, int]:
    """(pages, largest page in bytes) READERS clients read with limit=500 in `seconds`."""
    pages, largest = 0, 0
    deadline = time.monotonic() + seconds

    async def reader(session):
        nonlocal pages, largest
        while time.monotonic() < deadline and pages < 20_000:
            async with session.get(f"http://127.0.0.1:{port}/ticket_options/{option_id}/purchases?limit=500") as r:
                body = await r.read()
                assert r.status == 200
            pages += 1
            largest = max(largest, len(body))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(reader(session) for _ in range(READERS)))
    return pages, largest


def test_a_flood_of_list_reads_leaves_buyers_their_throughput(databases, tmp_path):
    owner, api = databases
    server = Server(served_env(owner, api, WORKERS="1"), tmp_path / "server.log")
    try:
        _, listed = request(server.port, "POST", "/ticket_options", {"name": "Big", "allocation": BIG_PURCHASES * 1000})
        _, bought = request(server.port, "POST", "/ticket_options", {"name": "Other", "allocation": 1_000_000})
        with psycopg.connect(owner) as conn:  # the big purchases, fast: straight through the SQL API
            conn.execute("SELECT purchase_tickets_batch(array_agg(ROW(%s, gen_random_uuid(), 1000, NULL, NULL, NULL)"
                         "::ticket_request)) FROM generate_series(1, %s)", (listed["id"], BIG_PURCHASES))

        alone = asyncio.run(buy_for(server.port, bought["id"], SECONDS))

        async def flooded():
            return await asyncio.gather(buy_for(server.port, bought["id"], SECONDS),
                                        read_for(server.port, listed["id"], SECONDS))
        during, (pages, largest) = asyncio.run(flooded())
    finally:
        assert server.stop() == 0
    ratio = during / alone
    print(f"\nbuyer alone: {alone / SECONDS:.0f}/s; with {READERS} readers of limit=500 pages: "
          f"{during / SECONDS:.0f}/s ({ratio:.0%}); {pages} pages read, largest {largest / 1e6:.2f} MB")
    assert largest < 400_000  # a page of at most ~6,000 ticket ids, not 500,000
    assert ratio >= 0.5  # generous (the target is 80%, see the notes); 8 MB pages gave about 1%
