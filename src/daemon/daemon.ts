/**
 * The worker daemon's loop: claim batches when the pool can start them soon, run them in the case
 * pool, publish results, renew leases and heartbeat from the main thread on every tick.
 *
 * Faults it rides out: a backend outage (retry with capped backoff, log, go on), a poison or tampered
 * message (dead-letter with the reason, go on), a case that hangs, blows its heap or kills its thread
 * (a result from the pool; the thread is replaced). A progress watchdog stops heartbeats and reports
 * `stalled` if the consume loop stops turning, so a stuck worker never looks alive.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { createCodec } from '../codec/index.js';
import type { Codec } from '../codec/types.js';
import { FRAME_HEADER_BYTES, readHeader } from '../codec/frame.js';
import { isMetaguardError, MetaguardError, toErrorInfo, toWireError, wireError, type WireError } from '../errors.js';
import type { CaseRunner } from '../execution/pool.js';
import { PoolSet, splitThreads, type Isolation } from '../execution/pools.js';
import { caseEnvironment } from '../execution/env.js';
import { batchChannel, workerChannel, type BatchEvent, type DaemonEvents } from '../observe/events.js';
import { silentLogger, type Logger } from '../observe/log.js';
import { logWorkerEvents } from '../observe/log-events.js';
import { version } from '../version.js';
import { ArtifactCache } from '../queue/artifacts.js';
import { defaultCacheDir } from '../util/paths.js';
import { validateQueueConfig, type QueueConfig } from '../options/queue.js';
import { CASE_MEM_MB, CASE_TIMEOUT_S } from '../options/defaults.js';
import { createBackend } from '../queue/index.js';
import { decodeCasesWithPayloads, encodeResultFrames, maxFrameBytes, verifyBatch, verifyManifest } from '../queue/messages.js';
import { MAX_MESSAGE_CHARS, truncate } from '../execution/limits.js';
import { retryDelayMs } from '../queue/retry.js';
import type { Backend, ClaimedBatch, JobManifest } from '../queue/types.js';
import { can } from '../queue/capabilities.js';
import { parseJobExec, parseSecretNames } from '../http/endpoint.js';
import { chunkExecFor, RateLimitStates } from '../execution/chunk-exec.js';
import type { ChunkExec } from '../execution/protocol.js';
import { WorkerLoad } from './load.js';
import type { CaseInput, CaseResult } from '../core/protocol.js';

export interface DaemonOptions {
  /** A validated queue config; or give `queueConfig` (raw keys documented in docs/reference.md) and it is validated here. */
  config?: QueueConfig;
  queueConfig?: unknown;
  /** Share an existing backend (in-process workers); otherwise one is created from `config`. */
  backend?: Backend;
  threads?: number;
  /** Seconds between claims when the queue is empty. @defaultValue 1 */
  pollIntervalS?: number;
  /** Limits for a job that does not carry its own. @defaultValue CASE_TIMEOUT_S, CASE_MEM_MB (options/defaults) */
  defaultTimeoutS?: number;
  defaultMemMb?: number;
  /** Drain deadline on close(): in-flight batches not finished by then are handed back. @defaultValue 30 */
  shutdownTimeoutS?: number;
  workerId?: string;
  cacheDir?: string;
  logger?: Logger;
  /** Environment variables a job's endpoint headers may read (`${NAME}`), comma-separated. @defaultValue none */
  httpSecrets?: string;
  /** Where cases run: piscina threads, or child processes under the permission model. @defaultValue 'thread' */
  isolation?: Isolation;
  /** Seconds an unused case pool lives before its threads stop. @defaultValue 30 */
  poolIdleS?: number;
  /** Variables hidden from cases besides METAGUARD_* and METAGUARD_HIDE_ENV's (names or PREFIX*). */
  hideEnv?: string[];
  /**
   * This process's environment: cases start from it (scrubbed of METAGUARD_* and METAGUARD_HIDE_ENV's
   * names), endpoint headers read `httpSecrets` from it, the cache folder defaults from it. @defaultValue process.env
   */
  env?: NodeJS.ProcessEnv;
}

