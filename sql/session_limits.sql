-- Limits a caller cannot lift. The calling roles get lock, statement and
-- idle-in-transaction timeouts (sql/server/roles.sql), but any session may SET
-- its own; a psql session with no idle timeout could then sit in an open
-- transaction holding an option's lock and stall its sales. So the functions
-- that lock check the session's values against bounds that only the owner
-- changes (ticket_allocation.settings) and refuse to run outside them.

-- assert_session_limits() RETURNS void
-- Returns when the calling session's lock_timeout, statement_timeout and
-- idle_in_transaction_session_timeout are each set (not 0) and within the
-- owner's bounds; the owner itself is not limited (it owns the tables anyway).
-- Errors: TA008 naming the first setting out of bounds.
CREATE OR REPLACE FUNCTION ticket_allocation.assert_session_limits()
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    bounds settings;
    setting text;
    bound interval;
    value text;
BEGIN
    IF session_user = current_user THEN
        RETURN;
    END IF;
    SELECT * INTO STRICT bounds FROM settings WHERE singleton;  -- by its key: see idempotency_key_ttl()
    FOR setting, bound IN VALUES
        ('lock_timeout', bounds.max_lock_timeout),
        ('statement_timeout', bounds.max_statement_timeout),
        ('idle_in_transaction_session_timeout', bounds.max_idle_in_transaction_session_timeout)
    LOOP
        value := current_setting(setting);
        IF value::interval NOT BETWEEN '1 millisecond' AND bound THEN
            PERFORM raise_refusal(session_limit_lifted(setting, value, bound));
        END IF;
    END LOOP;
END;
$$;
