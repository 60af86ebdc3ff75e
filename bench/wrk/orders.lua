-- Shared by the wrk scripts of the "orders" workloads (bench/run.py): POST /orders of 3 lines of 1
-- ticket, the 3 options of a group sharing a quota. BENCH_OPTIONS_FILE has one group a line (its
-- three option ids, comma-separated); each order picks a random group. A 201 is an order (its 3
-- purchases); counts `ordered` beside the statuses.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

local groups = {}
local json_headers = {["Content-Type"] = "application/json"}
local count_status = response
local common_init = init

local function uuid4()
   local r = math.random
   return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
      r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff),
      0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

function init(args)
   common_init(args)
   for _, line in ipairs(ids) do
      local lines = {}
      for id in line:gmatch("[^,]+") do
         lines[#lines + 1] = '{"ticket_option_id": "' .. id .. '", "quantity": 1}'
      end
      groups[#groups + 1] = "[" .. table.concat(lines, ", ") .. "]"
   end
end

function request()
   local body = '{"user_id": "' .. uuid4() .. '", "lines": ' .. groups[math.random(#groups)] .. '}'
   return wrk.format("POST", "/orders", json_headers, body)
end

function response(status, headers, body)
   count_status(status, headers, body)
   if status == 201 then ordered = ordered + 1 end
end
