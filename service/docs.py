"""GET /docs: the contract (GET /openapi.json) as a readable page, with Swagger UI's files served
from its Python package, so the page loads nothing from the internet."""

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

routes = web.RouteTableDef()

# Swagger UI 5 (the package's major version) is the first to render OpenAPI 3.1.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ticket-allocation</title>
  <link rel="icon" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body>
</html>
"""
# Only what PAGE loads: the package also ships Swagger's stock index.html, which loads
# https://petstore.swagger.io/... and would be served under our name.
ASSETS = frozenset({"favicon-32x32.png", "swagger-ui.css", "swagger-ui-bundle.js"})


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@routes.get("/docs/assets/{file}")
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(Path(swagger_ui_path) / name)
