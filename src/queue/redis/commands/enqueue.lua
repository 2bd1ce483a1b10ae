--[[
  mgEnqueue: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, then groups of 6 (id, job, role, priority, payload, mac|''). Idempotent: a batch that is
  already pending, delayed or in flight is left alone (a retried enqueue never duplicates an id); a
  dead-lettered or vanished one is published afresh. Pushes wake tokens. Returns how many were new.
]]
--- @include "includes/keys"
--- @include "includes/bump"
--- @include "includes/prioOf"

local n = 0
local pend = nil
local function live(id, bk)
  if redis.call('EXISTS', bk) == 0 or redis.call('HEXISTS', DEAD, id) == 1 then return false end
  if redis.call('ZSCORE', INFLIGHT, id) or redis.call('ZSCORE', DELAYED, id) then return true end
  if not pend then
    pend = {}
    for _, pr in ipairs(PRIOS) do
      for _, x in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do pend[x] = true end
    end
  end
  return pend[id] == true
end
for i = 2, #ARGV, 6 do
  local id = ARGV[i]
  local bk = P .. 'batch:' .. id
  if not live(id, bk) then
    redis.call('DEL', bk)
    redis.call('HSET', bk, 'job', ARGV[i + 1], 'role', ARGV[i + 2], 'priority', ARGV[i + 3], 'payload', ARGV[i + 4], 'attempts', 0)
    if ARGV[i + 5] ~= '' then redis.call('HSET', bk, 'mac', ARGV[i + 5]) end
    redis.call('HDEL', DEAD, id)
    redis.call('ZREM', DEADIDX, id)
    redis.call('RPUSH', PENDING[prio_of(ARGV[i + 3])], id)
    if pend then pend[id] = true end
    n = n + 1
  end
end
if n > 0 then
  bump(COUNTERS, 'dispatched', n)
  -- Wake tokens for workers blocked in waitForWork (a hint: a lost token costs a poll interval).
  local wake = P .. 'wake'
  for i = 1, math.min(n, 256) do redis.call('LPUSH', wake, '1') end
  redis.call('LTRIM', wake, 0, 255)
  redis.call('PEXPIRE', wake, 60000)
end
return n
