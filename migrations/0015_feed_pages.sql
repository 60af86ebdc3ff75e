-- transactional: false
-- depends: 0010_active_purchases_by_user
-- Feed pages bounded by what they carry, and idempotency keys without commas (issue 17).
--
-- events.data_bytes: the size of an event's data as the feed sends it (octet_length(data::text)),
-- written with the event (append_events), so that api.events_after can stop a page at a byte
-- budget without reading the data of the events it leaves for the next page. A nullable column
-- without a default: a catalog-only change. Events written before it have none; the feed measures
-- those as it reads them (they are purged after settings.event_retention).
--
-- Idempotency keys lose the comma: a proxy may join two Idempotency-Key header lines into one,
-- with a comma (RFC 9110, 5.3), so a key containing one cannot be told from two keys. The new CHECK
-- replaces idempotency_keys_key_printable the way 0006 replaced a CHECK: NOT VALID first (from then
-- on no new key has a comma), then the stored keys with a comma are deleted (claim_idempotency_key
-- refuses such keys before looking them up, so nothing could reach them again), then VALIDATE.
--
-- Not in a transaction (yoyo runs each statement on its own, see 0010): each ALTER holds its
-- ACCESS EXCLUSIVE lock for milliseconds, and VALIDATE scans idempotency_keys under SHARE UPDATE
-- EXCLUSIVE only, so purchases go on throughout. Every statement may run again after an
-- interrupted run.

ALTER TABLE ticket_allocation.events ADD COLUMN IF NOT EXISTS data_bytes integer;

ALTER TABLE ticket_allocation.idempotency_keys
    DROP CONSTRAINT IF EXISTS idempotency_keys_key_rule,
    ADD CONSTRAINT idempotency_keys_key_rule CHECK (key ~ '^[\x20-\x2b\x2d-\x7e]{1,255}$') NOT VALID;

DELETE FROM ticket_allocation.idempotency_keys WHERE strpos(key, ',') > 0;

ALTER TABLE ticket_allocation.idempotency_keys VALIDATE CONSTRAINT idempotency_keys_key_rule;

ALTER TABLE ticket_allocation.idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_key_printable;
