"""Metrics over HTTP: the middleware that counts every answer, and GET /metrics.

The series themselves are service/metrics.py's; the pool gauges' refresher is a cleanup
context (service/lifecycle.py).
"""

import time

from aiohttp import web

from .keys import DB_POOL, HOLDS, METRICS, PURCHASES

# The classic text format, which every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests that matched no route: one label value, not one per path tried.
UNMATCHED_ROUTE = "unmatched"

routes = web.RouteTableDef()


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    started = time.perf_counter()
    # problem_middleware (inside this one) answers every error, so every request is counted.
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED_ROUTE
    request.app[METRICS].request_answered(request.method, route, response.status, time.perf_counter() - started)
    return response


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition(request.app[DB_POOL], request.app[PURCHASES], request.app[HOLDS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
