-- Deliveries so far, or nil when the field is not a non-negative integer (a malformed batch).
local function attempts_of(bk)
  local a = tonumber(redis.call('HGET', bk, 'attempts'))
  if a == nil or a < 0 or a ~= math.floor(a) or a > 1000000 then return nil end
  return a
end
