-- Holds: tickets set aside for a buyer until expires_at, then bought
-- (confirm_hold), let go (release_hold) or expired. An option's tickets are
-- on sale (remaining), held or sold; a hold past expires_at is expired from
-- that instant: reads count its tickets as on sale at once (the partial
-- index of live holds finds them), and the next call that locks the option
-- (lock_options) stores it expired and puts them back on sale, as does the
-- sweeper (release_expired_holds).
--
-- Expiry is final once anyone was told: every decision under a lock (reclaim,
-- confirm, release, what max_per_user counts, a new hold's expires_at, and
-- the same for orders) uses decision_clock(), read right after the locks
-- were granted, never the transaction's start; so a call that queued on the
-- lock while a read said "expired" decides later than that read, and sees it
-- expired too. A read (get_hold, get_order) that finds a hold past expires_at
-- but still stored `held` takes the locks and reclaims it before it answers
-- `expired`: no decision made before, and not committed yet, can contradict
-- it afterwards.
--
-- Where states change (one place each): a hold is created in apply_holds,
-- confirmed in confirm_hold or confirm_order (its purchase made by
-- apply_purchases), released in release_holds, expired in
-- reclaim_expired_holds (called by lock_options and release_expired_holds).
-- The counters of options and quotas change in move_tickets only, in the
-- transaction that changes the rows they count.
--
-- Locks: every call that changes tickets first takes the locks of
-- lock_options (sql/locking.sql: THE lock order, options then quotas then
-- orders, each in id order); the sweeper takes them with try_lock_for_sweep.

