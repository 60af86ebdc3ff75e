"""The admin token: when ADMIN_TOKEN is set, admin routes need `Authorization: Bearer <token>`."""

import hmac

from aiohttp import web

from .errors import FORBIDDEN, UNAUTHORIZED, Problem

ADMIN_TOKEN = web.AppKey("admin_token", str)


def require_admin(request: web.Request) -> None:
    """Raises 401 without a bearer token, 403 with the wrong one; passes when no token is configured."""
    expected = request.app.get(ADMIN_TOKEN)
    if expected is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Problem(
            UNAUTHORIZED,
            "This route is for administrators: send Authorization: Bearer <the server's ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="ticket-allocation admin"'},
        )
    # Constant time: the comparison must not tell how much of a guess was right.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Problem(FORBIDDEN, "The bearer token is not the admin token.")
