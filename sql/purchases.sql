-- Purchases: selling tickets from an option's allocation without overselling,
-- reading them back, and cancelling them.
--
-- Locking discipline: every change to an option's allocation or to the status
-- of its purchases first locks the option's row (FOR NO KEY UPDATE: the key
-- does not change, so inserts that reference the option are not blocked).
-- Changes to one option thus run one after another, each seeing what the
-- previous left, and the lock order (option, then its purchases) is the same
-- everywhere, so they cannot deadlock.

-- purchase_resource(p_id uuid) RETURNS api.purchase
-- The purchase as callers see it (purchase_receipts: the row with its ticket
-- ids), looked up by primary key; null when there is none.
CREATE OR REPLACE FUNCTION ticket_allocation.purchase_resource(p_id uuid)
RETURNS api.purchase
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT r.* FROM purchase_receipts r WHERE r.id = p_id
$$;

-- api.purchase_tickets_batch(p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[],
--                        p_idempotency_keys text[] DEFAULT NULL, p_callers text[] DEFAULT NULL)
--     RETURNS SETOF api.purchase_outcome
-- Decides many purchases of one option in one call, in arrival order (array
-- order): request i buys p_quantities[i] tickets for p_user_ids[i], with the
-- optional idempotency key p_idempotency_keys[i] of caller p_callers[i] (see
-- idempotency_scope in sql/idempotency.sql). Locks the option's row once;
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
CREATE OR REPLACE FUNCTION api.purchase_tickets_batch(
    p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[], p_idempotency_keys text[] DEFAULT NULL,
    p_callers text[] DEFAULT NULL)
RETURNS SETOF api.purchase_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requests constant integer := coalesce(cardinality(p_user_ids), 0);
    locked ticket_options;
    batch_remaining integer;
    refusals api.refusal[] := '{}'::api.refusal[]; -- by ordinal; null when the request is answered by a purchase
    purchase_ids uuid[] := '{}'::uuid[];   -- by ordinal: the purchase answering it, new or earlier
    repeats integer[] := '{}'::integer[];  -- by ordinal: the earlier ordinal with the same key and request
    buying integer[] := '{}'::integer[];   -- ordinals that buy now
    undecided integer := 0;            -- requests left to decide under the lock
    scopes text[] := '{}'::text[];         -- by ordinal: the scope of its key
    requests_by_key jsonb := '{}'::jsonb;  -- [scope, key] -> {"ordinal", "request"} of its first use in this batch
    held_by_user jsonb := '{}'::jsonb;     -- user -> tickets held in active purchases, this batch included
    claim record;
    first_use jsonb;
    request jsonb;
    held integer;
    buyer uuid;
    wanted integer;
    key text;
