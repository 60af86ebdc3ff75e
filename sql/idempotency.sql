-- Idempotency keys: a request sent again with the same key gets the first
-- outcome instead of being carried out twice. The key is claimed and
-- remembered inside the caller's transaction, so an outcome never commits
-- without its key, nor a key without its outcome. Only successful outcomes
-- are remembered: a refused request changed nothing, and may be retried.
-- A key belongs to a scope (idempotency_scope): the same key in another scope
-- is another key.

-- idempotency_scope(p_caller text, p_ticket_option_id uuid DEFAULT NULL, p_user_id uuid DEFAULT NULL)
--     RETURNS text
-- The scope of a key: the caller (whatever names it to the service, e.g. a
-- digest of its API token; null for an anonymous caller) and, for a purchase,
-- the option and the user it buys for. So one caller's or user's key never
-- blocks, or reveals, another's.
CREATE OR REPLACE FUNCTION ticket_allocation.idempotency_scope(
    p_caller text, p_ticket_option_id uuid DEFAULT NULL, p_user_id uuid DEFAULT NULL)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE WHEN p_ticket_option_id IS NULL THEN format('%s|ticket_option', p_caller)
                ELSE format('%s|purchase|%s|%s', p_caller, p_ticket_option_id, p_user_id) END
$$;

-- hold_idempotency_scope(p_caller text, p_ticket_option_id uuid, p_user_id uuid) RETURNS text
-- The scope of a hold's key: as a purchase's, but its own, so that a key
-- used to hold never answers a purchase, nor the other way round.
CREATE OR REPLACE FUNCTION ticket_allocation.hold_idempotency_scope(
    p_caller text, p_ticket_option_id uuid, p_user_id uuid)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT format('%s|hold|%s|%s', p_caller, p_ticket_option_id, p_user_id)
$$;

-- order_idempotency_scope(p_caller text, p_user_id uuid) RETURNS text
-- The scope of an order's key: the caller and the user it orders for (an
-- order names many options), its own, apart from purchases' and holds'.
CREATE OR REPLACE FUNCTION ticket_allocation.order_idempotency_scope(p_caller text, p_user_id uuid)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT format('%s|order|%s', p_caller, p_user_id)
$$;

-- api.idempotency_key_ttl() RETURNS interval
-- How long a key is remembered: ticket_allocation.settings, which only the
-- owner changes (UPDATE ticket_allocation.settings SET idempotency_key_ttl = '48 hours'),
-- so a caller's SET cannot stretch it. Errors: none.
CREATE OR REPLACE FUNCTION api.idempotency_key_ttl()
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
    -- By its key (the one row): under the callers' enable_seqscan = off a scan of even this
    -- table costs 1e10, which made PostgreSQL JIT-compile this statement on every call.
    SELECT idempotency_key_ttl FROM settings WHERE singleton
$$;

-- claim_idempotency_key(p_scope text, p_key text, p_request jsonb, OUT refused refusal,
--                       OUT earlier idempotency_keys)
-- (Two composite OUT parameters, which plpgsql_check's extra warnings flag:
-- the caller reads both, as claim.refused and claim.earlier.)
-- Takes the key of the scope for this transaction. `earlier` is the key's unexpired
-- outcome for the same request, if any (else a row of nulls). `refused`,
-- when not null, says why the request must be refused:
--   TA001 when the key is not 1..255 printable ASCII characters other than the
--         comma (a proxy joins two Idempotency-Key headers with a comma, so a key
--         with one could be two keys; CHECK idempotency_keys_key_rule, migration 0015);
--   TA005 when the key was used in the scope for a different request;
--   TA006 when another transaction holds the scope's key right now.
CREATE OR REPLACE FUNCTION ticket_allocation.claim_idempotency_key(
    p_scope text, p_key text, p_request jsonb, OUT refused api.refusal, OUT earlier ticket_allocation.idempotency_keys)
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
BEGIN
    IF p_key IS NULL OR p_key !~ '^[\x20-\x2b\x2d-\x7e]{1,255}$' THEN
        refused := invalid_argument('idempotency_key', 'must be 1 to 255 printable ASCII characters, no comma');
        RETURN;
    END IF;
    -- Try, not wait: a retry racing its own first attempt is told so at once.
    -- (Re-entrant: a batch holding the key may claim it again.)
    IF NOT pg_try_advisory_xact_lock(hashtextextended(jsonb_build_array('idempotency_key', p_scope, p_key)::text, 0)) THEN
        refused := refusal_of('idempotency_key_in_flight', p_key);
        RETURN;
    END IF;
    SELECT * INTO earlier FROM idempotency_keys WHERE scope = p_scope AND key = p_key AND expires_at > now();
    IF FOUND AND earlier.request <> p_request THEN
        refused := refusal_of('idempotency_key_reused', p_key, earlier.request::text);
    END IF;
