"""Errors as problem details (RFC 9457), and the one table that maps SQLSTATEs to them.

The functions in sql/ raise SQLSTATEs of class TA (see sql/errors.sql); this is
the only place where they, or any other database error, become HTTP statuses.
README.md shows the same table.
"""

import asyncio
import json
import logging
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from .coalescing import Refused

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str  # the `type` member is /problems/<slug>, documented in README.md
    title: str
    retry_after: bool = False  # the same request may succeed shortly
    closes_connection: bool = False  # what is left of the request on the connection is not read

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


UNAUTHORIZED = ProblemType(401, "unauthorized", "A bearer token is required")
FORBIDDEN = ProblemType(403, "forbidden", "The bearer token is not accepted here")
MALFORMED_BODY = ProblemType(400, "malformed-body", "The request body is not a JSON object")
CLIENT_DISCONNECTED = ProblemType(
    400, "client-disconnected", "The client closed the connection before sending its whole request",
    closes_connection=True,
)
REQUEST_TIMEOUT = ProblemType(408, "request-timeout", "The request body did not arrive in time", closes_connection=True)
UNSUPPORTED_MEDIA_TYPE = ProblemType(415, "unsupported-media-type", "The request body must be JSON")
INVALID_ARGUMENT = ProblemType(422, "invalid-argument", "A field of the request is invalid")
TICKET_OPTION_NOT_FOUND = ProblemType(404, "ticket-option-not-found", "Ticket option not found")
INSUFFICIENT_TICKETS = ProblemType(409, "insufficient-tickets", "Not enough tickets left")
PURCHASE_NOT_FOUND = ProblemType(404, "purchase-not-found", "Purchase not found")
IDEMPOTENCY_KEY_REUSED = ProblemType(
    422, "idempotency-key-reused", "The idempotency key was already used for a different request"
)
IDEMPOTENCY_KEY_IN_FLIGHT = ProblemType(
    409, "idempotency-key-in-flight", "A request with this idempotency key is still in progress", retry_after=True
)
WEBHOOK_NOT_FOUND = ProblemType(404, "webhook-not-found", "Webhook not found")
PER_USER_LIMIT_EXCEEDED = ProblemType(409, "per-user-limit-exceeded", "The user would exceed the per-user limit")
HOLD_NOT_FOUND = ProblemType(404, "hold-not-found", "Hold not found")
HOLD_EXPIRED = ProblemType(409, "hold-expired", "The hold expired; its tickets are back on sale")
HOLD_RELEASED = ProblemType(409, "hold-released", "The hold was released; its tickets are back on sale")
HOLD_CONFIRMED = ProblemType(409, "hold-confirmed", "The hold is confirmed; cancel its purchase instead")
QUOTA_EXHAUSTED = ProblemType(409, "quota-exhausted", "Not enough tickets left in a quota of the ticket option")
QUOTA_NOT_FOUND = ProblemType(404, "quota-not-found", "Quota not found")
QUOTA_TOO_SMALL = ProblemType(409, "quota-too-small", "The quota would be smaller than what its options sold and hold")
ORDER_NOT_FOUND = ProblemType(404, "order-not-found", "Order not found")
ORDER_EXPIRED = ProblemType(409, "order-expired", "The order expired; its tickets are back on sale")
ORDER_RELEASED = ProblemType(409, "order-released", "The order was released; its tickets are back on sale")
ORDER_BOUGHT = ProblemType(409, "order-bought", "The order is bought; cancel it instead")
ORDER_NOT_BOUGHT = ProblemType(409, "order-not-bought", "The order bought nothing; there is nothing to cancel")
HOLD_OF_ORDER = ProblemType(409, "hold-of-order", "The hold is a line of an order; confirm or release the order")
DATABASE_UNAVAILABLE = ProblemType(
    503, "database-unavailable", "The database is busy or unreachable; retry shortly", retry_after=True
)
MIGRATIONS_PENDING = ProblemType(
    503, "migrations-pending", "The database schema is behind this version of the service", retry_after=True
)
# The service's own database settings are outside what the functions allow (TA008): an
# operator's fix (DB_LOCK_TIMEOUT, DB_STATEMENT_TIMEOUT), not the client's.
SERVICE_MISCONFIGURED = ProblemType(
    500, "service-misconfigured", "The service's database session settings are outside the allowed bounds"
)
INTERNAL_ERROR = ProblemType(500, "internal-error", "Internal server error")

