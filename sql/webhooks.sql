-- Webhooks: subscriptions to the event feed (sql/events.sql) and the
-- bookkeeping of their delivery. The HTTP service delivers (service/webhooks.py);
-- the rules of delivery live here: which event a subscription gets next (feed
-- order, one at a time, so a failing event holds back the later ones of its
-- subscription only), who may send it (a lease, claimed FOR UPDATE SKIP
-- LOCKED, so workers of any number of instances never send one attempt
-- twice), and what an answer does (2xx: next event; 410: disabled; else a
-- retry after an exponential, jittered delay, for webhook_give_up_after).

-- webhook_resource(p_hook webhooks) RETURNS api.webhook
CREATE OR REPLACE FUNCTION ticket_allocation.webhook_resource(p_hook ticket_allocation.webhooks)
RETURNS api.webhook
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW(p_hook.id, p_hook.url, p_hook.types, p_hook.description, p_hook.enabled, p_hook.disabled_reason,
               p_hook.created_at)::api.webhook
$$;

-- api.create_webhook(p_url text, p_types text[] DEFAULT NULL, p_description text DEFAULT '')
--     RETURNS api.created_webhook
-- Admin. Subscribes p_url to the events of p_types (null: all) committed from
-- now on, with a new signing secret (whsec_ + base64 of 32 random bytes from
-- gen_random_uuid's strong generator), returned here and never again.
-- The URL must have the shape of webhook_url_problem (migrations/0014_webhook_fairness.sql): http(s),
-- no credentials, a well-formed host and port. Its addresses are the service's
-- to check (WEBHOOK_ALLOWED_NETWORKS): over HTTP at registration, and for
-- every subscription, however registered, at every delivery, so a psql caller
-- may register http://10.0.0.1/ but nothing is ever sent there unless allowed.
-- Errors: TA001 when the url breaks that rule (the message says how), a type is
--         not in the catalogue, types is empty, or description is over 500 characters.
CREATE OR REPLACE FUNCTION api.create_webhook(p_url text, p_types text[] DEFAULT NULL, p_description text DEFAULT '')
RETURNS api.created_webhook
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    created webhooks;
    secret text;
BEGIN
    IF p_url IS NULL THEN
        PERFORM raise_invalid_argument('url', 'must be an http or https URL');
    ELSIF webhook_url_problem(p_url) IS NOT NULL THEN  -- see migrations/0014_webhook_fairness.sql
        PERFORM raise_invalid_argument('url', webhook_url_problem(p_url));
    END IF;
    IF p_types IS NOT NULL AND (cardinality(p_types) = 0 OR NOT p_types <@ event_types()
                                OR array_position(p_types, NULL) IS NOT NULL) THEN
        PERFORM raise_invalid_argument('types', format('must be some of: %s', array_to_string(event_types(), ', ')));
    END IF;
    IF p_description IS NULL OR char_length(p_description) > 500 THEN
        PERFORM raise_invalid_argument('description', 'must be a string of at most 500 characters');
    END IF;
    -- From the feed's horizon on: every event not yet visible in the feed.
    INSERT INTO webhooks (url, types, description, cursor_xid)
    VALUES (p_url, (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(p_types) AS t), p_description,
            pg_snapshot_xmin(pg_current_snapshot()))
    RETURNING * INTO created;
    secret := 'whsec_' || encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64');
    INSERT INTO webhook_secrets (webhook_id, secret) VALUES (created.id, secret);
    RETURN ROW(created.id, created.url, created.types, created.description, created.enabled, created.disabled_reason,
               created.created_at, secret)::api.created_webhook;
END;
$$;

-- api.get_webhook(p_id uuid) RETURNS api.webhook
-- Admin. The subscription (without its secret).
-- Errors: TA013 when no webhook has that id.
CREATE OR REPLACE FUNCTION api.get_webhook(p_id uuid)
RETURNS api.webhook
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    hook webhooks;
BEGIN
    SELECT * INTO hook FROM webhooks WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('webhook_not_found', p_id::text));
    END IF;
    RETURN webhook_resource(hook);
END;
$$;

-- api.list_webhooks() RETURNS SETOF api.webhook
-- Admin. Every subscription, oldest first (a handful per deployment: no paging).
CREATE OR REPLACE FUNCTION api.list_webhooks()
RETURNS SETOF api.webhook
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
ROWS 10
AS $$
    SELECT webhook_resource(w) FROM webhooks w ORDER BY w.created_at, w.id
$$;

-- api.delete_webhook(p_id uuid) RETURNS api.webhook
-- Admin. Ends the subscription (its secret and attempts go with it) and returns it as it was.
-- Errors: TA013 when no webhook has that id.
CREATE OR REPLACE FUNCTION api.delete_webhook(p_id uuid)
RETURNS api.webhook
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    hook webhooks;
BEGIN
    DELETE FROM webhooks WHERE id = p_id RETURNING * INTO hook;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('webhook_not_found', p_id::text));
    END IF;
    RETURN webhook_resource(hook);
END;
$$;

