"""Holds, called directly: alone, racing each other, purchases, confirms, releases and the clock.

Expiry is tested by moving the SQL clock (settings.clock_offset, owner only), never by waiting."""

import asyncio
import random
import uuid
from datetime import timedelta

import asyncpg
import pytest

from ..people import USER_ID as USER
from ..polling import wait_until
from .helpers import (advance_clock, books_balance, create_option, hold, many, option, purchase, queued_on_a_lock,
                      sessions_waiting_for_a_lock, ticket_requests, until_past)


async def confirm(conn, hold_id):
    return await conn.fetchrow("SELECT * FROM confirm_hold($1)", hold_id)


async def release(conn, hold_id):
    """(released: whether this call released it, hold: the hold as it is now)."""
    return await conn.fetchrow("SELECT * FROM release_hold($1)", hold_id)


async def test_a_hold_sets_tickets_aside_until_confirmed(conn):
    option_id = await create_option(conn, 10)
    held = await hold(conn, option_id, 3)
    assert held["status"] == "held" and held["purchase_id"] is None and held["quantity"] == 3
    state = await option(conn, option_id)
    assert (state["remaining"], state["held"], state["sold"]) == (7, 3, 0)
    confirmation = await confirm(conn, held["id"])
    assert confirmation["created"] is True
    bought = confirmation["purchase"]
    assert bought["quantity"] == 3 and len(bought["ticket_ids"]) == 3 and bought["user_id"] == USER
    state = await option(conn, option_id)
    assert (state["remaining"], state["held"], state["sold"]) == (7, 0, 3)
    again = await confirm(conn, held["id"])
    assert again["created"] is False and again["purchase"]["id"] == bought["id"]
    assert (await conn.fetchrow("SELECT * FROM get_hold($1)", held["id"]))["purchase_id"] == bought["id"]
    assert await conn.fetchval("SELECT count(*) FROM purchases WHERE ticket_option_id = $1", option_id) == 1
    await books_balance(conn)


async def test_release_puts_tickets_back_and_is_idempotent(conn):
    option_id = await create_option(conn, 5)
    held = await hold(conn, option_id, 5)
    with pytest.raises(asyncpg.PostgresError) as refused:
        await purchase(conn, option_id, 1)
    assert refused.value.sqlstate == "TA003"
    released = await release(conn, held["id"])
    assert (released["released"], released["hold"]["status"]) == (True, "released")
    again = await release(conn, held["id"])  # changes nothing, and says so
    assert (again["released"], again["hold"]["status"]) == (False, "released")
    assert (await option(conn, option_id))["remaining"] == 5
    with pytest.raises(asyncpg.PostgresError) as refused:
        await confirm(conn, held["id"])
    assert refused.value.sqlstate == "TA011"
    await books_balance(conn)


async def test_releasing_a_confirmed_hold_is_refused(conn):
    option_id = await create_option(conn, 5)
    held = await hold(conn, option_id, 2)
    await confirm(conn, held["id"])
    with pytest.raises(asyncpg.PostgresError) as refused:
        await release(conn, held["id"])
    assert refused.value.sqlstate == "TA012"


async def test_unknown_hold_is_TA009(conn):
    for call in ("get_hold", "confirm_hold", "release_hold"):
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.fetchrow(f"SELECT * FROM {call}($1)", uuid.uuid4())
        assert refused.value.sqlstate == "TA009"


async def test_an_expired_hold_is_on_sale_before_any_sweep(conn):
    option_id = await create_option(conn, 4)
    held = await hold(conn, option_id, 4, ttl="1 minute")
    await advance_clock(conn, "61 seconds")
    # Reads: as of now, though the row still says held.
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", held["id"]) == "held"
    assert (await conn.fetchrow("SELECT * FROM get_hold($1)", held["id"]))["status"] == "expired"
    state = await option(conn, option_id)
    assert (state["remaining"], state["held"]) == (4, 0)
    # Decisions: a purchase gets the tickets, reclaiming the hold under the lock.
    assert (await purchase(conn, option_id, 4))["quantity"] == 4
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", held["id"]) == "expired"
    with pytest.raises(asyncpg.PostgresError) as refused:
        await confirm(conn, held["id"])
    assert refused.value.sqlstate == "TA010"
    assert tuple(await release(conn, held["id"])) == (False, await conn.fetchrow("SELECT * FROM get_hold($1)", held["id"]))
    await books_balance(conn)


async def test_confirming_past_expiry_is_refused_even_unswept(conn):
    option_id = await create_option(conn, 4)
    held = await hold(conn, option_id, 2, ttl="1 minute")
    await advance_clock(conn, "1 minute")
    with pytest.raises(asyncpg.PostgresError) as refused:
        await confirm(conn, held["id"])
    assert refused.value.sqlstate == "TA010"
    await books_balance(conn)


