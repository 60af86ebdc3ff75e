-- wrk script of the "hot" workload (bench/run.py): every request buys 1 ticket
-- of the one option listed in BENCH_OPTIONS_FILE. The logic is in common.lua.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")
