/**
 * The one seam between metaguard and a queue: the coordinator (`dispatch/queue`) and the worker loop
 * (`daemon/daemon`) know only this interface. Memory, Redis, Kafka, … implement it, and one
 * conformance suite (`test/backend-conformance.test.ts`) runs against every one.
 *
 * Delivery is at-least-once: a batch is claimed under a lease measured on the backend's clock, renewed
 * by the worker while it runs, and reclaimed when the lease expires. Results are published with the
 * batch id so the coordinator can account each (job, role, case index) exactly once.
 */
import type { Priority, Role } from '../core/protocol.js';
import type { JobExec } from '../http/endpoint.js';

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

/** What a claim returns: a batch, or an entry that is not a well-formed batch (to dead-letter). */
export type Claim = { ok: true; batch: ClaimedBatch } | { ok: false; id: string; reason: string };

/**
 * An entry of a job's result stream, as read back: nothing in it is trusted until the coordinator has
 * checked it against the batch it sent (id, role, case indices) and, with `hmac_key`, its `mac`.
 */
export type ResultEntry =
  | { kind: 'results'; batchId: string; role: Role; workerId: string; frame: Uint8Array; mac?: string }
  | { kind: 'dead'; batchId: string; role?: Role; reason: string; mac?: string };

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
  reason: string;
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

export interface ReclaimOutcome {
  requeued: string[];
  deadLettered: string[];
}

export interface Backend {
  readonly kind: string;
  connect(): Promise<void>;
  /** Idempotent; pending blocking reads return. */
  close(): Promise<void>;
  /** The backend's clock in ms (Redis TIME for Redis): leases and heartbeats are measured on it. */
  now(): Promise<number>;

  putArtifact(sha256: string, bytes: Uint8Array): Promise<void>;
  getArtifact(sha256: string): Promise<Uint8Array | null>;
  putJob(manifest: JobManifest): Promise<void>;
  getJob(jobId: string): Promise<JobManifest | null>;
  /** Drops the job's manifest and result stream (artifacts are shared and expire on their own). */
  deleteJob(jobId: string): Promise<void>;
  /**
   * Withdraws a job its coordinator gave up on (a signal, a deadline, no workers, a cancellation from
   * the dashboard): removes its batches wherever they wait (pending, delayed, in flight: their leases
   * are revoked) — `batchIds` when the caller knows them, else every batch of the job found on the
   * queue — drops the manifest and the result stream, and remembers the job as withdrawn for
   * `result_ttl_seconds`, so results a worker still publishes for it are dropped rather than stored.
   * Workers holding one of its batches see the lease lost and the job gone, and drop the batch;
   * nothing is dead-lettered. Returns how many batches were removed.
   *
   * Optional: a backend without it (RabbitMQ, SQS so far) leaves a stopped job's batches to be run
   * and their results to expire.
   */
  withdrawJob?(jobId: string, batchIds?: readonly string[]): Promise<number>;

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
  releaseBatch(workerId: string, id: string, options: { delayMs: number; countAttempt: boolean; reason: string }): Promise<void>;
  /** Moves a claimed entry to the dead-letter store with its reason, and tells its job (if known). */
  deadLetter(workerId: string, id: string, reason: string): Promise<void>;
  /**
   * Optional: waits up to `timeoutMs` for new work to be enqueued (a worker with an empty queue calls
   * it instead of sleeping its whole poll interval). Resolves early on new work; never rejects for a
   * timeout.
   */
  waitForWork?(timeoutMs: number): Promise<void>;
  /**
   * Optional: of `ids`, those that are neither pending, delayed nor in flight (completed,
   * dead-lettered, or lost with the backend's state). The coordinator calls it every tick and
   * republishes what was lost. Backends that cannot lose a batch once acknowledged leave it out.
   */
  missingBatches?(ids: string[]): Promise<string[]>;
  /** Optional: configuration problems worth a warning at start (e.g. a Redis eviction policy). */
  preflight?(): Promise<BackendNotice[]>;
  /** Requeues batches whose lease expired, dead-lettering those past `max_requeue_attempts`. */
  reclaimExpired(): Promise<ReclaimOutcome>;

  /** Reads a job's result stream after `cursor` ('0' = start), waiting up to `blockMs` for entries. */
  readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }>;

  heartbeat(info: WorkerInfo): Promise<void>;
  removeWorker(workerId: string): Promise<void>;
  /** Workers whose last heartbeat is within `heartbeat_timeout`. */
  activeWorkers(): Promise<WorkerInfo[]>;

  stats(): Promise<QueueStats>;
  listDead(limit?: number): Promise<DeadEntry[]>;
  /** Moves dead-lettered batches back to pending with fresh attempts; returns how many. */
  retryDead(id?: string): Promise<number>;
  purgeDead(): Promise<number>;

  // Administration used by `metaguard dashboard` (optional: a backend without them shows less).

  /**
   * Publishes (or refreshes) a running evaluation's progress; entries not refreshed within
   * `heartbeat_timeout` are dropped. Resolves with whether a cancellation of the job was requested.
   */
  publishProgress?(progress: JobProgress): Promise<{ cancelRequested: boolean }>;
  /** Evaluations whose progress was refreshed within `heartbeat_timeout`. */
  listProgress?(): Promise<JobProgress[]>;
  /** Drops a job's progress entry (its coordinator finished). */
  removeProgress?(jobId: string): Promise<void>;
  /** Marks a running job as to be cancelled (its coordinator stops at its next tick); false if unknown. */
  requestCancel?(jobId: string): Promise<boolean>;
  /** In-flight and dead-lettered batches per priority (stats() counts them in total). Counts at most 10,000 of each. */
  priorityCounts?(): Promise<{ inflight: Record<Priority, number>; dead: Record<Priority, number> }>;
  /** Records / reads the last bench sweep against this queue. */
  putBenchRecord?(record: Omit<BenchRecord, 'at'>): Promise<void>;
  getBenchRecord?(): Promise<BenchRecord | null>;
}
