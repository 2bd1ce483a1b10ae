--[[
  mgRequestCancel: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, jobId, ttlMs. Returns 1 when the job has a live progress entry or manifest.
]]
--- @include "includes/keys"

local known = redis.call('HEXISTS', P .. 'progress', ARGV[2]) == 1 or redis.call('EXISTS', P .. 'job:' .. ARGV[2]) == 1
if not known then return 0 end
redis.call('SET', P .. 'cancel:' .. ARGV[2], '1', 'PX', ARGV[3])
return 1
