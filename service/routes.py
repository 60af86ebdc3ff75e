"""Routes: each maps a request to one SQL function call (see sql/).

The functions return the resources as callers see them (types in schema api);
resource_json serialises any of them, field by field.
"""

import uuid
from datetime import datetime

from aiohttp import web

from .auth import require_admin
from .coalescing import Refused
from .db import OMITTED, PURCHASES, call, call_many
from .errors import PURCHASE_NOT_FOUND, TICKET_OPTION_NOT_FOUND
from .inputs import Field, path_uuid, read_json_object, read_query
from .metrics import METRICS
from .openapi import OPENAPI_JSON
from .pagination import decode_cursor, encode_cursor

routes = web.RouteTableDef()

TICKET_OPTION_FIELDS = (
    Field("name", "string"),
    Field("desc", "string", required=False, default=OMITTED),
    Field("allocation", "integer"),
    Field("max_per_user", "integer", required=False, default=OMITTED, nullable=True),
)
PURCHASE_FIELDS = (
    Field("quantity", "integer"),
    Field("user_id", "uuid"),
)
LIST_PURCHASES_QUERY = (
    Field("limit", "integer", default=50),  # TODO(merge with issue 9's page bound): the SQL default only
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


def resource_json(row) -> dict:
    """A resource of the SQL API (a row of an api type) as JSON."""
    return {JSON_NAMES.get(name, name): json_value(value) for name, value in row.items()}


def idempotency_key(request: web.Request) -> str | None:
    # Checked in SQL (1..255 printable ASCII), where psql callers meet the same rule.
    return request.headers.get("Idempotency-Key")


@routes.post("/ticket_options")
async def create_ticket_option(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json_object(request, TICKET_OPTION_FIELDS)
    row = await call(
        request, "create_ticket_option", admin=True,
        p_name=body["name"], p_allocation=body["allocation"], p_desc=body["desc"],
        p_max_per_user=body["max_per_user"], p_idempotency_key=idempotency_key(request),
    )
    option = resource_json(row)
    location = request.app.router["ticket_option"].url_for(id=option["id"])
    return web.json_response(option, status=201, headers={"Location": str(location)})


@routes.get("/ticket_options/{id}", name="ticket_option")
async def get_ticket_option(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    row = await call(request, "get_ticket_option", p_id=option_id)
    return web.json_response(resource_json(row))


@routes.post("/ticket_options/{id}/purchases")
async def purchase_tickets(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    body = await read_json_object(request, PURCHASE_FIELDS)
    # purchase_tickets_batch, shared with concurrent purchases of the option (see coalescing.py).
    try:
        receipt = await request.app[PURCHASES].purchase(
            option_id, body["user_id"], body["quantity"], idempotency_key(request)
        )
    except Refused as refusal:
        request.app[METRICS].purchase_refused(refusal.sqlstate)
        raise
    request.app[METRICS].purchased(body["quantity"])
    purchase = resource_json(receipt)
    location = request.app.router["purchase"].url_for(id=purchase["id"])
    return web.json_response(purchase, status=201, headers={"Location": str(location)})


@routes.get("/ticket_options/{id}/purchases")
async def list_purchases(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    query = read_query(request, LIST_PURCHASES_QUERY)
    before_created_at, before_id = decode_cursor(query["cursor"]) if query["cursor"] else (OMITTED, OMITTED)
    rows = await call_many(
        request, "list_purchases",
        p_ticket_option_id=option_id, p_limit=query["limit"], p_user_id=query["user_id"],
        p_before_created_at=before_created_at, p_before_id=before_id,
    )
    # A full page may have a next one; the last page is the first that is not full.
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == query["limit"] else None
    return web.json_response({"purchases": [resource_json(row) for row in rows], "next_cursor": next_cursor})


@routes.get("/purchases/{id}", name="purchase")
async def get_purchase(request: web.Request) -> web.Response:
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    row = await call(request, "get_purchase", p_id=purchase_id)
    return web.json_response(resource_json(row))


@routes.post("/purchases/{id}/cancel")
async def cancel_purchase(request: web.Request) -> web.Response:
    require_admin(request)
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    row = await call(request, "cancel_purchase", admin=True, p_id=purchase_id)
    return web.json_response(resource_json(row))


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_JSON, content_type="application/json")
