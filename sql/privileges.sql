-- Who may do what (applied after every function exists, see
-- migrations/post-apply.py). Only the owner touches tables. The API role
-- (sql/server/roles.sql) may EXECUTE the API below and nothing else; those
-- functions are SECURITY DEFINER with a pinned search_path, so they run with
-- the owner's rights and cannot be redirected to look-alike objects.
-- Internal helpers and check_consistency() stay the owner's.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticket_allocation_api') THEN
        GRANT USAGE ON SCHEMA public TO ticket_allocation_api;
        GRANT EXECUTE ON FUNCTION
            create_ticket_option(text, text, integer, integer, text, text),
            get_ticket_option(uuid),
            purchase_tickets(uuid, uuid, integer, text, text),
            purchase_tickets_batch(uuid, uuid[], integer[], text[], text[]),
            get_purchase(uuid),
            list_purchases(uuid, integer, uuid, timestamptz, uuid),
            list_purchases_ticket_budget(),
            cancel_purchase(uuid),
            idempotency_key_ttl(),
            purge_expired_idempotency_keys(),
            applied_migrations()
        TO ticket_allocation_api;
    END IF;
END
$$;
