-- One read of option n, picked from 1..:noptions (pgbench -D noptions=N); see buy.sql.
\set n random(1, :noptions)
SELECT * FROM get_ticket_option(CAST('00000000-0000-4000-8000-' || lpad(CAST(:n AS text), 12, '0') AS uuid));
