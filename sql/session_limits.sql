-- Limits a caller cannot lift. The calling roles get lock, statement and
-- idle-in-transaction timeouts (sql/server/roles.sql), but any session may SET
-- its own; a psql session with no idle timeout could then sit in an open
-- transaction holding an option's lock and stall its sales. So the functions
-- that lock check the session's values against bounds that only the owner
-- changes (ticket_allocation.settings) and refuse to run outside them.
-- A session may also keep its transaction busy (a statement every few
-- seconds, never idle) and lift its limits after it locked: whatever it holds
-- (an option's lock, the feed's horizon) is bounded by max_transaction_timeout,
-- which the service's watchdog enforces on every PostgreSQL version
-- (api.end_overlong_transactions).

-- assert_session_limits() RETURNS void
-- Returns when the calling session's lock_timeout, statement_timeout,
-- idle_in_transaction_session_timeout and (PostgreSQL 17+) transaction_timeout
-- are each set (not 0) and within the owner's bounds; the owner itself is not
-- limited (it owns the tables anyway).
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
        ('idle_in_transaction_session_timeout', bounds.max_idle_in_transaction_session_timeout),
        ('transaction_timeout', bounds.max_transaction_timeout)
    LOOP
        value := current_setting(setting, true);
        CONTINUE WHEN value IS NULL;  -- transaction_timeout before PostgreSQL 17: the watchdog's alone
        IF value::interval NOT BETWEEN '1 millisecond' AND bound THEN
            PERFORM raise_refusal(refusal_of('session_limit_lifted', setting, value, bound::text));
        END IF;
    END LOOP;
END;
$$;

-- end_overlong_transactions() RETURNS TABLE (pid integer, role name, database name, client_addr inet,
--     application_name text, state text, transaction_age interval, bound interval, query text)
-- The watchdog (admin; the service runs it every second, see service/db.py):
-- terminates every backend of the calling roles (sql/server/roles.sql), in
-- any database of the server, whose transaction began more than
-- settings.max_transaction_timeout ago, and returns one row per backend it
-- ended: who, from where, its state, how old its transaction was, the bound,
-- and its last statement (200 characters). Its own backend is never one.
-- Every database: the roles are the server's, and a transaction in any
-- database holds back the feed's horizon (pg_snapshot_xmin, api.events_after).
-- The service's own transactions are single statements within its
-- statement_timeout (API 5 s, admin 30 s), so none outlives the bound unless
-- an operator sets the bound below them. Terminating needs the owner's
-- membership in the calling roles (sql/server/roles.sql); PostgreSQL 17's
-- transaction_timeout does not replace this: a session may lift it after it
-- locked, or never call a function that checks it. Errors: none.
CREATE OR REPLACE FUNCTION api.end_overlong_transactions()
RETURNS TABLE (pid integer, role name, database name, client_addr inet, application_name text, state text,
               transaction_age interval, bound interval, query text)
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
    -- Materialized: the backends are chosen first, and only they are terminated.
    WITH overlong AS MATERIALIZED (
        SELECT a.pid, a.usename, a.datname, a.client_addr, a.application_name, a.state,
               clock_timestamp() - a.xact_start AS transaction_age, s.max_transaction_timeout AS bound,
               left(a.query, 200) AS query
        FROM pg_stat_activity a
        JOIN settings s ON s.singleton
        WHERE a.usename IN ('ticket_allocation_api', 'ticket_allocation_admin', 'ticket_allocation_psql')
          AND a.xact_start < clock_timestamp() - s.max_transaction_timeout
          AND a.pid <> pg_backend_pid()
    )
    SELECT o.pid, o.usename, o.datname, o.client_addr, o.application_name, o.state, o.transaction_age, o.bound,
           o.query
    FROM overlong o
    WHERE pg_terminate_backend(o.pid)
$$;
