-- wrk script of the "orders-spread" workload (bench/run.py): 3-line orders, a random group of 333.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/orders.lua")
