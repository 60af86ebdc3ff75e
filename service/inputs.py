"""Reading request bodies, query strings and path ids: shape and types only.

Value rules (blank names, quantities, what remains) live in sql/, where psql
callers meet them too. Here we only make sure each field has the type the
SQL function's parameter needs.
"""

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from .errors import (
    CLIENT_DISCONNECTED, INVALID_ARGUMENT, MALFORMED_BODY, REQUEST_TIMEOUT, UNSUPPORTED_MEDIA_TYPE, Problem,
)
from .keys import METRICS, SETTINGS

log = logging.getLogger(__name__)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Integer literals (JSON or query string) of more significant digits than this are beyond every
# range here whatever their digits: read as +-10**LONG_INTEGER_DIGITS, so that none meets Python's
# int-conversion limit (sys.set_int_max_str_digits: 4,300 digits) or costs time to convert.
LONG_INTEGER_DIGITS = 30
# A "seconds" field is sent as an interval, which holds any value of it up to this (about 31 years;
# further out, the same refusal): the SQL rule on it, not the 32-bit range, says what it may be.
LONGEST_SECONDS = 10**9
# Only the canonical 8-4-4-4-12 form (any case): what PostgreSQL and asyncpg take, and one
# spelling per id. uuid.UUID() also takes braces, "urn:uuid:" and stray hyphens.
CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The rule of claim_idempotency_key in sql/idempotency.sql (the source), checked here too so that
# a request with a bad key is refused before it joins a batch of other buyers' purchases.
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x2b\x2d-\x7e]{1,255}")
IDEMPOTENCY_KEY_RULE = "must be 1 to 255 printable ASCII characters, no comma"


@dataclass(frozen=True)
class Field:
    name: str
    # "string" | "integer" (32-bit) | "seconds" (an integer, sent as an interval) | "uuid" |
    # "strings", "uuids" (arrays of those) | "objects" (an array of objects, each the route's to check)
    kind: str
    required: bool = True
    default: object = None
    nullable: bool = False


def whole_number(literal: str) -> int:
    """An integer literal's value; one too long for any range here as +-10**LONG_INTEGER_DIGITS."""
    if len(literal.lstrip("-").lstrip("0")) <= LONG_INTEGER_DIGITS:
        return int(literal)
    return -(10**LONG_INTEGER_DIGITS) if literal.startswith("-") else 10**LONG_INTEGER_DIGITS


def type_error(kind: str, value) -> str | None:
    """Why `value` is not of `kind`, or None if it is."""
    if kind in ("integer", "seconds"):
        # bool is an int in Python, and 1.0 or "2" are not integers in this API.
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if kind == "integer" and not INT32_MIN <= value <= INT32_MAX:
            # The SQL parameter is 32-bit: its rule cannot see the value, so say why here.
            return f"is out of range: whole numbers here are 32-bit, from {INT32_MIN} to {INT32_MAX}"
        return None
    if kind in ("strings", "uuids"):
        noun = kind.removesuffix("s")
        if not isinstance(value, list) or len(value) > 100:
            return f"must be an array of at most 100 {noun}s"
        return next((reason for item in value if (reason := type_error(noun, item))), None)
    if kind == "objects":  # each checked by the route (e.g. an order's lines)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return "must be an array of objects"
        return None
    if not isinstance(value, str):
        return "must be a string" if kind == "string" else "must be a UUID string"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    if kind == "uuid" and not CANONICAL_UUID.fullmatch(value):
        return "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000"
    return None


