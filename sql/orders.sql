-- Orders: many lines (an option and a quantity each, each option at most
-- once), one outcome. An order is placed as a whole or not at all, decided
-- by the path of purchases and holds (sql/purchases.sql: lock_options, then
-- decide_in_order with its lines as one all-or-nothing group, then
-- apply_purchases or apply_holds), and refused with every failing line
-- (order_refused in sql/errors.sql).
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
        PERFORM raise_refusal(order_not_found(p_id));
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
        SELECT count(*) FROM order_lines l
        WHERE l.order_id = p_order_id AND (SELECT p.status FROM purchases p WHERE p.id = l.purchase_id) = 'active');
BEGIN
    UPDATE orders
    SET status = CASE WHEN active_lines = 0 THEN 'cancelled' ELSE 'partially_cancelled' END,
        cancelled_at = CASE WHEN active_lines = 0 THEN now() END
    WHERE id = p_order_id AND status IN ('confirmed', 'partially_cancelled')
      AND status <> CASE WHEN active_lines = 0 THEN 'cancelled' ELSE 'partially_cancelled' END;
    IF FOUND AND active_lines = 0 THEN
        PERFORM append_order_events('order.cancelled', ARRAY[p_order_id]);  -- sql/events.sql
    END IF;
END;
$$;

-- api.place_order(p_user_id uuid, p_lines api.order_line[], p_ttl interval DEFAULT NULL,
--                 p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL)
--     RETURNS api."order"
-- Places an order for p_user_id: every line (its option, its quantity) or
-- nothing. Without p_ttl the lines are bought at once (one purchase each,
-- the order `confirmed`); with it they are held (one hold each, the order
-- `held`) until one expires_at for all: decision_clock() + p_ttl, or the
-- shortest max_hold_seconds of the lines' options when that is shorter. Each line is decided as a purchase (or
-- hold) of its own would be, in line order, counting what earlier lines
-- took: what its option has on sale, what each quota of it has left, the
-- option's max_per_user. If any line cannot be had, nothing is bought or
-- held and the order is refused with every failing line (order_refused:
-- the SQLSTATE of the first, DETAIL listing all). With p_idempotency_key
-- (scoped by p_caller and p_user_id), the same key and request again return
-- the first order (as it is now) and change nothing.
-- Errors: TA001 when p_user_id is null, there are not 1 to 50 lines, p_ttl
--         is outside 1 s..1 day, or the key is malformed; an order refusal
--         (COLUMN lines) when lines are invalid (TA001: null option,
--         quantity outside 1..1000, an option on two lines) or cannot be had
--         (TA002, TA003, TA007, TA014); TA005, TA006 (keys); TA008.
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
    lines constant integer := coalesce(cardinality(p_lines), 0);
    requests api.ticket_request[] := '{}'::api.ticket_request[];  -- by line
    refusals api.refusal[] := '{}'::api.refusal[];                -- by line
    scope constant text := order_idempotency_scope(p_caller, p_user_id);
    asked constant jsonb := jsonb_build_object('place_order', jsonb_build_object(
        'user_id', p_user_id, 'lines', to_jsonb(p_lines), 'ttl', p_ttl));
    claim record;
    new_id constant uuid := gen_random_uuid();
    line_ids uuid[];  -- by line: its new purchase or hold
    held constant boolean := p_ttl IS NOT NULL;
    ttl interval;
