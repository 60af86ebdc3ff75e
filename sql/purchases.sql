-- Purchases: selling tickets from an option's allocation without overselling,
-- reading them back, and cancelling them.
--
-- Locking discipline: every change to an option's allocation or to the status
-- of its purchases first locks the option's row (FOR NO KEY UPDATE: the key
-- does not change, so inserts that reference the option are not blocked).
-- Changes to one option thus run one after another, each seeing what the
-- previous left, and the lock order (option, then its purchases) is the same
-- everywhere, so they cannot deadlock.

-- purchase_tickets_batch(p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[],
--                        p_idempotency_keys text[] DEFAULT NULL)
--     RETURNS SETOF purchase_outcome
-- Decides many purchases of one option in one call, in arrival order (array
-- order): request i buys p_quantities[i] tickets for p_user_ids[i], with the
-- optional idempotency key p_idempotency_keys[i]. Locks the option's row once;
-- each request is all or nothing, and a refused request does not stop the
-- others. Returns one row per request, in order: a refusal (the error that
-- purchase_tickets would raise for it) or the receipt of its purchase. A
-- request whose key names an earlier purchase of the same request, in an
-- earlier call or earlier in this batch, gets that purchase and buys nothing.
-- This is the one implementation of the purchase rules; purchase_tickets is
-- a batch of one.
-- Refusals: TA001 (null user, quantity outside 1..1000, malformed key),
--           TA003 (not enough left), TA005, TA006 (keys), TA007 (max_per_user).
-- Errors (the whole call fails, nothing is bought): TA001 when the option id
--         is null or the arrays differ in length; TA002 when the option does not exist.
CREATE OR REPLACE FUNCTION purchase_tickets_batch(
    p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[], p_idempotency_keys text[] DEFAULT NULL)
RETURNS SETOF purchase_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requests constant integer := coalesce(cardinality(p_user_ids), 0);
    locked ticket_options;
    remaining integer;
    refusals refusal[] := '{}'::refusal[]; -- by ordinal; null when the request is answered by a purchase
    purchase_ids uuid[] := '{}'::uuid[];   -- by ordinal: the purchase answering it, new or earlier
    repeats integer[] := '{}'::integer[];  -- by ordinal: the earlier ordinal with the same key and request
    buying integer[] := '{}'::integer[];   -- ordinals that buy now
    undecided integer := 0;                -- requests left to decide under the lock
    requests_by_key jsonb := '{}'::jsonb;  -- key -> {"ordinal", "request"} of its first use in this batch
    held_by_user jsonb := '{}'::jsonb;     -- user -> tickets held in active purchases, this batch included
    claim record;
    first_use jsonb;
    request jsonb;
    held integer;
    buyer uuid;
    wanted integer;
    key text;
