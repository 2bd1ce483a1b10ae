/**
 * Redis implementation of the queue `Backend`.
 *
 * Every key of a queue lives under `mg:{<queue>}:` — one hash tag, so one Redis Cluster slot holds
 * the whole queue and the Lua scripts below may touch any of its keys. Every multi-step state change
 * is one script, and every lease deadline and heartbeat is measured with `redis.call('TIME')`, never
 * with a client clock.
 *
 * Keys (after the prefix):
 *   pending:<priority>  LIST of batch ids (FIFO: RPUSH on enqueue, LPOP on claim, LPUSH on hand-back)
 *   batch:<id>          HASH job, role, priority, payload (binary), mac, attempts (deliveries so far)
 *   inflight            ZSET id -> lease deadline (server ms)
 *   owner               HASH id -> workerId holding the lease
 *   delayed             ZSET id -> ready time (retry backoff); claims move due ones to pending first
 *   dead                HASH id -> JSON DeadEntry; the batch hash is kept so `retryDead` can requeue it
 *   deadidx             ZSET id -> deadAt (order, retention)
 *   strikes             HASH workerId -> leases lost since the last circuit break
 *   blocked:<worker>    STRING, PX heartbeat_timeout: the worker's circuit is open
 *   results:<jobId>     STREAM kind=results|dead, batch, role, worker, frame | reason
 *   job:<jobId>         STRING JSON manifest (EX result_ttl_seconds)
 *   withdrawn:<jobId>   STRING, PX result_ttl_seconds: the coordinator withdrew the job; its results are dropped
 *   artifact:<sha256>   STRING binary (EX result_ttl_seconds, refreshed on put)
 *   workers             ZSET workerId -> last heartbeat (server ms)
 *   worker:<id>         STRING JSON WorkerInfo (PX 2 x heartbeat_timeout)
 *   counters            HASH dispatched, completed, requeued, dead
 *   progress            HASH jobId -> JSON JobProgress (published by coordinators, read by the dashboard)
 *   progressidx         ZSET jobId -> last publication (server ms)
 *   cancel:<jobId>      STRING, PX result_ttl: a cancellation was requested from the dashboard
 *   bench               STRING JSON BenchRecord of the last `metaguard bench` sweep
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { tlsOptions, isAuthFailure } from '../tls.js';
import { MetaguardError } from '../../errors.js';
import { createClusterClient, duplicateCluster } from './cluster.js';
import type { QueueConfig } from '../../options/queue.js';
import type { Logger } from '../../observe/log.js';
import { signDead, signResults } from '../messages.js';
import { isRecordId, logMalformed, MalformedRecord, parseManifest, parseWorkerInfo } from '../records.js';
import {
  priorities,
  type BackendNotice,
  type Backend,
  type BatchMessage,
  type Claim,
  type DeadEntry,
  type JobManifest,
  type Priority,
  type QueueStats,
  type ReclaimOutcome,
  type ResultEntry,
  type WorkerInfo,
  type JobProgress,
  type BenchRecord,
} from '../types.js';
import { parseBenchRecord, parseProgress } from '../admin-records.js';
import type { Role } from '../../core/protocol.js';

/** Keys every script receives, in this order (declared so Cluster routes by them). */
const STATIC_KEYS = ['inflight', 'owner', 'delayed', 'counters', 'dead', 'deadidx', 'strikes', 'workers', 'pending:critical', 'pending:high', 'pending:normal', 'pending:low'] as const;

/** Shared prologue of every script. ARGV[1] is the key prefix; dynamic keys derive from it. */
const PROLOGUE = `
local P = ARGV[1]
local INFLIGHT, OWNER, DELAYED, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local DEAD, DEADIDX, STRIKES, WORKERS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local PRIOS = {'critical', 'high', 'normal', 'low'}
local PENDING = {critical = KEYS[9], high = KEYS[10], normal = KEYS[11], low = KEYS[12]}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local function prio_of(p) if p and PENDING[p] then return p end return 'normal' end
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
-- Deliveries so far, or nil when the field is not a non-negative integer (a malformed batch).
local function attempts_of(bk)
  local a = tonumber(redis.call('HGET', bk, 'attempts'))
  if a == nil or a < 0 or a ~= math.floor(a) or a > 1000000 then return nil end
  return a
end
-- With hmac_key the caller signs dead letters: scripts collect them here instead of appending them.
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
`;

