-- Orders: many lines (an option and a quantity each, each option at most
-- once), one outcome. An order is placed as a whole or not at all, decided
-- by the path of purchases and holds (sql/purchases.sql: decide_batch, with
-- its lines as one all-or-nothing group, then apply_purchases or
-- apply_holds), many orders per call
-- (place_orders_batch; place_order is a batch of one), and refused with every
-- failing line (order_refused in sql/errors.sql).
--
-- States (orders.status; README "Orders" draws them):
--   placed without a ttl           -> confirmed (one purchase per line)
--   placed with a ttl              -> held (one hold per line, one expires_at)
--   held    -> confirmed           confirm_order: every line bought at once
--   held    -> released            release_order: every line's hold released
--   held    -> expired             at expires_at, every line at once (stored
--                                  when a line's hold is reclaimed)
--   confirmed -> partially_cancelled -> cancelled
--                                  cancel_purchase of some / the last line;
--                                  cancel_order cancels every line
-- Events (sql/events.sql), each in the transaction of the change, after the
-- events of its lines' purchases and holds: order.created, order.confirmed,
-- order.released, order.expired, order.cancelled (when no line is active any
-- more).

-- order_resource(p_id uuid) RETURNS api."order"
-- The order as callers see it, looked up by primary key (null when there is
-- none): its status as of clock() (a `held` order past expires_at reads
-- expired), its lines, and their purchases and holds in line order (one
-- primary-key lookup each).
CREATE OR REPLACE FUNCTION ticket_allocation.order_resource(p_id uuid)
RETURNS api."order"
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    found_order orders;
BEGIN
    SELECT * INTO found_order FROM orders WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN ROW(
        found_order.id, found_order.user_id,
        CASE WHEN found_order.status = 'held' AND found_order.expires_at <= clock() THEN 'expired'
             ELSE found_order.status END,
        ARRAY(SELECT ROW(l.ticket_option_id, l.quantity)::api.order_line
              FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line),
        found_order.expires_at, found_order.created_at,
        ARRAY(SELECT purchase_resource(l.purchase_id)
              FROM order_lines l WHERE l.order_id = p_id AND l.purchase_id IS NOT NULL ORDER BY l.line),
        ARRAY(SELECT hold_resource(l.hold_id)
              FROM order_lines l WHERE l.order_id = p_id AND l.hold_id IS NOT NULL ORDER BY l.line)
    )::api."order";
END;
$$;

-- order_line_requests(p_order orders) RETURNS api.ticket_request[]
-- The order's lines as requests (option, its user, quantity), in line order.
CREATE OR REPLACE FUNCTION ticket_allocation.order_line_requests(p_order ticket_allocation.orders)
RETURNS api.ticket_request[]
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(SELECT ROW(l.ticket_option_id, p_order.user_id, l.quantity, NULL, NULL, NULL)::api.ticket_request
                 FROM order_lines l WHERE l.order_id = p_order.id ORDER BY l.line)
$$;

-- locked_order(p_id uuid) RETURNS orders
-- Takes the locks of a change to the order (lock_options: its lines'
-- options, their quotas, then the order; expired holds reclaimed, so an
-- order past expires_at is stored expired by then) and returns it as it is
-- under them. Raises TA001 for a null id, TA017 when no order has it.
CREATE OR REPLACE FUNCTION ticket_allocation.locked_order(p_id uuid)
RETURNS ticket_allocation.orders
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    found_order orders;
BEGIN
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    END IF;
    PERFORM 1 FROM orders WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('order_not_found', p_id::text));
    END IF;
    PERFORM lock_options(ARRAY(SELECT l.ticket_option_id FROM order_lines l WHERE l.order_id = p_id),
                         p_order_ids => ARRAY[p_id]);
    SELECT * INTO found_order FROM orders WHERE id = p_id;
    RETURN found_order;
END;
$$;

