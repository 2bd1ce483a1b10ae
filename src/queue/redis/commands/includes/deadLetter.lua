--- @include "includes/keys"
--- @include "includes/time"
--- @include "includes/bump"
--[[
  Moves an entry to the dead-letter store (the batch hash is kept so retryDead can requeue it) and
  tells its job on the job's result stream. With hmac_key the caller signs dead letters: a command
  sets DEADS = {} and dead_letter collects (id, job, role, reason) there instead of appending them.
]]
-- A dead letter's reason is a wire error (records.encodeWireError): data, not prose.
local function wire_error(code, message) return cjson.encode({code = code, message = message, retryable = false}) end
-- The same reason with more said; its code is kept (free text from an older worker stays text).
local function with_detail(reason, detail)
  local ok, e = pcall(cjson.decode, reason)
  if ok and type(e) == 'table' and type(e.message) == 'string' then
    e.message = e.message .. ' ' .. detail
    return cjson.encode(e)
  end
  return reason .. ' ' .. detail
end
local DEADS = nil
local function dead_letter(id, reason, now, ttl)
  local h = redis.call('HMGET', P .. 'batch:' .. id, 'job', 'role', 'attempts')
  local e = {id = id, reason = reason, attempts = tonumber(h[3]) or 0, deadAt = now}
  if h[1] then e.jobId = h[1] end
  if h[2] then e.role = h[2] end
  redis.call('HSET', DEAD, id, cjson.encode(e))
  redis.call('ZADD', DEADIDX, fmt(now), id)
  bump(COUNTERS, 'dead', 1)
  local withdrawn = h[1] and redis.call('EXISTS', P .. 'withdrawn:' .. h[1]) == 1
  if withdrawn then
    -- A withdrawn job's coordinator is gone: its dead letters reach nobody.
  elseif DEADS then
    if h[1] then
      DEADS[#DEADS + 1] = id
      DEADS[#DEADS + 1] = h[1]
      DEADS[#DEADS + 1] = h[2] or ''
      DEADS[#DEADS + 1] = reason
    end
  elseif h[1] then
    local s = P .. 'results:' .. h[1]
    if h[2] then
      redis.call('XADD', s, '*', 'kind', 'dead', 'batch', id, 'role', h[2], 'reason', reason)
    else
      redis.call('XADD', s, '*', 'kind', 'dead', 'batch', id, 'reason', reason)
    end
    redis.call('PEXPIRE', s, ttl)
  end
end
