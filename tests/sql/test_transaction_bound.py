"""The longest transaction of a calling role (settings.max_transaction_timeout): a psql session that
keeps its transaction busy (a statement every so often, never idle) cannot stall an option's sales or
freeze the feed for longer. PostgreSQL 17+ ends it at the role's transaction_timeout; on every
version the watchdog, api.end_overlong_transactions(), ends what outlives the bound (on 15 and 16
nothing else does). These run on the embedded PostgreSQL 18 and on Debian's 15 (.ci/run)."""

import asyncio
import json
import time

import asyncpg
import pytest

from service import embedded
from ..conftest import CALLING_ROLES, admin_url, api_url, psql_url, set_transaction_bound

from ..polling import wait_until
from ..psql_sessions import Stall, lift_transaction_timeout
from .helpers import create_option

BOUND = 2.0  # seconds: settings.max_transaction_timeout in these tests (the default is 30 s)
WATCHDOG_INTERVAL = 0.5  # how often the tests run the watchdog, as the service does every second
# How late past the bound a transaction may end: the watchdog's interval, the signal's delivery and
# the stalling session's next statement (every STEP), on a machine shared with other tests.
SLACK = WATCHDOG_INTERVAL + 1.5
ROLE_URLS = {embedded.API_ROLE: api_url, embedded.ADMIN_ROLE: admin_url, embedded.PSQL_ROLE: psql_url}


@pytest.fixture
def bounded(server_url, database_name):
    """The test's database with a transaction bound of BOUND seconds; returns url(role) for
    connections made after it."""
    set_transaction_bound(server_url, database_name, BOUND)
    return lambda role: ROLE_URLS[role](server_url, database_name)


async def watchdog(admin: asyncpg.Connection, stall: Stall) -> list[asyncpg.Record]:
    """api.end_overlong_transactions() every WATCHDOG_INTERVAL, as the service runs it, until the
    stalling session is ended (bounded); returns every row it returned."""
    ended = []
    deadline = time.monotonic() + BOUND + 10
    while stall.ended is None and time.monotonic() < deadline:
        ended += await admin.fetch("SELECT * FROM end_overlong_transactions()")
        await asyncio.sleep(WATCHDOG_INTERVAL)
    return ended


async def buy_until_sold(url: str, option_id) -> float:
    """Buys one ticket of the option as the API role, retrying while its lock is held (bounded);
    returns the monotonic time it sold."""
    buyer = await asyncpg.connect(url)
    try:
        for _ in range(int((BOUND + 10) / 0.1)):
            try:
                await buyer.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option_id)
                return time.monotonic()
            except asyncpg.LockNotAvailableError:  # waited lock_timeout for the stalling session
                await asyncio.sleep(0.1)
        pytest.fail("sales never resumed")
    finally:
        await buyer.close()


async def still_running(conn, pid) -> bool:
    """Whether backend `pid` is still there, a moment after its client saw it end."""
    for _ in range(50):
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid):
            return False
        await asyncio.sleep(0.1)
    return True


async def test_the_watchdog_ends_a_busy_transaction_holding_an_options_lock(
        bounded, database_url, has_transaction_timeout):
    """purchase_tickets in an open transaction, then a statement every STEP: the option's sales
    stall until the watchdog ends the session, no sooner than the bound and no later than it plus the
    watchdog's interval; then they resume, and the stalled purchase never happened."""
    owner = await asyncpg.connect(database_url)
    admin = await asyncpg.connect(bounded(embedded.ADMIN_ROLE))
    try:
        option_id = await create_option(owner, 10)
        stall = Stall(bounded(embedded.PSQL_ROLE),
                      f"SELECT * FROM purchase_tickets('{option_id}', gen_random_uuid(), 1)",
                      *lift_transaction_timeout(has_transaction_timeout))
        async with stall:
            buying = asyncio.create_task(buy_until_sold(bounded(embedded.API_ROLE), option_id))
            ended = await watchdog(admin, stall)
            sold_at = await buying
        assert BOUND <= stall.ended_after <= BOUND + SLACK, stall.ended_after
        assert sold_at - stall.began <= BOUND + SLACK
        (row,) = ended
        assert (row["pid"], row["role"], row["query"]) == (stall.pid, embedded.PSQL_ROLE, "SELECT 1")
        assert not await still_running(owner, stall.pid)
        assert row["transaction_age"].total_seconds() >= BOUND and row["bound"].total_seconds() == BOUND
        option = await owner.fetchrow("SELECT * FROM get_ticket_option($1)", option_id)
        assert (option["remaining"], option["sold"]) == (9, 1)  # the buyer's; the stalled one rolled back
        assert await owner.fetch("SELECT * FROM check_consistency()") == []
    finally:
        await admin.close()
        await owner.close()


