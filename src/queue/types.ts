/**
 * The seam between metaguard and a queue, split by concern. A backend (memory, Redis, Kafka, …)
 * implements four small interfaces and declares what it promises beyond the common contract in
 * `capabilities`, one object per concern:
 *
 *   WorkQueue       enqueue, claim, renew, complete, release (retry), dead-letter, reclaim, results
 *   JobStore        job manifests and content-addressed artifacts
 *   WorkerRegistry  worker heartbeats
 *   QueueAdmin      stats, the dead-letter queue, withdrawing a job, dashboard records
 *
 * `Backend` is their intersection plus the connection (`connect`, `close`, `now`). Callers that need
 * one concern take that interface (the worker's artifact cache takes a `JobStore`, the progress
 * publisher a `QueueAdmin`). An optional operation is there exactly when its capability is declared:
 * callers test the capability with `can(backend, 'withdraw')` (src/queue/capabilities.ts), never the
 * method, and the conformance suite (`test/backend-conformance.test.ts`, one section per concern)
 * checks each declaration against the methods and gates its tests on the declared capabilities.
 *
 * Delivery is at-least-once: a batch is claimed under a lease measured on the backend's clock, renewed
 * by the worker while it runs, and reclaimed when the lease expires. Results are published with the
 * batch id so the coordinator can account each (job, role, case index) exactly once.
 */
import type { Priority, Role } from '../core/protocol.js';
import type { JobExec } from '../http/endpoint.js';
import type { WireError } from '../errors.js';

/** A batch's priority belongs to the protocol (core/); the seam names it too. */
export { priorities, type Priority } from '../core/protocol.js';

/** A content-addressed module shipped with a job: workers fetch, verify and cache it. */
export interface ArtifactRef {
  sha256: string;
  /** File extension the module needs to load with (`.mjs`, `.js`, `.ts`, …). */
  ext: string;
  /** Original file name, for messages only: never a path a worker loads. */
  name: string;
}

export interface JobManifest {
  jobId: string;
  task: ArtifactRef;
  implementations: Record<Role, ArtifactRef>;
  seed: number;
  timeoutMs: number;
  memMb: number;
  /** Backend clock, ms. */
  createdAt: number;
  /** Concurrency and endpoints per role (header templates only, never values); absent: plain modules. */
  exec?: JobExec;
  /** Hex HMAC over every field above (messages.signManifest), when the queue has an `hmac_key`. */
  mac?: string;
  /**
   * 2: the coordinator also reads plain passes as pass lists (messages.encodeResultFrames), so workers
   * may send them that way; absent: one JSON result per payload, as every coordinator reads. Not
   * signed: it only says which of two encodings the coordinator accepts (it accepts both), and a worker
   * that ignores it (an older one) sends the one every coordinator reads.
   */
  resultsFormat?: 2;
}

/** A batch as it travels on the queue. `payload` is a codec frame of serialized cases. */
export interface BatchMessage {
  id: string;
  jobId: string;
  role: Role;
  priority: Priority;
  payload: Uint8Array;
  /** Hex HMAC-SHA256 over id, job, role and payload, when the queue has an `hmac_key`. */
  mac?: string;
}

export interface ClaimedBatch extends BatchMessage {
  /** 1 on first delivery, incremented by each reclaim or counted retry. */
  attempt: number;
}

/**
 * What a claim returns: a batch, or an entry that is not a well-formed batch (to dead-letter with
 * `error`, usually MG_ERR_MALFORMED_BATCH).
 */
export type Claim = { ok: true; batch: ClaimedBatch } | { ok: false; id: string; error: WireError };

/**
 * An entry of a job's result stream, as read back: nothing in it is trusted until the coordinator has
 * checked it against the batch it sent (id, role, case indices) and, with `hmac_key`, its `mac`.
 */
export type ResultEntry =
  | { kind: 'results'; batchId: string; role: Role; workerId: string; frame: Uint8Array; mac?: string }
  | { kind: 'dead'; batchId: string; role?: Role; error: WireError; mac?: string };

