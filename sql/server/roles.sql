-- The roles of ticket-allocation. Run once per PostgreSQL server, as a
-- superuser or a role with CREATEROLE (the embedded server, the tests and
-- docker compose do it for you); then give each a password and create the
-- database:
--
--   ALTER ROLE ticket_allocation_owner PASSWORD '...';
--   ALTER ROLE ticket_allocation_api PASSWORD '...';
--   ALTER ROLE ticket_allocation_admin PASSWORD '...';
--   CREATE DATABASE ticket_allocation OWNER ticket_allocation_owner;
--
-- ticket_allocation_owner owns the schemas: migrations run as it
--   (MIGRATE_DATABASE_URL), and the API functions run with its rights.
-- ticket_allocation_api is what the service serves buyers with (DATABASE_URL):
--   it may only EXECUTE the buying and reading functions of schema api
--   (sql/privileges.sql), never touch a table.
-- ticket_allocation_admin is what the service runs admin calls with, after
--   checking ADMIN_TOKEN (ADMIN_DATABASE_URL): creating options, cancelling
--   purchases, housekeeping, the books check. Neither role is a member of the
--   other, so the API role cannot become the admin role (no SET ROLE).
--
-- Both calling roles find the API by name (search_path = api) and fail fast:
-- a call that cannot get its lock or finish in time fails (the service answers
-- 503) instead of hanging, and a session left idle inside a transaction (a psql
-- user's open BEGIN holding an option's lock) is ended. The functions refuse
-- to run in a session that lifted these limits (sql/session_limits.sql).
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
