-- The SQLSTATEs of ticket-allocation (class TA): the one catalogue is
-- api.error_catalogue() below, a row per code. Every error a function raises
-- for a caller's mistake is built from its row, by refusal_of(name, arguments),
-- and nowhere else. The HTTP service reads the catalogue once when its pool
-- opens (service/errors.py) and answers each code with the row's status,
-- problem type and title; tests/test_error_catalogue.py fails when the docs'
-- error table or service/openapi.yaml disagrees with it. A new code is one row
-- here, plus its use.
--
-- An order whose lines cannot all be had is refused as a whole (order_refused):
-- with the SQLSTATE of its first failing line, COLUMN 'lines', and DETAIL a
-- JSON array of every failing line's refusal ({line, sqlstate, message,
-- detail, column_name}).
--
-- A refusal (type api.refusal) is such an error as data: batch functions
-- return one per refused request instead of aborting the whole batch;
-- raise_refusal raises it.

-- api.error_catalogue() RETURNS TABLE (sqlstate text, name text, status integer, problem text, title text,
--     retry_after boolean, message text, detail text, hint text, column_name text)
-- Every SQLSTATE the functions raise, a row each: its name (what refusal_of
-- takes), the HTTP status, problem type (/problems/<problem>) and title the
-- service answers it with, whether the same request may succeed shortly
-- (Retry-After), and the format() templates of its MESSAGE, DETAIL, HINT and
-- COLUMN over refusal_of's arguments (%1$s is the first; null: the error has
-- none). Readable by every calling role: psql users look codes up here.
-- A function over VALUES, not a table: sql/ is re-created on every migrate,
-- so a row is edited like code, in this one file, with no migration; and it
-- reads no table, so the constructors stay IMMUTABLE. Errors: none.
CREATE OR REPLACE FUNCTION api.error_catalogue()
RETURNS TABLE (sqlstate text, name text, status integer, problem text, title text, retry_after boolean,
               message text, detail text, hint text, column_name text)
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    VALUES
    ('TA001', 'invalid_argument', 422, 'invalid-argument', 'A field of the request is invalid', false,
     '%1$s %2$s', NULL, NULL, '%1$s'),  -- (field, what is wrong with it)
    ('TA002', 'ticket_option_not_found', 404, 'ticket-option-not-found', 'Ticket option not found', false,
     'ticket option %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA003', 'insufficient_tickets', 409, 'insufficient-tickets', 'Not enough tickets left', false,
     'not enough tickets left: %1$s requested, %2$s remaining', 'remaining: %2$s',
     'Ask for at most the remaining number of tickets.', NULL),  -- (wanted, remaining)
    ('TA004', 'purchase_not_found', 404, 'purchase-not-found', 'Purchase not found', false,
     'purchase %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA005', 'idempotency_key_reused', 422, 'idempotency-key-reused',
     'The idempotency key was already used for a different request', false,
     'idempotency key %1$s was already used for a different request', 'first request: %2$s',
     'Use a new key for a new request.', NULL),  -- (key, the first request)
    ('TA006', 'idempotency_key_in_flight', 409, 'idempotency-key-in-flight',
     'A request with this idempotency key is still in progress', true,
     'a request with idempotency key %1$s is still in progress', NULL,
     'Retry in a moment to get its outcome.', NULL),  -- (key)
    ('TA007', 'per_user_limit_exceeded', 409, 'per-user-limit-exceeded', 'The user would exceed the per-user limit',
     false, 'user %1$s may hold at most %2$s tickets of this option and holds %3$s; %4$s more would exceed it',
     'max_per_user: %2$s, held: %3$s', 'Ask for fewer tickets; cancelled purchases do not count.',
     NULL),  -- (user_id, max_per_user, held, wanted)
    -- The calling session lifted a timeout the functions rely on. Through the
    -- service, these are its own settings (DB_LOCK_TIMEOUT, DB_STATEMENT_TIMEOUT):
    -- an operator's fix, hence a 500 of its own type rather than a client's problem.
    ('TA008', 'session_limit_lifted', 500, 'service-misconfigured',
     'The service''s database session settings are outside the allowed bounds', false,
     'this session has %1$s = %2$s; calls that lock need it between 1 ms and %3$s', NULL,
     'Run RESET %1$s (or SET it within the bound) and call again.', NULL),  -- (setting, value, bound)
    ('TA009', 'hold_not_found', 404, 'hold-not-found', 'Hold not found', false,
     'hold %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA010', 'hold_expired', 409, 'hold-expired', 'The hold expired; its tickets are back on sale', false,
     'hold %1$s expired at %2$s; its tickets are back on sale', NULL,
     'Hold the tickets again, or buy them.', NULL),  -- (id, expires_at)
    ('TA011', 'hold_released', 409, 'hold-released', 'The hold was released; its tickets are back on sale', false,
     'hold %1$s was released; its tickets are back on sale', NULL,
     'Hold the tickets again, or buy them.', NULL),  -- (id)
    ('TA012', 'hold_confirmed', 409, 'hold-confirmed', 'The hold is confirmed; cancel its purchase instead', false,
     'hold %1$s is confirmed by purchase %2$s and cannot be released', 'purchase_id: %2$s',
     'Cancel the purchase instead.', NULL),  -- (id, purchase_id)
    ('TA013', 'webhook_not_found', 404, 'webhook-not-found', 'Webhook not found', false,
     'webhook %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA014', 'quota_exhausted', 409, 'quota-exhausted', 'Not enough tickets left in a quota of the ticket option',
     false, 'not enough tickets left in quota "%2$s" (%1$s): %3$s requested, %4$s remaining',
     'quota_id: %1$s, remaining: %4$s', 'Ask for at most the remaining number of tickets.',
     NULL),  -- (quota_id, name, wanted, remaining)
    ('TA015', 'quota_not_found', 404, 'quota-not-found', 'Quota not found', false,
     'quota %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA016', 'quota_too_small', 409, 'quota-too-small',
     'The quota would be smaller than what its options sold and hold', false,
     'size %1$s is below what the quota''s options have sold and hold now: %4$s (%2$s sold, %3$s held)',
     'sold: %2$s, held: %3$s', 'Choose a size of at least %4$s.', NULL),  -- (size, sold, held, sold + held)
    ('TA017', 'order_not_found', 404, 'order-not-found', 'Order not found', false,
     'order %1$s does not exist', NULL, NULL, NULL),  -- (id)
    ('TA018', 'order_expired', 409, 'order-expired', 'The order expired; its tickets are back on sale', false,
     'order %1$s expired at %2$s; its tickets are back on sale, nothing was bought', NULL,
     'Place the order again.', NULL),  -- (id, expires_at)
    ('TA019', 'order_released', 409, 'order-released', 'The order was released; its tickets are back on sale', false,
     'order %1$s was released; its tickets are back on sale, nothing was bought', NULL,
     'Place the order again.', NULL),  -- (id)
    ('TA020', 'order_bought', 409, 'order-bought', 'The order is bought; cancel it instead', false,
     'order %1$s is bought and cannot be released', NULL,
     'Cancel the order (or some of its purchases) instead.', NULL),  -- (id)
    ('TA021', 'order_not_bought', 409, 'order-not-bought', 'The order bought nothing; there is nothing to cancel',
     false, 'order %1$s is %2$s: it bought nothing, so there is nothing to cancel', 'status: %2$s',
     'Release a held order instead.', NULL),  -- (id, status)
    ('TA022', 'hold_of_order', 409, 'hold-of-order', 'The hold is a line of an order; confirm or release the order',
     false, 'hold %1$s is a line of order %2$s, which is confirmed or released as a whole', 'order_id: %2$s',
     'Confirm or release the order instead.', NULL)  -- (id, order_id)
