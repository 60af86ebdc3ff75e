-- Holds bounded by the option's owner: max_hold_seconds caps the lifetime of
-- any hold of the option (a hold that asks for more, or for the default,
-- gets this much), so that one buyer cannot lock tickets up for a day.
--
-- Locks (README, Migrations): a column with a constant default (catalog only,
-- no rewrite); its CHECK is added NOT VALID (catalog only) and then
-- VALIDATEd, which scans the table under SHARE UPDATE EXCLUSIVE (reads and
-- writes go on). Run it with the new version of the service.
-- depends: 0010_active_purchases_by_user

-- 30 minutes: pretix's default reservation time; the hold default (10 minutes) fits in it.
ALTER TABLE ticket_allocation.ticket_options ADD COLUMN max_hold_seconds integer NOT NULL DEFAULT 1800;
ALTER TABLE ticket_allocation.ticket_options
    ADD CONSTRAINT ticket_options_max_hold_seconds_range CHECK (max_hold_seconds BETWEEN 1 AND 86400) NOT VALID;
ALTER TABLE ticket_allocation.ticket_options VALIDATE CONSTRAINT ticket_options_max_hold_seconds_range;

ALTER TYPE api.ticket_option ADD ATTRIBUTE max_hold_seconds integer;
-- It gains p_max_hold_seconds; post-apply re-creates it.
DROP FUNCTION IF EXISTS api.create_ticket_option(text, text, integer, integer, text, text);
