"""Upgrading in place: a database at the previous layout (everything in public) moves to the
api / ticket_allocation layout with nothing lost."""

import psycopg
from yoyo import get_backend, read_migrations

from service.migrations import MIGRATIONS_DIR, migrate, yoyo_url

# The first migration of the layout with schemas api and ticket_allocation.
FIRST_OF_NEW_LAYOUT = "0007_api_schema"

# The previous layout's books, written set-based as its functions would have: 20 options, 3 users'
# purchases of 1..3 tickets each on every option, every third cancelled (tickets void), and keys.
FILL_PREVIOUS_LAYOUT = """
INSERT INTO ticket_options (name, "desc", allocation, sold, total, max_per_user)
SELECT 'Option ' || n, 'desc ' || n, 100, 0, 100, CASE WHEN n % 2 = 0 THEN 10 END
FROM generate_series(1, 20) AS n;

INSERT INTO purchases (ticket_option_id, user_id, quantity, status, cancelled_at)
SELECT o.id, ('00000000-0000-4000-8000-00000000000' || u)::uuid, u,
       CASE WHEN u = 3 THEN 'cancelled' ELSE 'active' END, CASE WHEN u = 3 THEN now() END
FROM ticket_options o, generate_series(1, 3) AS u;

INSERT INTO tickets (ticket_option_id, purchase_id, voided_at)
SELECT p.ticket_option_id, p.id, p.cancelled_at
FROM purchases p, generate_series(1, p.quantity);

UPDATE ticket_options o
SET sold = s.sold, allocation = o.total - s.sold
FROM (SELECT ticket_option_id, sum(quantity) FILTER (WHERE status = 'active') AS sold
      FROM purchases GROUP BY ticket_option_id) AS s
WHERE s.ticket_option_id = o.id;

INSERT INTO idempotency_keys (scope, key, request, purchase_id, expires_at)
SELECT format('|purchase|%s|%s', p.ticket_option_id, p.user_id), 'purchase-' || p.id, '{"purchase_tickets": {}}',
       p.id, now() + interval '1 day'
FROM purchases p;
INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, expires_at)
SELECT '|ticket_option', 'option-' || o.id, '{"create_ticket_option": {}}', o.id, now() + interval '1 day'
FROM ticket_options o;
"""

TABLES = ("ticket_options", "purchases", "tickets", "idempotency_keys")


def migrate_to_previous_layout(database_url: str) -> None:
    backend = get_backend(yoyo_url(database_url))
    previous = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id < FIRST_OF_NEW_LAYOUT)
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(previous))
    backend.connection.close()


def row_counts(conn, schema: str) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0] for table in TABLES}


def test_the_previous_layout_upgrades_in_place_with_nothing_lost(empty_database_url):
    migrate_to_previous_layout(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(FILL_PREVIOUS_LAYOUT)
        before = row_counts(conn, "public")
        books_before = conn.execute(
            "SELECT id, allocation, sold, total FROM public.ticket_options ORDER BY id").fetchall()
    assert before == {"ticket_options": 20, "purchases": 60, "tickets": 120, "idempotency_keys": 80}

    migrate(empty_database_url)

    with psycopg.connect(empty_database_url) as conn:
        assert row_counts(conn, "ticket_allocation") == before
        assert conn.execute(
            "SELECT id, remaining, sold, total FROM ticket_allocation.ticket_options ORDER BY id").fetchall() == books_before
        assert conn.execute("SELECT * FROM api.check_consistency()").fetchall() == []
        # The moved rows read back through the new API.
        purchase_id = conn.execute(
            "SELECT purchase_id FROM ticket_allocation.idempotency_keys WHERE purchase_id IS NOT NULL LIMIT 1"
        ).fetchone()[0]
        assert conn.execute("SELECT quantity FROM api.get_purchase(%s)", (purchase_id,)).fetchone()[0] >= 1
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relname = ANY(%s)", (list(TABLES),)).fetchone()[0]
        assert leftovers == 0
