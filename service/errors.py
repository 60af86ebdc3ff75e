"""Errors as problem details (RFC 9457), and the one table that maps SQLSTATEs to them.

The functions in sql/ raise SQLSTATEs of class TA, each a row of the database's error catalogue
(api.error_catalogue() in sql/errors.sql: its status, problem type and title). The service reads
that catalogue once when its pool opens (read_problems) and adds to it its own problems (a
request, a token, the database's reach, which no SQL error gives) and the other SQLSTATEs it
knows: this is the only place where database errors become HTTP statuses.
"""

import json
import logging
from dataclasses import dataclass

import asyncpg
from aiohttp import web


log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_uri(slug: str) -> str:
    return f"/problems/{slug}"


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str  # the `type` member is /problems/<slug>
    title: str
    retry_after: bool = False  # the same request may succeed shortly
    closes_connection: bool = False  # what is left of the request on the connection is not read

    @property
    def uri(self) -> str:
        return problem_uri(self.slug)


# The service's own problems, in the catalogue's shape: answers that no SQL error gives.
UNAUTHORIZED = ProblemType(401, "unauthorized", "A bearer token is required")
FORBIDDEN = ProblemType(403, "forbidden", "The bearer token is not accepted here")
MALFORMED_BODY = ProblemType(400, "malformed-body", "The request body is not a JSON object")
CLIENT_DISCONNECTED = ProblemType(
    400, "client-disconnected", "The client closed the connection before sending its whole request",
    closes_connection=True,
)
REQUEST_TIMEOUT = ProblemType(408, "request-timeout", "The request body did not arrive in time", closes_connection=True)
UNSUPPORTED_MEDIA_TYPE = ProblemType(415, "unsupported-media-type", "The request body must be JSON")
DATABASE_UNAVAILABLE = ProblemType(
    503, "database-unavailable", "The database is busy or unreachable; retry shortly", retry_after=True
)
MIGRATIONS_PENDING = ProblemType(
    503, "migrations-pending", "The database schema is behind this version of the service", retry_after=True
)
INTERNAL_ERROR = ProblemType(500, "internal-error", "Internal server error")
OWN_PROBLEMS = (UNAUTHORIZED, FORBIDDEN, MALFORMED_BODY, CLIENT_DISCONNECTED, REQUEST_TIMEOUT, UNSUPPORTED_MEDIA_TYPE,
                DATABASE_UNAVAILABLE, MIGRATIONS_PENDING, INTERNAL_ERROR)

# Problems of the database's catalogue that the service names itself (a field invalid before any
# SQL runs, a malformed id in the path, its own session settings refused): by slug, resolved
# against the catalogue it read, which must have each (read_problems refuses to start otherwise).
INVALID_ARGUMENT = "invalid-argument"
TICKET_OPTION_NOT_FOUND = "ticket-option-not-found"
PURCHASE_NOT_FOUND = "purchase-not-found"
HOLD_NOT_FOUND = "hold-not-found"
WEBHOOK_NOT_FOUND = "webhook-not-found"
QUOTA_NOT_FOUND = "quota-not-found"
ORDER_NOT_FOUND = "order-not-found"
SERVICE_MISCONFIGURED = "service-misconfigured"  # TA008: the service's DB_LOCK_TIMEOUT/DB_STATEMENT_TIMEOUT
NAMED_FROM_THE_CATALOGUE = (INVALID_ARGUMENT, TICKET_OPTION_NOT_FOUND, PURCHASE_NOT_FOUND, HOLD_NOT_FOUND,
                            WEBHOOK_NOT_FOUND, QUOTA_NOT_FOUND, ORDER_NOT_FOUND, SERVICE_MISCONFIGURED)

