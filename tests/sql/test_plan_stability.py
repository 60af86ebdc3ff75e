"""The cost of every API call is independent of how much has been sold.

Every API function is called CALLS times on one connection (so PL/pgSQL's
plan cache is used, and in `auto` mode switches to a generic plan after five
custom ones), with and without each optional argument and with batches of 1,
2, 50 and 256, under each plan_cache_mode, on a history of 200,000 purchases
with fresh statistics and none (see conftest.py), and on a database whose
statistics and cached plans were made when it held 200 purchases and that
then grew to 100,000 (PL/pgSQL keeps a connection's plans until a table's
statistics change: a long-lived pool connection serves a grown database with
the plans it made on a young one).

The detector is the table counters of the backend
(pg_stat_xact_user_tables, and pg_stat_get_xact_tuples_returned for the
indexes), read before and after the call in the call's own transaction:
the backend flushes them to the shared counters only when idle, so the
difference is exactly this call's (the per-transaction counters alone are
not: since PostgreSQL 15 they also hold earlier transactions not yet
flushed). This sees every table access whatever the plan and however deeply
the statement is nested in functions, and runs on every PostgreSQL the
project supports; auto_explain would show the plans, but only as text in the
server log. A call fails when it starts a sequential scan of a table that
grows with sales, or reads more rows of them (heap or index) than a budget
that depends on the call's own size only: the history holds far more rows
than any budget, so a scan that grows with it cannot stay under.
"""

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest

from tests.conftest import owner_url

from .history import NO_AUTOVACUUM_SQL, PURCHASES, USERS, YOUNG, history_sql

CALLS = 10
WARM_UP = 6  # calls that cache a statement's plan: in auto mode the 6th may switch to the generic plan
MODES = ("auto", "force_generic_plan", "force_custom_plan")
GROWING = ("purchases", "tickets", "idempotency_keys", "holds", "events", "webhook_attempts", "orders", "order_lines")
BATCH_SIZES = (1, 2, 50, 256)

COUNTERS = """
SELECT t.relname, t.seq_scan, t.seq_tup_read + t.idx_tup_fetch
       + (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)
          FROM pg_index i WHERE i.indrelid = t.relid) AS rows_read
FROM pg_stat_xact_user_tables t
WHERE t.schemaname = 'ticket_allocation' AND t.relname = ANY($1::text[])
"""


def seeded(kind: str, i) -> uuid.UUID:
    """The id the history gave to purchase/user/option i (md5 of its name, as in history.py)."""
    return uuid.UUID(hashlib.md5(f"{kind}{i}".encode()).hexdigest())


@dataclass
class Call:
    name: str
    query: str
    args: tuple | Callable  # or args(attempt): new keys and users at each attempt
    units: int  # rows the call itself must touch (tickets bought or listed, keys purged...)

    @property
    def budget(self) -> int:
        # Each unit costs a few index entries and heap rows in a few tables
        # (the row, its index entries, foreign-key checks): 20 is generous.
        return 200 + 20 * self.units

    def arguments(self, attempt: int) -> tuple:
        return self.args(attempt) if callable(self.args) else self.args


def requests(option_ids, size, keyed, quantity, attempt):
    """api.ticket_request[] of `size` requests over option_ids in turn. Half are users with a history
    (other ones at each attempt), half new."""
    return [(option_ids[n % len(option_ids)],
             seeded("user", (attempt * 500 + n) % USERS) if n % 2 else uuid.uuid4(), quantity,
             f"plan-{uuid.uuid4()}" if keyed else None, None, None) for n in range(size)]


def batch(option_ids, size, keyed, quantity=1, skip_locked=False):
    return Call(f"{'skip-locked ' if skip_locked else ''}batch of {size}{' keyed' if keyed else ''} "
                f"over {len(option_ids)} options",
                "SELECT * FROM purchase_tickets_batch($1::ticket_request[], p_skip_locked => $2)",
                lambda attempt: (requests(option_ids, size, keyed, quantity, attempt), skip_locked), size * quantity)


