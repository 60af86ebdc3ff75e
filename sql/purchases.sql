-- Purchases: selling tickets from an option's allocation without overselling,
-- reading them back, and cancelling them.
--
-- Locking discipline: every change to an option's allocation or to the status
-- of its purchases or holds first locks the option's row (lock_option in
-- sql/holds.sql, which also reclaims its expired holds; FOR NO KEY UPDATE: the key
-- does not change, so inserts that reference the option are not blocked).
-- Changes to one option thus run one after another, each seeing what the
-- previous left, and the lock order (option, then its purchases or holds) is the same
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

-- A batch (of purchases, or of holds: sql/holds.sql) is decided in three
-- steps, each its own function:
--   1. claim_batch_keys, without the option's lock: claim each request's
--      idempotency key, answering the repeats of earlier requests;
--   2. decide_in_order, under the lock (lock_option, which first reclaims
--      the option's expired holds): which of the open requests fit, one by
--      one in arrival order;
--   3. apply_purchases (apply_holds): write what was decided, set-based.
-- decide_batch runs steps 1 and 2 for both; each batch function builds its
-- requests, calls it, then step 3.

-- request_refusal(p_user_id uuid, p_quantity integer) RETURNS api.refusal
-- Why a request of a batch is refused before anything is looked up (TA001:
-- a null user, a quantity outside 1..1000), or null.
CREATE OR REPLACE FUNCTION ticket_allocation.request_refusal(p_user_id uuid, p_quantity integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE
        WHEN p_user_id IS NULL THEN invalid_argument('user_id', 'must not be null')
        WHEN p_quantity IS NULL OR p_quantity NOT BETWEEN 1 AND 1000
            THEN invalid_argument('quantity', 'must be a whole number from 1 to 1000')
    END
$$;

-- claim_batch_keys(p_scopes text[], p_keys text[], p_requests jsonb[], INOUT refusals api.refusal[],
--                  OUT earlier_ids uuid[], OUT repeats integer[])
-- Step 1 of a batch. For each request not refused yet (refusals[i] null)
-- with a key (p_keys[i] in scope p_scopes[i], for request p_requests[i]):
-- claims the key (claim_idempotency_key), so that a retry racing its first
-- attempt is told at once (TA006) rather than queued behind the lock.
-- earlier_ids[i]: the purchase or hold an earlier call made for the same
-- request; repeats[i]: the earlier ordinal of this batch with the same key
-- and request (answered as it is). Refusals: TA001, TA005, TA006 (keys).
-- A loop over requests, never over tickets.
CREATE OR REPLACE FUNCTION ticket_allocation.claim_batch_keys(
    p_scopes text[], p_keys text[], p_requests jsonb[], INOUT refusals api.refusal[],
    OUT earlier_ids uuid[], OUT repeats integer[])
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    first_use_by_key jsonb := '{}'::jsonb;  -- [scope, key] -> ordinal of its first use in this batch
    claim record;
    first_use integer;
    scoped_key text;
BEGIN
    earlier_ids := '{}'::uuid[];
    repeats := '{}'::integer[];
    FOR i IN 1 .. coalesce(cardinality(p_keys), 0) LOOP
        CONTINUE WHEN p_keys[i] IS NULL OR (refusals[i]).sqlstate IS NOT NULL;
        scoped_key := jsonb_build_array(p_scopes[i], p_keys[i])::text;
        first_use := (first_use_by_key ->> scoped_key)::integer;
        IF first_use IS NULL THEN
            SELECT * INTO claim FROM claim_idempotency_key(p_scopes[i], p_keys[i], p_requests[i]);
            IF (claim.refused).sqlstate IS NOT NULL THEN
                refusals[i] := claim.refused;
            ELSE
                first_use_by_key := first_use_by_key || jsonb_build_object(scoped_key, i);
                earlier_ids[i] := coalesce((claim.earlier).purchase_id, (claim.earlier).hold_id);
            END IF;
        ELSIF p_requests[first_use] = p_requests[i] THEN
            repeats[i] := first_use;
        ELSE
            refusals[i] := idempotency_key_reused(p_keys[i], p_requests[first_use]);
        END IF;
    END LOOP;
END;
$$;

-- decide_in_order(p_option ticket_options, p_user_ids uuid[], p_quantities integer[], p_open boolean[],
--                 OUT refusals api.refusal[], OUT granted integer[])
-- Step 2 of a batch, under the option's lock (p_option: the row as
-- lock_option returned it, expired holds reclaimed). Decides the open
-- requests (p_open[i]) one by one in arrival order: request i takes
-- p_quantities[i] of what is on sale for p_user_ids[i], or is refused:
-- TA003 when less is left, TA007 when the user's tickets (bought or held)
-- would pass max_per_user. granted: the ordinals that take theirs, in order.
CREATE OR REPLACE FUNCTION ticket_allocation.decide_in_order(
    p_option ticket_allocation.ticket_options, p_user_ids uuid[], p_quantities integer[], p_open boolean[],
    OUT refusals api.refusal[], OUT granted integer[])
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    on_sale integer := p_option.remaining;
    tickets_by_user jsonb := '{}'::jsonb;  -- user -> tickets bought or held, this batch included
    users_tickets integer;
    buyer uuid;
    wanted integer;
BEGIN
    refusals := '{}'::api.refusal[];
    granted := '{}'::integer[];
    FOR i IN 1 .. coalesce(cardinality(p_open), 0) LOOP
        CONTINUE WHEN NOT coalesce(p_open[i], false);
        buyer := p_user_ids[i];
        wanted := p_quantities[i];
        IF on_sale < wanted THEN
            refusals[i] := insufficient_tickets(wanted, on_sale);
            CONTINUE;
        END IF;
        IF p_option.max_per_user IS NOT NULL THEN
            users_tickets := coalesce((tickets_by_user ->> buyer::text)::integer, tickets_of_user(p_option.id, buyer));
            IF users_tickets + wanted > p_option.max_per_user THEN
                refusals[i] := per_user_limit_exceeded(buyer, p_option.max_per_user, users_tickets, wanted);
                CONTINUE;
            END IF;
            tickets_by_user := tickets_by_user || jsonb_build_object(buyer::text, users_tickets + wanted);
        END IF;
        on_sale := on_sale - wanted;
        granted := granted || i;
    END LOOP;
END;
$$;

-- apply_purchases(p_ticket_option_id uuid, p_purchase_ids uuid[], p_user_ids uuid[], p_quantities integer[],
--                 p_from_held boolean DEFAULT false)
--     RETURNS void
-- Step 3 of a purchase batch, and of confirm_hold: THE place purchases are
-- made. Under the option's lock, set-based: inserts purchase i (p_purchase_ids[i]
-- of p_quantities[i] tickets for p_user_ids[i]) and its tickets, and moves
-- the tickets to `sold` from what is on sale, or, p_from_held, from `held`
-- (the caller marks the hold confirmed). The CHECKs of ticket_options refuse
-- anything that would oversell. Appends purchase.created for each, then
-- (unless p_from_held: the caller's, see confirm_hold) the option's sold_out.
CREATE OR REPLACE FUNCTION ticket_allocation.apply_purchases(
    p_ticket_option_id uuid, p_purchase_ids uuid[], p_user_ids uuid[], p_quantities integer[],
    p_from_held boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    bought constant integer := (SELECT sum(q)::integer FROM unnest(p_quantities) AS q);
    before ticket_options;
BEGIN
    IF coalesce(bought, 0) = 0 THEN
        RETURN;
    END IF;
    SELECT * INTO before FROM ticket_options WHERE id = p_ticket_option_id;  -- locked by the caller
    IF p_from_held THEN
        UPDATE ticket_options SET held = held - bought, sold = sold + bought, updated_at = now()
        WHERE id = p_ticket_option_id;
    ELSE
        UPDATE ticket_options SET remaining = remaining - bought, sold = sold + bought, updated_at = now()
        WHERE id = p_ticket_option_id;
    END IF;
    INSERT INTO purchases (id, ticket_option_id, user_id, quantity)
    SELECT r.id, p_ticket_option_id, r.user_id, r.quantity
    FROM unnest(p_purchase_ids, p_user_ids, p_quantities) AS r (id, user_id, quantity);
    INSERT INTO tickets (ticket_option_id, purchase_id)
    SELECT p_ticket_option_id, r.id
    FROM unnest(p_purchase_ids, p_quantities) AS r (id, quantity), generate_series(1, r.quantity);
    -- Events (sql/events.sql): the new purchases, then the option's sold_out if it is; from held
    -- tickets, confirm_hold appends that after its hold.confirmed, which the sale also causes.
    PERFORM append_purchase_events('purchase.created', p_purchase_ids,
                                   CASE WHEN NOT p_from_held THEN ticket_option_resource(before) END);
END;
$$;

-- decide_batch(p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[], p_scopes text[],
--              p_keys text[], p_asked jsonb[], INOUT refusals api.refusal[], OUT ids uuid[],
--              OUT granted integer[])
-- Steps 1 and 2 of a batch of purchases or holds, the same for both: claims
-- the keys (claim_batch_keys), locks the option only if some request is
-- still open (lock_option), decides the open ones in order (decide_in_order)
-- and gives each granted request a new id; a repeat of an earlier request
-- of the batch gets its answer. ids[i]: the purchase or hold answering
-- request i (new, or an earlier call's for its key); granted: the ordinals
-- to apply now (step 3 is the caller's: apply_purchases or apply_holds).
-- Errors: TA002 when the option does not exist (the whole call fails).
CREATE OR REPLACE FUNCTION ticket_allocation.decide_batch(
    p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[], p_scopes text[], p_keys text[],
    p_asked jsonb[], INOUT refusals api.refusal[], OUT ids uuid[], OUT granted integer[])
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    requests constant integer := coalesce(cardinality(p_user_ids), 0);
    open boolean[] := '{}'::boolean[];      -- by ordinal: still to decide under the lock
    repeats integer[];                      -- by ordinal: the earlier ordinal with the same key and request
    decided api.refusal[];                  -- by ordinal: refused under the lock
    locked ticket_options;
BEGIN
    SELECT k.refusals, k.earlier_ids, k.repeats INTO refusals, ids, repeats
    FROM claim_batch_keys(p_scopes, p_keys, p_asked, refusals) AS k;
    FOR i IN 1 .. requests LOOP
        open[i] := (refusals[i]).sqlstate IS NULL AND ids[i] IS NULL AND repeats[i] IS NULL;
    END LOOP;

    IF true = ANY (open) THEN
        locked := lock_option(p_ticket_option_id);
    ELSE
        -- Every request is already answered: nothing to lock for.
        SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id;
    END IF;
    IF locked.id IS NULL THEN
        PERFORM raise_refusal(ticket_option_not_found(p_ticket_option_id));
    END IF;

    SELECT d.refusals, d.granted INTO decided, granted
    FROM decide_in_order(locked, p_user_ids, p_quantities, open) AS d;
    FOR i IN 1 .. requests LOOP
        IF (decided[i]).sqlstate IS NOT NULL THEN
            refusals[i] := decided[i];
        ELSIF i = ANY (granted) THEN
            ids[i] := gen_random_uuid();
        END IF;
    END LOOP;
    FOR i IN 1 .. requests LOOP
        CONTINUE WHEN repeats[i] IS NULL;
        refusals[i] := refusals[repeats[i]];
        ids[i] := ids[repeats[i]];
    END LOOP;
END;
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
-- a batch of one. Purchases compete with holds for what is on sale; held
-- tickets are not on sale, expired holds' tickets are (reclaimed first).
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
    refusals api.refusal[] := '{}'::api.refusal[]; -- by ordinal; null when the request is answered by a purchase
    scopes text[] := '{}'::text[];          -- by ordinal: the scope of its key
    asked jsonb[] := '{}'::jsonb[];         -- by ordinal: the request its key stands for
    purchase_ids uuid[] := '{}'::uuid[];    -- by ordinal: the purchase answering it, new or earlier
    granted integer[];                      -- the ordinals that buy now
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
    FOR i IN 1 .. requests LOOP
        refusals[i] := request_refusal(p_user_ids[i], p_quantities[i]);
        scopes[i] := idempotency_scope(p_callers[i], p_ticket_option_id, p_user_ids[i]);
        asked[i] := jsonb_build_object('purchase_tickets', jsonb_build_object(
            'ticket_option_id', p_ticket_option_id, 'user_id', p_user_ids[i], 'quantity', p_quantities[i]));
    END LOOP;

    SELECT b.refusals, b.ids, b.granted INTO refusals, purchase_ids, granted
    FROM decide_batch(p_ticket_option_id, p_user_ids, p_quantities, scopes, p_idempotency_keys, asked, refusals) AS b;

    PERFORM apply_purchases(p_ticket_option_id, array_agg(purchase_ids[g]), array_agg(p_user_ids[g]),
                            array_agg(p_quantities[g]))
    FROM unnest(granted) AS g;
    PERFORM remember_idempotency_keys(
        array_agg(scopes[g]), array_agg(p_idempotency_keys[g]), array_agg(asked[g]),
        array_agg(NULL::uuid), array_agg(purchase_ids[g]))
    FROM unnest(granted) AS g
    WHERE p_idempotency_keys[g] IS NOT NULL
    HAVING count(*) > 0;

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
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
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

    locked := lock_option(option_id);
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
