"""The connection pool, living as long as the app (aiohttp cleanup_ctx)."""

import asyncio
import contextlib
import logging

import asyncpg
from aiohttp import web

from . import failover
from .coalescing import PurchaseCoalescer

DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
PURCHASES = web.AppKey("purchases", PurchaseCoalescer)
DATABASE_URL = web.AppKey("database_url", str)
POOL_SIZE = web.AppKey("pool_size", int)
# Seconds a request may wait for a free connection before it is answered 503:
# under a burst beyond capacity, a fast "retry" beats a hang.
POOL_TIMEOUT = web.AppKey("pool_timeout", float)
DATABASE_SETTINGS = web.AppKey("database_settings", dict)

# Expired idempotency keys are already ignored; purging only bounds the table.
PURGE_INTERVAL_SECONDS = 600

log = logging.getLogger(__name__)


async def pool_context(app: web.Application):
    try:
        pool = await asyncpg.create_pool(
            **failover.pool_options(app[DATABASE_URL]), min_size=1, max_size=app[POOL_SIZE],
            server_settings=app[DATABASE_SETTINGS], reset=rollback_if_needed,
        )
        await pool.fetchval("SELECT idempotency_key_ttl()")  # checks the TTL setting too
    except (asyncpg.InvalidParameterValueError, asyncpg.InvalidDatetimeFormatError) as error:
        raise SystemExit(f"a database setting of the service is invalid: {error}") from None
    async with pool:
        await warn_if_tables_are_writable(pool)
        app[DB_POOL] = pool
        app[PURCHASES] = PurchaseCoalescer(pool, app[POOL_TIMEOUT])
        stopping = asyncio.Event()
        purger = asyncio.create_task(purge_expired_idempotency_keys(pool, stopping))
        yield
        # Not cancelled: a purge in progress finishes before the pool closes.
        stopping.set()
        await purger


async def warn_if_tables_are_writable(pool: asyncpg.Pool) -> None:
    role, writable = await pool.fetchrow(
        "SELECT current_user, has_table_privilege('ticket_options', 'UPDATE')"
    )
    if writable:
        log.warning(
            "the service's database role %s can write the tables directly: anyone who gets its credentials "
            "can bypass every rule. Serve as the API role, which may only call the functions "
            "(README: Least privilege)", role,
        )


async def rollback_if_needed(conn: asyncpg.Connection) -> None:
    # Our calls are single autocommit statements that leave no session state;
    # asyncpg's default reset would cost a round trip on every release.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def purge_expired_idempotency_keys(pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=PURGE_INTERVAL_SECONDS)
            return
        try:
            purged = await pool.fetchval("SELECT purge_expired_idempotency_keys()")
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("could not purge expired idempotency keys (will retry): %s", error)


async def call(request: web.Request, query: str, *args) -> asyncpg.Record:
    """Run one function call and return its single row."""
    async with request.app[DB_POOL].acquire(timeout=request.app[POOL_TIMEOUT]) as conn:
        return await conn.fetchrow(query, *args)


async def call_many(request: web.Request, query: str, *args) -> list[asyncpg.Record]:
    """Run one set-returning function call and return its rows."""
    async with request.app[DB_POOL].acquire(timeout=request.app[POOL_TIMEOUT]) as conn:
        return await conn.fetch(query, *args)
