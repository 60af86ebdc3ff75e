"""Routes of orders (many lines, one outcome) and quotas (capacity shared by options): one SQL call
each (sql/orders.sql, sql/quotas.sql).

Orders are coalesced by the set of options they name (service/coalescing.py): concurrent orders
over the same options go to PostgreSQL as one place_orders_batch call, each still all or nothing.
"""

import asyncpg
from aiohttp import web

from .auth import CALLER, require_admin
from .coalescing import Overloaded
from .db import OMITTED, call
from .errors import DATABASE_UNAVAILABLE, INVALID_ARGUMENT, ORDER_NOT_FOUND, QUOTA_NOT_FOUND, Problem, problem_uri
from .inputs import Field, converted, idempotency_key, path_uuid, read_json_object, read_query, type_error
from .keys import ORDERS
from .responses import json_response
from .routes import NO_QUERY

routes = web.RouteTableDef()

ORDER_FIELDS = (
    Field("user_id", "uuid"),
    Field("lines", "objects"),
    Field("ttl_seconds", "seconds", required=False, default=OMITTED),
)
ORDER_LINE_FIELDS = (Field("ticket_option_id", "uuid"), Field("quantity", "integer"))
QUOTA_FIELDS = (
    Field("name", "string"),
    Field("size", "integer"),
    Field("ticket_option_ids", "uuids"),
)
QUOTA_CHANGES = (
    Field("size", "integer", required=False, default=OMITTED),
    Field("ticket_option_ids", "uuids", required=False, default=OMITTED),
)


def tree(row) -> dict:
    """A resource of the SQL API with resources inside it (an order's lines, purchases and holds),
    as the responses' encoder takes it: records as dicts, all the way down. None of them renames a
    field (a quota's `remaining` is called so; only a ticket option's is `allocation`)."""
    return {name: plain(value) for name, value in row.items()}


def plain(value):
    if isinstance(value, asyncpg.Record):
        return tree(value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def order_lines(lines: list[dict]) -> list[tuple]:
    """The lines as api.order_line values (ticket_option_id, quantity), or a 422 naming every line
    whose shape or types are wrong. Their rules (1 to 50 lines, quantities, each option once) are
    place_order's."""
    known = {field.name for field in ORDER_LINE_FIELDS}
    errors, values = [], []
    for number, line in enumerate(lines, 1):
        for field in ORDER_LINE_FIELDS:
            if field.name not in line:
                reason = f"{field.name} is required"
            elif problem := type_error(field.kind, line[field.name]):
                reason = f"{field.name} {problem}"
            else:
                continue
            errors.append({"line": number, "type": problem_uri(INVALID_ARGUMENT), "detail": reason, "field": field.name})
        errors += [{"line": number, "type": problem_uri(INVALID_ARGUMENT), "field": name,
                    "detail": f"{name} is not a known field of a line (expected: {', '.join(sorted(known))})"}
                   for name in line if name not in known]
        if not errors:
            values.append(tuple(converted(field.kind, line[field.name]) for field in ORDER_LINE_FIELDS))
    if errors:
        numbers = ", ".join(sorted({str(error["line"]) for error in errors}, key=int))
        raise Problem(INVALID_ARGUMENT, f"The order has invalid lines: {numbers}.", errors)
    return values


@routes.post("/orders")
async def place_order(request: web.Request) -> web.Response:
    read_query(request, NO_QUERY)
    key = idempotency_key(request)
    body = await read_json_object(request, ORDER_FIELDS)
    lines = order_lines(body["lines"])
    # Without ttl_seconds, null: bought at once. Only fully checked values join a batch of other
    # buyers' orders; the rest of the rules are place_orders_batch's, per order.
    ttl = None if body["ttl_seconds"] is OMITTED else body["ttl_seconds"]
    options = tuple(sorted({option_id for option_id, _ in lines}))  # the locks it will queue on
    try:
        placed = await request.app[ORDERS].submit_request(
            options, (body["user_id"], lines, ttl, key, request.get(CALLER)),
            tickets=sum(quantity for _, quantity in lines), keyed=key is not None)
    except Overloaded as overloaded:
        raise Problem(DATABASE_UNAVAILABLE, f"{overloaded}; retry shortly. Nothing was changed.") from None
    order = tree(placed)
    location = request.app.router["order"].url_for(id=str(order["id"]))
    return json_response(order, status=201, headers={"Location": str(location)})


@routes.get("/orders/{id}", name="order")
async def get_order(request: web.Request) -> web.Response:
    order_id = path_uuid(request, "id", ORDER_NOT_FOUND)
    read_query(request, NO_QUERY)
    return json_response(tree(await call(request, "get_order", p_id=order_id)))


@routes.post("/orders/{id}/confirm")
async def confirm_order(request: web.Request) -> web.Response:
    order_id = path_uuid(request, "id", ORDER_NOT_FOUND)
    read_query(request, NO_QUERY)
    confirmation = await call(request, "confirm_order", p_id=order_id)
    order = tree(confirmation["order"])
    if not confirmation["created"]:  # bought before: the same order, nothing more bought
        return json_response(order)
    location = request.app.router["order"].url_for(id=str(order["id"]))
    return json_response(order, status=201, headers={"Location": str(location)})


@routes.post("/orders/{id}/release")
async def release_order(request: web.Request) -> web.Response:
    order_id = path_uuid(request, "id", ORDER_NOT_FOUND)
    read_query(request, NO_QUERY)
    return json_response(tree(await call(request, "release_order", p_id=order_id)))


@routes.post("/orders/{id}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    require_admin(request)
    order_id = path_uuid(request, "id", ORDER_NOT_FOUND)
    read_query(request, NO_QUERY)
    return json_response(tree(await call(request, "cancel_order", admin=True, p_id=order_id)))


@routes.post("/quotas")
async def create_quota(request: web.Request) -> web.Response:
    require_admin(request)
    read_query(request, NO_QUERY)
    body = await read_json_object(request, QUOTA_FIELDS)
    row = await call(request, "create_quota", admin=True,
                     p_name=body["name"], p_size=body["size"], p_ticket_option_ids=body["ticket_option_ids"])
    quota = tree(row)
    location = request.app.router["quota"].url_for(id=str(quota["id"]))
    return json_response(quota, status=201, headers={"Location": str(location)})


@routes.get("/quotas/{id}", name="quota")
async def get_quota(request: web.Request) -> web.Response:
    require_admin(request)
    quota_id = path_uuid(request, "id", QUOTA_NOT_FOUND)
    read_query(request, NO_QUERY)
    return json_response(tree(await call(request, "get_quota", admin=True, p_id=quota_id)))


@routes.patch("/quotas/{id}")
async def update_quota(request: web.Request) -> web.Response:
    require_admin(request)
    quota_id = path_uuid(request, "id", QUOTA_NOT_FOUND)
    read_query(request, NO_QUERY)
    body = await read_json_object(request, QUOTA_CHANGES)
    row = await call(request, "update_quota", admin=True, p_id=quota_id, p_size=body["size"],
                     p_ticket_option_ids=body["ticket_option_ids"])
    return json_response(tree(row))