/** Dead-letter codes of a batch that could not be decoded or verified (metamorphic_queue_serialization_errors_total). */
const SERIALIZATION_CODES: ReadonlySet<string> = new Set(['MG_ERR_CODEC', 'MG_ERR_HMAC', 'MG_ERR_MALFORMED_BATCH']);
/** Tries of the first heartbeat, 1 s then 2 s apart, before a worker gives up at start. */
const START_HEARTBEAT_ATTEMPTS = 3;
/** Why a draining worker hands a batch back (not counted as an attempt). */
const DRAINING = wireError('MG_ERR_INTERRUPTED', 'worker draining', true);

interface Held {
  batch: ClaimedBatch;
  abandoned: boolean;
  leaseLost: boolean;
  /** Its first results frame completed it on the backend; the other parts are being published. */
  completed?: boolean;
  /** A completeBatch call is in flight: a renewal racing it would find the lease gone and be no loss. */
  completing?: boolean;
  done: Promise<void>;
}

export type { DaemonEvents };

export class DaemonHandle extends EventEmitter<DaemonEvents> {
  readonly workerId: string;
  readonly threads: number;
  readonly #config: QueueConfig;
  readonly #options: DaemonOptions & { env: NodeJS.ProcessEnv };
  readonly #logger: Logger;
  readonly #ownsBackend: boolean;
  readonly #backend: Backend;
  readonly #codec: Codec;
  readonly #cache: ArtifactCache;
  readonly #pools: PoolSet;
  readonly #held = new Map<string, Held>();
  readonly #jobs = new Map<string, Promise<JobManifest | null>>();
  /** One rate-limit state per (job, role), shared by this worker's threads. */
  readonly #rateLimits = new RateLimitStates();
  readonly #httpSecrets: ReadonlySet<string>;
  #state: 'starting' | 'running' | 'draining' | 'stopped' = 'starting';
  #wake: (() => void) | undefined;
  #woken = false;
  #tick: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** Set by destroy(): a running close() stops waiting for in-flight batches. */
  #destroyed = false;
  #interruptDrain: (() => void) | undefined;
  /** Aborted once in-flight batches are abandoned: their waits (publish retries) end at once. */
  readonly #abandon = new AbortController();
  #lastProgress = Date.now();
  #stalled = false;
  #backendDown = false;
  readonly #load: WorkerLoad;
  readonly #startedAt = Date.now();
  readonly #stopLogging: () => void;
  casesCompleted = 0;
  batchesCompleted = 0;

