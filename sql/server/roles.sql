-- The roles of ticket-allocation. Run once per PostgreSQL server, as a
-- superuser or a role with CREATEROLE (the embedded server and the tests do
-- it for you); then give both a password and create the database:
--
--   ALTER ROLE ticket_allocation_owner PASSWORD '...';
--   ALTER ROLE ticket_allocation_api PASSWORD '...';
--   CREATE DATABASE ticket_allocation OWNER ticket_allocation_owner;
--
-- ticket_allocation_owner owns the schema: migrations run as it
--   (MIGRATE_DATABASE_URL), and the API functions run with its rights.
-- ticket_allocation_api is what the service connects as (DATABASE_URL): it may
--   only EXECUTE the API functions (sql/privileges.sql grants them), never
--   touch a table. Its timeouts make a call that cannot get its lock or
--   finish in time fail fast (the service answers 503) instead of hanging.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_owner') THEN
        CREATE ROLE ticket_allocation_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_api') THEN
        CREATE ROLE ticket_allocation_api LOGIN;
    END IF;
END
$$;
ALTER ROLE ticket_allocation_api SET lock_timeout = '1s';
ALTER ROLE ticket_allocation_api SET statement_timeout = '5s';
