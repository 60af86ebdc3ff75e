"""Idempotency keys on purchase_tickets and create_ticket_option."""

import asyncio
import uuid

import asyncpg
import pytest

from service import db

from tests.people import USER_ID

from .helpers import create_option, purchase


async def test_same_key_and_request_returns_the_first_purchase(conn, books):
    option_id = await create_option(conn, 10)
    first = await purchase(conn, option_id, 2, key="order-42")
    again = await purchase(conn, option_id, 2, key="order-42")
    assert dict(again) == dict(first)
    assert (await books(option_id))["sold"] == 2
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 1


async def test_same_key_for_a_different_request_raises_TA005(conn, books):
    option_id = await create_option(conn, 10)
    await purchase(conn, option_id, 2, key="order-42")
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 3, key="order-42")
    assert raised.value.sqlstate == "TA005"
    assert "order-42" in raised.value.message
    assert (await books(option_id))["sold"] == 2


async def test_a_key_belongs_to_its_caller_option_and_user(conn, books):
    """Another user, another option, another caller, or creating an option: each its own key space."""
    option_id, other_option_id = await create_option(conn, 10), await create_option(conn, 10)
    first = await purchase(conn, option_id, 2, key="order-7f3a")
    others = [
        await purchase(conn, option_id, 3, uuid.uuid4(), key="order-7f3a"),
        await purchase(conn, other_option_id, 3, key="order-7f3a"),
        await conn.fetchrow("SELECT * FROM purchase_tickets($1, $2, 3, 'order-7f3a', 'integrator-2')", option_id, USER_ID),
    ]
    await conn.execute("SELECT create_ticket_option('Gig', '', 5, NULL, 'order-7f3a')")
    assert len({first["id"], *(row["id"] for row in others)}) == 4
    assert (await books(option_id))["sold"] == 8
    # Each replays only in its own scope.
    replayed = await conn.fetchrow("SELECT * FROM purchase_tickets($1, $2, 3, 'order-7f3a', 'integrator-2')",
                                   option_id, USER_ID)
    assert replayed["id"] == others[2]["id"]
    assert (await purchase(conn, option_id, 2, key="order-7f3a"))["id"] == first["id"]


# "k-a, k-b": two Idempotency-Key headers as a proxy joins them (RFC 9110, 5.3), not one key.
@pytest.mark.parametrize("key", ["", "x" * 256, "line\nbreak", "caf\u00e9", "tab\there", "k-a, k-b", ","])
async def test_malformed_keys_raise_TA001(conn, key):
    option_id = await create_option(conn, 10)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 1, key=key)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "idempotency_key")


async def test_longest_printable_key_is_accepted(conn):
    option_id = await create_option(conn, 10)
    key = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord(",")) * 2 + "k" * 67
    assert len(key) == 255
    assert (await purchase(conn, option_id, 1, key=key))["quantity"] == 1


async def test_the_schema_refuses_a_key_with_a_comma(conn):
    """CHECK idempotency_keys_key_rule backs the rule of claim_idempotency_key."""
    option_id = await create_option(conn, 10)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, expires_at) "
            "VALUES ('|ticket_option', 'k-a, k-b', '{}', $1, now() + interval '1 day')", option_id)


async def test_a_retry_during_the_first_attempt_raises_TA006(conn, database_url):
    option_id = await create_option(conn, 10)
    other = await asyncpg.connect(database_url)
    try:
        first = other.transaction()
        await first.start()
        bought = await purchase(other, option_id, 1, key="in-flight")
        with pytest.raises(asyncpg.PostgresError) as raised:
            await purchase(conn, option_id, 1, key="in-flight")
        assert raised.value.sqlstate == "TA006"
        await first.commit()
    finally:
        await other.close()
    assert (await purchase(conn, option_id, 1, key="in-flight"))["id"] == bought["id"]


async def test_a_refused_request_is_not_remembered(conn):
    option_id = await create_option(conn, 2)
    held = await purchase(conn, option_id, 2)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await purchase(conn, option_id, 1, key="retry-me")
    assert raised.value.sqlstate == "TA003"
    await conn.execute("SELECT cancel_purchase($1)", held["id"])
    assert (await purchase(conn, option_id, 1, key="retry-me"))["quantity"] == 1