BEGIN
    PERFORM assert_session_limits();
    IF p_ticket_option_id IS NULL THEN
        PERFORM raise_invalid_argument('ticket_option_id', 'must not be null');
    END IF;
    IF coalesce(cardinality(p_quantities), 0) <> requests
       OR coalesce(cardinality(p_idempotency_keys), requests) <> requests
       OR coalesce(cardinality(p_callers), requests) <> requests THEN
        PERFORM raise_invalid_argument('requests', 'user ids, quantities, idempotency keys and callers must be arrays of one length');
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
            scopes[i] := idempotency_scope(p_callers[i], p_ticket_option_id, buyer);
            first_use := requests_by_key -> jsonb_build_array(scopes[i], key)::text;
            IF first_use IS NULL THEN
                SELECT * INTO claim FROM claim_idempotency_key(scopes[i], key, request);
                IF (claim.refused).sqlstate IS NOT NULL THEN
                    refusals[i] := claim.refused;
                ELSE
                    requests_by_key := requests_by_key
                        || jsonb_build_object(jsonb_build_array(scopes[i], key)::text,
                                              jsonb_build_object('ordinal', i, 'request', request));
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
        PERFORM raise_refusal(ticket_option_not_found(p_ticket_option_id));
    END IF;
    batch_remaining := locked.remaining;

    -- Then, under the lock, decide in arrival order the requests still open.
    FOR i IN 1 .. requests LOOP
        -- (A composite IS NOT NULL only when all its fields are: test the sqlstate.)
        CONTINUE WHEN (refusals[i]).sqlstate IS NOT NULL OR purchase_ids[i] IS NOT NULL OR repeats[i] IS NOT NULL;
        buyer := p_user_ids[i];
        wanted := p_quantities[i];
        IF batch_remaining < wanted THEN
            refusals[i] := insufficient_tickets(wanted, batch_remaining);
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
                refusals[i] := per_user_limit_exceeded(buyer, locked.max_per_user, held, wanted);
                CONTINUE;
            END IF;
            held_by_user := held_by_user || jsonb_build_object(buyer::text, held + wanted);
        END IF;
        batch_remaining := batch_remaining - wanted;
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
        SET remaining = batch_remaining, sold = sold + (locked.remaining - batch_remaining), updated_at = now()
        WHERE id = p_ticket_option_id;
        INSERT INTO purchases (id, ticket_option_id, user_id, quantity)
        SELECT purchase_ids[b], p_ticket_option_id, p_user_ids[b], p_quantities[b]
        FROM unnest(buying) AS b;
        INSERT INTO tickets (ticket_option_id, purchase_id)
        SELECT p_ticket_option_id, purchase_ids[b]
        FROM unnest(buying) AS b, generate_series(1, p_quantities[b]);
        PERFORM remember_idempotency_keys(
            array_agg(scopes[b]), array_agg(p_idempotency_keys[b]),
            array_agg(requests_by_key -> jsonb_build_array(scopes[b], p_idempotency_keys[b])::text -> 'request'),
            array_agg(NULL::uuid), array_agg(purchase_ids[b]))
        FROM unnest(buying) AS b
        WHERE p_idempotency_keys[b] IS NOT NULL
        HAVING count(*) > 0;
        -- Events (sql/events.sql): the new purchases, then the option's sold_out if it is.
        PERFORM append_purchase_events('purchase.created', (SELECT array_agg(purchase_ids[b]) FROM unnest(buying) AS b),
                                       ticket_option_resource(locked));
    END IF;

    -- One primary-key lookup per request, never a join of the receipts view
    -- against the requests: joined, its ticket_ids (a subquery per purchase)
    -- is computed below the join, so a hash join (what a cached generic plan
    -- picks for a set of unknown size) ran it for EVERY purchase of the table.
    RETURN QUERY
        SELECT o, refusals[o], purchase_resource(purchase_ids[o])
        FROM generate_series(1, requests) AS o
        ORDER BY o;
END;
$$;

-- api.purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer,
--                  p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL)
--     RETURNS api.purchase
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
CREATE OR REPLACE FUNCTION api.purchase_tickets(
    p_ticket_option_id uuid, p_user_id uuid, p_quantity integer, p_idempotency_key text DEFAULT NULL,
    p_caller text DEFAULT NULL)
RETURNS api.purchase
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    outcome api.purchase_outcome;
BEGIN
    SELECT * INTO outcome
    FROM purchase_tickets_batch(p_ticket_option_id, ARRAY[p_user_id], ARRAY[p_quantity], ARRAY[p_idempotency_key],
                                ARRAY[p_caller]);
    IF (outcome.refusal).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(outcome.refusal);
    END IF;
    RETURN outcome.receipt;
END;
$$;

-- api.get_purchase(p_id uuid) RETURNS api.purchase
-- Returns the purchase with its ticket ids, status and cancelled_at.
-- Errors: TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION api.get_purchase(p_id uuid)
RETURNS api.purchase
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    receipt api.purchase;
BEGIN
    receipt := purchase_resource(p_id);
    IF receipt.id IS NULL THEN
        PERFORM raise_refusal(purchase_not_found(p_id));
    END IF;
    RETURN receipt;
END;
$$;

