-- Batches that never wait for a lock (issue 19): purchase_tickets_batch,
-- hold_tickets_batch and place_orders_batch gain p_skip_locked (default
-- false: psql callers wait as before), and their outcomes say when a request
-- was deferred (its option was locked by another transaction: neither
-- refused nor granted).
--
-- Locks (README, Migrations): catalog only (an attribute added to three
-- composite types no table uses; functions dropped, re-created by
-- post-apply). Run it before the new version of the service, which passes
-- p_skip_locked; the old one keeps working with it (the new argument has a
-- default, the new attribute comes last).
-- depends: 0012_quotas_orders

ALTER TYPE api.purchase_outcome ADD ATTRIBUTE deferred boolean;
ALTER TYPE api.hold_outcome ADD ATTRIBUTE deferred boolean;
ALTER TYPE api.order_outcome ADD ATTRIBUTE deferred boolean;
-- They gain p_skip_locked (and decide_batch its OUT deferred); post-apply re-creates them.
DROP FUNCTION IF EXISTS api.purchase_tickets_batch(api.ticket_request[]);
DROP FUNCTION IF EXISTS api.hold_tickets_batch(api.ticket_request[]);
DROP FUNCTION IF EXISTS api.place_orders_batch(api.order_request[]);
DROP FUNCTION IF EXISTS ticket_allocation.decide_batch(api.ticket_request[], text[], jsonb[], api.refusal[]);