BEGIN
    IF p_ticket_option_id IS NULL THEN
        PERFORM raise_invalid_argument('ticket_option_id', 'must not be null');
    END IF;
    IF coalesce(cardinality(p_quantities), 0) <> requests
       OR coalesce(cardinality(p_idempotency_keys), requests) <> requests THEN
        PERFORM raise_invalid_argument('requests', 'user ids, quantities and idempotency keys must be arrays of one length');
    END IF;

    -- First, without the option's lock: check each request and claim its key,
    -- so that a retry racing its first attempt is told at once (TA006) rather
    -- than queued behind the lock. A loop over requests, never over tickets.
    FOR i IN 1 .. requests LOOP
        buyer := p_user_ids[i];
        wanted := p_quantities[i];
        key := p_idempotency_keys[i];
        IF buyer IS NULL THEN
            refusals[i] := invalid_argument('user_id', 'must not be null');
        ELSIF wanted IS NULL OR wanted NOT BETWEEN 1 AND 1000 THEN
            refusals[i] := invalid_argument('quantity', 'must be a whole number from 1 to 1000');
        ELSIF key IS NOT NULL THEN
            request := jsonb_build_object('purchase_tickets', jsonb_build_object(
                'ticket_option_id', p_ticket_option_id, 'user_id', buyer, 'quantity', wanted));
            first_use := requests_by_key -> key;
            IF first_use IS NULL THEN
                SELECT * INTO claim FROM claim_idempotency_key(key, request);
                IF (claim.refused).sqlstate IS NOT NULL THEN
                    refusals[i] := claim.refused;
                ELSE
                    requests_by_key := requests_by_key
                        || jsonb_build_object(key, jsonb_build_object('ordinal', i, 'request', request));
                    purchase_ids[i] := (claim.earlier).purchase_id;
                END IF;
            ELSIF first_use -> 'request' = request THEN
                repeats[i] := (first_use ->> 'ordinal')::integer;  -- answered below, as its first use
            ELSE
                refusals[i] := idempotency_key_reused(key, first_use -> 'request');
            END IF;
        END IF;
        IF (refusals[i]).sqlstate IS NULL AND purchase_ids[i] IS NULL AND repeats[i] IS NULL THEN
            undecided := undecided + 1;
        END IF;
    END LOOP;

    IF undecided > 0 THEN
        SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id FOR NO KEY UPDATE;
    ELSE
        -- Every request is already answered: nothing to lock for.
        SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA002',
            MESSAGE = format('ticket option %s does not exist', p_ticket_option_id);
    END IF;
    remaining := locked.allocation;

    -- Then, under the lock, decide in arrival order the requests still open.
    FOR i IN 1 .. requests LOOP
        -- (A composite IS NOT NULL only when all its fields are: test the sqlstate.)
        CONTINUE WHEN (refusals[i]).sqlstate IS NOT NULL OR purchase_ids[i] IS NOT NULL OR repeats[i] IS NOT NULL;
        buyer := p_user_ids[i];
        wanted := p_quantities[i];
        IF remaining < wanted THEN
            refusals[i] := ROW('TA003',
                format('not enough tickets left: %s requested, %s remaining', wanted, remaining),
                format('remaining: %s', remaining), 'Ask for at most the remaining number of tickets.', NULL)::refusal;
            CONTINUE;
        END IF;
        IF locked.max_per_user IS NOT NULL THEN
            held := (held_by_user ->> buyer::text)::integer;
            IF held IS NULL THEN
                SELECT coalesce(sum(p.quantity), 0)::integer INTO held
                FROM purchases p
                WHERE p.ticket_option_id = p_ticket_option_id AND p.user_id = buyer
                  AND p.status = 'active';
            END IF;
            IF held + wanted > locked.max_per_user THEN
                refusals[i] := ROW('TA007',
                    format('user %s may hold at most %s tickets of this option and holds %s; %s more would exceed it',
                           buyer, locked.max_per_user, held, wanted),
                    format('max_per_user: %s, held: %s', locked.max_per_user, held),
                    'Ask for fewer tickets; cancelled purchases do not count.', NULL)::refusal;
                CONTINUE;
            END IF;
            held_by_user := held_by_user || jsonb_build_object(buyer::text, held + wanted);
        END IF;
        remaining := remaining - wanted;
        purchase_ids[i] := gen_random_uuid();
        buying := buying || i;
    END LOOP;
    FOR i IN 1 .. requests LOOP
        CONTINUE WHEN repeats[i] IS NULL;
        refusals[i] := refusals[repeats[i]];
        purchase_ids[i] := purchase_ids[repeats[i]];
    END LOOP;

    IF cardinality(buying) > 0 THEN
        UPDATE ticket_options
        SET allocation = remaining, sold = sold + (locked.allocation - remaining), updated_at = now()
        WHERE id = p_ticket_option_id;
        INSERT INTO purchases (id, ticket_option_id, user_id, quantity)
        SELECT purchase_ids[b], p_ticket_option_id, p_user_ids[b], p_quantities[b]
        FROM unnest(buying) AS b;
        INSERT INTO tickets (ticket_option_id, purchase_id)
        SELECT p_ticket_option_id, purchase_ids[b]
        FROM unnest(buying) AS b, generate_series(1, p_quantities[b]);
        PERFORM remember_idempotency_keys(
            array_agg(p_idempotency_keys[b]), array_agg(requests_by_key -> p_idempotency_keys[b] -> 'request'),
            array_agg(NULL::uuid), array_agg(purchase_ids[b]))
        FROM unnest(buying) AS b
        WHERE p_idempotency_keys[b] IS NOT NULL
        HAVING count(*) > 0;
    END IF;

    -- One primary-key lookup per request, never a join of the receipts view
    -- against the requests: joined, its ticket_ids (a subquery per purchase)
    -- is computed below the join, so a hash join (what a cached generic plan
    -- picks for a set of unknown size) ran it for EVERY purchase of the table.
    -- A scalar subquery is run per output row, with equality on the key.
    RETURN QUERY
        SELECT o, refusals[o], (SELECT r FROM purchase_receipts r WHERE r.id = purchase_ids[o])
        FROM generate_series(1, requests) AS o
        ORDER BY o;
END;
$$;

-- purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer,
--                  p_idempotency_key text DEFAULT NULL)
--     RETURNS purchase_receipts
-- Buys p_quantity tickets for p_user_id, all or nothing, in one call: locks
-- the option's row, checks what remains and the option's max_per_user,
-- decrements it, and inserts the purchase and one ticket row per ticket.
-- Returns the purchase with the ids of its tickets. With p_idempotency_key,
-- calling again with the same key and arguments returns the first purchase
-- (as it is now) and buys nothing more. A batch of one (see above).
-- Errors: TA001 when an argument is null, quantity is outside 1..1000, or the
--         idempotency key is malformed;
--         TA002 when the ticket option does not exist;
--         TA003 when fewer than p_quantity tickets remain;
--         TA007 when the user would hold more than the option's max_per_user;
--         TA005, TA006 for idempotency keys (see sql/idempotency.sql).
--         Nothing is bought when any error is raised.
CREATE OR REPLACE FUNCTION purchase_tickets(
    p_ticket_option_id uuid, p_user_id uuid, p_quantity integer, p_idempotency_key text DEFAULT NULL)
