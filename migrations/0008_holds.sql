-- Holds: tickets set aside for a buyer for a while (expires_at), then bought
-- (confirmed), let go (released) or, past expires_at, expired. An option's
-- tickets are on sale (remaining), held (by holds stored as `held`) or sold:
-- remaining + held + sold = total, which a CHECK backs.
--
-- Locks (README, Migrations): ticket_options gains a column with a constant
-- default (catalog only, no rewrite); its CHECKs are added NOT VALID
-- (catalog only) and then VALIDATEd, which scans the table under SHARE
-- UPDATE EXCLUSIVE (reads and writes go on). idempotency_keys gains a null
-- column and its foreign key the same way. The new table and its indexes are
-- empty. Run it with the new version of the service.
-- depends: 0007_api_schema

CREATE TABLE ticket_allocation.holds (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_option_id  uuid        NOT NULL REFERENCES ticket_allocation.ticket_options (id),
    user_id           uuid        NOT NULL,
    quantity          integer     NOT NULL
        CONSTRAINT holds_quantity_range CHECK (quantity BETWEEN 1 AND 1000),
    -- As stored: `held` until confirmed, released, or reclaimed after expires_at
    -- (`expired`). Readers see a `held` hold past expires_at as expired.
    status            text        NOT NULL DEFAULT 'held'
        CONSTRAINT holds_status_known CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    -- When it was released, or (expired) when it expired.
    released_at       timestamptz,
    confirmed_at      timestamptz,
    -- The purchase that confirmed it: one hold, one purchase, of its option.
    purchase_id       uuid        UNIQUE,
    CONSTRAINT holds_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT holds_released_at_iff_let_go CHECK ((status IN ('released', 'expired')) = (released_at IS NOT NULL)),
    CONSTRAINT holds_confirmed_at_iff_confirmed CHECK ((status = 'confirmed') = (confirmed_at IS NOT NULL)),
    CONSTRAINT holds_purchase_iff_confirmed CHECK ((status = 'confirmed') = (purchase_id IS NOT NULL)),
    CONSTRAINT holds_purchase_fk FOREIGN KEY (purchase_id, ticket_option_id)
        REFERENCES ticket_allocation.purchases (id, ticket_option_id)
);
-- The live holds of an option, by expiry: what reads subtract and reclaims
-- take. Partial, so it is as large as the holds live now, never the history.
CREATE INDEX holds_live_idx ON ticket_allocation.holds (ticket_option_id, expires_at) WHERE status = 'held';
-- A user's live holds of an option (max_per_user). The user first: a lookup of
-- an option's expired holds (no user) cannot use it, so no plan, however stale
-- its statistics, reads every live hold of a hot option for one user or
-- one expiry (tests/sql/test_plan_stability.py caught exactly that).
CREATE INDEX holds_live_user_idx ON ticket_allocation.holds (user_id, ticket_option_id) WHERE status = 'held';
-- The sweeper: live holds by expiry, across options.
CREATE INDEX holds_expiry_idx ON ticket_allocation.holds (expires_at) WHERE status = 'held';

ALTER TABLE ticket_allocation.ticket_options ADD COLUMN held integer NOT NULL DEFAULT 0;
ALTER TABLE ticket_allocation.ticket_options
    ADD CONSTRAINT ticket_options_held_not_negative CHECK (held >= 0) NOT VALID,
    ADD CONSTRAINT ticket_options_total_is_remaining_plus_held_plus_sold
        CHECK (total = remaining + held + sold) NOT VALID;
ALTER TABLE ticket_allocation.ticket_options VALIDATE CONSTRAINT ticket_options_held_not_negative;
ALTER TABLE ticket_allocation.ticket_options
    VALIDATE CONSTRAINT ticket_options_total_is_remaining_plus_held_plus_sold;
ALTER TABLE ticket_allocation.ticket_options DROP CONSTRAINT ticket_options_total_is_remaining_plus_sold;

-- A hold made with an Idempotency-Key is an outcome a key remembers. No index
-- on hold_id: holds are never deleted, so the foreign key never looks it up.
ALTER TABLE ticket_allocation.idempotency_keys ADD COLUMN hold_id uuid;
ALTER TABLE ticket_allocation.idempotency_keys
    ADD CONSTRAINT idempotency_keys_hold_fk FOREIGN KEY (hold_id) REFERENCES ticket_allocation.holds (id) NOT VALID,
    ADD CONSTRAINT idempotency_keys_one_outcome_of_three
        CHECK (num_nonnulls(ticket_option_id, purchase_id, hold_id) = 1) NOT VALID;
ALTER TABLE ticket_allocation.idempotency_keys VALIDATE CONSTRAINT idempotency_keys_hold_fk;
ALTER TABLE ticket_allocation.idempotency_keys VALIDATE CONSTRAINT idempotency_keys_one_outcome_of_three;
ALTER TABLE ticket_allocation.idempotency_keys DROP CONSTRAINT idempotency_keys_one_outcome;
-- It gains the hold ids; post-apply re-creates it (IF EXISTS: see 0002).
DROP FUNCTION IF EXISTS ticket_allocation.remember_idempotency_keys(text[], text[], jsonb[], uuid[], uuid[]);

-- The clock holds decide expiry by: now() + clock_offset. Only the owner
-- moves it (the tests do, to expire holds without waiting).
ALTER TABLE ticket_allocation.settings ADD COLUMN clock_offset interval NOT NULL DEFAULT '0';

ALTER TYPE api.ticket_option ADD ATTRIBUTE held integer;
CREATE TYPE api.hold AS (
    id                uuid,
    ticket_option_id  uuid,
    user_id           uuid,
    quantity          integer,
    status            text,
    expires_at        timestamptz,
    created_at        timestamptz,
    purchase_id       uuid
);
-- The answer to one request of a hold batch: a refusal, or the hold.
CREATE TYPE api.hold_outcome AS (
    ordinal  integer,
    refusal  api.refusal,
    hold     api.hold
);
-- What confirm_hold returns: the purchase, and whether this call made it
-- (false: the hold was confirmed before, nothing more was bought).
CREATE TYPE api.hold_confirmation AS (
    created   boolean,
    purchase  api.purchase
);
