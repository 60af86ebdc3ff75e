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
AS $$
    SELECT coalesce(nullif(current_setting('ticket_allocation.idempotency_key_ttl', true), ''), '24 hours')::interval
$$;

-- claim_idempotency_key(p_key text, p_request jsonb) RETURNS idempotency_keys
-- For a null key: a row of nulls (no idempotency asked). Otherwise takes the
-- key for this transaction and returns its earlier outcome, if an unexpired
-- one exists for the same request (a row of nulls if none).
-- Errors: TA001 when the key is not 1..255 printable ASCII characters;
--         TA005 when the key was used for a different request;
--         TA006 when another transaction holds the key right now.
CREATE OR REPLACE FUNCTION claim_idempotency_key(p_key text, p_request jsonb)
RETURNS idempotency_keys
LANGUAGE plpgsql
AS $$
DECLARE
    earlier idempotency_keys;
BEGIN
    IF p_key IS NULL THEN
        RETURN earlier;
    END IF;
    IF p_key !~ '^[\x20-\x7e]{1,255}$' THEN
        PERFORM raise_invalid_argument('idempotency_key', 'must be 1 to 255 printable ASCII characters');
    END IF;
    -- Try, not wait: a retry racing its own first attempt is told so at once.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('idempotency_key:' || p_key, 0)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA006',
            MESSAGE = format('a request with idempotency key %s is still in progress', p_key),
            HINT = 'Retry in a moment to get its outcome.';
    END IF;
    SELECT * INTO earlier FROM idempotency_keys WHERE key = p_key AND expires_at > now();
    IF FOUND AND earlier.request <> p_request THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TA005',
            MESSAGE = format('idempotency key %s was already used for a different request', p_key),
            DETAIL = format('first request: %s', earlier.request),
            HINT = 'Use a new key for a new request.';
    END IF;
    RETURN earlier;
END;
$$;

-- remember_idempotency_key(p_key text, p_request jsonb, p_ticket_option_id uuid, p_purchase_id uuid)
--     RETURNS void
-- Records the outcome (exactly one of the two ids) of the request made with
-- p_key, until now() + idempotency_key_ttl(). Call after claim_idempotency_key
-- in the same transaction; an expired entry for the key is replaced.
CREATE OR REPLACE FUNCTION remember_idempotency_key(
    p_key text, p_request jsonb, p_ticket_option_id uuid, p_purchase_id uuid)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO idempotency_keys (key, request, ticket_option_id, purchase_id, expires_at)
    VALUES (p_key, p_request, p_ticket_option_id, p_purchase_id, now() + idempotency_key_ttl())
    ON CONFLICT (key) DO UPDATE
    SET request = EXCLUDED.request,
        ticket_option_id = EXCLUDED.ticket_option_id,
        purchase_id = EXCLUDED.purchase_id,
        created_at = EXCLUDED.created_at,
        expires_at = EXCLUDED.expires_at
$$;

-- purge_expired_idempotency_keys() RETURNS integer
-- Deletes expired keys (they are already ignored) and returns how many.
CREATE OR REPLACE FUNCTION purge_expired_idempotency_keys()
RETURNS integer
LANGUAGE sql
AS $$
    WITH purged AS (DELETE FROM idempotency_keys WHERE expires_at <= now() RETURNING 1)
    SELECT count(*)::integer FROM purged
$$;
