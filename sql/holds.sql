-- Holds: tickets set aside for a buyer until expires_at, then bought
-- (confirm_hold), let go (release_hold) or expired. An option's tickets are
-- on sale (remaining), held or sold; a hold past expires_at is expired from
-- that instant: reads count its tickets as on sale at once (the partial
-- index of live holds finds them), and the next call that locks the option
-- (lock_option) stores it expired and puts them back on sale, as does the
-- sweeper (release_expired_holds).
--
-- Expiry is final once anyone was told: every decision under a lock (reclaim,
-- confirm, release, what max_per_user counts, a new hold's expires_at) uses
-- decision_clock(), read right after the lock was granted, never the
-- transaction's start; so a call that queued on the lock while a read said
-- "expired" decides later than that read, and sees it expired too. A read
-- (get_hold) that finds a hold past expires_at but still stored `held` takes
-- the option's lock and reclaims it before it answers `expired`: no decision
-- made before, and not committed yet, can contradict it afterwards.
--
-- Where states change (one place each): a hold is created in apply_holds,
-- confirmed in confirm_hold (its purchase made by apply_purchases), released
-- in release_hold, expired in reclaim_expired_holds (called by lock_option
-- and release_expired_holds).

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
-- Called right after an option's lock is granted (lock_option,
-- try_lock_option): reads clock() once and keeps it, for the rest of the
-- transaction, as decision_clock(). Returns it.
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
-- transaction last took an option's lock (read_decision_clock). Only for
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
               h.expires_at, h.created_at, h.purchase_id)::api.hold
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