async def test_a_busy_transaction_holding_an_options_lock_is_ended_within_the_bound(
        bounded, database_url, has_transaction_timeout):
    """The same stall, without lifting anything: on 17+ transaction_timeout ends it by itself (no
    watchdog runs here); on 15 and 16 only the watchdog can, and does."""
    owner = await asyncpg.connect(database_url)
    admin = await asyncpg.connect(bounded(embedded.ADMIN_ROLE))
    try:
        option_id = await create_option(owner, 10)
        stall = Stall(bounded(embedded.PSQL_ROLE), f"SELECT * FROM purchase_tickets('{option_id}', gen_random_uuid(), 1)")
        async with stall:
            buying = asyncio.create_task(buy_until_sold(bounded(embedded.API_ROLE), option_id))
            if has_transaction_timeout:
                await wait_until(lambda: stall.ended is not None, "transaction_timeout to end the stalling session",
                                 BOUND + 10)
            else:
                assert await watchdog(admin, stall)
            sold_at = await buying
        assert not await still_running(owner, stall.pid)
        assert stall.ended is not None and BOUND <= stall.ended_after <= BOUND + SLACK, stall.ended_after
        assert sold_at - stall.began <= BOUND + SLACK
        assert (await owner.fetchrow("SELECT * FROM get_ticket_option($1)", option_id))["sold"] == 1
    finally:
        await admin.close()
        await owner.close()


@pytest.mark.parametrize("database", ["the service's", "postgres"])
async def test_the_watchdog_ends_a_feed_freeze(bounded, server_url, database_url, has_transaction_timeout, database):
    """BEGIN; SELECT pg_current_xact_id(); then a statement every STEP: the feed shows nothing
    committed after that transaction began (it never skips) until the watchdog ends it. It calls
    no function that locks, so nothing checks its transaction_timeout: it may lift it first. From
    any database of the server: transaction ids, and so the feed's horizon, are the server's."""
    owner = await asyncpg.connect(database_url)
    admin = await asyncpg.connect(bounded(embedded.ADMIN_ROLE))
    freezing = bounded(embedded.PSQL_ROLE) if database == "the service's" else psql_url(server_url, database)
    try:
        stall = Stall(freezing, *lift_transaction_timeout(has_transaction_timeout), "SELECT pg_current_xact_id()")
        async with stall:
            option_id = await create_option(owner, 10)  # committed while the freeze holds the horizon
            assert [e["type"] for e in await admin.fetch("SELECT * FROM events_after()")] == []
            ended = await watchdog(admin, stall)
        assert BOUND <= stall.ended_after <= BOUND + SLACK, stall.ended_after
        assert [(row["pid"], row["role"]) for row in ended] == [(stall.pid, embedded.PSQL_ROLE)]
        events = await admin.fetch("SELECT * FROM events_after()")
        assert [(e["type"], json.loads(e["data"])["id"]) for e in events] == [("ticket_option.created", str(option_id))]
    finally:
        await admin.close()
        await owner.close()


