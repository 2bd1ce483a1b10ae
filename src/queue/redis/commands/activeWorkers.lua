--[[
  mgActiveWorkers: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, timeoutMs. Returns flat {id, lastHeartbeat, infoJson|'', ...}.
]]
--- @include "includes/keys"
--- @include "includes/time"

local now = now_ms()
local rows = redis.call('ZRANGEBYSCORE', WORKERS, fmt(now - tonumber(ARGV[2])), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('GET', P .. 'worker:' .. rows[i]) or ''
end
return out