export interface WorkerInfo {
  workerId: string;
  host: string;
  pid: number;
  threads: number;
  startedAt: number;
  /** Backend clock of the last heartbeat, ms (filled in by the backend). */
  lastHeartbeat?: number;
  casesCompleted?: number;
  state?: 'running' | 'draining';
  /** metaguard version of the worker, and the Node.js version it runs on. */
  version?: string;
  node?: string;
  /** Batch codec in use. */
  codec?: 'native' | 'js';
  /** Cases finished per second since the previous heartbeat. */
  casesPerSec?: number;
  /** Per thread slot: share of wall time spent running cases since the previous heartbeat, and V8 heap used. */
  threadLoad?: { busy: number; heapBytes: number }[];
}

/**
 * An evaluation in progress, as its coordinator publishes it (the dashboard reads these). Counts are
 * per role; `passed` counts cases that passed so far, `errors` cases that ended with an error code.
 */
export interface JobProgress {
  jobId: string;
  task: string;
  /** Cases per role. */
  total: number;
  done: Record<Role, number>;
  passed: Record<Role, number>;
  errors: Record<Role, number>;
  priority: Priority;
  host: string;
  pid: number;
  /** Coordinator clock, ms. */
  startedAt: number;
  /** Backend clock of the last publication, ms (filled in by the backend). */
  updatedAt?: number;
  /** Set once a cancellation was requested (dashboard). */
  cancelRequested?: boolean;
}

/** The last `metaguard bench` sweep against this queue. */
export interface BenchRecord {
  recommendedBatchSize: number;
  /** Backend clock, ms. */
  at: number;
  sweep: { batch_size: number; cases_per_sec: number }[];
}

export interface DeadEntry {
  id: string;
  jobId?: string;
  role?: Role;
  /** Why it was dead-lettered (stored with records.encodeWireError, read with parseWireError). */
  error: WireError;
  attempts: number;
  /** Backend clock, ms. */
  deadAt: number;
}

export interface QueueStats {
  pending: Record<Priority, number>;
  inflight: number;
  delayed: number;
  dead: number;
  completed: number;
  dispatched: number;
  requeued: number;
  workers: WorkerInfo[];
}

export interface BackendNotice {
  event: 'redis_eviction_policy';
  message: string;
  [field: string]: unknown;
}

/** How a claimed batch is given back; `error` is why (the dead letter's error once attempts run out). */
export interface ReleaseOptions {
  delayMs: number;
  countAttempt: boolean;
  error: WireError;
}

export interface ReclaimOutcome {
  requeued: string[];
  deadLettered: string[];
}

// ---- capabilities -----------------------------------------------------------------------------------

/** What a work queue promises beyond the common contract (enqueue, claim, complete, release, dead-letter). */
export interface WorkQueueCapabilities {
  /**
   * Claims hold per-batch leases on the backend clock that expire unless renewed; `reclaimExpired`
   * requeues expired ones with attempt + 1 and dead-letters them past `max_requeue_attempts` or when
   * `enable_requeue` is off. Without it the lease is something else (a group membership, a
   * connection, a visibility timeout) and `reclaimExpired` has nothing to report.
   */
  readonly leases: boolean;
  /** A worker that lost `circuit_breaker_threshold` leases may not claim for `heartbeat_timeout`. */
  readonly circuitBreaker: boolean;
  /** `strict_priority` orders claims across the whole queue. */
  readonly strictPriority: boolean;
  /** `queue_weights` pick among the queue's non-empty priorities. */
  readonly weightedPriority: boolean;
  /** Claims follow enqueue order within a priority, queue-wide. */
  readonly fifo: boolean;
  /** Enqueueing a batch id that is already pending, delayed or in flight adds nothing. */
  readonly idempotentEnqueue: boolean;
  /** `missingBatches` names batches lost with the backend's state (the coordinator republishes them). */
  readonly lostBatchDetection: boolean;
  /** `waitForWork` wakes an idle worker when work is enqueued (else the worker polls). */
  readonly wakeOnWork: boolean;
}