@pytest.mark.parametrize("role", CALLING_ROLES)
async def test_the_watchdog_ends_an_overlong_transaction_of_each_calling_role(bounded, role, has_transaction_timeout):
    admin = await asyncpg.connect(bounded(embedded.ADMIN_ROLE))
    try:
        async with Stall(bounded(role), *lift_transaction_timeout(has_transaction_timeout), "SELECT 1") as stall:
            ended = await watchdog(admin, stall)
        assert [(row["pid"], row["role"]) for row in ended] == [(stall.pid, role)]
    finally:
        await admin.close()


async def test_the_watchdog_spares_young_transactions_the_owners_and_its_own(
        bounded, database_url, has_transaction_timeout):
    """A calling role's transaction younger than the bound, and the owner's (migrations run long) of
    any age, go on; so does the admin session that runs the watchdog inside a long transaction."""
    owner = await asyncpg.connect(database_url)
    young = await asyncpg.connect(bounded(embedded.API_ROLE))
    admin = await asyncpg.connect(bounded(embedded.ADMIN_ROLE))
    try:
        await owner.execute("BEGIN")
        await owner.fetchval("SELECT pg_current_xact_id()")
        await admin.execute("BEGIN")
        for lift in lift_transaction_timeout(has_transaction_timeout):
            await admin.execute(lift)
        await asyncio.sleep(BOUND + 0.5)
        await young.execute("BEGIN")
        await young.fetchval("SELECT 1")
        assert await admin.fetch("SELECT * FROM end_overlong_transactions()") == []
        for conn in (owner, young, admin):
            assert await conn.fetchval("SELECT 1") == 1
            await conn.execute("COMMIT")
    finally:
        for conn in (admin, young, owner):
            await conn.close()


async def test_the_bound_is_the_owners(bounded):
    for role in CALLING_ROLES:
        conn = await asyncpg.connect(bounded(role))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE ticket_allocation.settings SET max_transaction_timeout = '1 day'")
        finally:
            await conn.close()


@pytest.mark.parametrize("role", [embedded.API_ROLE, embedded.PSQL_ROLE])
async def test_only_the_admin_role_may_run_the_watchdog(server_url, database_name, role):
    conn = await asyncpg.connect(ROLE_URLS[role](server_url, database_name))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM end_overlong_transactions()")
    finally:
        await conn.close()


async def test_the_calling_roles_have_a_transaction_timeout_within_the_bound(
        server_url, database_name, has_transaction_timeout):
    """On 17+: API and psql 10 s, admin 30 s, the bound 30 s. On 15 and 16 PostgreSQL has no such
    setting (the watchdog alone bounds transactions there)."""
    expected = {embedded.API_ROLE: "10s", embedded.ADMIN_ROLE: "30s", embedded.PSQL_ROLE: "10s"}
    for role in CALLING_ROLES:
        conn = await asyncpg.connect(ROLE_URLS[role](server_url, database_name))
        try:
            value = await conn.fetchval("SELECT current_setting('transaction_timeout', true)")
            assert value == (expected[role] if has_transaction_timeout else None)
        finally:
            await conn.close()


@pytest.mark.parametrize("value", ["0", "1h"])
async def test_on_17_a_session_that_lifts_its_transaction_timeout_may_not_lock(
        server_url, database_name, database_url, has_transaction_timeout, value):
    """On 17+ (as for the other limits): TA008 naming transaction_timeout. On 15 and 16 there is
    nothing to lift: PostgreSQL refuses the setting itself."""
    owner = await asyncpg.connect(database_url)
    api = await asyncpg.connect(api_url(server_url, database_name))
    try:
        option_id = await create_option(owner, 10)
        if not has_transaction_timeout:
            with pytest.raises(asyncpg.UndefinedObjectError):
                await api.execute(f"SET transaction_timeout = '{value}'")
            return
        await api.execute(f"SET transaction_timeout = '{value}'")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option_id)
        assert refused.value.sqlstate == "TA008"
        assert "transaction_timeout" in refused.value.message
        await api.execute("RESET transaction_timeout")
        assert await api.fetchrow("SELECT * FROM purchase_tickets($1, gen_random_uuid(), 1)", option_id)
    finally:
        await api.close()
        await owner.close()