async def test_the_sweeper_reclaims_expired_holds(conn):
    first = await create_option(conn, 10)
    second = await create_option(conn, 10)
    for option_id in (first, second):
        await hold(conn, option_id, 2, ttl="1 minute")
        await hold(conn, option_id, 3, ttl="1 hour")
    assert await conn.fetchval("SELECT release_expired_holds()") == 0
    await advance_clock(conn, "2 minutes")
    assert await conn.fetchval("SELECT release_expired_holds()") == 2
    assert await conn.fetchval("SELECT release_expired_holds()") == 0
    for option_id in (first, second):
        row = await conn.fetchrow("SELECT remaining, held FROM ticket_options WHERE id = $1", option_id)
        assert tuple(row) == (7, 3)
    await books_balance(conn)


async def test_max_per_user_counts_held_and_bought(conn):
    option_id = await create_option(conn, 100, max_per_user=4)
    await purchase(conn, option_id, 2)
    held = await hold(conn, option_id, 2)
    for attempt in (lambda: hold(conn, option_id, 1), lambda: purchase(conn, option_id, 1)):
        with pytest.raises(asyncpg.PostgresError) as refused:
            await attempt()
        assert refused.value.sqlstate == "TA007"
    await hold(conn, option_id, 1, user_id=uuid.uuid4())  # another user is not limited by this one
    await release(conn, held["id"])
    await hold(conn, option_id, 2, ttl="1 minute")
    await advance_clock(conn, "2 minutes")  # an expired hold no longer counts
    assert (await purchase(conn, option_id, 2))["quantity"] == 2


async def test_a_retried_hold_with_its_key_holds_once(conn):
    option_id = await create_option(conn, 10)
    first = await hold(conn, option_id, 2, key="checkout-1")
    again = await hold(conn, option_id, 2, key="checkout-1")
    assert again["id"] == first["id"]
    assert (await option(conn, option_id))["held"] == 2
    with pytest.raises(asyncpg.PostgresError) as refused:
        await hold(conn, option_id, 3, key="checkout-1")
    assert refused.value.sqlstate == "TA005"
    # The same key for a purchase is another key (its own scope).
    assert (await purchase(conn, option_id, 2, key="checkout-1"))["quantity"] == 2


async def test_ttl_outside_one_second_to_one_day_is_TA001(conn):
    option_id = await create_option(conn, 10)
    for ttl in ("0 seconds", "1 day 1 second", None):
        with pytest.raises(asyncpg.PostgresError) as refused:
            await hold(conn, option_id, 1, ttl=ttl)
        assert refused.value.sqlstate == "TA001"


async def test_a_batch_decides_in_order_and_repeats_keys(conn):
    option_id = await create_option(conn, 5)
    users = [uuid.uuid4() for _ in range(3)]
    users += [users[0], users[0]]
    rows = await conn.fetch(
        "SELECT * FROM hold_tickets_batch($1::ticket_request[])",
        ticket_requests(option_id, users, [3, 3, 2, 3, 1], keys=["a", None, None, "a", "a"],
                        ttls=[None, None, timedelta(minutes=1), None, None]))
    assert [r["refusal"] and r["refusal"]["sqlstate"] for r in rows] == [None, "TA003", None, None, "TA005"]
    assert rows[3]["hold"]["id"] == rows[0]["hold"]["id"]
    assert rows[2]["hold"]["expires_at"] - rows[2]["hold"]["created_at"] == timedelta(minutes=1)
    assert rows[0]["hold"]["expires_at"] - rows[0]["hold"]["created_at"] == timedelta(minutes=10)
    await books_balance(conn)


async def test_300_concurrent_holds_of_one_for_100_tickets(conn, database_url):
    option_id = await create_option(conn, 100)
    results = await many(database_url, 30, [lambda c: hold(c, option_id, 1, uuid.uuid4()) for _ in range(300)])
    refused = [r for r in results if isinstance(r, asyncpg.PostgresError)]
    assert len(results) - len(refused) == 100
    assert {e.sqlstate for e in refused} == {"TA003"} and len(refused) == 200
    state = await option(conn, option_id)
    assert (state["remaining"], state["held"], state["sold"]) == (0, 100, 0)
    await books_balance(conn)


async def test_holds_and_purchases_race_for_the_last_tickets(conn, database_url):
    option_id = await create_option(conn, 50)
    calls = [lambda c: hold(c, option_id, 1, uuid.uuid4()) for _ in range(60)]
    calls += [lambda c: purchase(c, option_id, 1, uuid.uuid4()) for _ in range(60)]
    random.shuffle(calls)
    results = await many(database_url, 20, calls)
    assert sum(not isinstance(r, asyncpg.PostgresError) for r in results) == 50
    state = await option(conn, option_id)
    assert state["remaining"] == 0 and state["held"] + state["sold"] == 50
    await books_balance(conn)


