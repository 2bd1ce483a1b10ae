--[[
  mgPriorityCounts: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P. Returns in-flight then dead-lettered counts, critical/high/normal/low (at most 10,000 of
  each).
]]
--- @include "includes/keys"
--- @include "includes/prioOf"

local function count(ids)
  local c = {critical = 0, high = 0, normal = 0, low = 0}
  for _, id in ipairs(ids) do
    local p = prio_of(redis.call('HGET', P .. 'batch:' .. id, 'priority'))
    c[p] = c[p] + 1
  end
  return c
end
local i = count(redis.call('ZRANGE', INFLIGHT, 0, 9999))
local d = count(redis.call('ZRANGE', DEADIDX, 0, 9999))
return {i.critical, i.high, i.normal, i.low, d.critical, d.high, d.normal, d.low}
