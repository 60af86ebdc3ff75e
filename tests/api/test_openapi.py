"""The OpenAPI contract: served, complete, and able to catch a breach."""

from aiohttp import web

from service.app import create_app
from service.openapi import OPENAPI

from ..apps import app_settings

from .contract import violations


def registered_operations(app) -> set[tuple[str, str]]:
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD"
    }


def test_every_route_is_in_the_spec_and_every_operation_is_served():
    app = create_app(app_settings("postgresql://unused"))
    in_spec = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert registered_operations(app) == in_spec


async def test_spec_is_served_as_json(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert await response.json() == OPENAPI
    assert OPENAPI["openapi"].startswith("3.1")


def test_the_contract_check_catches_a_wrong_body_and_an_unlisted_status():
    wrong = web.json_response({"id": "not-a-uuid", "name": "Gig"})
    assert violations("/ticket_options/{id}", "GET", wrong)
    unlisted = web.json_response({}, status=418)
    assert violations("/ticket_options/{id}", "GET", unlisted)
    problem_as_json = web.json_response({"type": "x", "title": "t", "status": 404}, status=404)
    assert violations("/ticket_options/{id}", "GET", problem_as_json)


async def test_docs_serve_only_their_own_page_and_its_assets(client):
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert (await client.get(f"/docs/assets/{asset}")).status == 200
    # The package's stock page loads https://petstore.swagger.io/...: not ours to serve.
    for other in ("index.html", "swagger-initializer.js", "..%2F__init__.py"):
        response = await client.get(f"/docs/assets/{other}")
        assert response.status == 404, other
    assert "petstore" not in await (await client.get("/docs")).text()
