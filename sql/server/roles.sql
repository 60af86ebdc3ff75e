-- The roles of ticket-allocation. Run once per PostgreSQL server, as a
-- superuser or a role with CREATEROLE (the embedded server, the tests and
-- docker compose do it for you); then give each a password and create the
-- database:
--
--   ALTER ROLE ticket_allocation_owner PASSWORD '...';
--   ALTER ROLE ticket_allocation_api PASSWORD '...';
--   ALTER ROLE ticket_allocation_admin PASSWORD '...';
--   ALTER ROLE ticket_allocation_psql PASSWORD '...';
--   CREATE DATABASE ticket_allocation OWNER ticket_allocation_owner;
--
-- ticket_allocation_owner owns the schemas: migrations run as it
--   (MIGRATE_DATABASE_URL), and the API functions run with its rights.
-- ticket_allocation_api is what the service serves buyers with (DATABASE_URL):
--   it may only EXECUTE the buying and reading functions of schema api
--   (sql/privileges.sql), never touch a table.
-- ticket_allocation_admin is what the service runs admin calls with, after
--   checking ADMIN_TOKEN (ADMIN_DATABASE_URL): creating options, cancelling
--   purchases, housekeeping, the books check.
-- ticket_allocation_psql is the login of people given psql access: the API
--   role's grants, but not the service's login. PostgreSQL lets a role signal
--   (pg_terminate_backend, pg_cancel_backend) and read the queries of its own
--   backends and of the roles it is a member of, so a psql user logged in as
--   the API role could cut the service's connections.
-- No calling role is a member of another, so none can become another (no SET
-- ROLE), signal another's backends or read their queries.
--
-- The calling roles find the API by name (search_path = api) and fail fast:
-- a call that cannot get its lock or finish in time fails (the service answers
-- 503) instead of hanging, a session left idle inside a transaction (a psql
-- user's open BEGIN holding an option's lock) is ended, and on PostgreSQL 17+
-- so is any transaction that runs too long, busy or not (transaction_timeout;
-- on older servers only the watchdog below bounds it). The functions refuse
-- to run in a session that lifted these limits (sql/session_limits.sql).
--
-- The owner is a member of the calling roles, inheriting their privileges
-- (which it has anyway) but unable to SET ROLE to them on PostgreSQL 16+: the
-- least that lets api.end_overlong_transactions (SECURITY DEFINER, run by the
-- service's watchdog) terminate their backends. pg_signal_backend would reach
-- every role of the server.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_owner') THEN
        CREATE ROLE ticket_allocation_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_api') THEN
        CREATE ROLE ticket_allocation_api LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_admin') THEN
        CREATE ROLE ticket_allocation_admin LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_psql') THEN
        CREATE ROLE ticket_allocation_psql LOGIN;
    END IF;
END
$$;
-- The owner finds its tables without a prefix; yoyo's bookkeeping stays in public.
ALTER ROLE ticket_allocation_owner SET search_path = public, ticket_allocation, api;
ALTER ROLE ticket_allocation_api SET search_path = api;
ALTER ROLE ticket_allocation_api SET lock_timeout = '1s';
ALTER ROLE ticket_allocation_api SET statement_timeout = '5s';
ALTER ROLE ticket_allocation_api SET idle_in_transaction_session_timeout = '5s';
ALTER ROLE ticket_allocation_admin SET search_path = api;
ALTER ROLE ticket_allocation_admin SET lock_timeout = '1s';
ALTER ROLE ticket_allocation_admin SET statement_timeout = '30s';
ALTER ROLE ticket_allocation_admin SET idle_in_transaction_session_timeout = '5s';
ALTER ROLE ticket_allocation_psql SET search_path = api;
ALTER ROLE ticket_allocation_psql SET lock_timeout = '1s';
ALTER ROLE ticket_allocation_psql SET statement_timeout = '5s';
ALTER ROLE ticket_allocation_psql SET idle_in_transaction_session_timeout = '5s';
DO $$
DECLARE
    calling_role text;
BEGIN
    -- transaction_timeout is PostgreSQL 17's; at most settings.max_transaction_timeout (30 s).
    IF current_setting('server_version_num')::int >= 170000 THEN
        ALTER ROLE ticket_allocation_api SET transaction_timeout = '10s';
        ALTER ROLE ticket_allocation_admin SET transaction_timeout = '30s';
        ALTER ROLE ticket_allocation_psql SET transaction_timeout = '10s';
    END IF;
    FOREACH calling_role IN ARRAY ARRAY['ticket_allocation_api', 'ticket_allocation_admin', 'ticket_allocation_psql']
    LOOP
        CONTINUE WHEN pg_has_role('ticket_allocation_owner', calling_role, 'USAGE');
        IF current_setting('server_version_num')::int >= 160000 THEN
            EXECUTE format('GRANT %I TO ticket_allocation_owner WITH INHERIT TRUE, SET FALSE', calling_role);
        ELSE
            EXECUTE format('GRANT %I TO ticket_allocation_owner', calling_role);
        END IF;
    END LOOP;
END
$$;
