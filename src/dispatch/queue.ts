/**
 * The queue dispatcher (coordinator side). It publishes the job's code as content-addressed artifacts
 * and its manifest, then feeds batches to the backend progressively — keeping a window of batches
 * outstanding, sized by the adaptive batch controller — while it reads the job's result stream.
 *
 * Accounting: every (role, case index) is recorded once. Results of a batch delivered twice are
 * dropped the second time; a batch dead-lettered before all its cases have results records the rest
 * as E_DELIVERY, so an evaluation never waits for cases that cannot come.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CaseResult } from '../execution/protocol.js';
import { createCodec } from '../codec/index.js';
import { isMetaguardError, MetaguardError } from '../errors.js';
import { silentLogger, type Logger } from '../observe/log.js';
import { caseStatus, type Metrics } from '../observe/metrics.js';
import type { EvaluateOptions } from '../options/evaluate.js';
import { publishArtifact, sha256 } from '../queue/artifacts.js';
import { isEndpointUrl } from '../http/endpoint.js';
import { AdaptiveBatchSize } from '../queue/batching.js';
import { resolveQueueConfig, type QueueConfig } from '../queue/config.js';
import { createBackend } from '../queue/index.js';
import { decodeResults, encodeCases, signBatch } from '../queue/messages.js';
import type { ArtifactRef, Backend, BatchMessage, JobManifest } from '../queue/types.js';
import { ProgressPublisher } from './progress.js';
import { abortReason, moduleLoadError, roles, stoppedError, type DispatchEvents, type Dispatcher, type JobSpec, type Role } from './types.js';

export interface QueueDispatcherOptions {
  config: QueueConfig;
  logger?: Logger;
  /** Use this backend instead of creating one from the config (tests, bench). */
  backend?: Backend;
  /** Called when the batch size changes. */
  onBatchSize?(size: number): void;
  metrics?: Metrics;
  /**
   * When no worker has been alive for this long, the run withdraws its job and fails with
   * MG_ERR_NO_WORKERS. 0 waits forever. @defaultValue 120
   */
  noWorkerTimeoutS?: number;
}

/** Where a queue is, for messages: backend, address and queue name, never a password. */
export function describeQueue(config: QueueConfig): string {
  const name = `queue "${config.queue}"`;
  switch (config.backend) {
    case 'memory':
      return `${name} on the in-process memory backend`;
    case 'redis': {
      const url = config.url ?? config.connection?.url;
      if (url) {
        try {
          const u = new URL(url);
          return `${name} on redis ${u.hostname}:${u.port || 6379}`;
        } catch {
          return `${name} on redis (connection url)`;
        }
      }
      const c = config.connection;
      return `${name} on redis ${c?.host ?? '127.0.0.1'}:${c?.port ?? 6379}${c?.db ? `/${c.db}` : ''}`;
    }
    case 'kafka':
      return `topic "${config.topic ?? config.queue}" on kafka ${config.bootstrap_servers ?? 'localhost:9092'}`;
    default:
      return `${name} on ${config.backend}`;
  }
}

interface Outstanding {
  role: Role;
  indices: number[];
  size: number;
}

/**
 * How many batches to keep outstanding: at least four per worker thread (plus four), and at least
 * `CASES_PER_SLOT` cases per thread, so that small batches of fast cases still keep a pipeline deep
 * enough to cover the round trips between workers and this coordinator. Outstanding batches wait in
 * the backend, not in worker memory: a worker holds only what its threads can start soon.
 */
export function outstandingTarget(slots: number, batchSize: number): number {
  return Math.min(MAX_OUTSTANDING, Math.max(4 * slots + 4, Math.ceil((CASES_PER_SLOT * slots) / Math.max(1, batchSize))));
}
const CASES_PER_SLOT = 1000;
const MAX_OUTSTANDING = 512;

export class QueueDispatcher implements Dispatcher {
  readonly #config: QueueConfig;
  readonly #logger: Logger;
  readonly #options: QueueDispatcherOptions;
  #backend: Backend | undefined;
  #localWorkers: { close(): Promise<void> }[] = [];
  /** Duplicate results dropped (redeliveries); exposed for tests and metrics. */
  duplicatesDropped = 0;