-- api.list_webhook_deliveries(p_id uuid, p_limit integer DEFAULT 100) RETURNS SETOF api.webhook_delivery
-- Admin. The subscription's latest p_limit delivery attempts, newest first;
-- outcome null: in flight, or abandoned by a worker that stopped (retried).
-- Errors: TA001 when p_limit is outside 1..1000; TA013 when no webhook has that id.
CREATE OR REPLACE FUNCTION api.list_webhook_deliveries(p_id uuid, p_limit integer DEFAULT 100)
RETURNS SETOF api.webhook_delivery
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
ROWS 100
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 1000');
    END IF;
    PERFORM get_webhook(p_id);  -- TA013
    RETURN QUERY
        SELECT a.id, a.event_id, a.attempt, a.started_at, a.finished_at, a.status_code, a.outcome, a.error
        FROM webhook_attempts a
        WHERE a.webhook_id = p_id
        ORDER BY a.id DESC
        LIMIT p_limit;
END;
$$;

-- next_event_for(p_hook webhooks, p_horizon xid8) RETURNS events
-- The first event after the subscription's cursor, of its types, below the
-- feed horizon (see api.events_after); null when there is none yet.
CREATE OR REPLACE FUNCTION ticket_allocation.next_event_for(p_hook ticket_allocation.webhooks, p_horizon xid8)
RETURNS ticket_allocation.events
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the table was small (README: Plan stability)
AS $$
DECLARE
    found_event events;
BEGIN
    IF p_hook.types IS NULL THEN
        SELECT * INTO found_event FROM events e
        WHERE (e.xid, e.id) > (p_hook.cursor_xid, p_hook.cursor_id) AND e.xid < p_horizon
        ORDER BY e.xid, e.id LIMIT 1;
    ELSE
        SELECT e.* INTO found_event
        FROM unnest(p_hook.types) AS t
        CROSS JOIN LATERAL (
            SELECT * FROM events e
            -- One range of events_by_type (see api.events_after).
            WHERE (e.type, e.xid, e.id) > (t, p_hook.cursor_xid, p_hook.cursor_id) AND (e.type, e.xid, e.id) < (t, p_horizon, 0)
            ORDER BY e.type, e.xid, e.id LIMIT 1) AS e
        ORDER BY e.xid, e.id LIMIT 1;
    END IF;
    RETURN found_event;
END;
$$;

