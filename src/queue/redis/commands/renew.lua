--[[
  mgRenew: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, worker, leaseMs, ids... Returns the ids the worker no longer holds.
]]
--- @include "includes/keys"
--- @include "includes/time"

local worker = ARGV[2]
local deadline = fmt(now_ms() + tonumber(ARGV[3]))
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', OWNER, id) == worker and redis.call('ZSCORE', INFLIGHT, id) then
    redis.call('ZADD', INFLIGHT, 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
