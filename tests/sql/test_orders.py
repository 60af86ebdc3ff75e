"""Orders, called directly: many lines, one outcome, under the lock order of lock_options.

Expiry is tested by moving the SQL clock (settings.clock_offset, owner only), never by waiting."""

import asyncio
import json
import random
import uuid
from datetime import timedelta

import asyncpg

from ..people import USER_ID as USER
from .helpers import (advance_clock, books_balance, create_option, create_quota, many, purchase, queued_on_a_lock,
                      refused, until_past)


async def place(conn, lines, ttl=None, key=None, user_id=USER, caller=None):
    """lines: [(option_id, quantity)]; ttl: a PostgreSQL interval string."""
    return await conn.fetchrow(
        "SELECT * FROM place_order($1, $2::order_line[], $3::text::interval, $4, $5)", user_id, lines, ttl, key, caller)


async def sold(conn, option_id):
    row = await conn.fetchrow("SELECT remaining, held, sold FROM get_ticket_option($1)", option_id)
    return tuple(row)


async def events(conn, types=None):
    rows = await conn.fetch("SELECT type, data FROM events_after(NULL, 1000, $1)", types)
    return [(row["type"], json.loads(row["data"])) for row in rows]


async def test_an_order_without_ttl_buys_every_line_at_once(conn):
    a, b, c = [await create_option(conn, 10) for _ in range(3)]
    order = await place(conn, [(b, 2), (a, 1), (c, 3)])
    assert order["status"] == "confirmed" and order["user_id"] == USER and order["expires_at"] is None
    assert [tuple(line) for line in order["lines"]] == [(b, 2), (a, 1), (c, 3)]
    assert [(p["ticket_option_id"], p["quantity"], p["order_id"], len(p["ticket_ids"])) for p in order["purchases"]] == [
        (b, 2, order["id"], 2), (a, 1, order["id"], 1), (c, 3, order["id"], 3)]
    assert order["holds"] == []
    assert [await sold(conn, o) for o in (a, b, c)] == [(9, 0, 1), (8, 0, 2), (7, 0, 3)]
    assert dict(await conn.fetchrow("SELECT * FROM get_order($1)", order["id"])) == dict(order)
    # Each line's purchase.created (carrying order_id), then order.created, in the order's transaction.
    written = [(t, d) for t, d in await events(conn) if t.startswith(("purchase.", "order."))]
    assert [t for t, _ in written] == ["purchase.created"] * 3 + ["order.created"]
    assert {d["order_id"] for _, d in written[:3]} == {str(order["id"])}
    assert written[3][1]["status"] == "confirmed" and len(written[3][1]["purchases"]) == 3
    await books_balance(conn)


async def test_an_order_is_all_or_nothing_and_names_every_failing_line(conn):
    a, b, d = await create_option(conn, 10), await create_option(conn, 2), await create_option(conn, 5)
    missing = uuid.uuid4()
    before = await conn.fetchval("SELECT count(*) FROM events")
    error = await refused(place(conn, [(a, 4), (b, 3), (missing, 1), (d, 1)]))
    assert (error.sqlstate, error.column_name) == ("TA003", "lines")  # the first failing line's
    lines = json.loads(error.detail)
    assert [(line["line"], line["sqlstate"]) for line in lines] == [(2, "TA003"), (3, "TA002")]
    assert lines[0]["message"] == "not enough tickets left: 3 requested, 2 remaining"
    assert lines[1]["message"] == f"ticket option {missing} does not exist"
    assert error.message.startswith("order refused: 2 of its 4 lines cannot be had: line 2: not enough")
    assert await conn.fetchval("SELECT count(*) FROM orders") == 0
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 0
    assert await conn.fetchval("SELECT count(*) FROM events") == before
    assert [await sold(conn, o) for o in (a, b, d)] == [(10, 0, 0), (2, 0, 0), (5, 0, 0)]
    await books_balance(conn)