-- api.claim_webhook_deliveries(p_limit integer, p_lease interval) RETURNS SETOF api.claimed_delivery
-- Admin (delivery workers). Claims up to p_limit attempts, one per due
-- subscription with an event to send (enabled, next_attempt_at passed, no
-- attempt in flight: no running lease), the longest due first, skipping those
-- another worker is claiming. Each is recorded and leased for p_lease: until
-- the lease runs out nobody else sends it; a worker that dies leaves it to be
-- claimed again then. So a subscription never has two attempts in flight (one
-- whose receiver hangs takes at most one of a worker's slots), and
-- subscriptions with nothing to send never use up p_limit (it reads each due
-- subscription until p_limit are found: a handful per deployment). The body is
-- the JSON the receiver gets: {"id", "type", "occurred_at", "data"}.
-- Errors: TA001 when p_limit is outside 1..100 or p_lease is not positive.
CREATE OR REPLACE FUNCTION api.claim_webhook_deliveries(p_limit integer, p_lease interval)
RETURNS SETOF api.claimed_delivery
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
SET TimeZone = 'UTC'
ROWS 10
AS $$
DECLARE
    horizon constant xid8 := pg_snapshot_xmin(pg_current_snapshot());
    hook webhooks;
    next_event events;
    attempt_id bigint;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 100');
    END IF;
    IF p_lease IS NULL OR p_lease <= '0' THEN
        PERFORM raise_invalid_argument('lease', 'must be a positive interval');
    END IF;
    FOR hook IN
        SELECT * FROM webhooks w
        WHERE w.enabled AND w.next_attempt_at <= now() AND (w.leased_until IS NULL OR w.leased_until <= now())
          AND (w.pending_event_id IS NOT NULL OR (next_event_for(w, horizon)).id IS NOT NULL)
        ORDER BY w.next_attempt_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        IF hook.pending_event_id IS NOT NULL THEN
            SELECT * INTO next_event FROM events WHERE id = hook.pending_event_id;
        ELSE
            next_event := next_event_for(hook, horizon);
        END IF;
        IF next_event.id IS NULL THEN  -- its pending event was purged (retention): on to the next one
            UPDATE webhooks SET next_attempt_at = now(), pending_event_id = NULL WHERE id = hook.id;
            CONTINUE;
        END IF;
        UPDATE webhooks
        SET pending_event_id = next_event.id, attempts = attempts + 1, leased_until = now() + p_lease
        WHERE id = hook.id;
        INSERT INTO webhook_attempts (webhook_id, event_id, attempt)
        VALUES (hook.id, next_event.id, hook.attempts + 1)
        RETURNING id INTO attempt_id;
        RETURN NEXT ROW(attempt_id, hook.id, hook.url, (SELECT s.secret FROM webhook_secrets s WHERE s.webhook_id = hook.id),
                        next_event.id, hook.attempts + 1,
                        jsonb_build_object('id', next_event.id, 'type', next_event.type,
                                           'occurred_at', next_event.occurred_at, 'data', next_event.data)
                   )::api.claimed_delivery;
    END LOOP;
END;
$$;

-- retry_delay(p_attempts integer) RETURNS interval
-- How long to wait after the p_attempts-th failed attempt: webhook_retry_base
-- doubled per attempt, at most webhook_retry_max, times a random factor in
-- [0.5, 1) so that subscriptions failing together do not retry in step.
CREATE OR REPLACE FUNCTION ticket_allocation.retry_delay(p_attempts integer)
RETURNS interval
LANGUAGE sql
VOLATILE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT least(s.webhook_retry_base * power(2, least(greatest(p_attempts, 1) - 1, 30)), s.webhook_retry_max)
           * (0.5 + random() / 2)
    FROM settings s WHERE s.singleton
$$;

-- api.finish_webhook_attempt(p_attempt_id bigint, p_status_code integer, p_error text DEFAULT NULL)
--     RETURNS text
-- Admin (delivery workers). Records how attempt p_attempt_id ended: the
-- receiver's status (null when there was no answer: p_error says why) and
-- returns its outcome: delivered (2xx; the subscription moves to its next
-- event), gone (410; the subscription is disabled), failed (retried after
-- retry_delay; disabled once its event has failed for webhook_give_up_after).
-- An attempt whose lease another attempt took over is only recorded.
-- Errors: TA001 when p_attempt_id is unknown or already finished.
CREATE OR REPLACE FUNCTION api.finish_webhook_attempt(p_attempt_id bigint, p_status_code integer, p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    finished webhook_attempts;
    hook webhooks;
    result constant text := CASE WHEN p_status_code BETWEEN 200 AND 299 THEN 'delivered'
                                 WHEN p_status_code = 410 THEN 'gone' ELSE 'failed' END;
BEGIN
    UPDATE webhook_attempts
    SET finished_at = now(), status_code = p_status_code, outcome = result, error = left(p_error, 500)
    WHERE id = p_attempt_id AND finished_at IS NULL
    RETURNING * INTO finished;
    IF NOT FOUND THEN
        PERFORM raise_invalid_argument('attempt_id', 'is not an attempt in flight');
    END IF;
    SELECT * INTO hook FROM webhooks WHERE id = finished.webhook_id FOR UPDATE;
    IF hook.pending_event_id IS DISTINCT FROM finished.event_id OR hook.attempts <> finished.attempt THEN
        RETURN result;  -- its lease ran out and a later attempt owns the event now
    END IF;
    IF result = 'delivered' THEN
        UPDATE webhooks w
        SET cursor_xid = e.xid, cursor_id = e.id, pending_event_id = NULL, attempts = 0, first_failed_at = NULL,
            next_attempt_at = now(), leased_until = NULL
        FROM events e
        WHERE w.id = hook.id AND e.id = finished.event_id;
    ELSIF result = 'gone' THEN
        UPDATE webhooks SET enabled = false, disabled_reason = 'the receiver answered 410 Gone', leased_until = NULL
        WHERE id = hook.id;
    ELSIF now() - coalesce(hook.first_failed_at, now()) >= (SELECT webhook_give_up_after FROM settings WHERE singleton) THEN
        UPDATE webhooks
        SET enabled = false, leased_until = NULL,
            disabled_reason = format('event %s failed for %s attempts since %s', finished.event_id, finished.attempt,
                                     hook.first_failed_at)
        WHERE id = hook.id;
    ELSE
        UPDATE webhooks
        SET first_failed_at = coalesce(first_failed_at, now()), next_attempt_at = now() + retry_delay(finished.attempt),
            leased_until = NULL
        WHERE id = hook.id;
    END IF;
    RETURN result;
END;
$$;

-- api.webhook_lag() RETURNS TABLE (webhook_id uuid, lag_seconds double precision, events_written bigint)
-- Admin (metrics). Per enabled subscription, the age of its oldest undelivered
-- event (0 when it is up to date); events_written: the outbox's last id. With
-- no subscription, one row with webhook_id null.
CREATE OR REPLACE FUNCTION api.webhook_lag()
RETURNS TABLE (webhook_id uuid, lag_seconds double precision, events_written bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
ROWS 10
AS $$
DECLARE
    horizon constant xid8 := pg_snapshot_xmin(pg_current_snapshot());
    last_id constant bigint := (SELECT max(id) FROM events);
    hook webhooks;
    oldest events;
BEGIN
    FOR hook IN SELECT * FROM webhooks w WHERE w.enabled ORDER BY w.id LOOP
        oldest := next_event_for(hook, horizon);
        webhook_id := hook.id;
        lag_seconds := coalesce(extract(epoch FROM now() - oldest.occurred_at)::double precision, 0);
        events_written := coalesce(last_id, 0);
        RETURN NEXT;
    END LOOP;
    IF webhook_id IS NULL THEN  -- no subscription: still one row, for events_written
        events_written := coalesce(last_id, 0);
        RETURN NEXT;
    END IF;
END;
$$;