def converted(kind: str, value):
    """A valid value as the SQL function's parameter takes it: UUIDs as uuid.UUID, seconds as an
    interval (the SQL function decides its range)."""
    if value is None:
        return None
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "uuids":
        return [uuid.UUID(item) for item in value]
    if kind == "seconds":
        return timedelta(seconds=max(-LONGEST_SECONDS, min(value, LONGEST_SECONDS)))
    return value


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKey(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # A proxy reading the first of two equal keys and us the last would disagree on the request.
    names = set()
    for name, _ in pairs:
        if name in names:
            raise DuplicateKey(name)
        names.add(name)
    return dict(pairs)


def _check_media_type(request: web.Request) -> None:
    # Only application/json in UTF-8 (RFC 8259): what a proxy or WAF in front reads the same way.
    if request.content_type.lower() == "application/json" and (request.charset or "utf-8").lower() == "utf-8":
        return
    raise Problem(
        UNSUPPORTED_MEDIA_TYPE,
        "Send the body as UTF-8 JSON with Content-Type: application/json (got "
        f"{request.headers.get('Content-Type', 'none')!r}).",
    )


async def _read_body(request: web.Request) -> bytes:
    """The whole body; 408 if the client takes too long to send it (over client_max_size: 413)."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_read_timeout):
            return await request.read()
    except TimeoutError:
        raise Problem(REQUEST_TIMEOUT, "The request body did not arrive in time; send it at once.") from None
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError too: the client hung up
        # Not the database's fault: counted apart, so it cannot set off database alerts.
        request.app[METRICS].client_disconnected()
        log.info("client disconnected while sending the body of %s %s", request.method, request.path)
        raise Problem(CLIENT_DISCONNECTED, "The client closed the connection before sending its whole body.") from None


def _parse_json(raw: bytes):
    try:
        # Strictly UTF-8: json.loads(bytes) would also guess UTF-16 and UTF-32, and skip a BOM.
        return json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_int=whole_number,
            object_pairs_hook=_object_without_duplicates,
        )
    except UnicodeDecodeError:
        raise Problem(MALFORMED_BODY, "The request body is not UTF-8.") from None
    except DuplicateKey as duplicate:
        raise invalid([given_twice(duplicate.name)]) from None
    except (ValueError, RecursionError) as error:
        raise Problem(MALFORMED_BODY, f"The request body is not valid JSON: {error}.") from None


async def read_json_object(request: web.Request, fields: tuple[Field, ...]) -> dict:
    """The body's fields by name, or a Problem (400, 408, 413, 415 or 422).

    Unknown fields are rejected, so a misspelt field is never silently ignored.
    """
    _check_media_type(request)
    raw = await _read_body(request)
    if not raw.strip():
        raise Problem(MALFORMED_BODY, "The request body is empty; send a JSON object.")
    data = _parse_json(raw)
    if not isinstance(data, dict):
        raise Problem(MALFORMED_BODY, f"The request body must be a JSON object, not {_json_type(data)}.")

    known = {field.name for field in fields}
    errors = [
        {"field": name, "message": f"{name} is not a known field (expected: {', '.join(sorted(known))})"}
        for name in data
        if name not in known
    ]
    values = {}
    for field in fields:
        if field.name not in data:
            if field.required:
                errors.append({"field": field.name, "message": f"{field.name} is required"})
            values[field.name] = field.default
            continue
        if data[field.name] is None and field.nullable:
            values[field.name] = None
            continue
        reason = type_error(field.kind, data[field.name])
        if reason:
            errors.append({"field": field.name, "message": f"{field.name} {reason}"})
        else:
            values[field.name] = converted(field.kind, data[field.name])
    if errors:
        raise invalid(errors)
    return values


def read_query(request: web.Request, fields: tuple[Field, ...]) -> dict:
    """The query string's parameters by name (strings, integers, UUIDs), or a 422 Problem.

    Unknown parameters are rejected, so a misspelt filter never silently lists everything.
    """
    known = {field.name for field in fields}
    errors = [
        {"field": name, "message": f"{name} is not a known query parameter (expected: {', '.join(sorted(known))})"}
        for name in request.query  # each name once (multidict iterates unique keys)
        if name not in known
    ]
    values = {}
    for field in fields:
        given = request.query.getall(field.name, [])
        values[field.name] = field.default
        if not given:
            continue
        if len(given) > 1:  # a proxy or framework in front may read either
            errors.append(given_twice(field.name))
            continue
        raw = given[0]
        value = whole_number(raw) if field.kind in ("integer", "seconds") and re.fullmatch(r"-?[0-9]+", raw) else raw
        reason = type_error(field.kind, value)
        if reason:
            errors.append({"field": field.name, "message": f"{field.name} {reason}"})
        else:
            values[field.name] = converted(field.kind, value)
    if errors:
        raise invalid(errors)
    return values


def given_twice(name: str) -> dict:
    return {"field": name, "message": f"{name} is given more than once"}


def invalid(errors: list[dict]) -> Problem:
    """The 422 for these invalid fields (or parameters, or headers): one error each, and a detail
    that says what is wrong, as the SQL functions' refusals do."""
    detail = "; ".join(error["message"] for error in errors)
    return Problem(INVALID_ARGUMENT, detail, errors)


def path_uuid(request: web.Request, name: str, not_found: str) -> uuid.UUID:
    """The path parameter as a UUID; anything else names nothing, so 404 (not_found: its catalogue slug)."""
    raw = request.match_info[name]
    if not CANONICAL_UUID.fullmatch(raw):
        raise Problem(not_found, f"{raw!r} is not an id; ids are UUIDs.")
    return uuid.UUID(raw)


def idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header, if any; 422 if it is given twice or breaks the key rule."""
    keys = request.headers.getall("Idempotency-Key", [])
    if len(keys) > 1:
        raise invalid([given_twice("idempotency_key")])
    if keys and not IDEMPOTENCY_KEY.fullmatch(keys[0]):
        raise invalid([{"field": "idempotency_key", "message": f"idempotency_key {IDEMPOTENCY_KEY_RULE}"}])
    return keys[0] if keys else None
