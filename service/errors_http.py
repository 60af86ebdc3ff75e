"""The problem middleware: every error a handler raises, answered as application/problem+json
through the app's one table (PROBLEMS, read from the error catalogue: service/errors.py)."""

import asyncio
import json
import logging

import asyncpg
from aiohttp import web

from .coalescing import Refused
from .errors import DATABASE_UNAVAILABLE, INTERNAL_ERROR, PROBLEM_CONTENT_TYPE, Problem, from_sqlstate
from .keys import PROBLEMS

log = logging.getLogger(__name__)


def _from_http_exception(error: web.HTTPException) -> web.Response:
    # aiohttp's own answers (unknown route, wrong method, body too large) as
    # problems of type about:blank, keeping their headers (e.g. Allow).
    body = {"type": "about:blank", "title": error.reason, "status": error.status}
    if error.status == 413:
        body["detail"] = "The request body is too large; a ticket-allocation request body is a small JSON object."
    headers = {k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")}
    return web.Response(status=error.status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler):
    problems = request.app[PROBLEMS]
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(problems)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_exception(error)
    except (asyncpg.PostgresError, Refused) as error:
        message = error.message or str(error)  # asyncpg's client-side errors have no message
        problem = from_sqlstate(problems, error.sqlstate or "", message, getattr(error, "column_name", None),
                                getattr(error, "detail", None))
        if problem is not None:
            return problem.response(problems)
        log.exception("unexpected database error on %s %s", request.method, request.path)
    # The connection to PostgreSQL broke (a restart, a network fault) or no connection was
    # free in time: the request may be retried (with its Idempotency-Key, safely).
    except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
        log.warning("database unreachable on %s %s: %r", request.method, request.path, error)
        return Problem(DATABASE_UNAVAILABLE, "The database is unreachable; nothing was changed.").response(problems)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
    return Problem(INTERNAL_ERROR, "The server failed to answer; the error is in its log.").response(problems)
