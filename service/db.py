"""The connection pool, living as long as the app (aiohttp cleanup_ctx)."""

import asyncpg
from aiohttp import web

DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
POOL_SIZE = web.AppKey("pool_size", int)


async def pool_context(app: web.Application):
    async with asyncpg.create_pool(app[DATABASE_URL], min_size=1, max_size=app[POOL_SIZE]) as pool:
        app[DB_POOL] = pool
        yield


async def call(request: web.Request, query: str, *args) -> asyncpg.Record:
    """Run one function call and return its single row."""
    return await request.app[DB_POOL].fetchrow(query, *args)