def hold_batch(option_ids, size, keyed, skip_locked=False):
    return Call(f"{'skip-locked ' if skip_locked else ''}hold batch of {size}{' keyed' if keyed else ''} "
                f"over {len(option_ids)} options",
                "SELECT * FROM hold_tickets_batch($1::ticket_request[], p_skip_locked => $2)",
                lambda attempt: (requests(option_ids, size, keyed, 1, attempt), skip_locked), size)


def seeded_hold(i) -> uuid.UUID:
    return seeded("hold", i)


def hold_calls(hot_option: uuid.UUID) -> list[Call]:
    """Holds: made on the hot option (whose history holds many), confirmed, released, read, swept.
    The history's live holds (i % 4000 = 7, 49 of them) are confirmed, one each attempt, or released."""
    return [
        *(hold_batch([hot_option], size, keyed) for size in BATCH_SIZES for keyed in (False, True)),
        hold_batch([hot_option, seeded("option", 3), seeded("option", 4)], 50, True),
        hold_batch([hot_option, seeded("option", 3), seeded("option", 4)], 50, True, skip_locked=True),
        Call("hold", "SELECT * FROM hold_tickets($1, $2, $3)",
             lambda attempt: (hot_option, seeded("user", 2 * attempt), 1), 1),
        Call("keyed hold", "SELECT * FROM hold_tickets($1, $2, $3, '5 minutes', $4)",
             lambda attempt: (hot_option, seeded("user", 2 * attempt + 1), 1, f"plan-{uuid.uuid4()}"), 1),
        Call("get hold", "SELECT * FROM get_hold($1)", (seeded_hold(1),), 2),
        Call("get live hold", "SELECT * FROM get_hold($1)", (seeded_hold(4007),), 2),
        Call("confirm hold", "SELECT * FROM confirm_hold($1)",
             lambda attempt: (seeded_hold(4007 + 4000 * attempt),), 4),  # a live one each time (or refused)
        Call("confirm confirmed hold", "SELECT * FROM confirm_hold($1)", (seeded_hold(1),), 4),
        Call("confirm released hold", "SELECT * FROM confirm_hold($1)", (seeded_hold(5),), 2),
        Call("release hold", "SELECT * FROM release_hold($1)",
             lambda attempt: (seeded_hold(4007 + 4000 * (31 + attempt % 18)),), 2),
        Call("release released hold", "SELECT * FROM release_hold($1)", (seeded_hold(5),), 2),
        Call("release confirmed hold", "SELECT * FROM release_hold($1)", (seeded_hold(1),), 2),
        Call("sweep", "SELECT release_expired_holds()", (), 20),
        Call("default hold ttl", "SELECT default_hold_ttl()", (), 0),
    ]


