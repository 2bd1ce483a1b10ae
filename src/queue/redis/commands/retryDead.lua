--[[
  mgRetryDead: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, id|''. Requeues dead batches that still have their payload; returns how many.
]]
--- @include "includes/keys"
--- @include "includes/prioOf"

local ids
if ARGV[2] ~= '' then ids = {ARGV[2]} else ids = redis.call('ZRANGE', DEADIDX, 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  local bk = P .. 'batch:' .. id
  if redis.call('HEXISTS', DEAD, id) == 1 and redis.call('HEXISTS', bk, 'payload') == 1 then
    redis.call('HSET', bk, 'attempts', 0)
    redis.call('RPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
    redis.call('HDEL', DEAD, id)
    redis.call('ZREM', DEADIDX, id)
    n = n + 1
  end
end
return n