const SCRIPTS = {
  /**
   * ARGV: P, then groups of 6 (id, job, role, priority, payload, mac|''). Idempotent: a batch that is
   * already pending, delayed or in flight is left alone (a retried enqueue never duplicates an id); a
   * dead-lettered or vanished one is published afresh. Pushes wake tokens. Returns how many were new.
   */
  mgEnqueue: `
local n = 0
local pend = nil
local function live(id, bk)
  if redis.call('EXISTS', bk) == 0 or redis.call('HEXISTS', DEAD, id) == 1 then return false end
  if redis.call('ZSCORE', INFLIGHT, id) or redis.call('ZSCORE', DELAYED, id) then return true end
  if not pend then
    pend = {}
    for _, pr in ipairs(PRIOS) do
      for _, x in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do pend[x] = true end
    end
  end
  return pend[id] == true
end
for i = 2, #ARGV, 6 do
  local id = ARGV[i]
  local bk = P .. 'batch:' .. id
  if not live(id, bk) then
    redis.call('DEL', bk)
    redis.call('HSET', bk, 'job', ARGV[i + 1], 'role', ARGV[i + 2], 'priority', ARGV[i + 3], 'payload', ARGV[i + 4], 'attempts', 0)
    if ARGV[i + 5] ~= '' then redis.call('HSET', bk, 'mac', ARGV[i + 5]) end
    redis.call('HDEL', DEAD, id)
    redis.call('ZREM', DEADIDX, id)
    redis.call('RPUSH', PENDING[prio_of(ARGV[i + 3])], id)
    if pend then pend[id] = true end
    n = n + 1
  end
end
if n > 0 then
  bump(COUNTERS, 'dispatched', n)
  -- Wake tokens for workers blocked in waitForWork (a hint: a lost token costs a poll interval).
  local wake = P .. 'wake'
  for i = 1, math.min(n, 256) do redis.call('LPUSH', wake, '1') end
  redis.call('LTRIM', wake, 0, 255)
  redis.call('PEXPIRE', wake, 60000)
end
return n
`,
  /** ARGV: P, worker, max, leaseMs, strict (1|0), weights critical/high/normal/low, random[1..max] in [0,1). */
  mgClaim: `
local worker, max, lease, strict = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local weights = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', fmt(now), 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', DELAYED, id)
  redis.call('RPUSH', PENDING[prio_of(redis.call('HGET', P .. 'batch:' .. id, 'priority'))], id)
end
if redis.call('EXISTS', P .. 'blocked:' .. worker) == 1 then return {} end
local out = {}
local deadline = fmt(now + lease)
for i = 1, max do
  local first, total, cands = nil, 0, {}
  for k, pr in ipairs(PRIOS) do
    if redis.call('LLEN', PENDING[pr]) > 0 then
      if not first then first = pr end
      if weights[k] > 0 then
        total = total + weights[k]
        cands[#cands + 1] = k
      end
    end
  end
  if not first then break end
  local chosen = first
  if not strict and total > 0 then
    local r = (tonumber(ARGV[9 + i]) or 0) * total
    for _, k in ipairs(cands) do
      chosen = PRIOS[k]
      if r < weights[k] then break end
      r = r - weights[k]
    end
  end
  local id = redis.call('LPOP', PENDING[chosen])
  local bk = P .. 'batch:' .. id
  redis.call('ZADD', INFLIGHT, deadline, id)
  redis.call('HSET', OWNER, id, worker)
  local h = redis.call('HMGET', bk, 'job', 'role', 'priority', 'payload', 'mac')
  local attempts = attempts_of(bk)
  if redis.call('EXISTS', bk) == 0 then
    out[#out + 1] = {0, id, 'unknown batch id'}
  elseif not h[4] then
    out[#out + 1] = {0, id, 'malformed batch: no payload'}
  elseif not h[1] then
    out[#out + 1] = {0, id, 'malformed batch: no job'}
  elseif h[2] ~= 'baseline' and h[2] ~= 'candidate' then
    out[#out + 1] = {0, id, 'malformed batch: bad role'}
  elseif not attempts then
    out[#out + 1] = {0, id, 'malformed batch: attempts is not a count'}
  else
    redis.call('HSET', bk, 'attempts', attempts + 1)
    out[#out + 1] = {1, id, h[1], h[2], prio_of(h[3]), h[4], h[5] or '', attempts + 1}
  end
end
return out
`,
  /** ARGV: P, worker, leaseMs, ids... Returns the ids the worker no longer holds. */
  mgRenew: `
local worker = ARGV[2]
local deadline = fmt(now_ms() + tonumber(ARGV[3]))
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', OWNER, id) == worker and redis.call('ZSCORE', INFLIGHT, id) then
    redis.call('ZADD', INFLIGHT, 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
`,
  /** ARGV: P, worker, id, job, role, frame, ttlMs, mac|''. Returns 1 when the worker still held the lease. */
  mgComplete: `
local worker, id = ARGV[2], ARGV[3]
if redis.call('EXISTS', P .. 'withdrawn:' .. ARGV[4]) == 1 then return 0 end
local s = P .. 'results:' .. ARGV[4]
if ARGV[8] ~= '' then
  redis.call('XADD', s, '*', 'kind', 'results', 'batch', id, 'role', ARGV[5], 'worker', worker, 'frame', ARGV[6], 'mac', ARGV[8])
else
  redis.call('XADD', s, '*', 'kind', 'results', 'batch', id, 'role', ARGV[5], 'worker', worker, 'frame', ARGV[6])
end
redis.call('PEXPIRE', s, ARGV[7])
if redis.call('HGET', OWNER, id) == worker then
  redis.call('ZREM', INFLIGHT, id)
  redis.call('HDEL', OWNER, id)
  redis.call('DEL', P .. 'batch:' .. id)
  bump(COUNTERS, 'completed', 1)
  return 1
end
return 0
`,
  /**
   * ARGV: P, worker, id, delayMs, countAttempt (1|0), reason, maxRequeue, ttlMs, sign (1|0).
   * Returns {0 not owned | 1 requeued | 2 dead, dead letters to sign}.
   */
  mgRelease: `
local worker, id, ttl = ARGV[2], ARGV[3], ARGV[8]
if ARGV[9] == '1' then DEADS = {} end
if redis.call('HGET', OWNER, id) ~= worker then return {0, {}} end
local now = now_ms()
redis.call('ZREM', INFLIGHT, id)
redis.call('HDEL', OWNER, id)
local bk = P .. 'batch:' .. id
if redis.call('HEXISTS', bk, 'payload') == 0 then
  dead_letter(id, ARGV[6], now, ttl)
  return {2, DEADS or {}}
end
local attempts = tonumber(redis.call('HGET', bk, 'attempts')) or 0
if ARGV[5] == '1' then
  if attempts >= tonumber(ARGV[7]) + 1 then
    dead_letter(id, ARGV[6] .. ' (gave up after ' .. attempts .. ' attempts)', now, ttl)
    return {2, DEADS or {}}
  end
  redis.call('ZADD', DELAYED, fmt(now + math.max(0, tonumber(ARGV[4]))), id)
  bump(COUNTERS, 'requeued', 1)
else
  if attempts > 0 then redis.call('HSET', bk, 'attempts', attempts - 1) end
  redis.call('LPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
end
return {1, {}}
`,
  /**
   * ARGV: P, job, ttlMs, ids... Removes the job's listed batches from every pending list (one pass per
   * list, order kept), from delayed and in flight; drops manifest and results; leaves withdrawn:<job>.
   */
  mgWithdraw: `
local job, ttl = ARGV[2], ARGV[3]
local ids, removed = {}, 0
local listed = {}
if #ARGV >= 4 then
  for i = 4, #ARGV do listed[#listed + 1] = ARGV[i] end
else
  -- No ids given (a cancellation from the dashboard): every batch of the job waiting or in flight.
  for _, pr in ipairs(PRIOS) do
    for _, id in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do listed[#listed + 1] = id end
  end
  for _, id in ipairs(redis.call('ZRANGE', DELAYED, 0, -1)) do listed[#listed + 1] = id end
  for _, id in ipairs(redis.call('ZRANGE', INFLIGHT, 0, -1)) do listed[#listed + 1] = id end
end
for _, id in ipairs(listed) do
  local bk = P .. 'batch:' .. id
  if not ids[id] and redis.call('HGET', bk, 'job') == job then
    ids[id] = true
    removed = removed + 1
    redis.call('DEL', bk)
    redis.call('ZREM', INFLIGHT, id)
    redis.call('HDEL', OWNER, id)
    redis.call('ZREM', DELAYED, id)
  end
end
if removed > 0 then
  for _, pr in ipairs(PRIOS) do
    local list = PENDING[pr]
    local all = redis.call('LRANGE', list, 0, -1)
    local keep, dropped = {}, false
    for _, id in ipairs(all) do
      if ids[id] then dropped = true else keep[#keep + 1] = id end
    end
    if dropped then
      redis.call('DEL', list)
      for i = 1, #keep, 1000 do
        redis.call('RPUSH', list, unpack(keep, i, math.min(i + 999, #keep)))
      end
    end
  end
end
redis.call('DEL', P .. 'job:' .. job, P .. 'results:' .. job)
redis.call('SET', P .. 'withdrawn:' .. job, '1', 'PX', ttl)
return removed
`,
  /** ARGV: P, worker, id, reason, ttlMs, sign (1|0). A no-op unless the worker holds the entry. Returns dead letters to sign. */
  mgDeadLetter: `
local worker, id = ARGV[2], ARGV[3]
if ARGV[6] == '1' then DEADS = {} end
if redis.call('HGET', OWNER, id) ~= worker then return {} end
redis.call('ZREM', INFLIGHT, id)
redis.call('HDEL', OWNER, id)
dead_letter(id, ARGV[4], now_ms(), ARGV[5])
return DEADS or {}
`,
  /** ARGV: P, ids... Of the ids, those neither pending, delayed nor in flight (completed, dead or lost). */
  mgMissing: `
local pend = {}
for _, pr in ipairs(PRIOS) do
  for _, x in ipairs(redis.call('LRANGE', PENDING[pr], 0, -1)) do pend[x] = true end
end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local here = redis.call('HEXISTS', P .. 'batch:' .. id, 'payload') == 1 and redis.call('HEXISTS', DEAD, id) == 0
    and (pend[id] or redis.call('ZSCORE', INFLIGHT, id) or redis.call('ZSCORE', DELAYED, id))
  if not here then out[#out + 1] = id end
end
return out
`,
  /** ARGV: P, enableRequeue (1|0), maxRequeue, breakerThreshold, blockMs, ttlMs, sign (1|0). Returns {requeued, dead, dead letters to sign}. */
  mgReclaim: `
local enable, maxRequeue, threshold, blockMs, ttl = ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if ARGV[7] == '1' then DEADS = {} end
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', '(' .. fmt(now), 'LIMIT', 0, 1000)
local requeued, dead = {}, {}
for _, id in ipairs(ids) do
  local owner = redis.call('HGET', OWNER, id)
  redis.call('ZREM', INFLIGHT, id)
  redis.call('HDEL', OWNER, id)
  if owner then
    local strikes = bump(STRIKES, owner, 1)
    if strikes >= threshold then
      redis.call('SET', P .. 'blocked:' .. owner, '1', 'PX', blockMs)
      redis.call('HDEL', STRIKES, owner)
    end
  end
  local bk = P .. 'batch:' .. id
  if redis.call('HEXISTS', bk, 'payload') == 0 then
    dead_letter(id, 'unknown or malformed batch (lease expired)', now, ttl)
    dead[#dead + 1] = id
  else
    local attempts = tonumber(redis.call('HGET', bk, 'attempts')) or 0
    if (not enable) or attempts > maxRequeue then
      dead_letter(id, 'lease expired after ' .. attempts .. ' attempts', now, ttl)
      dead[#dead + 1] = id
    else
      redis.call('LPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
      bump(COUNTERS, 'requeued', 1)
      requeued[#requeued + 1] = id
    end
  end
end
local old = redis.call('ZRANGEBYSCORE', DEADIDX, '-inf', '(' .. fmt(now - ttl), 'LIMIT', 0, 100)
for _, id in ipairs(old) do
  redis.call('HDEL', DEAD, id)
  redis.call('ZREM', DEADIDX, id)
  if not redis.call('HGET', OWNER, id) then redis.call('DEL', P .. 'batch:' .. id) end
end
return {requeued, dead, DEADS or {}}
`,
  /** ARGV: P, workerId, infoJson, pxMs. Returns the server time of the beat. */
  mgHeartbeat: `
local now = now_ms()
local px = tonumber(ARGV[4])
redis.call('ZADD', WORKERS, fmt(now), ARGV[2])
redis.call('SET', P .. 'worker:' .. ARGV[2], ARGV[3], 'PX', px)
redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', '(' .. fmt(now - 10 * px))
return now
`,
  /** ARGV: P, timeoutMs. Returns flat {id, lastHeartbeat, infoJson|'', ...}. */
  mgActiveWorkers: `
local now = now_ms()
local rows = redis.call('ZRANGEBYSCORE', WORKERS, fmt(now - tonumber(ARGV[2])), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('GET', P .. 'worker:' .. rows[i]) or ''
end
return out
`,
  /** ARGV: P, id|''. Requeues dead batches that still have their payload; returns how many. */
  mgRetryDead: `
local ids
if ARGV[2] ~= '' then ids = {ARGV[2]} else ids = redis.call('ZRANGE', DEADIDX, 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  local bk = P .. 'batch:' .. id
  if redis.call('HEXISTS', DEAD, id) == 1 and redis.call('HEXISTS', bk, 'payload') == 1 then
    redis.call('HSET', bk, 'attempts', 0)
    redis.call('RPUSH', PENDING[prio_of(redis.call('HGET', bk, 'priority'))], id)
    redis.call('HDEL', DEAD, id)
    redis.call('ZREM', DEADIDX, id)
    n = n + 1
  end
end
return n
`,
  /** ARGV: P. Drops every dead letter and its kept batch; returns how many. */
  mgPurgeDead: `
local ids = redis.call('HKEYS', DEAD)
for _, id in ipairs(ids) do
  if not redis.call('HGET', OWNER, id) then redis.call('DEL', P .. 'batch:' .. id) end
end
redis.call('DEL', DEAD, DEADIDX)
return #ids
`,
  /** ARGV: P. Returns {llen x4, inflight, delayed, dead, dispatched, completed, requeued}. */
  mgStats: `
local c = redis.call('HMGET', COUNTERS, 'dispatched', 'completed', 'requeued')
return {
  redis.call('LLEN', PENDING.critical), redis.call('LLEN', PENDING.high), redis.call('LLEN', PENDING.normal), redis.call('LLEN', PENDING.low),
  redis.call('ZCARD', INFLIGHT), redis.call('ZCARD', DELAYED), redis.call('HLEN', DEAD),
  tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0,
}
`,
  /** ARGV: P, jobId, json, keepMs. Returns {now, cancelRequested (1|0)}. */
  mgProgress: `
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
`,
  /** ARGV: P, staleMs. Returns flat {jobId, updatedAt, json, cancelRequested (1|0), ...}. */
  mgListProgress: `
local now = now_ms()
local rows = redis.call('ZRANGEBYSCORE', P .. 'progressidx', fmt(now - tonumber(ARGV[2])), '+inf', 'WITHSCORES', 'LIMIT', 0, 500)
local out = {}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('HGET', P .. 'progress', rows[i]) or ''
  out[#out + 1] = redis.call('EXISTS', P .. 'cancel:' .. rows[i])
end
return out
`,
  /** ARGV: P, jobId, ttlMs. Returns 1 when the job has a live progress entry or manifest. */
  mgRequestCancel: `
local known = redis.call('HEXISTS', P .. 'progress', ARGV[2]) == 1 or redis.call('EXISTS', P .. 'job:' .. ARGV[2]) == 1
if not known then return 0 end
redis.call('SET', P .. 'cancel:' .. ARGV[2], '1', 'PX', ARGV[3])
return 1
`,
  /** ARGV: P. Returns in-flight then dead-lettered counts, critical/high/normal/low (at most 10,000 of each). */
  mgPriorityCounts: `
local function count(ids)
  local c = {critical = 0, high = 0, normal = 0, low = 0}
  for _, id in ipairs(ids) do
    local p = prio_of(redis.call('HGET', P .. 'batch:' .. id, 'priority'))
    c[p] = c[p] + 1
  end
  return c
end
local i = count(redis.call('ZRANGE', INFLIGHT, 0, 9999))
local d = count(redis.call('ZRANGE', DEADIDX, 0, 9999))
return {i.critical, i.high, i.normal, i.low, d.critical, d.high, d.normal, d.low}
`,
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptFn = (...args: unknown[]) => Promise<unknown>;
type Arg = string | number | Buffer;
/**
 * A single-node client or a Cluster client (queue config `cluster_nodes`). Cluster exposes the same
 * command surface; every command here names keys of one hash tag, so it runs on one master.
 */
type RedisClient = Redis;

const ENQUEUE_CHUNK = 500;
const MAX_CLAIM = 1000;
const CONNECT_TIMEOUT_MS = 5000;
const roleSet = new Set<string>(['baseline', 'candidate']);

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function str(v: unknown): string {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v === null || v === undefined) return '';
  return String(v);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** True for Redis's refusal of a write over `maxmemory` (also when hidden behind a MULTI's EXECABORT). */
