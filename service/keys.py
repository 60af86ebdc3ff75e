"""The application's state: every aiohttp AppKey, in one module.

create_app (service/app.py) and the cleanup contexts (service/lifecycle.py) set them; routes,
middlewares and background tasks read them from request.app or app. This module imports only
the types of their values, none of the modules that read them: so no module needs another's
import (or a late one) to reach a key, and the service's imports stay free of cycles
(tests/test_imports.py).
"""

import asyncio

import asyncpg
from aiohttp import web

from .coalescing import Coalescer
from .config import Settings
from .errors import Problems
from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
# The problem of each SQLSTATE, read from the error catalogue as the buyers' pool opens: service/errors.py.
PROBLEMS = web.AppKey("problems", Problems)
# The buyers' pool (the API role) and the admin calls' (the admin role): service/db.py.
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
ADMIN_POOL = web.AppKey("admin_pool", asyncpg.Pool)
PURCHASES = web.AppKey("purchases", Coalescer)
HOLDS = web.AppKey("holds", Coalescer)
ORDERS = web.AppKey("orders", Coalescer)
# The turn of list pages in this worker (service/routes.py, LIST_PAGES_SHARE).
LIST_PAGE_TURN = web.AppKey("list_page_turn", asyncio.Semaphore)
