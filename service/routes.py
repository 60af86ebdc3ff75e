"""Routes: each maps a request to one SQL function call (see sql/)."""

import asyncpg
from aiohttp import web

from .auth import require_admin
from .coalescing import Overloaded, Refused
from .db import PURCHASES, call, call_many
from .errors import DATABASE_UNAVAILABLE, PURCHASE_NOT_FOUND, TICKET_OPTION_NOT_FOUND, Problem
from .inputs import Field, path_uuid, read_json_object, read_query
from .metrics import METRICS
from .openapi import OPENAPI_JSON
from .pagination import decode_cursor, encode_cursor

routes = web.RouteTableDef()

TICKET_OPTION_FIELDS = (
    Field("name", "string"),
    Field("desc", "string", required=False, default=""),
    Field("allocation", "integer"),
    Field("max_per_user", "integer", required=False, nullable=True),
)
PURCHASE_FIELDS = (
    Field("quantity", "integer"),
    Field("user_id", "uuid"),
)
LIST_PURCHASES_QUERY = (
    Field("limit", "integer", default=50),
    Field("cursor", "string"),
    Field("user_id", "uuid"),
)


def ticket_option_json(row) -> dict:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "desc": row["desc"],
        "allocation": row["allocation"],
        "sold": row["sold"],
        "max_per_user": row["max_per_user"],
        "created_at": row["created_at"].isoformat(),
    }


def purchase_json(row) -> dict:
    return {
        "id": str(row["id"]),
        "ticket_option_id": str(row["ticket_option_id"]),
        "user_id": str(row["user_id"]),
        "quantity": row["quantity"],
        "status": row["status"],
        "ticket_ids": [str(ticket_id) for ticket_id in row["ticket_ids"]],
        "created_at": row["created_at"].isoformat(),
        "cancelled_at": row["cancelled_at"] and row["cancelled_at"].isoformat(),
    }


def idempotency_key(request: web.Request) -> str | None:
    # Checked in SQL (1..255 printable ASCII), where psql callers meet the same rule.
    return request.headers.get("Idempotency-Key")


@routes.post("/ticket_options")
async def create_ticket_option(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json_object(request, TICKET_OPTION_FIELDS)
    row = await call(
        request,
        "SELECT * FROM create_ticket_option($1, $2, $3, $4, $5)",
        body["name"], body["desc"], body["allocation"], body["max_per_user"], idempotency_key(request),
    )
    option = ticket_option_json(row)
    location = request.app.router["ticket_option"].url_for(id=option["id"])
    return web.json_response(option, status=201, headers={"Location": str(location)})


@routes.get("/ticket_options/{id}", name="ticket_option")
async def get_ticket_option(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    row = await call(request, "SELECT * FROM get_ticket_option($1)", option_id)
    return web.json_response(ticket_option_json(row))


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
    except asyncpg.PostgresError as error:
        if (error.sqlstate or "").startswith("TA"):  # refused for the whole batch (e.g. unknown option)
            request.app[METRICS].purchase_refused(error.sqlstate)
        raise
    except Overloaded as overloaded:
        request.app[METRICS].purchase_shed()
        raise Problem(DATABASE_UNAVAILABLE, f"{overloaded}; retry shortly. Nothing was changed.") from None
    request.app[METRICS].purchased(body["quantity"])
    purchase = purchase_json(receipt)
    location = request.app.router["purchase"].url_for(id=purchase["id"])
    return web.json_response(purchase, status=201, headers={"Location": str(location)})


@routes.get("/ticket_options/{id}/purchases")
async def list_purchases(request: web.Request) -> web.Response:
    option_id = path_uuid(request, "id", TICKET_OPTION_NOT_FOUND)
    query = read_query(request, LIST_PURCHASES_QUERY)
    before = decode_cursor(query["cursor"]) if query["cursor"] else (None, None)
    rows = await call_many(
        request,
        "SELECT * FROM list_purchases($1, $2, $3, $4, $5)",
        option_id, query["limit"], query["user_id"], *before,
    )
    # A full page may have a next one; the last page is the first that is not full.
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == query["limit"] else None
    return web.json_response({"purchases": [purchase_json(row) for row in rows], "next_cursor": next_cursor})


@routes.get("/purchases/{id}", name="purchase")
async def get_purchase(request: web.Request) -> web.Response:
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    row = await call(request, "SELECT * FROM get_purchase($1)", purchase_id)
    return web.json_response(purchase_json(row))


@routes.post("/purchases/{id}/cancel")
async def cancel_purchase(request: web.Request) -> web.Response:
    require_admin(request)
    purchase_id = path_uuid(request, "id", PURCHASE_NOT_FOUND)
    row = await call(request, "SELECT * FROM cancel_purchase($1)", purchase_id)
    return web.json_response(purchase_json(row))


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_JSON, content_type="application/json")
