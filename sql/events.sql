-- Events: the transactional outbox (ticket_allocation.events, migration 0009)
-- and the feed over it. Functions that change state append their events in
-- their own transaction, so a rolled-back change leaves none. An event's data
-- is the resource exactly as the HTTP API returns it at that moment (JSON
-- names: a ticket option's `remaining` is `allocation`, see service/routes.py
-- JSON_NAMES; tests/api/test_webhooks.py, test_the_feed_over_http, ties the two).

-- event_types() RETURNS text[]
-- The catalogue: the types an event may have; webhooks may subscribe to these.
-- Defined here only; the README's table and service/openapi.yaml (Event.type)
-- repeat it, and tests/test_defaults.py ties them.
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

-- event_data_bytes(p_data jsonb) RETURNS integer
-- The size of an event's data as the feed sends it (its JSON text, in bytes):
-- what events.data_bytes holds, and what a feed page's budget counts.
CREATE OR REPLACE FUNCTION ticket_allocation.event_data_bytes(p_data jsonb)
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT octet_length(p_data::text)
$$;

-- append_events(p_type text, p_data jsonb[]) RETURNS void
-- Appends one event of p_type per element of p_data (resources already as
-- JSON, see api_json), in one statement, in the calling transaction, each
-- with its size (event_data_bytes).
-- Timestamps inside p_data render in the caller's TimeZone: build them with
-- the helpers below, which pin UTC.
CREATE OR REPLACE FUNCTION ticket_allocation.append_events(p_type text, p_data jsonb[])
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    INSERT INTO events (type, data, data_bytes)
    SELECT p_type, d, event_data_bytes(d) FROM unnest(p_data) WITH ORDINALITY AS u(d, n) ORDER BY n
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
-- when the option was sold out and now has tickets on sale. Held tickets are
-- stock: holding the last ones sells nothing out.
CREATE OR REPLACE FUNCTION ticket_allocation.append_stock_events(p_before api.ticket_option, p_after api.ticket_option)
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    WITH stock AS (
        SELECT p_before.remaining + p_before.held AS before_total, p_after.remaining + p_after.held AS after_total,
               p_before.remaining AS before_on_sale, p_after.remaining AS after_on_sale
    )
    SELECT append_ticket_option_events(
        CASE WHEN after_total = 0 AND before_total > 0 THEN 'ticket_option.sold_out'
             ELSE 'ticket_option.back_on_sale' END, p_after)
    FROM stock
    WHERE (after_total = 0 AND before_total > 0)
       OR (before_total = 0 AND before_on_sale = 0 AND after_on_sale > 0)
$$;

