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
import { roles, type DispatchEvents, type Dispatcher, type JobSpec, type Role } from './types.js';

export interface QueueDispatcherOptions {
  config: QueueConfig;
  logger?: Logger;
  /** Use this backend instead of creating one from the config (tests, bench). */
  backend?: Backend;
  /** Called when the batch size changes. */
  onBatchSize?(size: number): void;
  metrics?: Metrics;
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

  async #withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    // The coordinator rides out backend outages (a Redis restart): retry with capped backoff.
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isMetaguardError(err) || err.code !== 'MG_ERR_BACKEND') throw err;
        this.#logger.warn('backend_error', { during: what, attempt, message: err.message });
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
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
      Promise.all([publishArtifact(backend, job.taskUrl), publishImplementation(backend, job.implUrls.baseline), publishImplementation(backend, job.implUrls.candidate)]),
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
        await this.#withRetry('enqueue', () => backend.enqueue(batch));
        metrics?.casesDispatched.inc(batch.reduce((s, b) => s + outstanding.get(b.id)!.size, 0));
        this.#logger.log('debug', 'queue_dispatched', { job: jobId, batches: batch.length, cases: batch.reduce((s, b) => s + outstanding.get(b.id)!.size, 0) });
      }
    };

    let cursor = '0';
    let lastTick = 0;
    const tickMs = config.heartbeat_check_interval * 1000;
    try {
      while (remaining > 0) {
        if (await progress.tick()) await withdrawCancelledJob(backend, jobId, this.#logger);
        await publishMore();
        const read = await this.#withRetry('read results', () => backend.readResults(jobId, cursor, Math.min(250, tickMs)));
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
          const reclaimed = await this.#withRetry('reclaim', () => backend.reclaimExpired());
          if (reclaimed.requeued.length) {
            this.#logger.warn('queue_requeued', { job: jobId, batches: reclaimed.requeued.length });
            metrics?.batchesRequeued.inc(reclaimed.requeued.length);
            metrics?.casesRequeued.inc(reclaimed.requeued.reduce((sum, id) => sum + (outstanding.get(id)?.size ?? 0), 0));
          }
          const workers = await this.#withRetry('active workers', () => backend.activeWorkers());
          slots = Math.max(1, workers.reduce((s, w) => s + w.threads, 0));
          if (workers.length === 0) this.#logger.warn('heartbeat_timeout', { job: jobId, message: 'no active workers; cases wait in the queue', outstanding_batches: outstanding.size });
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
async function publishImplementation(backend: Backend, url: string): Promise<ArtifactRef> {
  if (!isEndpointUrl(url)) return publishArtifact(backend, url);
  const bytes = Buffer.from(`export const http = ${JSON.stringify({ url })};\n`);
  const ref: ArtifactRef = { sha256: sha256(bytes), ext: '.mjs', name: 'endpoint.mjs' };
  await backend.putArtifact(ref.sha256, bytes);
  return ref;
}

/**
 * A cancellation requested from the dashboard: withdraw the job (its queued batches and manifest go)
 * and stop the evaluation with MG_ERR_CANCELLED. Kept apart so the coordinator's own withdrawal on
 * SIGINT can share it.
 */
async function withdrawCancelledJob(backend: Backend, jobId: string, logger: Logger): Promise<never> {
  const removed = await backend.withdrawJob?.(jobId).catch((err: unknown) => {
    logger.warn('backend_error', { job: jobId, during: 'withdraw job', code: (err as { code?: string }).code, message: (err as Error).message });
    return undefined;
  });
  logger.warn('job_withdrawn', { job: jobId, reason: 'cancelled from the dashboard', batches_removed: removed });
  throw new MetaguardError('MG_ERR_CANCELLED', `evaluation cancelled from the dashboard: job ${jobId} withdrawn`);
}

/** The CLI's and evaluate()'s factory for `--dispatcher queue`. */
export function createQueueDispatcher(options: Pick<EvaluateOptions, 'queueConfig'>, logger?: Logger, metrics?: Metrics): QueueDispatcher {
  const config = resolveQueueConfig(options.queueConfig ?? {});
  return new QueueDispatcher({ config, ...(logger ? { logger } : {}), ...(metrics ? { metrics } : {}) });
}