async def test_confirm_racing_expiry_never_loses_or_doubles_a_ticket(conn, database_url):
    option_id = await create_option(conn, 40)
    holds = [await hold(conn, option_id, 1, uuid.uuid4(), ttl="1 minute") for _ in range(40)]
    # Half the confirms run before the clock moves past expiry, half after (in whatever order
    # the server takes them); purchases compete for what expiry puts back on sale.
    calls = [lambda c, h=h: confirm(c, h["id"]) for h in holds]
    calls.insert(20, lambda c: advance_clock(c, "1 minute"))
    calls += [lambda c: purchase(c, option_id, 1, uuid.uuid4()) for _ in range(20)]
    results = await many(database_url, 20, calls)
    for h in holds:
        status = (await conn.fetchrow("SELECT * FROM get_hold($1)", h["id"]))["status"]
        assert status in ("confirmed", "expired")
    errors = {r.sqlstate for r in results if isinstance(r, asyncpg.PostgresError)}
    assert errors <= {"TA003", "TA010"}
    state = await option(conn, option_id)
    assert state["held"] == 0 and state["remaining"] + state["sold"] == 40
    await books_balance(conn)


async def test_confirm_racing_release_ends_one_way(conn, database_url):
    option_id = await create_option(conn, 60)
    holds = [await hold(conn, option_id, 2, uuid.uuid4()) for _ in range(30)]
    calls = [lambda c, h=h: confirm(c, h["id"]) for h in holds] + [lambda c, h=h: release(c, h["id"]) for h in holds]
    calls += [lambda c: purchase(c, option_id, 1, uuid.uuid4()) for _ in range(10)]
    random.shuffle(calls)
    results = await many(database_url, 20, calls)
    assert {r.sqlstate for r in results if isinstance(r, asyncpg.PostgresError)} <= {"TA011", "TA012", "TA003"}
    statuses = [(await conn.fetchrow("SELECT * FROM get_hold($1)", h["id"]))["status"] for h in holds]
    assert set(statuses) <= {"confirmed", "released"}
    releases = [r for r in results if isinstance(r, asyncpg.Record) and "released" in r.keys()]
    assert sum(r["released"] for r in releases) == statuses.count("released")  # each said so once
    state = await option(conn, option_id)
    assert state["held"] == 0 and state["remaining"] + state["sold"] == 60
    await books_balance(conn)


async def test_a_hold_expiring_while_purchases_wait_on_the_lock(conn, database_url):
    option_id = await create_option(conn, 10)
    await hold(conn, option_id, 10, ttl="1 minute")
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM ticket_options WHERE id = $1 FOR NO KEY UPDATE", option_id)
            waiting = asyncio.ensure_future(
                many(database_url, 10, [lambda c: purchase(c, option_id, 1, uuid.uuid4()) for _ in range(12)]))
            async def all_queued():  # every connection of the pool, on the option's lock
                return await sessions_waiting_for_a_lock(conn) >= 10
            await wait_until(all_queued, "the 10 connections' purchases to queue on the option's lock")
            await advance_clock(conn, "2 minutes")  # expires while they wait
        results = await waiting
    finally:
        await blocker.close()
    # Each waiting transaction took its snapshot of the clock... from its own start, which may be
    # before or after the clock moved: those that saw the hold expired bought; none oversold.
    bought = sum(not isinstance(r, asyncpg.PostgresError) for r in results)
    state = await option(conn, option_id)
    assert state["sold"] == bought and state["remaining"] == 10 - bought and state["held"] == 0
    assert bought == 10
    await books_balance(conn)


async def test_sweeper_and_lazy_reclaim_together(conn, database_url):
    options = [await create_option(conn, 20) for _ in range(5)]
    for option_id in options:
        for _ in range(10):
            await hold(conn, option_id, 2, uuid.uuid4(), ttl="1 minute")
    await advance_clock(conn, "2 minutes")
    calls = [lambda c: c.fetchval("SELECT release_expired_holds()") for _ in range(5)]
    calls += [lambda c, o=o: purchase(c, o, 1, uuid.uuid4()) for o in options for _ in range(5)]
    calls += [lambda c, o=o: hold(c, o, 1, uuid.uuid4()) for o in options for _ in range(5)]
    random.shuffle(calls)
    results = await many(database_url, 15, calls)
    assert not [r for r in results if isinstance(r, asyncpg.PostgresError)]
    assert await conn.fetchval("SELECT count(*) FROM holds WHERE status = 'held' AND expires_at <= clock()") == 0
    for option_id in options:
        state = await option(conn, option_id)
        assert (state["remaining"], state["held"], state["sold"]) == (10, 5, 5)
    await books_balance(conn)


