-- The SQLSTATEs of ticket-allocation (class TA): the one catalogue. Every
-- error a function raises for a caller's mistake is built here, by the
-- constructor named beside its code, and nowhere else. The HTTP service maps
-- each code to one status (service/errors.py); README.md and
-- service/openapi.yaml list them; tests/test_error_catalogue.py fails when
-- any of them disagrees with this list.
--
--   TA001  invalid_argument          a value breaks a rule; COLUMN names the field
--   TA002  ticket_option_not_found   no ticket option has that id
--   TA003  insufficient_tickets      not enough tickets left; DETAIL says how many remain
--   TA004  purchase_not_found        no purchase has that id
--   TA005  idempotency_key_reused    the key was already used for a different request
--   TA006  idempotency_key_in_flight a request with this key is still in progress; retry
--   TA007  per_user_limit_exceeded   the purchase would take the user past max_per_user
--   TA008  session_limit_lifted      the calling session lifted a timeout the functions rely on
--   TA009  hold_not_found            no hold has that id
--   TA010  hold_expired              the hold expired before it was confirmed
--   TA011  hold_released             the hold was released before it was confirmed
--   TA012  hold_confirmed            the hold is confirmed: cancel its purchase instead
--   TA013  webhook_not_found         no webhook subscription has that id
--   TA014  quota_exhausted           a quota of the option has not enough left; DETAIL names it
--   TA015  quota_not_found           no quota has that id
--   TA016  quota_too_small           a quota's size would be below what its options sold and hold
--   TA017  order_not_found           no order has that id
--   TA018  order_expired             the order expired before it was confirmed
--   TA019  order_released            the order was released before it was confirmed
--   TA020  order_bought              the order is bought: cancel it instead of releasing it
--   TA021  order_not_bought          the order bought nothing, so there is nothing to cancel
--   TA022  hold_of_order             the hold is a line of an order: confirm or release the order
--
-- An order whose lines cannot all be had is refused as a whole (order_refused):
-- with the SQLSTATE of its first failing line, COLUMN 'lines', and DETAIL a
-- JSON array of every failing line's refusal ({line, sqlstate, message,
-- detail, column_name}).
--
-- A refusal (type api.refusal) is such an error as data: batch functions
-- return one per refused request instead of aborting the whole batch;
-- raise_refusal raises it.

-- invalid_argument(p_field text, p_message text) RETURNS api.refusal
-- TA001 "<field> <message>", naming the field in COLUMN.
CREATE OR REPLACE FUNCTION ticket_allocation.invalid_argument(p_field text, p_message text)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA001', format('%s %s', p_field, p_message), NULL, NULL, p_field)::api.refusal
$$;

-- ticket_option_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.ticket_option_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA002', format('ticket option %s does not exist', coalesce(p_id::text, 'NULL')),
               NULL, NULL, NULL)::api.refusal
$$;

-- insufficient_tickets(p_wanted integer, p_remaining integer) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.insufficient_tickets(p_wanted integer, p_remaining integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA003', format('not enough tickets left: %s requested, %s remaining', p_wanted, p_remaining),
               format('remaining: %s', p_remaining), 'Ask for at most the remaining number of tickets.',
               NULL)::api.refusal
$$;

-- purchase_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.purchase_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA004', format('purchase %s does not exist', coalesce(p_id::text, 'NULL')),
               NULL, NULL, NULL)::api.refusal
$$;

-- idempotency_key_reused(p_key text, p_first_request jsonb) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.idempotency_key_reused(p_key text, p_first_request jsonb)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA005', format('idempotency key %s was already used for a different request', p_key),
               format('first request: %s', p_first_request), 'Use a new key for a new request.',
               NULL)::api.refusal
$$;

-- idempotency_key_in_flight(p_key text) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.idempotency_key_in_flight(p_key text)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA006', format('a request with idempotency key %s is still in progress', p_key),
               NULL, 'Retry in a moment to get its outcome.', NULL)::api.refusal
$$;