  constructor(options: DaemonOptions & { config: QueueConfig; env: NodeJS.ProcessEnv }, backend: Backend, ownsBackend: boolean) {
    super();
    this.#options = options;
    this.#config = options.config;
    this.#logger = options.logger ?? silentLogger;
    this.#backend = backend;
    this.#ownsBackend = ownsBackend;
    this.threads = options.threads ?? 1;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.#codec = createCodec({ compress: this.#config.compress });
    const cacheDir = options.cacheDir ?? defaultCacheDir(options.env);
    this.#cache = new ArtifactCache(cacheDir);
    this.#pools = new PoolSet({
      ...splitThreads(this.threads),
      idleS: options.poolIdleS ?? 30,
      // The variables endpoint headers may read are secrets too: hidden from cases.
      env: caseEnvironment(options.env, [...(options.hideEnv ?? []), ...parseSecretNames(options.httpSecrets)]),
      isolation: options.isolation ?? 'thread',
      readPaths: [cacheDir],
    });
    this.#pools.onCreate = (pool) => {
      pool.on('drain', () => this.#signal());
      pool.on('idleExit', (err: unknown) => {
        const e = toErrorInfo(err, 'E_CRASH');
        this.#logger.warn('unexpected_error', { worker: this.workerId, during: 'a case thread exited while idle (it is replaced)', code: e.code, message: e.message });
      });
    };
    this.#httpSecrets = parseSecretNames(options.httpSecrets);
    this.#load = new WorkerLoad(this.#pools.maxPools * this.#pools.threadsPerPool);
    this.#stopLogging = logWorkerEvents(this, this.workerId, this.#logger);
  }

  #publish(e: BatchEvent): void {
    if (batchChannel.hasSubscribers) batchChannel.publish(e);
  }

  get state() {
    return this.#state;
  }

  /** The backend this worker consumes from (for stats on scrape). */
  get backend(): Backend {
    return this.#backend;
  }

  get codecImpl(): 'native' | 'js' {
    return this.#codec.impl;
  }

  /** Leases held right now (batch ids). */
  get heldBatches(): string[] {
    return [...this.#held.keys()];
  }

  get backendConnected(): boolean {
    return !this.#backendDown && this.#state !== 'stopped';
  }

  /** True while the consume loop keeps turning. */
  get progressing(): boolean {
    return !this.#stalled && this.#state === 'running';
  }

  get utilization(): number {
    let u = 0;
    for (const pool of this.#pools.pools) u = Math.max(u, pool.utilization);
    return u;
  }

  /** Case pools and threads alive now (bounded: see PoolSet). */
  get poolStats(): { pools: number; threads: number; created: number; retired: number } {
    return { pools: this.#pools.pools.length, threads: this.#pools.threadCount, created: this.#pools.created, retired: this.#pools.retired };
  }

  async start(): Promise<void> {
    await this.#backend.connect();
    const backend = this.#backend;
    const notices = await (can(backend, 'preflight') ? backend.preflight() : Promise.resolve([])).catch((err: unknown) => {
      // The start-up checks (e.g. Redis's eviction policy) are advice: say they failed, and go on.
      this.#logger.warn('backend_error', { worker: this.workerId, during: 'preflight', code: (err as { code?: string }).code, message: (err as Error).message });
      return [];
    });
    for (const notice of notices) this.#logger.warn(notice.event, { worker: this.workerId, ...notice });
    this.#state = 'running';
    // The first heartbeat proves this worker may write to the registry (a missing permission stops it
    // here, with its error); a fault that passes within a few seconds does not.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#heartbeat();
        break;
      } catch (err) {
        if (attempt >= START_HEARTBEAT_ATTEMPTS || (this.#state as string) !== 'running') throw err;
        this.#backendFault('heartbeat', err);
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
    const tickMs = Math.max(50, Math.min(this.#config.lease_seconds * 1000 / 3, this.#config.heartbeat_check_interval * 1000));
    // The tick and the loop handle their own faults; anything else is logged with its code, never
    // left as an unhandled rejection.
    this.#tick = setInterval(() => void this.#onTick().catch((err: unknown) => this.#unexpected('tick', err)), tickMs);
    this.#loop = this.#consume().catch((err: unknown) => this.#unexpected('consume loop', err));
    // Say whether this worker checks signatures: a fleet where only some workers have the key is a
    // misconfiguration the operator should see at start, not through dead letters.
    const verifies = this.#config.hmac_key !== undefined;
    this.#logger.info('worker_started', {
      worker: this.workerId,
      threads: this.threads,
      backend: this.#backend.kind,
      version,
      node: process.version,
      codec: this.codecImpl,
      isolation: this.#options.isolation ?? 'thread',
      verifies_signatures: verifies,
      message: verifies ? 'batches and job manifests are verified with hmac_key' : 'no hmac_key: batches are not verified, and signed batches are refused (dead-lettered with MG_ERR_HMAC)',
    });
    this.emit('ready');
  }

  #progress(): void {
    this.#lastProgress = Date.now();
    if (this.#stalled) {
      this.#stalled = false;
      this.#logger.info('watchdog_recovered', { worker: this.workerId, message: 'consume loop progressing again' });
    }
  }

  async #heartbeat(): Promise<void> {
    await this.#backend.heartbeat({
      workerId: this.workerId,
      host: hostname(),
      pid: process.pid,
      threads: this.threads,
      startedAt: this.#startedAt,
      casesCompleted: this.casesCompleted,
      state: this.#state === 'draining' ? 'draining' : 'running',
      version,
      node: process.version,
      codec: this.#codec.impl,
      ...this.#load.snapshot(),
    });
  }

  async #onTick(): Promise<void> {
    if (this.#state === 'stopped') return;
    const stallMs = Math.max(this.#config.lease_seconds * 1000, (this.#options.pollIntervalS ?? 1) * 1000 * 5, 10_000);
    const idleFor = Date.now() - this.#lastProgress;
    if (this.#state === 'running' && idleFor > stallMs && !this.#stalled) {
      this.#stalled = true;
      this.#logger.error('watchdog_stalled', { worker: this.workerId, since_ms: idleFor });
      this.emit('stalled', { sinceMs: idleFor });
    }
    try {
      // A batch whose results are still being published in parts is no longer the backend's to lease.
      const ids = [...this.#held].filter(([, h]) => !h.completed && !h.completing).map(([id]) => id);
      if (ids.length) {
        const lost = await this.#backend.renewLeases(this.workerId, ids, this.#config.lease_seconds * 1000);
        for (const id of lost) {
          const h = this.#held.get(id);
          // Completed while the renewal was on its way: the lease ended because the batch did.
          if (h && !h.leaseLost && !h.completing && !h.completed) {
            h.leaseLost = true;
            // A job withdrawn by its coordinator: nobody wants these results.
            this.#jobs.delete(h.batch.jobId);
            // Only a backend that can withdraw a job has withdrawn jobs; elsewhere a missing manifest is
            // a cold or lagging read, and dropping the batch would strand it.
            if (this.#backend.capabilities.admin.withdraw && (await this.#backend.getJob(h.batch.jobId)) === null) {
              h.abandoned = true;
              this.#logger.info('job_withdrawn', { worker: this.workerId, job: h.batch.jobId, batch: id, message: 'dropping the batch of a withdrawn job' });
              continue;
            }
            this.#publish({ source: this, worker: this.workerId, batch: id, kind: 'lease_lost' });
          }
        }
      }
      // A stalled worker stops heartbeating, so the registry stops counting it as alive.
      if (!this.#stalled) {
        await this.#heartbeat();
        if (workerChannel.hasSubscribers) workerChannel.publish({ source: this, worker: this.workerId, kind: 'heartbeat' });
      }
      await this.#pools.sweep();
      await this.#backend.reclaimExpired();
      if (this.#backendDown) {
        this.#backendDown = false;
        this.#logger.info('backend_reconnected', { worker: this.workerId });
      }
    } catch (err) {
      this.#backendFault('tick', err);
    }
  }

  /** A failure nothing else handled: one coded log line (MG_ERR_WORKER when it has no code of ours). */
  #unexpected(during: string, err: unknown): void {
    const e = toWireError(err, 'MG_ERR_WORKER');
    this.#logger.error('unexpected_error', { worker: this.workerId, during, code: e.code, message: truncate(e.message, MAX_MESSAGE_CHARS) });
  }

  #backendFault(during: string, err: unknown): void {
    if (!this.#backendDown) this.#logger.error('backend_error', { worker: this.workerId, during, message: (err as Error).message, code: (err as { code?: string }).code });
    this.#backendDown = true;
  }

  /**
   * Batches held at once: two per thread plus two, so that while a batch's results travel back and the
   * next claim is on its way, every thread still has a batch queued (with one per thread plus one,
   * threads sat idle across those round trips on fast cases).
   */
  #freeSlots(): number {
    return Math.max(0, 2 * this.threads + 2 - this.#held.size);
  }

  #capacityFull(): boolean {
    if (this.#freeSlots() === 0) return true;
    for (const pool of this.#pools.pools) if (pool.needsDrain) return true;
    return false;
  }

  /** Wakes the consume loop now, or makes its next sleep return at once (no lost wake-ups). */
  #signal(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => (clearTimeout(t), resolve());
      const t = setTimeout(done, ms);
      this.#wake = done;
    });
    this.#wake = undefined;
    this.#woken = false;
  }

  async #consume(): Promise<void> {
    const pollMs = (this.#options.pollIntervalS ?? 1) * 1000;
    let backoff = 100;
    while (this.#state === 'running') {
      this.#progress();
      if (this.#capacityFull()) {
        // Backpressure: claim only what the pool can start soon.
        await this.#sleep(pollMs);
        continue;
      }
      let claims;
      try {
        claims = await this.#backend.claimBatches(this.workerId, this.#freeSlots(), this.#config.lease_seconds * 1000);
        backoff = 100;
        if (this.#backendDown) {
          this.#backendDown = false;
          this.#logger.info('backend_reconnected', { worker: this.workerId });
        }
      } catch (err) {
        if (this.#state !== 'running') break;
        this.#backendFault('claim', err);
        await this.#sleep(backoff);
        backoff = Math.min(5000, backoff * 2);
        continue;
      }
      if (this.#state !== 'running') {
        // Closed while claiming: hand back at once.
        for (const c of claims) if (c.ok) await this.#release(c.batch.id, DRAINING);
        break;
      }
      if (claims.length === 0) {
        // Wait for new work where the backend can signal it; otherwise poll.
        const backend = this.#backend;
        if (can(backend, 'wakeOnWork')) {
          try {
            await backend.waitForWork(pollMs);
          } catch (err) {
            this.#backendFault('wait', err);
            await this.#sleep(pollMs);
          }
        } else await this.#sleep(pollMs);
        continue;
      }
      for (const claim of claims) {
        if (!claim.ok) {
          // Decided by the error's code: a malformed entry is dead at once; a retryable failure
          // (the backend could not fetch it) is tried again, counted against max_requeue_attempts.
          if (claim.error.retryable) await this.#retryLater({ id: claim.id, attempt: 1 }, claim.error);
          else await this.#deadLetter(claim.id, claim.error);
          continue;
        }
        // The same batch delivered to us twice (enqueued twice): the copy we already run answers both.
        if (this.#held.has(claim.batch.id)) continue;
        this.#publish({ source: this, worker: this.workerId, batch: claim.batch.id, kind: 'claimed', attempt: claim.batch.attempt, priority: claim.batch.priority });
        const held: Held = { batch: claim.batch, abandoned: false, leaseLost: false, done: Promise.resolve() };
        this.#held.set(claim.batch.id, held);
        // Never rejects: a failure is handed back (#batchFailed), and a failure of that is logged.
        held.done = this.#runBatch(held)
          .catch((err: unknown) => this.#batchFailed(held, err))
          .catch((err: unknown) => this.#unexpected('batch failure', err))
          .finally(() => {
            this.#held.delete(claim.batch.id);
            this.#signal();
          });
      }
      // The batches just claimed reach their case threads before the next claim is built and sent.
      await nextTurn();
    }
  }

  /** Last resort for an unexpected failure in a batch's run: log it and hand the batch back. */
  async #batchFailed(held: Held, err: unknown): Promise<void> {
    const error = toWireError(err, 'MG_ERR_WORKER');
    const message = truncate(error.message, MAX_MESSAGE_CHARS);
    try {
      this.#logger.error('batch_failed', { worker: this.workerId, batch: held.batch.id, code: error.code, message });
    } finally {
      // Handed back whatever its code (an unexpected failure may be this worker's alone), also when
      // the line above failed: the batch must not wait for its lease to expire.
      if (!held.abandoned && this.#state !== 'stopped') await this.#retryLater(held.batch, { ...error, message: `unexpected failure: ${message}` });
    }
  }

  async #deadLetter(id: string, error: WireError): Promise<void> {
    this.#publish({ source: this, worker: this.workerId, batch: id, kind: 'dead_lettered', code: error.code, retryable: error.retryable, reason: error.message, serialization: SERIALIZATION_CODES.has(error.code) });
    try {
      await this.#backend.deadLetter(this.workerId, id, error);
    } catch (err) {
      this.#backendFault('dead-letter', err);
    }
  }

  async #release(id: string, error: WireError): Promise<void> {
    try {
      await this.#backend.releaseBatch(this.workerId, id, { delayMs: 0, countAttempt: false, error });
      this.#publish({ source: this, worker: this.workerId, batch: id, kind: 'handed_back', code: error.code, reason: error.message });
    } catch (err) {
      this.#backendFault('release', err);
    }
  }

  async #retryLater(batch: Pick<ClaimedBatch, 'id' | 'attempt'>, error: WireError): Promise<void> {
    const delayMs = retryDelayMs(batch.attempt, this.#config.retry_base_ms, this.#config.retry_max_ms);
    try {
      await this.#backend.releaseBatch(this.workerId, batch.id, { delayMs, countAttempt: true, error });
      this.#publish({ source: this, worker: this.workerId, batch: batch.id, kind: 'retry_later', code: error.code, reason: error.message, attempt: batch.attempt, delayMs });
    } catch (err) {
      // The backend is down too: the lease expires and the batch is reclaimed.
      this.#backendFault('retry', err);
    }
  }

  #manifest(jobId: string): Promise<JobManifest | null> {
    let p = this.#jobs.get(jobId);
    if (!p) {
      p = this.#backend.getJob(jobId);
      this.#jobs.set(jobId, p);
      p.then((m) => (m ? undefined : this.#jobs.delete(jobId)), () => this.#jobs.delete(jobId));
      if (this.#jobs.size > 64) this.#jobs.delete(this.#jobs.keys().next().value!);
    }
    return p;
  }

  /**
   * A batch whose job is gone and whose lease this worker no longer holds was withdrawn by its
   * coordinator (or finished): it is dropped, not run and not dead-lettered.
   */
  async #withdrawn(batch: ClaimedBatch): Promise<boolean> {
    if (!this.#backend.capabilities.admin.withdraw) return false;
    const lost = await this.#backend.renewLeases(this.workerId, [batch.id], this.#config.lease_seconds * 1000);
    if (!lost.includes(batch.id)) return false;
    this.#logger.info('job_withdrawn', { worker: this.workerId, job: batch.jobId, batch: batch.id, message: 'dropping the batch of a withdrawn job' });
    return true;
  }

  async #runBatch(held: Held): Promise<void> {
    const { batch } = held;
    const started = performance.now();
    let cases: CaseInput[];
    let payloads: Uint8Array[];
    let manifest: JobManifest | null;
    let urls: { task: string; impl: string };
    let exec: ChunkExec | undefined;
    try {
      const key = this.#config.hmac_key;
      if (key) verifyBatch(key, batch);
      else if (batch.mac !== undefined) throw new MetaguardError('MG_ERR_HMAC', 'batch is signed but this worker has no hmac_key (give every worker the coordinator\'s hmac_key)');
      // Case threads decode the arguments from the payloads themselves; case processes are sent values.
      const decoded = decodeCasesWithPayloads(this.#codec, batch.payload, { args: (this.#options.isolation ?? 'thread') === 'process' });
      cases = decoded.cases;
      // Case threads get the serialized cases (one buffer per chunk), not clones of the values.
      payloads = decoded.payloads;
      this.#publish({ source: this, worker: this.workerId, batch: batch.id, kind: 'decoded', cases: cases.length });
      manifest = await this.#manifest(batch.jobId);
      if (!manifest && (await this.#withdrawn(batch))) return;
      if (!manifest) throw new MetaguardError('MG_ERR_ARTIFACT', `job ${batch.jobId} not found (finished, expired, or never published)`);
      if (key) verifyManifest(key, manifest);
      const impl = manifest.implementations[batch.role];
      if (!impl) throw new MetaguardError('MG_ERR_MALFORMED_BATCH', `batch role ${JSON.stringify(batch.role)} is not baseline or candidate`);
      urls = { task: await this.#cache.resolve(this.#backend, manifest.task), impl: await this.#cache.resolve(this.#backend, impl) };
      // Endpoint headers' ${VAR} come from this worker's environment, and only the names it allows.
      exec = chunkExecFor(manifest.exec === undefined ? undefined : parseJobExec(manifest.exec), batch.role, {
        jobId: batch.jobId,
        env: this.#options.env,
        allowed: this.#httpSecrets,
        rateLimits: this.#rateLimits,
      });
    } catch (err) {
      // Decided by the error's code (errors.ts says which are retryable), never by its text.
      const error = toWireError(err, 'MG_ERR_WORKER');
      if (!error.retryable) {
        // Malformed, tampered or unknown input fails the same way on every worker: dead at once.
        await this.#deadLetter(batch.id, error);
      } else if (error.code === 'MG_ERR_HTTP_CONFIG') {
        // This worker cannot call the endpoint (a header needs a variable it does not provide):
        // another worker may; past max_requeue_attempts the batch is dead-lettered with this error.
        this.#logger.warn('endpoint_unusable', { worker: this.workerId, batch: batch.id, code: error.code, message: error.message });
        await this.#retryLater(batch, error);
      } else {
        // The backend or the disk failed while preparing. Retry after a backoff that counts
        // against max_requeue_attempts (the backend dead-letters past it).
        this.#backendFault('prepare', err);
        await this.#retryLater(batch, { ...error, message: `retryable failure while preparing: ${error.message}` });
      }
      return;
    }
    const limits = {
      timeoutMs: manifest.timeoutMs || Math.round((this.#options.defaultTimeoutS ?? CASE_TIMEOUT_S) * 1000),
      memMb: manifest.memMb || (this.#options.defaultMemMb ?? CASE_MEM_MB),
    };
    // One pool per (job, role, artifacts, limits): the candidate never shares a realm with the
    // baseline, and no thread carries one job's globals into another job.
    const impl = manifest.implementations[batch.role];
    const poolKey = [batch.jobId, batch.role, manifest.task.sha256, impl.sha256, limits.timeoutMs, limits.memMb].join('\n');
    let pool: CaseRunner;
    try {
      pool = await this.#pools.acquire(poolKey, limits);
    } catch (err) {
      if (held.abandoned || this.#state !== 'running') return;
      throw err;
    }
    try {
      await this.#runOnPool(held, pool, cases, payloads, urls, manifest, exec, started);
    } finally {
      this.#pools.release(poolKey);
    }
  }

  async #runOnPool(held: Held, pool: CaseRunner, cases: CaseInput[], payloads: Uint8Array[], urls: { task: string; impl: string }, manifest: JobManifest, exec: ChunkExec | undefined, started: number): Promise<void> {
    const { batch } = held;
    // A concurrent role fills each thread's lanes before it spreads over more threads.
    const chunks = Math.max(1, Math.min(pool.threads, Math.ceil(cases.length / (exec?.concurrency ?? 1))));
    const per = Math.ceil(cases.length / chunks);
    let results: CaseResult[];
    try {
      const parts = await Promise.all(
        Array.from({ length: chunks }, (_, i) =>
          pool.runChunk(
            { taskUrl: urls.task, implUrl: urls.impl, seed: manifest.seed, cases: cases.slice(i * per, (i + 1) * per), payloads: payloads.slice(i * per, (i + 1) * per), ...(exec ? { exec } : {}) },
            {
              // The pool publishes each case, restart and heap sample with this context.
              context: { source: this, role: batch.role, batch: batch.id },
              onResult: (r, thread) => {
                this.#progress();
                this.#load.recordCase(r.durationMs, thread);
              },
              onHeap: (bytes, thread) => this.#load.recordHeap(bytes, thread),
            },
          ),
        ),
      );
      results = parts.flat();
    } catch (err) {
      if (held.abandoned || (isMetaguardError(err) && err.code === 'MG_ERR_POOL_CLOSED')) return;
      throw err;
    }
    if (held.abandoned) return;
    // Under the transport's message limit: a batch's results may go as several frames. The first
    // completes the batch on the backend; the others are published after it (completeBatch publishes
    // for a batch no longer held, and the coordinator accounts each (role, case) once, whatever part
    // or delivery it comes in). A worker that dies between parts leaves the batch partly answered:
    // the coordinator sends it again after a grace period.
    const frames = encodeResultFrames(this.#codec, results, maxFrameBytes(this.#config), { passLists: manifest.resultsFormat === 2 });
    for (const frame of frames) {
      for (let attempt = 0; ; attempt++) {
        try {
          held.completing = true;
          await this.#backend.completeBatch(this.workerId, batch, frame);
          held.completed = true;
          break;
        } catch (err) {
          held.completing = false;
          // Keep trying through a backend outage; the lease may expire meanwhile, and a redelivery's
          // results are deduplicated by the coordinator either way.
          this.#backendFault('complete', err);
          if (this.#state === 'stopped' || held.abandoned) return;
          try {
            await sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)), undefined, { signal: this.#abandon.signal });
          } catch {
            return; // abandoned by shutdown: the batch was handed back
          }
        }
      }
    }
    this.casesCompleted += results.length;
    this.batchesCompleted++;
    const seconds = (performance.now() - started) / 1000;
    const frameBytes = frames.reduce((n, f) => n + f.byteLength, 0);
    const rawBytes = frames.reduce((n, f) => n + FRAME_HEADER_BYTES + readHeader(f).rawLength, 0);
    this.#publish({ source: this, worker: this.workerId, batch: batch.id, kind: 'completed', cases: results.length, seconds, frameBytes, rawBytes, frames: frames.length });
  }

  /**
   * Drains: stops claiming, lets in-flight batches finish until the shutdown deadline, hands the rest
   * back at once (never to lease expiry), stops the threads. Idempotent.
   */
  close(): Promise<void> {
    return (this.#closing ??= this.#shutdown((this.#options.shutdownTimeoutS ?? 30) * 1000));
  }

  /** Stops now: hands every in-flight batch back without waiting, also when a close() is draining. */
  destroy(): Promise<void> {
    this.#destroyed = true;
    this.#interruptDrain?.();
    return (this.#closing ??= this.#shutdown(0));
  }

  async #shutdown(deadlineMs: number): Promise<void> {
    if (this.#state === 'starting') this.#state = 'stopped';
    if (this.#state === 'stopped' && !this.#loop) return this.#stopLogging();
    this.#state = 'draining';
    this.#logger.info('worker_draining', { worker: this.workerId, in_flight: this.#held.size, deadline_s: deadlineMs / 1000 });
    this.#signal();
    await this.#loop;
    const all = Promise.all([...this.#held.values()].map((h) => h.done));
    if (deadlineMs > 0 && !this.#destroyed) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        all,
        new Promise<void>((r) => {
          timer = setTimeout(r, deadlineMs);
          this.#interruptDrain = r;
        }),
      ]);
      clearTimeout(timer);
      this.#interruptDrain = undefined;
    }
    const leftovers = [...this.#held.values()];
    for (const h of leftovers) h.abandoned = true;
    this.#abandon.abort();
    await Promise.all(leftovers.map((h) => this.#release(h.batch.id, DRAINING)));
    clearInterval(this.#tick);
    this.#state = 'stopped';
    await (leftovers.length ? this.#pools.destroy() : this.#pools.close());
    await all; // never rejects (see held.done)
    try {
      await this.#backend.removeWorker(this.workerId);
    } catch (err) {
      // The registry entry expires on its own after heartbeat_timeout; say why it lingers.
      this.#backendFault('remove worker', err);
    }
    if (this.#ownsBackend) await this.#backend.close();
    this.#logger.info('worker_stopped', { worker: this.workerId, cases_completed: this.casesCompleted, handed_back: leftovers.length });
    this.#stopLogging();
  }
}

/** Starts a worker daemon: claims and runs batches until `close()`. */
export async function startWorker(options: DaemonOptions): Promise<DaemonHandle> {
  const config = options.config ?? validateQueueConfig(options.queueConfig ?? {});
  const backend = options.backend ?? (await createBackend(config, options.logger ? { logger: options.logger } : {}));
  // The one place the daemon falls back to this process's environment; below, it is passed down.
  const handle = new DaemonHandle({ ...options, config, env: options.env ?? process.env }, backend, options.backend === undefined);
  await handle.start();
  return handle;
}
