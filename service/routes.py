"""Routes: each maps a request to one SQL function call (see sql/)."""

from aiohttp import web

from .bodies import Field, path_uuid, read_json_object
from .db import call
from .errors import TICKET_OPTION_NOT_FOUND

routes = web.RouteTableDef()

TICKET_OPTION_FIELDS = (
    Field("name", "string"),
    Field("desc", "string", required=False, default=""),
    Field("allocation", "integer"),
)
PURCHASE_FIELDS = (
    Field("quantity", "integer"),
    Field("user_id", "uuid"),
)


def ticket_option_json(row) -> dict:
    return {"id": str(row["id"]), "name": row["name"], "desc": row["desc"], "allocation": row["allocation"]}


def purchase_json(row) -> dict:
    return {
        "id": str(row["id"]),
        "ticket_option_id": str(row["ticket_option_id"]),
        "user_id": str(row["user_id"]),
        "quantity": row["quantity"],
        "ticket_ids": [str(ticket_id) for ticket_id in row["ticket_ids"]],
        "created_at": row["created_at"].isoformat(),
    }


@routes.post("/ticket_options")
async def create_ticket_option(request: web.Request) -> web.Response:
    body = await read_json_object(request, TICKET_OPTION_FIELDS)
    row = await call(
        request, "SELECT * FROM create_ticket_option($1, $2, $3)", body["name"], body["desc"], body["allocation"]
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
    row = await call(
        request, "SELECT * FROM purchase_tickets($1, $2, $3)", option_id, body["user_id"], body["quantity"]
    )
    return web.json_response(purchase_json(row), status=201)
