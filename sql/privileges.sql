-- Who may call what: the one list, applied last (sql/load.sql), after every
-- function exists. Only the owner touches tables and helpers (schema
-- ticket_allocation, not even visible to the calling roles). The API
-- functions are SECURITY DEFINER with a pinned search_path, so they run with
-- the owner's rights and cannot be redirected to look-alike objects.
-- The roles (sql/server/roles.sql, created once per server by a superuser):
--   ticket_allocation_api    buys and reads: the buyer-facing service
--   ticket_allocation_psql   the same grants, for people given psql access (a login of its own)
--   ticket_allocation_admin  everything the API role may, plus the admin functions
-- One line per function of schema api, naming every role that may call it:
-- tests/sql/test_privileges.py reads these lines and fails on a function of
-- api without one, on a line whose roles are not one of the two sets above,
-- and on any role's EXECUTE that differs from them. A function not listed
-- is executable by nobody but the owner (default privileges revoke EXECUTE
-- from PUBLIC). A GRANT to a role that does not exist fails the migrate: run
-- sql/server/roles.sql first.

REVOKE ALL ON ALL TABLES IN SCHEMA ticket_allocation FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ticket_allocation, api FROM PUBLIC;

GRANT USAGE ON SCHEMA api TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;

-- Buying and reading: the buyer-facing roles, and the admin role.
GRANT EXECUTE ON FUNCTION api.get_ticket_option TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.purchase_tickets TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.purchase_tickets_batch TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.get_purchase TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.list_purchases TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.list_purchases_page TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.default_hold_ttl TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.hold_tickets TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.hold_tickets_batch TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.get_hold TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.confirm_hold TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.release_hold TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.place_order TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.place_orders_batch TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.get_order TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.confirm_order TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.release_order TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.idempotency_key_ttl TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.applied_migrations TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.error_catalogue TO ticket_allocation_api, ticket_allocation_psql, ticket_allocation_admin;

-- Administering: the admin role only.
GRANT EXECUTE ON FUNCTION api.create_ticket_option TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.cancel_purchase TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.purge_expired_idempotency_keys TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.check_consistency TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.events_after TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.purge_old_events TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.create_webhook TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.get_webhook TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.list_webhooks TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.delete_webhook TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.list_webhook_deliveries TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.claim_webhook_deliveries TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.finish_webhook_attempt TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.webhook_lag TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.release_expired_holds TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.end_overlong_transactions TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.create_quota TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.get_quota TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.update_quota TO ticket_allocation_admin;
GRANT EXECUTE ON FUNCTION api.cancel_order TO ticket_allocation_admin;
