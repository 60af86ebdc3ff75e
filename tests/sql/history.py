"""A large sales history, loaded set-based: the data the plan-stability tests run on.

HISTORY_SQL fills a migrated database with PURCHASES purchases (half on one
hot option, the rest spread over the others; many users, some cancelled)
with their tickets and idempotency keys, in one statement per table. The
books stay consistent (sold = active quantities, total = remaining + sold).
GROWTH_SQL adds more on a new option, for a database whose statistics were
taken before it grew.
"""

PURCHASES = 200_000
OPTIONS = 20
USERS = 20_000
GROWTH = 100_000

# Deterministic ids: purchase i, user u, option o (o = 0 is the hot option).
HISTORY_SQL = f"""
SET synchronous_commit = off;
-- Statistics are the tests' variable: nothing may take them behind their back.
ALTER TABLE purchases SET (autovacuum_enabled = false);
ALTER TABLE tickets SET (autovacuum_enabled = false);
ALTER TABLE idempotency_keys SET (autovacuum_enabled = false);
ALTER TABLE ticket_options SET (autovacuum_enabled = false);

INSERT INTO ticket_options (id, name, allocation, total, max_per_user)
SELECT md5('option' || o)::uuid, 'Option ' || o, 10000000, 10000000,
       CASE WHEN o % 2 = 0 THEN 1000000 END  -- the hot option has a per-user limit
FROM generate_series(0, {OPTIONS - 1}) AS o;

INSERT INTO purchases (id, ticket_option_id, user_id, quantity, created_at, status, cancelled_at)
SELECT md5('purchase' || i)::uuid,
       md5('option' || CASE WHEN i % 2 = 0 THEN 0 ELSE 1 + i % {OPTIONS - 1} END)::uuid,
       md5('user' || i % {USERS})::uuid,
       1 + (i % 4 = 0)::integer,
       now() - interval '1 hour' - ({PURCHASES} - i) * interval '1 second',
       CASE WHEN i % 10 = 3 THEN 'cancelled' ELSE 'active' END,
       CASE WHEN i % 10 = 3 THEN now() - interval '1 hour' END
FROM generate_series(1, {PURCHASES}) AS i;

INSERT INTO tickets (ticket_option_id, purchase_id, created_at, voided_at)
SELECT p.ticket_option_id, p.id, p.created_at, p.cancelled_at
FROM purchases p, generate_series(1, p.quantity);

-- A key for every fourth purchase; one in sixty expired (the purge's backlog).
INSERT INTO idempotency_keys (key, request, purchase_id, created_at, expires_at)
SELECT 'key-' || i,
       jsonb_build_object('purchase_tickets', jsonb_build_object(
           'ticket_option_id', p.ticket_option_id, 'user_id', p.user_id, 'quantity', p.quantity)),
       p.id, p.created_at,
       CASE WHEN i % 60 = 1 THEN now() - interval '1 minute' ELSE now() + interval '1 day' END
FROM generate_series(1, {PURCHASES}, 4) AS i
JOIN purchases p ON p.id = md5('purchase' || i)::uuid;

UPDATE ticket_options o
SET sold = a.quantity, allocation = o.total - a.quantity
FROM (SELECT ticket_option_id, sum(quantity)::integer AS quantity FROM purchases
      WHERE status = 'active' GROUP BY ticket_option_id) a
WHERE a.ticket_option_id = o.id;
"""

# A new hot option that did not exist when the statistics were taken.
GROWTH_OPTION = "md5('option-grown')::uuid"
GROWTH_SQL = f"""
SET synchronous_commit = off;
INSERT INTO ticket_options (id, name, allocation, total, max_per_user)
VALUES ({GROWTH_OPTION}, 'Grown', 10000000, 10000000, 1000000);

INSERT INTO purchases (id, ticket_option_id, user_id, quantity, created_at)
SELECT md5('grown' || i)::uuid, {GROWTH_OPTION}, md5('user' || i % {USERS})::uuid, 1,
       now() - interval '1 hour' + i * interval '1 millisecond'
FROM generate_series(1, {GROWTH}) AS i;

INSERT INTO tickets (ticket_option_id, purchase_id, created_at)
SELECT ticket_option_id, id, created_at FROM purchases WHERE ticket_option_id = {GROWTH_OPTION};

UPDATE ticket_options SET sold = {GROWTH}, allocation = total - {GROWTH} WHERE id = {GROWTH_OPTION};
"""
