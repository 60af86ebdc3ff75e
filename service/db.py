"""The connection pools, living as long as the app (aiohttp cleanup_ctx), and calls of the SQL API.

Two pools: buyers are served as the API role (DATABASE_URL), admin calls run
as the admin role (ADMIN_DATABASE_URL), which the API role cannot become; and
the watchdog's own connection, as the admin role (end_overlong_transactions).
"""

import asyncio
import contextlib
import logging

import asyncpg
from aiohttp import web

from . import failover
from .coalescing import HOLD_BATCH, ORDER_BATCH, PURCHASE_BATCH, Coalescer
from .errors import PROBLEMS, read_problems
from .webhooks import WEBHOOK_SETTINGS, Deliverer

DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
ADMIN_POOL = web.AppKey("admin_pool", asyncpg.Pool)
PURCHASES = web.AppKey("purchases", Coalescer)
HOLDS = web.AppKey("holds", Coalescer)
ORDERS = web.AppKey("orders", Coalescer)
DATABASE_URL = web.AppKey("database_url", str)
ADMIN_DATABASE_URL = web.AppKey("admin_database_url", str)
# Admin calls are rare: a small pool, opened on first use.
ADMIN_POOL_SIZE = 2
POOL_SIZE = web.AppKey("pool_size", int)
# Seconds a request may wait for a free connection before it is answered 503:
# under a burst beyond capacity, a fast "retry" beats a hang.
POOL_TIMEOUT = web.AppKey("pool_timeout", float)
DATABASE_SETTINGS = web.AppKey("database_settings", dict)

# Expired idempotency keys are already ignored; purging only bounds the table.
PURGE_INTERVAL_SECONDS = 600
# What each purge call may delete: the service's choice, passed to the SQL function (whose own
# default is for psql callers), and what a call that deleted less than this shows is the end.
PURGE_CHUNK = 10_000
EVENT_PURGE_CHUNK = 10_000
PURGE_MAX_CHUNKS = 100
# Expired holds are already on sale to every read and decision; sweeping stores them so (and
# keeps the live-holds index small) for options nobody touches.
SWEEP_INTERVAL_SECONDS = 5
SWEEP_CALLS = 10  # release_expired_holds() calls per sweep at most (each bounded in SQL)
# How often the watchdog ends the calling roles' transactions older than the bound
# (settings.max_transaction_timeout, 30 s): such a transaction lasts at most the bound plus this.
WATCHDOG_INTERVAL_SECONDS = 1

log = logging.getLogger(__name__)


async def pool_context(app: web.Application):
    try:
        pool = await asyncpg.create_pool(
            **failover.pool_options(app[DATABASE_URL]), min_size=1, max_size=app[POOL_SIZE],
            server_settings=app[DATABASE_SETTINGS], reset=rollback_if_needed,
        )
        admin_pool = await asyncpg.create_pool(
            **failover.pool_options(app[ADMIN_DATABASE_URL]), min_size=0, max_size=ADMIN_POOL_SIZE,
            server_settings=app[DATABASE_SETTINGS], reset=rollback_if_needed,
        )
        # The watchdog's own connection, as the admin role: busy admin calls cannot delay a round.
        watchdog_pool = await asyncpg.create_pool(
            **failover.pool_options(app[ADMIN_DATABASE_URL]), min_size=0, max_size=1,
            server_settings=app[DATABASE_SETTINGS], reset=rollback_if_needed,
        )
    except asyncpg.InvalidParameterValueError as error:
        raise SystemExit(f"a database setting of the service is invalid: {error}") from None
    async with pool, admin_pool, watchdog_pool:
        await warn_if_tables_are_writable(pool)
        app[PROBLEMS] = await read_problems(pool)
        app[DB_POOL] = pool
        app[ADMIN_POOL] = admin_pool
        from .metrics import METRICS  # here: metrics imports this module

        metrics = app.get(METRICS)
        app[PURCHASES] = Coalescer(
            pool, app[POOL_TIMEOUT], PURCHASE_BATCH, metrics.purchase_batch_sent if metrics else None)
        app[HOLDS] = Coalescer(pool, app[POOL_TIMEOUT], HOLD_BATCH, metrics.hold_batch_sent if metrics else None)
        app[ORDERS] = Coalescer(pool, app[POOL_TIMEOUT], ORDER_BATCH)
        stopping = asyncio.Event()
        purger = asyncio.create_task(purge_expired_idempotency_keys(admin_pool, stopping))
        deliverer = start_deliverer(app, stopping)
        sweeper = asyncio.create_task(sweep_expired_holds(admin_pool, stopping, metrics))
        watchdog = asyncio.create_task(end_overlong_transactions(watchdog_pool, stopping))
        yield
        # Not cancelled: a purge, sweep or watchdog round in progress finishes before the pool closes.
        stopping.set()
        await purger
        await sweeper
        await watchdog
        if deliverer is not None:
            await deliverer


def start_deliverer(app: web.Application, stopping: asyncio.Event) -> asyncio.Task | None:
    """The webhook delivery loop of this process (service/webhooks.py), with its own pool."""
    settings = app[WEBHOOK_SETTINGS]
    if not settings.enabled:
        return None
    from .metrics import METRICS  # here: metrics imports this module

    deliverer = Deliverer(app[ADMIN_DATABASE_URL], settings, app[METRICS], app[DATABASE_SETTINGS])
    return asyncio.create_task(deliverer.run(stopping))


