--[[
  mgRelease: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, worker, id, delayMs, countAttempt (1|0), reason, maxRequeue, ttlMs, sign (1|0). Returns {0
  not owned | 1 requeued | 2 dead, dead letters to sign}.
]]
--- @include "includes/keys"
--- @include "includes/time"
--- @include "includes/bump"
--- @include "includes/prioOf"
--- @include "includes/deadLetter"

local worker, id, ttl = ARGV[2], ARGV[3], ARGV[8]
if ARGV[9] == '1' then DEADS = {} end
if redis.call('HGET', OWNER, id) ~= worker then return {0, {}} end
local now = now_ms()
redis.call('ZREM', INFLIGHT, id)
redis.call('HDEL', OWNER, id)
local bk = P .. 'batch:' .. id
if redis.call('HEXISTS', bk, 'payload') == 0 then
  dead_letter(id, ARGV[6], now, ttl)
  return {2, DEADS or {}}
end
local attempts = tonumber(redis.call('HGET', bk, 'attempts')) or 0
if ARGV[5] == '1' then
  if attempts >= tonumber(ARGV[7]) + 1 then
    dead_letter(id, with_detail(ARGV[6], '(gave up after ' .. attempts .. ' attempts)'), now, ttl)
    return {2, DEADS or {}}
  end
  redis.call('ZADD', DELAYED, fmt(now + math.max(0, tonumber(ARGV[4]))), id)
  bump(COUNTERS, 'requeued', 1)
else
  if attempts > 0 then redis.call('HSET', bk, 'attempts', attempts - 1) end
  redis.call('LPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
end
return {1, {}}