# SQLSTATE -> problem. Rules in sql/ raise TA*; the integrity classes back them
# (reached only if a function missed a rule); the rest mean "retry later".
SQLSTATE_PROBLEMS: dict[str, ProblemType] = {
    "TA001": INVALID_ARGUMENT,
    "TA002": TICKET_OPTION_NOT_FOUND,
    "TA003": INSUFFICIENT_TICKETS,
    "TA004": PURCHASE_NOT_FOUND,
    "TA005": IDEMPOTENCY_KEY_REUSED,
    "TA006": IDEMPOTENCY_KEY_IN_FLIGHT,
    "TA007": PER_USER_LIMIT_EXCEEDED,
    "TA008": SERVICE_MISCONFIGURED,
    "TA009": HOLD_NOT_FOUND,
    "TA010": HOLD_EXPIRED,
    "TA011": HOLD_RELEASED,
    "TA012": HOLD_CONFIRMED,
    "TA013": WEBHOOK_NOT_FOUND,
    "TA014": QUOTA_EXHAUSTED,
    "TA015": QUOTA_NOT_FOUND,
    "TA016": QUOTA_TOO_SMALL,
    "TA017": ORDER_NOT_FOUND,
    "TA018": ORDER_EXPIRED,
    "TA019": ORDER_RELEASED,
    "TA020": ORDER_BOUGHT,
    "TA021": ORDER_NOT_BOUGHT,
    "TA022": HOLD_OF_ORDER,
    "23502": INVALID_ARGUMENT,  # not_null_violation
    "23514": INVALID_ARGUMENT,  # check_violation
    "40001": DATABASE_UNAVAILABLE,  # serialization_failure
    "40P01": DATABASE_UNAVAILABLE,  # deadlock_detected
    "53300": DATABASE_UNAVAILABLE,  # too_many_connections
    "55P03": DATABASE_UNAVAILABLE,  # lock_not_available (lock_timeout)
    "57014": DATABASE_UNAVAILABLE,  # query_canceled (statement_timeout)
    "57P01": DATABASE_UNAVAILABLE,  # admin_shutdown
    "57P02": DATABASE_UNAVAILABLE,  # crash_shutdown
    "57P03": DATABASE_UNAVAILABLE,  # cannot_connect_now
    "25006": DATABASE_UNAVAILABLE,  # read_only_sql_transaction: a node demoted by a failover
}
# The session ended while the call was in flight (connection lost, server shut down or crashed, host
# stopped answering): the call may have committed, even if its answer never came back.
CUT_MID_CALL_SQLSTATES = {"08003", "08006", "57P01", "57P02"}
CUT_MID_CALL_DETAIL = (
    "The connection to the database was lost during the call: it may or may not have been applied. "
    "Retry with the same Idempotency-Key to get its outcome exactly once."
)
# Whole classes: 08 = connection exception; 22 = data exception, a value the database cannot take
# (also asyncpg's "invalid input for query argument", raised before anything is sent); 53 =
# insufficient resources (53200 out of shared memory: the lock table; 53100 disk full; 53300 above).
SQLSTATE_CLASS_PROBLEMS: dict[str, ProblemType] = {
    "08": DATABASE_UNAVAILABLE, "22": INVALID_ARGUMENT, "53": DATABASE_UNAVAILABLE,
}

RETRY_AFTER_SECONDS = "1"
# Fields the SQL functions name (COLUMN) otherwise than the JSON body does.
JSON_FIELD_NAMES = {"ttl": "ttl_seconds"}
# What a refusal's DETAIL says that a problem carries as a member of its own ("quota_id: <uuid>, ...").
DETAIL_MEMBERS = ("quota_id", "order_id")
# The COLUMN of an order's refusal: its DETAIL lists every failing line (sql/errors.sql order_refused).
ORDER_LINES = "lines"


