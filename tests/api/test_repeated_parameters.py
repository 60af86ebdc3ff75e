"""A query parameter or an Idempotency-Key header given twice: 422 naming it, on every route, and
nothing done. A proxy or framework in front may read the first while we would read the last."""

import asyncio
import uuid

import pytest
from multidict import CIMultiDict

from ..people import USER
from .helpers import assert_problem, create_option

TWO_KEYS = CIMultiDict([("Idempotency-Key", "k-a"), ("Idempotency-Key", "k-b")])
# Two headers as a proxy may pass them on: joined into one with a comma (RFC 9110, 5.3).
JOINED_KEYS = {"Idempotency-Key": "k-a, k-b"}


async def webhook_id(conn) -> str:
    # Through SQL: the test app allows no webhook destination on this machine.
    return str(await conn.fetchval("SELECT id FROM create_webhook('https://example.com/hook')"))


# (path, the parameter given twice, the rest of the query string)
REPEATED = [
    ("/ticket_options/{option}/purchases", "limit", "limit=1&limit=2"),
    ("/ticket_options/{option}/purchases", "limit", "limit=1&limit=1"),
    ("/ticket_options/{option}/purchases", "user_id", f"user_id={USER}&user_id={uuid.uuid4()}"),
    ("/ticket_options/{option}/purchases", "cursor", "cursor=x&cursor=y"),
    ("/events", "after", "after=0-0&after=0-0"),
    ("/events", "limit", "limit=1&limit=2"),
    ("/events", "types", "types=purchase.created&types=hold.created"),
    ("/webhooks/{webhook}/deliveries", "limit", "limit=1&limit=2"),
]


@pytest.mark.parametrize(("path", "name", "query"), REPEATED)
async def test_a_query_parameter_given_twice_is_422_naming_it(client, conn, path, name, query):
    option = await create_option(client)
    url = path.format(option=option["id"], webhook=await webhook_id(conn) if "{webhook}" in path else None)
    body = await assert_problem(await client.get(f"{url}?{query}"), 422, "/problems/invalid-argument")
    assert body["errors"] == [{"field": name, "message": f"{name} is given more than once"}]
    assert body["detail"] == f"{name} is given more than once"


async def test_an_unknown_parameter_given_twice_is_named_once(client):
    option = await create_option(client)
    body = await assert_problem(
        await client.get(f"/ticket_options/{option['id']}?fields=a&fields=b"), 422, "/problems/invalid-argument")
    assert [error["field"] for error in body["errors"]] == ["fields"]


def posts(option_id):
    """Every route that takes an Idempotency-Key, with a valid body."""
    return [
        ("/ticket_options", {"name": "Gig", "allocation": 5}),
        (f"/ticket_options/{option_id}/purchases", {"quantity": 1, "user_id": USER}),
        (f"/ticket_options/{option_id}/holds", {"quantity": 1, "user_id": USER}),
    ]


@pytest.mark.parametrize("headers", [TWO_KEYS, JOINED_KEYS], ids=["two headers", "joined by a proxy"])
async def test_two_idempotency_keys_are_422_on_every_route_and_change_nothing(client, conn, headers):
    option = await create_option(client, allocation=5)
    options_before = await conn.fetchval("SELECT count(*) FROM ticket_options")
    for path, body in posts(option["id"]):
        # First with one of the keys alone: the second request must not be taken for a new one.
        assert (await client.post(path, json=body, headers={"Idempotency-Key": "k-a"})).status == 201
        problem = await assert_problem(
            await client.post(path, json=body, headers=headers), 422, "/problems/invalid-argument")
        assert [error["field"] for error in problem["errors"]] == ["idempotency_key"]
        if headers is TWO_KEYS:
            assert problem["detail"] == "idempotency_key is given more than once"
    assert await conn.fetchval("SELECT count(*) FROM ticket_options") == options_before + 1
    now = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (now["sold"], now["held"]) == (1, 1)


async def test_repeated_parameters_in_a_burst_fail_alone(client, conn):
    """300 concurrent purchases of one option, every 10th sent with two keys (as two headers or as
    a proxy joins them) or a list read with a repeated limit: each bad one 422, every other 201."""
    option = await create_option(client, allocation=1000)
    url = f"/ticket_options/{option['id']}/purchases"

    async def good(n):
        response = await client.post(url, json={"quantity": 1, "user_id": str(uuid.uuid4())},
                                     headers={"Idempotency-Key": f"good-{n}"})
        return response.status

    async def bad(n):
        kind = (n // 10) % 3
        if kind == 2:
            return (await client.get(f"{url}?limit=1&limit=2")).status
        headers = TWO_KEYS if kind == 0 else JOINED_KEYS
        return (await client.post(url, json={"quantity": 1, "user_id": str(uuid.uuid4())}, headers=headers)).status

    statuses = await asyncio.gather(*(bad(n) if n % 10 == 0 else good(n) for n in range(300)))
    assert [s for n, s in enumerate(statuses) if n % 10 == 0] == [422] * 30
    assert [s for n, s in enumerate(statuses) if n % 10] == [201] * 270
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["sold"] == 270
    assert await conn.fetch("SELECT * FROM check_consistency()") == []
