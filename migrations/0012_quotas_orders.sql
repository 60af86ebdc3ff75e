-- Quotas (capacity shared by ticket options) and orders (many lines, one
-- outcome), issue 18; the batch functions take one array of a composite
-- request type instead of parallel arrays.
--
-- A quota counts what its options sell and hold: sold and held are the sums
-- of its options' sold and held, and sold + held never passes its size (a
-- CHECK). An option may be in any number of quotas (quota_options). An order
-- is one purchase per line (bought at once) or one hold per line (held, then
-- confirmed, released or expired together); order_lines names each line's
-- option, quantity, hold and purchase, and purchases.order_id /
-- holds.order_id point back at their line (a foreign key on both columns,
-- so a purchase or hold can only claim the order whose line names it).
--
-- Locks (README, Migrations): the new tables and their indexes are empty.
-- purchases, holds and idempotency_keys gain a null column (catalog only, no
-- rewrite) and foreign keys added NOT VALID (catalog only) then VALIDATEd,
-- which scans each table under SHARE UPDATE EXCLUSIVE (reads and writes go
-- on). No index on those columns: orders are never deleted and order_lines
-- keys never change once set (the foreign keys never look the other way),
-- and an order's purchases and holds are found through order_lines. The
-- view and the types change in the catalog only. Run it with the new version
-- of the service: the batch functions change their signatures.
-- depends: 0011_hold_bounds

