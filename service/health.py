"""Liveness and readiness, for load balancers and orchestrators.

/healthz: the process answers (no database call, so a database outage does
not get healthy workers restarted). /readyz: the database answers and has
every migration this version of the service was built with.
"""

import asyncio
import functools
import logging

import asyncpg
from aiohttp import web

from . import failover
from .errors import DATABASE_UNAVAILABLE, MIGRATIONS_PENDING, Problem
from .keys import DB_POOL, SETTINGS
from .migrations import shipped_migrations

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


@functools.cache
def expected_migrations() -> tuple[str, ...]:
    """The migration ids shipped with this code; read once, as the code does not change while it runs."""
    return tuple(migration.id for migration in shipped_migrations())


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app[DB_POOL].acquire(timeout=request.app[SETTINGS].pool_timeout) as conn:
            # The API role may not read yoyo's table; this SECURITY DEFINER function reads it.
            applied = {row[0] for row in await conn.fetch("SELECT * FROM api.applied_migrations()")}
            writes_to = failover.writes_to(conn)  # host:port of the primary, with a multi-host DATABASE_URL
    except asyncpg.UndefinedFunctionError:
        raise Problem(
            MIGRATIONS_PENDING, "The database lacks applied_migrations(): it was never migrated by this version."
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as error:
        # The reason is for operators (the log), not for whoever can reach /readyz.
        log.warning("readiness check failed: the database is unreachable: %s", str(error) or type(error).__name__)
        raise Problem(DATABASE_UNAVAILABLE, "The database is unreachable.") from None
    pending = [migration for migration in expected_migrations() if migration not in applied]
    if pending:
        raise Problem(
            MIGRATIONS_PENDING,
            f"{len(pending)} migration(s) pending: {', '.join(pending)}; run `python -m service migrate`.",
        )
    return web.json_response({"status": "ready", **({"writes_to": writes_to} if writes_to else {})})
