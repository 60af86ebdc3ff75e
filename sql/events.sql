-- Events: the transactional outbox (ticket_allocation.events, migration 0009)
-- and the feed over it. Functions that change state append their events in
-- their own transaction, so a rolled-back change leaves none. An event's data
-- is the resource exactly as the HTTP API returns it at that moment (JSON
-- names: a ticket option's `remaining` is `allocation`, see service/routes.py
-- JSON_NAMES; tests/api/test_events.py ties the two).
--
-- Catalogue (README "Events"): ticket_option.created, ticket_option.sold_out,
-- ticket_option.back_on_sale, purchase.created, purchase.cancelled, hold.created,
-- hold.confirmed, hold.released, hold.expired, order.created, order.confirmed,
-- order.released, order.expired, order.cancelled.

-- event_types() RETURNS text[]
-- The types an event may have; webhooks may subscribe to these.
CREATE OR REPLACE FUNCTION ticket_allocation.event_types()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY['ticket_option.created', 'ticket_option.sold_out', 'ticket_option.back_on_sale',
                 'purchase.created', 'purchase.cancelled',
                 'hold.created', 'hold.confirmed', 'hold.released', 'hold.expired',
                 'order.created', 'order.confirmed', 'order.released', 'order.expired', 'order.cancelled']
$$;

