-- Counters are statistics: a field someone overwrote with a non-integer is reset, never fatal.
local function bump(key, field, n)
  local r = redis.pcall('HINCRBY', key, field, n)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'OOM', 1, true) then error(r) end
    redis.call('HSET', key, field, n)
    return n
  end
  return r
end
