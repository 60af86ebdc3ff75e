"""POST /ticket_options and GET /ticket_options/{id}."""

import uuid

from .helpers import assert_problem, create_option


async def test_create_returns_201_location_and_the_option(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "desc": "Main hall", "allocation": 100})
    assert response.status == 201
    body = await response.json()
    assert {"id", "name", "desc", "allocation"} <= set(body)
    assert (body["name"], body["desc"], body["allocation"]) == ("Gig", "Main hall", 100)
    uuid.UUID(body["id"])
    assert response.headers["Location"] == f"/ticket_options/{body['id']}"


async def test_desc_is_optional_and_defaults_to_empty(client):
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 1})
    assert response.status == 201
    assert (await response.json())["desc"] == ""


async def test_get_returns_what_was_created(client):
    created = await create_option(client, 7)
    response = await client.get(f"/ticket_options/{created['id']}")
    assert response.status == 200
    assert await response.json() == created


async def test_get_unknown_id_is_404(client):
    body = await assert_problem(
        await client.get(f"/ticket_options/{uuid.uuid4()}"), 404, "/problems/ticket-option-not-found"
    )
    assert "does not exist" in body["detail"]


async def test_get_malformed_id_is_404(client):
    await assert_problem(await client.get("/ticket_options/not-a-uuid"), 404, "/problems/ticket-option-not-found")


async def test_value_rules_from_sql_come_back_as_422_naming_the_field(client):
    cases = [
        ({"name": "   ", "allocation": 1}, "name"),
        ({"name": "x" * 201, "allocation": 1}, "name"),
        ({"name": "Gig", "desc": "d" * 2001, "allocation": 1}, "desc"),
        ({"name": "Gig", "allocation": -1}, "allocation"),
    ]
    for payload, field in cases:
        body = await assert_problem(
            await client.post("/ticket_options", json=payload), 422, "/problems/invalid-argument"
        )
        assert [error["field"] for error in body["errors"]] == [field], payload
    # Nothing was created by any of them.
    created = await create_option(client, 1)
    assert created["allocation"] == 1


async def test_unknown_route_and_wrong_method_are_problems(client):
    await assert_problem(await client.get("/nowhere"), 404)
    response = await client.delete("/ticket_options/x")
    await assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]
