"""The bench's history points: does a purchase cost the same after a million sales?

On a database pre-loaded set-based (not through HTTP) with HISTORY purchases,
their tickets and idempotency keys, and on one with almost none (1,000, so
that there are purchases to read), one service each, it measures:
hot purchases at 64 connections, GET /purchases/{id} and a user-filtered
list (GET /ticket_options/{hot}/purchases?user_id=...) at 32; then, on the
large one, a sustained hot run at 64 connections: consecutive wrk runs of
WINDOW seconds against one running service, one line per window. The
targets are ratios within the run (docs/performance.md).
"""

import random
from pathlib import Path

import psycopg
from psycopg import sql

from bench import SEARCH_PATH

HISTORY = 1_000_000
SMALL = 1_000
USERS = 100_000
WINDOW = 10  # seconds
WINDOWS = 6
HOT_CONCURRENCY = 64
READ_CONCURRENCY = 32


def history_sql(purchases: int, options: int) -> str:
    """Half the purchases on option 1 (the hot one), the rest spread; one in ten cancelled; a key for one in four."""
    option = "('00000000-0000-4000-8000-' || lpad(({o})::text, 12, '0'))::uuid"
    hot_or_spread = option.format(o=f"CASE WHEN i % 2 = 0 THEN 1 ELSE 1 + i % {options} END")
    return f"""
SET synchronous_commit = off;
INSERT INTO purchases (id, ticket_option_id, user_id, quantity, created_at, status, cancelled_at)
SELECT md5('purchase' || i)::uuid, {hot_or_spread}, md5('user' || i % {USERS})::uuid, 1 + (i % 4 = 0)::integer,
       now() - interval '1 hour' - ({purchases} - i) * interval '10 ms',
       CASE WHEN i % 10 = 3 THEN 'cancelled' ELSE 'active' END,
       CASE WHEN i % 10 = 3 THEN now() - interval '1 hour' END
FROM generate_series(1, {purchases}) AS i;
INSERT INTO tickets (ticket_option_id, purchase_id, created_at, voided_at)
SELECT p.ticket_option_id, p.id, p.created_at, p.cancelled_at FROM purchases p, generate_series(1, p.quantity);
INSERT INTO idempotency_keys (scope, key, request, purchase_id, created_at, expires_at)
SELECT format('|purchase|%s|%s', p.ticket_option_id, p.user_id), 'key-' || md5(p.id::text), jsonb_build_object('purchase_tickets', jsonb_build_object(
           'ticket_option_id', p.ticket_option_id, 'user_id', p.user_id, 'quantity', p.quantity)),
       p.id, p.created_at, now() + interval '1 day'
FROM purchases p WHERE get_byte(decode(md5(p.id::text), 'hex'), 0) < 64;
UPDATE ticket_options o SET sold = a.quantity, remaining = o.total - a.quantity
FROM (SELECT ticket_option_id, sum(quantity)::integer AS quantity FROM purchases
      WHERE status = 'active' GROUP BY ticket_option_id) a
WHERE a.ticket_option_id = o.id;
"""


def create_template(databases, name: str, purchases: int, options: int) -> str:
    """A copy of the bench's template with `purchases` purchases, analysed (as autovacuum would have)."""
    database = f"{databases.prefix}_{name}"
    databases.admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(database), sql.Identifier(databases.template)))
    databases.admin(sql.SQL("ALTER DATABASE {} SET search_path = " + SEARCH_PATH).format(sql.Identifier(database)))
    databases.created.append(database)
    url = databases.url_of(database)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(history_sql(purchases, options))
        conn.execute("VACUUM ANALYZE")
    databases.admin("CHECKPOINT")  # the load's dirty pages written now, not during the measurements
    return database


GROWING = ("purchases", "tickets", "idempotency_keys")


def table_reads(url: str) -> dict:
    """Sequential scans and rows read (heap and index) so far on the tables that grow with sales.
    The service's backends flush their counters about once a second under load (up to 10 s when
    idle), so a window's difference is its reads within about a second."""
    with psycopg.connect(url) as conn:
        row = conn.execute("""
            SELECT coalesce(sum(t.seq_scan), 0), coalesce(sum(t.seq_tup_read + coalesce(t.idx_tup_fetch, 0)), 0)
                   + (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_user_indexes i
                      WHERE i.relname = ANY(%(tables)s))
            FROM pg_stat_user_tables t WHERE t.relname = ANY(%(tables)s)""", {"tables": list(GROWING)}).fetchone()
    return {"seq_scans": int(row[0]), "rows_read": int(row[1])}


def read_paths(url: str, hot_option: str, path: Path) -> None:
    """1,000 purchase paths and 1,000 user-filtered list paths of the hot option, at random."""
    with psycopg.connect(url) as conn:
        # Ids are random: the 1,000 after a random one are a random sample, read through the key.
        ids = [row[0] for row in conn.execute(
            "SELECT id FROM purchases WHERE id >= gen_random_uuid() ORDER BY id LIMIT 1000")]
        users = [row[0] for row in conn.execute(
            "SELECT DISTINCT user_id FROM purchases WHERE ticket_option_id = %s LIMIT 1000", (hot_option,))]
    random.shuffle(ids)
    path.with_suffix(".purchases").write_text("".join(f"/purchases/{i}\n" for i in ids))
    path.with_suffix(".lists").write_text(
        "".join(f"/ticket_options/{hot_option}/purchases?user_id={u}&limit=10\n" for u in users))