-- api_json(p_resource jsonb) RETURNS jsonb
-- A resource's JSON under the API's names: `remaining` is called `allocation`.
CREATE OR REPLACE FUNCTION ticket_allocation.api_json(p_resource jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE WHEN p_resource ? 'remaining'
                THEN p_resource - 'remaining' || jsonb_build_object('allocation', p_resource -> 'remaining')
                ELSE p_resource END
$$;

-- append_events(p_type text, p_data jsonb[]) RETURNS void
-- Appends one event of p_type per element of p_data (resources already as
-- JSON, see api_json), in one statement, in the calling transaction.
-- Timestamps inside p_data render in the caller's TimeZone: build them with
-- the helpers below, which pin UTC.
CREATE OR REPLACE FUNCTION ticket_allocation.append_events(p_type text, p_data jsonb[])
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    INSERT INTO events (type, data) SELECT p_type, d FROM unnest(p_data) WITH ORDINALITY AS u(d, n) ORDER BY n
$$;

-- append_ticket_option_events(p_type text, p_option api.ticket_option) RETURNS void
-- Appends a p_type event carrying the option as the API shows it.
CREATE OR REPLACE FUNCTION ticket_allocation.append_ticket_option_events(p_type text, p_option api.ticket_option)
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
    SELECT append_events(p_type, ARRAY[api_json(to_jsonb(p_option))])
$$;

-- append_stock_events(p_before api.ticket_option, p_after api.ticket_option) RETURNS void
-- After a change of one option's stock: ticket_option.sold_out when nothing is
-- left on sale nor held now and something was before; ticket_option.back_on_sale
-- when the option was sold out and now has tickets on sale. `held` counts when
-- the option type has it (holds); absent, nothing is held.
CREATE OR REPLACE FUNCTION ticket_allocation.append_stock_events(p_before api.ticket_option, p_after api.ticket_option)
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    WITH stock AS (
        SELECT p_before.remaining + coalesce((to_jsonb(p_before) ->> 'held')::integer, 0) AS before_total,
               p_after.remaining + coalesce((to_jsonb(p_after) ->> 'held')::integer, 0) AS after_total,
               p_before.remaining AS before_on_sale, p_after.remaining AS after_on_sale
    )
    SELECT append_ticket_option_events(
        CASE WHEN after_total = 0 AND before_total > 0 THEN 'ticket_option.sold_out'
             ELSE 'ticket_option.back_on_sale' END, p_after)
    FROM stock
    WHERE (after_total = 0 AND before_total > 0)
       OR (before_total = 0 AND before_on_sale = 0 AND after_on_sale > 0)
$$;

-- append_purchase_events(p_type text, p_purchase_ids uuid[], p_option_before api.ticket_option)
--     RETURNS void
-- Appends a p_type event per purchase (in array order, as the API shows each
-- now), then the stock events of their option (p_option_before: the option
-- before the change, under its lock). No purchases: nothing.
CREATE OR REPLACE FUNCTION ticket_allocation.append_purchase_events(
    p_type text, p_purchase_ids uuid[], p_option_before api.ticket_option)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    IF coalesce(cardinality(p_purchase_ids), 0) = 0 THEN
        RETURN;
    END IF;
    -- One primary-key lookup per purchase (purchase_resource), never a join of the
    -- receipts view: see the note above RETURN QUERY in api.purchase_tickets_batch.
    PERFORM append_events(p_type, array_agg(api_json(to_jsonb(purchase_resource(u.id))) ORDER BY u.n))
    FROM unnest(p_purchase_ids) WITH ORDINALITY AS u(id, n);
    PERFORM append_stock_events(p_option_before, get_ticket_option(p_option_before.id));
END;
$$;

-- append_sale_events(p_purchase_ids uuid[], p_option_ids uuid[], p_sold_out uuid[]) RETURNS void
-- After new purchases (apply_purchases): a purchase.created event per
-- purchase, in array order (p_option_ids[i]: the option of purchase i, each
-- option's purchases together), and right after an option's last purchase
-- its ticket_option.sold_out when it is in p_sold_out. Each run of
-- purchase events is one statement (a batch over many options is one).
CREATE OR REPLACE FUNCTION ticket_allocation.append_sale_events(
    p_purchase_ids uuid[], p_option_ids uuid[], p_sold_out uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    purchases_made constant integer := coalesce(cardinality(p_purchase_ids), 0);
    run jsonb[] := '{}'::jsonb[];  -- purchase events not appended yet
BEGIN
    FOR i IN 1 .. purchases_made LOOP
        -- One primary-key lookup per purchase (purchase_resource), never a join of the
        -- receipts view: see the note above RETURN QUERY in api.purchase_tickets_batch.
        run := run || api_json(to_jsonb(purchase_resource(p_purchase_ids[i])));
        IF p_option_ids[i] = ANY (p_sold_out) AND (i = purchases_made OR p_option_ids[i + 1] <> p_option_ids[i]) THEN
            PERFORM append_events('purchase.created', run);
            run := '{}'::jsonb[];
            PERFORM append_ticket_option_events('ticket_option.sold_out', get_ticket_option(p_option_ids[i]));
        END IF;
    END LOOP;
    IF cardinality(run) > 0 THEN
        PERFORM append_events('purchase.created', run);
    END IF;
END;
$$;

-- append_hold_events(p_type text, p_hold_ids uuid[]) RETURNS void
-- One `p_type` event per hold, in the array's order, each with the hold as
-- the API returns it now (hold_resource: one primary-key lookup each).
CREATE OR REPLACE FUNCTION ticket_allocation.append_hold_events(p_type text, p_hold_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    IF coalesce(cardinality(p_hold_ids), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM append_events(p_type, array_agg(api_json(to_jsonb(hold_resource(h.id))) ORDER BY h.n))
    FROM unnest(p_hold_ids) WITH ORDINALITY AS h(id, n);
END;
$$;

-- append_order_events(p_type text, p_order_ids uuid[]) RETURNS void
-- One `p_type` event per order, in the array's order, each with the order as
-- the API returns it now (order_resource, sql/orders.sql: its lines' purchases
-- and holds by primary key).
CREATE OR REPLACE FUNCTION ticket_allocation.append_order_events(p_type text, p_order_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    IF coalesce(cardinality(p_order_ids), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM append_events(p_type, array_agg(api_json(to_jsonb(order_resource(o.id))) ORDER BY o.n))
    FROM unnest(p_order_ids) WITH ORDINALITY AS o(id, n);
END;
$$;

-- event_cursor(p_xid xid8, p_id bigint) RETURNS text
-- The feed position after the event (p_xid, p_id), as callers pass it back.
CREATE OR REPLACE FUNCTION ticket_allocation.event_cursor(p_xid xid8, p_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT p_xid::text || '-' || p_id::text
$$;

-- api.events_after(p_cursor text DEFAULT NULL, p_limit integer DEFAULT 100, p_types text[] DEFAULT NULL)
--     RETURNS SETOF api.event
-- Admin. The feed: up to p_limit events after p_cursor (null or '0-0': from
-- the oldest kept), in feed order (writing transaction, then id), only of
-- p_types when given; each row carries the cursor to pass back to continue
-- after it. The feed never skips: it shows only events of transactions older
-- than every transaction still running (pg_snapshot_xmin), and any
-- transaction that commits later has an xid at least that horizon, so its
-- events sort after every event already shown. A long transaction anywhere on
-- the server delays the feed (never reorders it).
-- Errors: TA001 when p_limit is outside 1..1000, p_cursor is malformed, or a
--         type is not in the catalogue.
CREATE OR REPLACE FUNCTION api.events_after(
    p_cursor text DEFAULT NULL, p_limit integer DEFAULT 100, p_types text[] DEFAULT NULL)
RETURNS SETOF api.event
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
SET enable_seqscan = off    -- ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the table was small (README: Plan stability)
ROWS 100
AS $$
DECLARE
    horizon constant xid8 := pg_snapshot_xmin(pg_current_snapshot());
    after_xid xid8 := '0'::xid8;
    after_id bigint := 0::bigint;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 1000');
    END IF;
    IF p_cursor IS NOT NULL THEN
        IF p_cursor !~ '^[0-9]{1,20}-[0-9]{1,19}$' THEN
            PERFORM raise_invalid_argument('after', 'is not a cursor of this feed');
        END IF;
        after_xid := split_part(p_cursor, '-', 1)::xid8;
        after_id := split_part(p_cursor, '-', 2)::bigint;
    END IF;
    IF p_types IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.type, e.occurred_at, e.data, event_cursor(e.xid, e.id)
            FROM events e
            WHERE (e.xid, e.id) > (after_xid, after_id) AND e.xid < horizon
            ORDER BY e.xid, e.id
            LIMIT p_limit;
        RETURN;
    END IF;
    IF NOT p_types <@ event_types() OR cardinality(p_types) = 0 THEN
        PERFORM raise_invalid_argument('types', format('must be some of: %s', array_to_string(event_types(), ', ')));
    END IF;
    -- Per type, its next p_limit events (index events_by_type), merged.
    RETURN QUERY
        SELECT e.id, e.type, e.occurred_at, e.data, event_cursor(e.xid, e.id)
        FROM (SELECT DISTINCT t FROM unnest(p_types) AS t) AS wanted
        CROSS JOIN LATERAL (
            SELECT * FROM events e
            -- One range of events_by_type, written on all its columns: a generic plan
            -- would otherwise walk events_feed_order filtering by type (all of it, for a rare type).
            WHERE (e.type, e.xid, e.id) > (wanted.t, after_xid, after_id) AND (e.type, e.xid, e.id) < (wanted.t, horizon, 0)
            ORDER BY e.type, e.xid, e.id
            LIMIT p_limit
        ) AS e
        ORDER BY e.xid, e.id
        LIMIT p_limit;
END;
$$;

-- api.purge_old_events(p_chunk integer DEFAULT 10000) RETURNS integer
-- Admin. Deletes up to p_chunk of the oldest events (feed order) older than
-- settings.event_retention and returns how many; it reads at most p_chunk
-- events (the oldest, through the feed index), so the server calls it again,
-- each call its own transaction, while it returns p_chunk. Deleted by row
-- address (= ANY of an array of ctids: no join whose plan could scan the
-- table, as in purge_expired_idempotency_keys).
-- Errors: TA001 when p_chunk is outside 1..100000.
CREATE OR REPLACE FUNCTION api.purge_old_events(p_chunk integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the table was small (README: Plan stability)
AS $$
DECLARE
    purged integer;
BEGIN
    IF p_chunk IS NULL OR p_chunk NOT BETWEEN 1 AND 100000 THEN
        PERFORM raise_invalid_argument('chunk', 'must be a whole number from 1 to 100000');
    END IF;
    DELETE FROM events
    WHERE ctid = ANY (ARRAY(
        SELECT oldest.ctid
        FROM (SELECT e.ctid, e.occurred_at FROM events e
              WHERE (e.xid, e.id) > ('0'::xid8, 0)
              ORDER BY e.xid, e.id LIMIT p_chunk) AS oldest
        WHERE oldest.occurred_at < now() - (SELECT event_retention FROM settings)));
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END;
$$;
