-- One checkout on option n (as buy.sql picks it): hold 1 ticket, then confirm the hold, two
-- statements (two transactions), as the HTTP checkout makes two requests.
\set n random(1, :noptions)
SELECT id AS hold_id FROM hold_tickets(CAST('00000000-0000-4000-8000-' || lpad(CAST(:n AS text), 12, '0') AS uuid), gen_random_uuid(), 1) \gset
SELECT (purchase).id FROM confirm_hold(CAST(:hold_id AS uuid));
