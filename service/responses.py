"""JSON responses, and reads that a browser, a proxy or a CDN may keep (ETag, If-None-Match,
Cache-Control).

JSON is encoded with orjson: UUIDs and timestamps natively, several times faster than the
json module (bench/: a read's answer in about a fifth of the time), the same JSON up to spaces.

A GET of a resource (a ticket option, ...) answers its JSON with a strong ETag, a digest of
those very bytes: any change to any field changes it, an unchanged resource keeps it (whatever
changed it: a purchase, a hold, or a hold's expiry, which no write records). A request whose
If-None-Match names it (or is `*`) gets 304 Not Modified without the body. The database is read
either way: a 304 saves the transfer and the encoding, not the call.

Cache-Control is CACHE_CONTROL (service/config.py, default DEFAULT_CACHE_CONTROL): how long a
cache may answer from its copy without asking. `no-store` turns caching off, ETags stay.
"""

import hashlib
import uuid

import orjson
from aiohttp import web

from .keys import SETTINGS

JSON_CONTENT_TYPE = "application/json"


def json_bytes(data) -> bytes:
    """`data` (dicts, lists, strings, numbers, UUIDs, timestamps) as JSON."""
    return orjson.dumps(data, default=uuid_text)


def uuid_text(value) -> str:
    # orjson encodes uuid.UUID itself, but not its subclasses, such as asyncpg's.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    """`data` (see json_bytes) as an application/json response."""
    return web.Response(body=json_bytes(data), status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def etag_of(body: bytes) -> str:
    """The strong ETag of a representation: 128 bits of its BLAKE2b digest, quoted."""
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def cacheable_json(request: web.Request, data) -> web.Response:
    """200 with `data` as JSON, its ETag and the server's Cache-Control; or 304 Not Modified when
    the request's If-None-Match names that ETag (weak comparison, RFC 9110 section 13.1.2) or is *."""
    body = json_bytes(data)
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": request.app[SETTINGS].cache_control}
    if request.headers.get("If-None-Match") is not None and not_modified(request, etag[1:-1]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers, content_type=JSON_CONTENT_TYPE)


def not_modified(request: web.Request, opaque_tag: str) -> bool:
    # aiohttp parses the list (W/ prefixes, `*`); what it cannot parse matches nothing.
    return any(tag.value in (opaque_tag, "*") for tag in request.if_none_match or ())