-- per_user_limit_exceeded(p_user_id uuid, p_max_per_user integer, p_held integer, p_wanted integer)
--     RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.per_user_limit_exceeded(
    p_user_id uuid, p_max_per_user integer, p_held integer, p_wanted integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA007',
               format('user %s may hold at most %s tickets of this option and holds %s; %s more would exceed it',
                      p_user_id, p_max_per_user, p_held, p_wanted),
               format('max_per_user: %s, held: %s', p_max_per_user, p_held),
               'Ask for fewer tickets; cancelled purchases do not count.', NULL)::api.refusal
$$;

-- session_limit_lifted(p_setting text, p_value text, p_max interval) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.session_limit_lifted(p_setting text, p_value text, p_max interval)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA008',
               format('this session has %s = %s; calls that lock need it between 1 ms and %s', p_setting,
                      p_value, p_max),
               NULL, format('Run RESET %s (or SET it within the bound) and call again.', p_setting),
               NULL)::api.refusal
$$;

-- hold_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.hold_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA009', format('hold %s does not exist', coalesce(p_id::text, 'NULL')), NULL, NULL, NULL)::api.refusal
$$;

-- hold_expired(p_id uuid, p_expires_at timestamptz) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.hold_expired(p_id uuid, p_expires_at timestamptz)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA010', format('hold %s expired at %s; its tickets are back on sale', p_id, p_expires_at),
               NULL, 'Hold the tickets again, or buy them.', NULL)::api.refusal
$$;

-- hold_released(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.hold_released(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA011', format('hold %s was released; its tickets are back on sale', p_id),
               NULL, 'Hold the tickets again, or buy them.', NULL)::api.refusal
$$;

-- hold_confirmed(p_id uuid, p_purchase_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.hold_confirmed(p_id uuid, p_purchase_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA012', format('hold %s is confirmed by purchase %s and cannot be released', p_id, p_purchase_id),
               format('purchase_id: %s', p_purchase_id), 'Cancel the purchase instead.', NULL)::api.refusal
$$;

-- webhook_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.webhook_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA013', format('webhook %s does not exist', coalesce(p_id::text, 'NULL')),
               NULL, NULL, NULL)::api.refusal
$$;

-- quota_exhausted(p_quota_id uuid, p_name text, p_wanted integer, p_remaining integer) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.quota_exhausted(
    p_quota_id uuid, p_name text, p_wanted integer, p_remaining integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA014', format('not enough tickets left in quota "%s" (%s): %s requested, %s remaining',
                               p_name, p_quota_id, p_wanted, p_remaining),
               format('quota_id: %s, remaining: %s', p_quota_id, p_remaining),
               'Ask for at most the remaining number of tickets.', NULL)::api.refusal
$$;

-- quota_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.quota_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA015', format('quota %s does not exist', coalesce(p_id::text, 'NULL')), NULL, NULL, NULL)::api.refusal
$$;

-- quota_too_small(p_size integer, p_sold integer, p_held integer) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.quota_too_small(p_size integer, p_sold integer, p_held integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA016', format('size %s is below what the quota''s options have sold and hold now: %s (%s sold, %s held)',
                               p_size, p_sold + p_held, p_sold, p_held),
               format('sold: %s, held: %s', p_sold, p_held),
               format('Choose a size of at least %s.', p_sold + p_held), NULL)::api.refusal
$$;

-- order_not_found(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.order_not_found(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA017', format('order %s does not exist', coalesce(p_id::text, 'NULL')), NULL, NULL, NULL)::api.refusal
$$;

-- order_expired(p_id uuid, p_expires_at timestamptz) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.order_expired(p_id uuid, p_expires_at timestamptz)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA018', format('order %s expired at %s; its tickets are back on sale, nothing was bought',
                               p_id, p_expires_at),
               NULL, 'Place the order again.', NULL)::api.refusal
$$;