-- settle_cancelled_order(p_order_id uuid) RETURNS void
-- Under the order's lock, after some of its purchases were cancelled: the
-- order becomes partially_cancelled while some line is still active, and
-- cancelled (cancelled_at, an order.cancelled event) when none is.
CREATE OR REPLACE FUNCTION ticket_allocation.settle_cancelled_order(p_order_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    active_lines constant integer := (
        SELECT count(*)::integer FROM order_lines l
        WHERE l.order_id = p_order_id AND (SELECT p.status FROM purchases p WHERE p.id = l.purchase_id) = 'active');
BEGIN
    UPDATE orders
    SET status = CASE WHEN active_lines = 0 THEN 'cancelled' ELSE 'partially_cancelled' END,
        cancelled_at = CASE WHEN active_lines = 0 THEN now() END
    WHERE id = p_order_id AND status IN ('confirmed', 'partially_cancelled')
      AND status <> CASE WHEN active_lines = 0 THEN 'cancelled' ELSE 'partially_cancelled' END;
    IF FOUND AND active_lines = 0 THEN
        PERFORM append_resource_events('order.cancelled', ARRAY[p_order_id]);  -- sql/events.sql
    END IF;
END;
$$;

-- order_requests(p_order api.order_request) RETURNS api.ticket_request[]
-- The order's lines as the requests they are decided as (option, the order's
-- user, quantity, no key of their own, its caller, its ttl), in line order.
CREATE OR REPLACE FUNCTION ticket_allocation.order_requests(p_order api.order_request)
RETURNS api.ticket_request[]
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(SELECT ROW(l.ticket_option_id, p_order.user_id, l.quantity, NULL, p_order.caller, p_order.ttl)::api.ticket_request
                 FROM unnest(p_order.lines) WITH ORDINALITY AS l ORDER BY l.ordinality)
$$;

-- order_refusal(p_order api.order_request) RETURNS api.refusal
-- Why an order is refused before anything is looked up, or null: TA001 for a
-- null user, not 1 to 50 lines, a ttl outside 1 s..1 day; else, for invalid
-- lines (a null option, a quantity outside 1..1000, an option on an earlier
-- line), the order's refusal naming each (order_refused).
CREATE OR REPLACE FUNCTION ticket_allocation.order_refusal(p_order api.order_request)
RETURNS api.refusal
LANGUAGE plpgsql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    requests constant api.ticket_request[] := order_requests(p_order);
    line_refusals api.refusal[] := '{}'::api.refusal[];
BEGIN
    IF p_order.user_id IS NULL THEN
        RETURN invalid_argument('user_id', 'must not be null');
    ELSIF coalesce(cardinality(p_order.lines), 0) NOT BETWEEN 1 AND 50 THEN
        RETURN invalid_argument('lines', 'must be 1 to 50 lines');
    ELSIF p_order.ttl IS NOT NULL AND (ttl_refusal(p_order.ttl)).sqlstate IS NOT NULL THEN
        RETURN ttl_refusal(p_order.ttl);
    END IF;
    FOR n IN 1 .. cardinality(requests) LOOP
        line_refusals[n] := coalesce(
            request_refusal(requests[n]),
            (SELECT invalid_argument('ticket_option_id', format('is on line %s already: an order names an option once', e))
             FROM generate_series(1, n - 1) AS e
             WHERE (requests[e]).ticket_option_id = (requests[n]).ticket_option_id
             ORDER BY e LIMIT 1));
    END LOOP;
    RETURN order_refused(line_refusals, cardinality(requests));
END;
$$;

