-- Purchases: selling tickets from an option's allocation without overselling,
-- reading them back, and cancelling them.
--
-- Locking discipline: every change to an option's allocation or to the status
-- of its purchases first locks the option's row (FOR NO KEY UPDATE: the key
-- does not change, so inserts that reference the option are not blocked).
-- Changes to one option thus run one after another, each seeing what the
-- previous left, and the lock order (option, then its purchases) is the same
-- everywhere, so they cannot deadlock.

-- purchase_tickets(p_ticket_option_id uuid, p_user_id uuid, p_quantity integer,
--                  p_idempotency_key text DEFAULT NULL)
--     RETURNS purchase_receipts
-- Buys p_quantity tickets for p_user_id, all or nothing, in one call: locks
-- the option's row, checks what remains and the option's max_per_user,
-- decrements it, and inserts the purchase and one ticket row per ticket.
-- Returns the purchase with the ids of its tickets. With p_idempotency_key,
-- calling again with the same key and arguments returns the first purchase
-- (as it is now) and buys nothing more.
-- Errors: TA001 when an argument is null, quantity is outside 1..1000, or the
--         idempotency key is malformed;
--         TA002 when the ticket option does not exist;
--         TA003 when fewer than p_quantity tickets remain;
--         TA007 when the user would hold more than the option's max_per_user;
--         TA005, TA006 for idempotency keys (see sql/idempotency.sql).
--         Nothing is bought when any error is raised.
CREATE OR REPLACE FUNCTION purchase_tickets(
    p_ticket_option_id uuid, p_user_id uuid, p_quantity integer, p_idempotency_key text DEFAULT NULL)