-- order_released(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.order_released(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA019', format('order %s was released; its tickets are back on sale, nothing was bought', p_id),
               NULL, 'Place the order again.', NULL)::api.refusal
$$;

-- order_bought(p_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.order_bought(p_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA020', format('order %s is bought and cannot be released', p_id),
               NULL, 'Cancel the order (or some of its purchases) instead.', NULL)::api.refusal
$$;

-- order_not_bought(p_id uuid, p_status text) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.order_not_bought(p_id uuid, p_status text)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA021', format('order %s is %s: it bought nothing, so there is nothing to cancel', p_id, p_status),
               format('status: %s', p_status), 'Release a held order instead.', NULL)::api.refusal
$$;

-- hold_of_order(p_id uuid, p_order_id uuid) RETURNS api.refusal
CREATE OR REPLACE FUNCTION ticket_allocation.hold_of_order(p_id uuid, p_order_id uuid)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW('TA022', format('hold %s is a line of order %s, which is confirmed or released as a whole',
                               p_id, p_order_id),
               format('order_id: %s', p_order_id), 'Confirm or release the order instead.', NULL)::api.refusal
$$;

-- order_refused(p_refusals api.refusal[], p_lines integer) RETURNS api.refusal
-- The refusal of a whole order: p_refusals[i] is line i's (null: that line
-- could be had), p_lines how many lines it has. Its SQLSTATE is the first
-- failing line's; the message names every failing line, DETAIL lists them as
-- JSON (see the header), COLUMN is 'lines'. Null when no line is refused.
CREATE OR REPLACE FUNCTION ticket_allocation.order_refused(p_refusals api.refusal[], p_lines integer)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW((array_agg((p_refusals[n]).sqlstate ORDER BY n))[1],
               format('order refused: %s of its %s lines cannot be had: %s', count(*), p_lines,
                      string_agg(format('line %s: %s', n, (p_refusals[n]).message), '; ' ORDER BY n)),
               jsonb_agg(jsonb_build_object('line', n, 'sqlstate', (p_refusals[n]).sqlstate,
                                            'message', (p_refusals[n]).message, 'detail', (p_refusals[n]).detail,
                                            'column_name', (p_refusals[n]).column_name) ORDER BY n)::text,
               'Nothing was bought or held. Change or drop the failing lines and place the order again.',
               'lines')::api.refusal
    FROM generate_series(1, p_lines) AS n  -- by subscript: a refusals array may start past 1
    WHERE (p_refusals[n]).sqlstate IS NOT NULL
    HAVING count(*) > 0
$$;

-- raise_refusal(p_refusal api.refusal) RETURNS void
-- Raises the refusal as an error: its SQLSTATE, message, and whichever of
-- DETAIL, HINT and COLUMN it has.
-- VOLATILE on purpose (plpgsql_check suggests IMMUTABLE): an IMMUTABLE call
-- with constant arguments may be run by the planner, raising while planning.
CREATE OR REPLACE FUNCTION ticket_allocation.raise_refusal(p_refusal api.refusal)
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
BEGIN
    IF p_refusal.column_name IS NOT NULL AND p_refusal.detail IS NOT NULL THEN  -- an order's lines
        RAISE EXCEPTION USING ERRCODE = p_refusal.sqlstate, MESSAGE = p_refusal.message,
            COLUMN = p_refusal.column_name, DETAIL = p_refusal.detail, HINT = coalesce(p_refusal.hint, '');
    ELSIF p_refusal.column_name IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_refusal.sqlstate, MESSAGE = p_refusal.message,
            COLUMN = p_refusal.column_name;
    ELSIF p_refusal.detail IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_refusal.sqlstate, MESSAGE = p_refusal.message,
            DETAIL = p_refusal.detail, HINT = coalesce(p_refusal.hint, '');
    ELSIF p_refusal.hint IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_refusal.sqlstate, MESSAGE = p_refusal.message,
            HINT = p_refusal.hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = p_refusal.sqlstate, MESSAGE = p_refusal.message;
    END IF;
END;
$$;

-- raise_invalid_argument(p_field text, p_message text) RETURNS void
-- Always raises TA001 with the message "<field> <message>" and COLUMN = field.
CREATE OR REPLACE FUNCTION ticket_allocation.raise_invalid_argument(p_field text, p_message text)
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT raise_refusal(invalid_argument(p_field, p_message))
$$;
