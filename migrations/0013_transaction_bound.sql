-- The longest a transaction of a calling role may last (issue 17): a psql
-- session that keeps its transaction busy (a statement every few seconds, so
-- never idle) would otherwise hold an option's lock, or the feed's horizon,
-- for as long as it likes. On PostgreSQL 17+ the roles' transaction_timeout
-- ends it, and the functions that lock refuse a session that set it above
-- this bound (sql/session_limits.sql); on every version the service's
-- watchdog ends, within this bound and its interval, the transactions that
-- outlive it (api.end_overlong_transactions). Only the owner changes it.
-- Locks (README, Migrations): a column with a constant default on the
-- one-row settings table: milliseconds of ACCESS EXCLUSIVE on it, no rewrite.
-- depends: 0007_api_schema

ALTER TABLE ticket_allocation.settings
    ADD COLUMN max_transaction_timeout interval NOT NULL DEFAULT '30 seconds'
        CONSTRAINT settings_max_transaction_timeout_positive CHECK (max_transaction_timeout > '0');