-- api.list_purchases_page(p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
--                         p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
--     RETURNS api.purchase_page
-- A page of the option's purchases, newest first (created_at, then id,
-- descending): at most p_limit of them, only p_user_id's when given, and no
-- more than fit in list_purchases_ticket_budget() tickets (a page ends with
-- the purchase that reaches it; a page is always at least one purchase).
-- next_before_created_at / next_before_id: the cursor of the next page when
-- this one is full (p_limit purchases, or the budget reached), else null.
-- Keyset pagination: pass them back as p_before_*; each purchase is listed
-- once even while new ones are being made.
-- Errors: TA001 when p_limit is outside 1..500 or only one of the two
--         p_before_* is given; TA002 when the ticket option does not exist.
CREATE OR REPLACE FUNCTION api.list_purchases_page(
    p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
    p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
RETURNS api.purchase_page
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    listed uuid[];
    tickets integer;
    page api.purchase_page;
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
    -- whole option. Each walks the index that matches it, in the order of
    -- its ORDER BY, and stops after p_limit rows.
    IF p_user_id IS NULL THEN
        SELECT array_agg(id ORDER BY created_at DESC, id DESC), sum(quantity)::integer INTO listed, tickets
        FROM (SELECT p.id, p.created_at, p.quantity,
                     sum(p.quantity) OVER (ORDER BY p.created_at DESC, p.id DESC) - p.quantity AS tickets_before
              FROM purchases p
              WHERE p.ticket_option_id = p_ticket_option_id
                AND (p.created_at, p.id) < (p_before_created_at, p_before_id)
              ORDER BY p.created_at DESC, p.id DESC
              LIMIT p_limit) AS newest
        WHERE tickets_before < list_purchases_ticket_budget();
    ELSE
        SELECT array_agg(id ORDER BY created_at DESC, id DESC), sum(quantity)::integer INTO listed, tickets
        FROM (SELECT p.id, p.created_at, p.quantity,
                     sum(p.quantity) OVER (ORDER BY p.created_at DESC, p.id DESC) - p.quantity AS tickets_before
              FROM purchases p
              WHERE p.ticket_option_id = p_ticket_option_id
                AND p.user_id = p_user_id
                AND (p.created_at, p.id) < (p_before_created_at, p_before_id)
              ORDER BY p.created_at DESC, p.id DESC
              LIMIT p_limit) AS newest
        WHERE tickets_before < list_purchases_ticket_budget();
    END IF;

    -- The receipts, one primary-key lookup each, in the page's order.
    page.purchases := ARRAY(
        SELECT purchase_resource(listed_id) FROM unnest(listed) WITH ORDINALITY AS l (listed_id, n) ORDER BY n);
    IF cardinality(listed) = p_limit OR tickets >= list_purchases_ticket_budget() THEN
        page.next_before_created_at := (page.purchases[cardinality(listed)]).created_at;
        page.next_before_id := listed[cardinality(listed)];
    END IF;
    RETURN page;
END;
$$;

-- api.list_purchases(p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
--                    p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
--     RETURNS SETOF api.purchase
-- The purchases of list_purchases_page, as rows (for psql); for the next
-- page pass the last row's created_at and id as p_before_created_at,
-- p_before_id (a page shorter than p_limit may still have one: see the
-- ticket budget there). Errors: those of list_purchases_page.
CREATE OR REPLACE FUNCTION api.list_purchases(
    p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
    p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
RETURNS SETOF api.purchase
LANGUAGE sql
STABLE
SECURITY DEFINER
ROWS 50
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT listed.*
    FROM unnest((list_purchases_page(p_ticket_option_id, p_limit, p_user_id, p_before_created_at, p_before_id))
                .purchases) AS listed
$$;

-- list_purchases_ticket_budget() RETURNS integer
-- The tickets a page of list_purchases carries at most, but for its last
-- purchase: with up to 1,000 tickets a purchase, a page of 500 could
-- otherwise carry 500,000 ticket ids (8 MB of JSON) for one request.
CREATE OR REPLACE FUNCTION ticket_allocation.list_purchases_ticket_budget()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT 1000
$$;

-- api.cancel_purchase(p_id uuid) RETURNS api.purchase
-- Cancels the purchase: marks it cancelled (cancelled_at), voids its tickets
-- and puts its quantity back on sale, all at once. Cancelling a cancelled
-- purchase changes nothing and returns it as it is. The rows stay, as history.
-- Errors: TA001 when p_id is null; TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION api.cancel_purchase(p_id uuid)
RETURNS api.purchase
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    option_id uuid;
    locked ticket_options;
    target purchases;
BEGIN
    PERFORM assert_session_limits();
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    END IF;
    SELECT ticket_option_id INTO option_id FROM purchases WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(purchase_not_found(p_id));
    END IF;

    SELECT * INTO locked FROM ticket_options WHERE id = option_id FOR NO KEY UPDATE;
    SELECT * INTO target FROM purchases WHERE id = p_id FOR UPDATE;
    IF target.status = 'active' THEN
        UPDATE purchases SET status = 'cancelled', cancelled_at = now() WHERE id = p_id;
        UPDATE tickets SET voided_at = now() WHERE purchase_id = p_id;
        UPDATE ticket_options
        SET remaining = remaining + target.quantity, sold = sold - target.quantity, updated_at = now()
        WHERE id = option_id;
        -- Events (sql/events.sql): the cancellation, then the option's back_on_sale if it is.
        PERFORM append_purchase_events('purchase.cancelled', ARRAY[p_id], ticket_option_resource(locked));
    END IF;
    RETURN get_purchase(p_id);
END;
$$;
