--[[
  mgMissing: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, ids... Of the ids, those neither pending, delayed nor in flight (completed, dead or lost).
]]
--- @include "includes/keys"

local pend = {}
for _, pr in ipairs(PRIOS) do
  for _, x in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do pend[x] = true end
end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local here = redis.call('HEXISTS', P .. 'batch:' .. id, 'payload') == 1 and redis.call('HEXISTS', DEAD, id) == 0
    and (pend[id] or redis.call('ZSCORE', INFLIGHT, id) or redis.call('ZSCORE', DELAYED, id))
  if not here then out[#out + 1] = id end
end
return out
