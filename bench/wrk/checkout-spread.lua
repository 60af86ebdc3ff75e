-- wrk script of the "checkout-spread" workload (bench/run.py): hold then confirm, a random option of 1,000.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/checkout.lua")
