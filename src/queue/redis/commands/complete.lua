--[[
  mgComplete: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, worker, id, job, role, frame, ttlMs, mac|''. Returns 1 when the worker still held the
  lease.
]]
--- @include "includes/keys"
--- @include "includes/bump"

local worker, id = ARGV[2], ARGV[3]
if redis.call('EXISTS', P .. 'withdrawn:' .. ARGV[4]) == 1 then return 0 end
local s = P .. 'results:' .. ARGV[4]
if ARGV[8] ~= '' then
  redis.call('XADD', s, '*', 'kind', 'results', 'batch', id, 'role', ARGV[5], 'worker', worker, 'frame', ARGV[6], 'mac', ARGV[8])
else
  redis.call('XADD', s, '*', 'kind', 'results', 'batch', id, 'role', ARGV[5], 'worker', worker, 'frame', ARGV[6])
end
redis.call('PEXPIRE', s, ARGV[7])
if redis.call('HGET', OWNER, id) == worker then
  redis.call('ZREM', INFLIGHT, id)
  redis.call('HDEL', OWNER, id)
  redis.call('DEL', P .. 'batch:' .. id)
  bump(COUNTERS, 'completed', 1)
  return 1
end
return 0