RETURNS purchase_receipts
LANGUAGE plpgsql
AS $$
DECLARE
    request constant jsonb := jsonb_build_object('purchase_tickets', jsonb_build_object(
        'ticket_option_id', p_ticket_option_id, 'user_id', p_user_id, 'quantity', p_quantity));
    earlier idempotency_keys;
    locked ticket_options;
    held bigint;
    receipt purchase_receipts;
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

    earlier := claim_idempotency_key(p_idempotency_key, request);
    IF earlier.purchase_id IS NOT NULL THEN
        SELECT * INTO receipt FROM purchase_receipts WHERE id = earlier.purchase_id;
        RETURN receipt;
    END IF;

    SELECT * INTO locked FROM ticket_options WHERE id = p_ticket_option_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA002',
            MESSAGE = format('ticket option %s does not exist', p_ticket_option_id);
    END IF;
    IF locked.allocation < p_quantity THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA003',
            MESSAGE = format('not enough tickets left: %s requested, %s remaining',
                             p_quantity, locked.allocation),
            DETAIL = format('remaining: %s', locked.allocation),
            HINT = 'Ask for at most the remaining number of tickets.';
    END IF;
    IF locked.max_per_user IS NOT NULL THEN
        SELECT coalesce(sum(quantity), 0) INTO held
        FROM purchases
        WHERE ticket_option_id = p_ticket_option_id AND user_id = p_user_id AND status = 'active';
        IF held + p_quantity > locked.max_per_user THEN
            RAISE EXCEPTION USING
                ERRCODE = 'TA007',
                MESSAGE = format('user %s may hold at most %s tickets of this option and holds %s; %s more would exceed it',
                                 p_user_id, locked.max_per_user, held, p_quantity),
                DETAIL = format('max_per_user: %s, held: %s', locked.max_per_user, held),
                HINT = 'Ask for fewer tickets; cancelled purchases do not count.';
        END IF;
    END IF;

    UPDATE ticket_options
    SET allocation = allocation - p_quantity, sold = sold + p_quantity, updated_at = now()
    WHERE id = p_ticket_option_id;

    INSERT INTO purchases (ticket_option_id, user_id, quantity)
    VALUES (p_ticket_option_id, p_user_id, p_quantity)
    RETURNING id, ticket_option_id, user_id, quantity, status, NULL::uuid[], created_at, cancelled_at
    INTO receipt;
    WITH issued AS (
        INSERT INTO tickets (ticket_option_id, purchase_id)
        SELECT p_ticket_option_id, receipt.id
        FROM generate_series(1, p_quantity)
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO receipt.ticket_ids FROM issued;

    IF p_idempotency_key IS NOT NULL THEN
        PERFORM remember_idempotency_key(p_idempotency_key, request, NULL, receipt.id);
    END IF;
    RETURN receipt;
END;
$$;

-- get_purchase(p_id uuid) RETURNS purchase_receipts
-- Returns the purchase with its ticket ids, status and cancelled_at.
-- Errors: TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION get_purchase(p_id uuid)
RETURNS purchase_receipts
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    receipt purchase_receipts;
BEGIN
    SELECT * INTO receipt FROM purchase_receipts WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA004',
            MESSAGE = format('purchase %s does not exist', coalesce(p_id::text, 'NULL'));
    END IF;
    RETURN receipt;
END;
$$;

-- list_purchases(p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
--                p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
--     RETURNS SETOF purchase_receipts
-- The option's purchases, newest first (created_at, then id, descending), at
-- most p_limit of them, only p_user_id's when given. Keyset pagination: pass
-- the created_at and id of the last row of a page to get the next one; each
-- purchase is listed once even while new ones are being made.
-- Errors: TA001 when p_limit is outside 1..500 or only one of the two
--         p_before_* is given; TA002 when the ticket option does not exist.
CREATE OR REPLACE FUNCTION list_purchases(
    p_ticket_option_id uuid, p_limit integer DEFAULT 50, p_user_id uuid DEFAULT NULL,
    p_before_created_at timestamptz DEFAULT NULL, p_before_id uuid DEFAULT NULL)
RETURNS SETOF purchase_receipts
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
        PERFORM raise_invalid_argument('limit', 'must be a whole number from 1 to 500');
    END IF;
    IF (p_before_created_at IS NULL) <> (p_before_id IS NULL) THEN
        PERFORM raise_invalid_argument('cursor', 'needs both p_before_created_at and p_before_id, or neither');
    END IF;
    PERFORM get_ticket_option(p_ticket_option_id);  -- TA002 for an unknown option

    IF p_before_id IS NULL THEN
        p_before_created_at := 'infinity';
        p_before_id := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    END IF;
    RETURN QUERY
        SELECT r.*
        FROM purchase_receipts r
        WHERE r.ticket_option_id = p_ticket_option_id
          AND (p_user_id IS NULL OR r.user_id = p_user_id)
          AND (r.created_at, r.id) < (p_before_created_at, p_before_id)
        ORDER BY r.created_at DESC, r.id DESC
        LIMIT p_limit;
END;
$$;

-- cancel_purchase(p_id uuid) RETURNS purchase_receipts
-- Cancels the purchase: marks it cancelled (cancelled_at), voids its tickets
-- and puts its quantity back on sale, all at once. Cancelling a cancelled
-- purchase changes nothing and returns it as it is. The rows stay, as history.
-- Errors: TA001 when p_id is null; TA004 when no purchase has that id.
CREATE OR REPLACE FUNCTION cancel_purchase(p_id uuid)
RETURNS purchase_receipts
LANGUAGE plpgsql
AS $$
DECLARE
    option_id uuid;
    target purchases;
BEGIN
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    END IF;
    SELECT ticket_option_id INTO option_id FROM purchases WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA004',
            MESSAGE = format('purchase %s does not exist', p_id);
    END IF;

    PERFORM 1 FROM ticket_options WHERE id = option_id FOR NO KEY UPDATE;
    SELECT * INTO target FROM purchases WHERE id = p_id FOR UPDATE;
    IF target.status = 'active' THEN
        UPDATE purchases SET status = 'cancelled', cancelled_at = now() WHERE id = p_id;
        UPDATE tickets SET voided_at = now() WHERE purchase_id = p_id;
        UPDATE ticket_options
        SET allocation = allocation + target.quantity, sold = sold - target.quantity, updated_at = now()
        WHERE id = option_id;
    END IF;
    RETURN get_purchase(p_id);
END;
$$;
