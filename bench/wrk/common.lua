-- Shared by the wrk scripts of bench/run.py (loaded with dofile from each one).
--
-- Environment:
--   BENCH_OPTIONS_FILE  a file with one ticket option id per line (required)
--   BENCH_READ_PERCENT  percent of requests that are GET /ticket_options/{id};
--                       the rest are purchases of quantity 1 (default 0)
--
-- Each thread counts the statuses it sees in its own Lua state; done() adds
-- them up with thread:get and prints one line "BENCH_JSON {...}" for run.py.

local threads = {}
-- held, confirmed: counted by checkout.lua only, ordered by orders.lua only (0 for the purchase workloads).
local counters = {"s200", "s201", "s404", "s409", "s503", "s2xx", "s3xx", "s4xx", "s5xx", "other", "held", "confirmed",
                  "ordered"}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

ids = {}  -- global: paths.lua reads it
local read_percent = 0
local json_headers = {["Content-Type"] = "application/json"}

function init(args)
   -- tid is set by setup() before init() runs in the thread.
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
   local path = os.getenv("BENCH_OPTIONS_FILE")
   if path == nil then error("BENCH_OPTIONS_FILE is not set") end
   for line in io.lines(path) do
      if #line > 0 then ids[#ids + 1] = line end
   end
   if #ids == 0 then error("no option ids in " .. path) end
   read_percent = tonumber(os.getenv("BENCH_READ_PERCENT") or "0")
   for _, name in ipairs(counters) do _G[name] = 0 end
end

-- A random version 4 UUID, built from 16-bit pieces.
local function uuid4()
   local r = math.random
   return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
      r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff),
      0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

function request()
   local id = ids[math.random(#ids)]
   if read_percent > 0 and math.random(100) <= read_percent then
      return wrk.format("GET", "/ticket_options/" .. id, {}, nil)
   end
   local body = '{"quantity": 1, "user_id": "' .. uuid4() .. '"}'
   return wrk.format("POST", "/ticket_options/" .. id .. "/purchases", json_headers, body)
end

function response(status, headers, body)
   if status == 200 then s200 = s200 + 1
   elseif status == 201 then s201 = s201 + 1
   elseif status == 404 then s404 = s404 + 1
   elseif status == 409 then s409 = s409 + 1
   elseif status == 503 then s503 = s503 + 1
   end
   if status >= 200 and status < 300 then s2xx = s2xx + 1
   elseif status >= 300 and status < 400 then s3xx = s3xx + 1
   elseif status >= 400 and status < 500 then s4xx = s4xx + 1
   elseif status >= 500 and status < 600 then s5xx = s5xx + 1
   else other = other + 1
   end
end

function done(summary, latency, requests)
   local total = {}
   for _, name in ipairs(counters) do total[name] = 0 end
   for _, thread in ipairs(threads) do
      for _, name in ipairs(counters) do
         total[name] = total[name] + (tonumber(thread:get(name)) or 0)
      end
   end
   local parts = {}
   local function add(key, value) parts[#parts + 1] = string.format('"%s": %.0f', key, value) end
   for _, name in ipairs(counters) do add(name, total[name]) end
   add("requests", summary.requests)
   add("duration_us", summary.duration)
   add("bytes", summary.bytes)
   add("err_connect", summary.errors.connect)
   add("err_read", summary.errors.read)
   add("err_write", summary.errors.write)
   add("err_timeout", summary.errors.timeout)
   add("err_status", summary.errors.status)
   add("lat_mean_us", latency.mean)
   add("lat_max_us", latency.max)
   add("lat_p50_us", latency:percentile(50))
   add("lat_p90_us", latency:percentile(90))
   add("lat_p99_us", latency:percentile(99))
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
