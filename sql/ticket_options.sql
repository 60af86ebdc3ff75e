-- Ticket options: what is on sale and how much of it remains.

-- create_ticket_option(p_name text, p_desc text, p_allocation integer)
--     RETURNS ticket_options
-- Puts a new ticket option on sale with p_allocation tickets and returns it.
-- Errors: TA001 when name is null, blank or over 200 characters, desc is null
--         or over 2000 characters, or allocation is null or negative.
CREATE OR REPLACE FUNCTION create_ticket_option(p_name text, p_desc text, p_allocation integer)
RETURNS ticket_options
LANGUAGE plpgsql
AS $$
DECLARE
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

    INSERT INTO ticket_options (name, "desc", allocation)
    VALUES (p_name, p_desc, p_allocation)
    RETURNING * INTO created;
    RETURN created;
END;
$$;

-- get_ticket_option(p_id uuid) RETURNS ticket_options
-- Returns the ticket option; its allocation is what remains on sale.
-- Errors: TA002 when no ticket option has that id.
CREATE OR REPLACE FUNCTION get_ticket_option(p_id uuid)
RETURNS ticket_options
LANGUAGE plpgsql
STABLE
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
