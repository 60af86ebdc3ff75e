-- One purchase of 1 ticket on option n, picked from 1..:noptions (pgbench -D noptions=N).
-- bench/run.py gives option n the id 00000000-0000-4000-8000-<n as 12 digits>.
\set n random(1, :noptions)
SELECT * FROM purchase_tickets(CAST('00000000-0000-4000-8000-' || lpad(CAST(:n AS text), 12, '0') AS uuid), gen_random_uuid(), 1);
