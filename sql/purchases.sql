-- Purchases: selling tickets from an option's allocation, and from every
-- quota the option is in, without overselling; reading them back, and
-- cancelling them.
--
-- Locking discipline: every change to tickets first takes the locks of
-- lock_options (sql/locking.sql: THE lock order, options then quotas then
-- orders, each in id order; it also reclaims expired holds). Changes to one
-- option, or to options sharing a quota, thus run one after another, each
-- seeing what the previous left, and cannot deadlock.

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

-- Purchases, holds and orders are decided by one path, each step its own
-- function:
--   1. the idempotency keys, without any lock (claim_batch_keys: a
--      request's key, or an order's): a retry racing its first attempt is
--      told at once (TA006) rather than queued behind the lock;
--   2. lock_options: the options the requests name, the options sharing
--      their quotas, the quotas (sql/locking.sql), expired holds reclaimed;
--   3. decide_in_order, under those locks: which requests fit, one by one in
--      arrival order (an order's lines as one all-or-nothing group);
--   4. apply_purchases or apply_holds: write what was decided, set-based.
-- decide_batch runs steps 1 to 3 for every batch (purchase_tickets_batch,
-- hold_tickets_batch, place_orders_batch in sql/orders.sql); purchase_tickets,
-- hold_tickets, place_order are batches of one.

-- request_refusal(p_request api.ticket_request) RETURNS api.refusal
-- Why a request is refused before anything is looked up (TA001: a null
-- option or user, a quantity outside 1..1000), or null.
CREATE OR REPLACE FUNCTION ticket_allocation.request_refusal(p_request api.ticket_request)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE
        WHEN p_request.ticket_option_id IS NULL THEN invalid_argument('ticket_option_id', 'must not be null')
        WHEN p_request.user_id IS NULL THEN invalid_argument('user_id', 'must not be null')
        WHEN p_request.quantity IS NULL OR p_request.quantity NOT BETWEEN 1 AND 1000
            THEN invalid_argument('quantity', 'must be a whole number from 1 to 1000')
    END
$$;

-- claim_batch_keys(p_scopes text[], p_keys text[], p_requests jsonb[], INOUT refusals api.refusal[],
--                  OUT earlier_ids uuid[], OUT repeats integer[])
-- Step 1 of a batch. For each request not refused yet (refusals[i] null)
-- with a key (p_keys[i] in scope p_scopes[i], for request p_requests[i]):
-- claims the key (claim_idempotency_key), so that a retry racing its first
-- attempt is told at once (TA006) rather than queued behind the lock.
-- earlier_ids[i]: the purchase, hold or order an earlier call made for the same
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
                earlier_ids[i] := coalesce((claim.earlier).purchase_id, (claim.earlier).hold_id, (claim.earlier).order_id);
            END IF;
        ELSIF p_requests[first_use] = p_requests[i] THEN
            repeats[i] := first_use;
        ELSE
            refusals[i] := refusal_of('idempotency_key_reused', p_keys[i], p_requests[first_use]::text);
        END IF;
    END LOOP;
END;
$$;

-- decide_in_order(p_requests api.ticket_request[], p_open boolean[], p_groups integer[] DEFAULT NULL,
--                 OUT refusals api.refusal[], OUT granted integer[])
-- Step 3, under the locks of lock_options (expired holds reclaimed).
-- Decides the open requests (p_open[i]) one by one in arrival order:
-- request i takes its quantity of its option for its user, or is refused:
-- TA002 when the option does not exist, TA003 when the option has less on
-- sale, TA014 when a quota of the option (in id order, the first short one)
-- has less left (size - sold - held), TA007 when the user's tickets of the
-- option (bought or held) would pass max_per_user; each counting what the
-- requests granted before it took. p_groups (null: each request alone):
-- consecutive requests with the same group are all or nothing (an order's
-- lines), each still refused for its own reason; a group with a refusal
-- takes nothing. granted: the ordinals that take theirs, in order.
-- A loop over requests, never over tickets; each option and quota read once.
CREATE OR REPLACE FUNCTION ticket_allocation.decide_in_order(
    p_requests api.ticket_request[], p_open boolean[], p_groups integer[] DEFAULT NULL,
    OUT refusals api.refusal[], OUT granted integer[])
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    requested constant integer := coalesce(cardinality(p_requests), 0);
    on_sale jsonb := '{}'::jsonb;    -- option -> on sale now, the takes of this call included
    left_in jsonb := '{}'::jsonb;    -- quota -> left now (size - sold - held), likewise
    quotas_of jsonb := '{}'::jsonb;  -- option -> its quotas, in id order (absent: none)
    its_quotas uuid[];
    quotas_in text[];                -- the request's option's quotas (null: none)
    limit_of jsonb := '{}'::jsonb;   -- option -> max_per_user (json null: none)
    by_user jsonb := '{}'::jsonb;    -- [option, user] -> their tickets bought or held, likewise
    saved jsonb;                     -- on_sale, left_in, by_user as the current group found them
    group_ok boolean;
    members integer[];               -- the current group's ordinals that fit
    request api.ticket_request;
    found_option ticket_options;
    option_key text;
    user_key text;
    quota_key text;
    refusal api.refusal;
    users_tickets integer;
BEGIN
    refusals := '{}'::api.refusal[];
    granted := '{}'::integer[];
    FOR i IN 1 .. requested LOOP
        IF p_groups IS NULL OR i = 1 OR p_groups[i] IS DISTINCT FROM p_groups[i - 1] THEN
            IF p_groups IS NOT NULL THEN  -- alone, a refused request took nothing anyway
                saved := jsonb_build_array(on_sale, left_in, by_user);
            END IF;
            group_ok := true;
            members := '{}'::integer[];
        END IF;
        IF coalesce(p_open[i], false) THEN
            request := p_requests[i];
            option_key := request.ticket_option_id::text;
            refusal := NULL;
            IF NOT on_sale ? option_key THEN
                SELECT * INTO found_option FROM ticket_options WHERE id = request.ticket_option_id;
                IF FOUND THEN
                    its_quotas := option_quota_ids(found_option.id);
                    on_sale := on_sale || jsonb_build_object(option_key, found_option.remaining);
                    limit_of := limit_of || jsonb_build_object(option_key, found_option.max_per_user);
                    IF cardinality(its_quotas) > 0 THEN  -- most options are in none
                        quotas_of := quotas_of || jsonb_build_object(option_key, to_jsonb(its_quotas));
                        left_in := (SELECT coalesce(jsonb_object_agg(q.id, q.size - q.sold - q.held), '{}'::jsonb)
                                    FROM quotas q WHERE q.id = ANY (its_quotas))
                                   || left_in;  -- what this call took already wins
                    END IF;
                END IF;
            END IF;
            user_key := jsonb_build_array(option_key, request.user_id)::text;
            quotas_in := CASE WHEN quotas_of ? option_key
                              THEN ARRAY(SELECT jsonb_array_elements_text(quotas_of -> option_key)) END;
            IF NOT on_sale ? option_key THEN
                refusal := refusal_of('ticket_option_not_found', request.ticket_option_id::text);
            ELSIF (on_sale ->> option_key)::integer < request.quantity THEN
                refusal := refusal_of('insufficient_tickets', request.quantity::text, on_sale ->> option_key);
            ELSE
                FOREACH quota_key IN ARRAY coalesce(quotas_in, '{}'::text[]) LOOP
                    IF (left_in ->> quota_key)::integer < request.quantity THEN
                        refusal := refusal_of('quota_exhausted', quota_key,
                                             (SELECT q.name FROM quotas q WHERE q.id = quota_key::uuid),
                                             request.quantity::text, left_in ->> quota_key);
                        EXIT;
                    END IF;
                END LOOP;
                IF refusal.sqlstate IS NULL AND limit_of ->> option_key IS NOT NULL THEN
                    users_tickets := coalesce((by_user ->> user_key)::integer,
                                              tickets_of_user(request.ticket_option_id, request.user_id));
                    IF users_tickets + request.quantity > (limit_of ->> option_key)::integer THEN
                        refusal := refusal_of('per_user_limit_exceeded', request.user_id::text, limit_of ->> option_key,
                                             users_tickets::text, request.quantity::text);
                    ELSE
                        by_user := by_user || jsonb_build_object(user_key, users_tickets + request.quantity);
                    END IF;
                END IF;
            END IF;
            IF refusal.sqlstate IS NULL THEN
                on_sale := on_sale || jsonb_build_object(option_key, (on_sale ->> option_key)::integer - request.quantity);
                FOREACH quota_key IN ARRAY coalesce(quotas_in, '{}'::text[]) LOOP
                    left_in := left_in || jsonb_build_object(quota_key, (left_in ->> quota_key)::integer - request.quantity);
                END LOOP;
                members := members || i;
            ELSE
                refusals[i] := refusal;
                group_ok := false;
            END IF;
        END IF;
        IF p_groups IS NULL OR i = requested OR p_groups[i + 1] IS DISTINCT FROM p_groups[i] THEN
            IF group_ok THEN
                granted := granted || members;
            ELSIF p_groups IS NOT NULL THEN  -- undo what the group's other members took
                on_sale := saved -> 0;
                left_in := saved -> 1;
                by_user := saved -> 2;
            END IF;
        END IF;
    END LOOP;
END;
$$;

-- apply_purchases(p_purchase_ids uuid[], p_requests api.ticket_request[], p_order_ids uuid[] DEFAULT NULL,
--                 p_from_held boolean DEFAULT false)
--     RETURNS void
-- Step 4 of a purchase batch, of an order, and of confirmations: THE place
-- purchases are made. Under the locks (lock_options), set-based: inserts
-- purchase i (p_purchase_ids[i]: p_requests[i]'s quantity of its option for
-- its user, a line of order p_order_ids[i] when given) and its tickets, and moves
-- the tickets (move_tickets) to `sold` from what is on sale,
-- or, p_from_held, from `held` (the caller marks the holds confirmed). The
-- CHECKs of ticket_options and quotas refuse anything that would oversell.
-- Events: per option (in order of first appearance), its purchase.created
-- events, then its sold_out if it is (append_sale_events), unless
-- p_from_held: the confirmation appends the stock events after its
-- hold.confirmed, which the sale also causes. An option it buys from had
-- tickets on sale, so it is sold out exactly when none is left on sale nor
-- held after (remaining + held is the same in the row as in the resource).
CREATE OR REPLACE FUNCTION ticket_allocation.apply_purchases(
    p_purchase_ids uuid[], p_requests api.ticket_request[], p_order_ids uuid[] DEFAULT NULL,
    p_from_held boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    -- The ordinals, each option's together, options in order of first appearance (for the events).
    in_option_order constant integer[] := ARRAY(
        SELECT r.ordinality::integer
        FROM (SELECT u.ordinality, min(u.ordinality) OVER (PARTITION BY u.ticket_option_id) AS first
              FROM unnest(p_requests) WITH ORDINALITY AS u) AS r
        ORDER BY r.first, r.ordinality);
    sold_out uuid[];
BEGIN
    IF coalesce(cardinality(p_purchase_ids), 0) = 0 THEN
        RETURN;
    END IF;
    sold_out := move_tickets(
        ARRAY(SELECT r.ticket_option_id FROM unnest(p_requests) AS r),
        ARRAY(SELECT CASE WHEN p_from_held THEN -r.quantity ELSE 0 END FROM unnest(p_requests) AS r),
        ARRAY(SELECT r.quantity FROM unnest(p_requests) AS r));
    INSERT INTO purchases (id, ticket_option_id, user_id, quantity, order_id)
    SELECT p_purchase_ids[r.ordinality], r.ticket_option_id, r.user_id, r.quantity, p_order_ids[r.ordinality]
    FROM unnest(p_requests) WITH ORDINALITY AS r;
    INSERT INTO tickets (ticket_option_id, purchase_id)
    SELECT r.ticket_option_id, p_purchase_ids[r.ordinality]
    FROM unnest(p_requests) WITH ORDINALITY AS r, generate_series(1, r.quantity);
    PERFORM append_sale_events(ARRAY(SELECT p_purchase_ids[n] FROM unnest(in_option_order) WITH ORDINALITY AS o (n, k)
                                     ORDER BY k),
                               ARRAY(SELECT (p_requests[n]).ticket_option_id
                                     FROM unnest(in_option_order) WITH ORDINALITY AS o (n, k) ORDER BY k),
                               CASE WHEN NOT p_from_held THEN sold_out END);  -- sql/events.sql
END;
$$;

-- decide_batch(p_requests api.ticket_request[], p_keys text[], p_scopes text[], p_asked jsonb[],
--              INOUT refusals api.refusal[], p_skip_locked boolean DEFAULT false, p_order_of integer[] DEFAULT NULL,
--              OUT ids uuid[], OUT granted integer[], OUT deferred boolean[])
-- Steps 1 to 3 of every batch, the same for purchases, holds and orders.
-- The batch's items, by ordinal: its requests (p_order_of null: purchases
-- or holds), or its orders (request k is a line of order p_order_of[k], each
-- order's lines together); refusals[i] is set for an item refused already.
-- Claims the keys (claim_batch_keys: p_keys[i] in scope p_scopes[i], for the
-- request p_asked[i]), locks the options of the items still open
-- (lock_options, or with p_skip_locked try_lock_options, which never waits;
-- nothing when none is open), decides their requests in order
-- (decide_in_order, an order's lines all or nothing) and gives each granted
-- item a new id; a repeat of an earlier item of the batch gets its answer.
-- refusals[i]: an item refused under the lock gets its request's refusal,
-- an order its lines' (order_refused). ids[i]: the purchase, hold or order
-- answering item i (new, or an earlier call's for its key); granted: the
-- items to apply now, in order (step 4 is the caller's: apply_purchases,
-- apply_holds, place_decided_orders); deferred[i]: true when an option of
-- item i could not be locked without waiting (only with p_skip_locked):
-- neither refused nor granted, nothing is done for it.
-- Loops over items and requests, never over tickets.
CREATE OR REPLACE FUNCTION ticket_allocation.decide_batch(
    p_requests api.ticket_request[], p_keys text[], p_scopes text[], p_asked jsonb[], INOUT refusals api.refusal[],
    p_skip_locked boolean DEFAULT false, p_order_of integer[] DEFAULT NULL,
    OUT ids uuid[], OUT granted integer[], OUT deferred boolean[])
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    items constant integer := coalesce(cardinality(p_scopes), 0);
    requested constant integer := coalesce(cardinality(p_requests), 0);
    item_of constant integer[] := coalesce(p_order_of, ARRAY(SELECT generate_series(1, requested)));  -- by request
    open boolean[] := '{}'::boolean[];      -- by item: still to decide under the lock
    repeats integer[];                      -- by item: the earlier ordinal with the same key and request
    open_requests boolean[];                -- by request: its item's open
    open_options uuid[];
    decided api.refusal[];                  -- by request: refused under the lock
    line_refusals api.refusal[];            -- an order's lines'
    busy uuid[] := '{}'::uuid[];            -- options another call holds (p_skip_locked)
BEGIN
    SELECT k.refusals, k.earlier_ids, k.repeats INTO refusals, ids, repeats
    FROM claim_batch_keys(p_scopes, p_keys, p_asked, refusals) AS k;
    FOR i IN 1 .. items LOOP
        open[i] := (refusals[i]).sqlstate IS NULL AND ids[i] IS NULL AND repeats[i] IS NULL;
    END LOOP;

    open_requests := ARRAY(SELECT open[item_of[k]] FROM generate_series(1, requested) AS k ORDER BY k);
    open_options := ARRAY(SELECT (p_requests[k]).ticket_option_id FROM generate_series(1, requested) AS k
                          WHERE open_requests[k]);
    IF cardinality(open_options) = 0 THEN
        NULL;  -- nothing to lock
    ELSIF p_skip_locked THEN
        busy := try_lock_options(open_options);
    ELSE
        PERFORM lock_options(open_options);
    END IF;
    deferred := array_fill(false, ARRAY[items]);
    FOR k IN 1 .. requested LOOP
        IF open_requests[k] AND (p_requests[k]).ticket_option_id = ANY (busy) THEN
            deferred[item_of[k]] := true;
        END IF;
    END LOOP;
    FOR k IN 1 .. requested LOOP
        open_requests[k] := open_requests[k] AND NOT deferred[item_of[k]];
    END LOOP;
    SELECT d.refusals INTO decided FROM decide_in_order(p_requests, open_requests, p_order_of) AS d;
    granted := '{}'::integer[];
    FOR i IN 1 .. items LOOP
        CONTINUE WHEN NOT open[i] OR deferred[i];
        IF p_order_of IS NULL THEN
            refusals[i] := decided[i];
        ELSE
            line_refusals := ARRAY(SELECT decided[k] FROM generate_series(1, requested) AS k WHERE p_order_of[k] = i
                                   ORDER BY k);
            refusals[i] := order_refused(line_refusals, cardinality(line_refusals));
        END IF;
        IF (refusals[i]).sqlstate IS NULL THEN
            ids[i] := gen_random_uuid();
            granted := granted || i;
        END IF;
    END LOOP;
    FOR i IN 1 .. items LOOP
        CONTINUE WHEN repeats[i] IS NULL;
        refusals[i] := refusals[repeats[i]];
        ids[i] := ids[repeats[i]];
        deferred[i] := deferred[repeats[i]];
    END LOOP;
END;
$$;

-- api.purchase_tickets_batch(p_requests api.ticket_request[], p_skip_locked boolean DEFAULT false)
--     RETURNS SETOF api.purchase_outcome
-- Decides many purchases in one call, in arrival order (array order):
-- request i buys its quantity of its option for its user, with its optional
-- idempotency key of its caller (see idempotency_scope in
-- sql/idempotency.sql); its ttl must be null (hold_tickets_batch holds).
-- The requests may name different options: each is locked once (with the
-- options sharing its quotas, and those quotas: lock_options); each request
-- is all or nothing, and a refused request does not stop the others.
-- Returns one row per request, in order: a refusal (the error that
-- purchase_tickets would raise for it) or the receipt of its purchase. A
-- request whose key names an earlier purchase of the same request, in an
-- earlier call or earlier in this batch, gets that purchase and buys nothing.
-- This is the one implementation of the purchase rules; purchase_tickets is
-- a batch of one. Purchases compete with holds for what is on sale; held
-- tickets are not on sale, expired holds' tickets are (reclaimed first).
-- Locks are waited for (at most lock_timeout) unless p_skip_locked: then a
-- request whose option, or one of its quotas, another transaction holds
-- right now (or an option sharing a quota with it, or an order whose
-- expired hold it would reclaim) is deferred: its row says deferred (no
-- refusal, no receipt), nothing is bought or remembered for it, and it may
-- be sent again, e.g. alone without p_skip_locked (the service's coalescer
-- does: a stuck option never delays the others' batch).
-- Refusals: TA001 (null option or user, quantity outside 1..1000, a ttl,
--           malformed key), TA002 (no such option), TA003 (not enough left),
--           TA005, TA006 (keys), TA007 (max_per_user), TA014 (a quota of the
--           option has not enough left).
-- Errors (the whole call fails, nothing is bought): TA008.
CREATE OR REPLACE FUNCTION api.purchase_tickets_batch(p_requests api.ticket_request[], p_skip_locked boolean DEFAULT false)
RETURNS SETOF api.purchase_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requested constant integer := coalesce(cardinality(p_requests), 0);
    request api.ticket_request;
    refusals api.refusal[] := '{}'::api.refusal[]; -- by ordinal; null when the request is answered by a purchase
    scopes text[] := '{}'::text[];          -- by ordinal: the scope of its key
    asked jsonb[] := '{}'::jsonb[];         -- by ordinal: the request its key stands for
    purchase_ids uuid[] := '{}'::uuid[];    -- by ordinal: the purchase answering it, new or earlier
    granted integer[];                      -- the ordinals that buy now
    deferred boolean[];                     -- by ordinal: its option was busy (p_skip_locked)
BEGIN
    PERFORM assert_session_limits();
    FOR i IN 1 .. requested LOOP
        request := p_requests[i];
        refusals[i] := coalesce(request_refusal(request), CASE WHEN request.ttl IS NOT NULL THEN
            invalid_argument('ttl', 'must be null for a purchase (hold_tickets_batch holds tickets for a time)') END);
        scopes[i] := idempotency_scope(request.caller, request.ticket_option_id, request.user_id);
        asked[i] := jsonb_build_object('purchase_tickets', jsonb_build_object(
            'ticket_option_id', request.ticket_option_id, 'user_id', request.user_id, 'quantity', request.quantity));
    END LOOP;

    SELECT b.refusals, b.ids, b.granted, b.deferred INTO refusals, purchase_ids, granted, deferred
    FROM decide_batch(p_requests, ARRAY(SELECT r.idempotency_key FROM unnest(p_requests) WITH ORDINALITY AS r
                                   ORDER BY r.ordinality),
                      scopes, asked, refusals, p_skip_locked) AS b;

    PERFORM apply_purchases(array_agg(purchase_ids[g] ORDER BY g), array_agg(p_requests[g] ORDER BY g))
    FROM unnest(granted) AS g;
    PERFORM remember_idempotency_keys(
        array_agg(scopes[g]), array_agg((p_requests[g]).idempotency_key), array_agg(asked[g]), 'purchase',
        array_agg(purchase_ids[g]))
    FROM unnest(granted) AS g
    WHERE (p_requests[g]).idempotency_key IS NOT NULL
    HAVING count(*) > 0;

    -- One primary-key lookup per request, never a join of the receipts view
    -- against the requests: joined, its ticket_ids (a subquery per purchase)
    -- is computed below the join, so a hash join (what a cached generic plan
    -- picks for a set of unknown size) ran it for EVERY purchase of the table.
    RETURN QUERY
        SELECT o, refusals[o], purchase_resource(purchase_ids[o]), deferred[o]
        FROM generate_series(1, requested) AS o
        ORDER BY o;
END;
$$;

-- api.purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer,
--                  p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL)
--     RETURNS api.purchase
-- Buys p_quantity tickets for p_user_id, all or nothing, in one call: locks
-- the option's row (and its quotas'), checks what remains, what its quotas
-- have left and the option's max_per_user, takes the tickets, and inserts
-- the purchase and one ticket row per ticket. Returns the purchase with the
-- ids of its tickets. With p_idempotency_key, calling again with the same key
-- and arguments returns the first purchase (as it is now) and buys nothing
-- more. A batch of one (see above).
-- Errors: TA001 when an argument is null, quantity is outside 1..1000, or the
--         idempotency key is malformed;
--         TA002 when the ticket option does not exist;
--         TA003 when fewer than p_quantity tickets remain;
--         TA014 when a quota of the option has fewer than p_quantity left;
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
    FROM purchase_tickets_batch(ARRAY[ROW(p_ticket_option_id, p_user_id, p_quantity, p_idempotency_key, p_caller,
                                          NULL)::api.ticket_request]);
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
        PERFORM raise_refusal(refusal_of('purchase_not_found', p_id::text));
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

-- cancel_purchases(p_purchase_ids uuid[]) RETURNS void
-- Under the locks of their options (lock_options): THE place purchases are
-- cancelled. Marks those still active cancelled (cancelled_at), voids their
-- tickets and puts them back on sale, per option (move_tickets: its quotas
-- too), with a purchase.cancelled event each, then the option's stock event
-- (back_on_sale). Cancelled ones are left as they are.
CREATE OR REPLACE FUNCTION ticket_allocation.cancel_purchases(p_purchase_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    cancelled_ids uuid[];
    options uuid[];
    quantities integer[];
    freed record;
    befores api.ticket_option[] := '{}'::api.ticket_option[];
BEGIN
    -- The order of the caller's ids (one purchase, or an order's lines), kept for the events.
    WITH cancelled AS (
        UPDATE purchases p SET status = 'cancelled', cancelled_at = now()
        WHERE p.id = ANY (p_purchase_ids) AND p.status = 'active'
        RETURNING p.id, p.ticket_option_id, p.quantity
    )
    SELECT array_agg(c.id ORDER BY u.n), array_agg(c.ticket_option_id ORDER BY u.n), array_agg(c.quantity ORDER BY u.n)
    INTO cancelled_ids, options, quantities
    FROM cancelled c
    JOIN unnest(p_purchase_ids) WITH ORDINALITY AS u (id, n) ON u.id = c.id;
    IF cancelled_ids IS NULL THEN
        RETURN;
    END IF;
    UPDATE tickets SET voided_at = now() WHERE purchase_id = ANY (cancelled_ids);
    FOR freed IN
        SELECT u.option_id, sum(u.quantity)::integer AS tickets
        FROM unnest(options, quantities) WITH ORDINALITY AS u (option_id, quantity, n)
        GROUP BY u.option_id
        ORDER BY min(u.n)
    LOOP
        befores := befores || (SELECT ticket_option_resource(o) FROM ticket_options o WHERE o.id = freed.option_id);
        PERFORM move_tickets(freed.option_id, 0, -freed.tickets);
    END LOOP;
    -- Events (sql/events.sql): per option, the cancellations, then its back_on_sale if it is.
    FOR i IN 1 .. cardinality(befores) LOOP
        PERFORM append_resource_events(
            'purchase.cancelled',
            ARRAY(SELECT cancelled_ids[n] FROM generate_series(1, cardinality(cancelled_ids)) AS n
                  WHERE options[n] = (befores[i]).id ORDER BY n));
        PERFORM append_stock_events(befores[i], get_ticket_option((befores[i]).id));
    END LOOP;
END;
$$;

-- api.cancel_purchase(p_id uuid) RETURNS api.purchase
-- Cancels the purchase: marks it cancelled (cancelled_at), voids its tickets
-- and puts its quantity back on sale, in its option and every quota of it,
-- all at once. Cancelling one purchase of an order cancels that line only:
-- the order shows it (partially_cancelled, or cancelled with its last
-- line: sql/orders.sql). Cancelling a cancelled purchase changes nothing and
-- returns it as it is. The rows stay, as history.
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
    target purchases;
BEGIN
    PERFORM assert_session_limits();
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    END IF;
    SELECT * INTO target FROM purchases WHERE id = p_id;  -- its option and order never change
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('purchase_not_found', p_id::text));
    END IF;

    PERFORM lock_options(ARRAY[target.ticket_option_id], p_order_ids => ARRAY[target.order_id]);
    PERFORM cancel_purchases(ARRAY[p_id]);
    IF target.order_id IS NOT NULL THEN
        PERFORM settle_cancelled_order(target.order_id);  -- sql/orders.sql
    END IF;
    RETURN get_purchase(p_id);
END;
$$;
