"""Quotas, called directly: capacity shared by options, counted under the same locks as the options.

Expiry is tested by moving the SQL clock (settings.clock_offset, owner only), never by waiting."""

import asyncio
import random
import uuid

import asyncpg

from .helpers import (advance_clock, books_balance, create_option, create_quota, hold, many, purchase, refused,
                      ticket_requests)


async def quota(conn, quota_id):
    return await conn.fetchrow("SELECT * FROM get_quota($1)", quota_id)


async def test_a_quota_bounds_what_its_options_sell_together(conn):
    standing, seated = await create_option(conn, 10), await create_option(conn, 10)
    venue = await create_quota(conn, 5, [standing, seated])
    assert (venue["size"], venue["sold"], venue["held"], venue["remaining"]) == (5, 0, 0, 5)
    assert venue["ticket_option_ids"] == sorted([standing, seated])
    await purchase(conn, standing, 3)
    error = await refused(purchase(conn, seated, 3))
    assert error.sqlstate == "TA014"
    assert error.message == f'not enough tickets left in quota "Venue" ({venue["id"]}): 3 requested, 2 remaining'
    assert error.detail == f"quota_id: {venue['id']}, remaining: 2"
    assert (await purchase(conn, seated, 2))["quantity"] == 2
    assert (await quota(conn, venue["id"]))["remaining"] == 0
    option = await conn.fetchrow("SELECT * FROM get_ticket_option($1)", seated)
    assert (option["remaining"], option["available"], option["quota_ids"]) == (8, 0, [venue["id"]])
    await books_balance(conn)


async def test_an_option_must_fit_every_quota_it_is_in(conn):
    a, b, c = [await create_option(conn, 100) for _ in range(3)]
    wide = await create_quota(conn, 50, [a, b, c], name="Wide")
    narrow = await create_quota(conn, 4, [b], name="Narrow")
    await purchase(conn, a, 45)
    assert (await conn.fetchrow("SELECT available FROM get_ticket_option($1)", b))["available"] == 4
    error = await refused(purchase(conn, b, 5))
    assert error.sqlstate == "TA014"
    assert error.detail == f"quota_id: {narrow['id']}, remaining: 4"  # Wide has 5 left: Narrow is short
    assert (await purchase(conn, b, 4))["quantity"] == 4
    error = await refused(purchase(conn, c, 2))
    assert error.detail == f"quota_id: {wide['id']}, remaining: 1"
    await books_balance(conn)


async def test_a_batch_decides_in_arrival_order_counting_what_earlier_requests_took(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    await create_quota(conn, 6, [a, b])
    users = [uuid.uuid4() for _ in range(4)]
    rows = await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])", [
        (a, users[0], 3, None, None, None), (b, users[1], 2, None, None, None),
        (a, users[2], 2, None, None, None), (b, users[3], 1, None, None, None)])
    assert [(r["refusal"] or {}).get("sqlstate") for r in rows] == [None, None, "TA014", None]
    holds = await conn.fetch("SELECT * FROM hold_tickets_batch($1::ticket_request[])",
                             ticket_requests(b, [users[0]], [1]))
    assert holds[0]["refusal"]["sqlstate"] == "TA014"
    await books_balance(conn)