class Problem(Exception):
    """An error answered as application/problem+json."""

    def __init__(
        self, problem_type: ProblemType, detail: str, errors: list[dict] | None = None, headers: dict | None = None,
        members: dict | None = None,
    ):
        super().__init__(detail)
        self.type = problem_type
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.members = members  # extension members (RFC 9457), e.g. the quota_id of a quota refusal

    def response(self) -> web.Response:
        body = {
            "type": self.type.uri,
            "title": self.type.title,
            "status": self.type.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.members or {})
        headers = dict(self.headers or {})
        if self.type.retry_after:
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        response = web.Response(
            status=self.type.status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE, headers=headers
        )
        if self.type.closes_connection:
            response.force_close()
        return response


def problem_type_of(sqlstate: str) -> ProblemType | None:
    """The problem type of a SQLSTATE; None if the table does not know it."""
    return SQLSTATE_PROBLEMS.get(sqlstate) or SQLSTATE_CLASS_PROBLEMS.get(sqlstate[:2])


def detail_members(detail: str | None) -> dict:
    """The DETAIL_MEMBERS a refusal's DETAIL names ("quota_id: <uuid>, remaining: 2" -> {"quota_id": ...})."""
    pairs = dict(part.split(": ", 1) for part in (detail or "").split(", ") if ": " in part)
    return {name: pairs[name] for name in DETAIL_MEMBERS if name in pairs}


def json_field(field: str | None) -> str | None:
    return JSON_FIELD_NAMES.get(field, field)


def line_errors(detail: str) -> list[dict]:
    """An order refusal's failing lines as `errors`: {"line", "type", "detail"} each, with the field
    of an invalid line and the members of its refusal (e.g. quota_id)."""
    errors = []
    for line in json.loads(detail):
        problem_type = problem_type_of(line["sqlstate"]) or INTERNAL_ERROR
        error = {"line": line["line"], "type": problem_type.uri, "detail": line["message"]}
        if line.get("column_name"):
            error["field"] = json_field(line["column_name"])
        errors.append(error | detail_members(line.get("detail")))
    return errors


def from_sqlstate(sqlstate: str, message: str, field: str | None = None, detail: str | None = None) -> Problem | None:
    """The problem for a database error or refusal; None if the table does not know it. An order's
    refusal (COLUMN lines) is the problem of its first failing line, listing every failing line."""
    problem_type = problem_type_of(sqlstate)
    if problem_type is None:
        return None
    if field == ORDER_LINES and sqlstate.startswith("TA") and detail:
        return Problem(problem_type, message, line_errors(detail))
    if problem_type is SERVICE_MISCONFIGURED:
        log.error("the service's database session is misconfigured (SQLSTATE %s): %s", sqlstate, message)
    if problem_type is DATABASE_UNAVAILABLE:
        log.warning("database unavailable (SQLSTATE %s): %s", sqlstate, message)
        if sqlstate in CUT_MID_CALL_SQLSTATES:
            return Problem(problem_type, CUT_MID_CALL_DETAIL)
        return Problem(problem_type, "The database could not serve the request in time; nothing was changed.")
    if field in JSON_FIELD_NAMES:
        message = message.replace(field, JSON_FIELD_NAMES[field], 1)
        field = JSON_FIELD_NAMES[field]
    errors = [{"field": field, "message": message}] if problem_type is INVALID_ARGUMENT and field else None
    return Problem(problem_type, message, errors, members=detail_members(detail) if sqlstate.startswith("TA") else None)


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
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_exception(error)
    except (asyncpg.PostgresError, Refused) as error:
        message = error.message or str(error)  # asyncpg's client-side errors have no message
        problem = from_sqlstate(error.sqlstate or "", message, getattr(error, "column_name", None),
                                getattr(error, "detail", None))
        if problem is not None:
            return problem.response()
        log.exception("unexpected database error on %s %s", request.method, request.path)
    # The connection to PostgreSQL broke (a restart, a network fault) or no connection was
    # free in time: the request may be retried (with its Idempotency-Key, safely).
    except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
        log.warning("database unreachable on %s %s: %r", request.method, request.path, error)
        return Problem(DATABASE_UNAVAILABLE, "The database is unreachable; nothing was changed.").response()
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
    return Problem(INTERNAL_ERROR, "The server failed to answer; the error is in its log.").response()