/** What queue administration offers beyond stats and the dead-letter queue. */
export interface QueueAdminCapabilities {
  /** `stats().pending` is split per priority. */
  readonly perPriorityStats: boolean;
  /** `stats().pending` counts only batches waiting to be claimed (not the claimed ones). */
  readonly pendingExcludesClaimed: boolean;
  /** `stats().delayed` counts a released batch as soon as `releaseBatch` returns. */
  readonly delayedStats: boolean;
  /** `withdrawJob` removes a stopped job's batches; a worker may then read a missing manifest as "withdrawn". */
  readonly withdraw: boolean;
  /** `preflight` reports configuration problems worth a warning at start. */
  readonly preflight: boolean;
  /** Progress records and cancellation requests for `metaguard dashboard`. */
  readonly progress: boolean;
  /** `priorityCounts`: in-flight and dead-lettered batches per priority. */
  readonly priorityCounts: boolean;
  /** The last `metaguard bench` sweep is stored on the queue. */
  readonly benchRecords: boolean;
}

export interface BackendCapabilities {
  readonly queue: WorkQueueCapabilities;
  readonly admin: QueueAdminCapabilities;
}

// ---- optional operations, one group per capability ------------------------------------------------

/** Capability `queue.lostBatchDetection`. */
export interface LostBatchDetection {
  /**
   * Of `ids`, those that are neither pending, delayed nor in flight (completed, dead-lettered, or lost
   * with the backend's state). The coordinator calls it every tick and republishes what was lost.
   */
  missingBatches(ids: string[]): Promise<string[]>;
}

/** Capability `queue.wakeOnWork`. */
export interface WorkSignal {
  /**
   * Waits up to `timeoutMs` for new work to be enqueued (a worker with an empty queue calls it instead
   * of sleeping its whole poll interval). Resolves early on new work; never rejects for a timeout.
   */
  waitForWork(timeoutMs: number): Promise<void>;
}

/** Capability `admin.withdraw`. */
export interface JobWithdrawal {
  /**
   * Withdraws a job its coordinator gave up on (a signal, a deadline, no workers, a cancellation from
   * the dashboard): removes its batches wherever they wait (pending, delayed, in flight: their leases
   * are revoked) — `batchIds` when the caller knows them, else every batch of the job found on the
   * queue — drops the manifest and the result stream, and remembers the job as withdrawn for
   * `result_ttl_seconds`, so results a worker still publishes for it are dropped rather than stored.
   * Workers holding one of its batches see the lease lost and the job gone, and drop the batch;
   * nothing is dead-lettered. Returns how many batches were removed.
   *
   * Brokers that cannot take a message back (Kafka, RabbitMQ, SQS) tombstone the job and their
   * workers drop its batches as they meet them.
   */
  withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number>;
}

/** Capability `admin.preflight`. */
export interface Preflight {
  /** Configuration problems worth a warning at start (e.g. a Redis eviction policy). */
  preflight(): Promise<BackendNotice[]>;
}

/** Capability `admin.progress` (`metaguard dashboard`). */
export interface ProgressBoard {
  /**
   * Publishes (or refreshes) a running evaluation's progress; entries not refreshed within
   * `heartbeat_timeout` are dropped. Resolves with whether a cancellation of the job was requested.
   */
  publishProgress(progress: JobProgress): Promise<{ cancelRequested: boolean }>;
  /** Evaluations whose progress was refreshed within `heartbeat_timeout`. */
  listProgress(): Promise<JobProgress[]>;
  /** Drops a job's progress entry (its coordinator finished). */
  removeProgress(jobId: string): Promise<void>;
  /** Marks a running job as to be cancelled (its coordinator stops at its next tick); false if unknown. */
  requestCancel(jobId: string): Promise<boolean>;
}

/** Capability `admin.priorityCounts`. */
export interface PriorityCounts {
  /** In-flight and dead-lettered batches per priority (stats() counts them in total). Counts at most 10,000 of each. */
  priorityCounts(): Promise<{ inflight: Record<Priority, number>; dead: Record<Priority, number> }>;
}

/** Capability `admin.benchRecords`. */
export interface BenchRecords {
  /** Records / reads the last bench sweep against this queue. */
  putBenchRecord(record: Omit<BenchRecord, 'at'>): Promise<void>;
  getBenchRecord(): Promise<BenchRecord | null>;
}

