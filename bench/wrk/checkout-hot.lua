-- wrk script of the "checkout-hot" workload (bench/run.py): hold then confirm, one option.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/checkout.lua")
