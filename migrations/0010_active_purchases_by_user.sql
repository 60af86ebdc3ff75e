-- transactional: false
-- A user's active purchases of an option, for the max_per_user check: the
-- index holds only active purchases, so the check reads what the user holds,
-- not the cancelled purchases of their history.
--
-- Locks (README, Migrations): CREATE INDEX CONCURRENTLY takes a SHARE UPDATE
-- EXCLUSIVE lock, so purchases and cancels go on while it builds; it cannot
-- run in a transaction, hence `transactional: false` above (yoyo runs this
-- migration outside one). IF NOT EXISTS: a build interrupted half-way leaves
-- an INVALID index; drop it and migrate again (README).
-- depends: 0007_api_schema

CREATE INDEX CONCURRENTLY IF NOT EXISTS purchases_option_user_active_idx
    ON ticket_allocation.purchases (ticket_option_id, user_id) INCLUDE (quantity)
    WHERE status = 'active';
