"""Integers out of range, however far: one clear 422 per field on every route, never Python's own
words (a 5,000-digit number meets sys.set_int_max_str_digits), and nothing changed."""

import json

import pytest

from ..people import USER
from .helpers import assert_problem, create_option

JSON = {"Content-Type": "application/json"}
HUGE = "9" * 5000  # as a JSON or query-string literal
# Literals out of the 32-bit range of the SQL parameters, near and far.
OUT_OF_RANGE = [str(2**31), str(-(2**31) - 1), HUGE, "-" + HUGE]
RANGE_MESSAGE = "is out of range: whole numbers here are 32-bit, from -2147483648 to 2147483647"


def body_with(fields: dict, name: str, literal: str) -> str:
    """`fields` as JSON, with `name` set to the integer literal as it is written."""
    return json.dumps({**fields, name: 0}).replace(f'"{name}": 0', f'"{name}": {literal}')


def assert_one_clear_error(body: dict, name: str, message: str) -> None:
    assert body["errors"] == [{"field": name, "message": f"{name} {message}"}]
    assert body["detail"] == f"{name} {message}"
    assert "digits" not in json.dumps(body)


# (path of a POST, its valid body, the integer field to spoil)
def bodies(option_id):
    return [
        ("/ticket_options", {"name": "Gig", "allocation": 5}, "allocation"),
        ("/ticket_options", {"name": "Gig", "allocation": 5}, "max_per_user"),
        (f"/ticket_options/{option_id}/purchases", {"quantity": 1, "user_id": USER}, "quantity"),
        (f"/ticket_options/{option_id}/holds", {"quantity": 1, "user_id": USER}, "quantity"),
    ]


@pytest.mark.parametrize("literal", OUT_OF_RANGE, ids=["2**31", "-2**31-1", "5000 digits", "-5000 digits"])
async def test_an_out_of_range_integer_field_is_one_clear_422(client, conn, literal):
    option = await create_option(client, allocation=5)
    options = await conn.fetchval("SELECT count(*) FROM ticket_options")
    for path, fields, name in bodies(option["id"]):
        response = await client.post(path, data=body_with(fields, name, literal), headers=JSON)
        assert_one_clear_error(await assert_problem(response, 422, "/problems/invalid-argument"), name, RANGE_MESSAGE)
    assert await conn.fetchval("SELECT count(*) FROM ticket_options") == options
    now = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (now["sold"], now["held"]) == (0, 0)


async def test_each_out_of_range_field_is_named(client):
    body = json.dumps({"name": "Gig"})[:-1] + f', "allocation": {HUGE}, "max_per_user": -{HUGE}}}'
    problem = await assert_problem(await client.post("/ticket_options", data=body, headers=JSON), 422)
    assert problem["errors"] == [{"field": "allocation", "message": f"allocation {RANGE_MESSAGE}"},
                                 {"field": "max_per_user", "message": f"max_per_user {RANGE_MESSAGE}"}]
    assert problem["detail"] == f"allocation {RANGE_MESSAGE}; max_per_user {RANGE_MESSAGE}"


@pytest.mark.parametrize("literal", ["86401", "0", "-5", str(2**31), str(-(2**31) - 1), HUGE, "-" + HUGE])
async def test_every_out_of_range_ttl_gets_the_message_of_its_rule(client, conn, literal):
    """ttl_seconds is sent as an interval: the SQL rule (1 second to 1 day) judges every value."""
    option = await create_option(client, allocation=5)
    response = await client.post(f"/ticket_options/{option['id']}/holds", headers=JSON,
                                 data=body_with({"quantity": 1, "user_id": USER}, "ttl_seconds", literal))
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert_one_clear_error(body, "ttl_seconds", "must be from 1 second to 1 day")
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["held"] == 0


@pytest.mark.parametrize("literal", OUT_OF_RANGE, ids=["2**31", "-2**31-1", "5000 digits", "-5000 digits"])
async def test_an_out_of_range_limit_is_one_clear_422_on_every_list(client, conn, literal):
    option = await create_option(client)
    hook = await conn.fetchval("SELECT id FROM create_webhook('https://example.com/hook')")
    for path in (f"/ticket_options/{option['id']}/purchases", "/events", f"/webhooks/{hook}/deliveries"):
        response = await client.get(f"{path}?limit={literal}")
        assert_one_clear_error(await assert_problem(response, 422, "/problems/invalid-argument"), "limit",
                               RANGE_MESSAGE)
