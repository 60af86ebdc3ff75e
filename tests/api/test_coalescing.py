"""Purchases that arrive while a call is in flight go as one batch, whatever their options; a locked
option's requests wait in calls of their own."""

import asyncio
import random
import uuid
from collections import Counter

import asyncpg
import pytest

from service import coalescing
from service.keys import PURCHASES

from ..polling import wait_until
from .helpers import HeldOptionLock, answer, assert_problem, buy, create_option


@pytest.fixture
def database_settings():
    # The tests hold an option's lock while purchases queue; the API role's 1 s would end them.
    return {"lock_timeout": "60s"}


def queued(client, option_id):
    """How many purchases of the option wait in the app for a call in flight."""
    return client.app[PURCHASES].waiting_for(uuid.UUID(str(option_id))) if client.app else 0


async def run_as_one_batch(client, database_url, option_id, requests, setup=None):
    """A leader purchase (quantity 1) goes first; `requests` (buy()'s arguments: quantity, and user_id,
    key when given; each of a buyer of its own by default) queue behind it and go as one batch."""
    async with HeldOptionLock(database_url, option_id) as held:
        leader = asyncio.create_task(answer(buy(client, option_id, 1)))

        async def leader_blocked():
            return await held.blocked_calls() == 1
        await wait_until(leader_blocked, "the leader to wait for the option's lock")
        followers = []
        for request in requests:  # one at a time, so that they queue in this order
            followers.append(asyncio.create_task(answer(buy(client, option_id, **{"user_id": uuid.uuid4(), **request}))))
            await wait_until(lambda count=len(followers): queued(client, option_id) == count,
                             f"{len(followers)} purchases queued behind the leader")
        if setup:
            await setup(held.conn)
    return await leader, await asyncio.gather(*followers)


async def test_queued_purchases_share_one_call_and_one_transaction(client, database_url, conn, books):
    option = await create_option(client, 100)
    leader, followers = await run_as_one_batch(client, database_url, option["id"], [{"quantity": 1}] * 10)
    assert leader[0] == 201 and [f[0] for f in followers] == [201] * 10
    # now() is the transaction's start: one for the leader, one for the whole batch.
    assert await conn.fetchval("SELECT count(DISTINCT created_at) FROM purchases") == 2
    assert (await books(option["id"]))["sold"] == 11


async def test_a_batch_with_mixed_outcomes(client, database_url):
    option = await create_option(client, 6, max_per_user=2)
    user = uuid.uuid4()
    leader, followers = await run_as_one_batch(client, database_url, option["id"], [
        {"quantity": 2, "user_id": user, "key": "a"},  # bought (5 left -> 3)
        {"quantity": 2, "user_id": user, "key": "a"},  # the same request again: the same purchase
        {"quantity": 1, "user_id": user, "key": "a"},  # the same key, another request: 422
        {"quantity": 1, "user_id": user},              # user already holds 2: 409 per-user limit
        {"quantity": 2},                               # bought (3 -> 1)
        {"quantity": 2},                               # only 1 left: 409
    ])
    statuses = [status for status, _, _ in followers]
    assert statuses == [201, 201, 422, 409, 201, 409]
    assert followers[0][2]["id"] == followers[1][2]["id"]
    assert followers[2][2]["type"] == "/problems/idempotency-key-reused"
    assert followers[3][2]["type"] == "/problems/per-user-limit-exceeded"
    assert followers[5][2]["type"] == "/problems/insufficient-tickets"
    state = await (await client.get(f"/ticket_options/{option['id']}")).json()
    assert (state["allocation"], state["sold"]) == (1, 5)


async def test_a_database_error_fails_the_whole_batch_cleanly(client, database_url, conn, books):
    option = await create_option(client, 100)

    async def fail_on_quantity_13(conn):
        # A fault inside the batch's transaction, after some of its rows were written.
        await conn.execute("""
            CREATE FUNCTION fail_13() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '40001'; END $$;
            CREATE TRIGGER fail_13 AFTER INSERT ON purchases FOR EACH ROW
            WHEN (NEW.quantity = 13) EXECUTE FUNCTION fail_13();""")
        await conn.execute("COMMIT; BEGIN")  # the trigger is in place before the lock goes

    leader, followers = await run_as_one_batch(
        client, database_url, option["id"], [{"quantity": quantity} for quantity in (1, 2, 13, 1)], setup=fail_on_quantity_13)
    assert leader[0] == 201
    for status, retry_after, body in followers:
        assert (status, body["type"]) == (503, "/problems/database-unavailable") and retry_after
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 1
    # With the one purchase: its one ticket, by check_consistency().
    assert await books(option["id"]) == {"remaining": 99, "sold": 1, "total": 100}
    # The option is not stuck: the next purchase goes through.
    assert (await answer(buy(client, option["id"], 2)))[0] == 201


