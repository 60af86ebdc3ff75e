-- wrk script of the "spread" workload (bench/run.py): every request buys 1
-- ticket of an option picked at random from BENCH_OPTIONS_FILE (1,000 ids).
-- The logic is in common.lua.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")
