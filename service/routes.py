"""Routes: each maps a request to one SQL function call (see sql/).

The functions return the resources as callers see them (types in schema api);
resource gives any of them to the JSON encoder, field by field.
"""

import asyncio
import functools
import time
import uuid
from datetime import datetime

import asyncpg
from aiohttp import web

from .auth import CALLER, require_admin
from .coalescing import Overloaded, Refused
from .db import OMITTED, call
from .errors import DATABASE_UNAVAILABLE, HOLD_NOT_FOUND, PURCHASE_NOT_FOUND, TICKET_OPTION_NOT_FOUND, Problem
from .inputs import Field, idempotency_key, path_uuid, read_json_object, read_query
from .keys import HOLDS, LIST_PAGE_TURN, METRICS, PROBLEMS, PURCHASES
from .openapi import OPENAPI_JSON
from .pagination import decode_cursor, encode_cursor
from .responses import cacheable_json, json_response

routes = web.RouteTableDef()

# List pages are the heaviest answers (up to list_purchases_ticket_budget() ticket ids to encode on
# the event loop). One at a time per worker, and each keeps the turn for a while after it is
# answered, so that list pages take at most LIST_PAGES_SHARE of a worker's time and a flood of them
# cannot starve purchases (tests/reliability/test_list_flood.py); waiting readers use no CPU.
LIST_PAGES_SHARE = 0.1

TICKET_OPTION_FIELDS = (
    Field("name", "string"),
    Field("desc", "string", required=False, default=OMITTED),
    Field("allocation", "integer"),
    Field("max_per_user", "integer", required=False, default=OMITTED, nullable=True),
    Field("max_hold_seconds", "integer", required=False, default=OMITTED),
)
PURCHASE_FIELDS = (
    Field("quantity", "integer"),
    Field("user_id", "uuid"),
)
HOLD_FIELDS = (
    *PURCHASE_FIELDS,
    Field("ttl_seconds", "seconds", required=False, default=OMITTED),
)
# Routes that take no query parameters still refuse them (e.g. ?dry_run=true), as documented.
NO_QUERY: tuple[Field, ...] = ()
LIST_PURCHASES_QUERY = (
    Field("limit", "integer", default=OMITTED),
    Field("cursor", "string"),
    Field("user_id", "uuid", default=OMITTED),
)

# JSON names that differ from the SQL ones: the original contract calls what remains `allocation`.
JSON_NAMES = {"remaining": "allocation"}


