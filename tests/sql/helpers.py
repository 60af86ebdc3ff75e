"""Calls to the SQL functions shared by the SQL-level tests, and what they check around them."""

import asyncio

import asyncpg
import pytest

from tests.people import USER_ID
from tests.polling import wait_until


async def create_option(conn, allocation, max_per_user=None):
    return await conn.fetchval(
        "SELECT id FROM create_ticket_option('Gig', '', $1, $2)", allocation, max_per_user
    )


async def option(conn, option_id):
    return await conn.fetchrow("SELECT * FROM get_ticket_option($1)", option_id)


def ticket_requests(option_id, user_ids, quantities, keys=None, callers=None, ttls=None):
    """A batch's api.ticket_request[] (as asyncpg sends a composite: a tuple per request) for one option."""
    count = len(user_ids)
    return [(option_id, user, quantity, key, caller, ttl) for user, quantity, key, caller, ttl in zip(
        user_ids, quantities, keys or [None] * count, callers or [None] * count, ttls or [None] * count, strict=True)]


async def purchase(conn, option_id, quantity, user_id=USER_ID, key=None):
    return await conn.fetchrow(
        "SELECT * FROM purchase_tickets($1, $2, $3, $4)", option_id, user_id, quantity, key
    )


async def hold(conn, option_id, quantity, user_id=USER_ID, ttl="10 minutes", key=None):
    """hold_tickets; ttl: a PostgreSQL interval string."""
    return await conn.fetchrow(
        "SELECT * FROM hold_tickets($1, $2, $3, $4::text::interval, $5)", option_id, user_id, quantity, ttl, key)


async def create_quota(conn, size, option_ids, name="Venue"):
    return await conn.fetchrow("SELECT * FROM create_quota($1, $2, $3)", name, size, option_ids)


async def advance_clock(conn, interval):
    """Moves the SQL clock (settings.clock_offset, owner only): expiry is tested so, never by waiting."""
    await conn.execute("UPDATE ticket_allocation.settings SET clock_offset = clock_offset + $1::text::interval", interval)


async def until_past(conn, instant):
    """Real time passes `instant` by the SQL clock (for races about real time, not the test clock)."""
    await wait_until(lambda: conn.fetchval("SELECT clock() > $1", instant), f"the clock to pass {instant}")


async def books_balance(conn):
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM check_consistency()")] == []


async def refused(call) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as error:
        await call
    return error.value


async def many(database_url, size, calls):
    """Run the calls (each given a connection) from `size` connections at once; their results or errors."""
    pool = await asyncpg.create_pool(database_url, min_size=size, max_size=size)
    try:
        async def run(call):
            async with pool.acquire() as c:
                try:
                    return await call(c)
                except asyncpg.PostgresError as error:
                    return error
        return await asyncio.gather(*(run(call) for call in calls))
    finally:
        await pool.close()


async def sessions_waiting_for_a_lock(conn) -> int:
    """How many sessions of the server wait for a lock. From pg_locks, not pg_stat_activity, which hides
    other roles' waits; the second waiter for a row waits for the first (its tuple lock), not for the holder."""
    return await conn.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")


async def queued_on_a_lock(conn, pid):
    """Polls until backend `pid` waits for a lock."""
    await wait_until(lambda: conn.fetchval("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND NOT granted)", pid),
                     f"backend {pid} to queue on a lock")