END;
$$;

-- remember_idempotency_keys(p_scopes text[], p_keys text[], p_requests jsonb[], p_outcome text, p_ids uuid[])
--     RETURNS void
-- Records, for each key of its scope, the outcome of its request: p_ids[i],
-- a ticket option, purchase, hold or order as p_outcome says, until
-- now() + idempotency_key_ttl(). Call after claim_idempotency_key in the
-- same transaction; expired entries are replaced.
CREATE OR REPLACE FUNCTION ticket_allocation.remember_idempotency_keys(
    p_scopes text[], p_keys text[], p_requests jsonb[], p_outcome text, p_ids uuid[])
RETURNS void
LANGUAGE sql
SET search_path = ticket_allocation, api, pg_temp
AS $$
    INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, purchase_id, hold_id, order_id, expires_at)
    SELECT k.scope, k.key, k.request,
           CASE p_outcome WHEN 'ticket_option' THEN k.id END, CASE p_outcome WHEN 'purchase' THEN k.id END,
           CASE p_outcome WHEN 'hold' THEN k.id END, CASE p_outcome WHEN 'order' THEN k.id END,
           now() + idempotency_key_ttl()
    FROM unnest(p_scopes, p_keys, p_requests, p_ids) AS k (scope, key, request, id)
    ON CONFLICT (scope, key) DO UPDATE
    SET request = EXCLUDED.request,
        ticket_option_id = EXCLUDED.ticket_option_id,
        purchase_id = EXCLUDED.purchase_id,
        hold_id = EXCLUDED.hold_id,
        order_id = EXCLUDED.order_id,
        created_at = EXCLUDED.created_at,
        expires_at = EXCLUDED.expires_at
$$;

-- api.purge_expired_idempotency_keys(p_chunk integer DEFAULT 10000) RETURNS integer
-- Admin. Deletes at most p_chunk expired keys (they are already ignored),
-- oldest first, and returns how many. Call it again, each call in its own
-- transaction, until it returns less than p_chunk: a backlog of millions is
-- purged in bounded steps, none near statement_timeout, each holding its
-- locks briefly (the service passes its own chunk, service/db.py PURGE_CHUNK,
-- and compares with it). The keys are picked through the expires_at index
-- and deleted by row address (= ANY of an array of ctids: no join whose plan
-- could scan the table); SKIP LOCKED lets two purgers share a backlog.
-- Errors: TA001 when p_chunk is outside 1..100000.
CREATE OR REPLACE FUNCTION api.purge_expired_idempotency_keys(p_chunk integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    purged integer;
BEGIN
    IF p_chunk IS NULL OR p_chunk NOT BETWEEN 1 AND 100000 THEN
        PERFORM raise_invalid_argument('chunk', 'must be a whole number from 1 to 100000');
    END IF;
    DELETE FROM idempotency_keys
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM idempotency_keys
        WHERE expires_at <= now()
        ORDER BY expires_at
        LIMIT p_chunk
        FOR UPDATE SKIP LOCKED))
      AND expires_at <= now();
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END;
$$;