-- place_decided_orders(p_orders api.order_request[], p_placed integer[], p_order_ids uuid[]) RETURNS void
-- Step 4 of an order batch, under the locks, for the orders p_placed (their
-- ordinals in p_orders, each to be order p_order_ids[i]) whose every line
-- fits: writes the orders, their lines, and one purchase per line (bought at
-- once: apply_purchases) or one hold per line (held: apply_holds, until one
-- expires_at, the order's ttl or the shortest max_hold_seconds of its lines'
-- options, whichever is less), set-based; then an order.created event each.
CREATE OR REPLACE FUNCTION ticket_allocation.place_decided_orders(
    p_orders api.order_request[], p_placed integer[], p_order_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    ttls interval[] := '{}'::interval[];       -- by order ordinal: its lines' time to live (null: bought)
    requests api.ticket_request[];
    line_orders uuid[] := '{}'::uuid[];        -- by line of the batch: its order,
    line_numbers integer[] := '{}'::integer[]; -- its number in its order,
    line_requests api.ticket_request[] := '{}'::api.ticket_request[];  -- what it takes,
    line_ids uuid[] := '{}'::uuid[];           -- its new purchase or hold,
    line_held boolean[] := '{}'::boolean[];    -- and whether it is held
    ttl interval;
    i integer;
BEGIN
    IF coalesce(cardinality(p_placed), 0) = 0 THEN
        RETURN;
    END IF;
    FOREACH i IN ARRAY p_placed LOOP  -- a loop over orders and lines, never over tickets
        requests := order_requests(p_orders[i]);
        ttl := least((p_orders[i]).ttl, (SELECT make_interval(secs => min(o.max_hold_seconds)) FROM ticket_options o
                                         WHERE o.id = ANY (ARRAY(SELECT r.ticket_option_id FROM unnest(requests) AS r))));
        ttls[i] := CASE WHEN (p_orders[i]).ttl IS NOT NULL THEN ttl END;
        FOR n IN 1 .. cardinality(requests) LOOP
            requests[n].ttl := ttls[i];  -- the lines expire together
            line_orders := line_orders || p_order_ids[i];
            line_numbers := line_numbers || n;
            line_requests := line_requests || requests[n];
            line_ids := line_ids || gen_random_uuid();
            line_held := line_held || (ttls[i] IS NOT NULL);
        END LOOP;
    END LOOP;
    INSERT INTO orders (id, user_id, status, lines, created_at, expires_at, confirmed_at)
    SELECT p_order_ids[g], (p_orders[g]).user_id, CASE WHEN ttls[g] IS NOT NULL THEN 'held' ELSE 'confirmed' END,
           cardinality((p_orders[g]).lines), decision_clock(), decision_clock() + ttls[g],
           CASE WHEN ttls[g] IS NULL THEN decision_clock() END
    FROM unnest(p_placed) AS g;
    -- Before the purchases and holds, whose order_id names their line.
    INSERT INTO order_lines (order_id, line, ticket_option_id, quantity, hold_id, purchase_id)
    SELECT line_orders[k], line_numbers[k], (line_requests[k]).ticket_option_id, (line_requests[k]).quantity,
           CASE WHEN line_held[k] THEN line_ids[k] END, CASE WHEN NOT line_held[k] THEN line_ids[k] END
    FROM generate_series(1, cardinality(line_ids)) AS k;
    PERFORM apply_purchases(
        ARRAY(SELECT line_ids[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE NOT line_held[k] ORDER BY k),
        ARRAY(SELECT line_requests[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE NOT line_held[k] ORDER BY k),
        ARRAY(SELECT line_orders[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE NOT line_held[k] ORDER BY k));
    PERFORM apply_holds(
        ARRAY(SELECT line_ids[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE line_held[k] ORDER BY k),
        ARRAY(SELECT line_requests[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE line_held[k] ORDER BY k),
        ARRAY(SELECT line_orders[k] FROM generate_series(1, cardinality(line_ids)) AS k WHERE line_held[k] ORDER BY k));
    PERFORM append_resource_events('order.created', ARRAY(SELECT p_order_ids[g] FROM unnest(p_placed) AS g));  -- sql/events.sql
END;
$$;

-- api.place_orders_batch(p_orders api.order_request[], p_skip_locked boolean DEFAULT false)
--     RETURNS SETOF api.order_outcome
-- Places many orders in one call (the coalescer's), in arrival order (array
-- order), each all or nothing: order i, for its user, every line (its option,
-- its quantity) or nothing; without ttl the lines are bought at once (one
-- purchase each, the order `confirmed`), with it they are held (one hold
-- each, the order `held`) until one expires_at for all: decision_clock() +
-- ttl, or the shortest max_hold_seconds of the lines' options when that is
-- shorter. The orders' lines are decided as purchases (or holds) of their
-- own would be, in order, counting what earlier lines and orders took: what
-- the option has on sale, what each quota of it has left, the option's
-- max_per_user (decide_batch, with each order's lines as one group). An
-- order with a line that cannot be had takes nothing and is refused with
-- every failing line (order_refused: the SQLSTATE of the
-- first, DETAIL listing all); a refused order does not stop the others. An
-- order's key (scoped by its caller and user) naming an earlier order of the
-- same request, in an earlier call or earlier in this batch, gets that order
-- (as it is now) and changes nothing. One row per order, in order: a refusal
-- or the order. place_order is a batch of one. p_skip_locked: an order any
-- of whose options another transaction holds is deferred, as in
-- purchase_tickets_batch (try_lock_options): nothing done for it.
-- Refusals: TA001 (null user, not 1 to 50 lines, ttl outside 1 s..1 day,
--           malformed key; an order refusal for invalid lines), an order
--           refusal (COLUMN lines) with TA002, TA003, TA007, TA014 lines;
--           TA005, TA006 (keys).
-- Errors (nothing is placed): TA008.
CREATE OR REPLACE FUNCTION api.place_orders_batch(p_orders api.order_request[], p_skip_locked boolean DEFAULT false)
RETURNS SETOF api.order_outcome
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    requested constant integer := coalesce(cardinality(p_orders), 0);
    asking api.order_request;
    refusals api.refusal[] := '{}'::api.refusal[];  -- by ordinal; null when answered by an order
    scopes text[] := '{}'::text[];
    asked jsonb[] := '{}'::jsonb[];
    its_lines api.ticket_request[];
    requests api.ticket_request[] := '{}'::api.ticket_request[];  -- the lines of the orders not refused yet
    order_of integer[] := '{}'::integer[];         -- by line: its order's ordinal
    order_ids uuid[];                               -- by ordinal: the order answering it, new or earlier
    placed integer[];                               -- the ordinals placed now
    deferred boolean[];                             -- by ordinal: an option of it was busy (p_skip_locked)
BEGIN
    PERFORM assert_session_limits();
    FOR i IN 1 .. requested LOOP
        asking := p_orders[i];
        refusals[i] := order_refusal(asking);
        scopes[i] := order_idempotency_scope(asking.caller, asking.user_id);
        asked[i] := jsonb_build_object('place_order', jsonb_build_object(
            'user_id', asking.user_id, 'lines', to_jsonb(asking.lines), 'ttl', asking.ttl));
        IF (refusals[i]).sqlstate IS NULL THEN  -- a refused order's lines are never decided (nor bounded in number)
            its_lines := order_requests(asking);
            requests := requests || its_lines;
            order_of := order_of || array_fill(i, ARRAY[cardinality(its_lines)]);
        END IF;
    END LOOP;

    SELECT b.refusals, b.ids, b.granted, b.deferred INTO refusals, order_ids, placed, deferred
    FROM decide_batch(requests, ARRAY(SELECT (p_orders[i]).idempotency_key FROM generate_series(1, requested) AS i
                                      ORDER BY i),
                      scopes, asked, refusals, p_skip_locked, order_of) AS b;

    PERFORM place_decided_orders(p_orders, placed, order_ids);
    PERFORM remember_idempotency_keys(
        array_agg(scopes[i]), array_agg((p_orders[i]).idempotency_key), array_agg(asked[i]), 'order',
        array_agg(order_ids[i]))
    FROM unnest(placed) AS i
    WHERE (p_orders[i]).idempotency_key IS NOT NULL
    HAVING count(*) > 0;

    RETURN QUERY
        SELECT o, refusals[o], order_resource(order_ids[o]), deferred[o]
        FROM generate_series(1, requested) AS o
        ORDER BY o;
END;
$$;

-- api.place_order(p_user_id uuid, p_lines api.order_line[], p_ttl interval DEFAULT NULL,
--                 p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL)
--     RETURNS api."order"
-- Places an order for p_user_id: every line (its option, its quantity) or
-- nothing, bought at once, or with p_ttl held until one expires_at; with
-- p_idempotency_key (scoped by p_caller and p_user_id) the same key and
-- request again return the first order (as it is now) and change nothing.
-- A batch of one of place_orders_batch, which says how lines are decided.
-- Errors: TA001 when p_user_id is null, there are not 1 to 50 lines, p_ttl
--         is outside 1 s..1 day, or the key is malformed; an order refusal
--         (COLUMN lines, DETAIL every failing line as JSON) when lines are
--         invalid (TA001: null option, quantity outside 1..1000, an option
--         on two lines) or cannot be had (TA002, TA003, TA007, TA014: the
--         SQLSTATE of the first failing line); TA005, TA006 (keys); TA008.
CREATE OR REPLACE FUNCTION api.place_order(
    p_user_id uuid, p_lines api.order_line[], p_ttl interval DEFAULT NULL, p_idempotency_key text DEFAULT NULL,
    p_caller text DEFAULT NULL)
RETURNS api."order"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    outcome api.order_outcome;
BEGIN
    SELECT * INTO outcome
    FROM place_orders_batch(ARRAY[ROW(p_user_id, p_lines, p_ttl, p_idempotency_key, p_caller)::api.order_request]);
    IF (outcome.refusal).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(outcome.refusal);
    END IF;
    RETURN outcome."order";
END;
$$;

-- api.get_order(p_id uuid) RETURNS api."order"
-- The order: its status as of now, lines, purchases and holds. A held order
-- past expires_at still stored `held` is expired first, under the locks of
-- its lines' options (locked_order; waits for a call deciding on them now,
-- at most lock_timeout), so that `expired`, once answered, is what every
-- later decision finds (as get_hold).
-- Errors: TA017 when no order has that id.
CREATE OR REPLACE FUNCTION api.get_order(p_id uuid)
RETURNS api."order"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_order api."order";
BEGIN
    found_order := order_resource(p_id);
    IF found_order.id IS NULL THEN
        PERFORM raise_refusal(refusal_of('order_not_found', p_id::text));
    END IF;
    IF found_order.status = 'expired' AND (SELECT status FROM orders WHERE id = p_id) = 'held' THEN
        PERFORM assert_session_limits();  -- it is about to lock
        PERFORM locked_order(p_id);  -- stores it expired, or finds it decided
        found_order := order_resource(p_id);
    END IF;
    RETURN found_order;
END;
$$;

-- api.confirm_order(p_id uuid) RETURNS api.order_confirmation
-- Buys every line of a held order in one transaction: a purchase per line
-- from its held tickets (apply_purchases: it never fails for lack of
-- tickets), every hold confirmed, the order confirmed. `created` is true
-- when this call bought; confirming an order bought before (at once, or
-- confirmed, even if cancelled since) returns it as it is now with created
-- false. Decided under the locks of all its lines' options: an order past
-- expires_at is expired, whatever was read before.
-- For psql: SELECT created, ("order").status FROM api.confirm_order('...');
-- Errors: TA001 when p_id is null; TA017 when no order has that id; TA018
--         when it expired (nothing is bought); TA019 when it was released;
--         TA008.
CREATE OR REPLACE FUNCTION api.confirm_order(p_id uuid)
RETURNS api.order_confirmation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    target orders;
    hold_ids uuid[];
    purchase_ids uuid[];
    options_before api.ticket_option[];  -- by line: its option as it was
BEGIN
    PERFORM assert_session_limits();
    target := locked_order(p_id);
    IF target.status IN ('confirmed', 'partially_cancelled', 'cancelled') THEN
        RETURN ROW(false, order_resource(p_id))::api.order_confirmation;
    ELSIF target.status = 'released' THEN
        PERFORM raise_refusal(refusal_of('order_released', p_id::text));
    ELSIF target.status = 'expired' THEN  -- lock_options stored it so if it was past expires_at
        PERFORM raise_refusal(refusal_of('order_expired', p_id::text, target.expires_at::text));
    END IF;
    hold_ids := ARRAY(SELECT l.hold_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line);
    options_before := ARRAY(SELECT get_ticket_option(l.ticket_option_id) FROM order_lines l WHERE l.order_id = p_id
                            ORDER BY l.line);
    purchase_ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, target.lines));
    -- Before the purchases, whose order_id names their line.
    UPDATE order_lines SET purchase_id = purchase_ids[line] WHERE order_id = p_id;
    PERFORM apply_purchases(purchase_ids, order_line_requests(target), array_fill(p_id, ARRAY[target.lines]),
                            p_from_held => true);
    UPDATE holds h SET status = 'confirmed', confirmed_at = decision_clock(),
                       purchase_id = (SELECT l.purchase_id FROM order_lines l WHERE l.order_id = p_id AND l.hold_id = h.id)
    WHERE h.id = ANY (hold_ids);
    UPDATE orders SET status = 'confirmed', confirmed_at = decision_clock() WHERE id = p_id;
    -- Events: the purchase.created (apply_purchases), the hold.confirmed, the options' sold_out if
    -- they are, then order.confirmed.
    PERFORM append_resource_events('hold.confirmed', hold_ids);
    PERFORM append_stock_events(o, get_ticket_option(o.id)) FROM unnest(options_before) AS o;
    PERFORM append_resource_events('order.confirmed', ARRAY[p_id]);
    RETURN ROW(true, order_resource(p_id))::api.order_confirmation;
END;
$$;

-- api.release_order(p_id uuid) RETURNS api."order"
-- Lets a held order go: every line's hold released (release_holds), its
-- tickets back on sale at once, the order released. Releasing a released or
-- expired order changes nothing and returns it.
-- Errors: TA001 when p_id is null; TA017 when no order has that id; TA020
--         when it is bought (cancel it instead); TA008.
CREATE OR REPLACE FUNCTION api.release_order(p_id uuid)
RETURNS api."order"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    target orders;
BEGIN
    PERFORM assert_session_limits();
    target := locked_order(p_id);
    IF target.status IN ('confirmed', 'partially_cancelled', 'cancelled') THEN
        PERFORM raise_refusal(refusal_of('order_bought', p_id::text));
    ELSIF target.status = 'held' THEN
        PERFORM release_holds(ARRAY(SELECT l.hold_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line));
        UPDATE orders SET status = 'released', released_at = decision_clock() WHERE id = p_id;
        PERFORM append_resource_events('order.released', ARRAY[p_id]);
    END IF;
    RETURN order_resource(p_id);
END;
$$;

-- api.cancel_order(p_id uuid) RETURNS api."order"
-- Admin. Cancels every active purchase of a bought order (cancel_purchases:
-- tickets voided, back on sale in their options and quotas) and marks the
-- order cancelled, in one transaction. Cancelling a cancelled order changes
-- nothing and returns it.
-- Errors: TA001 when p_id is null; TA017 when no order has that id; TA021
--         when it bought nothing (held: release it; released or expired); TA008.
CREATE OR REPLACE FUNCTION api.cancel_order(p_id uuid)
RETURNS api."order"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    target orders;
BEGIN
    PERFORM assert_session_limits();
    target := locked_order(p_id);
    IF target.status IN ('held', 'released', 'expired') THEN
        PERFORM raise_refusal(refusal_of('order_not_bought', p_id::text, target.status));
    END IF;
    PERFORM cancel_purchases(ARRAY(SELECT l.purchase_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line));
    PERFORM settle_cancelled_order(p_id);
    RETURN order_resource(p_id);
END;
$$;
