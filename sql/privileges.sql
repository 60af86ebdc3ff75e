-- Who may call what: the one list (applied after every function exists, see
-- migrations/post-apply.py). Only the owner touches tables and helpers
-- (schema ticket_allocation, not even visible to the calling roles). The API
-- functions are SECURITY DEFINER with a pinned search_path, so they run with
-- the owner's rights and cannot be redirected to look-alike objects.
--   ticket_allocation_api    buys and reads: the buyer-facing service
--   ticket_allocation_psql   the same, for people given psql access (a login of its own)
--   ticket_allocation_admin  everything the API role may, plus the admin functions
-- A function not listed here is executable by nobody but the owner (default
-- privileges revoke EXECUTE from PUBLIC), so a new admin function is safe
-- until it is listed.

REVOKE ALL ON ALL TABLES IN SCHEMA ticket_allocation FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ticket_allocation, api FROM PUBLIC;

DO $$
DECLARE
    buying_and_reading constant text[] := ARRAY[
        'get_ticket_option', 'purchase_tickets', 'purchase_tickets_batch', 'get_purchase', 'list_purchases',
        'list_purchases_page', 'hold_tickets', 'hold_tickets_batch', 'get_hold', 'confirm_hold', 'release_hold',
        'place_order', 'place_orders_batch', 'get_order', 'confirm_order', 'release_order',
        'idempotency_key_ttl', 'applied_migrations'];
    admin constant text[] := ARRAY[
        'create_ticket_option', 'cancel_purchase', 'purge_expired_idempotency_keys', 'check_consistency',
        'events_after', 'purge_old_events',
        'create_webhook', 'get_webhook', 'list_webhooks', 'delete_webhook', 'list_webhook_deliveries',
        'claim_webhook_deliveries', 'finish_webhook_attempt', 'webhook_lag',
        'release_expired_holds', 'end_overlong_transactions',
        'create_quota', 'get_quota', 'update_quota', 'cancel_order'];
    role_functions constant jsonb := jsonb_build_object(
        'ticket_allocation_api', to_jsonb(buying_and_reading),
        'ticket_allocation_psql', to_jsonb(buying_and_reading),
        'ticket_allocation_admin', to_jsonb(buying_and_reading || admin));
    grantee text;
    function_name text;
BEGIN
    FOR grantee IN SELECT jsonb_object_keys(role_functions) LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_roles WHERE rolname = grantee);
        EXECUTE format('GRANT USAGE ON SCHEMA api TO %I', grantee);
        FOR function_name IN SELECT jsonb_array_elements_text(role_functions -> grantee) LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION api.%I TO %I', function_name, grantee);
        END LOOP;
    END LOOP;
END
$$;
