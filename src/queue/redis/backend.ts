/**
 * Redis implementation of the queue `Backend`.
 *
 * Every key of a queue lives under `mg:{<queue>}:` — one hash tag, so one Redis Cluster slot holds
 * the whole queue and the Lua commands may touch any of its keys. Every multi-step state change is one
 * command (`commands/<name>.lua`, loaded once by `scripts.ts`), and every lease deadline and heartbeat
 * is measured with `redis.call('TIME')`, never with a client clock. Connections live in `client.ts`,
 * decoding of what is read back in `decode.ts`.
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
import { isAuthFailure } from '../tls.js';
import { MetaguardError, type WireError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import type { Logger } from '../../observe/log.js';
import { signDead, signResults } from '../messages.js';
import { encodeWireError, logMalformed, MalformedRecord, parseManifest, parseWireError, parseWorkerInfo } from '../records.js';
import { describe, toBuffer, validateBatches, withTimeout } from '../shared.js';
import type {
  BackendNotice,
  Backend,
  BatchMessage,
  Claim,
  DeadEntry,
  JobManifest,
  Priority,
  QueueStats,
  ReclaimOutcome,
  ReleaseOptions,
  ResultEntry,
  WorkerInfo,
  JobProgress,
  BenchRecord,
} from '../types.js';
import { parseBenchRecord, parseProgress } from '../admin-records.js';
import { CONNECT_TIMEOUT_MS, createRedisClient, describeTarget, duplicateClient, evictionNotices, isOom, oomError, readMemoryInfo, type MemoryInfo, type RedisClient } from './client.js';
import { decodeClaims, decodeDeadEntry, decodeStreamReply, str } from './decode.js';
import { COMMANDS, STATIC_KEYS, type CommandName } from './scripts.js';

type ScriptFn = (...args: unknown[]) => Promise<unknown>;
type Arg = string | number | Buffer;

const ENQUEUE_CHUNK = 500;
const MAX_CLAIM = 1000;

/** What Redis promises: everything the seam describes (src/queue/types.ts). */
export const redisCapabilities = {
  queue: { leases: true, circuitBreaker: true, strictPriority: true, weightedPriority: true, fifo: true, idempotentEnqueue: true, lostBatchDetection: true, wakeOnWork: true },
  admin: { perPriorityStats: true, pendingExcludesClaimed: true, delayedStats: true, withdraw: true, preflight: true, progress: true, priorityCounts: true, benchRecords: true },
} as const;

export interface RedisBackendOptions {
  clientName?: string;
  /** Where malformed records read back are reported (`malformed_record`). */
  logger?: Logger;
}

export class RedisBackend implements Backend {
  readonly kind = 'redis';
  readonly capabilities = redisCapabilities;
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
    this.#client = createRedisClient(config, this.#clientName, this.#onError);
    for (const [name, lua] of Object.entries(COMMANDS)) {
      this.#client.defineCommand(name, { numberOfKeys: STATIC_KEYS.length, lua });
    }
  }

  /** The queue this backend serves (a shard's own name under `shards`). */
  get queue(): string {
    return this.#config.queue;
  }

  /** Full key of `name` under this queue's prefix (for tests and tools that inspect Redis directly). */
  key(name: string): string {
    return this.#prefix + name;
  }

  readonly #onError = (err: Error): void => {
    this.#lastError = err;
  };

  /** Blocking reads get their own connections so they never stall the main one. */
  #newBlockingConnection(): RedisClient {
    return duplicateClient(this.#client, `${this.#clientName}:blocking`, this.#onError);
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
      if (isOom(err)) throw oomError(this.#config.queue, op, err, await this.#memoryInfo(`read memory facts after ${op} was refused`));
      throw new MetaguardError('MG_ERR_BACKEND', `redis ${op} failed (queue ${this.#config.queue}): ${describe(err)}`, { cause: err });
    }
  }

  /** INFO memory, or undefined (logged as backend_error) when it cannot be read. */
  async #memoryInfo(during: string): Promise<MemoryInfo | undefined> {
    try {
      return await readMemoryInfo(this.#client);
    } catch (err) {
      this.#logger?.warn('backend_error', { queue: this.#config.queue, during, code: 'MG_ERR_BACKEND', message: describe(err) });
      return undefined;
    }
  }

  async preflight(): Promise<BackendNotice[]> {
    return evictionNotices(await this.#memoryInfo('preflight: read the eviction policy'));
  }

  /** Appends dead letters the scripts collected (flat id, job, role, reason), signed with hmac_key. */
  async #publishDeads(flat: unknown[]): Promise<void> {
    const key = this.#config.hmac_key;
    if (!key || flat.length === 0) return;
    const pipe = this.#client.pipeline();
    for (let i = 0; i + 3 < flat.length; i += 4) {
      const [batchId, jobId, role, reason] = [str(flat[i]), str(flat[i + 1]), str(flat[i + 2]), str(flat[i + 3])];
      const stream = this.key(`results:${jobId}`);
      const mac = signDead(key, { jobId, batchId, role, error: parseWireError(reason) });
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

  #script(name: CommandName, args: Arg[], buffer = false): Promise<unknown> {
    const fn = (this.#client as unknown as Record<string, ScriptFn>)[buffer ? `${name}Buffer` : name];
    return fn.call(this.#client, ...this.#keys, this.#prefix, ...args);
  }

  get #ttlMs(): number {
    return this.#config.result_ttl_seconds * 1000;
  }

  async connect(): Promise<void> {
    this.#checkOpen();
    if (this.#connected && this.#client.status === 'ready') return;
    // Never echo credentials embedded in a URL.
    const target = describeTarget(this.#config);
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
      // A polite QUIT, waited for at most a second: the connection is dropped below either way.
      const quit = this.#client.quit().then(
        () => undefined,
        (err: unknown) => this.#logger?.warn('backend_error', { queue: this.#config.queue, during: 'close', code: 'MG_ERR_BACKEND', message: describe(err) }),
      );
      await withTimeout(quit, 1000, undefined);
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
    validateBatches(batches);
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
    return decodeClaims(rows);
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

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    await this.#run('release batch', async () => {
      const [, deads] = (await this.#script('mgRelease', [workerId, id, Math.max(0, Math.ceil(options.delayMs)), options.countAttempt ? 1 : 0, encodeWireError(options.error), this.#config.max_requeue_attempts, this.#ttlMs, this.#sign])) as [unknown, unknown[]];
      await this.#publishDeads(deads);
    });
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    await this.#run('dead-letter', async () => this.#publishDeads((await this.#script('mgDeadLetter', [workerId, id, encodeWireError(error), this.#ttlMs, this.#sign])) as unknown[]));
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
        if (json !== null && json !== undefined) out.push(decodeDeadEntry(ids[i], json));
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

