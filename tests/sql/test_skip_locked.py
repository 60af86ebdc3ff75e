"""Batches with p_skip_locked: they never wait for a lock another session holds; the requests they
cannot decide without waiting come back deferred, nothing done for them, and the rest is decided.

Every call here runs with lock_timeout 200 ms: a call that waited for the held lock would fail."""

import uuid

import asyncpg
import pytest

from .helpers import create_option

U1, U2, U3 = (uuid.uuid4() for _ in range(3))
PURCHASES = "SELECT * FROM purchase_tickets_batch($1::ticket_request[], p_skip_locked => $2)"
HOLDS = "SELECT * FROM hold_tickets_batch($1::ticket_request[], p_skip_locked => $2)"


@pytest.fixture
async def conn(conn):
    await conn.execute("SET lock_timeout = '200ms'")
    return conn


@pytest.fixture
async def other_session(database_url):
    """A second session (a psql user's), its transaction open: what it locks stays locked."""
    session = await asyncpg.connect(database_url)
    transaction = session.transaction()
    await transaction.start()
    yield session
    await transaction.rollback()
    await session.close()


def request(option_id, user_id=None, quantity=1, key=None):
    return (option_id, user_id or uuid.uuid4(), quantity, key, None, None)


def outcomes(rows):
    """[(deferred, sqlstate or None, the purchase's or hold's quantity or None)] per row."""
    answers = [row["receipt"] if "receipt" in row.keys() else row["hold"] for row in rows]
    return [(row["deferred"], (row["refusal"] or {}).get("sqlstate"), answer and answer["quantity"])
            for row, answer in zip(rows, answers, strict=True)]


async def lock_option(session, option_id):
    await session.execute("SELECT 1 FROM ticket_options WHERE id = $1 FOR UPDATE", option_id)


async def test_requests_of_a_locked_option_are_deferred_and_the_rest_decided(conn, other_session, books):
    locked, free = await create_option(conn, 10), await create_option(conn, 10)
    await lock_option(other_session, locked)
    rows = await conn.fetch(PURCHASES, [
        request(locked, U1, 1, "key-a"), request(free, U2, 2), request(locked, U2, 3), request(uuid.uuid4(), U3),
        request(locked, U1, 1, "key-a"),  # the same request again: answered as the first (deferred)
        request(free, U3, 20),
    ], True)
    assert outcomes(rows) == [(True, None, None), (False, None, 2), (True, None, None), (False, "TA002", None),
                              (True, None, None), (False, "TA003", None)]
    assert await books(free) == {"remaining": 8, "sold": 2, "total": 10}
    assert await books(locked) == {"remaining": 10, "sold": 0, "total": 10}
    # Without p_skip_locked (psql's default) the batch waits for the lock, as purchase_tickets does.
    with pytest.raises(asyncpg.LockNotAvailableError):
        await conn.fetch(PURCHASES, [request(locked, U1, 1, "key-a")], False)
    await other_session.execute("ROLLBACK; BEGIN")
    # Nothing was remembered for the deferred key: it buys now, once.
    rows = await conn.fetch(PURCHASES, [request(locked, U1, 1, "key-a"), request(locked, U1, 1, "key-a")], True)
    assert outcomes(rows) == [(False, None, 1), (False, None, 1)]
    assert rows[0]["receipt"]["id"] == rows[1]["receipt"]["id"]
    assert await books(locked) == {"remaining": 9, "sold": 1, "total": 10}


async def test_holds_of_a_locked_option_are_deferred(conn, other_session, books):
    locked, free = await create_option(conn, 10), await create_option(conn, 10)
    await lock_option(other_session, locked)
    rows = await conn.fetch(HOLDS, [request(locked), request(free, quantity=4)], True)
    assert outcomes(rows) == [(True, None, None), (False, None, 4)]
    assert await conn.fetchval("SELECT count(*) FROM holds") == 1
    assert (await books(free))["remaining"] == 6


