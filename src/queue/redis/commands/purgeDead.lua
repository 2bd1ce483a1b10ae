--[[
  mgPurgeDead: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P. Drops every dead letter and its kept batch; returns how many.
]]
--- @include "includes/keys"

local ids = redis.call('HKEYS', DEAD)
for _, id in ipairs(ids) do
  if not redis.call('HGET', OWNER, id) then redis.call('DEL', P .. 'batch:' .. id) end
end
redis.call('DEL', DEAD, DEADIDX)
return #ids
