-- Schemas: `api` holds only what callers may use (the functions, their
-- argument and result types); `ticket_allocation` holds the tables, views and
-- internal helpers, which no calling role may even look up. post-apply
-- re-creates every function of sql/ in its schema.
--
-- Locks (README, Migrations): every statement here changes the catalog only
-- (no table is rewritten or scanned), each taking an ACCESS EXCLUSIVE lock on
-- its table for milliseconds, all in one transaction. Run it with the new
-- version of the service: the old one calls functions that move here.
-- depends: 0006_visible_names

CREATE SCHEMA ticket_allocation;
CREATE SCHEMA api;

-- New functions (every role's, every later migration's) are not executable by
-- PUBLIC: sql/privileges.sql grants each to the role that may call it.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- PostgreSQL 15 stopped granting CREATE on public to everyone, but a cluster
-- upgraded from an older version keeps the grant: take it back. Only the
-- schema's owner may (pg_database_owner since PostgreSQL 15; on an upgraded
-- cluster the bootstrap superuser, who must then run the REVOKE itself).
DO $$
BEGIN
    IF pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'USAGE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    ELSIF has_schema_privilege('public', 'public', 'CREATE') THEN
        RAISE WARNING 'everyone may create objects in schema public'
            USING HINT = 'As a superuser, run: REVOKE CREATE ON SCHEMA public FROM PUBLIC;';
    END IF;
END
$$;

-- The names rule backs a CHECK (0006): it moves, the others are re-created.
ALTER FUNCTION name_problem(text) SET SCHEMA ticket_allocation;
ALTER FUNCTION ticket_allocation.name_problem(text) SET search_path = ticket_allocation, api, pg_temp;

-- The old functions live in public; they are re-created in api and ticket_allocation.
DO $$
DECLARE
    old_function regprocedure;
BEGIN
    FOR old_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    LOOP
        EXECUTE format('DROP FUNCTION %s', old_function);
    END LOOP;
END
$$;
DROP TYPE purchase_outcome;

-- `allocation` held what remains; the name now says so (`total` is the allocation).
ALTER TABLE ticket_options RENAME COLUMN allocation TO remaining;
ALTER TABLE ticket_options
    RENAME CONSTRAINT ticket_options_allocation_not_negative TO ticket_options_remaining_not_negative;

ALTER TABLE ticket_options SET SCHEMA ticket_allocation;
ALTER TABLE purchases SET SCHEMA ticket_allocation;
ALTER TABLE tickets SET SCHEMA ticket_allocation;
ALTER TABLE idempotency_keys SET SCHEMA ticket_allocation;
ALTER VIEW purchase_receipts SET SCHEMA ticket_allocation;
ALTER TYPE refusal SET SCHEMA api;

-- Settings only the owner changes: a caller's SET cannot lift them.
CREATE TABLE ticket_allocation.settings (
    singleton  boolean  PRIMARY KEY DEFAULT true CONSTRAINT settings_one_row CHECK (singleton),
    -- How long an idempotency key is remembered.
    idempotency_key_ttl  interval  NOT NULL DEFAULT '24 hours'
        CONSTRAINT settings_idempotency_key_ttl_range CHECK (idempotency_key_ttl BETWEEN '0' AND '30 days'),
    -- The most a calling session may set these to (sql/session_limits.sql):
    -- beyond them, a session could hold an option's lock for long.
    max_lock_timeout  interval  NOT NULL DEFAULT '60 seconds'
        CONSTRAINT settings_max_lock_timeout_positive CHECK (max_lock_timeout > '0'),
    max_statement_timeout  interval  NOT NULL DEFAULT '60 seconds'
        CONSTRAINT settings_max_statement_timeout_positive CHECK (max_statement_timeout > '0'),
    max_idle_in_transaction_session_timeout  interval  NOT NULL DEFAULT '10 seconds'
        CONSTRAINT settings_max_idle_positive CHECK (max_idle_in_transaction_session_timeout > '0')
);
-- Keeps a TTL set the old way (ALTER DATABASE ... SET ticket_allocation.idempotency_key_ttl).
INSERT INTO ticket_allocation.settings (idempotency_key_ttl)
VALUES (coalesce(nullif(current_setting('ticket_allocation.idempotency_key_ttl', true), '')::interval, '24 hours'));

-- The resources as callers see them: exactly the public fields.
CREATE TYPE api.ticket_option AS (
    id            uuid,
    name          text,
    "desc"        text,
    remaining     integer,
    sold          integer,
    total         integer,
    max_per_user  integer,
    created_at    timestamptz
);
CREATE TYPE api.purchase AS (
    id                uuid,
    ticket_option_id  uuid,
    user_id           uuid,
    quantity          integer,
    status            text,
    ticket_ids        uuid[],
    created_at        timestamptz,
    cancelled_at      timestamptz
);
-- A page of purchases, and the cursor of the next one (null: this is the last).
CREATE TYPE api.purchase_page AS (
    purchases               api.purchase[],
    next_before_created_at  timestamptz,
    next_before_id          uuid
);
-- The answer to one request of a batch: a refusal, or the purchase.
CREATE TYPE api.purchase_outcome AS (
    ordinal  integer,
    refusal  api.refusal,
    receipt  api.purchase
);
