"""The aiohttp application factory."""

import asyncio

from aiohttp import web

from . import db, docs, event_routes, health, malformed_http, metrics, order_routes, routes
from .auth import ADMIN_TOKEN, API_TOKENS, api_token_middleware
from .errors import problem_middleware
from .inputs import BODY_READ_TIMEOUT
from .logs import request_id_middleware
from .metrics import METRICS, Metrics, metrics_middleware
from .responses import CACHE_CONTROL, DEFAULT_CACHE_CONTROL
from .webhooks import WEBHOOK_SETTINGS, WebhookSettings

# A request body is a small JSON object; anything larger is refused with 413.
MAX_BODY_BYTES = 16 * 1024
# Request line and each header line at most this long (aiohttp answers 400 past it),
# and at most this many headers.
HTTP_PARSER_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}


def create_app(
    database_url: str,
    admin_database_url: str | None = None,
    pool_size: int = 10,
    pool_timeout: float = 1.0,
    database_settings: dict[str, str] | None = None,
    admin_token: str | None = None,
    worker: str = "1",
    api_tokens: tuple[str, ...] = (),
    body_read_timeout: float | None = None,
    webhook_settings: WebhookSettings | None = None,
    cache_control: str = DEFAULT_CACHE_CONTROL,
) -> web.Application:
    """The app. admin_database_url: the role admin calls run as (default: database_url's);
    database_settings: PostgreSQL settings for its connections (e.g. lock_timeout);
    admin_token: when set, the admin routes require it;
    worker: the `worker` label of its metrics; api_tokens: when given, the API routes require
    one of them (or the admin token); body_read_timeout: seconds to receive a body (None: no limit);
    webhook_settings: how this process delivers webhooks (None: it does not deliver);
    cache_control: the Cache-Control of cacheable reads (service/responses.py)."""
    malformed_http.install()
    app = web.Application(
        # Outermost first: the request id is on every response, every answer is counted, and
        # refused tokens are problems too.
        middlewares=[request_id_middleware, metrics_middleware, problem_middleware, api_token_middleware],
        client_max_size=MAX_BODY_BYTES, handler_args=HTTP_PARSER_LIMITS,
    )
    app[db.DATABASE_URL] = database_url
    app[db.ADMIN_DATABASE_URL] = admin_database_url or database_url
    app[db.POOL_SIZE] = pool_size
    app[db.POOL_TIMEOUT] = pool_timeout
    app[db.DATABASE_SETTINGS] = database_settings or {}
    if admin_token:
        app[ADMIN_TOKEN] = admin_token
    if api_tokens:
        app[API_TOKENS] = tuple(api_tokens)
    if body_read_timeout is not None:
        app[BODY_READ_TIMEOUT] = body_read_timeout
    app[METRICS] = Metrics(worker)
    app[CACHE_CONTROL] = cache_control
    app[WEBHOOK_SETTINGS] = webhook_settings or WebhookSettings(enabled=False)
    app[routes.LIST_PAGE_TURN] = asyncio.Semaphore(1)
    app.cleanup_ctx.append(db.pool_context)
    app.cleanup_ctx.append(metrics.pool_gauges)
    app.add_routes(routes.routes)
    app.add_routes(event_routes.routes)
    app.add_routes(order_routes.routes)
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    app.add_routes(docs.routes)
    return app
