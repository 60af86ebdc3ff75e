"""With API_TOKENS, every API route needs a bearer token (an API token or the admin token); the
operations and docs routes stay open. Idempotency keys belong to the caller that used them."""

import asyncio
import uuid

import pytest

from ..people import USER
from .helpers import answer, assert_problem, buy, create_option, raw_request

TOKENS = ("integrator-one-token", "integrator-two-token")
ADMIN_TOKEN = "s3cret-admin-token"
ONE, TWO = ({"Authorization": f"Bearer {token}"} for token in TOKENS)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api_tokens():
    return TOKENS


@pytest.fixture
def admin_token():
    return ADMIN_TOKEN


async def test_every_api_route_needs_a_token(client):
    option = await create_option(client, headers=ADMIN)
    bought = await buy(client, option["id"], headers=ONE)
    assert bought.status == 201
    purchase = await bought.json()
    routes = [  # with a good token: this status
        ("GET", f"/ticket_options/{option['id']}", None, 200),
        ("POST", f"/ticket_options/{option['id']}/purchases", {"quantity": 1, "user_id": USER}, 201),
        ("GET", f"/ticket_options/{option['id']}/purchases", None, 200),
        ("GET", f"/purchases/{purchase['id']}", None, 200),
        ("GET", f"/purchases/{uuid.uuid4()}", None, 404),
        ("GET", "/no/such/route", None, 404),
    ]
    for method, path, body, status in routes:
        response = await client.request(method, path, json=body)
        await assert_problem(response, 401, "/problems/unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Bearer {TOKENS[0]}x"):
            response = await client.request(method, path, json=body, headers={"Authorization": wrong})
            await assert_problem(response, 403, "/problems/forbidden")
        for good in (ONE, TWO, ADMIN):
            assert (await client.request(method, path, json=body, headers=good)).status == status
    assert (await (await client.get(f"/ticket_options/{option['id']}", headers=TWO)).json())["sold"] == 4


async def test_admin_routes_still_need_the_admin_token(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 1}, headers=ONE)
    await assert_problem(response, 403, "/problems/forbidden")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json",
                                  "/docs/assets/swagger-ui.css"])
async def test_operations_and_docs_stay_open(client, path):
    assert (await client.get(path)).status == 200


async def test_a_token_that_is_not_ascii_is_403(client):
    status, headers, _ = await raw_request(client, "GET", f"/purchases/{uuid.uuid4()}",
                                           {"Authorization": b"Bearer \xff\xfe"})
    assert status == 403 and headers["content-type"].startswith("application/problem+json")


async def test_two_callers_cannot_collide_on_an_idempotency_key(client):
    """The README's key, used first by another integrator (or another buyer), does not block its owner."""
    option = await create_option(client, headers=ADMIN)
    other_user = str(uuid.uuid4())

    async def buy_as(headers, user_id, quantity):
        status, _, body = await answer(buy(client, option["id"], quantity, user_id=user_id, key="order-7f3a", headers=headers))
        return status, body

    # Concurrently, as two integrators' backends would; none waits for or sees the others.
    outcomes = await asyncio.gather(buy_as(ONE, USER, 1), buy_as(TWO, USER, 2), buy_as(ONE, other_user, 3))
    assert [status for status, _ in outcomes] == [201, 201, 201]
    assert len({purchase["id"] for _, purchase in outcomes}) == 3
    # Each caller's retry replays its own purchase.
    assert (await buy_as(TWO, USER, 2))[1]["id"] == outcomes[1][1]["id"]
    assert (await buy_as(ONE, USER, 1))[1]["id"] == outcomes[0][1]["id"]


@pytest.mark.parametrize("second", [TOKENS[0], "not-a-token"])
async def test_two_authorization_headers_are_refused(client, second):
    # A proxy in front may check one header and this service the other: neither is trusted.
    option = await create_option(client, headers=ADMIN)
    for path in (f"/ticket_options/{option['id']}", f"/ticket_options/{option['id']}/purchases"):
        status, headers, body = await raw_request(
            client, "GET", path, {"Authorization": f"Bearer {TOKENS[0]}".encode(), "authorization": f"Bearer {second}".encode()})
        assert status == 401 and b"given more than once" in body
    status, _, body = await raw_request(
        client, "POST", "/ticket_options", {"Authorization": f"Bearer {ADMIN_TOKEN}".encode(),
                                            "authorization": f"Bearer {ADMIN_TOKEN}".encode(),
                                            "Content-Type": b"application/json"}, b'{"name": "Gig", "allocation": 1}')
    assert status == 401 and b"given more than once" in body
