"""The aiohttp application factory."""

from aiohttp import web

from . import db, routes
from .errors import problem_middleware

# A request body is a small JSON object; anything larger is refused with 413.
MAX_BODY_BYTES = 16 * 1024


def create_app(database_url: str, pool_size: int = 10, database_settings: dict[str, str] | None = None) -> web.Application:
    """The app; database_settings are PostgreSQL settings for its connections (e.g. lock_timeout)."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[db.DATABASE_URL] = database_url
    app[db.POOL_SIZE] = pool_size
    app[db.DATABASE_SETTINGS] = database_settings or {}
    app.cleanup_ctx.append(db.pool_context)
    app.add_routes(routes.routes)
    return app
