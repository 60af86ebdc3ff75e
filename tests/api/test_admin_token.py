"""With ADMIN_TOKEN, creating options and cancelling purchases need it; buying and reading never do."""

import uuid

import pytest

from service.openapi import OPENAPI, admin_operations

from ..people import USER
from .helpers import assert_problem, raw_request

TOKEN = "s3cret-admin-token"


@pytest.fixture
def admin_token():
    return TOKEN


ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def test_creating_an_option_needs_the_token(client):
    payload = {"name": "Gig", "allocation": 5}
    response = await client.post("/ticket_options", json=payload)
    await assert_problem(response, 401, "/problems/unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer"):
        response = await client.post("/ticket_options", json=payload, headers={"Authorization": wrong})
        await assert_problem(response, 401 if wrong in (f"Basic {TOKEN}", "Bearer") else 403)
    created = await client.post("/ticket_options", json=payload, headers=ADMIN)
    assert created.status == 201


async def test_buying_and_reading_stay_open_and_cancelling_needs_the_token(client):
    option = await (await client.post("/ticket_options", json={"name": "Gig", "allocation": 5}, headers=ADMIN)).json()
    bought = await client.post(f"/ticket_options/{option['id']}/purchases", json={"quantity": 2, "user_id": USER})
    assert bought.status == 201
    purchase = await bought.json()
    assert (await client.get(f"/ticket_options/{option['id']}")).status == 200
    assert (await client.get(f"/purchases/{purchase['id']}")).status == 200
    assert (await client.get(f"/ticket_options/{option['id']}/purchases")).status == 200
    await assert_problem(await client.post(f"/purchases/{purchase['id']}/cancel"), 401, "/problems/unauthorized")
    await assert_problem(await client.post(f"/purchases/{purchase['id']}/cancel",
                                           headers={"Authorization": "Bearer guess"}), 403, "/problems/forbidden")
    assert (await (await client.get(f"/purchases/{purchase['id']}")).json())["status"] == "active"
    cancelled = await client.post(f"/purchases/{purchase['id']}/cancel", headers=ADMIN)
    assert cancelled.status == 200


async def test_a_token_that_is_not_ascii_is_refused_not_a_crash(client):
    for token in (b"\xff", b"caf\xc3\xa9", TOKEN.encode() + b"\xff"):
        status, headers, body = await raw_request(
            client, "POST", "/ticket_options", {"Authorization": b"Bearer " + token, "Content-Type": b"application/json"},
            b'{"name": "Gig", "allocation": 5}',
        )
        assert status == 403 and headers["content-type"].startswith("application/problem+json"), body


async def test_exactly_the_operations_the_contract_marks_admin_require_the_token(client):
    """admin_operations() (the start-up warning without ADMIN_TOKEN names them) is what the routes do."""
    some_id = str(uuid.uuid4())
    admin = set(admin_operations())
    assert {"POST /ticket_options", "POST /purchases/{id}/cancel", "GET /events", "POST /webhooks",
            "DELETE /webhooks/{id}"} <= admin
    for path, item in OPENAPI["paths"].items():
        for method in item:
            response = await client.request(method.upper(), path.replace("{id}", some_id), json={})
            if f"{method.upper()} {path}" in admin:
                await assert_problem(response, 401, "/problems/unauthorized")
            else:
                assert response.status != 401, (method, path)
