-- The order in which migrate re-creates the functions of sql/, after the
-- versioned migrations (migrations/post-apply.py reads the \ir lines below;
-- nothing else is applied). A SQL-language function is checked when it is
-- created, so a file comes after the files whose functions its SQL functions
-- call. privileges.sql goes last: it grants EXECUTE on what the others
-- created. A new file in sql/ gets its line here, or migrate refuses to run.
--
-- psql runs it too, as the owner, on a migrated database (it re-creates the
-- functions and grants them; only migrate also drops the functions that sql/
-- no longer defines):  psql "$MIGRATE_DATABASE_URL" -1 -f sql/load.sql
\ir errors.sql
\ir session_limits.sql
\ir idempotency.sql
\ir events.sql
\ir locking.sql
\ir holds.sql
\ir quotas.sql
\ir ticket_options.sql
\ir purchases.sql
\ir orders.sql
\ir webhooks.sql
\ir consistency.sql
\ir migrations_applied.sql
\ir privileges.sql
