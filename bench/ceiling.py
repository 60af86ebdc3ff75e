"""The stack's ceilings for GET /ticket_options/{id}, beside which bench/run.py reports the service.

    python -m bench.ceiling json                   # a bare aiohttp + uvloop app: a constant JSON
    python -m bench.ceiling fetchrow DATABASE_URL  # the same, with one asyncpg fetchrow per request

Both answer GET /ticket_options/{id} only, on HOST:PORT (127.0.0.1, PORT from the environment), in
one process with uvloop, without middlewares or access log: what aiohttp alone, and aiohttp with
asyncpg, can do on this machine. `fetchrow` calls the route's SQL function through a pool of
DB_POOL_SIZE connections (the service's default, 10) with the service's pool reset (none: a
ROLLBACK only in a transaction) and answers its row as JSON; nothing else. The service's figure
over `fetchrow`'s is what its own code costs.
"""

import json
import os
import sys
import uuid

import asyncpg
import uvloop
from aiohttp import web

# What the service answers for an option (its size, near enough), for the constant reply.
CONSTANT_OPTION = json.dumps({
    "id": "00000000-0000-4000-8000-000000000001", "name": "bench option 1", "desc": "created by bench/run.py",
    "allocation": 2_000_000_000, "sold": 0, "total": 2_000_000_000, "max_per_user": None,
    "created_at": "2025-01-01T00:00:00.000000+00:00", "held": 0,
}).encode()
QUERY = "SELECT * FROM api.get_ticket_option($1)"
POOL = web.AppKey("pool", asyncpg.Pool)


async def constant(request: web.Request) -> web.Response:
    return web.Response(body=CONSTANT_OPTION, content_type="application/json")


async def fetchrow(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(QUERY, uuid.UUID(request.match_info["id"]))
    return web.Response(text=json.dumps(dict(row), default=str), content_type="application/json")


async def rollback_if_needed(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def app_for(mode: str, database_url: str | None) -> web.Application:
    app = web.Application()
    if mode == "json":
        app.router.add_get("/ticket_options/{id}", constant)
        return app

    async def pool(app: web.Application):
        async with asyncpg.create_pool(database_url, min_size=1, max_size=int(os.environ.get("DB_POOL_SIZE", "10")),
                                       reset=rollback_if_needed) as opened:
            app[POOL] = opened
            yield

    app.cleanup_ctx.append(pool)
    app.router.add_get("/ticket_options/{id}", fetchrow)
    return app


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("json", "fetchrow") or (argv[0] == "fetchrow") != (len(argv) == 2):
        print(__doc__, file=sys.stderr)
        return 2
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "3000"))
    app = app_for(argv[0], argv[1] if len(argv) > 1 else None)
    web.run_app(app, host=host, port=port, access_log=None, loop=uvloop.new_event_loop(),
                print=lambda _: print(f"ceiling {argv[0]} listening on http://{host}:{port}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
