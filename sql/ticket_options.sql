-- Ticket options: what is on sale, how much of it remains, and how much
-- one user may buy.

-- create_ticket_option(p_name text, p_desc text, p_allocation integer,
--                      p_max_per_user integer DEFAULT NULL, p_idempotency_key text DEFAULT NULL)
--     RETURNS ticket_options
-- Puts a new ticket option on sale with p_allocation tickets and returns it.
-- p_max_per_user, when not null, caps the tickets one user may hold (active
-- purchases). With p_idempotency_key, calling again with the same key and
-- arguments returns the option created the first time (as it is now).
-- Errors: TA001 when name is null, blank or over 200 characters, desc is null
--         or over 2000 characters, allocation is null or negative,
--         max_per_user is below 1, or the idempotency key is malformed;
--         TA005, TA006 for idempotency keys (see sql/idempotency.sql).
CREATE OR REPLACE FUNCTION create_ticket_option(
    p_name text, p_desc text, p_allocation integer,
    p_max_per_user integer DEFAULT NULL, p_idempotency_key text DEFAULT NULL)
RETURNS ticket_options
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    request constant jsonb := jsonb_build_object('create_ticket_option', jsonb_build_object(
        'name', p_name, 'desc', p_desc, 'allocation', p_allocation, 'max_per_user', p_max_per_user));
    claim record;
    created ticket_options;
BEGIN
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        PERFORM raise_invalid_argument('name', 'must not be blank');
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

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO claim FROM claim_idempotency_key(p_idempotency_key, request);
        IF (claim.refused).sqlstate IS NOT NULL THEN
            PERFORM raise_refusal(claim.refused);
        END IF;
        IF (claim.earlier).ticket_option_id IS NOT NULL THEN
            SELECT * INTO created FROM ticket_options WHERE id = (claim.earlier).ticket_option_id;
            RETURN created;
        END IF;
    END IF;

    INSERT INTO ticket_options (name, "desc", allocation, total, max_per_user)
    VALUES (p_name, p_desc, p_allocation, p_allocation, p_max_per_user)
    RETURNING * INTO created;
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM remember_idempotency_keys(ARRAY[p_idempotency_key], ARRAY[request], ARRAY[created.id], ARRAY[NULL::uuid]);
    END IF;
    RETURN created;
END;
$$;

-- get_ticket_option(p_id uuid) RETURNS ticket_options
-- Returns the ticket option; its allocation is what remains on sale, sold
-- what active purchases hold.
-- Errors: TA002 when no ticket option has that id.
CREATE OR REPLACE FUNCTION get_ticket_option(p_id uuid)
RETURNS ticket_options
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_option ticket_options;
BEGIN
    SELECT * INTO found_option FROM ticket_options WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA002',
            MESSAGE = format('ticket option %s does not exist', coalesce(p_id::text, 'NULL'));
    END IF;
    RETURN found_option;
END;
$$;