function isOom(err: unknown): boolean {
  const e = err as { message?: unknown; previousErrors?: unknown[] };
  if (typeof e?.message === 'string' && /\bOOM command not allowed\b/.test(e.message)) return true;
  return Array.isArray(e?.previousErrors) && e.previousErrors.some(isOom);
}

export interface RedisBackendOptions {
  clientName?: string;
  /** Where malformed records read back are reported (`malformed_record`). */
  logger?: Logger;
}

export class RedisBackend implements Backend {
  readonly kind = 'redis';
  readonly #config: QueueConfig;
  readonly #prefix: string;
  readonly #keys: string[];
  readonly #client: RedisClient;
  readonly #clientName: string;
  /** Idle connections for blocking reads, and the ones currently blocked. */
  readonly #idleBlocking: RedisClient[] = [];
  readonly #busyBlocking = new Set<RedisClient>();
  #closed = false;
  #connected = false;
  #lastError: Error | undefined;
  readonly #logger: Logger | undefined;

  constructor(config: QueueConfig, options: RedisBackendOptions = {}) {
    this.#config = config;
    this.#logger = options.logger;
    this.#prefix = `mg:{${config.queue}}:`;
    this.#keys = STATIC_KEYS.map((k) => this.#prefix + k);
    this.#clientName = options.clientName ?? `metaguard:${config.queue}`;
    this.#client = this.#createClient(this.#clientName);
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      this.#client.defineCommand(name, { numberOfKeys: STATIC_KEYS.length, lua: PROLOGUE + lua });
    }
  }

  /** Full key of `name` under this queue's prefix (for tests and tools that inspect Redis directly). */
  key(name: string): string {
    return this.#prefix + name;
  }

  #createClient(connectionName: string): RedisClient {
    const conn = this.#config.connection;
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: true,
      // A command survives ~30 s of reconnect attempts (a Redis restart), then fails with MG_ERR_BACKEND.
      maxRetriesPerRequest: 20,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 2000),
      connectTimeout: CONNECT_TIMEOUT_MS,
      connectionName,
    };
    // Credentials and transport (ACL user, TLS files, Sentinel) apply to every connection.
    const auth: RedisOptions = {};
    if (conn?.username !== undefined) auth.username = conn.username;
    if (conn?.password !== undefined) auth.password = conn.password;
    if (conn?.ssl) auth.tls = tlsOptions(conn.tls, 'queue-config.connection.ssl');
    let client: RedisClient;
    const url = conn?.url ?? this.#config.url;
    if (this.#config.cluster_nodes !== undefined) {
      client = createClusterClient(this.#config.cluster_nodes, { ...base, ...auth }) as unknown as RedisClient;
    } else if (conn?.sentinels) {
      const opts: RedisOptions = { ...base, ...auth, sentinels: conn.sentinels, name: conn.name!, db: conn.db };
      if (conn.sentinel_password !== undefined) opts.sentinelPassword = conn.sentinel_password;
      if (conn.ssl) {
        opts.enableTLSForSentinelMode = true;
        opts.sentinelTLS = auth.tls!;
      }
      client = new Redis(opts);
    } else if (url !== undefined) {
      client = new Redis(url, { ...base, ...auth });
    } else {
      client = new Redis({ ...base, ...auth, host: conn?.host ?? '127.0.0.1', port: conn?.port ?? 6379, db: conn?.db ?? 0 });
    }
    client.on('error', (err: Error) => {
      this.#lastError = err;
    });
    return client;
  }

  /** Blocking reads get their own connections so they never stall the main one. */
  #newBlockingConnection(): RedisClient {
    const name = `${this.#clientName}:blocking`;
    const conn = this.#client instanceof Cluster ? (duplicateCluster(this.#client, name) as unknown as RedisClient) : this.#client.duplicate({ connectionName: name });
    conn.on('error', (err: Error) => {
      this.#lastError = err;
    });
    return conn;
  }

  #checkOpen(): void {
    if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `redis backend for queue ${this.#config.queue} is closed`);
  }

  async #run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `redis backend closed during ${op}`, { cause: err });
      if (isOom(err)) throw await this.#oomError(op, err);
      throw new MetaguardError('MG_ERR_BACKEND', `redis ${op} failed (queue ${this.#config.queue}): ${describe(err)}`, { cause: err });
    }
  }

  /** INFO memory (readable without CONFIG rights): used memory, maxmemory and the eviction policy. */
  async #memoryInfo(): Promise<{ used: string; maxmemory: string; policy: string } | undefined> {
    try {
      const text = await this.#client.info('memory');
      const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '?';
      return { used: field('used_memory_human'), maxmemory: `${field('maxmemory')} bytes (${field('maxmemory_human')})`, policy: field('maxmemory_policy') };
    } catch {
      return undefined;
    }
  }

  async #oomError(op: string, err: unknown): Promise<MetaguardError> {
    const mem = await this.#memoryInfo();
    const detail = mem ? `used_memory ${mem.used}, maxmemory ${mem.maxmemory}, maxmemory-policy ${mem.policy}` : 'maxmemory and maxmemory-policy could not be read';
    return new MetaguardError(
      'MG_ERR_BACKEND_OOM',
      `redis is out of memory: it refused ${op} (queue ${this.#config.queue}; ${detail}). Raise maxmemory, free memory, or shorten result_ttl_seconds`,
      { cause: err },
    );
  }

  async preflight(): Promise<BackendNotice[]> {
    const mem = await this.#memoryInfo();
    if (!mem || mem.policy === 'noeviction' || mem.policy === '?') return [];
    return [
      {
        event: 'redis_eviction_policy',
        message: `redis maxmemory-policy is ${mem.policy} (maxmemory ${mem.maxmemory}): under memory pressure Redis may evict batches, leases and results; use noeviction`,
        policy: mem.policy,
        maxmemory: mem.maxmemory,
      },
    ];
  }

  /** Appends dead letters the scripts collected (flat id, job, role, reason), signed with hmac_key. */
  async #publishDeads(flat: unknown[]): Promise<void> {
    const key = this.#config.hmac_key;
    if (!key || flat.length === 0) return;
    const pipe = this.#client.pipeline();
    for (let i = 0; i + 3 < flat.length; i += 4) {
      const [batchId, jobId, role, reason] = [str(flat[i]), str(flat[i + 1]), str(flat[i + 2]), str(flat[i + 3])];
      const stream = this.key(`results:${jobId}`);
      const mac = signDead(key, { jobId, batchId, role, reason });
      if (role) pipe.xadd(stream, '*', 'kind', 'dead', 'batch', batchId, 'role', role, 'reason', reason, 'mac', mac);
      else pipe.xadd(stream, '*', 'kind', 'dead', 'batch', batchId, 'reason', reason, 'mac', mac);
      pipe.pexpire(stream, this.#ttlMs);
    }
    const replies = (await pipe.exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
  }

  get #sign(): 0 | 1 {
    return this.#config.hmac_key ? 1 : 0;
  }

  #script(name: ScriptName, args: Arg[], buffer = false): Promise<unknown> {
    const fn = (this.#client as unknown as Record<string, ScriptFn>)[buffer ? `${name}Buffer` : name];
    return fn.call(this.#client, ...this.#keys, this.#prefix, ...args);
  }

  get #ttlMs(): number {
    return this.#config.result_ttl_seconds * 1000;
  }

  async connect(): Promise<void> {
    this.#checkOpen();
    if (this.#connected && this.#client.status === 'ready') return;
    const url = this.#config.connection?.url ?? this.#config.url;
    // Never echo credentials embedded in a URL.
    const cluster = this.#config.cluster_nodes;
    const target =
      cluster !== undefined
        ? `cluster ${cluster.map((n) => `${n.host}:${n.port}`).join(',')}`
        : url !== undefined
          ? url.replace(/\/\/[^@/]*@/, '//***@')
          : `${this.#config.connection?.host ?? '127.0.0.1'}:${this.#config.connection?.port ?? 6379}`;
    const status = this.#client.status;
    if (status === 'wait' || status === 'end' || status === 'close') {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          this.#client.connect(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
          }),
        ]);
      } catch (err) {
        // Stop ioredis from reconnecting in the background: the caller retries at a higher level.
        this.#client.disconnect();
        const detail = this.#lastError && this.#lastError !== err ? `${describe(err)}; ${describe(this.#lastError)}` : describe(err);
        if (isAuthFailure(err) || isAuthFailure(this.#lastError)) {
          throw new MetaguardError('MG_ERR_BACKEND_AUTH', `redis at ${target} refused the credentials (queue-config.connection.username/password): ${detail}`, { cause: err, field: 'queue-config.connection.password' });
        }
        throw new MetaguardError('MG_ERR_BACKEND', `cannot connect to redis at ${target}: ${detail}`, { cause: err });
      } finally {
        clearTimeout(timer);
      }
    }
    await this.#run('ping', () => this.#client.ping());
    this.#connected = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of [...this.#idleBlocking, ...this.#busyBlocking]) c.disconnect();
    this.#idleBlocking.length = 0;
    this.#busyBlocking.clear();
    if (this.#client.status === 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#client.quit().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#client.disconnect();
  }

  async now(): Promise<number> {
    return this.#run('time', async () => {
      const [sec, usec] = await this.#client.time();
      return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    });
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    await this.#run('put artifact', () => this.#client.set(this.key(`artifact:${sha256}`), toBuffer(bytes), 'EX', this.#config.result_ttl_seconds));
  }

  async getArtifact(sha256: string): Promise<Uint8Array | null> {
    return this.#run('get artifact', () => this.#client.getBuffer(this.key(`artifact:${sha256}`)));
  }

  async putJob(manifest: JobManifest): Promise<void> {
    await this.#run('put job', () => this.#client.set(this.key(`job:${manifest.jobId}`), JSON.stringify(manifest), 'EX', this.#config.result_ttl_seconds));
  }

  /** Throws MG_ERR_MALFORMED_RECORD (logged) for a manifest outside its schema. */
  async getJob(jobId: string): Promise<JobManifest | null> {
    const raw = await this.#run('get job', () => this.#client.get(this.key(`job:${jobId}`)));
    if (raw === null) return null;
    try {
      return parseManifest(jobId, raw);
    } catch (err) {
      if (err instanceof MalformedRecord) logMalformed(this.#logger, err, { queue: this.#config.queue });
      throw err;
    }
  }

  async deleteJob(jobId: string): Promise<void> {
    await this.#run('delete job', () => this.#client.del(this.key(`job:${jobId}`), this.key(`results:${jobId}`)));
  }

  async withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number> {
    if (batchIds === undefined) return Number(await this.#run('withdraw job', () => this.#script('mgWithdraw', [jobId, this.#ttlMs])));
    let removed = 0;
    // Chunked: one script per few thousand ids keeps each under Lua's argument limits.
    for (let i = 0; i < Math.max(1, batchIds.length); i += 4000) {
      removed += Number(await this.#run('withdraw job', () => this.#script('mgWithdraw', [jobId, this.#ttlMs, ...batchIds.slice(i, i + 4000)])));
    }
    return removed;
  }

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    for (let i = 0; i < batches.length; i += ENQUEUE_CHUNK) {
      const args: Arg[] = [];
      for (const b of batches.slice(i, i + ENQUEUE_CHUNK)) args.push(b.id, b.jobId, b.role, b.priority, toBuffer(b.payload), b.mac ?? '');
      await this.#run('enqueue', () => this.#script('mgEnqueue', args));
    }
  }

  async missingBatches(ids: string[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i += ENQUEUE_CHUNK) {
      const rows = await this.#run('check batches', () => this.#script('mgMissing', ids.slice(i, i + ENQUEUE_CHUNK)));
      for (const id of rows as unknown[]) out.push(str(id));
    }
    return out;
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    this.#checkOpen();
    const seconds = Math.max(0.01, timeoutMs / 1000);
    const conn = this.#idleBlocking.pop() ?? this.#newBlockingConnection();
    this.#busyBlocking.add(conn);
    try {
      await conn.blpop(this.key('wake'), seconds);
    } catch (err) {
      if (this.#closed) return;
      conn.disconnect();
      throw new MetaguardError('MG_ERR_BACKEND', `redis wait for work failed (queue ${this.#config.queue}): ${describe(err)}`, { cause: err });
    } finally {
      this.#busyBlocking.delete(conn);
    }
    if (this.#closed) conn.disconnect();
    else this.#idleBlocking.push(conn);
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    const n = Math.min(MAX_CLAIM, Math.floor(max));
    if (!(n >= 1)) return [];
    const w = this.#config.queue_weights;
    const args: Arg[] = [workerId, n, Math.max(1, Math.ceil(leaseMs)), this.#config.strict_priority ? 1 : 0, w.critical ?? 0, w.high ?? 0, w.normal ?? 0, w.low ?? 0];
    for (let i = 0; i < n; i++) args.push(Math.random());
    const rows = (await this.#run('claim', () => this.#script('mgClaim', args, true))) as unknown[][];
    return rows.map((row): Claim => {
      const id = str(row[1]);
      if (Number(row[0]) !== 1) return { ok: false, id, reason: str(row[2]) };
      const mac = str(row[6]);
      return {
        ok: true,
        batch: {
          id,
          jobId: str(row[2]),
          role: str(row[3]) as Role,
          priority: str(row[4]) as Priority,
          payload: row[5] as Buffer,
          ...(mac === '' ? {} : { mac }),
          attempt: Number(row[7]),
        },
      };
    });
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const lost = await this.#run('renew leases', () => this.#script('mgRenew', [workerId, Math.max(1, Math.ceil(leaseMs)), ...ids]));
    return (lost as unknown[]).map(str);
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    const key = this.#config.hmac_key;
    const mac = key ? signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) : '';
    const owned = await this.#run('complete batch', () => this.#script('mgComplete', [workerId, batch.id, batch.jobId, batch.role, toBuffer(results), this.#ttlMs, mac]));
    return Number(owned) === 1;
  }

  async releaseBatch(workerId: string, id: string, options: { delayMs: number; countAttempt: boolean; reason: string }): Promise<void> {
    await this.#run('release batch', async () => {
      const [, deads] = (await this.#script('mgRelease', [workerId, id, Math.max(0, Math.ceil(options.delayMs)), options.countAttempt ? 1 : 0, options.reason, this.#config.max_requeue_attempts, this.#ttlMs, this.#sign])) as [unknown, unknown[]];
      await this.#publishDeads(deads);
    });
  }

  async deadLetter(workerId: string, id: string, reason: string): Promise<void> {
    await this.#run('dead-letter', async () => this.#publishDeads((await this.#script('mgDeadLetter', [workerId, id, reason, this.#ttlMs, this.#sign])) as unknown[]));
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    const c = this.#config;
    return this.#run('reclaim', async () => {
      const [requeued, dead, deads] = (await this.#script('mgReclaim', [
        c.enable_requeue ? 1 : 0,
        c.max_requeue_attempts,
        c.circuit_breaker_threshold,
        Math.max(1, Math.ceil(c.heartbeat_timeout * 1000)),
        this.#ttlMs,
        this.#sign,
      ])) as unknown[][];
      await this.#publishDeads(deads);
      return { requeued: requeued.map(str), deadLettered: dead.map(str) };
    });
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#checkOpen();
    const key = this.key(`results:${jobId}`);
    const from = cursor === '' ? '0' : cursor;
    const block = Math.floor(blockMs);
    let reply: unknown;
    if (block <= 0) {
      // BLOCK 0 would wait forever: a non-positive wait is a plain read on the main connection.
      reply = await this.#run('read results', () => this.#client.xreadBuffer('COUNT', 1000, 'STREAMS', key, from));
    } else {
      const conn = this.#idleBlocking.pop() ?? this.#newBlockingConnection();
      this.#busyBlocking.add(conn);
      try {
        reply = await conn.xreadBuffer('COUNT', 1000, 'BLOCK', block, 'STREAMS', key, from);
      } catch (err) {
        // close() disconnects blocking connections so a pending read returns at once.
        if (this.#closed) return { cursor: from, entries: [] };
        conn.disconnect();
        throw new MetaguardError('MG_ERR_BACKEND', `redis read results failed (queue ${this.#config.queue}): ${describe(err)}`, { cause: err });
      } finally {
        this.#busyBlocking.delete(conn);
      }
      if (this.#closed) conn.disconnect();
      else if (conn.status === 'ready' || conn.status === 'connect' || conn.status === 'connecting' || conn.status === 'reconnecting') this.#idleBlocking.push(conn);
    }
    return decodeStreamReply(reply, from, (err) => logMalformed(this.#logger, err, { queue: this.#config.queue, job: jobId }));
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const { lastHeartbeat: _ignored, ...rest } = info;
    await this.#run('heartbeat', () =>
      this.#script('mgHeartbeat', [info.workerId, JSON.stringify(rest), Math.max(1, Math.ceil(this.#config.heartbeat_timeout * 2000))]),
    );
  }

  async removeWorker(workerId: string): Promise<void> {
    await this.#run('remove worker', () =>
      this.#client.multi().zrem(this.key('workers'), workerId).del(this.key(`worker:${workerId}`)).hdel(this.key('strikes'), workerId).exec(),
    );
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    const rows = (await this.#run('active workers', () => this.#script('mgActiveWorkers', [Math.ceil(this.#config.heartbeat_timeout * 1000)]))) as unknown[];
    const out: WorkerInfo[] = [];
    for (let i = 0; i + 2 < rows.length; i += 3) {
      const id = str(rows[i]);
      const json = str(rows[i + 2]);
      // A heartbeat without its record (expired between the two reads) still makes a worker active.
      if (json === '') {
        out.push({ workerId: id, host: '', pid: 0, threads: 1, startedAt: 0, lastHeartbeat: Number(str(rows[i + 1])) });
        continue;
      }
      try {
        out.push(parseWorkerInfo(id, Number(str(rows[i + 1])), json, (err) => logMalformed(this.#logger, err, { queue: this.#config.queue })));
      } catch (err) {
        if (!(err instanceof MalformedRecord)) throw err;
        logMalformed(this.#logger, err, { queue: this.#config.queue });
      }
    }
    return out;
  }

  async stats(): Promise<QueueStats> {
    const r = ((await this.#run('stats', () => this.#script('mgStats', []))) as unknown[]).map((v) => Number(v));
    const workers = await this.activeWorkers();
    return {
      pending: { critical: r[0], high: r[1], normal: r[2], low: r[3] },
      inflight: r[4],
      delayed: r[5],
      dead: r[6],
      dispatched: r[7],
      completed: r[8],
      requeued: r[9],
      workers,
    };
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    return this.#run('list dead', async () => {
      const ids = await this.#client.zrange(this.key('deadidx'), '0', String(n - 1));
      if (ids.length === 0) return [];
      const raw = await this.#client.hmget(this.key('dead'), ...ids);
      const out: DeadEntry[] = [];
      for (let i = 0; i < ids.length; i++) {
        const json = raw[i];
        if (json === null || json === undefined) continue;
        try {
          const e = JSON.parse(json) as Partial<DeadEntry>;
          const entry: DeadEntry = { id: ids[i], reason: String(e.reason ?? ''), attempts: Number(e.attempts ?? 0), deadAt: Number(e.deadAt ?? 0) };
          if (typeof e.jobId === 'string') entry.jobId = e.jobId;
          if (typeof e.role === 'string' && roleSet.has(e.role)) entry.role = e.role;
          out.push(entry);
        } catch {
          out.push({ id: ids[i], reason: 'unreadable dead-letter entry', attempts: 0, deadAt: 0 });
        }
      }
      return out;
    });
  }

  async retryDead(id?: string): Promise<number> {
    return Number(await this.#run('retry dead', () => this.#script('mgRetryDead', [id ?? ''])));
  }

  async purgeDead(): Promise<number> {
    return Number(await this.#run('purge dead', () => this.#script('mgPurgeDead', [])));
  }

  // ---- administration (dashboard) ----

  async publishProgress(progress: JobProgress): Promise<{ cancelRequested: boolean }> {
    const { updatedAt: _u, cancelRequested: _c, ...rest } = progress;
    const keepMs = Math.max(1, Math.ceil(this.#config.heartbeat_timeout * 1000));
    const reply = (await this.#run('publish progress', () => this.#script('mgProgress', [progress.jobId, JSON.stringify(rest), keepMs]))) as unknown[];
    return { cancelRequested: Number(reply[1]) === 1 };
  }

  async listProgress(): Promise<JobProgress[]> {
    const rows = (await this.#run('list progress', () => this.#script('mgListProgress', [Math.ceil(this.#config.heartbeat_timeout * 1000)]))) as unknown[];
    const out: JobProgress[] = [];
    for (let i = 0; i + 3 < rows.length; i += 4) {
      const p = parseProgress(str(rows[i]), str(rows[i + 2]));
      if (!p) continue;
      p.updatedAt = Number(str(rows[i + 1]));
      if (Number(rows[i + 3]) === 1) p.cancelRequested = true;
      out.push(p);
    }
    return out;
  }

  async removeProgress(jobId: string): Promise<void> {
    await this.#run('remove progress', () => this.#client.multi().hdel(this.key('progress'), jobId).zrem(this.key('progressidx'), jobId).del(this.key(`cancel:${jobId}`)).exec());
  }

  async requestCancel(jobId: string): Promise<boolean> {
    return Number(await this.#run('request cancel', () => this.#script('mgRequestCancel', [jobId, this.#ttlMs]))) === 1;
  }


  async priorityCounts(): Promise<{ inflight: Record<Priority, number>; dead: Record<Priority, number> }> {
    const r = ((await this.#run('priority counts', () => this.#script('mgPriorityCounts', []))) as unknown[]).map((v) => Number(v));
    const at = (o: number) => ({ critical: r[o], high: r[o + 1], normal: r[o + 2], low: r[o + 3] });
    return { inflight: at(0), dead: at(4) };
  }

  async putBenchRecord(record: Omit<BenchRecord, 'at'>): Promise<void> {
    const at = await this.now();
    await this.#run('put bench record', () => this.#client.set(this.key('bench'), JSON.stringify({ ...record, at })));
  }

  async getBenchRecord(): Promise<BenchRecord | null> {
    const raw = await this.#run('get bench record', () => this.#client.get(this.key('bench')));
    return raw === null ? null : parseBenchRecord(raw);
  }
}

/** Decodes an XREAD reply `[[key, [[id, [field, value, ...]], ...]]]` (buffers) into result entries. */
function decodeStreamReply(reply: unknown, cursor: string, malformed: (err: MalformedRecord) => void): { cursor: string; entries: ResultEntry[] } {
  const entries: ResultEntry[] = [];
  let last = cursor;
  if (!Array.isArray(reply)) return { cursor: last, entries };
  for (const stream of reply as unknown[]) {
    const items = Array.isArray(stream) ? (stream[1] as unknown[]) : [];
    for (const item of items ?? []) {
      const [rawId, rawFields] = item as [unknown, unknown[] | null];
      last = str(rawId);
      const fields = new Map<string, unknown>();
      const list = rawFields ?? [];
      for (let i = 0; i + 1 < list.length; i += 2) fields.set(str(list[i]), list[i + 1]);
      const record = `result stream entry ${last}`;
      const kind = str(fields.get('kind'));
      const batchId = str(fields.get('batch'));
      const role = str(fields.get('role'));
      const mac = fields.has('mac') ? str(fields.get('mac')) : undefined;
      if (kind !== 'results' && kind !== 'dead') {
        malformed(new MalformedRecord(record, 'kind', `must be results or dead, got ${JSON.stringify(kind.slice(0, 40))}`));
      } else if (!isRecordId(batchId)) {
        malformed(new MalformedRecord(record, 'batch', 'must be a batch id'));
      } else if (kind === 'results') {
        const frame = fields.get('frame');
        const workerId = str(fields.get('worker'));
        if (!roleSet.has(role)) malformed(new MalformedRecord(record, 'role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`));
        else if (!Buffer.isBuffer(frame) || frame.length === 0) malformed(new MalformedRecord(record, 'frame', 'must be a non-empty frame'));
        else if (workerId.length > 300) malformed(new MalformedRecord(record, 'worker', 'must be at most 300 characters'));
        else entries.push({ kind: 'results', batchId, role: role as Role, workerId, frame, ...(mac !== undefined ? { mac } : {}) });
      } else if (role !== '' && !roleSet.has(role)) {
        malformed(new MalformedRecord(record, 'role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`));
      } else {
        entries.push({ kind: 'dead', batchId, reason: str(fields.get('reason')).slice(0, 2000), ...(role !== '' ? { role: role as Role } : {}), ...(mac !== undefined ? { mac } : {}) });
      }
    }
  }
  return { cursor: last, entries };
}
