-- Idempotency keys: a request sent again with the same key gets the first
-- outcome instead of being carried out twice. The key is claimed and
-- remembered inside the caller's transaction, so an outcome never commits
-- without its key, nor a key without its outcome. Only successful outcomes
-- are remembered: a refused request changed nothing, and may be retried.

-- idempotency_key_ttl() RETURNS interval
-- How long a key is remembered: the setting ticket_allocation.idempotency_key_ttl
-- (e.g. ALTER DATABASE ... SET ticket_allocation.idempotency_key_ttl = '48 hours'),
-- 24 hours when unset.
CREATE OR REPLACE FUNCTION idempotency_key_ttl()
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT coalesce(nullif(current_setting('ticket_allocation.idempotency_key_ttl', true), ''), '24 hours')::interval
$$;

-- claim_idempotency_key(p_key text, p_request jsonb, OUT refused refusal, OUT earlier idempotency_keys)
-- (Two composite OUT parameters, which plpgsql_check's extra warnings flag:
-- the caller reads both, as claim.refused and claim.earlier.)
-- Takes the key for this transaction. `earlier` is the key's unexpired
-- outcome for the same request, if any (else a row of nulls). `refused`,
-- when not null, says why the request must be refused:
--   TA001 when the key is not 1..255 printable ASCII characters;
--   TA005 when the key was used for a different request;
--   TA006 when another transaction holds the key right now.
CREATE OR REPLACE FUNCTION claim_idempotency_key(
    p_key text, p_request jsonb, OUT refused refusal, OUT earlier idempotency_keys)
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_key IS NULL OR p_key !~ '^[\x20-\x7e]{1,255}$' THEN
        refused := invalid_argument('idempotency_key', 'must be 1 to 255 printable ASCII characters');
        RETURN;
    END IF;
    -- Try, not wait: a retry racing its own first attempt is told so at once.
    -- (Re-entrant: a batch holding the key may claim it again.)
    IF NOT pg_try_advisory_xact_lock(hashtextextended('idempotency_key:' || p_key, 0)) THEN
        refused := ROW('TA006',
                       format('a request with idempotency key %s is still in progress', p_key),
                       NULL, 'Retry in a moment to get its outcome.', NULL);
        RETURN;
    END IF;
    SELECT * INTO earlier FROM idempotency_keys WHERE key = p_key AND expires_at > now();
    IF FOUND AND earlier.request <> p_request THEN
        refused := idempotency_key_reused(p_key, earlier.request);
    END IF;
END;
$$;

-- idempotency_key_reused(p_key text, p_first_request jsonb) RETURNS refusal
-- The TA005 refusal for a key first used for p_first_request.
CREATE OR REPLACE FUNCTION idempotency_key_reused(p_key text, p_first_request jsonb)
RETURNS refusal
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT ROW('TA005', format('idempotency key %s was already used for a different request', p_key),
               format('first request: %s', p_first_request), 'Use a new key for a new request.', NULL)::refusal
$$;

-- remember_idempotency_keys(p_keys text[], p_requests jsonb[], p_ticket_option_ids uuid[], p_purchase_ids uuid[])
--     RETURNS void
-- Records, for each key, the outcome of its request (one of the two ids, the
-- other null) until now() + idempotency_key_ttl(). Call after
-- claim_idempotency_key in the same transaction; expired entries are replaced.
CREATE OR REPLACE FUNCTION remember_idempotency_keys(
    p_keys text[], p_requests jsonb[], p_ticket_option_ids uuid[], p_purchase_ids uuid[])
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO idempotency_keys (key, request, ticket_option_id, purchase_id, expires_at)
    SELECT k.key, k.request, k.ticket_option_id, k.purchase_id, now() + idempotency_key_ttl()
    FROM unnest(p_keys, p_requests, p_ticket_option_ids, p_purchase_ids)
         AS k (key, request, ticket_option_id, purchase_id)
    ON CONFLICT (key) DO UPDATE
    SET request = EXCLUDED.request,
        ticket_option_id = EXCLUDED.ticket_option_id,
        purchase_id = EXCLUDED.purchase_id,
        created_at = EXCLUDED.created_at,
        expires_at = EXCLUDED.expires_at
$$;

-- purge_expired_idempotency_keys() RETURNS integer
-- Deletes at most 10,000 expired keys (they are already ignored), oldest
-- first, and returns how many. Call it again, each call in its own
-- transaction, until it returns less than 10,000: a backlog of millions is
-- purged in bounded steps, none near statement_timeout, each holding its
-- locks briefly. The keys are picked through the expires_at index and
-- deleted by primary key (= ANY of an array: no join whose plan could scan
-- the table); SKIP LOCKED lets two purgers share a backlog.
-- Errors: none.
CREATE OR REPLACE FUNCTION purge_expired_idempotency_keys()
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
    WITH purged AS (
        DELETE FROM idempotency_keys
        WHERE key = ANY (ARRAY(
            SELECT key FROM idempotency_keys
            WHERE expires_at <= now()
            ORDER BY expires_at
            LIMIT 10000
            FOR UPDATE SKIP LOCKED))
          AND expires_at <= now()
        RETURNING 1)
    SELECT count(*)::integer FROM purged
$$;