# The SQLSTATEs outside the catalogue: the integrity classes back the rules of sql/ (reached only
# if a function missed a rule); the rest mean "retry later".
SQLSTATE_PROBLEMS: dict[str, ProblemType | str] = {
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
SQLSTATE_CLASS_PROBLEMS: dict[str, ProblemType | str] = {
    "08": DATABASE_UNAVAILABLE, "22": INVALID_ARGUMENT, "53": DATABASE_UNAVAILABLE,
}

RETRY_AFTER_SECONDS = "1"
# Fields the SQL functions name (COLUMN) otherwise than the JSON body does.
JSON_FIELD_NAMES = {"ttl": "ttl_seconds"}
# What a refusal's DETAIL says that a problem carries as a member of its own ("quota_id: <uuid>, ...").
DETAIL_MEMBERS = ("quota_id", "order_id")
# The COLUMN of an order's refusal: its DETAIL lists every failing line (sql/errors.sql order_refused).
ORDER_LINES = "lines"


class Problems:
    """Every problem type the service answers with, by slug, and the problem of each SQLSTATE: the
    database's catalogue (rows of api.error_catalogue()) with the service's own added."""

    def __init__(self, catalogue: list):
        of_catalogue = {row["sqlstate"]: ProblemType(row["status"], row["problem"], row["title"], row["retry_after"])
                        for row in catalogue}
        self.types = {problem.slug: problem for problem in (*OWN_PROBLEMS, *of_catalogue.values())}
        missing = {name for name in (*NAMED_FROM_THE_CATALOGUE, *SQLSTATE_PROBLEMS.values(),
                                     *SQLSTATE_CLASS_PROBLEMS.values()) if self.named(name) is None}
        if missing:
            raise SystemExit(f"the database's error catalogue (api.error_catalogue()) lacks the problem types "
                             f"{sorted(missing)}: migrate it with this version of the service")
        self.of_sqlstate = of_catalogue | {code: self.named(name) for code, name in SQLSTATE_PROBLEMS.items()}
        self.of_class = {code: self.named(name) for code, name in SQLSTATE_CLASS_PROBLEMS.items()}

    def named(self, name: ProblemType | str) -> ProblemType | None:
        """The problem type itself (the service's own), or the catalogue's of that slug."""
        return name if isinstance(name, ProblemType) else self.types.get(name)

    def of(self, sqlstate: str) -> ProblemType | None:
        """The problem type of a SQLSTATE; None if the table does not know it."""
        return self.of_sqlstate.get(sqlstate) or self.of_class.get(sqlstate[:2])

    def slug_of(self, sqlstate: str) -> str:
        """The problem type's slug of a SQLSTATE (the SQLSTATE itself if none): a metrics label."""
        problem_type = self.of(sqlstate)
        return problem_type.slug if problem_type else sqlstate


async def read_problems(db: asyncpg.Pool | asyncpg.Connection) -> Problems:
    """The problems of the database's error catalogue, and the service's own (once, as the pool opens)."""
    try:
        return Problems(await db.fetch("SELECT * FROM api.error_catalogue()"))
    except asyncpg.UndefinedFunctionError:
        raise SystemExit("the database has no error catalogue (api.error_catalogue()): it was not migrated by this "
                         "version of the service; run `python -m service migrate`") from None


class Problem(Exception):
    """An error answered as application/problem+json: of one of the service's own problem types, or
    of the catalogue's named by its slug (resolved when answered, against the app's Problems)."""

    def __init__(
        self, problem_type: ProblemType | str, detail: str, errors: list[dict] | None = None,
        headers: dict | None = None, members: dict | None = None,
    ):
        super().__init__(detail)
        self.type = problem_type
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.members = members  # extension members (RFC 9457), e.g. the quota_id of a quota refusal

    def response(self, problems: Problems) -> web.Response:
        problem_type = problems.named(self.type)
        body = {
            "type": problem_type.uri,
            "title": problem_type.title,
            "status": problem_type.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.members or {})
        headers = dict(self.headers or {})
        if problem_type.retry_after:
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        response = web.Response(
            status=problem_type.status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE, headers=headers
        )
        if problem_type.closes_connection:
            response.force_close()
        return response


def detail_members(detail: str | None) -> dict:
    """The DETAIL_MEMBERS a refusal's DETAIL names ("quota_id: <uuid>, remaining: 2" -> {"quota_id": ...})."""
    pairs = dict(part.split(": ", 1) for part in (detail or "").split(", ") if ": " in part)
    return {name: pairs[name] for name in DETAIL_MEMBERS if name in pairs}


def json_field(field: str | None) -> str | None:
    return JSON_FIELD_NAMES.get(field, field)


def line_errors(problems: Problems, detail: str) -> list[dict]:
    """An order refusal's failing lines as `errors`: {"line", "type", "detail"} each, with the field
    of an invalid line and the members of its refusal (e.g. quota_id)."""
    errors = []
    for line in json.loads(detail):
        problem_type = problems.of(line["sqlstate"]) or INTERNAL_ERROR
        error = {"line": line["line"], "type": problem_type.uri, "detail": line["message"]}
        if line.get("column_name"):
            error["field"] = json_field(line["column_name"])
        errors.append(error | detail_members(line.get("detail")))
    return errors


def from_sqlstate(
    problems: Problems, sqlstate: str, message: str, field: str | None = None, detail: str | None = None,
) -> Problem | None:
    """The problem for a database error or refusal; None if the table does not know it. An order's
    refusal (COLUMN lines) is the problem of its first failing line, listing every failing line."""
    problem_type = problems.of(sqlstate)
    if problem_type is None:
        return None
    if field == ORDER_LINES and sqlstate.startswith("TA") and detail:
        return Problem(problem_type, message, line_errors(problems, detail))
    if problem_type.slug == SERVICE_MISCONFIGURED:
        log.error("the service's database session is misconfigured (SQLSTATE %s): %s", sqlstate, message)
    if problem_type is DATABASE_UNAVAILABLE:
        log.warning("database unavailable (SQLSTATE %s): %s", sqlstate, message)
        if sqlstate in CUT_MID_CALL_SQLSTATES:
            return Problem(problem_type, CUT_MID_CALL_DETAIL)
        return Problem(problem_type, "The database could not serve the request in time; nothing was changed.")
    if field in JSON_FIELD_NAMES:
        message = message.replace(field, JSON_FIELD_NAMES[field], 1)
        field = JSON_FIELD_NAMES[field]
    errors = [{"field": field, "message": message}] if problem_type.slug == INVALID_ARGUMENT and field else None
    return Problem(problem_type, message, errors, members=detail_members(detail) if sqlstate.startswith("TA") else None)
