"""Bad input: always a clear 4xx problem, never a 5xx, never a write."""

import json

import asyncpg
import pytest

from ..people import USER
from .helpers import assert_problem, create_option

JSON = {"Content-Type": "application/json"}

MALFORMED_BODIES = [
    (b"", 400),
    (b"   ", 400),
    (b"{not json", 400),
    (b'{"quantity": 1,', 400),
    (b"[1, 2]", 400),
    (b'"a string"', 400),
    (b"42", 400),
    (b"null", 400),
    (b'{"quantity": NaN, "user_id": "x"}', 400),
    (b"\xff\xfe\x00", 400),
    (b"[" * 5000 + b"]" * 5000, 400),  # deeper than the parser recurses
]


async def row_counts(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        return [await conn.fetchval(f"SELECT count(*) FROM {table}") for table in ("ticket_options", "purchases", "tickets")]
    finally:
        await conn.close()


@pytest.fixture
async def option(client):
    return await create_option(client, 10)


@pytest.fixture
def routes(option):
    return ["/ticket_options", f"/ticket_options/{option['id']}/purchases"]


async def test_malformed_bodies_are_400(client, routes, database_url):
    before = await row_counts(database_url)
    for path in routes:
        for raw, status in MALFORMED_BODIES:
            response = await client.post(path, data=raw, headers=JSON)
            body = await assert_problem(response, status, "/problems/malformed-body")
            assert body["detail"], raw[:20]
    assert await row_counts(database_url) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(client, routes, database_url, content_type):
    before = await row_counts(database_url)
    headers = {"Content-Type": content_type} if content_type else {}
    for path in routes:
        payload = json.dumps({"quantity": 1, "user_id": USER, "name": "x", "allocation": 1}).encode()
        response = await client.post(path, data=payload, headers=headers, skip_auto_headers=["Content-Type"])
        body = await assert_problem(response, 415, "/problems/unsupported-media-type")
        assert "application/json" in body["detail"]
    assert await row_counts(database_url) == before


async def test_body_over_the_limit_is_413(client, routes, database_url):
    before = await row_counts(database_url)
    for path in routes:
        payload = {"name": "x" * 100_000, "allocation": 1, "quantity": 1, "user_id": USER}
        await assert_problem(await client.post(path, json=payload), 413)
    assert await row_counts(database_url) == before


BAD_OPTIONS = [
    ({"desc": "no name", "allocation": 1}, {"name"}),
    ({"name": "Gig"}, {"allocation"}),
    ({}, {"name", "allocation"}),
    ({"name": 5, "allocation": 1}, {"name"}),
    ({"name": None, "allocation": 1}, {"name"}),
    ({"name": "Gig", "desc": None, "allocation": 1}, {"desc"}),
    ({"name": "Gig", "desc": ["x"], "allocation": 1}, {"desc"}),
    ({"name": "Gig", "allocation": True}, {"allocation"}),
    ({"name": "Gig", "allocation": 1.5}, {"allocation"}),
    ({"name": "Gig", "allocation": 1.0}, {"allocation"}),
    ({"name": "Gig", "allocation": "2"}, {"allocation"}),
    ({"name": "Gig", "allocation": None}, {"allocation"}),
    ({"name": "Gig", "allocation": 2**31}, {"allocation"}),
    ({"name": "Gig", "allocation": 10**40}, {"allocation"}),
    ({"name": "Gig", "allocation": 1, "price": 10}, {"price"}),
    ({"name": "Gig\u0000", "allocation": 1}, {"name"}),
    ({"name": "\ud800", "allocation": 1}, {"name"}),
]


@pytest.mark.parametrize(("payload", "fields"), BAD_OPTIONS)
async def test_bad_ticket_option_fields_are_422_naming_each(client, database_url, payload, fields):
    before = await row_counts(database_url)
    response = await client.post("/ticket_options", data=json.dumps(payload), headers=JSON)
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert {error["field"] for error in body["errors"]} == fields
    assert all(error["message"] for error in body["errors"])
    assert await row_counts(database_url) == before


BAD_PURCHASES = [
    ({"user_id": USER}, {"quantity"}),
    ({"quantity": 1}, {"user_id"}),
    ({"quantity": True, "user_id": USER}, {"quantity"}),
    ({"quantity": 1.5, "user_id": USER}, {"quantity"}),
    ({"quantity": "2", "user_id": USER}, {"quantity"}),
    ({"quantity": None, "user_id": USER}, {"quantity"}),
    ({"quantity": 2**31, "user_id": USER}, {"quantity"}),
    ({"quantity": -(2**31) - 1, "user_id": USER}, {"quantity"}),
    ({"quantity": 1, "user_id": "not-a-uuid"}, {"user_id"}),
    ({"quantity": 1, "user_id": 12345}, {"user_id"}),
    ({"quantity": 1, "user_id": None}, {"user_id"}),
    ({"quantity": 1, "user_id": USER, "coupon": "FREE"}, {"coupon"}),
    ({"quantity": "x", "user_id": "y"}, {"quantity", "user_id"}),
]


@pytest.mark.parametrize(("payload", "fields"), BAD_PURCHASES)
async def test_bad_purchase_fields_are_422_naming_each(client, option, database_url, payload, fields):
    before = await row_counts(database_url)
    response = await client.post(f"/ticket_options/{option['id']}/purchases", data=json.dumps(payload), headers=JSON)
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert {error["field"] for error in body["errors"]} == fields
    assert await row_counts(database_url) == before
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["allocation"] == 10
