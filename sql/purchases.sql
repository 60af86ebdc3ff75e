-- Purchases: selling tickets from an option's allocation without overselling.

-- purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer)
--     RETURNS TABLE (id, ticket_option_id, user_id, quantity, ticket_ids uuid[], created_at)
-- Buys p_quantity tickets for p_user_id, all or nothing, in one call: locks
-- the option's row (concurrent purchases of that option queue behind it),
-- checks what remains, decrements it, and inserts the purchase and one ticket
-- row per ticket. Returns the purchase with the ids of its tickets.
-- Errors: TA001 when an argument is null or quantity is outside 1..1000;
--         TA002 when the ticket option does not exist;
--         TA003 when fewer than p_quantity tickets remain (nothing is bought).
CREATE OR REPLACE FUNCTION purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer)
RETURNS TABLE (id uuid, ticket_option_id uuid, user_id uuid, quantity integer,
               ticket_ids uuid[], created_at timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    remaining integer;
    purchase purchases;
BEGIN
    IF p_ticket_option_id IS NULL THEN
        PERFORM raise_invalid_argument('ticket_option_id', 'must not be null');
    END IF;
    IF p_user_id IS NULL THEN
        PERFORM raise_invalid_argument('user_id', 'must not be null');
    END IF;
    IF p_quantity IS NULL OR p_quantity NOT BETWEEN 1 AND 1000 THEN
        PERFORM raise_invalid_argument('quantity', 'must be a whole number from 1 to 1000');
    END IF;

    -- The pessimistic lock: purchases of one option run one after another,
    -- each seeing what the previous one left. NO KEY UPDATE, because the key
    -- does not change, so inserts referencing the option are not blocked.
    SELECT o.allocation INTO remaining
    FROM ticket_options o
    WHERE o.id = p_ticket_option_id
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA002',
            MESSAGE = format('ticket option %s does not exist', p_ticket_option_id);
    END IF;
    IF remaining < p_quantity THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA003',
            MESSAGE = format('not enough tickets left: %s requested, %s remaining',
                             p_quantity, remaining),
            DETAIL = format('remaining: %s', remaining),
            HINT = 'Ask for at most the remaining number of tickets.';
    END IF;

    UPDATE ticket_options o
    SET allocation = o.allocation - p_quantity, updated_at = now()
    WHERE o.id = p_ticket_option_id;

    INSERT INTO purchases (ticket_option_id, user_id, quantity)
    VALUES (p_ticket_option_id, p_user_id, p_quantity)
    RETURNING * INTO purchase;

    id := purchase.id;
    ticket_option_id := purchase.ticket_option_id;
    user_id := purchase.user_id;
    quantity := purchase.quantity;
    created_at := purchase.created_at;
    WITH issued AS (
        INSERT INTO tickets (ticket_option_id, purchase_id)
        SELECT p_ticket_option_id, purchase.id
        FROM generate_series(1, p_quantity)
        RETURNING tickets.id
    )
    SELECT array_agg(issued.id) INTO ticket_ids FROM issued;
    RETURN NEXT;
END;
$$;
