/**
 * The queue dispatcher (coordinator side). It publishes the job's code as content-addressed artifacts
 * and its manifest, then feeds batches to the backend progressively — keeping a window of batches
 * outstanding, sized by the adaptive batch controller — while it reads the job's result stream.
 *
 * Accounting: every (role, case index) is recorded once. Results of a batch delivered twice are
 * dropped the second time; a batch dead-lettered before all its cases have results records the rest
 * as E_DELIVERY, so an evaluation never waits for cases that cannot come. A worker may publish a
 * batch's results in several parts (each under the transport's message limit, each signed on its
 * own): the batch is answered when every one of its cases has a result, from whichever part or
 * delivery; one whose next part does not come within partGraceMs (its worker died between parts) is
 * sent again.
 *
 * Trust: nothing read back is taken on its word. Every entry of the result stream must name a batch
 * this job sent, with the role and exactly the case indices it was sent with; with `hmac_key` it must
 * also carry a valid signature. Anything else is dropped, counted (`metaguard_forged_entries_total`)
 * and logged (`forged_entry`). A results entry for an outstanding batch that cannot be decoded or
 * verified sends the batch back for another run (at most `max_requeue_attempts` times, then its cases
 * are E_DELIVERY). Every tick the coordinator checks that its outstanding batches still exist in the
 * backend and republishes those that vanished (`queue_state_lost`), with the manifest and artifacts
 * when they vanished too.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCodec } from '../codec/index.js';
import { isMetaguardError, MetaguardError, type WireError } from '../errors.js';
import { silentLogger, type Logger } from '../observe/log.js';
import { jobChannel, resultChannel, type JobEvent } from '../observe/events.js';
import { logJobEvents } from '../observe/log-events.js';
import { loadArtifact, sha256 } from '../queue/artifacts.js';
import { isEndpointUrl } from '../http/endpoint.js';
import { AdaptiveBatchSize } from '../queue/batching.js';
import { BoundedMap } from '../queue/artifact-memo.js';
import type { QueueConfig } from '../options/queue.js';
import { createBackend, describeQueue } from '../queue/index.js';
import { decodeResultsFrame, encodeCases, signBatch, signManifest, verifyDead, verifyResults } from '../queue/messages.js';
import type { ArtifactRef, Backend, BatchMessage, JobManifest, ResultEntry } from '../queue/types.js';
import { can } from '../queue/capabilities.js';
import { ProgressPublisher } from './progress.js';
import { abortReason, moduleLoadError, stoppedError, type DispatchEvents, type Dispatcher, type JobSpec } from './types.js';
import { roles, type Role, type CaseResult } from '../core/protocol.js';

export interface QueueDispatcherOptions {
  config: QueueConfig;
  logger?: Logger;
  /** Use this backend instead of creating one from the config (closed by close()). */
  backend?: Backend;
  /** In-process workers on this backend, started by whoever created it: close() stops them before the backend. */
  localWorkers?: LocalWorker[];
  /** Called when the batch size changes. */
  onBatchSize?(size: number): void;
  /**
   * When no worker has been alive for this long, the run withdraws its job and fails with
   * MG_ERR_NO_WORKERS. 0 waits forever. @defaultValue 120
   */
  noWorkerTimeoutS?: number;
}

/** A worker running in this process on the coordinator's backend (the memory backend's workers). */
export interface LocalWorker {
  close(): Promise<void>;
  destroy(): Promise<void>;
}

interface Outstanding {
  role: Role;
  /** The batch's cases: indices start, start + 1, …, start + size - 1. */
  start: number;
  size: number;
  /** Times this coordinator sent it again (bad results frame, lost from the backend). */
  resends: number;
  /** Results arrived in parts and some are still missing: when the last part came (ms), cases recorded, their busy time. */
  partial?: { last: number; cases: number; busyMs: number };
}

/** How long a batch may stay partly answered before it is sent again: twice its lease, at least 10 s. */
export const partGraceMs = (leaseSeconds: number): number => Math.max(10_000, 2 * leaseSeconds * 1000);

