-- Quotas: one capacity counted by several ticket options (pretix's quotas).
-- An option may be in any number of quotas; a purchase or hold of q tickets
-- of an option succeeds only if the option has q on sale AND every quota of
-- it has q left (size - sold - held), decided under the locks of
-- lock_options (sql/locking.sql: options, then quotas). A quota's sold and
-- held are the sums of its options' (move_tickets keeps them so, in the
-- transaction that changes the options); sold + held <= size is a CHECK.
-- Reads count the tickets of holds past expires_at as on sale at once, in
-- the quota as in the option.

-- option_quota_ids(p_ticket_option_id uuid) RETURNS uuid[]
-- The quotas the option is in, in id order (quota_options_by_option).
CREATE OR REPLACE FUNCTION ticket_allocation.option_quota_ids(p_ticket_option_id uuid)
RETURNS uuid[]
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(SELECT qo.quota_id FROM quota_options qo WHERE qo.ticket_option_id = p_ticket_option_id
                 ORDER BY qo.quota_id)
$$;

-- quota_option_ids(p_quota_id uuid) RETURNS uuid[]
-- The options the quota counts, in id order (its primary key).
CREATE OR REPLACE FUNCTION ticket_allocation.quota_option_ids(p_quota_id uuid)
RETURNS uuid[]
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ARRAY(SELECT qo.ticket_option_id FROM quota_options qo WHERE qo.quota_id = p_quota_id
                 ORDER BY qo.ticket_option_id)
$$;

-- quota_expired_unreclaimed(p_quota_id uuid) RETURNS integer
-- The tickets of the quota's options' holds past expires_at but still stored
-- `held` (expired_unreclaimed of each option: live holds only).
CREATE OR REPLACE FUNCTION ticket_allocation.quota_expired_unreclaimed(p_quota_id uuid)
RETURNS integer
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT coalesce(sum(expired_unreclaimed(o)), 0)::integer FROM unnest(quota_option_ids(p_quota_id)) AS o
$$;

-- quota_resource(p_quota quotas) RETURNS api.quota
-- The quota as callers see it, as of clock(): held without, and remaining
-- with, the tickets of expired holds not reclaimed yet.
CREATE OR REPLACE FUNCTION ticket_allocation.quota_resource(p_quota ticket_allocation.quotas)
RETURNS api.quota
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT ROW(p_quota.id, p_quota.name, p_quota.size, p_quota.sold, p_quota.held - expired.tickets,
               p_quota.size - p_quota.sold - p_quota.held + expired.tickets, quota_option_ids(p_quota.id),
               p_quota.created_at)::api.quota
    FROM (SELECT quota_expired_unreclaimed(p_quota.id) AS tickets) AS expired
$$;

-- option_available(p_ticket_option_id uuid, p_on_sale integer) RETURNS integer
-- The most one purchase of the option could get now: p_on_sale (what the
-- option has on sale now), bounded by what each of its quotas has left now.
CREATE OR REPLACE FUNCTION ticket_allocation.option_available(p_ticket_option_id uuid, p_on_sale integer)
RETURNS integer
LANGUAGE sql
STABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT least(p_on_sale, min((quota_resource(q)).remaining))
    FROM quotas q
    WHERE q.id = ANY (option_quota_ids(p_ticket_option_id))
$$;

-- quota_argument_refusal(p_name text, p_size integer, p_ticket_option_ids uuid[]) RETURNS api.refusal
-- TA001 for the first argument of create_quota or update_quota that breaks
-- a rule (a null argument is left out: update_quota keeps what it has):
-- name blank, with control or bidirectional-override characters, or over
-- 200 characters; size negative; options more than 100, null or repeated.
CREATE OR REPLACE FUNCTION ticket_allocation.quota_argument_refusal(
    p_name text, p_size integer, p_ticket_option_ids uuid[])
RETURNS api.refusal
LANGUAGE sql
IMMUTABLE
SET search_path = ticket_allocation, api, pg_temp
AS $$
    SELECT CASE
        WHEN name_problem(p_name) IS NOT NULL THEN invalid_argument('name', name_problem(p_name))
        WHEN char_length(p_name) > 200 THEN invalid_argument('name', 'must be at most 200 characters')
        WHEN p_size < 0 THEN invalid_argument('size', 'must be a whole number >= 0')
        WHEN cardinality(p_ticket_option_ids) > 100
            THEN invalid_argument('ticket_option_ids', 'must be at most 100 ticket option ids')
        WHEN array_position(p_ticket_option_ids, NULL) IS NOT NULL
            THEN invalid_argument('ticket_option_ids', 'must not contain null')
        WHEN (SELECT count(DISTINCT o) FROM unnest(p_ticket_option_ids) AS o) < cardinality(p_ticket_option_ids)
            THEN invalid_argument('ticket_option_ids', 'must name each ticket option at most once')
    END
$$;

