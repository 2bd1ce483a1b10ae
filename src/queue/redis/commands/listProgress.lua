--[[
  mgListProgress: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, staleMs. Returns flat {jobId, updatedAt, json, cancelRequested (1|0), ...}.
]]
--- @include "includes/keys"
--- @include "includes/time"

local now = now_ms()
local rows = redis.call('ZRANGEBYSCORE', P .. 'progressidx', fmt(now - tonumber(ARGV[2])), '+inf', 'WITHSCORES', 'LIMIT', 0, 500)
local out = {}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('HGET', P .. 'progress', rows[i]) or ''
  out[#out + 1] = redis.call('EXISTS', P .. 'cancel:' .. rows[i])
end
return out