  constructor(options: QueueDispatcherOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#logger = options.logger ?? silentLogger;
  }

  async #withRetry<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // The coordinator rides out backend outages (a Redis restart): retry with capped backoff, until
    // the run is stopped.
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isMetaguardError(err) || err.code !== 'MG_ERR_BACKEND' || signal?.aborted) throw err;
        this.#logger.warn('backend_error', { during: what, attempt, message: err.message });
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)), undefined, signal ? { signal } : undefined).catch(() => {});
      }
    }
  }

  async run(job: JobSpec, events: DispatchEvents = {}): Promise<Record<Role, CaseResult[]>> {
    const config = this.#config;
    const backend = (this.#backend ??= this.#options.backend ?? (await createBackend(config)));
    await backend.connect();
    const codec = createCodec({ compress: config.compress });
    const metrics = this.#options.metrics;
    metrics?.codecInfo.set({ impl: codec.impl }, 1);
    const jobId = randomUUID();
    const [task, baseline, candidate] = await this.#withRetry('publish artifacts', () =>
      Promise.all([
        publishArtifact(backend, job.taskUrl, job.sources && basename(job.sources.task)),
        publishImplementation(backend, job.implUrls.baseline, job.sources && basename(job.sources.baseline)),
        publishImplementation(backend, job.implUrls.candidate, job.sources && basename(job.sources.candidate)),
      ]),
    );
    const manifest: JobManifest = { jobId, task, implementations: { baseline, candidate }, seed: job.seed, timeoutMs: job.timeoutMs, memMb: job.memMb, createdAt: await backend.now(), ...(job.exec ? { exec: job.exec } : {}) };
    await this.#withRetry('publish job', () => backend.putJob(manifest));

    if (config.backend === 'memory' && config.spawn_local_workers > 0) {
      const { startWorker } = await import('../worker/daemon.js');
      for (let i = 0; i < config.spawn_local_workers; i++) {
        this.#localWorkers.push(await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, logger: this.#logger, workerId: `local-${i}-${jobId.slice(0, 8)}` }));
      }
    }

    const n = job.cases.length;
    const progress = new ProgressPublisher(backend, this.#logger, { jobId, task: job.taskName ?? task.name, total: n, priority: config.priority });
    const out: Record<Role, CaseResult[]> = { baseline: new Array(n), candidate: new Array(n) };
    const recorded: Record<Role, Uint8Array> = { baseline: new Uint8Array(n), candidate: new Uint8Array(n) };
    let remaining = 2 * n;
    const record = (role: Role, r: CaseResult) => {
      if (r.index < 0 || r.index >= n || recorded[role][r.index]) {
        this.duplicatesDropped++;
        return;
      }
      recorded[role][r.index] = 1;
      out[role][r.index] = r;
      remaining--;
      progress.record(role, r);
      metrics?.casesCompleted.inc();
      metrics?.cases.inc({ role, status: caseStatus(r) });
      if (r.error?.code === 'E_TIMEOUT') metrics?.timeoutFailures.inc();
      events.onResult?.(role, r);
    };

    // A batch smaller than the concurrency leaves lanes idle: concurrent jobs start (and stay) at least that big.
    const lanes = Math.min(config.max_batch_size, Math.max(job.exec?.roles.baseline.concurrency ?? 1, job.exec?.roles.candidate.concurrency ?? 1));
    const batcher = new AdaptiveBatchSize({
      initial: config.batch_size ?? Math.max(config.initial_batch_size, lanes),
      min: config.batch_size ?? Math.max(config.min_batch_size, lanes),
      max: config.batch_size ?? config.max_batch_size,
      adaptive: config.adaptive_batching && config.batch_size === undefined,
      onChange: (size) => {
        metrics?.batchSize.set(size);
        this.#options.onBatchSize?.(size);
      },
    });
    const outstanding = new Map<string, Outstanding>();
    const signal = events.signal;
    const where = describeQueue(config);
    /** Withdraws the job (best effort: a backend that is down leaves the batches to expire) and says so. */
    const withdraw = async (why: string): Promise<string> => {
      try {
        if (!backend.withdrawJob) return `job ${jobId} left on ${where} (the ${backend.kind} backend cannot withdraw a job; its batches run and their results expire)`;
        const removed = await backend.withdrawJob(jobId, [...outstanding.keys()]);
        this.#logger.warn('job_withdrawn', { job: jobId, reason: why, batches_removed: removed, queue: where });
        return `job ${jobId} withdrawn from ${where}${removed ? ` (${removed} pending batches removed)` : ''}`;
      } catch (err) {
        this.#logger.error('backend_error', { job: jobId, during: 'withdraw job', code: (err as { code?: string }).code, message: (err as Error).message });
        return `job ${jobId} could not be withdrawn from ${where} (${(err as Error).message}); its batches expire after result_ttl_seconds`;
      }
    };
    const noWorkerMs = (this.#options.noWorkerTimeoutS ?? 120) * 1000;
    let lastAlive = Date.now();
    let waiting = false;
    const next: Record<Role, number> = { baseline: 0, candidate: 0 };
    let turn = 0;
    let slots = 1;

    const publishMore = async () => {
      const target = outstandingTarget(slots, batcher.size);
      const batch: BatchMessage[] = [];
      while (outstanding.size + batch.length < target && (next.baseline < n || next.candidate < n)) {
        const role = roles[turn++ % 2];
        if (next[role] >= n) continue;
        const start = next[role];
        const end = Math.min(n, start + batcher.size);
        next[role] = end;
        const cases = [];
        for (let i = start; i < end; i++) cases.push({ index: i, args: job.cases[i] });
        const msg: BatchMessage = { id: `${jobId}:${role}:${start}`, jobId, role, priority: config.priority, payload: encodeCases(codec, cases) };
        if (config.hmac_key) msg.mac = signBatch(config.hmac_key, msg);
        batch.push(msg);
        outstanding.set(msg.id, { role, indices: cases.map((c) => c.index), size: cases.length });
      }
      if (batch.length) {
        await this.#withRetry('enqueue', () => backend.enqueue(batch), signal);
        metrics?.casesDispatched.inc(batch.reduce((s, b) => s + outstanding.get(b.id)!.size, 0));
        this.#logger.log('debug', 'queue_dispatched', { job: jobId, batches: batch.length, cases: batch.reduce((s, b) => s + outstanding.get(b.id)!.size, 0) });
      }
    };

    let cursor = '0';
    let lastTick = 0;
    const tickMs = config.heartbeat_check_interval * 1000;
    try {
      while (remaining > 0) {
        if (signal?.aborted) throw stoppedError(signal, await withdraw(abortReason(signal).message));
        if (await progress.tick()) {
          const why = 'cancelled from the dashboard';
          throw new MetaguardError('MG_ERR_CANCELLED', `evaluation ${why}: ${await withdraw(why)}`);
        }
        try {
          await publishMore();
        } catch (err) {
          if (signal?.aborted) continue;
          throw err;
        }
        let read;
        try {
          read = await this.#withRetry('read results', () => backend.readResults(jobId, cursor, Math.min(250, tickMs)), signal);
        } catch (err) {
          if (signal?.aborted) continue;
          throw err;
        }
        cursor = read.cursor;
        for (const entry of read.entries) {
          const batch = outstanding.get(entry.batchId);
          if (entry.kind === 'results') {
            let results: CaseResult[];
            try {
              results = decodeResults(codec, entry.frame);
            } catch (err) {
              this.#logger.warn('batch_rejected', { job: jobId, batch: entry.batchId, message: (err as Error).message });
              metrics?.serializationErrors.inc();
              continue;
            }
            const unloadable = results.find((r) => r.error?.code === 'MG_ERR_MODULE_LOAD' || r.error?.code === 'MG_ERR_INVALID_IMPLEMENTATION' || r.error?.code === 'MG_ERR_INVALID_TASK');
            if (unloadable) {
              // A worker could not load the job's modules: a job-level error, not N case results.
              const err = moduleLoadError(entry.role, job.sources, unloadable.error!, ` on worker ${entry.workerId}`);
              throw new MetaguardError(err.code, `${err.message}; ${await withdraw(err.message)}`);
            }
            let busyMs = 0;
            for (const r of results) {
              record(entry.role, r);
              busyMs += r.durationMs;
            }
            if (batch) {
              outstanding.delete(entry.batchId);
              batcher.record(results.length, busyMs);
              this.#logger.log('debug', 'queue_completed', { job: jobId, batch: entry.batchId, worker: entry.workerId, cases: batch.size });
            }
          } else {
            this.#logger.warn('dead_lettered', { job: jobId, batch: entry.batchId, reason: entry.reason });
            if (batch) {
              outstanding.delete(entry.batchId);
              for (const index of batch.indices) {
                if (!recorded[batch.role][index]) {
                  record(batch.role, { index, passed: false, durationMs: 0, error: { code: 'E_DELIVERY', message: `batch dead-lettered: ${entry.reason}` } });
                }
              }
            }
          }
        }
        const now = Date.now();
        if (now - lastTick >= tickMs) {
          lastTick = now;
          // Reclaim here too: dead-lettering must not depend on a live worker to notice.
          const reclaimed = await this.#withRetry('reclaim', () => backend.reclaimExpired(), signal);
          if (reclaimed.requeued.length) {
            this.#logger.warn('queue_requeued', { job: jobId, batches: reclaimed.requeued.length });
            metrics?.batchesRequeued.inc(reclaimed.requeued.length);
            metrics?.casesRequeued.inc(reclaimed.requeued.reduce((sum, id) => sum + (outstanding.get(id)?.size ?? 0), 0));
          }
          const workers = await this.#withRetry('active workers', () => backend.activeWorkers(), signal);
          slots = Math.max(1, workers.reduce((s, w) => s + w.threads, 0));
          if (workers.length > 0) {
            lastAlive = now;
            if (waiting) events.onWaiting?.((waiting = false));
          } else {
            if (!waiting) {
              events.onWaiting?.((waiting = true));
              this.#logger.warn('heartbeat_timeout', { job: jobId, message: 'no active workers; cases wait in the queue', outstanding_batches: outstanding.size, queue: where });
            }
            if (noWorkerMs > 0 && now - lastAlive >= noWorkerMs) {
              const why = `no worker has been alive for ${noWorkerMs / 1000} s (--no-worker-timeout-s)`;
              throw new MetaguardError('MG_ERR_NO_WORKERS', `${why}; ${await withdraw(why)}`);
            }
          }
        }
      }
    } finally {
      await progress.remove();
      // Leftovers expire with result_ttl_seconds; say so rather than fail a finished evaluation.
      await backend.deleteJob(jobId).catch((err: unknown) =>
        this.#logger.warn('backend_error', { job: jobId, during: 'delete job', code: (err as { code?: string }).code, message: (err as Error).message }),
      );
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.#localWorkers.map((w) => w.close()));
    this.#localWorkers = [];
    await this.#backend?.close();
  }

  /** The backend in use (for stats on scrape), once run() has started. */
  get backend(): Backend | undefined {
    return this.#backend;
  }
}

/**
 * Publishes an implementation's module; an endpoint has no code, so workers get a one-line module
 * naming it (its requests take the default shape; the manifest's `exec` has the full description).
 */
async function publishImplementation(backend: Backend, url: string, name?: string): Promise<ArtifactRef> {
  if (!isEndpointUrl(url)) return publishArtifact(backend, url, name);
  const bytes = Buffer.from(`export const http = ${JSON.stringify({ url })};\n`);
  const ref: ArtifactRef = { sha256: sha256(bytes), ext: '.mjs', name: 'endpoint.mjs' };
  await backend.putArtifact(ref.sha256, bytes);
  return ref;
}

/** The CLI's and evaluate()'s factory for `--dispatcher queue`. */
export function createQueueDispatcher(options: Pick<EvaluateOptions, 'queueConfig'> & Partial<Pick<EvaluateOptions, 'noWorkerTimeoutS'>>, logger?: Logger, metrics?: Metrics): QueueDispatcher {
  const config = resolveQueueConfig(options.queueConfig ?? {});
  return new QueueDispatcher({ config, ...(logger ? { logger } : {}), ...(metrics ? { metrics } : {}), ...(options.noWorkerTimeoutS !== undefined ? { noWorkerTimeoutS: options.noWorkerTimeoutS } : {}) });
}
