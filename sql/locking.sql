-- Locking: THE lock order of every call that changes tickets, and the
-- functions that take it: lock_options (waits), try_lock_options and
-- try_lock_for_sweep (never wait). No other code locks ticket options,
-- quotas or orders.
--
-- The order. A call takes its locks in these steps, each set in id order:
--   0. update_quota only: the quota's advisory lock, so that the options the
--      quota counts cannot change between reading and locking them (only
--      update_quota changes them, and no other call takes this lock).
--   1. ticket options, FOR NO KEY UPDATE: the ones the call names, and every
--      option sharing a quota with them (options_to_lock, read just before
--      locking). Every change names its options, or reaches them through
--      rows whose option never changes (a hold, a purchase, an order's
--      lines), so this step puts every decision about an option's stock, and
--      about the quotas it shares, one after another.
--   2. quotas, FOR NO KEY UPDATE: those of the options locked in step 1, and
--      any the call names (quotas_to_lock). Read under step 1's locks, the
--      set is exact (update_quota locks every option it adds or removes);
--      locked here, they are never first locked by move_tickets' UPDATE, in
--      whatever order its plan visits them.
--   Then the call reads the clock it decides by (read_decision_clock: the
--   time spent waiting counts) and reclaims the locked options' expired holds
--   (reclaim_expired_holds, sql/holds.sql).
--   3. orders, FOR NO KEY UPDATE: the call's own, and the orders of the holds
--      just reclaimed (lock_orders), which expire_orders then stores expired.
--      After the options, because which orders expire is known only under
--      the options' locks.
--   4. only then the rows of its own holds, purchases, order lines and
--      tickets (locked_hold's FOR UPDATE; the UPDATEs of release_holds,
--      confirm_hold, cancel_purchases, confirm_order...). Each of these rows
--      is changed only under its option's lock, so this step never waits for
--      another call that changes tickets.
-- Waiting locks are taken one row per statement, so their order is the ids'
-- whatever the plan. FOR NO KEY UPDATE, not FOR UPDATE: the rows inserted
-- under the locks (purchases, holds, tickets, order lines, quota_options)
-- reference the locked rows, and their foreign keys' FOR KEY SHARE does not
-- conflict with it.
--
-- Why no call deadlocks: each call waits for locks in one lock_options only,
-- in the order above, so no two calls wait for each other in a cycle; calls
-- that touch the same options or quotas take turns, whatever the order of
-- their lines. A wait lasts at most lock_timeout (its bounds:
-- sql/session_limits.sql). try_lock_options and try_lock_for_sweep take the
-- same locks with SKIP LOCKED: never waiting, they cannot be part of a
-- cycle, and what they cannot get they leave to a call that waits. An
-- idempotency key (claim_idempotency_key, before step 1) is a try-lock too:
-- refused at once (TA006), never waited for. (The order holds per call: the
-- service makes one call per transaction; a psql session making several in
-- one transaction takes their locks call after call, and PostgreSQL ends one
-- of two such sessions that cross, 40P01.)
--
-- Who takes which locks:
--   lock_options, waiting:
--     decide_batch (purchase_tickets_batch, hold_tickets_batch, and their
--       batches of one): the options of the open requests;
--     place_orders_batch (place_order): the options of the open orders' lines;
--     locked_hold (confirm_hold, release_hold): the hold's option, then the
--       hold itself (step 4);
--     get_hold: the hold's option, only for a hold past expires_at still
--       stored held (to store it expired before answering so);
--     locked_order (confirm_order, release_order, cancel_order; get_order as
--       get_hold): the options of the order's lines, then the order;
--     cancel_purchase: the purchase's option, then its order if any;
--     create_quota: the options it will count (the new quota is not visible
--       to anyone yet);
--     update_quota: step 0, then its options old and new, and the quota.
--   try_lock_options, SKIP LOCKED: decide_batch and place_orders_batch with
--     p_skip_locked (the service's coalescer).
--   try_lock_for_sweep, SKIP LOCKED: release_expired_holds (the sweeper), one
--     option at a time.

-- options_to_lock(p_ticket_option_ids uuid[]) RETURNS uuid[]
-- Step 1 of the lock order: the options named and every option sharing a
-- quota with them, without nulls or duplicates, in id order. Read before
-- they are locked (see lock_options).
CREATE OR REPLACE FUNCTION ticket_allocation.options_to_lock(p_ticket_option_ids uuid[])
RETURNS uuid[]
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(
        SELECT DISTINCT w.id
        FROM (SELECT unnest(p_ticket_option_ids)
              UNION
              SELECT qo.ticket_option_id
              FROM quota_options qo
              WHERE qo.quota_id = ANY (ARRAY(SELECT qs.quota_id FROM quota_options qs
                                             WHERE qs.ticket_option_id = ANY (p_ticket_option_ids)))) AS w (id)
        WHERE w.id IS NOT NULL
        ORDER BY w.id)
$$;

-- quotas_to_lock(p_locked_option_ids uuid[], p_quota_ids uuid[] DEFAULT NULL) RETURNS uuid[]
-- Step 2 of the lock order: the quotas of the options locked already and
-- p_quota_ids, without nulls or duplicates, in id order. The quotas of
-- locked options cannot change now (update_quota locks every option it adds
-- or removes).
CREATE OR REPLACE FUNCTION ticket_allocation.quotas_to_lock(p_locked_option_ids uuid[], p_quota_ids uuid[] DEFAULT NULL)
RETURNS uuid[]
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(
        SELECT DISTINCT q.id
        FROM (SELECT qo.quota_id FROM quota_options qo WHERE qo.ticket_option_id = ANY (p_locked_option_ids)
              UNION
              SELECT unnest(p_quota_ids)) AS q (id)
        WHERE q.id IS NOT NULL
        ORDER BY q.id)
$$;

-- lock_orders(p_order_ids uuid[]) RETURNS void
-- Step 3 of the lock order: locks the orders (FOR NO KEY UPDATE: nothing
-- references their keys changing), one by one in id order. Nulls and
-- duplicates are ignored; an order locked already is not waited for.
CREATE OR REPLACE FUNCTION ticket_allocation.lock_orders(p_order_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    order_id uuid;
BEGIN
    FOREACH order_id IN ARRAY ARRAY(SELECT DISTINCT o FROM unnest(p_order_ids) AS o WHERE o IS NOT NULL ORDER BY o)
    LOOP
        PERFORM 1 FROM orders WHERE id = order_id FOR NO KEY UPDATE;
    END LOOP;
END;
$$;

-- lock_options(p_ticket_option_ids uuid[], p_quota_ids uuid[] DEFAULT NULL, p_order_ids uuid[] DEFAULT NULL)
--     RETURNS void
-- THE way to lock, for any change to tickets (the lock order above): locks
-- the options named and every option sharing a quota with them, in id order;
-- then the quotas of the locked options and p_quota_ids, in id order; then
-- reads the clock the call decides by (read_decision_clock: the time spent
-- waiting for the locks counts) and reclaims the locked options' expired holds (so what the caller reads and
-- decides counts them as on sale, and every quota it decides on counts them
-- too); then locks p_order_ids and the orders of the reclaimed holds, in id
-- order, and expires those. Unknown ids and nulls lock nothing. The options
-- sharing a quota are read before they are locked: an option added to a
-- quota in between (update_quota, committed meanwhile) is not locked, and
-- its expired holds keep counting in the quota until its own next lock or
-- the sweeper (a quota is then refused a moment early, never oversold).
CREATE OR REPLACE FUNCTION ticket_allocation.lock_options(
    p_ticket_option_ids uuid[], p_quota_ids uuid[] DEFAULT NULL, p_order_ids uuid[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    wanted constant uuid[] := options_to_lock(p_ticket_option_ids);
    locked uuid[] := '{}'::uuid[];
    next_id uuid;
    reclaimed record;
BEGIN
    FOREACH next_id IN ARRAY wanted LOOP
        PERFORM 1 FROM ticket_options WHERE id = next_id FOR NO KEY UPDATE;
        IF FOUND THEN
            locked := locked || next_id;
        END IF;
    END LOOP;
    FOREACH next_id IN ARRAY quotas_to_lock(locked, p_quota_ids) LOOP
        PERFORM 1 FROM quotas WHERE id = next_id FOR NO KEY UPDATE;
    END LOOP;
    PERFORM read_decision_clock();
    reclaimed := reclaim_expired_holds(locked);
    PERFORM lock_orders(coalesce(p_order_ids, '{}'::uuid[]) || coalesce(reclaimed.order_ids, '{}'::uuid[]));
    PERFORM expire_orders(reclaimed.order_ids);
END;
$$;

-- try_lock_options(p_ticket_option_ids uuid[]) RETURNS uuid[]
-- lock_options for a call that must not wait (a batch with p_skip_locked):
-- the same locks in the same order (options, then their quotas, then the
-- orders of their expired holds, each set in id order), each taken only if
-- nobody holds it (SKIP LOCKED). Then reads the decision clock and reclaims
-- the expired holds of every option it got whole (the option, each of its
-- quotas and each order of its expired holds). Returns the options of
-- p_ticket_option_ids it cannot decide on: those not got whole, and those
-- sharing a quota with an option not got whole (that option's expired holds
-- may still count in the quota); the caller decides nothing for them and
-- leaves them to a call that waits. Unknown ids and nulls are never
-- returned (nothing to wait for: the caller refuses them). What it got
-- stays locked until the end of the transaction.
CREATE OR REPLACE FUNCTION ticket_allocation.try_lock_options(p_ticket_option_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    locked uuid[] := '{}'::uuid[];
    not_whole uuid[] := '{}'::uuid[];   -- options it could not get whole
    busy_quotas uuid[] := '{}'::uuid[];
    orders_of jsonb := '{}'::jsonb;      -- option -> the orders of its expired holds
    busy_orders uuid[] := '{}'::uuid[];
    whole uuid[];
    next_id uuid;
    reclaimed record;
BEGIN
    FOREACH next_id IN ARRAY options_to_lock(p_ticket_option_ids) LOOP
        PERFORM 1 FROM ticket_options WHERE id = next_id FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            locked := locked || next_id;
        ELSIF EXISTS (SELECT 1 FROM ticket_options WHERE id = next_id) THEN  -- another call holds it
            not_whole := not_whole || next_id;
        END IF;
    END LOOP;
    FOREACH next_id IN ARRAY quotas_to_lock(locked) LOOP
        PERFORM 1 FROM quotas WHERE id = next_id FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            busy_quotas := busy_quotas || next_id;
        END IF;
    END LOOP;
    PERFORM read_decision_clock();
    whole := ARRAY(SELECT o FROM unnest(locked) AS o
                   WHERE NOT (option_quota_ids(o) && busy_quotas));
    FOREACH next_id IN ARRAY whole LOOP  -- one option per statement, as reclaim_expired_holds
        orders_of := orders_of || jsonb_build_object(next_id, to_jsonb(ARRAY(
            SELECT DISTINCT h.order_id FROM holds h
            WHERE h.ticket_option_id = next_id AND h.status = 'held' AND h.expires_at <= decision_clock()
              AND h.order_id IS NOT NULL)));
    END LOOP;
    FOREACH next_id IN ARRAY ARRAY(
        SELECT DISTINCT o.id::uuid FROM jsonb_each(orders_of) AS e, jsonb_array_elements_text(e.value) AS o (id)
        ORDER BY 1)
    LOOP
        PERFORM 1 FROM orders WHERE id = next_id FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            busy_orders := busy_orders || next_id;
        END IF;
    END LOOP;
    IF cardinality(busy_orders) > 0 THEN
        whole := ARRAY(SELECT o FROM unnest(whole) AS o
                       WHERE NOT (ARRAY(SELECT e::uuid FROM jsonb_array_elements_text(orders_of -> o::text) AS e)
                                  && busy_orders));
    END IF;
    not_whole := not_whole || ARRAY(SELECT o FROM unnest(locked) AS o WHERE o <> ALL (whole));
    reclaimed := reclaim_expired_holds(whole);
    PERFORM expire_orders(reclaimed.order_ids);  -- each locked above
    IF cardinality(not_whole) = 0 THEN
        RETURN '{}'::uuid[];
    END IF;
    RETURN ARRAY(
        SELECT DISTINCT named.id
        FROM unnest(p_ticket_option_ids) AS named (id)
        WHERE named.id = ANY (not_whole)
           OR option_quota_ids(named.id) && ARRAY(SELECT qo.quota_id FROM quota_options qo
                                                  WHERE qo.ticket_option_id = ANY (not_whole))
        ORDER BY named.id);
END;
$$;

-- try_lock_for_sweep(p_ticket_option_id uuid) RETURNS boolean
-- The sweeper's lock_options for one option: takes the option's lock, its
-- quotas' and the locks of the orders of its expired holds, each set in id
-- order, only if nobody holds any of them (SKIP LOCKED: it never waits, so
-- it cannot deadlock, nor queue behind a stalled session), reading the
-- decision clock once it has the option (plpgsql_check, taking no lock,
-- finds it unset when it plans the lookup below). True when it got them all
-- (reclaiming is the caller's); false leaves what it got locked until the end
-- of the transaction, changing nothing.
CREATE OR REPLACE FUNCTION ticket_allocation.try_lock_for_sweep(p_ticket_option_id uuid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    quota_ids uuid[];
    order_ids uuid[];
BEGIN
    PERFORM 1 FROM ticket_options WHERE id = p_ticket_option_id FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM read_decision_clock();  -- the orders below, and the caller's reclaim, are decided by it
    quota_ids := ARRAY(SELECT qo.quota_id FROM quota_options qo WHERE qo.ticket_option_id = p_ticket_option_id);
    IF (SELECT count(*) FROM (SELECT 1 FROM quotas q WHERE q.id = ANY (quota_ids) ORDER BY q.id
                              FOR NO KEY UPDATE SKIP LOCKED) AS got) < cardinality(quota_ids) THEN
        RETURN false;
    END IF;
    order_ids := ARRAY(SELECT DISTINCT h.order_id FROM holds h
                       WHERE h.ticket_option_id = p_ticket_option_id AND h.status = 'held'
                         AND h.expires_at <= decision_clock()
                         AND h.order_id IS NOT NULL);
    RETURN (SELECT count(*) FROM (SELECT 1 FROM orders o WHERE o.id = ANY (order_ids) ORDER BY o.id
                                  FOR NO KEY UPDATE SKIP LOCKED) AS got) = cardinality(order_ids);
END;
$$;
