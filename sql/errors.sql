-- The SQLSTATEs of ticket-allocation (class TA). Every function raises these,
-- and only these, for a caller's mistake; the HTTP service maps each to one
-- status in service/errors.py, and README.md lists them.
--
--   TA001  invalid argument: a value breaks a rule; COLUMN names the field
--   TA002  ticket option not found
--   TA003  not enough tickets left; DETAIL says how many remain
--   TA004  purchase not found
--   TA005  idempotency key already used for a different request
--   TA006  a request with this idempotency key is still in progress; retry
--   TA007  the purchase would take the user past the option's max_per_user
--
-- A refusal (type in migrations/) is such an error as data: batch functions
-- return one per refused request instead of aborting the whole batch.

-- invalid_argument(p_field text, p_message text) RETURNS refusal
-- The TA001 refusal "<field> <message>", naming the field.
CREATE OR REPLACE FUNCTION invalid_argument(p_field text, p_message text)
RETURNS refusal
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT ROW('TA001', format('%s %s', p_field, p_message), NULL, NULL, p_field)::refusal
$$;

-- raise_refusal(p_refusal refusal) RETURNS void
-- Raises the refusal as an error: its SQLSTATE, message, and whichever of
-- DETAIL, HINT and COLUMN it has.
-- VOLATILE on purpose (plpgsql_check suggests IMMUTABLE): an IMMUTABLE call
-- with constant arguments may be run by the planner, raising while planning.
CREATE OR REPLACE FUNCTION raise_refusal(p_refusal refusal)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_refusal.column_name IS NOT NULL THEN
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
CREATE OR REPLACE FUNCTION raise_invalid_argument(p_field text, p_message text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT raise_refusal(invalid_argument(p_field, p_message))
$$;
