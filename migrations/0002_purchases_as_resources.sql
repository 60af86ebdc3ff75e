-- Purchases as resources: cancellation, idempotency keys, per-user limits.
-- depends: 0001_schema

-- The functions' signatures and results change; post-apply re-creates them
-- (IF EXISTS: on a new database they are created only after all migrations).
DROP FUNCTION IF EXISTS create_ticket_option(text, text, integer);
DROP FUNCTION IF EXISTS purchase_tickets(uuid, uuid, integer);

-- sold counts active purchases; total = remaining + sold never changes,
-- which the CHECK holds for every write, however it is made.
ALTER TABLE ticket_options
    ADD COLUMN sold integer NOT NULL DEFAULT 0
        CONSTRAINT ticket_options_sold_not_negative CHECK (sold >= 0),
    ADD COLUMN total integer,
    ADD COLUMN max_per_user integer
        CONSTRAINT ticket_options_max_per_user_positive CHECK (max_per_user >= 1);
UPDATE ticket_options o
SET sold = coalesce((SELECT sum(p.quantity) FROM purchases p WHERE p.ticket_option_id = o.id), 0);
UPDATE ticket_options SET total = allocation + sold;
ALTER TABLE ticket_options
    ALTER COLUMN total SET NOT NULL,
    ADD CONSTRAINT ticket_options_total_is_remaining_plus_sold CHECK (total = allocation + sold);

ALTER TABLE purchases
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT purchases_status_known CHECK (status IN ('active', 'cancelled')),
    ADD COLUMN cancelled_at timestamptz,
    ADD CONSTRAINT purchases_cancelled_at_iff_cancelled
        CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL));
-- Newest-first listing (keyset pagination) and the per-user count.
CREATE INDEX purchases_option_newest_idx ON purchases (ticket_option_id, created_at DESC, id DESC);
CREATE INDEX purchases_option_user_idx ON purchases (ticket_option_id, user_id, created_at DESC, id DESC);
DROP INDEX purchases_ticket_option_id_idx;  -- the two above cover it

ALTER TABLE tickets ADD COLUMN voided_at timestamptz;

-- A purchase as callers see it: the row with the ids of its tickets.
CREATE VIEW purchase_receipts AS
SELECT p.id, p.ticket_option_id, p.user_id, p.quantity, p.status,
       array(SELECT t.id FROM tickets t WHERE t.purchase_id = p.id ORDER BY t.id) AS ticket_ids,
       p.created_at, p.cancelled_at
FROM purchases p;

-- A request made with an Idempotency-Key, remembered until expires_at so that
-- a retry gets the first outcome instead of buying again.
CREATE TABLE idempotency_keys (
    key               text        PRIMARY KEY
        CONSTRAINT idempotency_keys_key_printable CHECK (key ~ '^[\x20-\x7e]{1,255}$'),
    request           jsonb       NOT NULL,
    ticket_option_id  uuid        REFERENCES ticket_options (id),
    purchase_id       uuid        REFERENCES purchases (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_one_outcome CHECK (num_nonnulls(ticket_option_id, purchase_id) = 1)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_ticket_option_id_idx ON idempotency_keys (ticket_option_id);
CREATE INDEX idempotency_keys_purchase_id_idx ON idempotency_keys (purchase_id);
