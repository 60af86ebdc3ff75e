"""Reading request bodies, query strings and path ids: shape and types only.

Value rules (blank names, quantities, what remains) live in sql/, where psql
callers meet them too. Here we only make sure each field has the type the
SQL function's parameter needs.
"""

import json
import re
import uuid
from dataclasses import dataclass

from aiohttp import web

from .errors import INVALID_ARGUMENT, MALFORMED_BODY, UNSUPPORTED_MEDIA_TYPE, Problem, ProblemType

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" | "integer" | "uuid"
    required: bool = True
    default: object = None
    nullable: bool = False


def type_error(kind: str, value) -> str | None:
    """Why `value` is not of `kind`, or None if it is."""
    if kind == "integer":
        # bool is an int in Python, and 1.0 or "2" are not integers in this API.
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if not INT32_MIN <= value <= INT32_MAX:
            return f"must be between {INT32_MIN} and {INT32_MAX}"
        return None
    if not isinstance(value, str):
        return "must be a string" if kind == "string" else "must be a UUID string"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    if kind == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000"
    return None


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: web.Request, fields: tuple[Field, ...]) -> dict:
    """The body's fields by name, or a Problem (400, 413, 415 or 422).

    Unknown fields are rejected, so a misspelt field is never silently ignored.
    """
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise Problem(
            UNSUPPORTED_MEDIA_TYPE,
            f"Send the body as JSON with Content-Type: application/json (got {request.content_type or 'none'}).",
        )
    raw = await request.read()  # over client_max_size: aiohttp raises 413
    if not raw.strip():
        raise Problem(MALFORMED_BODY, "The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise Problem(MALFORMED_BODY, f"The request body is not valid JSON: {error}.") from None
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
        values[field.name] = data[field.name]
    if errors:
        names = ", ".join(error["field"] for error in errors)
        raise Problem(INVALID_ARGUMENT, f"The request has invalid fields: {names}.", errors)
    return values


def read_query(request: web.Request, fields: tuple[Field, ...]) -> dict:
    """The query string's parameters by name (strings, integers, UUIDs), or a 422 Problem.

    Unknown parameters are rejected, so a misspelt filter never silently lists everything.
    """
    known = {field.name for field in fields}
    errors = [
        {"field": name, "message": f"{name} is not a known query parameter (expected: {', '.join(sorted(known))})"}
        for name in request.query
        if name not in known
    ]
    values = {}
    for field in fields:
        raw = request.query.get(field.name)
        values[field.name] = field.default
        if raw is None:
            continue
        value = int(raw) if field.kind == "integer" and re.fullmatch(r"-?[0-9]{1,10}", raw) else raw
        reason = type_error(field.kind, value)
        if reason:
            errors.append({"field": field.name, "message": f"{field.name} {reason}"})
        values[field.name] = value
    if errors:
        names = ", ".join(error["field"] for error in errors)
        raise Problem(INVALID_ARGUMENT, f"The request has invalid query parameters: {names}.", errors)
    return values


def path_uuid(request: web.Request, name: str, not_found: ProblemType) -> uuid.UUID:
    """The path parameter as a UUID; anything else names nothing, so 404."""
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(not_found, f"{raw!r} is not an id; ids are UUIDs.") from None