RETURNS purchase_receipts
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    outcome purchase_outcome;
BEGIN
    SELECT * INTO outcome
    FROM purchase_tickets_batch(p_ticket_option_id, ARRAY[p_user_id], ARRAY[p_quantity], ARRAY[p_idempotency_key]);
    IF (outcome.refusal).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(outcome.refusal);
    END IF;
    RETURN outcome.receipt;
END;
$$;

-- get_purchase(p_id uuid) RETURNS purchase_receipts
-- Returns the purchase with its ticket ids, status and cancelled_at.
-- Errors: TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION get_purchase(p_id uuid)
RETURNS purchase_receipts
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    receipt purchase_receipts;
BEGIN
    SELECT * INTO receipt FROM purchase_receipts WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA004',
            MESSAGE = format('purchase %s does not exist', coalesce(p_id::text, 'NULL'));
    END IF;
    RETURN receipt;
END;
$$;

-- list_purchases(p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
--                p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
--     RETURNS SETOF purchase_receipts
-- The option's purchases, newest first (created_at, then id, descending), at
-- most p_limit of them, only p_user_id's when given. Keyset pagination: pass
-- the created_at and id of the last row of a page to get the next one; each
-- purchase is listed once even while new ones are being made.
-- Errors: TA001 when p_limit is outside 1..500 or only one of the two
--         p_before_* is given; TA002 when the ticket option does not exist.
CREATE OR REPLACE FUNCTION list_purchases(
    p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
    p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
RETURNS SETOF purchase_receipts
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 500');
    END IF;
    IF (p_before_created_at IS NULL) <> (p_before_id IS NULL) THEN
        PERFORM raise_invalid_argument('cursor', 'needs both p_before_created_at and p_before_id, or neither');
    END IF;
    PERFORM get_ticket_option(p_ticket_option_id);  -- TA002 for an unknown option

    IF p_before_id IS NULL THEN
        p_before_created_at := 'infinity';
        p_before_id := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    END IF;
    -- One statement per shape of the filter, never `p_user_id IS NULL OR ...`:
    -- PL/pgSQL caches one plan per statement, and a generic plan made for
    -- one shape (all users) would serve the other (one user) by reading the
    -- whole option. Each statement below walks the index that matches it,
    -- in the order of its ORDER BY, and stops after p_limit rows.
    IF p_user_id IS NULL THEN
        RETURN QUERY
            SELECT r.*
            FROM purchase_receipts r
            WHERE r.ticket_option_id = p_ticket_option_id
              AND (r.created_at, r.id) < (p_before_created_at, p_before_id)
            ORDER BY r.created_at DESC, r.id DESC
            LIMIT p_limit;
    ELSE
        RETURN QUERY
            SELECT r.*
            FROM purchase_receipts r
            WHERE r.ticket_option_id = p_ticket_option_id
              AND r.user_id = p_user_id
              AND (r.created_at, r.id) < (p_before_created_at, p_before_id)
            ORDER BY r.created_at DESC, r.id DESC
            LIMIT p_limit;
    END IF;
END;
$$;

-- cancel_purchase(p_id uuid) RETURNS purchase_receipts
-- Cancels the purchase: marks it cancelled (cancelled_at), voids its tickets
-- and puts its quantity back on sale, all at once. Cancelling a cancelled
-- purchase changes nothing and returns it as it is. The rows stay, as history.
-- Errors: TA001 when p_id is null; TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION cancel_purchase(p_id uuid)
RETURNS purchase_receipts
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    option_id uuid;
    target purchases;
BEGIN
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    END IF;
    SELECT ticket_option_id INTO option_id FROM purchases WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA004',
            MESSAGE = format('purchase %s does not exist', p_id);
    END IF;

    PERFORM 1 FROM ticket_options WHERE id = option_id FOR NO KEY UPDATE;
    SELECT * INTO target FROM purchases WHERE id = p_id FOR UPDATE;
    IF target.status = 'active' THEN
        UPDATE purchases SET status = 'cancelled', cancelled_at = now() WHERE id = p_id;
        UPDATE tickets SET voided_at = now() WHERE purchase_id = p_id;
        UPDATE ticket_options
        SET allocation = allocation + target.quantity, sold = sold - target.quantity, updated_at = now()
        WHERE id = option_id;
    END IF;
    RETURN get_purchase(p_id);
END;
$$;
