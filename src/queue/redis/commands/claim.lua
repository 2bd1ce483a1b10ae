--[[
  mgClaim: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, worker, max, leaseMs, strict (1|0), weights critical/high/normal/low, random[1..max] in
  [0,1).
]]
--- @include "includes/keys"
--- @include "includes/time"
--- @include "includes/prioOf"
--- @include "includes/attemptsOf"

local worker, max, lease, strict = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local weights = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', fmt(now), 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', DELAYED, id)
  redis.call('RPUSH', PENDING[prio_of(redis.call('HGET', P .. 'batch:' .. id, 'priority'))], id)
end
if redis.call('EXISTS', P .. 'blocked:' .. worker) == 1 then return {} end
local out = {}
local deadline = fmt(now + lease)
for i = 1, max do
  local first, total, cands = nil, 0, {}
  for k, pr in ipairs(PRIOS) do
    if redis.call('LLEN', PENDING[pr]) > 0 then
      if not first then first = pr end
      if weights[k] > 0 then
        total = total + weights[k]
        cands[#cands + 1] = k
      end
    end
  end
  if not first then break end
  local chosen = first
  if not strict and total > 0 then
    local r = (tonumber(ARGV[9 + i]) or 0) * total
    for _, k in ipairs(cands) do
      chosen = PRIOS[k]
      if r < weights[k] then break end
      r = r - weights[k]
    end
  end
  local id = redis.call('LPOP', PENDING[chosen])
  local bk = P .. 'batch:' .. id
  redis.call('ZADD', INFLIGHT, deadline, id)
  redis.call('HSET', OWNER, id, worker)
  local h = redis.call('HMGET', bk, 'job', 'role', 'priority', 'payload', 'mac')
  local attempts = attempts_of(bk)
  if redis.call('EXISTS', bk) == 0 then
    out[#out + 1] = {0, id, 'unknown batch id'}
  elseif not h[4] then
    out[#out + 1] = {0, id, 'malformed batch: no payload'}
  elseif not h[1] then
    out[#out + 1] = {0, id, 'malformed batch: no job'}
  elseif h[2] ~= 'baseline' and h[2] ~= 'candidate' then
    out[#out + 1] = {0, id, 'malformed batch: bad role'}
  elseif not attempts then
    out[#out + 1] = {0, id, 'malformed batch: attempts is not a count'}
  else
    redis.call('HSET', bk, 'attempts', attempts + 1)
    out[#out + 1] = {1, id, h[1], h[2], prio_of(h[3]), h[4], h[5] or '', attempts + 1}
  end
end
return out
