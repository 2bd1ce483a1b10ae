--[[
  mgProgress: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, jobId, json, keepMs. Returns {now, cancelRequested (1|0)}.
]]
--- @include "includes/keys"
--- @include "includes/time"

local now = now_ms()
local keep = tonumber(ARGV[4])
redis.call('HSET', P .. 'progress', ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'progressidx', fmt(now), ARGV[2])
local old = redis.call('ZRANGEBYSCORE', P .. 'progressidx', '-inf', '(' .. fmt(now - keep), 'LIMIT', 0, 100)
for _, id in ipairs(old) do
  redis.call('HDEL', P .. 'progress', id)
  redis.call('ZREM', P .. 'progressidx', id)
end
return {now, redis.call('EXISTS', P .. 'cancel:' .. ARGV[2])}