async def test_unknown_option_fails_its_batch_as_404(client):
    status, _, body = await answer(buy(client, uuid.uuid4(), 1))
    assert (status, body["type"]) == (404, "/problems/ticket-option-not-found")
    await assert_problem(await client.get(f"/ticket_options/{uuid.uuid4()}"), 404)


async def calls_made(database_url) -> int:
    """purchase_tickets_batch calls that bought something: one transaction start (created_at) each."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(DISTINCT created_at) FROM purchases")
    finally:
        await conn.close()


async def test_a_batch_is_capped_by_the_tickets_it_inserts(client, database_url):
    option = await create_option(client, 20_000)
    quantity = 1000
    requests = [{"quantity": quantity}] * 10
    leader, followers = await run_as_one_batch(client, database_url, option["id"], requests)
    assert leader[0] == 201 and [f[0] for f in followers] == [201] * 10
    per_call = coalescing.MAX_BATCH_TICKETS // quantity
    assert await calls_made(database_url) == 1 + -(-len(requests) // per_call)


async def test_a_batch_is_capped_by_its_keyed_requests(client, database_url):
    option = await create_option(client, 1000)
    requests = [{"quantity": 1, "key": f"key-{n}"} for n in range(coalescing.MAX_BATCH_KEYS + 3)]
    leader, followers = await run_as_one_batch(client, database_url, option["id"], requests)
    assert leader[0] == 201 and {f[0] for f in followers} == {201}
    assert await calls_made(database_url) == 1 + 2


async def test_the_keyed_cap_is_well_within_the_lock_table(conn):
    # Each key of a batch holds an advisory lock until commit; the shared lock
    # table holds max_locks_per_transaction per connection (on average).
    per_connection = int(await conn.fetchval("SHOW max_locks_per_transaction"))
    assert coalescing.MAX_BATCH_KEYS <= per_connection // 2


async def test_a_full_queue_sheds_purchases_at_once_with_503(client, database_url):
    option = await create_option(client, 100)
    client.app[PURCHASES]._max_queue = 3  # test-only: a small queue
    async with HeldOptionLock(database_url, option["id"]) as held:
        leader = asyncio.create_task(answer(buy(client, option["id"], 1)))

        async def leader_blocked():
            return await held.blocked_calls() == 1
        await wait_until(leader_blocked, "the leader to wait for the option's lock")
        followers = [asyncio.create_task(answer(buy(client, option["id"], 1))) for _ in range(3)]

        await wait_until(lambda: queued(client, option["id"]) == 3, "3 purchases queued behind the leader")
        metrics = await (await client.get("/metrics")).text()
        assert 'ticket_allocation_purchase_queue_depth{worker="' in metrics
        assert any(line.startswith("ticket_allocation_purchase_queue_depth{") and line.endswith(" 3.0")
                   for line in metrics.splitlines())
        # Answered while the lock is still held: the service did not wait for it.
        status, retry_after, body = await answer(buy(client, option["id"], 1))
        assert (status, body["type"], retry_after) == (503, "/problems/database-unavailable", "1")
    assert (await leader)[0] == 201 and [(await f)[0] for f in followers] == [201] * 3
    metrics = await (await client.get("/metrics")).text()
    assert any(line.startswith("ticket_allocation_purchases_shed_total{") and line.endswith(" 1.0")
               for line in metrics.splitlines())
    # The leader's lane call (deferred: the option was locked), its call that waited for the lock,
    # then the three queued behind it as one.
    assert any(line.startswith("ticket_allocation_purchase_batch_size_count{") and line.endswith(" 3.0")
               for line in metrics.splitlines())


async def test_a_whole_batch_refusal_is_counted_as_a_refusal(client):
    status, _, _ = await answer(buy(client, uuid.uuid4(), 1))
    assert status == 404
    metrics = await (await client.get("/metrics")).text()
    assert any(line.startswith('ticket_allocation_purchases_refused_total{reason="ticket-option-not-found"')
               and line.endswith(" 1.0") for line in metrics.splitlines())


class StalledCalls(HeldOptionLock):
    """Another session holding a SHARE lock on the tickets table: every purchase call stalls at its
    INSERT of tickets, its options' locks taken, as a slow transaction would (the options' rows
    stay free)."""

    def __init__(self, database_url):
        self.database_url = database_url

    async def __aenter__(self):
        self.conn = await asyncpg.connect(self.database_url)
        self.transaction = self.conn.transaction()
        await self.transaction.start()
        await self.conn.execute("LOCK TABLE ticket_allocation.tickets IN SHARE MODE")
        return self


def batches(metrics: str, kind: str = "purchase") -> tuple[int, int]:
    """(calls, requests) of the purchase (or hold) batch-size histogram."""
    values = {}
    for line in metrics.splitlines():
        for field in ("count", "sum"):
            if line.startswith(f"ticket_allocation_{kind}_batch_size_{field}{{"):
                values[field] = int(float(line.rsplit(" ", 1)[1]))
    return values.get("count", 0), values.get("sum", 0)


async def options_in_lanes(client, allocation, per_lane):
    """{lane: [option ids]} with at least per_lane options in every lane of the purchase coalescer."""
    coalescer = client.app[PURCHASES]
    lanes: dict[int, list[uuid.UUID]] = {}
    while len(lanes) < coalescing.LANES or min(map(len, lanes.values())) < per_lane:
        option_id = uuid.UUID((await create_option(client, allocation))["id"])
        lanes.setdefault(coalescer.lane_of((option_id,)), []).append(option_id)
    return lanes


async def test_purchases_of_many_options_go_in_one_call(client, database_url, books):
    coalescer = client.app[PURCHASES]
    lanes = await options_in_lanes(client, 10, per_lane=12)
    leaders = [options[0] for options in lanes.values()]
    followers = [option for options in lanes.values() for option in options[1:]]
    async with StalledCalls(database_url) as stalled:
        leading = [asyncio.create_task(answer(buy(client, option, 1))) for option in leaders]

        async def lanes_busy():
            return await stalled.blocked_calls() == len(leaders)
        await wait_until(lanes_busy, "every lane's leader to stall")
        following = [asyncio.create_task(answer(buy(client, option, 2))) for option in followers]

        await wait_until(lambda: coalescer.queue_depth() == len(followers), "every follower queued")
    assert [status for status, _, _ in await asyncio.gather(*leading, *following)] == [201] * (len(leaders) + len(followers))
    # Per lane: its leader's call, then one call for every option waiting in it.
    assert batches(await (await client.get("/metrics")).text()) == (2 * len(lanes), len(leaders) + len(followers))
    assert await calls_made(database_url) == 2 * len(lanes)
    for option in followers:
        assert await books(option) == {"remaining": 8, "sold": 2, "total": 10}


async def test_a_locked_option_delays_the_others_of_its_batch_by_no_more_than_that_batch(client, database_url):
    leader, locked, free = next(options for options in (await options_in_lanes(client, 10, per_lane=3)).values())[:3]
    async with HeldOptionLock(database_url, locked) as psql_session:
        async with StalledCalls(database_url) as stalled:  # the lane's call in flight, for as long as needed
            leading = asyncio.create_task(answer(buy(client, leader, 1)))

            async def leader_in_flight():
                return await stalled.blocked_calls() == 1
            await wait_until(leader_in_flight, "the lane's leader to stall")
            buy_locked = asyncio.create_task(answer(buy(client, locked, 1)))

            await wait_until(lambda: queued(client, locked) == 1, "the locked option's purchase queued")
            buy_free = asyncio.create_task(answer(buy(client, free, 1)))

            await wait_until(lambda: queued(client, free) == 1, "the free option's purchase queued")
        # The lane's next call takes both; the locked option's purchase is deferred, the other bought.
        assert (await asyncio.wait_for(buy_free, timeout=10))[0] == 201
        assert (await leading)[0] == 201
        assert not buy_locked.done()

        async def waiting_for_the_lock():
            return await psql_session.blocked_calls() == 1
        # In a call of its own, as purchase_tickets would.
        await wait_until(waiting_for_the_lock, "the locked option's purchase to wait for its lock")
        assert not buy_locked.done()
    assert (await buy_locked)[0] == 201
    # The leader's call, the call of both, the locked option's own call.
    assert batches(await (await client.get("/metrics")).text()) == (3, 4)


async def test_concurrent_purchases_and_holds_over_many_options_each_get_their_answer(client, books):
    """300 requests at once over 50 options of 5 tickets, 6 requests each (4 purchases, 2 holds):
    on every option exactly 5 get theirs and one is refused, whatever batch each went in."""
    options = [(await create_option(client, 5))["id"] for _ in range(50)]
    requests = [(option, kind) for option in options for kind in ("purchase",) * 4 + ("hold",) * 2]
    random.Random(19).shuffle(requests)

    async def send(option, kind):
        response = await client.post(f"/ticket_options/{option}/{kind}s",
                                     json={"quantity": 1, "user_id": str(uuid.uuid4())})
        body = await response.json()
        return option, kind, response.status, body.get("type") or body["quantity"]

    answers = await asyncio.gather(*(send(option, kind) for option, kind in requests))
    assert Counter((option, status) for option, _, status, _ in answers) == Counter(
        {**{(option, 201): 5 for option in options}, **{(option, 409): 1 for option in options}})
    assert {answer for _, _, status, answer in answers if status == 409} == {"/problems/insufficient-tickets"}
    for option in options:
        bought = sum(1 for o, kind, status, _ in answers if o == option and kind == "purchase" and status == 201)
        assert await books(option) == {"remaining": 0, "sold": bought, "total": 5}  # check_consistency() too
    metrics = await (await client.get("/metrics")).text()
    purchase_calls, purchases = batches(metrics)
    hold_calls, holds = batches(metrics, "hold")
    # A request is counted again when it was deferred (the hold coalescer had its option locked,
    # or the other way round) and went on in a call of its own.
    assert purchases >= 200 and holds >= 100
    assert purchase_calls + hold_calls < 300
