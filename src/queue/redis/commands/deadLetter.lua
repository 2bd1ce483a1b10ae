--[[
  mgDeadLetter: KEYS are the twelve of includes/keys, ARGV[1] the key prefix.
  ARGV: P, worker, id, reason, ttlMs, sign (1|0). A no-op unless the worker holds the entry. Returns
  dead letters to sign.
]]
--- @include "includes/keys"
--- @include "includes/time"
--- @include "includes/deadLetter"

local worker, id = ARGV[2], ARGV[3]
if ARGV[6] == '1' then DEADS = {} end
if redis.call('HGET', OWNER, id) ~= worker then return {} end
redis.call('ZREM', INFLIGHT, id)
redis.call('HDEL', OWNER, id)
dead_letter(id, ARGV[4], now_ms(), ARGV[5])
return DEADS or {}
