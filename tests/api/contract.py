"""Checks responses against the OpenAPI contract (service/openapi.yaml)."""

import json

from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker

from service.openapi import OPENAPI


def response_schema(path: str, method: str, status: int) -> dict | None:
    """The JSON schema the spec gives for this response, or None if the spec has no such response."""
    operation = OPENAPI["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    response = operation["responses"].get(str(status))
    if response is None:
        return None
    if "$ref" in response:
        response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    if "content" not in response:  # any body (e.g. a static file)
        return {}
    (content,) = response["content"].values()
    # Refs inside the schema are "#/components/...": give it the spec's components as its root.
    return {**content["schema"], "components": OPENAPI["components"]}


def violations(path: str, method: str, response: web.StreamResponse) -> list[str]:
    if method == "HEAD":
        return []
    schema = response_schema(path, method, response.status)
    if schema is None:
        return [f"{method} {path} answered {response.status}, which the spec does not list"]
    if schema == {}:
        return []
    operation = OPENAPI["paths"][path][method.lower()]
    ref = operation["responses"][str(response.status)]
    media_types = OPENAPI["components"]["responses"][ref["$ref"].rsplit("/", 1)[1]]["content"] if "$ref" in ref \
        else ref["content"]
    # Parameters (e.g. text/plain; version=0.0.4) are not compared.
    if response.content_type not in {media_type.split(";")[0] for media_type in media_types}:
        return [f"{method} {path} {response.status}: content type {response.content_type} not in the spec"]
    body = json.loads(response.body) if response.content_type.endswith("json") else response.body.decode()
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return [f"{method} {path} {response.status}: {error.message}" for error in validator.iter_errors(body)]


def contract_middleware(found: list[str]):
    """Records, in `found`, how each response answered by a spec'd route breaks the spec."""

    @web.middleware
    async def check(request: web.Request, handler):
        response = await handler(request)
        resource = request.match_info.route.resource
        if resource is not None:  # None: no route matched (a plain 404/405)
            found.extend(violations(resource.canonical, request.method, response))
        return response

    return check
