-- api.applied_migrations() RETURNS SETOF text
-- The ids of the versioned migrations applied to this database (yoyo's
-- _yoyo_migration table), for the service's readiness check (GET /readyz),
-- which compares them with the migrations it ships. Errors: none.
CREATE OR REPLACE FUNCTION api.applied_migrations()
RETURNS SETOF text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT migration_id FROM public._yoyo_migration ORDER BY migration_id
$$;
