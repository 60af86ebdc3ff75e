-- wrk script of the history points (bench/history.py): GET a random path of
-- the file BENCH_OPTIONS_FILE (one path per line, e.g. /purchases/<id>).
-- Counting and the BENCH_JSON line are common.lua's.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

function request()
   return wrk.format("GET", ids[math.random(#ids)], {}, nil)
end