def api_calls(hot_option: uuid.UUID) -> list[Call]:
    cold_option = seeded("option", 1)  # no per-user limit
    hot_user = seeded("user", 2)  # purchases on every option, the hot one included
    active, cancelled = seeded("purchase", 2), seeded("purchase", 1003)
    middle = seeded("purchase", PURCHASES // 2)
    page = "SELECT * FROM list_purchases($1, $2, $3, $4, $5)"
    cursor = f"(SELECT created_at FROM purchases WHERE id = '{middle}')"
    return [
        *(batch([hot_option], size, keyed) for size in BATCH_SIZES for keyed in (False, True)),
        batch([cold_option], 50, True, quantity=3),
        batch([seeded("option", 4), hot_option, cold_option], 50, False),
        # The coalescer's: over many options (the hot one in two quotas), locks skipped when taken.
        batch([hot_option, *(seeded("option", n) for n in range(1, 20))], 64, False, skip_locked=True),
        batch([hot_option, *(seeded("option", n) for n in range(1, 8))], 32, True, skip_locked=True),
        # A user with a history, another one each time (the per-user sum reads the
        # user's purchases of the option: what one user bought, not what was sold).
        Call("purchase", "SELECT * FROM purchase_tickets($1, $2, $3)",
             lambda attempt: (hot_option, seeded("user", 2 * attempt), 2), 2),
        Call("keyed purchase", "SELECT * FROM purchase_tickets($1, $2, $3, $4)",
             lambda attempt: (hot_option, seeded("user", 2 * attempt + 1), 1, f"plan-{uuid.uuid4()}"), 1),
        Call("replayed purchase", "SELECT * FROM purchase_tickets($1, $2, $3, $4)",
             (seeded("option", 6), seeded("user", 2), 1, "key-5"), 1),  # purchase 5's key: user 5 / 2
        Call("batch refused", "SELECT count(*) FROM purchase_tickets_batch($1::ticket_request[])",
             ([(None, hot_user, 1, None, None, None), (uuid.uuid4(), hot_user, 1, None, None, None)],), 1),
        Call("get purchase", "SELECT * FROM get_purchase($1)", (active,), 2),
        Call("get cancelled purchase", "SELECT * FROM get_purchase($1)", (cancelled,), 2),
        Call("cancel purchase", "SELECT * FROM cancel_purchase($1)",
             lambda attempt: (seeded("purchase", 2 + 20 * attempt),), 2),  # an active one each time
        Call("cancel cancelled purchase", "SELECT * FROM cancel_purchase($1)", (cancelled,), 2),
        Call("list", page, (hot_option, 50, None, None, None), 100),
        Call("list 500", page, (hot_option, 500, None, None, None), 1000),
        Call("list for a user", page, (hot_option, 50, hot_user, None, None), 100),
        Call("list next page", f"SELECT * FROM list_purchases($1, $2, $3, {cursor}, $4)",
             (hot_option, 50, None, middle), 100),
        Call("list next page for a user", f"SELECT * FROM list_purchases($1, $2, $3, {cursor}, $4)",
             (hot_option, 50, hot_user, middle), 100),
        Call("get option", "SELECT * FROM get_ticket_option($1)", (hot_option,), 1),
        Call("create option", "SELECT * FROM create_ticket_option('Plan', '', 10)", (), 1),
        Call("keyed create option", "SELECT * FROM create_ticket_option('Plan', '', 10, 2, $1)",
             lambda attempt: (f"plan-{uuid.uuid4()}",), 1),
        Call("replayed create option", "SELECT * FROM create_ticket_option('Plan', '', 10, 2, $1)",
             ("key-5",), 1),  # a key used for a purchase: refused (TA005)
        Call("purge", "SELECT purge_expired_idempotency_keys()", (), PURCHASES // 240),  # the expired keys
        Call("purge a chunk", "SELECT purge_expired_idempotency_keys(100)", (), 100),
        Call("watchdog", "SELECT * FROM end_overlong_transactions()", (), 0),  # pg_stat_activity, no table
        *hold_calls(hot_option),
        *order_calls(hot_option),
        *quota_calls(hot_option),
        *event_calls(),
    ]


def seeded_order(k) -> uuid.UUID:
    """Order k of the history: purchases 2k and 2k+1 (sql history.py); held orders are 'horder' || i."""
    return seeded("order", k)


def order_calls(hot_option: uuid.UUID) -> list[Call]:
    """Orders over the hot option (in two quotas) and others: placed, read, confirmed, released,
    cancelled. The history's live held orders (i % 4000 = 15, 50 of them) are confirmed or released,
    one each attempt; its bought orders (200,000 lines) are cancelled, one each attempt."""
    lines = [(hot_option, 1), (seeded("option", 2), 1), (seeded("option", 4), 1)]
    place = "SELECT * FROM place_order($1, $2::order_line[], $3::interval, $4)"
    return [
        Call("order of 3 lines", place, lambda attempt: (seeded("user", 2 * attempt), lines, None, None), 3),
        Call("held order of 3 lines", place,
             lambda attempt: (seeded("user", 2 * attempt + 1), lines, timedelta(minutes=10), None), 3),
        Call("keyed order of 19 lines", place,
             lambda attempt: (uuid.uuid4(), [(seeded("option", 1 + n % 19), 1) for n in range(19)], None,
                              f"plan-{uuid.uuid4()}"), 19),
        Call("replayed order", place, (seeded("user", 3), lines, None, "plan-order"), 3),
        *(Call(f"{'skip-locked ' if skip_locked else ''}batch of {size} orders",
               "SELECT * FROM place_orders_batch($1::order_request[], p_skip_locked => $2)",
               lambda attempt, size=size, skip_locked=skip_locked: (
                   [(seeded("user", (attempt * 500 + n) % USERS) if n % 2 else uuid.uuid4(),
                     lines, timedelta(minutes=5) if n % 3 == 0 else None,
                     f"plan-{uuid.uuid4()}" if n % 4 == 0 else None, None)
                    for n in range(size)], skip_locked), 3 * size)
          for size, skip_locked in ((1, False), (2, False), (50, False), (50, True))),
        Call("refused order", place, (seeded("user", 4), [(hot_option, 1), (uuid.uuid4(), 1)], None, None), 2),
        Call("get order", "SELECT * FROM get_order($1)", (seeded_order(5),), 4),
        Call("get held order", "SELECT * FROM get_order($1)", (seeded("horder", 4015),), 2),
        Call("get expired order", "SELECT * FROM get_order($1)", (seeded("horder", 13),), 2),
        Call("confirm order", "SELECT * FROM confirm_order($1)",
             lambda attempt: (seeded("horder", 4015 + 4000 * attempt),), 4),  # a live one each time (or refused)
        Call("confirm confirmed order", "SELECT * FROM confirm_order($1)", (seeded_order(5),), 4),
        Call("confirm released order", "SELECT * FROM confirm_order($1)", (seeded("horder", 5),), 2),
        Call("release order", "SELECT * FROM release_order($1)",
             lambda attempt: (seeded("horder", 4015 + 4000 * (31 + attempt % 18)),), 2),
        Call("release released order", "SELECT * FROM release_order($1)", (seeded("horder", 5),), 2),
        Call("cancel order", "SELECT * FROM cancel_order($1)",
             lambda attempt: (seeded_order(11 + 10 * attempt),), 6),  # a bought one each time
        Call("cancel cancelled order", "SELECT * FROM cancel_order($1)", (seeded_order(11),), 6),
    ]


def quota_calls(hot_option: uuid.UUID) -> list[Call]:
    """Quotas over options with a large history: counted anew from the options' books, never from
    their purchases."""
    hot_quota = seeded("quota", 0)
    return [
        Call("create quota", "SELECT * FROM create_quota('Plan', 50000000, $1)",
             ([hot_option, seeded("option", 8)],), 4),
        Call("get quota", "SELECT * FROM get_quota($1)", (hot_quota,), 4),
        Call("grow quota", "SELECT * FROM update_quota($1, $2)",
             lambda attempt: (hot_quota, 30000000 + attempt), 4),
        Call("move quota's options", "SELECT * FROM update_quota($1, p_ticket_option_ids => $2)",
             lambda attempt: (seeded("quota", 1), [hot_option, seeded("option", 4 + 2 * (attempt % 2))]), 4),
    ]


def event_calls() -> list[Call]:
    """The feed (sql/events.sql) and webhook delivery (sql/webhooks.sql) on the history's outbox."""
    middle = f"(SELECT xid::text || '-' || id FROM events WHERE id = {PURCHASES // 2})"
    feed = "SELECT * FROM events_after($1, $2, $3)"
    return [
        Call("feed from the start", feed, (None, 100, None), 100),
        Call("feed of 1000", feed, (None, 1000, None), 1000),
        Call("feed from the middle", f"SELECT * FROM events_after({middle}, $1, $2)", (100, None), 100),
        Call("feed of one rare type", f"SELECT * FROM events_after({middle}, $1, $2)",
             (100, ["purchase.cancelled"]), 100),
        Call("feed of two types", feed, (None, 100, ["purchase.cancelled", "ticket_option.sold_out"]), 200),
        Call("purge old events", "SELECT purge_old_events(1000)", (), 1000),
        Call("claim deliveries", "SELECT * FROM claim_webhook_deliveries(10, '1 second')", (), 10),
        Call("delivery lag", "SELECT * FROM webhook_lag()", (), 10),
    ]


# Plan stability's first rule (README: Plan stability): every function of schema api runs with
# enable_seqscan = off and enable_bitmapscan = off (PostgreSQL has no per-schema function default, so
# each carries the pair), so that a plan cached while a table was small cannot scan it once it grew.
# These run without, and why; any other function of api without both settings fails the test below.
WITHOUT_INDEX_ONLY_PLANS = {
    "check_consistency": "the books check reads every row by design: walking whole indexes would be slower",
    "applied_migrations": "reads all of yoyo's table (a row per migration) by design",
    "list_webhooks": "reads every subscription (a handful per deployment) by design",
    "default_hold_ttl": "a constant: reads no table",
    "error_catalogue": "a constant: reads no table",
}
INDEX_ONLY_PLANS = {"enable_seqscan=off", "enable_bitmapscan=off"}


async def test_every_api_function_plans_with_index_walks_only(conn):
    rows = await conn.fetch(
        "SELECT p.proname, coalesce(p.proconfig, '{}') AS settings FROM pg_proc p "
        "WHERE p.pronamespace = 'api'::regnamespace")
    names = {row["proname"] for row in rows}
    assert set(WITHOUT_INDEX_ONLY_PLANS) <= names, "an exception names a function that is gone"
    missing = {row["proname"]: sorted(INDEX_ONLY_PLANS - set(row["settings"])) for row in rows
               if row["proname"] not in WITHOUT_INDEX_ONLY_PLANS and not INDEX_ONLY_PLANS <= set(row["settings"])}
    assert missing == {}


async def counters(conn) -> dict[str, tuple[int, int]]:
    return {row["relname"]: (row["seq_scan"], row["rows_read"]) for row in await conn.fetch(COUNTERS, list(GROWING))}


async def costs_of(conn, call: Call, attempt: int) -> dict[str, tuple[int, int]]:
    """{table: (sequential scans, rows read)} of one call, which commits (rolled back, its
    rows would stay in the indexes as dead entries that the next calls would have to read)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        # Before and after, in one transaction: the backend flushes its counters
        # only when idle, so the difference is this call's alone.
        before = await counters(conn)
        try:
            async with conn.transaction():  # a savepoint: a refused call still leaves its counters
                await conn.fetch(call.query, *call.arguments(attempt))
        except asyncpg.PostgresError as error:
            if not (error.sqlstate or "").startswith("TA"):
                raise
        after = await counters(conn)
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()
    return {table: tuple(a - b for a, b in zip(after[table], before.get(table, (0, 0)), strict=True))
            for table in after}


async def failures_of(conn, mode: str, hot_option: uuid.UUID) -> list[str]:
    """Every call CALLS times on conn: what went over its budget."""
    failures = []
    for call in api_calls(hot_option):
        over = []
        for attempt in range(1, CALLS + 1):
            unique_attempt = MODES.index(mode) * CALLS + attempt  # the databases are shared by the modes
            for table, (scans, read) in (await costs_of(conn, call, unique_attempt)).items():
                if scans or read > call.budget:
                    over.append(f"call {attempt}: {table}: {scans} sequential scans, {read} rows read")
        if over:  # one line per call shape: the first and the last call over budget
            failures.append(f"{mode}: {call.name} (budget {call.budget}): {len(over)} times over, "
                            f"{over[0]} ... {over[-1]}")
    return failures


async def connect(url: str, mode: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.execute(f"SET plan_cache_mode = {mode}")
    return conn


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("state", ["analysed", "never_analysed"])
async def test_no_call_scans_or_reads_what_grows_with_sales(server_url, history_databases, state, mode):
    conn = await connect(owner_url(server_url, history_databases[state]), mode)
    try:
        failures = await failures_of(conn, mode, seeded("option", 0))
    finally:
        await conn.close()
    assert not failures, "\n".join(failures[:40])


async def test_plans_made_on_a_young_database_stay_bounded_when_it_grows(database_url):
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(NO_AUTOVACUUM_SQL + history_sql(1, YOUNG))
        admin.execute("ANALYZE")
        connections = [await connect(database_url, mode) for mode in MODES]
        try:
            # Plans made and cached while the tables are small: each call shape on
            # every connection in turn, so that all of them plan it on the young data.
            for call in api_calls(seeded("option", 0)):
                for attempt in range(1, WARM_UP + 1):
                    for conn, mode in zip(connections, MODES, strict=True):
                        await costs_of(conn, call, 100 + MODES.index(mode) * CALLS + attempt)
            admin.execute(history_sql(YOUNG + 1, PURCHASES // 2))  # no ANALYZE: the plans stay
            failures = [failure for conn, mode in zip(connections, MODES, strict=True)
                        for failure in await failures_of(conn, mode, seeded("option", 0))]
        finally:
            for conn in connections:
                await conn.close()
    assert not failures, "\n".join(failures[:40])
