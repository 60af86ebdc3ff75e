-- Idempotency keys belong to a scope: the caller (the service passes a digest of its API
-- token) and, for a purchase, the option and the user. A key used in one scope is unknown in
-- every other, so nobody can block, or learn about, another caller's or user's key.
-- depends: 0003_purchase_batches

-- They gain a scope argument; post-apply re-creates them (IF EXISTS: see 0002).
DROP FUNCTION IF EXISTS claim_idempotency_key(text, jsonb);
DROP FUNCTION IF EXISTS remember_idempotency_keys(text[], jsonb[], uuid[], uuid[]);
DROP FUNCTION IF EXISTS create_ticket_option(text, text, integer, integer, text);
DROP FUNCTION IF EXISTS purchase_tickets(uuid, uuid, integer, text);
DROP FUNCTION IF EXISTS purchase_tickets_batch(uuid, uuid[], integer[], text[]);

ALTER TABLE idempotency_keys ADD COLUMN scope text;
-- Keys remembered so far were used without a caller: give them the scope idempotency_scope()
-- (sql/idempotency.sql) computes for an anonymous caller, so their retries still replay.
UPDATE idempotency_keys
SET scope = CASE
    WHEN purchase_id IS NOT NULL THEN format('|purchase|%s|%s',
        request -> 'purchase_tickets' ->> 'ticket_option_id', request -> 'purchase_tickets' ->> 'user_id')
    ELSE '|ticket_option' END;
ALTER TABLE idempotency_keys
    ALTER COLUMN scope SET NOT NULL,
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (scope, key);