async def test_keys_expire_after_the_configured_ttl(conn):
    option_id = await create_option(conn, 10)
    await purchase(conn, option_id, 1, key="remembered")
    ttl = await conn.fetchval(
        "SELECT expires_at - created_at FROM idempotency_keys WHERE key = 'remembered'")
    assert ttl.total_seconds() == 24 * 3600

    await conn.execute("UPDATE settings SET idempotency_key_ttl = '0 seconds'")
    first = await purchase(conn, option_id, 1, key="short-lived")
    second = await purchase(conn, option_id, 1, key="short-lived")  # the first has expired
    assert first["id"] != second["id"]
    assert await conn.fetchval("SELECT purge_expired_idempotency_keys()") == 1
    assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_create_ticket_option_with_a_key(conn):
    first = await conn.fetchrow("SELECT * FROM create_ticket_option('Gig', 'x', 5, 2, 'new-gig')")
    again = await conn.fetchrow("SELECT * FROM create_ticket_option('Gig', 'x', 5, 2, 'new-gig')")
    assert again["id"] == first["id"]
    assert await conn.fetchval("SELECT count(*) FROM ticket_options") == 1
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM create_ticket_option('Gig', 'x', 6, 2, 'new-gig')")
    assert raised.value.sqlstate == "TA005"


async def test_concurrent_retries_with_one_key_buy_once(conn, owner_pool, books):
    option_id = await create_option(conn, 100)

    async def attempt():
        try:
            return (await purchase(owner_pool, option_id, 3, key="same-order"))["id"]
        except asyncpg.PostgresError as error:
            return error.sqlstate

    outcomes = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(50))), timeout=120)
    purchase_ids = {o for o in outcomes if isinstance(o, uuid.UUID)}
    assert len(purchase_ids) == 1
    assert set(outcomes) - purchase_ids <= {"TA006"}
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 1
    assert (await books(option_id))["sold"] == 3


async def test_a_large_backlog_of_expired_keys_is_purged_in_bounded_chunks(owner_pool):
    async with owner_pool.acquire() as conn:
        option_id = await create_option(conn, 10)
        await conn.execute(
            """INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, created_at, expires_at)
               SELECT '|ticket_option', 'old-' || i, '{}', $1, now() - interval '2 days', now() - interval '1 day'
               FROM generate_series(1, 25000) AS i""", option_id)
        await conn.execute("SET statement_timeout = '20s'")
        chunks = [await conn.fetchval("SELECT purge_expired_idempotency_keys()") for _ in range(3)]
        assert chunks == [10_000, 10_000, 5_000]
        await conn.execute(
            """INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, created_at, expires_at)
               SELECT '|ticket_option', 'old-' || i, '{}', $1, now() - interval '2 days', now() - interval '1 day'
               FROM generate_series(1, 25000) AS i""", option_id)
    # The server's purge loops over the chunks until the backlog is gone.
    assert await db.purge_backlog(owner_pool) == 25_000
    assert await owner_pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0


class CountingPool:
    """The pool purge_backlog is given, recording what each call answered."""

    def __init__(self, pool):
        self.pool, self.answers = pool, []

    async def fetchval(self, *args):
        self.answers.append(await self.pool.fetchval(*args))
        return self.answers[-1]


async def test_the_service_purges_in_the_chunks_it_asks_for(owner_pool, monkeypatch):
    """purge_backlog passes its chunk (db.PURGE_CHUNK) and stops at the first short one: it keeps
    no copy of the SQL function's own limit to compare with."""
    async with owner_pool.acquire() as conn:
        option_id = await create_option(conn, 10)
        await conn.execute(
            """INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, created_at, expires_at)
               SELECT '|ticket_option', 'old-' || i, '{}', $1, now() - interval '2 days', now() - interval '1 day'
               FROM generate_series(1, 25) AS i""", option_id)
    monkeypatch.setattr(db, "PURGE_CHUNK", 10)
    counting = CountingPool(owner_pool)
    assert await db.purge_backlog(counting) == 25
    assert counting.answers == [10, 10, 5]


@pytest.mark.parametrize("chunk", [None, 0, 100_001])
async def test_a_purge_chunk_outside_1_to_100000_is_refused(conn, chunk):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchval("SELECT purge_expired_idempotency_keys($1)", chunk)
    assert raised.value.sqlstate == "TA001" and "chunk" in raised.value.message
