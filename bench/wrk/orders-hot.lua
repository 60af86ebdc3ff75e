-- wrk script of the "orders-hot" workload (bench/run.py): 3-line orders, one group of options.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/orders.lua")
