--[[
  mgHeartbeat: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, workerId, infoJson, pxMs. Returns the server time of the beat.
]]
--- @include "includes/keys"
--- @include "includes/time"

local now = now_ms()
local px = tonumber(ARGV[4])
redis.call('ZADD', WORKERS, fmt(now), ARGV[2])
redis.call('SET', P .. 'worker:' .. ARGV[2], ARGV[3], 'PX', px)
redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', '(' .. fmt(now - 10 * px))
return now
