-- wrk script of the "read" workload (bench/run.py): BENCH_READ_PERCENT (90) of
-- the requests are GET /ticket_options/{id}, the rest buy 1 ticket, each on an
-- option picked at random from BENCH_OPTIONS_FILE. The logic is in common.lua.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")