-- count_quota(p_quota_id uuid, p_size integer, p_ticket_option_ids uuid[]) RETURNS void
-- Under the locks of the options (and of the quota, when it exists): makes
-- the quota count exactly p_ticket_option_ids, with sold and held summed
-- from them anew (exact: their expired holds were just reclaimed), at size
-- p_size. Raises TA002 for an option that does not exist and TA016 when
-- p_size is below what they sold and hold now.
CREATE OR REPLACE FUNCTION ticket_allocation.count_quota(
    p_quota_id uuid, p_size integer, p_ticket_option_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    missing uuid;
    counted record;
BEGIN
    SELECT o INTO missing FROM unnest(p_ticket_option_ids) AS o
    WHERE NOT EXISTS (SELECT FROM ticket_options t WHERE t.id = o)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        PERFORM raise_refusal(refusal_of('ticket_option_not_found', missing::text));
    END IF;
    SELECT coalesce(sum(t.sold), 0)::integer AS sold, coalesce(sum(t.held), 0)::integer AS held INTO counted
    FROM ticket_options t WHERE t.id = ANY (p_ticket_option_ids);
    IF p_size < counted.sold + counted.held THEN
        PERFORM raise_refusal(refusal_of('quota_too_small', p_size::text, counted.sold::text, counted.held::text,
                                         (counted.sold + counted.held)::text));
    END IF;
    UPDATE quotas SET size = p_size, sold = counted.sold, held = counted.held, updated_at = now()
    WHERE id = p_quota_id;
    DELETE FROM quota_options WHERE quota_id = p_quota_id AND ticket_option_id <> ALL (p_ticket_option_ids);
    INSERT INTO quota_options (quota_id, ticket_option_id)
    SELECT p_quota_id, o FROM unnest(p_ticket_option_ids) AS o
    ON CONFLICT DO NOTHING;
END;
$$;

-- api.create_quota(p_name text, p_size integer, p_ticket_option_ids uuid[] DEFAULT '{}') RETURNS api.quota
-- Admin. A new quota of p_size tickets counting the options named (at most
-- 100): from now on a purchase or hold of any of them must fit it too. Its
-- sold and held start as what its options sold and hold now, which p_size
-- must cover. Locks the options (lock_options) while it counts them.
-- Errors: TA001 when name is null, blank, has control or bidirectional-override
--         characters or is over 200 characters, size is null or negative,
--         the ids are null, over 100, contain null or repeat one;
--         TA002 when an option does not exist; TA016 when p_size is below
--         what the options sold and hold now; TA008.
CREATE OR REPLACE FUNCTION api.create_quota(p_name text, p_size integer, p_ticket_option_ids uuid[] DEFAULT '{}')
RETURNS api.quota
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    new_id constant uuid := gen_random_uuid();
BEGIN
    PERFORM assert_session_limits();
    IF p_name IS NULL THEN
        PERFORM raise_invalid_argument('name', 'must not be blank');
    ELSIF p_size IS NULL THEN
        PERFORM raise_invalid_argument('size', 'must be a whole number >= 0');
    ELSIF p_ticket_option_ids IS NULL THEN
        PERFORM raise_invalid_argument('ticket_option_ids', 'must be an array (empty for none)');
    ELSIF (quota_argument_refusal(p_name, p_size, p_ticket_option_ids)).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(quota_argument_refusal(p_name, p_size, p_ticket_option_ids));
    END IF;
    PERFORM lock_options(p_ticket_option_ids);
    INSERT INTO quotas (id, name, size) VALUES (new_id, p_name, p_size);
    PERFORM count_quota(new_id, p_size, p_ticket_option_ids);
    RETURN get_quota(new_id);
END;
$$;

-- api.get_quota(p_id uuid) RETURNS api.quota
-- Admin. The quota: size, what its options sold and hold (unexpired holds),
-- what remains (size - sold - held), its options.
-- Errors: TA015 when no quota has that id.
CREATE OR REPLACE FUNCTION api.get_quota(p_id uuid)
RETURNS api.quota
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_quota quotas;
BEGIN
    SELECT * INTO found_quota FROM quotas WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('quota_not_found', p_id::text));
    END IF;
    RETURN quota_resource(found_quota);
END;
$$;

-- api.update_quota(p_id uuid, p_size integer DEFAULT NULL, p_ticket_option_ids uuid[] DEFAULT NULL)
--     RETURNS api.quota
-- Admin. Changes the quota's size and/or the options it counts (null: keep).
-- Never below what its options (the new ones) sold and hold now: sold and
-- held are counted anew from them. Takes the quota's advisory lock first (so
-- its options cannot change between reading and locking them), then locks
-- its options, old and new, and the quota (lock_options).
-- Errors: TA001 when p_id is null, or as create_quota for size and ids;
--         TA015 when no quota has that id; TA002 when an option does not
--         exist; TA016 when the size is below what the options sold and hold
--         now (the error says how much); TA008.
CREATE OR REPLACE FUNCTION api.update_quota(p_id uuid, p_size integer DEFAULT NULL, p_ticket_option_ids uuid[] DEFAULT NULL)
RETURNS api.quota
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
SET enable_seqscan = off    -- keyed lookups and ordered index walks only, even in plans
SET enable_bitmapscan = off -- cached while the tables were small (README: Plan stability)
AS $$
DECLARE
    found_quota quotas;
    counted uuid[];
BEGIN
    PERFORM assert_session_limits();
    IF p_id IS NULL THEN
        PERFORM raise_invalid_argument('id', 'must not be null');
    ELSIF (quota_argument_refusal(NULL, p_size, p_ticket_option_ids)).sqlstate IS NOT NULL THEN
        PERFORM raise_refusal(quota_argument_refusal(NULL, p_size, p_ticket_option_ids));
    END IF;
    -- Lock order step 0: only update_quota changes a quota's options.
    PERFORM pg_advisory_xact_lock(hashtextextended(jsonb_build_array('quota', p_id)::text, 0));
    SELECT * INTO found_quota FROM quotas WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM raise_refusal(refusal_of('quota_not_found', p_id::text));
    END IF;
    counted := quota_option_ids(p_id);
    PERFORM lock_options(counted || coalesce(p_ticket_option_ids, '{}'::uuid[]), p_quota_ids => ARRAY[p_id]);
    SELECT * INTO found_quota FROM quotas WHERE id = p_id;
    PERFORM count_quota(p_id, coalesce(p_size, found_quota.size), coalesce(p_ticket_option_ids, counted));
    RETURN get_quota(p_id);
END;
$$;
