"""GET /events at its edges: cursors it never gave out, and pages of big events."""

import json
import uuid

import pytest

from .helpers import assert_problem, create_option


async def horizon(conn) -> int:
    return int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))


@pytest.mark.parametrize("cursor", [
    "ahead", "999999999999-0", "99999999999999999999-0", "0-9999999999999999999", "1-99999999999", "0-1", "x-y",
])
async def test_a_cursor_the_feed_never_gave_out_is_422_naming_after(client, conn, cursor):
    await create_option(client)
    if cursor == "ahead":  # beyond anything committed, however long this server has run
        cursor = f"{await horizon(conn) + 1000}-0"
    response = await client.get("/events", params={"after": cursor})
    body = await assert_problem(response, 422, "/problems/invalid-argument")
    assert [error["field"] for error in body["errors"]] == ["after"]
    assert body["detail"].startswith("after is not a cursor of this feed"), body["detail"]
    assert "out of range" not in body["detail"] and "xid8" not in body["detail"]


async def test_a_page_of_big_events_stays_small(client, conn):
    """30 purchases of 1,000 tickets: limit=1000 pages of at most the budget and one event."""
    budget = await conn.fetchval("SELECT events_page_byte_budget()")
    option = await create_option(client, allocation=30_000)
    await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                     [(uuid.UUID(option["id"]), uuid.uuid4(), 1000, None, None, None) for _ in range(30)])
    cursor, seen, largest = "0-0", [], 0
    for _ in range(10):  # bounded
        response = await client.get("/events", params={"after": cursor, "limit": "1000"})
        raw = await response.read()
        page = json.loads(raw)
        if not page["events"]:
            break
        largest = max(largest, len(raw))
        seen += [event["id"] for event in page["events"]]
        cursor = page["next_cursor"]
    assert len(seen) == 32 and len(set(seen)) == 32  # created, 30 purchases, sold_out
    assert largest < budget + 60_000
