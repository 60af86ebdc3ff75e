"""Bearer tokens.

API_TOKENS: when set, every route but the operations and docs routes needs
`Authorization: Bearer <an API token or the admin token>`. ADMIN_TOKEN: when
set, admin routes need `Authorization: Bearer <the admin token>`. Tokens are
compared in constant time and never logged.
"""

import hashlib
import hmac

from aiohttp import web

from .errors import FORBIDDEN, UNAUTHORIZED, Problem
from .keys import SETTINGS

# The request's caller, for idempotency key scopes: a digest of its token, None when open.
CALLER = web.RequestKey("caller", str)
# Routes for operators and readers of the contract, open even with API_TOKENS.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})
OPEN_PREFIXES = ("/docs/",)


def bearer_token(request: web.Request) -> bytes | None:
    """The Authorization header's bearer token as sent (bytes, so any header is comparable), or None.
    Two Authorization headers are refused (401): a proxy in front may check the other one."""
    if len(request.headers.getall("Authorization", ())) > 1:
        raise Problem(UNAUTHORIZED, "Authorization is given more than once: send one bearer token.",
                      headers={"WWW-Authenticate": 'Bearer realm="ticket-allocation"'})
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives back the bytes sent.
    return given.encode("utf-8", "surrogateescape")


def _same(given: bytes, token: str) -> bool:
    # Constant time: the comparison must not tell how much of a guess was right.
    return hmac.compare_digest(given, token.encode())


def caller_of(token: str) -> str:
    """The caller's name in idempotency key scopes: a digest, so the token is not stored."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def require_admin(request: web.Request) -> None:
    """Raises 401 without a bearer token, 403 with the wrong one; passes when no token is configured."""
    expected = request.app[SETTINGS].admin_token
    if expected is None:
        return
    given = bearer_token(request)
    if given is None:
        raise Problem(
            UNAUTHORIZED,
            "This route is for administrators: send Authorization: Bearer <the server's ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="ticket-allocation admin"'},
        )
    if not _same(given, expected):
        raise Problem(FORBIDDEN, "The bearer token is not the admin token.")


def _matching_token(given: bytes, tokens: tuple[str, ...]) -> str | None:
    # Every token is compared, so the time taken does not tell which one came close.
    matches = [token for token in tokens if _same(given, token)]
    return matches[0] if matches else None


@web.middleware
async def api_token_middleware(request: web.Request, handler):
    tokens = request.app[SETTINGS].api_tokens
    if not tokens or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
        return await handler(request)
    given = bearer_token(request)
    if given is None:
        raise Problem(
            UNAUTHORIZED,
            "Send Authorization: Bearer <an API token> (this server has API_TOKENS set).",
            headers={"WWW-Authenticate": 'Bearer realm="ticket-allocation"'},
        )
    admin_token = request.app[SETTINGS].admin_token
    token = _matching_token(given, tokens + ((admin_token,) if admin_token else ()))
    if token is None:
        raise Problem(FORBIDDEN, "The bearer token is not one of this server's API tokens.")
    request[CALLER] = caller_of(token)
    return await handler(request)