-- reclaim_expired_holds(p_ticket_option_id uuid) RETURNS integer
-- Under the option's lock only: stores the option's holds past expires_at
-- (by decision_clock()) as expired (released_at: when they expired) and puts their tickets back
-- on sale, in two statements whatever their number, with a hold.expired event
-- each (sql/events.sql). Returns how many holds.
CREATE OR REPLACE FUNCTION ticket_allocation.reclaim_expired_holds(p_ticket_option_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    expired_ids uuid[];
    tickets integer;
BEGIN
    WITH expired AS (
        UPDATE holds SET status = 'expired', released_at = expires_at
        WHERE ticket_option_id = p_ticket_option_id AND status = 'held' AND expires_at <= decision_clock()
        RETURNING id, quantity
    )
    SELECT array_agg(id ORDER BY id), coalesce(sum(quantity), 0)::integer INTO expired_ids, tickets FROM expired;
    IF tickets > 0 THEN
        UPDATE ticket_options SET remaining = remaining + tickets, held = held - tickets, updated_at = now()
        WHERE id = p_ticket_option_id;
        PERFORM append_hold_events('hold.expired', expired_ids);  -- sql/events.sql
    END IF;
    RETURN coalesce(cardinality(expired_ids), 0);
END;
$$;

-- lock_option(p_ticket_option_id uuid) RETURNS ticket_options
-- THE way to lock an option's row (FOR NO KEY UPDATE), for any change to
-- its tickets: once the lock is granted, reads the clock the call decides by
-- (read_decision_clock) and reclaims the holds expired by it, so what the
-- caller reads and decides counts them as on sale. Returns the row as it is
-- then; a row of nulls when no option has that id.
CREATE OR REPLACE FUNCTION ticket_allocation.lock_option(p_ticket_option_id uuid)
RETURNS ticket_allocation.ticket_options
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    locked ticket_options;
BEGIN
    SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id FOR NO KEY UPDATE;
    IF locked.id IS NULL THEN
        RETURN locked;
    END IF;
    PERFORM read_decision_clock();  -- after the lock: the time spent waiting for it counts
    IF reclaim_expired_holds(p_ticket_option_id) > 0 THEN
        SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id;
    END IF;
    RETURN locked;
END;
$$;

-- try_lock_option(p_ticket_option_id uuid) RETURNS boolean
-- The sweeper's lock_option: takes the option's lock only if nobody holds
-- it (SKIP LOCKED: never waits, so it cannot deadlock or queue behind a
-- stalled session), then reads the decision clock. True when it locked;
-- reclaiming is the caller's.
CREATE OR REPLACE FUNCTION ticket_allocation.try_lock_option(p_ticket_option_id uuid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM ticket_options WHERE id = p_ticket_option_id FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM read_decision_clock();
    RETURN true;
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

-- apply_holds(p_ticket_option_id uuid, p_hold_ids uuid[], p_user_ids uuid[], p_quantities integer[],
--             p_ttls interval[])
--     RETURNS void
-- Step 3 of a hold batch: THE place holds are created. Under the option's
-- lock, set-based: inserts hold i (p_hold_ids[i], p_quantities[i] tickets
-- for p_user_ids[i], until decision_clock() + p_ttls[i], or + the option's
-- max_hold_seconds when that is shorter) and moves the tickets from on sale
-- to held. The CHECKs of ticket_options refuse any overdraft.
CREATE OR REPLACE FUNCTION ticket_allocation.apply_holds(
    p_ticket_option_id uuid, p_hold_ids uuid[], p_user_ids uuid[], p_quantities integer[], p_ttls interval[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    taken constant integer := (SELECT sum(q)::integer FROM unnest(p_quantities) AS q);
    longest interval;  -- the option's max_hold_seconds
BEGIN
    IF coalesce(taken, 0) = 0 THEN
        RETURN;
    END IF;
    UPDATE ticket_options SET remaining = remaining - taken, held = held + taken, updated_at = now()
    WHERE id = p_ticket_option_id
    RETURNING make_interval(secs => max_hold_seconds) INTO longest;
    INSERT INTO holds (id, ticket_option_id, user_id, quantity, created_at, expires_at)
    SELECT r.id, p_ticket_option_id, r.user_id, r.quantity, decision_clock(), decision_clock() + least(r.ttl, longest)
    FROM unnest(p_hold_ids, p_user_ids, p_quantities, p_ttls) AS r (id, user_id, quantity, ttl);
    PERFORM append_hold_events('hold.created', p_hold_ids);  -- sql/events.sql
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

-- api.hold_tickets_batch(p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[],
--                        p_ttls interval[] DEFAULT NULL, p_idempotency_keys text[] DEFAULT NULL,
--                        p_callers text[] DEFAULT NULL)
--     RETURNS SETOF api.hold_outcome
-- Decides many holds of one option in one call (the coalescer's), in
-- arrival order, exactly as purchase_tickets_batch decides purchases (its
-- three steps, the same rules: what is on sale, max_per_user counting
-- bought and held tickets, idempotency keys in a scope of their own): request
-- i holds p_quantities[i] tickets for p_user_ids[i] for p_ttls[i] (null:
-- default_hold_ttl(), as hold_tickets' default), or for the option's max_hold_seconds
-- when that is shorter. One row per request, in order: a
-- refusal or the hold. A key naming an earlier hold of the same request gets
-- that hold (as it is now) and holds nothing more.
-- Refusals: TA001 (null user, quantity outside 1..1000, ttl outside 1 s..1 day,
--           malformed key), TA003, TA005, TA006, TA007.
-- Errors (nothing is held): TA001 when the option id is null or the arrays
--         differ in length; TA002 when the option does not exist; TA008.
CREATE OR REPLACE FUNCTION api.hold_tickets_batch(
    p_ticket_option_id uuid, p_user_ids uuid[], p_quantities integer[], p_ttls interval[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL, p_callers text[] DEFAULT NULL)
RETURNS SETOF api.hold_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requests constant integer := coalesce(cardinality(p_user_ids), 0);
    ttls interval[] := '{}'::interval[];    -- by ordinal: its ttl, the default filled in
    refusals api.refusal[] := '{}'::api.refusal[];
    scopes text[] := '{}'::text[];
    asked jsonb[] := '{}'::jsonb[];
    hold_ids uuid[] := '{}'::uuid[];        -- by ordinal: the hold answering it, new or earlier
    granted integer[];                      -- the ordinals that hold now
BEGIN
    PERFORM assert_session_limits();
    IF p_ticket_option_id IS NULL THEN
        PERFORM raise_invalid_argument('ticket_option_id', 'must not be null');
    END IF;
    IF coalesce(cardinality(p_quantities), 0) <> requests
       OR coalesce(cardinality(p_ttls), requests) <> requests
       OR coalesce(cardinality(p_idempotency_keys), requests) <> requests
       OR coalesce(cardinality(p_callers), requests) <> requests THEN
        PERFORM raise_invalid_argument('requests', 'user ids, quantities, ttls, idempotency keys and callers must be arrays of one length');
    END IF;
    FOR i IN 1 .. requests LOOP
        ttls[i] := coalesce(p_ttls[i], default_hold_ttl());
        refusals[i] := coalesce(request_refusal(p_user_ids[i], p_quantities[i]), ttl_refusal(ttls[i]));
        scopes[i] := hold_idempotency_scope(p_callers[i], p_ticket_option_id, p_user_ids[i]);
        asked[i] := jsonb_build_object('hold_tickets', jsonb_build_object(
            'ticket_option_id', p_ticket_option_id, 'user_id', p_user_ids[i], 'quantity', p_quantities[i],
            'ttl', ttls[i]));
    END LOOP;

    SELECT b.refusals, b.ids, b.granted INTO refusals, hold_ids, granted
    FROM decide_batch(p_ticket_option_id, p_user_ids, p_quantities, scopes, p_idempotency_keys, asked, refusals) AS b;

    PERFORM apply_holds(p_ticket_option_id, array_agg(hold_ids[g]), array_agg(p_user_ids[g]),
                        array_agg(p_quantities[g]), array_agg(ttls[g]))
    FROM unnest(granted) AS g;
    PERFORM remember_idempotency_keys(
        array_agg(scopes[g]), array_agg(p_idempotency_keys[g]), array_agg(asked[g]),
        array_agg(NULL::uuid), array_agg(NULL::uuid), array_agg(hold_ids[g]))
    FROM unnest(granted) AS g
    WHERE p_idempotency_keys[g] IS NOT NULL
    HAVING count(*) > 0;

    RETURN QUERY
        SELECT o, refusals[o], hold_resource(hold_ids[o])
        FROM generate_series(1, requests) AS o
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
--         TA005, TA006 (keys), TA007 (max_per_user), TA008.
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
    FROM hold_tickets_batch(p_ticket_option_id, ARRAY[p_user_id], ARRAY[p_quantity], ARRAY[p_ttl],
                            ARRAY[p_idempotency_key], ARRAY[p_caller]);
    IF (outcome.refusal).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(outcome.refusal);
    END IF;
    RETURN outcome.hold;
END;
$$;

-- api.get_hold(p_id uuid) RETURNS api.hold
-- Returns the hold, its status as of now. A hold past expires_at still
-- stored `held` is reclaimed first, under its option's lock (lock_option;
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
        PERFORM raise_refusal(hold_not_found(p_id));
    END IF;
    IF found_hold.status = 'expired' AND (SELECT status FROM holds WHERE id = p_id) = 'held' THEN
        PERFORM assert_session_limits();  -- it is about to lock
        PERFORM lock_option(found_hold.ticket_option_id);  -- stores it expired, or finds it decided
        found_hold := hold_resource(p_id);
    END IF;
    RETURN found_hold;
END;
$$;

-- locked_hold(p_id uuid) RETURNS holds
-- Locks the hold's option (lock_option: its expired holds reclaimed, this
-- one included), then the hold: the lock order of every change. Raises
-- TA009 when no hold has that id.
CREATE OR REPLACE FUNCTION ticket_allocation.locked_hold(p_id uuid)
RETURNS ticket_allocation.holds
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    option_id uuid;
    target holds;
BEGIN
    SELECT ticket_option_id INTO option_id FROM holds WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(hold_not_found(p_id));
    END IF;
    PERFORM lock_option(option_id);
    SELECT * INTO target FROM holds WHERE id = p_id FOR UPDATE;
    RETURN target;
END;
$$;

-- api.confirm_hold(p_id uuid) RETURNS api.hold_confirmation
-- Buys the hold's tickets: makes its purchase (apply_purchases, from the
-- held tickets, so it never fails for lack of tickets) and marks the hold
-- confirmed. `created` is true when this call bought; confirming a
-- confirmed hold returns its purchase (as it is now) with created false.
-- For psql: SELECT (api.confirm_hold('...')).purchase.*;
-- Errors: TA009 when no hold has that id; TA010 when it expired (even if
--         not reclaimed yet); TA011 when it was released; TA008.
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
        PERFORM raise_refusal(hold_released(p_id));
    ELSIF target.status = 'expired' THEN  -- lock_option stored it so if it was past expires_at
        PERFORM raise_refusal(hold_expired(p_id, target.expires_at));
    END IF;
    PERFORM apply_purchases(target.ticket_option_id, ARRAY[new_purchase_id], ARRAY[target.user_id],
                            ARRAY[target.quantity], p_from_held => true);
    UPDATE holds SET status = 'confirmed', confirmed_at = decision_clock(), purchase_id = new_purchase_id
    WHERE id = p_id;
    -- Events: purchase.created (apply_purchases), hold.confirmed, then the option's sold_out if it is.
    PERFORM append_hold_events('hold.confirmed', ARRAY[p_id]);
    PERFORM append_stock_events(option_before, get_ticket_option(target.ticket_option_id));
    RETURN ROW(true, purchase_resource(new_purchase_id))::api.hold_confirmation;
END;
$$;

-- api.release_hold(p_id uuid) RETURNS api.hold_release
-- Lets the hold go: marks it released and puts its tickets back on sale at
-- once. `released` is true when this call released it; releasing a released
-- or expired hold changes nothing and returns it with released false.
-- For psql: SELECT released, (hold).status FROM api.release_hold('...');
-- Errors: TA009 when no hold has that id; TA012 when it is confirmed (cancel
--         its purchase instead); TA008.
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
        PERFORM raise_refusal(hold_confirmed(p_id, target.purchase_id));
    ELSIF target.status = 'held' THEN
        UPDATE holds SET status = 'released', released_at = decision_clock() WHERE id = p_id;
        UPDATE ticket_options
        SET remaining = remaining + target.quantity, held = held - target.quantity, updated_at = now()
        WHERE id = target.ticket_option_id;
        PERFORM append_hold_events('hold.released', ARRAY[p_id]);
    END IF;
    RETURN ROW(target.status = 'held', hold_resource(p_id))::api.hold_release;
END;
$$;

-- api.release_expired_holds() RETURNS integer
-- Admin (the service's sweeper; psql or pg_cron users may call it):
-- reclaims the expired holds of the options of the (at most) 1,000 holds
-- that expired first, and returns how many holds it reclaimed. An option
-- locked by another call is skipped (try_lock_option: that call reclaims
-- it, and the sweeper never waits, so it cannot deadlock). Call again while it
-- returns more than 0. Errors: TA008.
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
    reclaimed integer := 0;
BEGIN
    PERFORM assert_session_limits();
    FOR option_id IN
        SELECT DISTINCT first_expired.ticket_option_id
        FROM (SELECT h.ticket_option_id FROM holds h
              WHERE h.status = 'held' AND h.expires_at <= clock()
              ORDER BY h.expires_at
              LIMIT 1000) AS first_expired
    LOOP
        IF try_lock_option(option_id) THEN
            reclaimed := reclaimed + reclaim_expired_holds(option_id);
        END IF;
    END LOOP;
    RETURN reclaimed;
END;
$$;
