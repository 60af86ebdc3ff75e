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

-- raise_invalid_argument(p_field text, p_message text) RETURNS void
-- Always raises TA001 with the message "<field> <message>" and COLUMN = field.
CREATE OR REPLACE FUNCTION raise_invalid_argument(p_field text, p_message text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'TA001',
        MESSAGE = format('%s %s', p_field, p_message),
        COLUMN = p_field;
END;
$$;
