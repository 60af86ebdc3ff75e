"""A large sales history, loaded set-based: the data the plan-stability tests run on.

history_sql() fills a migrated database with PURCHASES purchases (half on
one hot option, the rest spread over the others; many users, some
cancelled) with their tickets and idempotency keys, and holds (one for every
fourth purchase: confirmed by it, released or expired; a few live, fewer
expired but not yet reclaimed), in one statement per table; in parts, when
asked (first..last), for a database that grows. Purchases 2k and 2k+1 are the
two lines of order k (bought at once; some partially cancelled): 200,000
order lines; the released and expired holds are one-line held orders of
their own, and a few live ones too. The hot option is in two quotas. The
books stay consistent (sold = active quantities, held = live holds,
total = remaining + held + sold, quotas = the sums of their options).
"""

PURCHASES = 200_000
OPTIONS = 20
USERS = 20_000
YOUNG = 200  # purchases of a database whose statistics and plans predate its growth

NO_AUTOVACUUM_SQL = """
-- Statistics are the tests' variable: nothing may take them behind their back.
ALTER TABLE purchases SET (autovacuum_enabled = false);
ALTER TABLE tickets SET (autovacuum_enabled = false);
ALTER TABLE idempotency_keys SET (autovacuum_enabled = false);
ALTER TABLE ticket_options SET (autovacuum_enabled = false);
ALTER TABLE events SET (autovacuum_enabled = false);
ALTER TABLE holds SET (autovacuum_enabled = false);
ALTER TABLE orders SET (autovacuum_enabled = false);
ALTER TABLE order_lines SET (autovacuum_enabled = false);
ALTER TABLE quotas SET (autovacuum_enabled = false);
ALTER TABLE quota_options SET (autovacuum_enabled = false);
"""


