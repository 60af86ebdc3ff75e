-- One order of 3 lines of 1 ticket on the options of group g (options 3g-2, 3g-1, 3g, which share
-- a quota: bench/run.py), picked from 1..:noptions / 3 (pgbench -D noptions=N), bought at once.
\set g random(1, :noptions / 3)
SELECT id FROM place_order(gen_random_uuid(), ARRAY[
    (CAST('00000000-0000-4000-8000-' || lpad(CAST(3 * :g - 2 AS text), 12, '0') AS uuid), 1),
    (CAST('00000000-0000-4000-8000-' || lpad(CAST(3 * :g - 1 AS text), 12, '0') AS uuid), 1),
    (CAST('00000000-0000-4000-8000-' || lpad(CAST(3 * :g AS text), 12, '0') AS uuid), 1)]::order_line[]);