async def test_a_confirm_that_waited_on_the_lock_past_expiry_is_refused(conn, database_url):
    # The race of issue 17: the lock is held from before expires_at until after it; a confirm and a
    # read queue behind it. Whatever order they get the lock in, both say expired, and nothing is bought.
    option_id = await create_option(conn, 10)
    held = await hold(conn, option_id, 2, ttl="1 second")
    blocker, confirmer, reader = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM ticket_options WHERE id = $1 FOR NO KEY UPDATE", option_id)
            confirming = asyncio.ensure_future(confirm(confirmer, held["id"]))
            await queued_on_a_lock(conn, confirmer.get_server_pid())
            await until_past(conn, held["expires_at"])
            reading = asyncio.ensure_future(reader.fetchrow("SELECT * FROM get_hold($1)", held["id"]))
            await queued_on_a_lock(conn, reader.get_server_pid())  # it waits for the decision in progress
        with pytest.raises(asyncpg.PostgresError) as refused:
            await confirming
        assert refused.value.sqlstate == "TA010"
        assert (await reading)["status"] == "expired"
    finally:
        for connection in (blocker, confirmer, reader):
            await connection.close()
    state = await option(conn, option_id)
    assert (state["remaining"], state["held"], state["sold"]) == (10, 0, 0)
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", held["id"]) == "expired"
    await books_balance(conn)


async def test_a_transaction_opened_before_expiry_cannot_confirm_after_it(conn, database_url):
    # psql: BEGIN before expires_at, confirm_hold after it. The transaction's start is not the clock.
    option_id = await create_option(conn, 10)
    held = await hold(conn, option_id, 2, ttl="1 second")
    late = await asyncpg.connect(database_url)
    try:
        async with late.transaction():
            await late.execute("SELECT now()")
            await until_past(conn, held["expires_at"])
            with pytest.raises(asyncpg.PostgresError) as refused:
                await confirm(late, held["id"])
        assert refused.value.sqlstate == "TA010"
    finally:
        await late.close()
    assert (await option(conn, option_id))["sold"] == 0
    await books_balance(conn)


async def test_a_read_that_says_expired_stores_it_so(conn):
    option_id = await create_option(conn, 10)
    held = await hold(conn, option_id, 3)
    await advance_clock(conn, "11 minutes")
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", held["id"]) == "held"
    assert (await conn.fetchrow("SELECT * FROM get_hold($1)", held["id"]))["status"] == "expired"
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", held["id"]) == "expired"
    await books_balance(conn)


async def test_max_hold_seconds_caps_every_hold_of_the_option(conn):
    option_id = await conn.fetchval(
        "SELECT id FROM create_ticket_option('Gig', '', 100, p_max_hold_seconds => 60)")
    assert (await option(conn, option_id))["max_hold_seconds"] == 60
    asked_more = await hold(conn, option_id, 1, ttl="1 day")
    by_default = await conn.fetchrow("SELECT * FROM hold_tickets_batch($1::ticket_request[])",
                                     ticket_requests(option_id, [USER], [1]))
    shorter = await hold(conn, option_id, 1, ttl="30 seconds")
    lifetime = "SELECT expires_at - created_at FROM holds WHERE id = $1"
    assert await conn.fetchval(lifetime, asked_more["id"]) == timedelta(seconds=60)
    assert await conn.fetchval(lifetime, by_default["hold"]["id"]) == timedelta(seconds=60)
    assert await conn.fetchval(lifetime, shorter["id"]) == timedelta(seconds=30)


async def test_max_hold_seconds_defaults_to_half_an_hour(conn):
    option_id = await create_option(conn, 10)
    assert (await option(conn, option_id))["max_hold_seconds"] == 1800
    held = await hold(conn, option_id, 1, ttl="2 hours")
    assert await conn.fetchval("SELECT expires_at - created_at FROM holds WHERE id = $1", held["id"]) == timedelta(minutes=30)


@pytest.mark.parametrize("seconds", [0, -1, 86401])
async def test_max_hold_seconds_outside_one_second_to_one_day_is_TA001(conn, seconds):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchval("SELECT id FROM create_ticket_option('Gig', '', 10, p_max_hold_seconds => $1)", seconds)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "max_hold_seconds")
    with pytest.raises(asyncpg.PostgresError):  # the CHECK backs it
        await conn.execute("INSERT INTO ticket_options (name, remaining, total, max_hold_seconds) VALUES ('Gig', 1, 1, $1)",
                           seconds)