-- clock() RETURNS timestamptz
-- The time now, as holds see it: clock_timestamp() (the moment of the read,
-- not the transaction's start) plus the settings' clock_offset, which only
-- the owner changes (tests move it to expire holds without waiting). What
-- reads answer by; decisions use decision_clock(). Errors: none.
CREATE OR REPLACE FUNCTION ticket_allocation.clock()
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT clock_timestamp() + clock_offset FROM settings WHERE singleton  -- by its key: see idempotency_key_ttl()
$$;

-- read_decision_clock() RETURNS timestamptz
-- Called right after the locks are granted (lock_options,
-- try_lock_for_sweep): reads clock() once and keeps it, for the rest of the
-- transaction (until the next lock), as decision_clock(). Returns it.
CREATE OR REPLACE FUNCTION ticket_allocation.read_decision_clock()
RETURNS timestamptz
LANGUAGE sql
VOLATILE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT set_config('ticket_allocation.decision_clock', clock()::text, true)::timestamptz
$$;

-- decision_clock() RETURNS timestamptz
-- The time every decision about holds is made by: clock() as read when this
-- transaction last took its locks (read_decision_clock). Only for
-- code that runs under such a lock; a session's own SET of the setting is
-- overwritten by the lock before anything reads it.
-- Errors: fails (invalid timestamp) when no lock was taken: a bug of the caller.
CREATE OR REPLACE FUNCTION ticket_allocation.decision_clock()
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT current_setting('ticket_allocation.decision_clock')::timestamptz
$$;

-- hold_resource(p_id uuid) RETURNS api.hold
-- The hold as callers see it, looked up by primary key (null when there is
-- none): its status as of clock(), so a stored `held` past expires_at reads `expired`.
CREATE OR REPLACE FUNCTION ticket_allocation.hold_resource(p_id uuid)
RETURNS api.hold
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW(h.id, h.ticket_option_id, h.user_id, h.quantity,
               CASE WHEN h.status = 'held' AND h.expires_at <= clock() THEN 'expired' ELSE h.status END,
               h.expires_at, h.created_at, h.purchase_id, h.order_id)::api.hold
    FROM holds h
    WHERE h.id = p_id
$$;

-- expired_unreclaimed(p_ticket_option_id uuid) RETURNS integer
-- The tickets of the option's holds that are past expires_at but still
-- stored `held`: on sale already, though the row says held. Reads the live
-- holds only (holds_live_idx), never the history.
CREATE OR REPLACE FUNCTION ticket_allocation.expired_unreclaimed(p_ticket_option_id uuid)
RETURNS integer
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT coalesce(sum(h.quantity), 0)::integer
    FROM holds h
    WHERE h.ticket_option_id = p_ticket_option_id AND h.status = 'held' AND h.expires_at <= clock()
$$;

-- tickets_of_user(p_ticket_option_id uuid, p_user_id uuid) RETURNS integer
-- What max_per_user counts: the user's tickets of the option in active
-- purchases and in live (unexpired) holds. Under the option's lock only
-- (it decides expiry by decision_clock()).
CREATE OR REPLACE FUNCTION ticket_allocation.tickets_of_user(p_ticket_option_id uuid, p_user_id uuid)
RETURNS integer
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT (SELECT coalesce(sum(p.quantity), 0)::integer
            FROM purchases p
            WHERE p.ticket_option_id = p_ticket_option_id AND p.user_id = p_user_id AND p.status = 'active')
         + (SELECT coalesce(sum(users.quantity), 0)::integer
            -- The user's live holds (holds_live_user_idx, user first), then this option's: OFFSET 0
            -- keeps the option out of the scan, so no plan can pick the option's index instead
            -- and read every live hold of a hot option to find one user's.
            FROM (SELECT h.ticket_option_id, h.quantity, h.expires_at
                  FROM holds h
                  WHERE h.user_id = p_user_id AND h.status = 'held'
                  OFFSET 0) AS users
            WHERE users.ticket_option_id = p_ticket_option_id AND users.expires_at > decision_clock())
$$;

-- move_tickets(p_ticket_option_ids uuid[], p_to_held integer[], p_to_sold integer[]) RETURNS uuid[]
-- THE place the counters change: under the locks of the options and their
-- quotas, adds p_to_held[i] to option i's held and p_to_sold[i] to its sold,
-- taking them from what is on sale (negative numbers give tickets back), and
-- adds the same to held and sold of every quota of the option; an option
-- named twice moves the sum. A hold is (q, 0), its release or expiry (-q, 0),
-- a purchase (0, q), a confirmation (-q, q), a cancellation (0, -q). The
-- CHECKs refuse any overdraft of an option (remaining >= 0) or of a quota
-- (sold + held <= size). Two statements whatever the number of options.
-- Returns the options moved that have nothing left on sale nor held, in id order.
CREATE OR REPLACE FUNCTION ticket_allocation.move_tickets(
    p_ticket_option_ids uuid[], p_to_held integer[], p_to_sold integer[])
RETURNS uuid[]
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    WITH moves AS (
        SELECT m.id, sum(m.to_held)::integer AS to_held, sum(m.to_sold)::integer AS to_sold
        FROM unnest(p_ticket_option_ids, p_to_held, p_to_sold) AS m (id, to_held, to_sold)
        GROUP BY m.id
    ), moved AS (
        UPDATE ticket_options o
        SET remaining = o.remaining - m.to_held - m.to_sold, held = o.held + m.to_held, sold = o.sold + m.to_sold,
            updated_at = now()
        FROM moves m
        WHERE o.id = m.id
        RETURNING o.id, o.remaining + o.held AS unsold
    ), quotas_moved AS (  -- runs to completion though nothing reads it
        UPDATE quotas q
        SET held = q.held + d.to_held, sold = q.sold + d.to_sold, updated_at = now()
        FROM (SELECT qo.quota_id, sum(m.to_held)::integer AS to_held, sum(m.to_sold)::integer AS to_sold
              FROM moves m
              JOIN quota_options qo ON qo.ticket_option_id = m.id
              GROUP BY qo.quota_id) AS d
        WHERE q.id = d.quota_id
    )
    SELECT ARRAY(SELECT m.id FROM moved m WHERE m.unsold = 0 ORDER BY m.id)
$$;

-- move_tickets(p_ticket_option_id uuid, p_to_held integer, p_to_sold integer) RETURNS void
-- The same for one option.
CREATE OR REPLACE FUNCTION ticket_allocation.move_tickets(
    p_ticket_option_id uuid, p_to_held integer, p_to_sold integer)
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT move_tickets(ARRAY[p_ticket_option_id], ARRAY[p_to_held], ARRAY[p_to_sold])
$$;

-- reclaim_expired_holds(p_ticket_option_ids uuid[], OUT holds integer, OUT order_ids uuid[])
-- Under the locks of the options and their quotas only: stores each
-- option's holds past expires_at (by decision_clock()) as expired
-- (released_at: when they expired) and puts their tickets back on sale
-- (move_tickets), a few statements per option whatever the number of holds,
-- with a hold.expired event each (sql/events.sql). holds: how many;
-- order_ids: the orders of those holds, in id order (the caller locks them
-- and expires them: expire_orders). (plpgsql_check, which plans the
-- statements in a session that took no lock, finds the decision clock
-- unset: it is always read under the locks before this runs.)
CREATE OR REPLACE FUNCTION ticket_allocation.reclaim_expired_holds(
    p_ticket_option_ids uuid[], OUT holds integer, OUT order_ids uuid[])
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    expired_ids uuid[] := '{}'::uuid[];
    option_id uuid;
    reclaimed record;
BEGIN
    order_ids := '{}'::uuid[];
    FOREACH option_id IN ARRAY p_ticket_option_ids LOOP
        -- One option per statement: its holds_live_idx range. With an array of options, a
        -- generic plan skip-scanned holds_live_user_idx instead: every live hold of them.
        WITH expired AS (
            UPDATE holds h SET status = 'expired', released_at = h.expires_at
            WHERE h.ticket_option_id = option_id AND h.status = 'held' AND h.expires_at <= decision_clock()
            RETURNING h.id, h.quantity, h.order_id
        )
        SELECT coalesce(array_agg(e.id), '{}'::uuid[]) AS ids, coalesce(sum(e.quantity), 0)::integer AS tickets,
               coalesce(array_agg(e.order_id) FILTER (WHERE e.order_id IS NOT NULL), '{}'::uuid[]) AS orders
        INTO reclaimed
        FROM expired e;
        IF reclaimed.tickets > 0 THEN
            PERFORM move_tickets(option_id, -reclaimed.tickets, 0);
            expired_ids := expired_ids || reclaimed.ids;
            order_ids := order_ids || reclaimed.orders;
        END IF;
    END LOOP;
    holds := cardinality(expired_ids);
    order_ids := ARRAY(SELECT DISTINCT o FROM unnest(order_ids) AS o ORDER BY o);
    PERFORM append_resource_events('hold.expired', ARRAY(SELECT h FROM unnest(expired_ids) AS h ORDER BY h));  -- sql/events.sql
END;
$$;

-- expire_orders(p_order_ids uuid[]) RETURNS void
-- Under the orders' locks: stores those of the orders still stored `held`
-- as expired (released_at: when they expired), each with an order.expired
-- event. Called when a line's hold was reclaimed: the order's other lines
-- expired at the same instant (one expires_at), stored so by their own
-- option's next lock or the sweeper.
CREATE OR REPLACE FUNCTION ticket_allocation.expire_orders(p_order_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    expired_ids uuid[];
BEGIN
    IF coalesce(cardinality(p_order_ids), 0) = 0 THEN
        RETURN;
    END IF;
    WITH expired AS (
        UPDATE orders o SET status = 'expired', released_at = o.expires_at
        WHERE o.id = ANY (p_order_ids) AND o.status = 'held'
        RETURNING o.id
    )
    SELECT array_agg(e.id ORDER BY e.id) INTO expired_ids FROM expired e;
    PERFORM append_resource_events('order.expired', expired_ids);  -- sql/events.sql
END;
$$;

-- ttl_refusal(p_ttl interval) RETURNS api.refusal
-- TA001 unless a hold's time to live is from 1 second to 1 day; else null.
CREATE OR REPLACE FUNCTION ticket_allocation.ttl_refusal(p_ttl interval)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE WHEN p_ttl IS NULL OR p_ttl NOT BETWEEN '1 second' AND '1 day'
                THEN invalid_argument('ttl', 'must be from 1 second to 1 day') END
$$;

-- apply_holds(p_hold_ids uuid[], p_requests api.ticket_request[], p_order_ids uuid[] DEFAULT NULL) RETURNS void
-- Step 3 of a hold batch, and of a held order: THE place holds are created.
-- Under the locks (lock_options), set-based: inserts hold i (p_hold_ids[i]:
-- p_requests[i]'s quantity of its option for its user, until
-- decision_clock() + its ttl, or + the option's max_hold_seconds when that
-- is shorter, a line of order p_order_ids[i] when given) and moves the tickets
-- from on sale to held (move_tickets). The CHECKs refuse any overdraft.
CREATE OR REPLACE FUNCTION ticket_allocation.apply_holds(
    p_hold_ids uuid[], p_requests api.ticket_request[], p_order_ids uuid[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
BEGIN
    IF coalesce(cardinality(p_hold_ids), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM move_tickets(ARRAY(SELECT r.ticket_option_id FROM unnest(p_requests) AS r),
                         ARRAY(SELECT r.quantity FROM unnest(p_requests) AS r),
                         array_fill(0, ARRAY[cardinality(p_requests)]));
    INSERT INTO holds (id, ticket_option_id, user_id, quantity, created_at, expires_at, order_id)
    SELECT p_hold_ids[r.ordinality], r.ticket_option_id, r.user_id, r.quantity, decision_clock(),
           decision_clock() + least(r.ttl, (SELECT make_interval(secs => o.max_hold_seconds)
                                            FROM ticket_options o WHERE o.id = r.ticket_option_id)),
           p_order_ids[r.ordinality]
    FROM unnest(p_requests) WITH ORDINALITY AS r;
    PERFORM append_resource_events('hold.created', p_hold_ids);  -- sql/events.sql
END;
$$;

-- api.default_hold_ttl() RETURNS interval
-- How long a hold lasts when its caller does not say (10 minutes; at most the
-- option's max_hold_seconds): the default of hold_tickets' p_ttl and of a null
-- ttl in hold_tickets_batch, defined here only (service/openapi.yaml repeats it
-- as ttl_seconds' default: tests/test_defaults.py ties the two). Errors: none.
CREATE OR REPLACE FUNCTION api.default_hold_ttl()
RETURNS interval
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT interval '10 minutes'
$$;

-- api.hold_tickets_batch(p_requests api.ticket_request[], p_skip_locked boolean DEFAULT false)
--     RETURNS SETOF api.hold_outcome
-- Decides many holds in one call (the coalescer's), in arrival order (array
-- order), exactly as purchase_tickets_batch decides purchases (the same
-- steps and rules: what is on sale, every quota of the option,
-- max_per_user counting bought and held tickets, idempotency keys in a scope
-- of their own): request i holds its quantity of its option for its user
-- for its ttl (null: default_hold_ttl(), hold_tickets' default), or for the
-- option's max_hold_seconds when that is shorter. One row per
-- request, in order: a refusal or the hold. A key naming an earlier hold of
-- the same request gets that hold (as it is now) and holds nothing more.
-- p_skip_locked: a request whose option another transaction holds is
-- deferred, as in purchase_tickets_batch.
-- Refusals: TA001 (null option or user, quantity outside 1..1000, ttl outside
--           1 s..1 day, malformed key), TA002 (no such option), TA003, TA005,
--           TA006, TA007, TA014 (a quota of the option has too few left).
-- Errors (nothing is held): TA008.
CREATE OR REPLACE FUNCTION api.hold_tickets_batch(p_requests api.ticket_request[], p_skip_locked boolean DEFAULT false)
RETURNS SETOF api.hold_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requested constant integer := coalesce(cardinality(p_requests), 0);
    requests api.ticket_request[] := '{}'::api.ticket_request[];  -- by ordinal: the ttl default filled in
    request api.ticket_request;
    refusals api.refusal[] := '{}'::api.refusal[];
    scopes text[] := '{}'::text[];
    asked jsonb[] := '{}'::jsonb[];
    hold_ids uuid[] := '{}'::uuid[];        -- by ordinal: the hold answering it, new or earlier
    granted integer[];                      -- the ordinals that hold now
    deferred boolean[];                     -- by ordinal: its option was busy (p_skip_locked)
BEGIN
    PERFORM assert_session_limits();
    FOR i IN 1 .. requested LOOP
        request := p_requests[i];
        request.ttl := coalesce(request.ttl, default_hold_ttl());
        requests[i] := request;
        refusals[i] := coalesce(request_refusal(request), ttl_refusal(request.ttl));
        scopes[i] := hold_idempotency_scope(request.caller, request.ticket_option_id, request.user_id);
        asked[i] := jsonb_build_object('hold_tickets', jsonb_build_object(
            'ticket_option_id', request.ticket_option_id, 'user_id', request.user_id, 'quantity', request.quantity,
            'ttl', request.ttl));
    END LOOP;

    SELECT b.refusals, b.ids, b.granted, b.deferred INTO refusals, hold_ids, granted, deferred
    FROM decide_batch(requests, ARRAY(SELECT r.idempotency_key FROM unnest(requests) WITH ORDINALITY AS r
                                   ORDER BY r.ordinality),
                      scopes, asked, refusals, p_skip_locked) AS b;

    PERFORM apply_holds(array_agg(hold_ids[g] ORDER BY g), array_agg(requests[g] ORDER BY g))
    FROM unnest(granted) AS g;
    PERFORM remember_idempotency_keys(
        array_agg(scopes[g]), array_agg((requests[g]).idempotency_key), array_agg(asked[g]), 'hold',
        array_agg(hold_ids[g]))
    FROM unnest(granted) AS g
    WHERE (requests[g]).idempotency_key IS NOT NULL
    HAVING count(*) > 0;

    RETURN QUERY
        SELECT o, refusals[o], hold_resource(hold_ids[o]), deferred[o]
        FROM generate_series(1, requested) AS o
        ORDER BY o;
END;
$$;

-- api.hold_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer,
--                  p_ttl interval DEFAULT default_hold_ttl(), p_idempotency_key text DEFAULT NULL,
--                  p_caller text DEFAULT NULL)
--     RETURNS api.hold
-- Sets p_quantity tickets aside for p_user_id for p_ttl (at most the
-- option's max_hold_seconds), all or nothing, and returns the hold (status held). With p_idempotency_key, the
-- same key and arguments again return the first hold (as it is now). A
-- batch of one of hold_tickets_batch.
-- Errors: TA001 (null argument, quantity outside 1..1000, ttl outside 1 s..1 day,
--         malformed key), TA002 (no such option), TA003 (not enough on sale),
--         TA005, TA006 (keys), TA007 (max_per_user), TA008, TA014 (a quota).
CREATE OR REPLACE FUNCTION api.hold_tickets(
    p_ticket_option_id uuid, p_user_id uuid, p_quantity integer, p_ttl interval DEFAULT api.default_hold_ttl(),
    p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL)
RETURNS api.hold
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    outcome api.hold_outcome;
BEGIN
    IF p_ttl IS NULL THEN
        PERFORM raise_refusal(ttl_refusal(p_ttl));  -- null is not "the default" here
    END IF;
    SELECT * INTO outcome
    FROM hold_tickets_batch(ARRAY[ROW(p_ticket_option_id, p_user_id, p_quantity, p_idempotency_key, p_caller,
                                      p_ttl)::api.ticket_request]);
    IF (outcome.refusal).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(outcome.refusal);
    END IF;
    RETURN outcome.hold;
END;
$$;

-- api.get_hold(p_id uuid) RETURNS api.hold
-- Returns the hold, its status as of now. A hold past expires_at still
-- stored `held` is reclaimed first, under its option's lock (lock_options;
-- waits for a call deciding on the option now, at most lock_timeout), so
-- that `expired`, once answered, is what every later decision finds.
-- Errors: TA009 when no hold has that id.
CREATE OR REPLACE FUNCTION api.get_hold(p_id uuid)
RETURNS api.hold
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_hold api.hold;
BEGIN
    found_hold := hold_resource(p_id);
    IF found_hold.id IS NULL THEN
        PERFORM raise_refusal(refusal_of('hold_not_found', p_id::text));
    END IF;
    IF found_hold.status = 'expired' AND (SELECT status FROM holds WHERE id = p_id) = 'held' THEN
        PERFORM assert_session_limits();  -- it is about to lock
        PERFORM lock_options(ARRAY[found_hold.ticket_option_id]);  -- stores it expired, or finds it decided
        found_hold := hold_resource(p_id);
    END IF;
    RETURN found_hold;
END;
$$;

-- locked_hold(p_id uuid) RETURNS holds
-- Locks the hold's option (lock_options: its expired holds reclaimed, this
-- one included), then the hold: the lock order of every change. Raises
-- TA009 when no hold has that id, TA022 when it is a line of an order
-- (the order is confirmed or released as a whole).
CREATE OR REPLACE FUNCTION ticket_allocation.locked_hold(p_id uuid)
RETURNS ticket_allocation.holds
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    found_hold holds;
BEGIN
    SELECT * INTO found_hold FROM holds WHERE id = p_id;  -- its option and order never change
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('hold_not_found', p_id::text));
    ELSIF found_hold.order_id IS NOT NULL THEN
        PERFORM raise_refusal(refusal_of('hold_of_order', p_id::text, found_hold.order_id::text));
    END IF;
    PERFORM lock_options(ARRAY[found_hold.ticket_option_id]);
    SELECT * INTO found_hold FROM holds WHERE id = p_id FOR UPDATE;
    RETURN found_hold;
END;
$$;

-- api.confirm_hold(p_id uuid) RETURNS api.hold_confirmation
-- Buys the hold's tickets: makes its purchase (apply_purchases, from the
-- held tickets, so it never fails for lack of tickets) and marks the hold
-- confirmed. `created` is true when this call bought; confirming a
-- confirmed hold returns its purchase (as it is now) with created false.
-- For psql: SELECT (api.confirm_hold('...')).purchase.*;
-- Errors: TA009 when no hold has that id; TA010 when it expired (even if
--         not reclaimed yet); TA011 when it was released; TA022 when it is a
--         line of an order (confirm_order); TA008.
CREATE OR REPLACE FUNCTION api.confirm_hold(p_id uuid)
RETURNS api.hold_confirmation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    target holds;
    option_before api.ticket_option;
    new_purchase_id constant uuid := gen_random_uuid();
BEGIN
    PERFORM assert_session_limits();
    target := locked_hold(p_id);
    option_before := get_ticket_option(target.ticket_option_id);  -- under its lock
    IF target.status = 'confirmed' THEN
        RETURN ROW(false, purchase_resource(target.purchase_id))::api.hold_confirmation;
    ELSIF target.status = 'released' THEN
        PERFORM raise_refusal(refusal_of('hold_released', p_id::text));
    ELSIF target.status = 'expired' THEN  -- lock_options stored it so if it was past expires_at
        PERFORM raise_refusal(refusal_of('hold_expired', p_id::text, target.expires_at::text));
    END IF;
    PERFORM apply_purchases(
        ARRAY[new_purchase_id],
        ARRAY[ROW(target.ticket_option_id, target.user_id, target.quantity, NULL, NULL, NULL)::api.ticket_request],
        p_from_held => true);
    UPDATE holds SET status = 'confirmed', confirmed_at = decision_clock(), purchase_id = new_purchase_id
    WHERE id = p_id;
    -- Events: purchase.created (apply_purchases), hold.confirmed, then the option's sold_out if it is.
    PERFORM append_resource_events('hold.confirmed', ARRAY[p_id]);
    PERFORM append_stock_events(option_before, get_ticket_option(target.ticket_option_id));
    RETURN ROW(true, purchase_resource(new_purchase_id))::api.hold_confirmation;
END;
$$;

-- release_holds(p_hold_ids uuid[]) RETURNS void
-- Under the locks of their options: THE place holds are released. Marks
-- those of the holds still stored `held` released and puts their tickets
-- back on sale (move_tickets, per option), with a hold.released event each.
-- The others (confirmed, released, expired) are left as they are.
CREATE OR REPLACE FUNCTION ticket_allocation.release_holds(p_hold_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    released_ids uuid[];
    options uuid[];
    quantities integer[];
    freed record;
BEGIN
    WITH released AS (
        UPDATE holds h SET status = 'released', released_at = decision_clock()
        WHERE h.id = ANY (p_hold_ids) AND h.status = 'held'
        RETURNING h.id, h.ticket_option_id, h.quantity
    )
    SELECT array_agg(r.id ORDER BY r.id), array_agg(r.ticket_option_id ORDER BY r.id),
           array_agg(r.quantity ORDER BY r.id)
    INTO released_ids, options, quantities
    FROM released r;
    IF released_ids IS NULL THEN
        RETURN;
    END IF;
    FOR freed IN
        SELECT u.option_id, sum(u.quantity)::integer AS tickets
        FROM unnest(options, quantities) AS u (option_id, quantity)
        GROUP BY u.option_id
        ORDER BY u.option_id
    LOOP
        PERFORM move_tickets(freed.option_id, -freed.tickets, 0);
    END LOOP;
    -- In the callers' order (one hold, or an order's lines).
    PERFORM append_resource_events('hold.released', array_agg(h ORDER BY n))
    FROM unnest(p_hold_ids) WITH ORDINALITY AS u (h, n)
    WHERE h = ANY (released_ids);
END;
$$;

-- api.release_hold(p_id uuid) RETURNS api.hold_release
-- Lets the hold go: marks it released and puts its tickets back on sale at
-- once. `released` is true when this call released it; releasing a released
-- or expired hold changes nothing and returns it with released false.
-- For psql: SELECT released, (hold).status FROM api.release_hold('...');
-- Errors: TA009 when no hold has that id; TA012 when it is confirmed (cancel
--         its purchase instead); TA022 when it is a line of an order
--         (release_order); TA008.
CREATE OR REPLACE FUNCTION api.release_hold(p_id uuid)
RETURNS api.hold_release
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    target holds;
BEGIN
    PERFORM assert_session_limits();
    target := locked_hold(p_id);
    IF target.status = 'confirmed' THEN
        PERFORM raise_refusal(refusal_of('hold_confirmed', p_id::text, target.purchase_id::text));
    END IF;
    PERFORM release_holds(ARRAY[p_id]);
    RETURN ROW(target.status = 'held', hold_resource(p_id))::api.hold_release;
END;
$$;

-- api.release_expired_holds() RETURNS integer
-- Admin (the service's sweeper; psql or pg_cron users may call it):
-- reclaims the expired holds of the options of the (at most) 1,000 holds
-- that expired first, and returns how many holds it reclaimed (expiring
-- their orders too). An option whose lock, or a lock of its quotas or of
-- its expiring orders, another call holds is skipped (try_lock_for_sweep:
-- that call reclaims it, and the sweeper never waits, so it cannot
-- deadlock). Call again while it returns more than 0. Errors: TA008.
CREATE OR REPLACE FUNCTION api.release_expired_holds()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    option_id uuid;
    reclaimed record;
    total integer := 0;
BEGIN
    PERFORM assert_session_limits();
    FOR option_id IN
        SELECT DISTINCT first_expired.ticket_option_id
        FROM (SELECT h.ticket_option_id FROM holds h
              WHERE h.status = 'held' AND h.expires_at <= clock()
              ORDER BY h.expires_at
              LIMIT 1000) AS first_expired
    LOOP
        IF try_lock_for_sweep(option_id) THEN
            reclaimed := reclaim_expired_holds(ARRAY[option_id]);
            PERFORM expire_orders(reclaimed.order_ids);  -- locked by try_lock_for_sweep
            total := total + reclaimed.holds;
        END IF;
    END LOOP;
    RETURN total;
END;
$$;