/** Whether every case of the batch has a result. */
function allRecorded(recorded: ArrayLike<unknown>, b: Outstanding): boolean {
  for (let i = b.start; i < b.start + b.size; i++) if (!recorded[i]) return false;
  return true;
}

/** Why an entry of the result stream was dropped (label of metaguard_forged_entries_total). */
export type ForgedReason = 'unknown_batch' | 'wrong_role' | 'wrong_indices' | 'bad_signature' | 'undecodable';

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
/** Encoded frames a run keeps for the other role's batch of the same range (see encodeRange). */
const FRAMES_KEPT = 8;
const MAX_OUTSTANDING = 512;

export class QueueDispatcher implements Dispatcher {
  readonly #config: QueueConfig;
  readonly #logger: Logger;
  readonly #options: QueueDispatcherOptions;
  #backend: Backend | undefined;
  #localWorkers: LocalWorker[];
  /** Duplicate results dropped (redeliveries); exposed for tests and metrics. */
  duplicatesDropped = 0;
  /** Result-stream entries dropped as forged or unusable, by reason (also metaguard_forged_entries_total). */
  readonly forged: Record<ForgedReason, number> = { unknown_batch: 0, wrong_role: 0, wrong_indices: 0, bad_signature: 0, undecodable: 0 };
  /** Batches republished after they vanished from the backend. */
  batchesLost = 0;

  constructor(options: QueueDispatcherOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#logger = options.logger ?? silentLogger;
    this.#localWorkers = options.localWorkers ?? [];
  }