def history_sql(first: int = 1, last: int = PURCHASES) -> str:
    """Purchases first..last of the history (ids: md5 of 'purchase' || i, 'user' || u,
    'option' || o, o = 0 being the hot option), with their tickets and keys."""
    purchase = "md5('purchase' || i)::uuid"
    # Purchases 2k and 2k+1 are order k's lines when both are in this part.
    in_order = f"(i / 2 * 2 >= {first} AND i / 2 * 2 + 1 <= {last} AND i >= 2)"
    return f"""
SET synchronous_commit = off;
INSERT INTO ticket_options (id, name, remaining, total, max_per_user)
SELECT md5('option' || o)::uuid, 'Option ' || o, 10000000, 10000000,
       CASE WHEN o % 2 = 0 THEN 1000000 END  -- the hot option has a per-user limit
FROM generate_series(0, {OPTIONS - 1}) AS o
ON CONFLICT (id) DO NOTHING;
-- The hot option counts in two quotas: with option 2, and with options 4 and 6.
INSERT INTO quotas (id, name, size)
VALUES (md5('quota0')::uuid, 'Hot and 2', 30000000), (md5('quota1')::uuid, 'Hot, 4 and 6', 40000000)
ON CONFLICT (id) DO NOTHING;
INSERT INTO quota_options (quota_id, ticket_option_id)
SELECT md5('quota' || q)::uuid, md5('option' || o)::uuid
FROM (VALUES (0, 0), (0, 2), (1, 0), (1, 4), (1, 6)) AS m (q, o)
ON CONFLICT DO NOTHING;

-- Orders bought at once: purchases 2k (hot) and 2k+1 (spread) are order k; partially cancelled
-- when 2k+1 is (i % 10 = 3), which 2k never is.
INSERT INTO orders (id, user_id, status, lines, created_at, confirmed_at)
SELECT md5('order' || k)::uuid, md5('user' || k % {USERS})::uuid,
       CASE WHEN (2 * k + 1) % 10 = 3 THEN 'partially_cancelled' ELSE 'confirmed' END, 2,
       now() - interval '1 hour' - ({PURCHASES} - 2 * k) * interval '1 second',
       now() - interval '1 hour' - ({PURCHASES} - 2 * k) * interval '1 second'
FROM generate_series({first}, {last}) AS i, LATERAL (SELECT i / 2 AS k) AS o
WHERE {in_order} AND i % 2 = 0;
INSERT INTO order_lines (order_id, line, ticket_option_id, quantity, purchase_id)
SELECT md5('order' || i / 2)::uuid, 1 + i % 2,
       md5('option' || CASE WHEN i % 2 = 0 THEN 0 ELSE 1 + i % {OPTIONS - 1} END)::uuid,
       1 + (i % 4 = 0)::integer, {purchase}
FROM generate_series({first}, {last}) AS i
WHERE {in_order};

-- A purchase's user: i / 2, so that the two lines of an order are one user's.
INSERT INTO purchases (id, ticket_option_id, user_id, quantity, created_at, status, cancelled_at, order_id)
SELECT {purchase},
       md5('option' || CASE WHEN i % 2 = 0 THEN 0 ELSE 1 + i % {OPTIONS - 1} END)::uuid,
       md5('user' || i / 2 % {USERS})::uuid,
       1 + (i % 4 = 0)::integer,
       now() - interval '1 hour' - ({PURCHASES} - i) * interval '1 second',
       CASE WHEN i % 10 = 3 THEN 'cancelled' ELSE 'active' END,
       CASE WHEN i % 10 = 3 THEN now() - interval '1 hour' END,
       CASE WHEN {in_order} THEN md5('order' || i / 2)::uuid END
FROM generate_series({first}, {last}) AS i;

INSERT INTO tickets (ticket_option_id, purchase_id, created_at, voided_at)
SELECT p.ticket_option_id, p.id, p.created_at, p.cancelled_at
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}, generate_series(1, p.quantity);

-- A key for every fourth purchase; one in sixty of them expired (a purge's backlog).
INSERT INTO idempotency_keys (scope, key, request, purchase_id, created_at, expires_at)
SELECT format('|purchase|%s|%s', p.ticket_option_id, p.user_id), 'key-' || i,
       jsonb_build_object('purchase_tickets', jsonb_build_object(
           'ticket_option_id', p.ticket_option_id, 'user_id', p.user_id, 'quantity', p.quantity)),
       p.id, p.created_at,
       CASE WHEN i % 240 = 1 THEN now() - interval '1 minute' ELSE now() + interval '1 day' END
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}
WHERE i % 4 = 1;

-- The outbox: each purchase's event, a cancellation's too (issue 13), and a subscription that
-- has delivered the first ones.
INSERT INTO events (type, occurred_at, data)
SELECT CASE WHEN p.status = 'cancelled' AND c THEN 'purchase.cancelled' ELSE 'purchase.created' END, p.created_at,
       jsonb_build_object('id', p.id, 'ticket_option_id', p.ticket_option_id, 'quantity', p.quantity)
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}, (VALUES (false), (true)) AS cancel(c)
WHERE NOT c OR p.status = 'cancelled'
ORDER BY i, c;
INSERT INTO webhooks (id, url, cursor_xid, cursor_id)
SELECT md5('webhook')::uuid, 'http://example.com/hook', xid, id FROM events ORDER BY id LIMIT 1
ON CONFLICT (id) DO NOTHING;
INSERT INTO webhook_secrets (webhook_id, secret) VALUES (md5('webhook')::uuid, 'whsec_c2VjcmV0')
ON CONFLICT (webhook_id) DO NOTHING;
-- Holds: i % 8 = 1 confirmed by purchase i, i % 8 = 5 released or expired (history);
-- i % 4000 = 7 live, i % 40000 = 11 expired but still stored held (a lazy reclaim's work).
-- i % 8 = 5 and i % 4000 = 15 (live) are each the one line of a held order of their own.
INSERT INTO orders (id, user_id, status, lines, created_at, expires_at, released_at)
SELECT md5('horder' || i)::uuid, p.user_id, h.status, 1, p.created_at - interval '1 minute', h.expires_at,
       CASE WHEN h.status <> 'held' THEN h.expires_at END
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}
CROSS JOIN LATERAL (SELECT
    CASE WHEN i % 16 = 5 THEN 'released' WHEN i % 8 = 5 THEN 'expired' ELSE 'held' END AS status,
    CASE WHEN i % 8 = 5 THEN p.created_at + interval '9 minutes' ELSE now() + interval '1 day' END AS expires_at) AS h
WHERE i % 8 = 5 OR i % 4000 = 15;
INSERT INTO order_lines (order_id, line, ticket_option_id, quantity, hold_id)
SELECT md5('horder' || i)::uuid, 1, p.ticket_option_id, p.quantity, md5('hold' || i)::uuid
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}
WHERE i % 8 = 5 OR i % 4000 = 15;
INSERT INTO holds (id, ticket_option_id, user_id, quantity, status, created_at, expires_at, released_at,
                   confirmed_at, purchase_id, order_id)
SELECT md5('hold' || i)::uuid, p.ticket_option_id, p.user_id, p.quantity, h.status,
       p.created_at - interval '1 minute', h.expires_at,
       CASE h.status WHEN 'released' THEN p.created_at WHEN 'expired' THEN h.expires_at END,
       CASE h.status WHEN 'confirmed' THEN p.created_at END,
       CASE h.status WHEN 'confirmed' THEN p.id END,
       CASE WHEN i % 8 = 5 OR i % 4000 = 15 THEN md5('horder' || i)::uuid END
FROM generate_series({first}, {last}) AS i
JOIN purchases p ON p.id = {purchase}
CROSS JOIN LATERAL (SELECT
    CASE WHEN i % 8 = 1 THEN 'confirmed' WHEN i % 16 = 5 THEN 'released' WHEN i % 8 = 5 THEN 'expired'
         ELSE 'held' END AS status,
    CASE WHEN i % 40000 = 11 THEN now() - interval '1 minute'
         WHEN i % 4000 IN (7, 15) THEN now() + interval '1 day'
         ELSE p.created_at + interval '9 minutes' END AS expires_at) AS h
WHERE i % 8 IN (1, 5) OR i % 4000 IN (7, 15) OR i % 40000 = 11;

UPDATE ticket_options o
SET sold = b.sold, held = b.held, remaining = o.total - b.sold - b.held
FROM (SELECT x.id,
             (SELECT coalesce(sum(p.quantity), 0) FROM purchases p
              WHERE p.ticket_option_id = x.id AND p.status = 'active')::integer AS sold,
             (SELECT coalesce(sum(h.quantity), 0) FROM holds h
              WHERE h.ticket_option_id = x.id AND h.status = 'held')::integer AS held
      FROM ticket_options x) b
WHERE b.id = o.id;
UPDATE quotas q
SET sold = b.sold, held = b.held
FROM (SELECT qo.quota_id, sum(o.sold)::integer AS sold, sum(o.held)::integer AS held
      FROM quota_options qo JOIN ticket_options o ON o.id = qo.ticket_option_id
      GROUP BY qo.quota_id) b
WHERE b.quota_id = q.id;
"""
