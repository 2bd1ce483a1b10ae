--[[
  mgWithdraw: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, job, ttlMs, ids... Removes the job's listed batches from every pending list (one pass per
  list, order kept), from delayed and in flight; drops manifest and results; leaves withdrawn:<job>.
]]
--- @include "includes/keys"

local job, ttl = ARGV[2], ARGV[3]
local ids, removed = {}, 0
local listed = {}
if #ARGV >= 4 then
  for i = 4, #ARGV do listed[#listed + 1] = ARGV[i] end
else
  -- No ids given (a cancellation from the dashboard): every batch of the job waiting or in flight.
  for _, pr in ipairs(PRIOS) do
    for _, id in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do listed[#listed + 1] = id end
  end
  for _, id in ipairs(redis.call('ZRANGE', DELAYED, 0, -1)) do listed[#listed + 1] = id end
  for _, id in ipairs(redis.call('ZRANGE', INFLIGHT, 0, -1)) do listed[#listed + 1] = id end
end
for _, id in ipairs(listed) do
  local bk = P .. 'batch:' .. id
  if not ids[id] and redis.call('HGET', bk, 'job') == job then
    ids[id] = true
    removed = removed + 1
    redis.call('DEL', bk)
    redis.call('ZREM', INFLIGHT, id)
    redis.call('HDEL', OWNER, id)
    redis.call('ZREM', DELAYED, id)
  end
end
if removed > 0 then
  for _, pr in ipairs(PRIOS) do
    local list = PENDING[pr]
    local all = redis.call('LRANGE', list, 0, -1)
    local keep, dropped = {}, false
    for _, id in ipairs(all) do
      if ids[id] then dropped = true else keep[#keep + 1] = id end
    end
    if dropped then
      redis.call('DEL', list)
      for i = 1, #keep, 1000 do
        redis.call('RPUSH', list, unpack(keep, i, math.min(i + 999, #keep)))
      end
    end
  end
end
redis.call('DEL', P .. 'job:' .. job, P .. 'results:' .. job)
redis.call('SET', P .. 'withdrawn:' .. job, '1', 'PX', ttl)
return removed
