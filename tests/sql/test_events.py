"""The outbox and its feed: events in the changing transaction, and a feed that never skips."""

import json
import random
import uuid
from datetime import timedelta

import asyncpg
import hypothesis.strategies as st
import psycopg
from hypothesis import HealthCheck, given, settings

from ..people import USER_ID
from .helpers import create_option, purchase, ticket_requests


async def feed(conn, cursor=None, limit=1000, types=None):
    return await conn.fetch("SELECT * FROM events_after($1, $2, $3)", cursor, limit, types)


async def test_each_change_appends_its_events_with_the_resource_as_data(conn):
    option_id = await create_option(conn, 3)
    bought = await purchase(conn, option_id, 3)
    await conn.fetchrow("SELECT * FROM cancel_purchase($1)", bought["id"])
    events = await feed(conn)
    assert [e["type"] for e in events] == [
        "ticket_option.created", "purchase.created", "ticket_option.sold_out", "purchase.cancelled",
        "ticket_option.back_on_sale"]
    created = json.loads(events[0]["data"])
    assert created["allocation"] == 3 and "remaining" not in created and created["id"] == str(option_id)
    sold_out = json.loads(events[2]["data"])
    assert (sold_out["allocation"], sold_out["sold"]) == (0, 3)
    cancelled = json.loads(events[3]["data"])
    assert cancelled["status"] == "cancelled" and cancelled["id"] == str(bought["id"])


async def test_holds_append_their_events_each_in_the_changing_transaction(conn):
    """hold.created for each hold; hold.released; hold.expired when the next call that locks the
    option reclaims it; on confirm, the purchase's purchase.created, then hold.confirmed."""
    option_id = await create_option(conn, 3)
    users = [uuid.uuid4() for _ in range(3)]
    confirmed, released, expiring = [
        (await conn.fetchrow("SELECT * FROM hold_tickets($1, $2, 1, $3)", option_id, user, ttl))["id"]
        for user, ttl in zip(users, [timedelta(minutes=10), timedelta(minutes=10), timedelta(minutes=1)])]
    await conn.fetchrow("SELECT * FROM release_hold($1)", released)
    await conn.execute("UPDATE settings SET clock_offset = '2 minutes'")  # the third hold is past expires_at
    await conn.fetchrow("SELECT * FROM confirm_hold($1)", confirmed)  # locks the option: reclaims the third
    events = [(e["type"], json.loads(e["data"])) for e in await feed(conn)]
    assert [(kind, data.get("id")) for kind, data in events[1:]] == [
        ("hold.created", str(confirmed)), ("hold.created", str(released)), ("hold.created", str(expiring)),
        ("hold.released", str(released)),
        ("hold.expired", str(expiring)),
        ("purchase.created", events[6][1]["id"]),
        ("hold.confirmed", str(confirmed)),
    ]
    statuses = [data["status"] for kind, data in events[1:] if kind.startswith("hold.")]
    assert statuses == ["held", "held", "held", "released", "expired", "confirmed"]
    assert events[-1][1]["purchase_id"] == events[6][1]["id"]


async def test_a_rolled_back_change_leaves_no_event(conn):
    option_id = await create_option(conn, 5)
    tx = conn.transaction()
    await tx.start()
    await purchase(conn, option_id, 2)
    await tx.rollback()
    assert [e["type"] for e in await feed(conn)] == ["ticket_option.created"]


async def test_a_batch_writes_one_event_per_purchase_in_order(conn):
    option_id = await create_option(conn, 10)
    users = [uuid.uuid4() for _ in range(5)]
    await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                     ticket_requests(option_id, users, [2, 2, 20, 2, 2]))
    events = [e for e in await feed(conn) if e["type"] == "purchase.created"]
    assert [uuid.UUID(json.loads(e["data"])["user_id"]) for e in events] == [users[0], users[1], users[3], users[4]]


async def test_the_cursor_pages_and_stays_at_the_end(conn):
    option_id = await create_option(conn, 10)
    for _ in range(4):
        await purchase(conn, option_id, 1)
    first = await feed(conn, limit=2)
    rest = await feed(conn, first[-1]["cursor"], limit=10)
    assert [e["id"] for e in first + rest] == [e["id"] for e in await feed(conn)]
    assert await feed(conn, rest[-1]["cursor"]) == []
    only = await feed(conn, types=["purchase.created"])
    assert len(only) == 4 and {e["type"] for e in only} == {"purchase.created"}


async def test_bad_arguments_are_refused(conn):
    for args in ((None, 0, None), ("nonsense", 10, None), (None, 10, ["purchase.made"])):
        try:
            await conn.fetch("SELECT * FROM events_after($1, $2, $3)", *args)
        except asyncpg.PostgresError as error:
            assert error.sqlstate == "TA001"
        else:
            raise AssertionError(args)


