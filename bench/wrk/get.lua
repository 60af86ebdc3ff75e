-- wrk script of the "get" workload (bench/run.py): every request is GET
-- /ticket_options/{id} of an option picked at random from BENCH_OPTIONS_FILE
-- (BENCH_READ_PERCENT is 100). The logic is in common.lua.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")