async def test_holds_count_in_the_quota_and_give_back_on_release_expiry_and_cancel(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    venue = await create_quota(conn, 4, [a, b])
    released = await hold(conn, a, 2)
    expiring = await hold(conn, b, 2, ttl="1 minute")
    assert (await quota(conn, venue["id"]))["held"] == 4
    assert (await refused(purchase(conn, a, 1))).sqlstate == "TA014"
    await conn.fetchrow("SELECT * FROM release_hold($1)", released["id"])
    assert tuple(await conn.fetchrow("SELECT held, remaining FROM get_quota($1)", venue["id"])) == (2, 2)
    await advance_clock(conn, "61 seconds")
    # Expired: free in the quota at once, before anything reclaims it ...
    assert tuple(await conn.fetchrow("SELECT held, remaining FROM get_quota($1)", venue["id"])) == (0, 4)
    assert (await conn.fetchrow("SELECT available FROM get_ticket_option($1)", a))["available"] == 4
    assert await conn.fetchval("SELECT held FROM quotas WHERE id = $1", venue["id"]) == 2
    # ... and a purchase of the OTHER option reclaims it (it locks every option of the quota).
    bought = await purchase(conn, a, 4)
    assert await conn.fetchval("SELECT status FROM holds WHERE id = $1", expiring["id"]) == "expired"
    assert tuple(await conn.fetchrow("SELECT sold, held FROM quotas WHERE id = $1", venue["id"])) == (4, 0)
    await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    assert (await quota(conn, venue["id"]))["remaining"] == 4
    confirmed = await hold(conn, b, 3)
    await conn.fetchrow("SELECT * FROM confirm_hold($1)", confirmed["id"])
    assert tuple(await conn.fetchrow("SELECT sold, held, remaining FROM get_quota($1)", venue["id"])) == (3, 0, 1)
    await books_balance(conn)


async def test_the_sweeper_gives_expired_holds_back_to_their_quotas(conn):
    a = await create_option(conn, 10)
    venue = await create_quota(conn, 5, [a])
    await hold(conn, a, 5, ttl="1 minute")
    await advance_clock(conn, "2 minutes")
    assert await conn.fetchval("SELECT release_expired_holds()") == 1
    assert tuple(await conn.fetchrow("SELECT sold, held FROM quotas WHERE id = $1", venue["id"])) == (0, 0)
    await books_balance(conn)


async def test_a_quota_starts_with_what_its_options_sold_and_hold_and_never_below_it(conn):
    a, b = await create_option(conn, 10), await create_option(conn, 10)
    await purchase(conn, a, 3)
    await hold(conn, b, 2)
    error = await refused(create_quota(conn, 4, [a, b]))
    assert error.sqlstate == "TA016"
    assert error.message == "size 4 is below what the quota's options have sold and hold now: 5 (3 sold, 2 held)"
    venue = await create_quota(conn, 5, [a, b])
    assert (venue["sold"], venue["held"], venue["remaining"]) == (3, 2, 0)
    error = await refused(conn.fetchrow("SELECT * FROM update_quota($1, 4)", venue["id"]))
    assert (error.sqlstate, error.detail) == ("TA016", "sold: 3, held: 2")
    grown = await conn.fetchrow("SELECT * FROM update_quota($1, 8)", venue["id"])
    assert (grown["size"], grown["remaining"]) == (8, 3)
    # Options out and in: sold and held counted anew from the options it now counts.
    narrowed = await conn.fetchrow("SELECT * FROM update_quota($1, p_ticket_option_ids => $2)", venue["id"], [b])
    assert (narrowed["sold"], narrowed["held"], narrowed["ticket_option_ids"]) == (0, 2, [b])
    assert (await conn.fetchrow("SELECT quota_ids FROM get_ticket_option($1)", a))["quota_ids"] == []
    assert (await purchase(conn, a, 7))["quantity"] == 7  # a is no longer bounded by it
    await books_balance(conn)


async def test_bad_quota_arguments_are_refused(conn):
    a = await create_option(conn, 10)
    for args, field in [
        ((None, 1, [a]), "name"), (("  ", 1, [a]), "name"), (("x" * 201, 1, [a]), "name"),
        (("Q", None, [a]), "size"), (("Q", -1, [a]), "size"), (("Q", 1, None), "ticket_option_ids"),
        (("Q", 1, [a, a]), "ticket_option_ids"), (("Q", 1, [a, None]), "ticket_option_ids"),
        (("Q", 1, [uuid.uuid4() for _ in range(101)]), "ticket_option_ids"),
    ]:
        error = await refused(conn.fetchrow("SELECT * FROM create_quota($1, $2, $3)", *args))
        assert (error.sqlstate, error.column_name) == ("TA001", field), args
    missing = uuid.uuid4()
    error = await refused(create_quota(conn, 1, [a, missing]))
    assert (error.sqlstate, error.message) == ("TA002", f"ticket option {missing} does not exist")
    for call in ("SELECT * FROM get_quota($1)", "SELECT * FROM update_quota($1, 3)"):
        assert (await refused(conn.fetchrow(call, uuid.uuid4()))).sqlstate == "TA015"
    assert await conn.fetchval("SELECT count(*) FROM quotas") == 0
    empty = await create_quota(conn, 0, [])
    assert (empty["ticket_option_ids"], empty["remaining"]) == ([], 0)


async def test_check_consistency_covers_every_quota(conn):
    a = await create_option(conn, 10)
    venue = await create_quota(conn, 5, [a])
    await purchase(conn, a, 2)
    await books_balance(conn)
    await conn.execute("UPDATE quotas SET sold = 1 WHERE id = $1", venue["id"])
    found = [tuple(r) for r in await conn.fetch("SELECT invariant, ticket_option_id FROM check_consistency()")]
    assert found == [("quota_sold_is_options_sold", None)]


async def test_a_shared_quota_is_never_oversold_by_300_concurrent_purchases_and_holds(conn, database_url):
    a, b = await create_option(conn, 80), await create_option(conn, 80)
    venue = await create_quota(conn, 100, [a, b])

    def call(n):
        option_id = (a, b)[n % 2]
        quantity = 1 + n % 3
        if n % 3 == 0:
            return lambda c: c.fetchrow("SELECT * FROM hold_tickets($1, $2, $3)", option_id, uuid.uuid4(), quantity)
        return lambda c: c.fetchrow("SELECT * FROM purchase_tickets($1, $2, $3)", option_id, uuid.uuid4(), quantity)
    calls = [call(n) for n in range(300)]
    random.shuffle(calls)
    results = await asyncio.wait_for(many(database_url, 20, calls), timeout=120)
    errors = {r.sqlstate for r in results if isinstance(r, asyncpg.PostgresError)}
    assert errors <= {"TA003", "TA014"}, errors
    taken = sum(r["quantity"] for r in results if not isinstance(r, Exception))
    assert taken == 100  # 300 requests of 1..3 want far more: the quota, not an option, ran out
    state = await quota(conn, venue["id"])
    assert (state["sold"] + state["held"], state["remaining"]) == (100, 0)
    await books_balance(conn)