async def test_an_option_sharing_a_quota_with_a_locked_one_is_deferred(conn, other_session, books):
    # Its quota may still count the locked option's expired holds: deciding would refuse too early.
    locked, sharing, alone = [await create_option(conn, 10) for _ in range(3)]
    quota = await conn.fetchval("SELECT id FROM create_quota('Venue', 10, $1)", [locked, sharing])
    await lock_option(other_session, locked)
    rows = await conn.fetch(PURCHASES, [request(sharing), request(alone)], True)
    assert outcomes(rows) == [(True, None, None), (False, None, 1)]
    await other_session.execute("ROLLBACK; BEGIN")
    # The quota's own lock, held by another session, defers its options the same way.
    await other_session.execute("SELECT 1 FROM quotas WHERE id = $1 FOR UPDATE", quota)
    rows = await conn.fetch(PURCHASES, [request(locked), request(alone), request(sharing)], True)
    assert outcomes(rows) == [(True, None, None), (False, None, 1), (True, None, None)]
    assert [(await books(option))["sold"] for option in (locked, sharing, alone)] == [0, 0, 2]


async def test_an_option_whose_expired_hold_is_of_a_locked_order_is_deferred(conn, other_session, books):
    held, other_line = await create_option(conn, 10), await create_option(conn, 10)
    order = await conn.fetchrow("SELECT * FROM place_order($1, $2::order_line[], '1 minute')",
                                U1, [(held, 2), (other_line, 1)])
    await conn.execute("UPDATE ticket_allocation.settings SET clock_offset = clock_offset + '2 minutes'")
    # Deciding on `held` reclaims the order's expired hold, which expires the order: its lock.
    await other_session.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order["id"])
    rows = await conn.fetch(PURCHASES, [request(held)], True)
    assert outcomes(rows) == [(True, None, None)]
    assert await conn.fetchval("SELECT status FROM holds WHERE ticket_option_id = $1", held) == "held"  # stored
    await other_session.execute("ROLLBACK; BEGIN")
    rows = await conn.fetch(PURCHASES, [request(held)], True)
    assert outcomes(rows) == [(False, None, 1)]
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"]) == "expired"
    assert await books(held) == {"remaining": 9, "sold": 1, "total": 10}


async def test_nothing_locked_means_nothing_deferred(conn, books):
    options = [await create_option(conn, 3) for _ in range(3)]
    rows = await conn.fetch(PURCHASES, [request(options[n % 3], quantity=2) for n in range(6)], True)
    assert outcomes(rows) == [(False, None, 2)] * 3 + [(False, "TA003", None)] * 3
    assert [(await books(option))["sold"] for option in options] == [2, 2, 2]


async def test_an_order_with_a_locked_option_is_deferred_whole(conn, other_session, books):
    locked, free, other = [await create_option(conn, 10) for _ in range(3)]
    await lock_option(other_session, locked)
    rows = await conn.fetch("SELECT * FROM place_orders_batch($1::order_request[], p_skip_locked => true)", [
        (U1, [(free, 2), (locked, 1)], None, "order-key", None),  # one line locked: deferred whole
        (U2, [(free, 3), (other, 1)], None, None, None),
        (U1, [(free, 2), (locked, 1)], None, "order-key", None),  # the same request again: as the first
    ])
    assert [(row["deferred"], row["refusal"], row["order"] and row["order"]["status"]) for row in rows] == [
        (True, None, None), (False, None, "confirmed"), (True, None, None)]
    assert [(await books(option))["sold"] for option in (locked, free, other)] == [0, 3, 1]
    await other_session.execute("ROLLBACK; BEGIN")
    placed = await conn.fetchrow("SELECT * FROM place_orders_batch($1::order_request[], p_skip_locked => true)",
                                 [(U1, [(free, 2), (locked, 1)], None, "order-key", None)])
    assert (placed["deferred"], placed["order"]["status"]) == (False, "confirmed")
    assert [(await books(option))["sold"] for option in (locked, free, other)] == [1, 5, 1]