async def test_lines_count_what_earlier_lines_of_the_order_took(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    quota_id = (await create_quota(conn, 5, [a, b]))["id"]
    error = await refused(place(conn, [(a, 3), (b, 3)]))
    assert error.sqlstate == "TA014"
    [line] = json.loads(error.detail)
    assert (line["line"], line["detail"]) == (2, f"quota_id: {quota_id}, remaining: 2")
    order = await place(conn, [(a, 3), (b, 2)])
    assert order["status"] == "confirmed"
    assert await conn.fetchval("SELECT remaining FROM get_quota($1)", quota_id) == 0


async def test_invalid_lines_are_refused_before_anything_is_looked_up(conn):
    a = await create_option(conn, 10)
    error = await refused(place(conn, [(a, 1), (None, 1), (a, 2), (a, 0)]))
    assert (error.sqlstate, error.column_name) == ("TA001", "lines")
    assert [(line["line"], line["column_name"]) for line in json.loads(error.detail)] == [
        (2, "ticket_option_id"), (3, "ticket_option_id"), (4, "quantity")]
    for lines, ttl, user, field in [([], None, USER, "lines"), ([(a, 1)] * 51, None, USER, "lines"),
                                    ([(a, 1)], None, None, "user_id"), ([(a, 1)], "0 seconds", USER, "ttl"),
                                    ([(a, 1)], "2 days", USER, "ttl")]:
        error = await refused(place(conn, lines, ttl=ttl, user_id=user))
        assert (error.sqlstate, error.column_name) == ("TA001", field), (len(lines), ttl, user)
    error = await refused(conn.fetchrow("SELECT * FROM place_order($1, NULL)", USER))
    assert (error.sqlstate, error.column_name) == ("TA001", "lines")


async def test_a_held_order_holds_every_line_until_one_expires_at_and_confirm_buys_them_all(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    quota_id = (await create_quota(conn, 6, [a, b]))["id"]
    order = await place(conn, [(a, 2), (b, 3)], ttl="15 minutes")
    assert order["status"] == "held" and order["purchases"] == []
    assert {h["expires_at"] for h in order["holds"]} == {order["expires_at"]}
    assert order["expires_at"] - order["created_at"] == timedelta(minutes=15)
    assert [(h["ticket_option_id"], h["quantity"], h["status"], h["order_id"]) for h in order["holds"]] == [
        (a, 2, "held", order["id"]), (b, 3, "held", order["id"])]
    assert tuple(await conn.fetchrow("SELECT held, remaining FROM get_quota($1)", quota_id)) == (5, 1)
    # A line's hold is confirmed or released with its order only.
    for call in ("confirm_hold", "release_hold"):
        error = await refused(conn.fetchrow(f"SELECT * FROM {call}($1)", order["holds"][0]["id"]))
        assert (error.sqlstate, error.detail) == ("TA022", f"order_id: {order['id']}")
    confirmation = await conn.fetchrow("SELECT * FROM confirm_order($1)", order["id"])
    confirmed = confirmation["order"]
    assert confirmation["created"] is True and confirmed["status"] == "confirmed"
    assert [(p["ticket_option_id"], p["quantity"], p["order_id"]) for p in confirmed["purchases"]] == [
        (a, 2, order["id"]), (b, 3, order["id"])]
    assert [h["purchase_id"] for h in confirmed["holds"]] == [p["id"] for p in confirmed["purchases"]]
    assert tuple(await conn.fetchrow("SELECT sold, held FROM get_quota($1)", quota_id)) == (5, 0)
    again = await conn.fetchrow("SELECT * FROM confirm_order($1)", order["id"])
    assert again["created"] is False and [p["id"] for p in again["order"]["purchases"]] == [
        p["id"] for p in confirmed["purchases"]]
    assert (await refused(conn.fetchrow("SELECT * FROM release_order($1)", order["id"]))).sqlstate == "TA020"
    types = [t for t, _ in await events(conn) if t.startswith(("purchase.", "hold.", "order."))]
    assert types == ["hold.created"] * 2 + ["order.created"] + ["purchase.created"] * 2 + ["hold.confirmed"] * 2 + [
        "order.confirmed"]
    await books_balance(conn)


async def test_a_held_order_expires_as_a_whole_and_cannot_be_confirmed(conn):
    a, b = await create_option(conn, 4), await create_option(conn, 4)
    order = await place(conn, [(a, 4), (b, 4)], ttl="1 minute")
    await advance_clock(conn, "61 seconds")
    assert [await sold(conn, o) for o in (a, b)] == [(4, 0, 0), (4, 0, 0)]  # on sale at once, unswept
    # A purchase of one line's option reclaims that line and stores the order expired (once).
    await purchase(conn, a, 1)
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"]) == "expired"
    assert await conn.fetchval("SELECT count(*) FROM holds WHERE order_id = $1 AND status = 'held'", order["id"]) == 1
    await books_balance(conn)
    read = await conn.fetchrow("SELECT * FROM get_order($1)", order["id"])
    assert read["status"] == "expired" and {h["status"] for h in read["holds"]} == {"expired"}
    error = await refused(conn.fetchrow("SELECT * FROM confirm_order($1)", order["id"]))
    assert error.sqlstate == "TA018"
    assert (await conn.fetchrow("SELECT * FROM release_order($1)", order["id"]))["status"] == "expired"
    await conn.fetchval("SELECT release_expired_holds()")
    assert [t for t, _ in await events(conn, ["order.expired"])] == ["order.expired"]
    assert [t for t, _ in await events(conn, ["hold.expired"])] == ["hold.expired"] * 2
    assert [await sold(conn, o) for o in (a, b)] == [(3, 0, 1), (4, 0, 0)]
    await books_balance(conn)


async def test_a_confirm_queued_on_the_locks_past_expiry_is_refused_and_a_read_agrees(conn, database_url):
    """The expiry boundary as issue 17 decides it: by a clock read once the locks are granted. A
    confirm sent before expires_at that gets the locks after it is refused, nothing is bought, and a
    read queued behind it says expired too; one that gets them before expires_at buys every line."""
    a, b = await create_option(conn, 4), await create_option(conn, 4)
    in_time = await place(conn, [(a, 1), (b, 1)], ttl="1 minute", user_id=uuid.uuid4())
    late = await place(conn, [(a, 1), (b, 1)], ttl="1 second")
    blocker, confirmer, reader = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        async with blocker.transaction():  # holds the second line's option from before expires_at until after it
            await blocker.execute("SELECT 1 FROM ticket_options WHERE id = $1 FOR NO KEY UPDATE", b)
            confirming = asyncio.ensure_future(confirmer.fetchrow("SELECT * FROM confirm_order($1)", late["id"]))
            await queued_on_a_lock(conn, confirmer.get_server_pid())
            await until_past(conn, late["expires_at"])
            reading = asyncio.ensure_future(reader.fetchrow("SELECT * FROM get_order($1)", late["id"]))
            await queued_on_a_lock(conn, reader.get_server_pid())
        error = await refused(confirming)
        assert error.sqlstate == "TA018"
        assert (await reading)["status"] == "expired"
        confirmed = await confirmer.fetchrow("SELECT * FROM confirm_order($1)", in_time["id"])
        assert confirmed["created"] is True
    finally:
        for connection in (blocker, confirmer, reader):
            await connection.close()
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", late["id"]) == "expired"
    assert await conn.fetchval("SELECT count(*) FROM holds WHERE order_id = $1 AND status = 'expired'", late["id"]) == 2
    assert [await sold(conn, o) for o in (a, b)] == [(3, 0, 1), (3, 0, 1)]
    await books_balance(conn)


async def test_a_read_that_says_expired_stores_the_order_so(conn):
    a = await create_option(conn, 4)
    order = await place(conn, [(a, 2)], ttl="1 minute")
    await advance_clock(conn, "2 minutes")
    assert (await conn.fetchrow("SELECT status FROM get_order($1)", order["id"]))["status"] == "expired"
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order["id"]) == "expired"
    await books_balance(conn)


async def test_max_hold_seconds_bounds_every_line_and_the_order_expires_at_the_shortest(conn):
    short = await conn.fetchval("SELECT id FROM create_ticket_option('Gig', '', 10, p_max_hold_seconds => 60)")
    long = await create_option(conn, 10)
    order = await place(conn, [(long, 1), (short, 1)], ttl="20 minutes")
    assert order["expires_at"] - order["created_at"] == timedelta(seconds=60)
    assert {h["expires_at"] for h in order["holds"]} == {order["expires_at"]}


async def test_release_frees_every_line_at_once(conn):
    a, b = await create_option(conn, 4), await create_option(conn, 4)
    quota_id = (await create_quota(conn, 5, [a, b]))["id"]
    order = await place(conn, [(a, 2), (b, 3)], ttl="10 minutes")
    released = await conn.fetchrow("SELECT * FROM release_order($1)", order["id"])
    assert released["status"] == "released" and {h["status"] for h in released["holds"]} == {"released"}
    assert [await sold(conn, o) for o in (a, b)] == [(4, 0, 0), (4, 0, 0)]
    assert await conn.fetchval("SELECT remaining FROM get_quota($1)", quota_id) == 5
    assert (await conn.fetchrow("SELECT * FROM release_order($1)", order["id"]))["status"] == "released"
    assert (await refused(conn.fetchrow("SELECT * FROM confirm_order($1)", order["id"]))).sqlstate == "TA019"
    assert (await refused(conn.fetchrow("SELECT * FROM cancel_order($1)", order["id"]))).sqlstate == "TA021"
    assert [t for t, _ in await events(conn, ["order.released"])] == ["order.released"]
    await books_balance(conn)


async def test_partial_and_full_cancel_return_capacity_to_options_and_quotas(conn):
    a, b, c = [await create_option(conn, 5) for _ in range(3)]
    quota_id = (await create_quota(conn, 6, [a, b, c]))["id"]
    order = await place(conn, [(a, 2), (b, 2), (c, 2)])
    assert await conn.fetchval("SELECT remaining FROM get_quota($1)", quota_id) == 0
    await conn.fetchrow("SELECT * FROM cancel_purchase($1)", order["purchases"][0]["id"])
    partial = await conn.fetchrow("SELECT * FROM get_order($1)", order["id"])
    assert partial["status"] == "partially_cancelled"
    assert [p["status"] for p in partial["purchases"]] == ["cancelled", "active", "active"]
    assert await sold(conn, a) == (5, 0, 0)
    assert await conn.fetchval("SELECT remaining FROM get_quota($1)", quota_id) == 2
    assert [t for t, _ in await events(conn, ["order.cancelled"])] == []
    cancelled = await conn.fetchrow("SELECT * FROM cancel_order($1)", order["id"])
    assert cancelled["status"] == "cancelled" and {p["status"] for p in cancelled["purchases"]} == {"cancelled"}
    assert [await sold(conn, o) for o in (a, b, c)] == [(5, 0, 0)] * 3
    assert await conn.fetchval("SELECT remaining FROM get_quota($1)", quota_id) == 6
    assert (await conn.fetchrow("SELECT * FROM cancel_order($1)", order["id"]))["status"] == "cancelled"
    assert [t for t, _ in await events(conn, ["order.cancelled"])] == ["order.cancelled"]
    # Cancelling line by line ends cancelled too.
    other = await place(conn, [(a, 1), (b, 1)])
    for bought in other["purchases"]:
        await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    assert (await conn.fetchrow("SELECT status FROM get_order($1)", other["id"]))["status"] == "cancelled"
    held = await place(conn, [(a, 1)], ttl="5 minutes")
    assert (await refused(conn.fetchrow("SELECT * FROM cancel_order($1)", held["id"]))).sqlstate == "TA021"
    await books_balance(conn)


async def test_unknown_orders_are_TA017(conn):
    for call in ("get_order", "confirm_order", "release_order", "cancel_order"):
        assert (await refused(conn.fetchrow(f"SELECT * FROM {call}($1)", uuid.uuid4()))).sqlstate == "TA017"
        error = await refused(conn.fetchrow(f"SELECT * FROM {call}(NULL)"))
        assert error.sqlstate == ("TA017" if call == "get_order" else "TA001")


async def test_a_retried_order_with_its_key_is_placed_once(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    first = await place(conn, [(a, 1), (b, 2)], key="checkout-7", caller="shop")
    again = await place(conn, [(a, 1), (b, 2)], key="checkout-7", caller="shop")
    assert again["id"] == first["id"] and [p["id"] for p in again["purchases"]] == [p["id"] for p in first["purchases"]]
    assert await sold(conn, b) == (8, 0, 2)
    error = await refused(place(conn, [(a, 1)], key="checkout-7", caller="shop"))
    assert error.sqlstate == "TA005"
    error = await refused(place(conn, [(a, 1), (b, 2)], ttl="1 minute", key="checkout-7", caller="shop"))
    assert error.sqlstate == "TA005"
    # Another caller's or user's key is another key.
    assert (await place(conn, [(a, 1), (b, 2)], key="checkout-7", caller="other"))["id"] != first["id"]
    assert (await place(conn, [(a, 1), (b, 2)], key="checkout-7", caller="shop", user_id=uuid.uuid4()))["id"] != first["id"]
    # A held order's retry answers the order as it is now.
    held = await place(conn, [(a, 1)], ttl="5 minutes", key="hold-1")
    await conn.fetchrow("SELECT * FROM confirm_order($1)", held["id"])
    retried = await place(conn, [(a, 1)], ttl="5 minutes", key="hold-1")
    assert (retried["id"], retried["status"]) == (held["id"], "confirmed")
    await books_balance(conn)


async def test_max_per_user_counts_each_line_with_what_the_user_has(conn):
    a, b = await create_option(conn, 10, max_per_user=2), await create_option(conn, 10)
    await purchase(conn, a, 1)
    error = await refused(place(conn, [(b, 1), (a, 2)]))
    assert error.sqlstate == "TA007"
    assert json.loads(error.detail)[0]["line"] == 2
    assert await sold(conn, b) == (10, 0, 0)


async def test_orders_racing_single_purchases_for_a_quota_are_each_all_or_nothing(conn, database_url):
    options = [await create_option(conn, 40) for _ in range(3)]
    quota_id = (await create_quota(conn, 45, options))["id"]

    def order_call(n):
        lines = [(option, 1 + n % 2) for option in options]
        random.shuffle(lines)
        return lambda c: c.fetchrow("SELECT * FROM place_order($1, $2::order_line[])", uuid.uuid4(), lines)

    def purchase_call(n):
        return lambda c: c.fetchrow("SELECT * FROM purchase_tickets($1, $2, 1)", options[n % 3], uuid.uuid4())
    calls = [order_call(n) for n in range(30)] + [purchase_call(n) for n in range(60)]
    random.shuffle(calls)
    results = await asyncio.wait_for(many(database_url, 20, calls), timeout=120)
    assert {r.sqlstate for r in results if isinstance(r, asyncpg.PostgresError)} <= {"TA003", "TA014"}
    placed = [r for r in results if not isinstance(r, Exception) and "lines" in r.keys()]
    assert placed and len(placed) < 30
    for order in placed:  # every line bought, each by its own purchase of the order
        lines = await conn.fetch("SELECT ticket_option_id, quantity, order_id FROM purchases WHERE order_id = $1",
                                 order["id"])
        assert sorted((row["ticket_option_id"], row["quantity"]) for row in lines) == sorted(
            tuple(line) for line in order["lines"])
    # Refused orders left nothing: every purchase is a single one or a line of a placed order.
    assert await conn.fetchval("SELECT count(*) FROM purchases WHERE order_id IS NOT NULL") == 3 * len(placed)
    quota = await conn.fetchrow("SELECT sold, remaining FROM get_quota($1)", quota_id)
    assert quota["sold"] == sum(sum(p["quantity"] for p in o["purchases"]) for o in placed) + sum(
        1 for r in results if not isinstance(r, Exception) and "lines" not in r.keys())
    assert quota["sold"] <= 45
    await books_balance(conn)


async def test_orders_in_opposite_line_orders_and_every_other_call_never_deadlock(conn, database_url):
    """Orders [a, b] and [b, a] (and through a quota c, which shares one with a), with purchases, holds,
    confirms, releases, cancels and the sweeper on the same options: each call takes its locks in the
    one order (lock_options), so no call ever waits in a cycle (40P01 would be a deadlock)."""
    a, b, c = [await create_option(conn, 1000) for _ in range(3)]
    await create_quota(conn, 2000, [a, c])
    held_orders = [await place(conn, [(a, 1), (b, 1)], ttl="10 minutes", user_id=uuid.uuid4()) for _ in range(20)]
    bought_orders = [await place(conn, [(b, 1), (c, 1)], user_id=uuid.uuid4()) for _ in range(20)]

    def call(n):
        kind = n % 8
        if kind == 0:
            return lambda x: x.fetchrow("SELECT * FROM place_order(gen_random_uuid(), $1::order_line[])", [(a, 1), (b, 1)])
        if kind == 1:
            return lambda x: x.fetchrow("SELECT * FROM place_order(gen_random_uuid(), $1::order_line[], '1 minute')",
                                        [(c, 1), (b, 1), (a, 1)])
        if kind == 2:
            return lambda x: x.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", (a, b, c)[n % 3])
        if kind == 3:
            return lambda x: x.fetchrow("SELECT * FROM hold_tickets($1, gen_random_uuid(), 1)", (c, b, a)[n % 3])
        if kind == 4:
            return lambda x: x.fetchrow("SELECT * FROM confirm_order($1)", held_orders[n % 20]["id"])
        if kind == 5:
            return lambda x: x.fetchrow("SELECT * FROM release_order($1)", held_orders[(n + 7) % 20]["id"])
        if kind == 6:
            return lambda x: x.fetchrow("SELECT * FROM cancel_purchase($1)", bought_orders[n % 20]["purchases"][n % 2]["id"])
        return lambda x: x.fetchval("SELECT release_expired_holds()")
    results = await asyncio.wait_for(many(database_url, 20, [call(n) for n in range(400)]), timeout=180)
    errors = {r.sqlstate for r in results if isinstance(r, asyncpg.PostgresError)}
    assert errors <= {"TA018", "TA019", "TA020"}, errors  # a confirm and a release of one order: one wins
    await books_balance(conn)


async def test_a_batch_of_orders_decides_each_whole_in_arrival_order(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    quota_id = (await create_quota(conn, 8, [a, b]))["id"]
    users = [uuid.uuid4() for _ in range(5)]
    rows = await conn.fetch("SELECT * FROM place_orders_batch($1::order_request[])", [
        (users[0], [(a, 3), (b, 2)], None, "k1", None),       # placed: 3 left in the quota
        (users[1], [(a, 2), (b, 2)], None, None, None),       # line 2 short after line 1: refused whole
        (users[2], [(b, 3)], timedelta(minutes=5), None, None),  # held: 0 left
        (users[0], [(a, 3), (b, 2)], None, "k1", None),       # the first order's key: the same order
        (None, [(a, 1)], None, None, None),                   # invalid
    ])
    assert [row["ordinal"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["refusal"] and row["refusal"]["sqlstate"] for row in rows] == [None, "TA014", None, None, "TA001"]
    assert json.loads(rows[1]["refusal"]["detail"])[0]["line"] == 2
    assert rows[0]["order"]["status"] == "confirmed" and rows[2]["order"]["status"] == "held"
    assert rows[3]["order"]["id"] == rows[0]["order"]["id"]
    assert tuple(await conn.fetchrow("SELECT sold, held, remaining FROM get_quota($1)", quota_id)) == (5, 3, 0)
    assert await conn.fetchval("SELECT count(*) FROM orders") == 2
    await books_balance(conn)