  async #withRetry<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // The coordinator rides out backend outages (a Redis restart): retry with capped backoff, until
    // the run is stopped. Only a retryable code is retried: a malformed batch (MG_ERR_MALFORMED_BATCH)
    // or a full backend (MG_ERR_BACKEND_OOM) fails the same way every time, so the run stops with it.
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isMetaguardError(err) || !err.retryable || signal?.aborted) throw err;
        this.#logger.warn('backend_error', { during: what, attempt, code: err.code, message: err.message });
        try {
          await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)), undefined, signal ? { signal } : undefined);
        } catch {
          throw err; // stopped while waiting to retry: the caller sees the signal and stops the run
        }
      }
    }
  }

  /**
   * Runs the job. What it observes is published on the diagnostics channels (`metaguard:job`,
   * `metaguard:result`) with this dispatcher as the source; its logger subscribes for the run.
   */
  async run(job: JobSpec, events: DispatchEvents = {}): Promise<Record<Role, CaseResult[]>> {
    const stopLogging = logJobEvents(this, this.#logger);
    try {
      return await this.#run(job, events);
    } finally {
      stopLogging();
    }
  }

  async #run(job: JobSpec, events: DispatchEvents): Promise<Record<Role, CaseResult[]>> {
    const config = this.#config;
    const key = config.hmac_key;
    const backend = (this.#backend ??= this.#options.backend ?? (await createBackend(config, { logger: this.#logger })));
    await backend.connect();
    const notices = await (can(backend, 'preflight') ? backend.preflight() : Promise.resolve([])).catch((err: unknown) => {
      // The start-up checks (e.g. Redis's eviction policy) are advice: say they failed, and go on.
      this.#logger.warn('backend_error', { during: 'preflight', code: (err as { code?: string }).code, message: (err as Error).message });
      return [];
    });
    for (const notice of notices) this.#logger.warn(notice.event, { ...notice });
    const codec = createCodec({ compress: config.compress });
    const jobId = randomUUID();
    const publish = (e: JobEvent) => {
      if (jobChannel.hasSubscribers) jobChannel.publish(e);
    };
    publish({ source: this, job: jobId, kind: 'started', codec: codec.impl });
    // The bytes are kept: a manifest republished after the backend lost it names the same code.
    const name = (path: string | undefined) => (path === undefined ? undefined : basename(path));
    const artifacts = [
      loadArtifact(job.taskUrl, name(job.sources?.task)),
      loadImplementation(job.implUrls.baseline, name(job.sources?.baseline)),
      loadImplementation(job.implUrls.candidate, name(job.sources?.candidate)),
    ];
    const [task, baseline, candidate] = artifacts.map((a) => a.ref);
    const manifest: JobManifest = { jobId, task, implementations: { baseline, candidate }, seed: job.seed, timeoutMs: job.timeoutMs, memMb: job.memMb, createdAt: await backend.now(), ...(job.exec ? { exec: job.exec } : {}), resultsFormat: 2 };
    if (key) manifest.mac = signManifest(key, manifest);
    const publishJob = async () => {
      await this.#withRetry('publish artifacts', () => Promise.all(artifacts.map((a) => backend.putArtifact(a.ref.sha256, a.bytes))));
      await this.#withRetry('publish job', () => backend.putJob(manifest));
    };
    await publishJob();

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
      if (resultChannel.hasSubscribers) resultChannel.publish({ source: this, role, result: r });
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
        publish({ source: this, job: jobId, kind: 'batch_size', size });
        this.#options.onBatchSize?.(size);
      },
    });
    /** Every batch this job sent (what result entries are checked against), and those not yet answered. */
    const sent = new Map<string, Outstanding>();
    const outstanding = new Map<string, Outstanding>();
    const signal = events.signal;
    const where = describeQueue(config);
    /** Withdraws the job (best effort: a backend that is down leaves the batches to expire) and says so. */
    const withdraw = async (why: string): Promise<string> => {
      try {
        if (!can(backend, 'withdraw')) return `job ${jobId} left on ${where} (the ${backend.kind} backend cannot withdraw a job; its batches run and their results expire)`;
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

    /**
     * Encoded frames by case range, kept until the other role asks for the same range: both roles'
     * batches of a range carry the same cases, so its frame is compressed once (the role travels
     * beside the payload, and the batch signature covers both). Bounded: ranges the two roles cut
     * differently (adaptive sizes) are dropped oldest first.
     */
    const frames = new BoundedMap<Uint8Array>(FRAMES_KEPT);
    const encodeRange = (start: number, size: number): Uint8Array => {
      const range = `${start}+${size}`;
      const kept = frames.get(range);
      if (kept) {
        frames.delete(range);
        return kept;
      }
      const payload = job.payloads ? codec.encode(job.payloads.slice(start, start + size)) : encodeCases(codec, Array.from({ length: size }, (_, i) => ({ index: start + i, args: job.cases.at(start + i)! })));
      frames.set(range, payload);
      return payload;
    };
    const message = (id: string, b: Outstanding): BatchMessage => {
      const msg: BatchMessage = { id, jobId, role: b.role, priority: config.priority, payload: encodeRange(b.start, b.size) };
      if (key) msg.mac = signBatch(key, msg);
      return msg;
    };

    const publishMore = async () => {
      const batch: BatchMessage[] = [];
      // The target is read again per batch: the batch size grows while a window is filled.
      while (outstanding.size < outstandingTarget(slots, batcher.size) && (next.baseline < n || next.candidate < n)) {
        const role = roles[turn++ % 2];
        if (next[role] >= n) continue;
        const start = next[role];
        const end = Math.min(n, start + batcher.take());
        next[role] = end;
        const b: Outstanding = { role, start, size: end - start, resends: 0 };
        const id = `${jobId}:${role}:${start}`;
        batch.push(message(id, b));
        sent.set(id, b);
        outstanding.set(id, b);
      }
      if (batch.length) {
        // Idempotent on the backend: a retry after a failure that had in fact committed adds nothing.
        await this.#withRetry('enqueue', () => backend.enqueue(batch), signal);
        if (jobChannel.hasSubscribers) publish({ source: this, job: jobId, kind: 'dispatched', batches: batch.length, cases: batch.reduce((s, b) => s + sent.get(b.id)!.size, 0) });
      }
    };

    const giveUp = (id: string, b: Outstanding, reason: string) => {
      outstanding.delete(id);
      for (let index = b.start; index < b.start + b.size; index++) {
        if (!recorded[b.role][index]) record(b.role, { index, passed: false, durationMs: 0, error: { code: 'E_DELIVERY', message: reason } });
      }
    };

    /** Sends batches back for another run, bounded by max_requeue_attempts (then their cases are E_DELIVERY). */
    const resend = async (ids: string[], why: string) => {
      const again: BatchMessage[] = [];
      for (const id of ids) {
        const b = outstanding.get(id);
        if (!b) continue;
        if (++b.resends > config.max_requeue_attempts) {
          publish({ source: this, job: jobId, kind: 'dead_lettered', batch: id, code: 'E_DELIVERY', retryable: false, reason: `${why}; gave up after ${b.resends - 1} resends` });
          giveUp(id, b, `batch ${why}; gave up after ${b.resends - 1} resends`);
        } else again.push(message(id, b));
      }
      if (again.length === 0) return;
      await this.#withRetry('requeue', () => backend.enqueue(again));
      publish({ source: this, job: jobId, kind: 'resent', batches: again.length, cases: again.reduce((sum, b) => sum + (outstanding.get(b.id)?.size ?? 0), 0), reason: why });
    };

    const forged = (entry: ResultEntry, reason: ForgedReason, message: string) => {
      this.forged[reason]++;
      publish({ source: this, job: jobId, kind: 'forged', batch: entry.batchId, entry: entry.kind, reason, message, ...(entry.kind === 'dead' ? { claimedCode: entry.error.code, claimedReason: entry.error.message } : { worker: entry.workerId }) });
    };

    /** Set when a worker reports that it could not load the job's modules (the run stops with exit 2). */
    let unloadable: { role: Role; workerId: string; error: { code: string; message: string } } | undefined;
    /** Checks one entry of the result stream against what was sent; returns batches to send again. */
    const accept = (entry: ResultEntry): string | undefined => {
      const b = sent.get(entry.batchId);
      if (!b) return void forged(entry, 'unknown_batch', 'this job never sent a batch with this id');
      if (entry.role !== undefined && entry.role !== b.role) return void forged(entry, 'wrong_role', `batch was sent as ${b.role}, entry says ${entry.role}`);
      const open = outstanding.has(entry.batchId);
      if (entry.kind === 'dead') {
        if (key && !verifyDead(key, { jobId, batchId: entry.batchId, role: entry.role ?? '', error: entry.error }, entry.mac)) {
          // Not trusted; if the batch really is gone, the next tick's check republishes it (and names
          // this claim, which is what an operator needs when coordinator and workers hold different keys).
          if (open) unverifiedDead.set(entry.batchId, entry.error);
          return void forged(entry, 'bad_signature', entry.mac ? 'dead letter signature does not match (forged, or a different hmac_key)' : 'dead letter is not signed (hmac_key is set)');
        }
        publish({ source: this, job: jobId, kind: 'dead_lettered', batch: entry.batchId, code: entry.error.code, retryable: entry.error.retryable, reason: entry.error.message });
        if (open) giveUp(entry.batchId, b, `batch dead-lettered with ${entry.error.code}: ${entry.error.message}`);
        return undefined;
      }
      if (key && !verifyResults(key, { jobId, batchId: entry.batchId, role: entry.role, workerId: entry.workerId }, entry.frame, entry.mac)) {
        forged(entry, 'bad_signature', entry.mac ? 'results signature does not match (forged, tampered, or a different hmac_key)' : 'results are not signed (hmac_key is set)');
        return open ? entry.batchId : undefined;
      }
      let results: CaseResult[];
      let part: { part: number; parts: number } | undefined;
      try {
        ({ results, part } = decodeResultsFrame(codec, entry.frame));
      } catch (err) {
        publish({ source: this, job: jobId, kind: 'undecodable', batch: entry.batchId, message: (err as Error).message });
        forged(entry, 'undecodable', (err as Error).message);
        return open ? entry.batchId : undefined;
      }
      // Results up to the first whose index the batch was not sent with, or that came before.
      const seen = new Uint8Array(b.size);
      let valid = 0;
      for (const r of results) {
        const k = r.index - b.start;
        // Not an integer in [0, size) (NaN and fractions included), or seen already: stop counting.
        if (!(k >= 0 && k < b.size) || seen[k] !== 0) break;
        seen[k] = 1;
        valid++;
      }
      // A whole frame covers exactly the batch's cases; a part covers some of them, each once.
      if (part ? valid !== results.length || part.parts > b.size : valid !== b.size || results.length !== b.size) {
        forged(entry, 'wrong_indices', part ? `results part ${part.part}/${part.parts} covers case indices the batch was not sent with` : `results cover other case indices than the ${b.size} the batch was sent with`);
        return open ? entry.batchId : undefined;
      }
      const noLoad = results.find((r) => r.error?.code === 'MG_ERR_MODULE_LOAD' || r.error?.code === 'MG_ERR_INVALID_IMPLEMENTATION' || r.error?.code === 'MG_ERR_INVALID_TASK');
      if (noLoad) {
        unloadable ??= { role: b.role, workerId: entry.workerId, error: noLoad.error! };
        return undefined;
      }
      let busyMs = 0;
      for (const r of results) {
        record(b.role, r);
        busyMs += r.durationMs;
      }
      if (!open) return undefined;
      if (part && !allRecorded(recorded[b.role], b)) {
        const p = (b.partial ??= { last: 0, cases: 0, busyMs: 0 });
        p.last = Date.now();
        p.cases += results.length;
        p.busyMs += busyMs;
        return undefined;
      }
      outstanding.delete(entry.batchId);
      batcher.record(results.length + (b.partial?.cases ?? 0), busyMs + (b.partial?.busyMs ?? 0));
      delete b.partial;
      publish({ source: this, job: jobId, kind: 'batch_completed', batch: entry.batchId, worker: entry.workerId, cases: b.size, ...(part ? { parts: part.parts } : {}) });
      return undefined;
    };

    let cursor = '0';
    /** Reads the stream once; returns how many entries came and the outstanding batches with a bad results entry. */
    const consume = async (blockMs: number): Promise<{ count: number; bad: string[] }> => {
      const read = await this.#withRetry('read results', () => backend.readResults(jobId, cursor, blockMs), signal);
      cursor = read.cursor;
      const bad: string[] = [];
      for (const entry of read.entries) {
        const again = accept(entry);
        if (again !== undefined) bad.push(again);
      }
      return { count: read.entries.length, bad };
    };

    /**
     * Batches with a results entry that could not be decoded or verified. A forgery for a batch that
     * is still pending or running costs nothing (its real results come); a batch that is gone from the
     * backend (its worker's frame was the bad one) is sent back for another run.
     */
    const suspects = new Set<string>();
    /** Outstanding batches with a dead letter that failed its signature check: what that entry claimed. */
    const unverifiedDead = new Map<string, WireError>();
    const rejectedFrames = async (bad: string[]) => {
      if (bad.length === 0) return;
      if (!can(backend, 'lostBatchDetection')) return resend([...new Set(bad)], 'results frame could not be decoded or verified');
      for (const id of bad) suspects.add(id);
      await checkLost(bad);
    };

    /** Republishes outstanding batches (of `ids`) that vanished from the backend (a restart without persistence, eviction, deletion). */
    const checkLost = async (ids: string[]) => {
      const check = [...new Set(ids)].filter((id) => outstanding.has(id));
      if (!can(backend, 'lostBatchDetection') || check.length === 0) return;
      const missing = await this.#withRetry('check batches', () => backend.missingBatches(check));
      if (missing.length === 0) return;
      // A batch completed or dead-lettered before the check has its entry on the stream already.
      for (;;) {
        const more = await consume(0);
        for (const id of more.bad) suspects.add(id);
        if (more.count === 0 || remaining === 0) break;
      }
      // A batch answered in part is gone from the backend by design (its first part completed it):
      // the rest of its parts are on their way, and the grace check below sends it again if not.
      const gone = missing.filter((id) => outstanding.has(id) && !outstanding.get(id)!.partial);
      if (gone.length === 0) return;
      const rejected = gone.filter((id) => suspects.has(id));
      const lost = gone.filter((id) => !suspects.has(id));
      for (const id of gone) suspects.delete(id);
      const cases = gone.reduce((s, id) => s + outstanding.get(id)!.size, 0);
      try {
        // The manifest and artifacts may have vanished with the batches: workers need them to run.
        const manifestLost = (await this.#withRetry('check job', () => backend.getJob(jobId).catch((err: unknown) => {
          if (isMetaguardError(err) && err.code === 'MG_ERR_MALFORMED_RECORD') return null;
          throw err;
        }))) === null;
        if (manifestLost) await publishJob();
        if (rejected.length) await resend(rejected, 'results frame could not be decoded or verified');
        if (lost.length === 0 && !manifestLost) return;
        this.batchesLost += lost.length;
        this.#logger.warn('queue_state_lost', {
          job: jobId,
          batches: lost.length,
          cases: lost.reduce((s, id) => s + outstanding.get(id)!.size, 0),
          manifest_republished: manifestLost,
          message: 'outstanding batches vanished from the backend; republishing them',
        });
        const claimedDead = lost.filter((id) => unverifiedDead.has(id));
        const vanished = lost.filter((id) => !unverifiedDead.has(id));
        for (const id of claimedDead) {
          const claimed = unverifiedDead.get(id)!;
          await resend([id], `dead-lettered with a signature this coordinator cannot verify (is hmac_key the same on coordinator and workers?): ${claimed.code}: ${claimed.message}`);
          unverifiedDead.delete(id);
        }
        await resend(vanished, 'lost from the backend');
      } catch (err) {
        throw new MetaguardError('MG_ERR_QUEUE_STATE_LOST', `${gone.length} batches (${cases} cases) of job ${jobId} vanished from the ${backend.kind} backend and could not be republished: ${(err as Error).message}`, { cause: err });
      }
    };

    let lastTick = 0;
    const tickMs = config.heartbeat_check_interval * 1000;
    const graceMs = partGraceMs(config.lease_seconds);
    try {
      while (remaining > 0) {
        if (signal?.aborted) throw stoppedError(signal, await withdraw(abortReason(signal).message));
        if (await progress.tick()) {
          const why = 'cancelled from the dashboard';
          throw new MetaguardError('MG_ERR_CANCELLED', `evaluation ${why}: ${await withdraw(why)}`);
        }
        try {
          await publishMore();
          await rejectedFrames((await consume(Math.min(250, tickMs))).bad);
        } catch (err) {
          if (signal?.aborted) continue;
          throw err;
        }
        if (unloadable) {
          // A worker could not load the job's modules: a job-level error, not N case results.
          const err = moduleLoadError(unloadable.role, job.sources, unloadable.error, ` on worker ${unloadable.workerId}`);
          throw new MetaguardError(err.code, `${err.message}; ${await withdraw(err.message)}`);
        }
        const now = Date.now();
        if (remaining > 0 && now - lastTick >= tickMs) {
          lastTick = now;
          // Reclaim here too: dead-lettering must not depend on a live worker to notice.
          const reclaimed = await this.#withRetry('reclaim', () => backend.reclaimExpired(), signal);
          if (reclaimed.requeued.length) {
            publish({ source: this, job: jobId, kind: 'reclaimed', batches: reclaimed.requeued.length, cases: reclaimed.requeued.reduce((sum, id) => sum + (outstanding.get(id)?.size ?? 0), 0) });
          }
          await checkLost([...outstanding.keys()]);
          const stalled = [...outstanding].filter(([, b]) => b.partial && now - b.partial.last >= graceMs).map(([id]) => id);
          if (stalled.length) {
            for (const id of stalled) delete outstanding.get(id)!.partial;
            await resend(stalled, `results arrived in part only (no further part within ${graceMs / 1000} s: its worker stopped between parts)`);
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
    await this.#stop((w) => w.close());
  }

  /** Stops in-process workers without draining (a close() in progress returns with it), then the backend. */
  async destroy(): Promise<void> {
    await this.#stop((w) => w.destroy());
  }

  async #stop(how: (w: LocalWorker) => Promise<void>): Promise<void> {
    // The list is kept until every worker stopped, so a destroy() during close() reaches them too.
    await Promise.all(this.#localWorkers.map(how));
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
function loadImplementation(url: string, name?: string): { ref: ArtifactRef; bytes: Uint8Array } {
  if (!isEndpointUrl(url)) return loadArtifact(url, name);
  const bytes = Buffer.from(`export const http = ${JSON.stringify({ url })};\n`);
  return { ref: { sha256: sha256(bytes), ext: '.mjs', name: 'endpoint.mjs' }, bytes };
}