async def test_a_confirmation_that_sells_out_says_so_after_the_hold_is_confirmed(conn):
    """Events derived from the option's state come after the events of the change that made it."""
    option_id = await create_option(conn, 2)
    hold = await conn.fetchrow("SELECT * FROM hold_tickets($1, $2, 2)", option_id, USER_ID)
    await conn.fetchrow("SELECT * FROM confirm_hold($1)", hold["id"])
    assert [e["type"] for e in await feed(conn)] == [
        "ticket_option.created", "hold.created", "purchase.created", "hold.confirmed", "ticket_option.sold_out"]
    sold_out = json.loads((await feed(conn))[-1]["data"])
    assert (sold_out["allocation"], sold_out["held"], sold_out["sold"]) == (0, 0, 2)


async def test_held_tickets_are_not_sold_out_nor_back_on_sale_when_released(conn):
    """Stock events count held tickets as stock: holding every ticket sells nothing out, and
    releasing them brings nothing back on sale."""
    option_id = await create_option(conn, 2)
    hold = await conn.fetchrow("SELECT * FROM hold_tickets($1, $2, 2)", option_id, USER_ID)
    await conn.fetchrow("SELECT * FROM release_hold($1)", hold["id"])
    assert [e["type"] for e in await feed(conn)] == ["ticket_option.created", "hold.created", "hold.released"]


async def test_a_page_stops_at_its_byte_budget(conn):
    """40 purchases of 1,000 tickets (about 40 kB of ticket ids each): a page of limit 1000 stops
    at the event that brings it to the budget, and the next pages carry on, none skipped."""
    budget = await conn.fetchval("SELECT events_page_byte_budget()")
    option_id = await create_option(conn, 40_000)
    await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                     ticket_requests(option_id, [uuid.uuid4() for _ in range(40)], [1000] * 40))
    pages, cursor = [], None
    for _ in range(20):  # bounded: about 26 events a page
        page = await feed(conn, cursor, limit=1000)
        if not page:
            break
        pages.append(page)
        cursor = page[-1]["cursor"]
    sizes = [[len(e["data"].encode()) for e in page] for page in pages]
    assert len(pages) >= 2
    assert all(sum(page[:-1]) < budget <= sum(page) for page in sizes[:-1])  # full pages, by bytes
    assert sum(sizes[-1][:-1]) < budget
    assert max(sum(page) for page in sizes) < budget + 50_000  # at most one event past the budget
    followed = [e["id"] for page in pages for e in page]  # created, 40 purchases, sold_out, in order
    assert followed == [row["id"] for row in await conn.fetch("SELECT id FROM events ORDER BY xid, id")]
    assert len(followed) == 42
    # data_bytes is what the feed sends: the JSON text of the data.
    assert await conn.fetchval(
        "SELECT bool_and(data_bytes = octet_length(data::text)) FROM events") is True


async def test_events_written_before_their_size_was_kept_are_measured_as_read(conn):
    option_id = await create_option(conn, 40_000)
    await conn.fetch("SELECT * FROM purchase_tickets_batch($1::ticket_request[])",
                     ticket_requests(option_id, [uuid.uuid4() for _ in range(40)], [1000] * 40))
    await conn.execute("UPDATE events SET data_bytes = NULL")  # as rows from before migration 0015
    budget = await conn.fetchval("SELECT events_page_byte_budget()")
    page = await feed(conn, limit=1000)
    assert sum(len(e["data"].encode()) for e in page[:-1]) < budget < sum(len(e["data"].encode()) for e in page)
    typed = await feed(conn, limit=1000, types=["purchase.created"])
    assert len(typed) < 40 and sum(len(e["data"].encode()) for e in typed[:-1]) < budget


async def cursor_refusal(conn, cursor) -> asyncpg.PostgresError:
    try:
        await feed(conn, cursor)
    except asyncpg.PostgresError as error:
        return error
    raise AssertionError(f"{cursor!r} was taken for a cursor")


async def test_a_cursor_the_feed_never_gave_out_is_refused(conn):
    option_id = await create_option(conn, 10)
    await purchase(conn, option_id, 1)
    last = (await feed(conn))[-1]["cursor"]
    horizon = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
    last_id = await conn.fetchval("SELECT max(id) FROM events")
    for cursor in (
        f"{horizon + 1000}-0",                       # beyond anything committed
        f"{horizon}-{last_id}",                      # at the horizon: not below it
        f"1-{last_id + 1000}",                       # an id the sequence never handed out
        "99999999999999999999-0", "0-9999999999999999999",  # beyond xid8 and bigint
        "18446744073709551615-1",                    # the largest xid8
        "0-1", "", "-0", "1-2-3", " 1-2", "1_2",
    ):
        error = await cursor_refusal(conn, cursor)
        assert (error.sqlstate, error.column_name) == ("TA001", "after"), cursor
        assert error.message.startswith("after is not a cursor of this feed"), error.message
    assert await feed(conn, last) == []  # the feed's own cursors, the last one too, still work
    assert len(await feed(conn, "0-0")) == 2


