"""What lives as long as the app beside its requests, each thing in its own aiohttp cleanup context.

create_app (service/app.py) registers them in one order: the pools, the coalescers, then the
background tasks. aiohttp enters them in that order at startup and leaves them in reverse at
cleanup, which comes after the server has stopped accepting connections and has answered (or,
past SHUTDOWN_TIMEOUT_MS, cancelled) the requests in progress. So a shutdown stops the deliverer,
the watchdog, the sweeper and the purger (a round in progress finishes: none is cancelled), then
the coalescers send what they still hold, and only then do the pools close, the buyers' last. The
embedded PostgreSQL, when there is one, outlives them all: it stops as the server process exits
(service/__main__.py).
"""

import asyncio
import contextlib

from aiohttp import web

from . import db
from .coalescing import HOLD_BATCH, ORDER_BATCH, PURCHASE_BATCH, Coalescer
from .errors import read_problems
from .keys import ADMIN_POOL, DB_POOL, HOLDS, METRICS, ORDERS, PROBLEMS, PURCHASES, SETTINGS
from .webhooks import Deliverer

# How often a worker writes its pool gauges (for scrapes that another worker answers).
POOL_GAUGES_SECONDS = 1.0


async def api_pool(app: web.Application):
    """The buyers' pool (DB_POOL), as the API role (DATABASE_URL)."""
    settings = app[SETTINGS]
    async with await db.create_pool(settings.database_url, settings, min_size=1, max_size=settings.pool_size) as pool:
        await db.warn_if_tables_are_writable(pool)
        app[PROBLEMS] = await read_problems(pool)
        app[DB_POOL] = pool
        yield


async def admin_pool(app: web.Application):
    """The admin calls' pool (ADMIN_POOL), as the admin role (ADMIN_DATABASE_URL), opened on first use."""
    settings = app[SETTINGS]
    async with await db.create_pool(settings.admin_url, settings, min_size=0, max_size=db.ADMIN_POOL_SIZE) as pool:
        app[ADMIN_POOL] = pool
        yield


async def coalescers(app: web.Application):
    """The purchases', holds' and orders' coalescers (service/coalescing.py) over the buyers' pool.
    At cleanup, what they still hold is sent before the pool closes."""
    pool, pool_timeout, metrics = app[DB_POOL], app[SETTINGS].pool_timeout, app[METRICS]
    app[PURCHASES] = Coalescer(pool, pool_timeout, PURCHASE_BATCH, metrics.purchase_batch_sent)
    app[HOLDS] = Coalescer(pool, pool_timeout, HOLD_BATCH, metrics.hold_batch_sent)
    app[ORDERS] = Coalescer(pool, pool_timeout, ORDER_BATCH)
    yield
    await asyncio.gather(app[PURCHASES].drain(), app[HOLDS].drain(), app[ORDERS].drain())


async def pool_gauges(app: web.Application):
    """The buyers' pool gauges, written every POOL_GAUGES_SECONDS: a scrape that another worker
    answers reads this one's from its files (the answering worker's own are current)."""
    metrics, pool = app[METRICS], app[DB_POOL]

    async def refresh():
        while True:
            metrics.pool_observed(pool)
            await asyncio.sleep(POOL_GAUGES_SECONDS)

    refresher = asyncio.create_task(refresh())
    yield
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher


async def purger(app: web.Application):
    """Expired idempotency keys and old events purged every PURGE_INTERVAL_SECONDS, as the admin role."""
    async with running(db.purge_expired_idempotency_keys, app[ADMIN_POOL]):
        yield


async def sweeper(app: web.Application):
    """Expired holds released every SWEEP_INTERVAL_SECONDS, as the admin role."""
    async with running(db.sweep_expired_holds, app[ADMIN_POOL], app[METRICS]):
        yield


async def watchdog(app: web.Application):
    """The watchdog (db.end_overlong_transactions), on an admin connection of its own: busy admin
    calls cannot delay a round."""
    settings = app[SETTINGS]
    async with await db.create_pool(settings.admin_url, settings, min_size=0, max_size=1) as pool:
        async with running(db.end_overlong_transactions, pool):
            yield


async def deliverer(app: web.Application):
    """This process's webhook delivery loop (service/webhooks.py), with a pool of its own."""
    settings = app[SETTINGS]
    async with running(Deliverer(settings.admin_url, settings.webhooks, app[METRICS], settings.database_settings).run):
        yield


@contextlib.asynccontextmanager
async def running(loop, *arguments):
    """loop(*arguments, stopping) as a task; at exit it is told to stop and awaited, not cancelled,
    so that a round in progress finishes before what it uses (a pool) closes."""
    stopping = asyncio.Event()
    task = asyncio.create_task(loop(*arguments, stopping))
    yield
    stopping.set()
    await task
