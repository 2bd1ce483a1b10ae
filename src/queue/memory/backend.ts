/**
 * The in-process backend: the same contract as Redis, held in this process's memory. It backs
 * `metaguard demo`, `spawn_local_workers`, `bench` without a server, and tests of the worker loop.
 * Its clock is this process's clock, which every party shares.
 */
import { EventEmitter } from 'node:events';
import { MetaguardError, wireError, type WireError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { waitForAny } from '../../util/wait.js';
import { pickPriority } from '../priority.js';
import { signDead, signResults } from '../messages.js';
import { validateBatches } from '../shared.js';
import { withDetail } from '../records.js';
import {
  priorities,
  type Backend,
  type BatchMessage,
  type Claim,
  type DeadEntry,
  type JobManifest,
  type Priority,
  type QueueStats,
  type ReclaimOutcome,
  type ReleaseOptions,
  type ResultEntry,
  type WorkerInfo,
  type JobProgress,
  type BenchRecord,
} from '../types.js';
import type { Role } from '../../core/protocol.js';

interface StoredBatch extends BatchMessage {
  attempts: number;
}

interface DeadRecord extends DeadEntry {
  batch?: StoredBatch;
}

export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  /** What this backend promises beyond the common contract (src/queue/types.ts). */
  readonly capabilities = {
    queue: { leases: true, circuitBreaker: true, strictPriority: true, weightedPriority: true, fifo: true, idempotentEnqueue: true, lostBatchDetection: true, wakeOnWork: true },
    admin: { perPriorityStats: true, pendingExcludesClaimed: true, delayedStats: true, withdraw: true, preflight: false, progress: true, priorityCounts: true, benchRecords: true },
  };
  readonly #config: QueueConfig;
  readonly #pending = new Map<Priority, string[]>(priorities.map((p) => [p, []]));
  readonly #batches = new Map<string, StoredBatch>();
  readonly #inflight = new Map<string, { owner: string; deadline: number }>();
  readonly #delayed = new Map<string, number>();
  readonly #dead = new Map<string, DeadRecord>();
  readonly #results = new Map<string, { seq: number; entry: ResultEntry }[]>();
  readonly #jobs = new Map<string, JobManifest>();
  readonly #withdrawn = new Set<string>();
  readonly #artifacts = new Map<string, Uint8Array>();
  readonly #workers = new Map<string, WorkerInfo>();
  readonly #strikes = new Map<string, number>();
  readonly #blockedUntil = new Map<string, number>();
  readonly #events = new EventEmitter();
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };
  readonly #progress = new Map<string, JobProgress>();
  readonly #cancelled = new Set<string>();
  #bench: BenchRecord | null = null;
  #seq = 0;
  #closed = false;

  constructor(config: QueueConfig) {
    this.#config = config;
    this.#events.setMaxListeners(0);
  }

  async connect(): Promise<void> {}

  async close(): Promise<void> {
    this.#closed = true;
    this.#events.emit('closed');
  }

  async now(): Promise<number> {
    return Date.now();
  }

  #check(): void {
    if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', 'the memory backend is closed');
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    this.#check();
    this.#artifacts.set(sha256, Uint8Array.from(bytes));
  }

  async getArtifact(sha256: string): Promise<Uint8Array | null> {
    this.#check();
    return this.#artifacts.get(sha256) ?? null;
  }

  async putJob(manifest: JobManifest): Promise<void> {
    this.#check();
    this.#jobs.set(manifest.jobId, structuredClone(manifest));
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    this.#check();
    const m = this.#jobs.get(jobId);
    return m ? structuredClone(m) : null;
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#jobs.delete(jobId);
    this.#results.delete(jobId);
  }

  /** True while `id` is pending, delayed or in flight. */
  #live(id: string): boolean {
    if (!this.#batches.has(id)) return false;
    return this.#inflight.has(id) || this.#delayed.has(id) || [...this.#pending.values()].some((q) => q.includes(id));
  }

  async missingBatches(ids: string[]): Promise<string[]> {
    this.#check();
    return ids.filter((id) => !this.#live(id));
  }

  /** Idempotent: a batch already pending, delayed or in flight is left alone. */
  async withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number> {
    this.#check();
    const ids = new Set<string>();
    for (const id of batchIds ?? this.#batches.keys()) if (this.#batches.get(id)?.jobId === jobId) ids.add(id);
    for (const id of ids) {
      this.#batches.delete(id);
      this.#inflight.delete(id);
      this.#delayed.delete(id);
    }
    for (const [p, list] of this.#pending) this.#pending.set(p, list.filter((id) => !ids.has(id)));
    this.#jobs.delete(jobId);
    this.#results.delete(jobId);
    this.#withdrawn.add(jobId);
    this.#events.emit('result:' + jobId);
    return ids.size;
  }

  async enqueue(batches: BatchMessage[]): Promise<void> {
    this.#check();
    validateBatches(batches);
    for (const b of batches) {
      if (this.#live(b.id)) continue;
      this.#dead.delete(b.id);
      this.#batches.set(b.id, { ...b, attempts: 0 });
      this.#pending.get(b.priority)!.push(b.id);
      this.#counters.dispatched++;
    }
    this.#events.emit('work');
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    if (this.#closed || [...this.#pending.values()].some((q) => q.length > 0)) return;
    await waitForAny(this.#events, ['work', 'closed'], timeoutMs);
  }

  /** Test hook: pushes a raw entry that is not a batch id onto a pending list (a poison message). */
  injectRaw(entry: string, priority: Priority = 'normal'): void {
    this.#pending.get(priority)!.push(entry);
  }

  #promoteDelayed(now: number): void {
    for (const [id, readyAt] of this.#delayed) {
      if (readyAt > now) continue;
      this.#delayed.delete(id);
      const b = this.#batches.get(id);
      if (b) this.#pending.get(b.priority)!.push(id);
    }
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    this.#check();
    const now = Date.now();
    this.#promoteDelayed(now);
    if ((this.#blockedUntil.get(workerId) ?? 0) > now) return [];
    const claims: Claim[] = [];
    while (claims.length < max) {
      const priority = pickPriority((p) => this.#pending.get(p)!.length > 0, this.#config);
      if (!priority) break;
      const id = this.#pending.get(priority)!.shift()!;
      const b = this.#batches.get(id);
      if (!b) {
        // Garbage on the queue is held under this worker's lease like a batch, so that its
        // dead-lettering cannot be lost if the worker dies first (reclaim dead-letters it then).
        this.#inflight.set(id, { owner: workerId, deadline: now + leaseMs });
        claims.push({ ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'unknown batch id') });
        continue;
      }
      b.attempts++;
      this.#inflight.set(id, { owner: workerId, deadline: now + leaseMs });
      claims.push({ ok: true, batch: { id: b.id, jobId: b.jobId, role: b.role, priority: b.priority, payload: b.payload, ...(b.mac ? { mac: b.mac } : {}), attempt: b.attempts } });
    }
    return claims;
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    this.#check();
    const now = Date.now();
    const lost: string[] = [];
    for (const id of ids) {
      const lease = this.#inflight.get(id);
      if (lease && lease.owner === workerId) lease.deadline = now + leaseMs;
      else lost.push(id);
    }
    return lost;
  }

  #append(jobId: string, entry: ResultEntry): void {
    // Nobody reads a withdrawn job's results: drop them instead of keeping a stream for no one.
    if (this.#withdrawn.has(jobId)) return;
    let stream = this.#results.get(jobId);
    if (!stream) this.#results.set(jobId, (stream = []));
    stream.push({ seq: ++this.#seq, entry });
    this.#events.emit('result:' + jobId);
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    this.#check();
    const key = this.#config.hmac_key;
    const mac = key ? { mac: signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) } : {};
    this.#append(batch.jobId, { kind: 'results', batchId: batch.id, role: batch.role, workerId, frame: Uint8Array.from(results), ...mac });
    const lease = this.#inflight.get(batch.id);
    if (!lease || lease.owner !== workerId) return false;
    this.#inflight.delete(batch.id);
    this.#batches.delete(batch.id);
    this.#counters.completed++;
    return true;
  }

  #toDead(id: string, error: WireError): void {
    const b = this.#batches.get(id);
    this.#batches.delete(id);
    this.#inflight.delete(id);
    this.#delayed.delete(id);
    this.#dead.set(id, { id, error, attempts: b?.attempts ?? 0, deadAt: Date.now(), ...(b ? { jobId: b.jobId, role: b.role as Role, batch: b } : {}) });
    if (b && this.#jobs.has(b.jobId)) {
      const key = this.#config.hmac_key;
      const mac = key ? { mac: signDead(key, { jobId: b.jobId, batchId: id, role: b.role, error }) } : {};
      this.#append(b.jobId, { kind: 'dead', batchId: id, role: b.role, error, ...mac });
    }
  }

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    this.#check();
    const lease = this.#inflight.get(id);
    const b = this.#batches.get(id);
    if (!lease || lease.owner !== workerId || !b) return;
    this.#inflight.delete(id);
    if (!options.countAttempt) {
      b.attempts = Math.max(0, b.attempts - 1);
      this.#pending.get(b.priority)!.unshift(id);
      return;
    }
    if (b.attempts > this.#config.max_requeue_attempts) {
      this.#toDead(id, withDetail(options.error, `(after ${b.attempts} attempts)`));
      return;
    }
    this.#counters.requeued++;
    this.#delayed.set(id, Date.now() + options.delayMs);
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    this.#check();
    // Only the lease holder may dead-letter: a stale worker must not take a batch from its new owner.
    if (this.#inflight.get(id)?.owner !== workerId) return;
    this.#toDead(id, error);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#check();
    const now = Date.now();
    const out: ReclaimOutcome = { requeued: [], deadLettered: [] };
    for (const [id, lease] of this.#inflight) {
      if (lease.deadline >= now) continue;
      this.#inflight.delete(id);
      const strikes = (this.#strikes.get(lease.owner) ?? 0) + 1;
      if (strikes >= this.#config.circuit_breaker_threshold) {
        this.#strikes.delete(lease.owner);
        this.#blockedUntil.set(lease.owner, now + this.#config.heartbeat_timeout * 1000);
      } else this.#strikes.set(lease.owner, strikes);
      const b = this.#batches.get(id);
      if (!b) {
        this.#toDead(id, wireError('MG_ERR_MALFORMED_BATCH', 'lease expired on an entry that is not a batch'));
        out.deadLettered.push(id);
        continue;
      }
      if (!this.#config.enable_requeue || b.attempts > this.#config.max_requeue_attempts) {
        this.#toDead(id, wireError('MG_ERR_LEASE_EXPIRED', `lease expired after ${b.attempts} attempts`));
        out.deadLettered.push(id);
      } else {
        this.#pending.get(b.priority)!.unshift(id);
        this.#counters.requeued++;
        out.requeued.push(id);
      }
    }
    return out;
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#check();
    const after = Number(cursor) || 0;
    const collect = () => (this.#results.get(jobId) ?? []).filter((e) => e.seq > after);
    let found = collect();
    if (found.length === 0 && blockMs > 0) {
      await waitForAny(this.#events, ['result:' + jobId, 'closed'], blockMs);
      found = collect();
    }
    return { cursor: found.length ? String(found[found.length - 1].seq) : cursor, entries: found.map((e) => e.entry) };
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    this.#check();
    this.#workers.set(info.workerId, { ...info, lastHeartbeat: Date.now() });
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    return [...this.#workers.values()].filter((w) => (w.lastHeartbeat ?? 0) >= since).map((w) => ({ ...w }));
  }

  async stats(): Promise<QueueStats> {
    const pending = Object.fromEntries(priorities.map((p) => [p, this.#pending.get(p)!.length])) as Record<Priority, number>;
    return {
      pending,
      inflight: this.#inflight.size,
      delayed: this.#delayed.size,
      dead: this.#dead.size,
      completed: this.#counters.completed,
      dispatched: this.#counters.dispatched,
      requeued: this.#counters.requeued,
      workers: await this.activeWorkers(),
    };
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    return [...this.#dead.values()].slice(0, limit).map(({ batch: _batch, ...entry }) => entry);
  }

  async retryDead(id?: string): Promise<number> {
    const ids = id === undefined ? [...this.#dead.keys()] : this.#dead.has(id) ? [id] : [];
    let count = 0;
    for (const deadId of ids) {
      const record = this.#dead.get(deadId)!;
      this.#dead.delete(deadId);
      if (!record.batch) continue;
      this.#batches.set(deadId, { ...record.batch, attempts: 0 });
      this.#pending.get(record.batch.priority)!.push(deadId);
      count++;
    }
    return count;
  }

  async purgeDead(): Promise<number> {
    const n = this.#dead.size;
    this.#dead.clear();
    return n;
  }

  // ---- administration (dashboard) ----

  async publishProgress(progress: JobProgress): Promise<{ cancelRequested: boolean }> {
    this.#check();
    this.#progress.set(progress.jobId, { ...structuredClone(progress), updatedAt: Date.now() });
    return { cancelRequested: this.#cancelled.has(progress.jobId) };
  }

  async listProgress(): Promise<JobProgress[]> {
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    return [...this.#progress.values()]
      .filter((p) => (p.updatedAt ?? 0) >= since)
      .map((p) => ({ ...structuredClone(p), ...(this.#cancelled.has(p.jobId) ? { cancelRequested: true } : {}) }));
  }

  async removeProgress(jobId: string): Promise<void> {
    this.#progress.delete(jobId);
    this.#cancelled.delete(jobId);
  }

  async requestCancel(jobId: string): Promise<boolean> {
    if (!this.#progress.has(jobId) && !this.#jobs.has(jobId)) return false;
    this.#cancelled.add(jobId);
    return true;
  }

  async priorityCounts(): Promise<{ inflight: Record<Priority, number>; dead: Record<Priority, number> }> {
    const zero = () => ({ critical: 0, high: 0, normal: 0, low: 0 });
    const inflight = zero();
    const dead = zero();
    for (const id of this.#inflight.keys()) inflight[this.#batches.get(id)?.priority ?? 'normal']++;
    for (const record of this.#dead.values()) dead[record.batch?.priority ?? 'normal']++;
    return { inflight, dead };
  }

  async putBenchRecord(record: Omit<BenchRecord, 'at'>): Promise<void> {
    this.#bench = { ...structuredClone(record), at: Date.now() };
  }

  async getBenchRecord(): Promise<BenchRecord | null> {
    return this.#bench ? structuredClone(this.#bench) : null;
  }
}
