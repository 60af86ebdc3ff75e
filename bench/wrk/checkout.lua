-- Shared by the wrk scripts of the "checkout" workloads (bench/run.py): hold 1 ticket of a
-- listed option, then confirm the hold. A thread's holds answered 201 wait in a queue; its next
-- request confirms the oldest, else makes a new hold, so about half the requests hold and half
-- confirm. Counts `held` (hold 201s) and `confirmed` (confirm 201s) beside the statuses.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

local waiting = {}  -- hold ids to confirm, oldest first
local json_headers = {["Content-Type"] = "application/json"}
local count_status = response

local function uuid4()
   local r = math.random
   return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
      r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff),
      0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

function request()
   if #waiting > 0 then
      return wrk.format("POST", "/holds/" .. table.remove(waiting, 1) .. "/confirm", {}, nil)
   end
   local body = '{"quantity": 1, "user_id": "' .. uuid4() .. '"}'
   return wrk.format("POST", "/ticket_options/" .. ids[math.random(#ids)] .. "/holds", json_headers, body)
end

function response(status, headers, body)
   count_status(status, headers, body)
   if status ~= 201 or body == nil then return end
   if body:find('"ticket_ids"', 1, true) then  -- a purchase: a confirm's answer
      confirmed = confirmed + 1
   else
      local id = body:match('"id": "([%x-]+)"')
      if id then
         held = held + 1
         waiting[#waiting + 1] = id
      end
   end
end