/** The operations each optional capability brings (see `can` in src/queue/capabilities.ts). */
export interface CapabilityMethods {
  lostBatchDetection: LostBatchDetection;
  wakeOnWork: WorkSignal;
  withdraw: JobWithdrawal;
  preflight: Preflight;
  progress: ProgressBoard;
  priorityCounts: PriorityCounts;
  benchRecords: BenchRecords;
}

// ---- the concerns ------------------------------------------------------------------------------------

/** The work queue: batches from enqueue to a published result or a dead letter. */
export interface WorkQueue extends Partial<LostBatchDetection>, Partial<WorkSignal> {
  readonly capabilities: { readonly queue: WorkQueueCapabilities };
  /** Adds batches to the pending queue of their priority. */
  enqueue(batches: BatchMessage[]): Promise<void>;
  /**
   * Claims up to `max` batches for `workerId` under a lease of `leaseMs` on the backend clock, in
   * priority order (weighted or strict, from the queue config). Batches whose retry delay has passed
   * become pending first. Returns [] when nothing is pending or the worker's circuit is open.
   */
  claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]>;
  /** Extends the leases of `ids` held by `workerId` in one round trip; returns the ids it no longer holds. */
  renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]>;
  /**
   * Publishes a batch's results on its job's result stream and removes the batch, atomically.
   * Returns false when the worker no longer held the lease (results are still published; the
   * coordinator drops duplicates).
   */
  completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean>;
  /**
   * Gives a claimed batch back. `countAttempt: false` hands it back at once (drain); `true` is a retry
   * after `delayMs` that counts against `max_requeue_attempts` (dead-lettered past it).
   */
  releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void>;
  /** Moves a claimed entry to the dead-letter store with its error, and tells its job (if known). */
  deadLetter(workerId: string, id: string, error: WireError): Promise<void>;
  /** Requeues batches whose lease expired, dead-lettering those past `max_requeue_attempts`. */
  reclaimExpired(): Promise<ReclaimOutcome>;
  /** Reads a job's result stream after `cursor` ('0' = start), waiting up to `blockMs` for entries. */
  readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }>;
}

/** Job manifests and the content-addressed artifacts (task and implementation modules) they name. */
export interface JobStore {
  putArtifact(sha256: string, bytes: Uint8Array): Promise<void>;
  getArtifact(sha256: string): Promise<Uint8Array | null>;
  putJob(manifest: JobManifest): Promise<void>;
  getJob(jobId: string): Promise<JobManifest | null>;
  /** Drops the job's manifest and result stream (artifacts are shared and expire on their own). */
  deleteJob(jobId: string): Promise<void>;
}

/** Worker heartbeats: who is consuming, and how fast. */
export interface WorkerRegistry {
  heartbeat(info: WorkerInfo): Promise<void>;
  removeWorker(workerId: string): Promise<void>;
  /** Workers whose last heartbeat is within `heartbeat_timeout`. */
  activeWorkers(): Promise<WorkerInfo[]>;
}

/** Queue administration: stats, the dead-letter queue, and (by capability) withdrawal and dashboard records. */
export interface QueueAdmin extends Partial<JobWithdrawal>, Partial<Preflight>, Partial<ProgressBoard>, Partial<PriorityCounts>, Partial<BenchRecords> {
  readonly capabilities: { readonly admin: QueueAdminCapabilities };
  stats(): Promise<QueueStats>;
  listDead(limit?: number): Promise<DeadEntry[]>;
  /** Moves dead-lettered batches back to pending with fresh attempts; returns how many. */
  retryDead(id?: string): Promise<number>;
  purgeDead(): Promise<number>;
}

/** The connection every concern shares. */
export interface BackendConnection {
  readonly kind: string;
  connect(): Promise<void>;
  /** Idempotent; pending blocking reads return. */
  close(): Promise<void>;
  /** The backend's clock in ms (Redis TIME for Redis): leases and heartbeats are measured on it. */
  now(): Promise<number>;
}

/** A whole backend: every concern over one connection. */
export interface Backend extends BackendConnection, WorkQueue, JobStore, WorkerRegistry, QueueAdmin {
  readonly capabilities: BackendCapabilities;
}
