--[[
  mgStats: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P. Returns {llen x4, inflight, delayed, dead, dispatched, completed, requeued}.
]]
--- @include "includes/keys"

local c = redis.call('HMGET', COUNTERS, 'dispatched', 'completed', 'requeued')
return {
  redis.call('LLEN', PENDING.critical), redis.call('LLEN', PENDING.high), redis.call('LLEN', PENDING.normal), redis.call('LLEN', PENDING.low),
  redis.call('ZCARD', INFLIGHT), redis.call('ZCARD', DELAYED), redis.call('HLEN', DEAD),
  tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0,
}
