"""The aiohttp application factory."""

import asyncio

from aiohttp import web

from . import docs, event_routes, health, lifecycle, malformed_http, metrics_http, order_routes, routes
from .auth import api_token_middleware
from .config import Settings
from .errors_http import problem_middleware
from .keys import LIST_PAGE_TURN, METRICS, SETTINGS
from .logs import request_id_middleware
from .metrics import Metrics
from .metrics_http import metrics_middleware

# A request body is a small JSON object; anything larger is refused with 413.
MAX_BODY_BYTES = 16 * 1024
# Request line and each header line at most this long (aiohttp answers 400 past it),
# and at most this many headers.
HTTP_PARSER_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}


def create_app(settings: Settings, worker: str = "1") -> web.Application:
    """The app, serving with `settings` (service/config.py; its database_url resolved: `serve`
    hands it the embedded server's when DATABASE_URL is unset). worker: the `worker` label of
    its metrics."""
    malformed_http.install()
    app = web.Application(
        # Outermost first: the request id is on every response, every answer is counted, and
        # refused tokens are problems too.
        middlewares=[request_id_middleware, metrics_middleware, problem_middleware, api_token_middleware],
        client_max_size=MAX_BODY_BYTES, handler_args=HTTP_PARSER_LIMITS,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics(worker)
    app[LIST_PAGE_TURN] = asyncio.Semaphore(1)
    # Entered in this order at startup, left in reverse at cleanup: the background tasks stop
    # first, then the coalescers send what they hold, then the pools close (service/lifecycle.py).
    app.cleanup_ctx.extend([lifecycle.api_pool, lifecycle.admin_pool, lifecycle.coalescers, lifecycle.pool_gauges,
                            lifecycle.purger, lifecycle.sweeper, lifecycle.watchdog])
    if settings.webhooks.enabled:
        app.cleanup_ctx.append(lifecycle.deliverer)
    app.add_routes(routes.routes)
    app.add_routes(event_routes.routes)
    app.add_routes(order_routes.routes)
    app.add_routes(health.routes)
    app.add_routes(metrics_http.routes)
    app.add_routes(docs.routes)
    return app
