-- Ticket options: what is on sale, how much of it remains, and how much
-- one user may buy.

-- ticket_option_resource(p_option ticket_options) RETURNS api.ticket_option
-- The option as callers see it: its public fields only, as of clock(): the
-- tickets of holds past expires_at are on sale, not held, even before
-- anything reclaims them (sql/holds.sql); with the quotas it is in and what
-- one purchase could get now (option_available, sql/quotas.sql).
CREATE OR REPLACE FUNCTION ticket_allocation.ticket_option_resource(p_option ticket_allocation.ticket_options)
RETURNS api.ticket_option
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW(p_option.id, p_option.name, p_option."desc", p_option.remaining + expired.tickets, p_option.sold,
               p_option.total, p_option.max_per_user, p_option.created_at,
               p_option.held - expired.tickets, p_option.max_hold_seconds, option_quota_ids(p_option.id),
               option_available(p_option.id, p_option.remaining + expired.tickets))::api.ticket_option
    FROM (SELECT expired_unreclaimed(p_option.id) AS tickets) AS expired
$$;

-- api.create_ticket_option(p_name text, p_desc text DEFAULT '', p_allocation integer DEFAULT NULL,
--                          p_max_per_user integer DEFAULT NULL, p_idempotency_key text DEFAULT NULL,
--                          p_caller text DEFAULT NULL, p_max_hold_seconds integer DEFAULT NULL)
--     RETURNS api.ticket_option
-- Admin. Puts a new ticket option on sale with p_allocation tickets and returns it.
-- p_allocation is required: its default (null) only lets p_desc have one,
-- so callers may name the arguments and leave p_desc out.
-- p_max_per_user, when not null, caps the tickets one user may hold (active
-- purchases and unexpired holds). p_max_hold_seconds caps how long any hold
-- of the option lasts (1..86400; null: the column's default, 1800, see
-- migrations/0011_hold_bounds.sql). With p_idempotency_key, calling again with the same key and
-- arguments returns the option created the first time (as it is now); the
-- key is p_caller's (see idempotency_scope in sql/idempotency.sql).
-- Errors: TA001 when name is null, blank (only whitespace or format characters),
--         has control or bidirectional-override characters, or is over 200 characters, desc is null
--         or over 2000 characters, allocation is null or negative,
--         max_per_user is below 1, max_hold_seconds is outside 1..86400,
--         or the idempotency key is malformed;
--         TA005, TA006 for idempotency keys (see sql/idempotency.sql);
--         TA008 when the session lifted its limits (sql/session_limits.sql).
CREATE OR REPLACE FUNCTION api.create_ticket_option(
    p_name text, p_desc text DEFAULT '', p_allocation integer DEFAULT NULL,
    p_max_per_user integer DEFAULT NULL, p_idempotency_key text DEFAULT NULL, p_caller text DEFAULT NULL,
    p_max_hold_seconds integer DEFAULT NULL)
RETURNS api.ticket_option
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    request constant jsonb := jsonb_build_object('create_ticket_option', jsonb_build_object(
        'name', p_name, 'desc', p_desc, 'allocation', p_allocation, 'max_per_user', p_max_per_user)
        -- Only when given: keys remembered before the argument existed keep replaying.
        || CASE WHEN p_max_hold_seconds IS NOT NULL
                THEN jsonb_build_object('max_hold_seconds', p_max_hold_seconds) ELSE '{}' END);
    scope constant text := idempotency_scope(p_caller);
    claim record;
    created ticket_options;
BEGIN
    PERFORM assert_session_limits();
    IF p_name IS NULL THEN
        PERFORM raise_invalid_argument('name', 'must not be blank');
    ELSIF name_problem(p_name) IS NOT NULL THEN  -- see migrations/0006_visible_names.sql
        PERFORM raise_invalid_argument('name', name_problem(p_name));
    ELSIF char_length(p_name) > 200 THEN
        PERFORM raise_invalid_argument('name', 'must be at most 200 characters');
    END IF;
    IF p_desc IS NULL THEN
        PERFORM raise_invalid_argument('desc', 'must be a string (use '''' for none)');
    ELSIF char_length(p_desc) > 2000 THEN
        PERFORM raise_invalid_argument('desc', 'must be at most 2000 characters');
    END IF;
    IF p_allocation IS NULL OR p_allocation < 0 THEN
        PERFORM raise_invalid_argument('allocation', 'must be a whole number >= 0');
    END IF;
    IF p_max_per_user < 1 THEN
        PERFORM raise_invalid_argument('max_per_user', 'must be a whole number >= 1, or null for no limit');
    END IF;
    IF p_max_hold_seconds NOT BETWEEN 1 AND 86400 THEN
        PERFORM raise_invalid_argument('max_hold_seconds', 'must be a whole number of seconds from 1 to 86400');
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO claim FROM claim_idempotency_key(scope, p_idempotency_key, request);
        IF (claim.refused).sqlstate IS NOT NULL THEN
            PERFORM raise_refusal(claim.refused);
        END IF;
        IF (claim.earlier).ticket_option_id IS NOT NULL THEN
            RETURN get_ticket_option((claim.earlier).ticket_option_id);
        END IF;
    END IF;

    INSERT INTO ticket_options (name, "desc", remaining, total, max_per_user)
    VALUES (p_name, p_desc, p_allocation, p_allocation, p_max_per_user)
    RETURNING * INTO created;
    IF p_max_hold_seconds IS NOT NULL THEN  -- else the column's default stands: defined once, in the schema
        UPDATE ticket_options SET max_hold_seconds = p_max_hold_seconds WHERE id = created.id
        RETURNING * INTO created;
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM remember_idempotency_keys(ARRAY[scope], ARRAY[p_idempotency_key], ARRAY[request], 'ticket_option',
                                          ARRAY[created.id]);
    END IF;
    -- Event (sql/events.sql).
    PERFORM append_ticket_option_events('ticket_option.created', ticket_option_resource(created));
    RETURN ticket_option_resource(created);
END;
$$;

-- api.get_ticket_option(p_id uuid) RETURNS api.ticket_option
-- Returns the ticket option: `remaining` is what is still on sale, `held`
-- what unexpired holds set aside, `sold` what active purchases hold, `total`
-- the allocation (remaining + held + sold); `quota_ids` the quotas it is in,
-- `available` the most one purchase could get now (remaining, bounded by
-- what each of its quotas has left).
-- Errors: TA002 when no ticket option has that id.
CREATE OR REPLACE FUNCTION api.get_ticket_option(p_id uuid)
RETURNS api.ticket_option
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_option ticket_options;
BEGIN
    SELECT * INTO found_option FROM ticket_options WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('ticket_option_not_found', p_id::text));
    END IF;
    RETURN ticket_option_resource(found_option);
END;
$$;