-- append_resource_events(p_type text, p_ids uuid[]) RETURNS void
-- One p_type event per id, in the array's order, each carrying the resource
-- the type is about as the API returns it now: purchase.* a purchase
-- (purchase_resource), hold.* a hold (hold_resource), order.* an order
-- (order_resource, sql/orders.sql: its lines' purchases and holds by primary
-- key). One primary-key lookup per id, never a join of the receipts view:
-- see the note above RETURN QUERY in api.purchase_tickets_batch. One
-- statement for all of them; no ids: nothing. (Another type has no resource
-- here: its null data is refused by events.data's NOT NULL.)
CREATE OR REPLACE FUNCTION ticket_allocation.append_resource_events(p_type text, p_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    IF coalesce(cardinality(p_ids), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM append_events(p_type, array_agg(api_json(CASE split_part(p_type, '.', 1)
                                                         WHEN 'purchase' THEN to_jsonb(purchase_resource(r.id))
                                                         WHEN 'hold' THEN to_jsonb(hold_resource(r.id))
                                                         WHEN 'order' THEN to_jsonb(order_resource(r.id))
                                                     END) ORDER BY r.n))
    FROM unnest(p_ids) WITH ORDINALITY AS r (id, n);
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
AS $$
DECLARE
    purchases_made constant integer := coalesce(cardinality(p_purchase_ids), 0);
    run_start integer := 1;  -- the first purchase whose event is not appended yet
BEGIN
    FOR i IN 1 .. purchases_made LOOP
        IF p_option_ids[i] = ANY (p_sold_out) AND (i = purchases_made OR p_option_ids[i + 1] <> p_option_ids[i]) THEN
            PERFORM append_resource_events('purchase.created', p_purchase_ids[run_start:i]);
            run_start := i + 1;
            PERFORM append_ticket_option_events('ticket_option.sold_out', get_ticket_option(p_option_ids[i]));
        END IF;
    END LOOP;
    PERFORM append_resource_events('purchase.created', p_purchase_ids[run_start:purchases_made]);
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

-- events_page_byte_budget() RETURNS integer
-- The bytes of event data a page of the feed carries at most, but for its
-- last event: a purchase event carries up to 1,000 ticket ids (about 40 kB),
-- so 1,000 of them would otherwise be 40 MB for one request.
CREATE OR REPLACE FUNCTION ticket_allocation.events_page_byte_budget()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT 1048576
$$;

-- feed_position(p_cursor text, p_horizon xid8, OUT after_xid xid8, OUT after_id bigint)
-- Where a cursor of the feed points: '0-0' (before every event), or after
-- the event (xid, id) it names, which must be one the feed can have given
-- out: its xid one the server gives transactions (3 and up), and below
-- p_horizon (the caller's), since a cursor is given out under a horizon
-- (pg_snapshot_xmin) above its xid and the horizon only rises; its id one
-- the events' sequence handed out. Anything else
-- is refused rather than paged: a cursor ahead of what is committed would
-- answer empty pages, and then skip whatever commits below it.
-- Errors: TA001 (after) when p_cursor is none of those.
CREATE OR REPLACE FUNCTION ticket_allocation.feed_position(
    p_cursor text, p_horizon xid8, OUT after_xid xid8, OUT after_id bigint)
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    xid_part numeric;
    id_part numeric;
BEGIN
    IF p_cursor ~ '^[0-9]{1,20}-[0-9]{1,19}$' THEN
        -- As numbers first: digits beyond xid8 or bigint are refused like any other cursor.
        xid_part := split_part(p_cursor, '-', 1)::numeric;
        id_part := split_part(p_cursor, '-', 2)::numeric;
        IF (xid_part = 0 AND id_part = 0)
           OR (xid_part BETWEEN 3 AND p_horizon::text::numeric - 1 AND id_part BETWEEN 1 AND last_event_id()) THEN
            after_xid := xid_part::text::xid8;
            after_id := id_part::bigint;
            RETURN;
        END IF;
    END IF;
    PERFORM raise_invalid_argument('after', 'is not a cursor of this feed; pass next_cursor (or an event''s cursor) unchanged, or none to start');
END;
$$;

-- last_event_id() RETURNS bigint
-- The last id the events' sequence handed out (0 before the first).
CREATE OR REPLACE FUNCTION ticket_allocation.last_event_id()
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq
$$;

-- api.events_after(p_cursor text DEFAULT NULL, p_limit integer DEFAULT 100, p_types text[] DEFAULT NULL)
--     RETURNS SETOF api.event
-- Admin. The feed: up to p_limit events after p_cursor (null or '0-0': from
-- the oldest kept), in feed order (writing transaction, then id), only of
-- p_types when given, and no more than fit in events_page_byte_budget() bytes
-- of data (a page ends with the event that reaches it; a page that is not
-- empty has at least one event): a page shorter than p_limit is not the end,
-- only an empty one is. Each row carries the cursor to pass back to continue
-- after it. The feed never skips: it shows only events of transactions older
-- than every transaction still running (pg_snapshot_xmin), and any
-- transaction that commits later has an xid at least that horizon, so its
-- events sort after every event already shown. A long transaction anywhere on
-- the server delays the feed (never reorders it).
-- Errors: TA001 when p_limit is outside 1..1000, p_cursor is not a cursor of
--         this feed (feed_position), or a type is not in the catalogue.
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
    candidates bigint[];  -- the next p_limit events' ids, in feed order
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 1000');
    END IF;
    IF p_cursor IS NOT NULL THEN
        SELECT f.after_xid, f.after_id INTO after_xid, after_id FROM feed_position(p_cursor, horizon) AS f;
    END IF;
    IF p_types IS NULL THEN
        candidates := ARRAY(
            SELECT e.id FROM events e
            WHERE (e.xid, e.id) > (after_xid, after_id) AND e.xid < horizon
            ORDER BY e.xid, e.id
            LIMIT p_limit);
    ELSE
        IF NOT p_types <@ event_types() OR cardinality(p_types) = 0 THEN
            PERFORM raise_invalid_argument('types', format('must be some of: %s', array_to_string(event_types(), ', ')));
        END IF;
        -- Per type, its next p_limit events (index events_by_type), merged.
        candidates := ARRAY(
            SELECT e.id
            FROM (SELECT DISTINCT t FROM unnest(p_types) AS t) AS wanted
            CROSS JOIN LATERAL (
                SELECT e.xid, e.id FROM events e
                -- One range of events_by_type, written on all its columns: a generic plan
                -- would otherwise walk events_feed_order filtering by type (all of it, for a rare type).
                WHERE (e.type, e.xid, e.id) > (wanted.t, after_xid, after_id) AND (e.type, e.xid, e.id) < (wanted.t, horizon, 0)
                ORDER BY e.type, e.xid, e.id
                LIMIT p_limit
            ) AS e
            ORDER BY e.xid, e.id
            LIMIT p_limit);
    END IF;
    -- The candidates, one primary-key lookup each, up to the event that brings the page to the
    -- byte budget (events written before data_bytes existed are measured here).
    RETURN QUERY
        SELECT page.id, page.type, page.occurred_at, page.data, event_cursor(page.xid, page.id)
        FROM (SELECT e.*, c.n,
                     sum(e.bytes) OVER (ORDER BY c.n) - e.bytes AS bytes_before
              FROM unnest(candidates) WITH ORDINALITY AS c (id, n)
              CROSS JOIN LATERAL (
                  SELECT ev.*, coalesce(ev.data_bytes, event_data_bytes(ev.data)) AS bytes
                  FROM events ev WHERE ev.id = c.id) AS e) AS page
        WHERE page.bytes_before < events_page_byte_budget()
        ORDER BY page.n;
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
        WHERE oldest.occurred_at < now() - (SELECT event_retention FROM settings WHERE singleton)));
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END;
$$;