$$;

-- refusal_of(p_name text, VARIADIC p_arguments text[]) RETURNS api.refusal
-- The refusal of the catalogue's error p_name, its templates filled with
-- p_arguments in order (a null one reads NULL, as in "hold NULL does not
-- exist"). Callers pass each argument as text (::text prints a value as
-- format's %s does). A name the catalogue lacks is a bug in sql/, raised as
-- such: a null refusal would read as "not refused".
CREATE OR REPLACE FUNCTION ticket_allocation.refusal_of(p_name text, VARIADIC p_arguments text[])
RETURNS api.refusal
LANGUAGE plpgsql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    error record;
    arguments text[] := ARRAY(SELECT coalesce(a, 'NULL') FROM unnest(p_arguments) WITH ORDINALITY AS u (a, n)
                              ORDER BY n);
BEGIN
    SELECT * INTO error FROM api.error_catalogue() AS e WHERE e.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'api.error_catalogue() has no error named %', p_name;
    END IF;
    RETURN ROW(error.sqlstate, format(error.message, VARIADIC arguments), format(error.detail, VARIADIC arguments),
               format(error.hint, VARIADIC arguments), format(error.column_name, VARIADIC arguments))::api.refusal;
END;
$$;

-- invalid_argument(p_field text, p_message text) RETURNS api.refusal
-- TA001 "<field> <message>", naming the field in COLUMN: the code most
-- functions raise, so it keeps a name of its own.
CREATE OR REPLACE FUNCTION ticket_allocation.invalid_argument(p_field text, p_message text)
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT refusal_of('invalid_argument', p_field, p_message)
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