CREATE TABLE ticket_allocation.quotas (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL
        CONSTRAINT quotas_name_visible CHECK (ticket_allocation.name_problem(name) IS NULL)
        CONSTRAINT quotas_name_length CHECK (char_length(name) <= 200),
    size        integer     NOT NULL CONSTRAINT quotas_size_not_negative CHECK (size >= 0),
    -- What its options have sold (active purchases) and hold (holds stored held), summed.
    sold        integer     NOT NULL DEFAULT 0 CONSTRAINT quotas_sold_not_negative CHECK (sold >= 0),
    held        integer     NOT NULL DEFAULT 0 CONSTRAINT quotas_held_not_negative CHECK (held >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quotas_sold_plus_held_within_size CHECK (sold + held <= size)
);

-- Which options a quota counts (pretix's many-to-many).
CREATE TABLE ticket_allocation.quota_options (
    quota_id          uuid NOT NULL REFERENCES ticket_allocation.quotas (id),
    ticket_option_id  uuid NOT NULL REFERENCES ticket_allocation.ticket_options (id),
    PRIMARY KEY (quota_id, ticket_option_id)
);
-- The quotas of an option: what every sale of it must also fit.
CREATE INDEX quota_options_by_option ON ticket_allocation.quota_options (ticket_option_id, quota_id);

CREATE TABLE ticket_allocation.orders (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL,
    -- As stored: `held` until confirmed, released, or expired (stored when a
    -- line's hold is reclaimed; readers see a `held` order past expires_at as
    -- expired). A bought order is `confirmed`, `partially_cancelled` when some
    -- of its purchases are cancelled, `cancelled` when all are.
    status        text        NOT NULL
        CONSTRAINT orders_status_known
        CHECK (status IN ('held', 'confirmed', 'released', 'expired', 'partially_cancelled', 'cancelled')),
    lines         integer     NOT NULL CONSTRAINT orders_lines_range CHECK (lines BETWEEN 1 AND 50),
    created_at    timestamptz NOT NULL,
    -- Held orders only (null: bought at once): when every line's hold expires.
    expires_at    timestamptz,
    -- When it was bought (at once, or by its confirmation).
    confirmed_at  timestamptz,
    -- When it was released, or (expired) when it expired.
    released_at   timestamptz,
    -- When its last active purchase was cancelled.
    cancelled_at  timestamptz,
    CONSTRAINT orders_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT orders_held_ones_expire CHECK (status NOT IN ('held', 'released', 'expired') OR expires_at IS NOT NULL),
    CONSTRAINT orders_confirmed_at_iff_bought
        CHECK ((status IN ('confirmed', 'partially_cancelled', 'cancelled')) = (confirmed_at IS NOT NULL)),
    CONSTRAINT orders_released_at_iff_let_go CHECK ((status IN ('released', 'expired')) = (released_at IS NOT NULL)),
    CONSTRAINT orders_cancelled_at_iff_cancelled CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);

-- One row per line: its option (each at most once per order), quantity, and
-- the hold (held orders) and purchase (bought lines) that carry it.
CREATE TABLE ticket_allocation.order_lines (
    order_id          uuid    NOT NULL REFERENCES ticket_allocation.orders (id),
    line              integer NOT NULL CONSTRAINT order_lines_line_range CHECK (line BETWEEN 1 AND 50),
    ticket_option_id  uuid    NOT NULL REFERENCES ticket_allocation.ticket_options (id),
    quantity          integer NOT NULL CONSTRAINT order_lines_quantity_range CHECK (quantity BETWEEN 1 AND 1000),
    hold_id           uuid    UNIQUE,
    purchase_id       uuid    UNIQUE,
    PRIMARY KEY (order_id, line),
    CONSTRAINT order_lines_option_once UNIQUE (order_id, ticket_option_id),
    CONSTRAINT order_lines_hold_of_order UNIQUE (order_id, hold_id),
    CONSTRAINT order_lines_purchase_of_order UNIQUE (order_id, purchase_id),
    CONSTRAINT order_lines_carried CHECK (num_nonnulls(hold_id, purchase_id) >= 1),
    -- Deferred: a line is written before the hold or purchase that points back at it.
    CONSTRAINT order_lines_hold_fk FOREIGN KEY (hold_id) REFERENCES ticket_allocation.holds (id)
        DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT order_lines_purchase_fk FOREIGN KEY (purchase_id, ticket_option_id)
        REFERENCES ticket_allocation.purchases (id, ticket_option_id) DEFERRABLE INITIALLY DEFERRED
);

ALTER TABLE ticket_allocation.purchases ADD COLUMN order_id uuid;
ALTER TABLE ticket_allocation.purchases
    ADD CONSTRAINT purchases_order_line_fk FOREIGN KEY (order_id, id)
        REFERENCES ticket_allocation.order_lines (order_id, purchase_id) NOT VALID;
ALTER TABLE ticket_allocation.purchases VALIDATE CONSTRAINT purchases_order_line_fk;
ALTER TABLE ticket_allocation.holds ADD COLUMN order_id uuid;
ALTER TABLE ticket_allocation.holds
    ADD CONSTRAINT holds_order_line_fk FOREIGN KEY (order_id, id)
        REFERENCES ticket_allocation.order_lines (order_id, hold_id) NOT VALID;
ALTER TABLE ticket_allocation.holds VALIDATE CONSTRAINT holds_order_line_fk;

-- An order placed with an Idempotency-Key is an outcome a key remembers.
ALTER TABLE ticket_allocation.idempotency_keys ADD COLUMN order_id uuid;
ALTER TABLE ticket_allocation.idempotency_keys
    ADD CONSTRAINT idempotency_keys_order_fk FOREIGN KEY (order_id) REFERENCES ticket_allocation.orders (id) NOT VALID,
    ADD CONSTRAINT idempotency_keys_one_outcome_of_four
        CHECK (num_nonnulls(ticket_option_id, purchase_id, hold_id, order_id) = 1) NOT VALID;
ALTER TABLE ticket_allocation.idempotency_keys VALIDATE CONSTRAINT idempotency_keys_order_fk;
ALTER TABLE ticket_allocation.idempotency_keys VALIDATE CONSTRAINT idempotency_keys_one_outcome_of_four;
ALTER TABLE ticket_allocation.idempotency_keys DROP CONSTRAINT idempotency_keys_one_outcome_of_three;

-- A purchase as callers see it gains its order (added last: CREATE OR REPLACE VIEW appends only).
CREATE OR REPLACE VIEW ticket_allocation.purchase_receipts AS
SELECT p.id, p.ticket_option_id, p.user_id, p.quantity, p.status,
       array(SELECT t.id FROM ticket_allocation.tickets t WHERE t.purchase_id = p.id ORDER BY t.id) AS ticket_ids,
       p.created_at, p.cancelled_at, p.order_id
FROM ticket_allocation.purchases p;

ALTER TYPE api.purchase ADD ATTRIBUTE order_id uuid;
ALTER TYPE api.hold ADD ATTRIBUTE order_id uuid;
-- The quotas the option is in, and the most one purchase could get now.
ALTER TYPE api.ticket_option ADD ATTRIBUTE quota_ids uuid[], ADD ATTRIBUTE available integer;

-- One request of a batch (purchase_tickets_batch, hold_tickets_batch): ttl for holds only.
CREATE TYPE api.ticket_request AS (
    ticket_option_id  uuid,
    user_id           uuid,
    quantity          integer,
    idempotency_key   text,
    caller            text,
    ttl               interval
);
-- One line of an order (place_order).
CREATE TYPE api.order_line AS (
    ticket_option_id  uuid,
    quantity          integer
);
CREATE TYPE api.quota AS (
    id                 uuid,
    name               text,
    size               integer,
    sold               integer,
    held               integer,
    remaining          integer,
    ticket_option_ids  uuid[],
    created_at         timestamptz
);
CREATE TYPE api."order" AS (
    id          uuid,
    user_id     uuid,
    status      text,
    lines       api.order_line[],
    expires_at  timestamptz,
    created_at  timestamptz,
    purchases   api.purchase[],
    holds       api.hold[]
);
-- One order of a batch (place_orders_batch): ttl null buys at once.
CREATE TYPE api.order_request AS (
    user_id           uuid,
    lines             api.order_line[],
    ttl               interval,
    idempotency_key   text,
    caller            text
);
-- The answer to one order of a batch: a refusal, or the order.
CREATE TYPE api.order_outcome AS (
    ordinal  integer,
    refusal  api.refusal,
    "order"  api."order"
);
-- What confirm_order returns: the order, and whether this call bought it.
CREATE TYPE api.order_confirmation AS (
    created  boolean,
    "order"  api."order"
);

-- The batch functions take api.ticket_request[]; remember_idempotency_keys gains
-- the order ids; the helpers of the old batches go. post-apply re-creates what is
-- still used (IF EXISTS: on a new database they are created only after all migrations).
DROP FUNCTION IF EXISTS api.purchase_tickets_batch(uuid, uuid[], integer[], text[], text[]);
DROP FUNCTION IF EXISTS api.hold_tickets_batch(uuid, uuid[], integer[], interval[], text[], text[]);
DROP FUNCTION IF EXISTS ticket_allocation.remember_idempotency_keys(text[], text[], jsonb[], uuid[], uuid[], uuid[]);
DROP FUNCTION IF EXISTS ticket_allocation.decide_batch(uuid, uuid[], integer[], text[], text[], jsonb[], api.refusal[]);
DROP FUNCTION IF EXISTS ticket_allocation.decide_in_order(ticket_allocation.ticket_options, uuid[], integer[], boolean[]);
DROP FUNCTION IF EXISTS ticket_allocation.request_refusal(uuid, integer);
DROP FUNCTION IF EXISTS ticket_allocation.apply_purchases(uuid, uuid[], uuid[], integer[], boolean);
DROP FUNCTION IF EXISTS ticket_allocation.apply_holds(uuid, uuid[], uuid[], integer[], interval[]);
DROP FUNCTION IF EXISTS ticket_allocation.append_purchase_events(text, uuid[], api.ticket_option);
DROP FUNCTION IF EXISTS ticket_allocation.reclaim_expired_holds(uuid);
DROP FUNCTION IF EXISTS ticket_allocation.lock_option(uuid);
DROP FUNCTION IF EXISTS ticket_allocation.try_lock_option(uuid);
DROP FUNCTION IF EXISTS ticket_allocation.locked_hold(uuid);