async def warn_if_tables_are_writable(pool: asyncpg.Pool) -> None:
    role, writable = await pool.fetchrow(
        "SELECT current_user, CASE WHEN has_schema_privilege('ticket_allocation', 'USAGE') "
        "THEN has_table_privilege('ticket_allocation.ticket_options', 'UPDATE') ELSE false END"
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
            purged = await purge_backlog(pool, stopping)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
            await purge_old_events(pool)
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("could not purge expired idempotency keys or old events (will retry): %s", error)


async def purge_old_events(pool: asyncpg.Pool) -> None:
    """Events past their retention, a chunk per statement (short transactions), at most
    PURGE_MAX_CHUNKS chunks a round: the rest waits for the next."""
    for _ in range(PURGE_MAX_CHUNKS):
        purged = await pool.fetchval("SELECT api.purge_old_events($1)", EVENT_PURGE_CHUNK)
        if purged:
            log.info("purged %d old events", purged)
        if purged < EVENT_PURGE_CHUNK:
            return


async def sweep_expired_holds(pool: asyncpg.Pool, stopping: asyncio.Event, metrics=None) -> None:
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=SWEEP_INTERVAL_SECONDS)
            return
        try:
            swept = await sweep_once(pool)
            if metrics and swept:
                metrics.holds_swept(swept)
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as error:
            log.warning("could not release expired holds (will retry): %s", error)


async def sweep_once(pool: asyncpg.Pool) -> int:
    """Expired holds, in release_expired_holds()'s bounded calls (one transaction each), until none is left."""
    total = 0
    for _ in range(SWEEP_CALLS):
        swept = await pool.fetchval("SELECT api.release_expired_holds()")
        total += swept
        if not swept:
            break
    return total


async def end_overlong_transactions(pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
    """The watchdog, over a pool of its own (one admin connection): every WATCHDOG_INTERVAL_SECONDS,
    api.end_overlong_transactions() ends the calling roles' transactions that outlived the bound (a
    psql session stalling an option's sales or the feed), on every PostgreSQL version; each one
    ended is logged. A failure is logged once, until the error changes or a round succeeds."""
    failing = None
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=WATCHDOG_INTERVAL_SECONDS)
            return
        try:
            for ended in await pool.fetch("SELECT * FROM api.end_overlong_transactions()"):
                log_ended_transaction(ended)
            failing = None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
                asyncio.TimeoutError) as error:  # a connection lost mid-round included: the next reconnects
            if str(error) != failing:
                log.warning("could not end overlong transactions (will retry every %d s): %s; transactions "
                            "of psql users are bounded only by transaction_timeout (PostgreSQL 17+) meanwhile. "
                            "ADMIN_DATABASE_URL must be the admin role", WATCHDOG_INTERVAL_SECONDS, error)
                failing = str(error)


def log_ended_transaction(ended: asyncpg.Record) -> None:
    log.warning(
        "ended the session of %s (pid %d, database %s, from %s, application %r): its transaction had been "
        "open for %.1f s (state: %s), longer than the bound of %.1f s (settings.max_transaction_timeout); whatever "
        "it held (an option's lock, the event feed's horizon) is released. Its last statement: %r",
        ended["role"], ended["pid"], ended["database"], ended["client_addr"] or "a local socket",
        ended["application_name"], ended["transaction_age"].total_seconds(), ended["state"],
        ended["bound"].total_seconds(), ended["query"],
    )


# An argument left out of a call, so that the SQL function's default applies:
# defaults live in the function signatures only.
OMITTED = object()


async def purge_backlog(pool: asyncpg.Pool, stopping: asyncio.Event | None = None) -> int:
    """Every expired key, in the SQL function's bounded chunks (one transaction each)."""
    total = 0
    while stopping is None or not stopping.is_set():
        purged = await pool.fetchval("SELECT api.purge_expired_idempotency_keys($1)", PURGE_CHUNK)
        total += purged
        if purged < PURGE_CHUNK:
            break
    return total


def function_call(function: str, arguments: dict) -> tuple[str, list]:
    """`SELECT * FROM api.<function>(name => $1, ...)` and its values, for the arguments not OMITTED.

    `function` and the argument names come from the routes, never from a request."""
    given = {name: value for name, value in arguments.items() if value is not OMITTED}
    named = ", ".join(f"{name} => ${position}" for position, name in enumerate(given, 1))
    return f"SELECT * FROM api.{function}({named})", list(given.values())


async def call(request: web.Request, function: str, *, admin: bool = False, **arguments) -> asyncpg.Record:
    """Call one function of the SQL API and return its single row; admin calls run as the admin role."""
    query, values = function_call(function, arguments)
    async with request.app[ADMIN_POOL if admin else DB_POOL].acquire(timeout=request.app[POOL_TIMEOUT]) as conn:
        return await conn.fetchrow(query, *values)


async def call_many(request: web.Request, function: str, *, admin: bool = False, **arguments) -> list[asyncpg.Record]:
    """Call one set-returning function of the SQL API and return its rows; admin calls run as the admin role."""
    query, values = function_call(function, arguments)
    async with request.app[ADMIN_POOL if admin else DB_POOL].acquire(timeout=request.app[POOL_TIMEOUT]) as conn:
        return await conn.fetch(query, *values)
