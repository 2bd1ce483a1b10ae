--[[
  The keys every command receives, in this order (declared so Cluster routes by them), and the key
  prefix of the queue (ARGV[1]) from which commands derive dynamic keys (batch:<id>, results:<job>, …).
  Key layout: the header of src/queue/redis/backend.ts.
]]
local P = ARGV[1]
local INFLIGHT, OWNER, DELAYED, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local DEAD, DEADIDX, STRIKES, WORKERS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local PRIOS = {'critical', 'high', 'normal', 'low'}
local PENDING = {critical = KEYS[9], high = KEYS[10], normal = KEYS[11], low = KEYS[12]}
