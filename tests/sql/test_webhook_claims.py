"""Delivery bookkeeping in SQL: claims are exclusive, leases expire, answers move the subscription."""

import asyncio

import asyncpg

from .helpers import create_option

LEASE = "make_interval(secs => 30)"


async def subscribe(conn, types=None):
    return await conn.fetchval("SELECT id FROM create_webhook('http://example.com/hook', $1)", types)


async def claim(conn, limit=10):
    return await conn.fetch(f"SELECT * FROM claim_webhook_deliveries($1, {LEASE})", limit)


async def test_concurrent_workers_never_claim_one_attempt_twice(database_url, conn):
    hooks = [await subscribe(conn) for _ in range(20)]
    await create_option(conn, 5)
    workers = [await asyncpg.connect(database_url) for _ in range(4)]

    async def rounds_of(worker):
        return [row for _ in range(3) for row in await claim(worker, 3)]

    try:
        rounds = await asyncio.gather(*(rounds_of(worker) for worker in workers))
    finally:
        for worker in workers:
            await worker.close()
    claimed = [row["webhook_id"] for rows in rounds for row in rows]
    assert len(claimed) == len(set(claimed)) == len(hooks)  # each subscription's event: one attempt, one worker


async def test_an_abandoned_attempt_is_claimed_again_after_its_lease(conn):
    hook = await subscribe(conn)
    await create_option(conn, 5)
    (first,) = await claim(conn)
    assert await claim(conn) == []  # leased
    await conn.execute("UPDATE webhooks SET leased_until = now() - interval '1 second' WHERE id = $1", hook)
    (second,) = await claim(conn)
    assert (second["event_id"], second["attempt"]) == (first["event_id"], 2)
    # The first worker's late answer is recorded but does not move the subscription.
    assert await conn.fetchval("SELECT finish_webhook_attempt($1, 200)", first["attempt_id"]) == "delivered"
    assert await conn.fetchval("SELECT pending_event_id FROM webhooks WHERE id = $1", hook) == first["event_id"]
    await conn.fetchval("SELECT finish_webhook_attempt($1, 200)", second["attempt_id"])
    assert await conn.fetchval("SELECT pending_event_id FROM webhooks WHERE id = $1", hook) is None


async def test_a_failure_is_retried_later_and_holds_back_the_next_event(conn):
    hook = await subscribe(conn)
    await create_option(conn, 5)
    await create_option(conn, 5)
    (first,) = await claim(conn)
    assert await conn.fetchval("SELECT finish_webhook_attempt($1, 503)", first["attempt_id"]) == "failed"
    assert await claim(conn) == []  # not before its retry delay
    await conn.execute("UPDATE webhooks SET next_attempt_at = now() WHERE id = $1", hook)
    (retry,) = await claim(conn)
    assert (retry["event_id"], retry["attempt"]) == (first["event_id"], 2)
    await conn.fetchval("SELECT finish_webhook_attempt($1, 204)", retry["attempt_id"])
    (second,) = await claim(conn)
    assert second["event_id"] > first["event_id"] and second["attempt"] == 1


async def test_a_subscription_failing_past_the_give_up_time_is_disabled(conn):
    hook = await subscribe(conn)
    await create_option(conn, 5)
    (first,) = await claim(conn)
    await conn.fetchval("SELECT finish_webhook_attempt($1, 500)", first["attempt_id"])
    await conn.execute("UPDATE webhooks SET first_failed_at = now() - interval '4 days', next_attempt_at = now() "
                       "WHERE id = $1", hook)
    (again,) = await claim(conn)
    await conn.fetchval("SELECT finish_webhook_attempt($1, 500)", again["attempt_id"])
    enabled, reason = await conn.fetchrow("SELECT enabled, disabled_reason FROM webhooks WHERE id = $1", hook)
    assert not enabled and "failed" in reason


async def test_retry_delays_grow_exponentially_with_jitter_and_a_cap(conn):
    delays = await conn.fetch("SELECT n, extract(epoch FROM retry_delay(n)) AS s FROM generate_series(1, 40) AS n")
    for row in delays:
        nominal = min(10 * 2 ** (row["n"] - 1), 3600)
        assert nominal / 2 <= float(row["s"]) < nominal, row
    # Retried for at least 24 hours before giving up: the give-up time is at least that.
    assert await conn.fetchval("SELECT webhook_give_up_after >= interval '24 hours' FROM settings")


async def test_only_subscribed_types_are_claimed_and_the_api_role_cannot_read_secrets(conn, api_database_url):
    await subscribe(conn, ["purchase.created"])
    await create_option(conn, 5)
    assert await claim(conn) == []
    api = await asyncpg.connect(api_database_url)
    try:
        for query in ("SELECT * FROM ticket_allocation.webhook_secrets", "SELECT * FROM api.list_webhooks()",
                      "SELECT * FROM api.claim_webhook_deliveries(1, '1 minute')"):
            try:
                await api.fetch(query)
            except asyncpg.InsufficientPrivilegeError:
                continue
            raise AssertionError(f"the API role could run {query}")
    finally:
        await api.close()


async def test_subscriptions_with_nothing_to_send_do_not_use_up_a_claim(conn):
    idle = [await subscribe(conn, ["purchase.cancelled"]) for _ in range(5)]  # due first: oldest
    busy = await subscribe(conn)
    await create_option(conn, 5)
    (delivery,) = await claim(conn, 1)
    assert delivery["webhook_id"] == busy
    # None of the idle ones was given an attempt (nor a slot of the claim).
    assert await conn.fetchval("SELECT count(*) FROM webhook_attempts WHERE webhook_id = ANY($1)", idle) == 0


async def test_a_subscription_never_has_two_attempts_in_flight(conn):
    hook = await subscribe(conn)
    for _ in range(3):
        await create_option(conn, 5)
    (first,) = await claim(conn, 10)
    assert await claim(conn, 10) == []  # its next events wait for this attempt's answer, whoever asks
    await conn.fetchval("SELECT finish_webhook_attempt($1, 200)", first["attempt_id"])
    (second,) = await claim(conn, 10)
    assert second["webhook_id"] == hook and second["event_id"] > first["event_id"]


async def test_a_new_subscription_gets_what_the_feed_has_not_shown_yet(database_url, conn):
    """Events committed before it (the feed showed them) are not sent; events of a transaction that
    was open when it was created are, though written before it (docs/events-and-webhooks.md: Webhooks)."""
    await create_option(conn, 5)  # committed, and shown by the feed: before the subscription
    early = await asyncpg.connect(database_url)
    try:
        transaction = early.transaction()
        await transaction.start()
        written_before = await early.fetchval("SELECT id FROM create_ticket_option('Early', '', 5)")
        hook = await subscribe(conn)
        await transaction.commit()
    finally:
        await early.close()
    later = await create_option(conn, 5)
    (first,) = await claim(conn)
    await conn.fetchval("SELECT finish_webhook_attempt($1, 200)", first["attempt_id"])
    (second,) = await claim(conn)
    await conn.fetchval("SELECT finish_webhook_attempt($1, 200)", second["attempt_id"])
    assert await claim(conn) == []
    sent = [await conn.fetchval("SELECT data->>'id' FROM events WHERE id = $1", row["event_id"]) for row in (first, second)]
    assert sent == [str(written_before), str(later)] and first["webhook_id"] == hook