BEGIN
    PERFORM assert_session_limits();
    IF p_user_id IS NULL THEN
        PERFORM raise_invalid_argument('user_id', 'must not be null');
    ELSIF lines NOT BETWEEN 1 AND 50 THEN
        PERFORM raise_invalid_argument('lines', 'must be 1 to 50 lines');
    ELSIF held AND (ttl_refusal(p_ttl)).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(ttl_refusal(p_ttl));
    END IF;
    FOR i IN 1 .. lines LOOP
        requests[i] := ROW((p_lines[i]).ticket_option_id, p_user_id, (p_lines[i]).quantity, NULL, p_caller, p_ttl);
        refusals[i] := coalesce(
            request_refusal(requests[i]),
            (SELECT invalid_argument('ticket_option_id', format('is on line %s already: an order names an option once', j))
             FROM generate_series(1, i - 1) AS j
             WHERE (p_lines[j]).ticket_option_id = (p_lines[i]).ticket_option_id
             LIMIT 1));
    END LOOP;
    IF (order_refused(refusals, lines)).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(order_refused(refusals, lines));
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO claim FROM claim_idempotency_key(scope, p_idempotency_key, asked);
        IF (claim.refused).sqlstate IS NOT NULL THEN
            PERFORM raise_refusal(claim.refused);
        ELSIF (claim.earlier).order_id IS NOT NULL THEN
            RETURN order_resource((claim.earlier).order_id);
        END IF;
    END IF;

    PERFORM lock_options(ARRAY(SELECT r.ticket_option_id FROM unnest(requests) AS r));
    SELECT d.refusals INTO refusals
    FROM decide_in_order(requests, array_fill(true, ARRAY[lines]), array_fill(1, ARRAY[lines])) AS d;
    IF (order_refused(refusals, lines)).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(order_refused(refusals, lines));
    END IF;

    line_ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, lines));
    IF held THEN  -- the lines expire together: at the shortest bound of their options' holds
        ttl := least(p_ttl, (SELECT make_interval(secs => min(o.max_hold_seconds)) FROM ticket_options o
                             WHERE o.id = ANY (ARRAY(SELECT r.ticket_option_id FROM unnest(requests) AS r))));
        FOR i IN 1 .. lines LOOP
            requests[i].ttl := ttl;
        END LOOP;
    END IF;
    INSERT INTO orders (id, user_id, status, lines, created_at, expires_at, confirmed_at)
    VALUES (new_id, p_user_id, CASE WHEN held THEN 'held' ELSE 'confirmed' END, lines, decision_clock(),
            decision_clock() + ttl, CASE WHEN NOT held THEN decision_clock() END);
    -- Before the purchases and holds, whose order_id names their line.
    INSERT INTO order_lines (order_id, line, ticket_option_id, quantity, hold_id, purchase_id)
    SELECT new_id, r.ordinality, r.ticket_option_id, r.quantity,
           CASE WHEN held THEN line_ids[r.ordinality] END, CASE WHEN NOT held THEN line_ids[r.ordinality] END
    FROM unnest(requests) WITH ORDINALITY AS r;
    IF held THEN
        PERFORM apply_holds(line_ids, requests, new_id);
    ELSE
        PERFORM apply_purchases(line_ids, requests, new_id);
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM remember_idempotency_keys(ARRAY[scope], ARRAY[p_idempotency_key], ARRAY[asked], 'order', ARRAY[new_id]);
    END IF;
    PERFORM append_order_events('order.created', ARRAY[new_id]);  -- sql/events.sql
    RETURN order_resource(new_id);
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
        PERFORM raise_refusal(order_not_found(p_id));
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
        PERFORM raise_refusal(order_released(p_id));
    ELSIF target.status = 'expired' THEN  -- lock_options stored it so if it was past expires_at
        PERFORM raise_refusal(order_expired(p_id, target.expires_at));
    END IF;
    hold_ids := ARRAY(SELECT l.hold_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line);
    options_before := ARRAY(SELECT get_ticket_option(l.ticket_option_id) FROM order_lines l WHERE l.order_id = p_id
                            ORDER BY l.line);
    purchase_ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, target.lines));
    -- Before the purchases, whose order_id names their line.
    UPDATE order_lines SET purchase_id = purchase_ids[line] WHERE order_id = p_id;
    PERFORM apply_purchases(purchase_ids, order_line_requests(target), p_id, p_from_held => true);
    UPDATE holds h SET status = 'confirmed', confirmed_at = decision_clock(),
                       purchase_id = (SELECT l.purchase_id FROM order_lines l WHERE l.order_id = p_id AND l.hold_id = h.id)
    WHERE h.id = ANY (hold_ids);
    UPDATE orders SET status = 'confirmed', confirmed_at = decision_clock() WHERE id = p_id;
    -- Events: the purchase.created (apply_purchases), the hold.confirmed, the options' sold_out if
    -- they are, then order.confirmed.
    PERFORM append_hold_events('hold.confirmed', hold_ids);
    PERFORM append_stock_events(o, get_ticket_option(o.id)) FROM unnest(options_before) AS o;
    PERFORM append_order_events('order.confirmed', ARRAY[p_id]);
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
        PERFORM raise_refusal(order_bought(p_id));
    ELSIF target.status = 'held' THEN
        PERFORM release_holds(ARRAY(SELECT l.hold_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line));
        UPDATE orders SET status = 'released', released_at = decision_clock() WHERE id = p_id;
        PERFORM append_order_events('order.released', ARRAY[p_id]);
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
        PERFORM raise_refusal(order_not_bought(p_id, target.status));
    END IF;
    PERFORM cancel_purchases(ARRAY(SELECT l.purchase_id FROM order_lines l WHERE l.order_id = p_id ORDER BY l.line));
    PERFORM settle_cancelled_order(p_id);
    RETURN order_resource(p_id);
END;
$$;