async def test_a_transaction_that_commits_after_a_later_one_is_not_skipped(database_url, conn):
    """The classic outbox trap: A takes the smaller id but commits after B. A follower reading
    in id order would pass over A's event; this feed holds B's back until A ends."""
    option_a, option_b = await create_option(conn, 5), await create_option(conn, 5)
    seen = [e["id"] for e in await feed(conn)]
    cursor = (await feed(conn))[-1]["cursor"]
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        tx_a = a.transaction()
        await tx_a.start()
        first = await purchase(a, option_a, 1)   # the smaller event id
        await b.fetchrow("SELECT * FROM purchase_tickets($1, $2, 1)", option_b, USER_ID)  # committed at once
        page = await feed(conn, cursor)
        assert page == []  # B's event waits: A, still running, may commit an event sorting before it
        await tx_a.commit()
        page = await feed(conn, cursor)
        assert [json.loads(e["data"])["ticket_option_id"] for e in page] == [str(option_a), str(option_b)]
        assert json.loads(page[0]["data"])["id"] == str(first["id"])
        assert not set(e["id"] for e in page) & set(seen)
    finally:
        await a.close()
        await b.close()


async def test_a_follower_sees_every_committed_event_once_under_random_interleavings(database_url, conn):
    # One option per connection: open transactions on one option would wait for each other's lock.
    options = [await create_option(conn, 10_000) for _ in range(4)]
    cursor = (await feed(conn))[-1]["cursor"]
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    rng = random.Random(13)
    committed, followed = set(), []
    open_tx: dict[int, tuple] = {}
    try:
        for _ in range(300):
            n = rng.randrange(len(connections))
            worker = connections[n]
            if n not in open_tx:
                tx = worker.transaction()
                await tx.start()
                open_tx[n] = (tx, [])
            tx, ids = open_tx[n]
            step = rng.random()
            if step < 0.5:
                bought = await purchase(worker, options[n], 1, user_id=uuid.uuid4())
                ids.append(str(bought["id"]))
            elif step < 0.8:
                await tx.commit()
                committed.update(ids)
                del open_tx[n]
            else:
                await tx.rollback()
                del open_tx[n]
            page = await feed(conn, cursor, limit=rng.randint(1, 5))
            if page:
                cursor = page[-1]["cursor"]
                followed += page
        for n, (tx, ids) in list(open_tx.items()):
            await tx.commit()
            committed.update(ids)
        for _ in range(1000):  # bounded: at most 5 events a page
            page = await feed(conn, cursor, limit=5)
            if not page:
                break
            cursor = page[-1]["cursor"]
            followed += page
    finally:
        for worker in connections:
            await worker.close()
    purchases = [json.loads(e["data"])["id"] for e in followed if e["type"] == "purchase.created"]
    assert len(purchases) == len(set(purchases))  # once each
    assert set(purchases) == committed  # every committed one, no rolled-back one
    assert len(committed) > 50


async def test_purge_deletes_old_events_in_chunks(conn):
    option_id = await create_option(conn, 10)
    for _ in range(5):
        await purchase(conn, option_id, 1)
    await conn.execute("UPDATE events SET occurred_at = now() - interval '8 days' WHERE id <= (SELECT min(id) + 3 FROM events)")
    assert await conn.fetchval("SELECT purge_old_events(3)") == 3
    assert await conn.fetchval("SELECT purge_old_events(3)") == 1
    assert await conn.fetchval("SELECT purge_old_events(3)") == 0
    assert await conn.fetchval("SELECT count(*) FROM events") == 2


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["buy", "cancel", "rollback"]), st.integers(1, 4), st.integers(0, 20)),
    min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_the_feed_equals_the_committed_history(database_url, operations):
    """Whatever is bought, cancelled or rolled back, the feed has exactly the committed purchases'
    and cancellations' events, and each sold-out / back-on-sale transition."""
    with psycopg.connect(database_url, autocommit=True) as db:
        start = db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        option_id = db.execute("SELECT id FROM create_ticket_option('Gig', '', 6)").fetchone()[0]
        expected, active, remaining = [("ticket_option.created", str(option_id))], [], 6
        quantity_of = {}
        for kind, quantity, pick in operations:
            if kind == "cancel" and active:
                purchase_id = active.pop(pick % len(active))
                db.execute("SELECT cancel_purchase(%s)", (purchase_id,))
                expected.append(("purchase.cancelled", str(purchase_id)))
                if remaining == 0:
                    expected.append(("ticket_option.back_on_sale", str(option_id)))
                remaining += quantity_of[purchase_id]
            elif kind in ("buy", "rollback") and quantity <= remaining:
                with db.transaction(force_rollback=kind == "rollback"):
                    purchase_id = db.execute("SELECT id FROM purchase_tickets(%s, %s, %s)",
                                             (option_id, uuid.uuid4(), quantity)).fetchone()[0]
                if kind == "buy":
                    quantity_of[purchase_id] = quantity
                    active.append(purchase_id)
                    expected.append(("purchase.created", str(purchase_id)))
                    remaining -= quantity
                    if remaining == 0:
                        expected.append(("ticket_option.sold_out", str(option_id)))
        rows = db.execute("SELECT type, data ->> 'id' FROM events_after(NULL, 1000) WHERE id > %s", (start,)).fetchall()
        assert [tuple(row) for row in rows] == expected
