-- The server's clock in ms: every lease deadline and heartbeat is measured on it, never a client's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Integer formatting for scores and deadlines (no exponent notation).
local function fmt(n) return string.format('%d', n) end
