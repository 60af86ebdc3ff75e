"""Routes of the event feed and the webhook subscriptions (admin): one SQL call each (sql/events.sql,
sql/webhooks.sql), but for the destination check of a new webhook, which needs DNS."""

import json

from aiohttp import web

from .auth import require_admin
from .db import OMITTED, call, call_many
from .errors import INVALID_ARGUMENT, WEBHOOK_NOT_FOUND, Problem
from .inputs import Field, path_uuid, read_json_object, read_query
from .keys import SETTINGS
from .routes import NO_QUERY, resource_json
from .destinations import DestinationRefused, check_destination

routes = web.RouteTableDef()

# Where a reader starts: before every event kept (sql/events.sql event_cursor).
FEED_START = "0-0"
EVENTS_QUERY = (
    Field("after", "string", default=OMITTED),
    Field("limit", "integer", default=OMITTED),
    Field("types", "string", default=OMITTED),
)
WEBHOOK_FIELDS = (
    Field("url", "string"),
    Field("types", "strings", required=False, default=OMITTED),
    Field("description", "string", required=False, default=OMITTED),
)
DELIVERIES_QUERY = (Field("limit", "integer", default=OMITTED),)


@routes.get("/events")
async def list_events(request: web.Request) -> web.Response:
    require_admin(request)
    query = read_query(request, EVENTS_QUERY)
    types = OMITTED if query["types"] is OMITTED else [t.strip() for t in query["types"].split(",")]
    rows = await call_many(request, "events_after", admin=True,
                           p_cursor=query["after"], p_limit=query["limit"], p_types=types)
    after = query["after"] if query["after"] is not OMITTED else FEED_START
    body = "[" + ",".join(event_body(row) for row in rows) + "]"
    next_cursor = rows[-1]["cursor"] if rows else after
    return web.Response(text=f'{{"events": {body}, "next_cursor": {json.dumps(next_cursor)}}}',
                        content_type="application/json")


def event_body(row) -> str:
    # data is jsonb text from PostgreSQL: embedded as is rather than parsed and re-encoded.
    head = resource_json({name: row[name] for name in ("id", "type", "occurred_at")})
    return json.dumps(head)[:-1] + f', "data": {row["data"]}}}'


@routes.post("/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    require_admin(request)
    read_query(request, NO_QUERY)
    body = await read_json_object(request, WEBHOOK_FIELDS)
    url = body["url"]
    if url.lower().startswith(("http://", "https://")):  # anything else: refused by the SQL rule
        try:
            await check_destination(url, request.app[SETTINGS].webhooks.allowed_networks)
        except DestinationRefused as refused:
            raise Problem(INVALID_ARGUMENT, f"url {refused}", [{"field": "url", "message": f"url {refused}"}])
    row = await call(request, "create_webhook", admin=True,
                     p_url=url, p_types=body["types"], p_description=body["description"])
    hook = resource_json(row)
    location = request.app.router["webhook"].url_for(id=hook["id"])
    return web.json_response(hook, status=201, headers={"Location": str(location)})


@routes.get("/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    require_admin(request)
    read_query(request, NO_QUERY)
    rows = await call_many(request, "list_webhooks", admin=True)
    return web.json_response({"webhooks": [resource_json(row) for row in rows]})


@routes.get("/webhooks/{id}", name="webhook")
async def get_webhook(request: web.Request) -> web.Response:
    require_admin(request)
    webhook_id = path_uuid(request, "id", WEBHOOK_NOT_FOUND)
    read_query(request, NO_QUERY)
    return web.json_response(resource_json(await call(request, "get_webhook", admin=True, p_id=webhook_id)))


@routes.delete("/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    require_admin(request)
    webhook_id = path_uuid(request, "id", WEBHOOK_NOT_FOUND)
    read_query(request, NO_QUERY)
    await call(request, "delete_webhook", admin=True, p_id=webhook_id)
    return web.Response(status=204)


@routes.get("/webhooks/{id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    require_admin(request)
    webhook_id = path_uuid(request, "id", WEBHOOK_NOT_FOUND)
    query = read_query(request, DELIVERIES_QUERY)
    rows = await call_many(request, "list_webhook_deliveries", admin=True, p_id=webhook_id, p_limit=query["limit"])
    return web.json_response({"deliveries": [resource_json(row) for row in rows]})
