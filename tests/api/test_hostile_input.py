"""Input a careless or unfriendly client sends: always its own 4xx, never a 5xx, never a neighbour's failure."""

import asyncio
import base64
import json
import uuid

import asyncpg
import pytest

from service.keys import PURCHASES

from ..people import USER
from .helpers import assert_problem, create_option, raw_request

# user_id spellings uuid.UUID() takes and asyncpg cannot encode.
NON_CANONICAL_UUIDS = [f"{{{USER}}}", f"urn:uuid:{USER}", f"{USER}-", USER.replace("-", "")]


def purchase_body(user_id=None, quantity=1) -> bytes:
    return json.dumps({"quantity": quantity, "user_id": user_id or str(uuid.uuid4())}).encode()


async def raw_purchase(client, option_id, key: bytes) -> int:
    status, _, _ = await raw_request(
        client, "POST", f"/ticket_options/{option_id}/purchases",
        {"Content-Type": b"application/json", "Idempotency-Key": key}, purchase_body(),
    )
    return status


async def check_books(conn):
    assert await conn.fetch("SELECT * FROM check_consistency()") == []


async def test_bad_requests_in_a_burst_fail_alone(client, conn):
    """400 concurrent purchases of one option, every 20th bad: each bad one 422, every other 201."""
    option = await create_option(client, allocation=1000)

    async def good(n):
        response = await client.post(
            f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": str(uuid.uuid4())},
            headers={"Idempotency-Key": f"good-{n}"},
        )
        return response.status

    async def bad(n):
        kind = (n // 20) % (len(NON_CANONICAL_UUIDS) + 1)
        if kind == len(NON_CANONICAL_UUIDS):  # a key that is not UTF-8
            return await raw_purchase(client, option["id"], b"\xff" + str(n).encode())
        response = await client.post(
            f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": NON_CANONICAL_UUIDS[kind]}
        )
        return response.status

    statuses = await asyncio.gather(*(bad(n) if n % 20 == 0 else good(n) for n in range(400)))
    assert [s for n, s in enumerate(statuses) if n % 20 == 0] == [422] * 20
    assert [s for n, s in enumerate(statuses) if n % 20] == [201] * 380
    got = await client.get(f"/ticket_options/{option['id']}")
    assert (await got.json())["sold"] == 380
    await check_books(conn)


async def test_a_batch_isolates_a_value_it_cannot_encode(client, conn):
    """Defence behind the input checks: one unencodable request in a batch fails alone."""
    option = await create_option(client, allocation=100)
    option_id = uuid.UUID(option["id"])
    purchases = client.app[PURCHASES]
    users = [uuid.uuid4() for _ in range(20)]
    users[7] = f"{{{USER}}}"  # a str asyncpg cannot encode as uuid
    outcomes = await asyncio.gather(
        *(purchases.submit(option_id, user, 1, None) for user in users), return_exceptions=True
    )
    assert isinstance(outcomes[7], asyncpg.DataError)
    assert all(outcome["quantity"] == 1 for n, outcome in enumerate(outcomes) if n != 7)
    await check_books(conn)


@pytest.mark.parametrize("user_id", NON_CANONICAL_UUIDS)
async def test_a_non_canonical_user_id_is_422(client, user_id):
    option = await create_option(client)
    response = await client.post(f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": user_id})
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert body["errors"][0]["field"] == "user_id"
    listed = await client.get(f"/ticket_options/{option['id']}/purchases", params={"user_id": user_id})
    await assert_problem(listed, 422, "/problems/invalid-argument")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_cursor_outside_postgresqls_dates_is_422(client, moment):
    option = await create_option(client)
    cursor = base64.urlsafe_b64encode(f"{moment}|{USER}".encode()).decode().rstrip("=")
    response = await client.get(f"/ticket_options/{option['id']}/purchases", params={"cursor": cursor})
    await assert_problem(response, 422, "/problems/invalid-argument")


@pytest.mark.parametrize("key", [b"\xff", b"caf\xc3\xa9", b"a" * 256])
async def test_a_malformed_idempotency_key_is_422_on_every_route(client, key):
    option = await create_option(client)
    assert await raw_purchase(client, option["id"], key) == 422
    status, _, body = await raw_request(
        client, "POST", "/ticket_options", {"Content-Type": b"application/json", "Idempotency-Key": key},
        json.dumps({"name": "Gig", "allocation": 1}).encode(),
    )
    assert status == 422, body
    assert json.loads(body)["errors"][0]["field"] == "idempotency_key"


@pytest.mark.parametrize("route", [
    ("POST", "/ticket_options?max_per_user=1", {"name": "Gig", "allocation": 5}),
    ("POST", "/ticket_options/{option}/purchases?dry_run=true", {"quantity": 1, "user_id": USER}),
    ("GET", "/ticket_options/{option}?fields=name", None),
    ("GET", "/purchases/{purchase}?expand=tickets", None),
    ("POST", "/purchases/{purchase}/cancel?dry_run=true", None),
])
async def test_unknown_query_parameters_are_refused_everywhere(client, route):
    method, path, body = route
    option = await create_option(client, allocation=5)
    bought = await client.post(f"/ticket_options/{option['id']}/purchases", json={"quantity": 1, "user_id": USER})
    purchase = await bought.json()
    response = await client.request(method, path.format(option=option["id"], purchase=purchase["id"]), json=body)
    await assert_problem(response, 422, "/problems/invalid-argument")
    # Nothing happened: still one purchase, still active.
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["sold"] == 1
    assert (await (await client.get(f"/purchases/{purchase['id']}")).json())["status"] == "active"


@pytest.mark.parametrize("content_type", [
    "application/json-patch+json", "application/problem+json", "x/+json", "application/json; charset=latin-1",
    "application/json; charset=utf-16", "text/plain",
])
async def test_only_utf8_application_json_is_accepted(client, content_type):
    option = await create_option(client)
    response = await client.post(
        f"/ticket_options/{option['id']}/purchases", data=purchase_body(), headers={"Content-Type": content_type}
    )
    await assert_problem(response, 415, "/problems/unsupported-media-type")


async def test_application_json_in_any_case_with_utf8_charset_is_accepted(client):
    option = await create_option(client)
    response = await client.post(
        f"/ticket_options/{option['id']}/purchases", data=purchase_body(),
        headers={"Content-Type": "Application/JSON; charset=UTF-8"},
    )
    assert response.status == 201, await response.text()


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("utf-16"), lambda text: text.encode("utf-16-le"), lambda text: text.encode("utf-32"),
    lambda text: b"\xef\xbb\xbf" + text.encode(),
])
async def test_a_body_that_is_not_plain_utf8_is_400(client, encode):
    option = await create_option(client)
    body = json.dumps({"quantity": 1, "user_id": USER})
    response = await client.post(
        f"/ticket_options/{option['id']}/purchases", data=encode(body), headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400, "/problems/malformed-body")


async def test_a_duplicate_key_is_422_naming_it(client):
    option = await create_option(client)
    response = await client.post(
        f"/ticket_options/{option['id']}/purchases", data=f'{{"quantity": 2000, "quantity": 1, "user_id": "{USER}"}}',
        headers={"Content-Type": "application/json"},
    )
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert body["errors"] == [{"field": "quantity", "message": "quantity is given more than once"}]
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["sold"] == 0