def json_value(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [json_value(item) for item in value]
    return value


@functools.cache
def json_names(sql_names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(JSON_NAMES.get(name, name) for name in sql_names)


def resource(row) -> dict:
    """A resource of the SQL API (a row of an api type) as the responses' encoder (orjson) takes it:
    its fields by their JSON names, the values as they are (UUIDs, timestamps)."""
    return dict(zip(json_names(tuple(row.keys())), row.values()))


def resource_json(row) -> dict:
    """The same with plain JSON values (UUIDs and timestamps as strings), for the json module."""
    return {name: json_value(value) for name, value in resource(row).items()}


@routes.post("/ticket_options")
async def create_ticket_option(request: web.Request) -> web.Response:
    require_admin(request)
    read_query(request, NO_QUERY)
    key = idempotency_key(request)
    body = await read_json_object(request, TICKET_OPTION_FIELDS)
    row = await call(
        request, "create_ticket_option", admin=True,
        p_name=body["name"], p_allocation=body["allocation"], p_desc=body["desc"],
        p_max_per_user=body["max_per_user"], p_max_hold_seconds=body["max_hold_seconds"],
        p_idempotency_key=key, p_caller=request.get(CALLER),
    )
    option = resource(row)
    location = request.app.router["ticket_option"].url_for(id=str(option["id"]))
    return json_response(option, status=201, headers={"Location": str(location)})


@routes.get("/ticket_options/{id}", name="ticket_option")
async def get_ticket_option(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    read_query(request, NO_QUERY)
    row = await call(request, "get_ticket_option", p_id=option_id)
    return cacheable_json(request, resource(row))


@routes.post("/ticket_options/{id}/purchases")
async def purchase_tickets(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    read_query(request, NO_QUERY)
    key = idempotency_key(request)
    body = await read_json_object(request, PURCHASE_FIELDS)
    # purchase_tickets_batch, shared with concurrent purchases of the option (see coalescing.py):
    # only fully checked values get there, so no request can fail its neighbours.
    try:
        receipt = await request.app[PURCHASES].submit(
            option_id, body["user_id"], body["quantity"], key, request.get(CALLER)
        )
    except Refused as refusal:
        request.app[METRICS].purchase_refused(request.app[PROBLEMS].slug_of(refusal.sqlstate))
        raise
    except asyncpg.PostgresError as error:
        if (error.sqlstate or "").startswith("TA"):  # refused for the whole batch (e.g. unknown option)
            request.app[METRICS].purchase_refused(request.app[PROBLEMS].slug_of(error.sqlstate))
        raise
    except Overloaded as overloaded:
        request.app[METRICS].purchase_shed()
        raise Problem(DATABASE_UNAVAILABLE, f"{overloaded}; retry shortly. Nothing was changed.") from None
    request.app[METRICS].purchased(body["quantity"])
    purchase = resource(receipt)
    location = request.app.router["purchase"].url_for(id=str(purchase["id"]))
    return json_response(purchase, status=201, headers={"Location": str(location)})


@routes.post("/ticket_options/{id}/holds")
async def hold_tickets(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    read_query(request, NO_QUERY)
    key = idempotency_key(request)
    body = await read_json_object(request, HOLD_FIELDS)
    # hold_tickets_batch, shared with concurrent holds of the option (see coalescing.py); a ttl
    # left out is null in the batch, which takes hold_tickets' default for it.
    ttl = None if body["ttl_seconds"] is OMITTED else body["ttl_seconds"]
    metrics = request.app[METRICS]
    try:
        hold = await request.app[HOLDS].submit(
            option_id, body["user_id"], body["quantity"], key, request.get(CALLER), ttl)
    except Refused as refusal:
        metrics.hold_refused(request.app[PROBLEMS].slug_of(refusal.sqlstate))
        raise
    except asyncpg.PostgresError as error:
        if (error.sqlstate or "").startswith("TA"):
            metrics.hold_refused(request.app[PROBLEMS].slug_of(error.sqlstate))
        raise
    except Overloaded as overloaded:
        metrics.hold_shed()
        raise Problem(DATABASE_UNAVAILABLE, f"{overloaded}; retry shortly. Nothing was changed.") from None
    metrics.held(body["quantity"])
    held = resource(hold)
    location = request.app.router["hold"].url_for(id=str(held["id"]))
    return json_response(held, status=201, headers={"Location": str(location)})


@routes.get("/holds/{id}", name="hold")
async def get_hold(request: web.Request) -> web.Response:
    hold_id = path_uuid(request, "id", HOLD_NOT_FOUND)
    read_query(request, NO_QUERY)
    row = await call(request, "get_hold", p_id=hold_id)
    return json_response(resource(row))


@routes.post("/holds/{id}/confirm")
async def confirm_hold(request: web.Request) -> web.Response:
    hold_id = path_uuid(request, "id", HOLD_NOT_FOUND)
    read_query(request, NO_QUERY)
    confirmation = await call(request, "confirm_hold", p_id=hold_id)
    purchase = resource(confirmation["purchase"])
    if not confirmation["created"]:  # confirmed before: the same purchase, nothing more bought
        return json_response(purchase)
    request.app[METRICS].hold_ended("confirmed")
    location = request.app.router["purchase"].url_for(id=str(purchase["id"]))
    return json_response(purchase, status=201, headers={"Location": str(location)})


@routes.post("/holds/{id}/release")
async def release_hold(request: web.Request) -> web.Response:
    hold_id = path_uuid(request, "id", HOLD_NOT_FOUND)
    read_query(request, NO_QUERY)
    release = await call(request, "release_hold", p_id=hold_id)
    if release["released"]:  # released or expired before: nothing changed, nothing to count
        request.app[METRICS].hold_ended("released")
    return json_response(resource(release["hold"]))


@routes.get("/ticket_options/{id}/purchases")
async def list_purchases(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    query = read_query(request, LIST_PURCHASES_QUERY)
    before = decode_cursor(query["cursor"]) if query["cursor"] else (OMITTED, OMITTED)
    turn = request.app[LIST_PAGE_TURN]
    await turn.acquire()
    started = time.perf_counter()
    try:
        return await list_page(request, option_id, query, before)
    finally:
        rest = (time.perf_counter() - started) * (1 / LIST_PAGES_SHARE - 1)
        asyncio.get_running_loop().call_later(rest, turn.release)


async def list_page(request: web.Request, option_id, query: dict, before: tuple) -> web.Response:
    before_created_at, before_id = before
    page = await call(
        request, "list_purchases_page",
        p_ticket_option_id=option_id, p_limit=query["limit"], p_user_id=query["user_id"],
        p_before_created_at=before_created_at, p_before_id=before_id,
    )
    # The SQL function says whether a next page may follow (a full page), and where it starts.
    next_cursor = page["next_before_id"] and encode_cursor(page["next_before_created_at"], page["next_before_id"])
    purchases = [resource(row) for row in page["purchases"]]
    return json_response({"purchases": purchases, "next_cursor": next_cursor})


@routes.get("/purchases/{id}", name="purchase")
async def get_purchase(request: web.Request) -> web.Response:
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    read_query(request, NO_QUERY)
    row = await call(request, "get_purchase", p_id=purchase_id)
    return json_response(resource(row))


@routes.post("/purchases/{id}/cancel")
async def cancel_purchase(request: web.Request) -> web.Response:
    require_admin(request)
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    read_query(request, NO_QUERY)
    row = await call(request, "cancel_purchase", admin=True, p_id=purchase_id)
    return json_response(resource(row))


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_JSON, content_type="application/json")
