--[[
  mgReclaim: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, enableRequeue (1|0), maxRequeue, breakerThreshold, blockMs, ttlMs, sign (1|0). Returns
  {requeued, dead, dead letters to sign}.
]]
--- @include "includes/keys"
--- @include "includes/time"
--- @include "includes/bump"
--- @include "includes/prioOf"
--- @include "includes/deadLetter"

local enable, maxRequeue, threshold, blockMs, ttl = ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if ARGV[7] == '1' then DEADS = {} end
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', '(' .. fmt(now), 'LIMIT', 0, 1000)
local requeued, dead = {}, {}
for _, id in ipairs(ids) do
  local owner = redis.call('HGET', OWNER, id)
  redis.call('ZREM', INFLIGHT, id)
  redis.call('HDEL', OWNER, id)
  if owner then
    local strikes = bump(STRIKES, owner, 1)
    if strikes >= threshold then
      redis.call('SET', P .. 'blocked:' .. owner, '1', 'PX', blockMs)
      redis.call('HDEL', STRIKES, owner)
    end
  end
  local bk = P .. 'batch:' .. id
  if redis.call('HEXISTS', bk, 'payload') == 0 then
    dead_letter(id, wire_error('MG_ERR_MALFORMED_BATCH', 'unknown or malformed batch (lease expired)'), now, ttl)
    dead[#dead + 1] = id
  else
    local attempts = tonumber(redis.call('HGET', bk, 'attempts')) or 0
    if (not enable) or attempts > maxRequeue then
      dead_letter(id, wire_error('MG_ERR_LEASE_EXPIRED', 'lease expired after ' .. attempts .. ' attempts'), now, ttl)
      dead[#dead + 1] = id
    else
      redis.call('LPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
      bump(COUNTERS, 'requeued', 1)
      requeued[#requeued + 1] = id
    end
  end
end
local old = redis.call('ZRANGEBYSCORE', DEADIDX, '-inf', '(' .. fmt(now - ttl), 'LIMIT', 0, 100)
for _, id in ipairs(old) do
  redis.call('HDEL', DEAD, id)
  redis.call('ZREM', DEADIDX, id)
  if not redis.call('HGET', OWNER, id) then redis.call('DEL', P .. 'batch:' .. id) end
end
return {requeued, dead, DEADS or {}}
