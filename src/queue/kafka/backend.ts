/**
 * Kafka implementation of the queue `Backend` (kafkajs). This file is the coordinator's side (jobs,
 * enqueue, lost-batch checks, results, heartbeats, stats); beside it: client.ts (connection, errors,
 * topic views), topic-view.ts, wire.ts (record schemas), group-member.ts (the worker side: claims and
 * commits), commit-tracker.ts (offset bookkeeping, no broker), dead-letters.ts (the DLQ topic).
 *
 * Topics (T = `topic`, default the queue name):
 *   T          batches. key = batch id; headers id, job, role, priority, mac, attempt (deliveries
 *              before this record), not_before (retry backoff, ms); value = the codec frame, as is.
 *              Consumed by the worker group `consumer_group` (default `metaguard-workers`): its
 *              partitions are the unit of parallelism (create T with at least as many partitions as
 *              workers; an auto-created topic gets the broker default, often 1).
 *   T.results  result entries. key = job id (one job's entries stay in order in one partition);
 *              headers kind=results|dead, batch, role, worker, reason; value = results frame. Also
 *              kind=moved markers (batch, partition, offset): where a worker re-produced a batch.
 *   T.jobs     job manifests (key `job:<id>`, JSON; a null value deletes) and artifacts
 *              (key `artifact:<sha256>`, bytes). Workers read it from the beginning.
 *   T.workers  heartbeats. key = worker id, value = JSON WorkerInfo (null: the worker left). Give it a
 *              short retention (or compaction): observers read its recent history.
 *   T.dlq      dead letters. key = batch id; the original value and headers plus reason, dead_at,
 *              attempts, source; and marker records (header kind=retried|purge) of `dlq retry|purge`.
 *
 * Delivery maps onto the consumer group:
 *   - A claim is a record of a partition this worker's consumer owns. Fetched records go into a
 *     bounded local buffer (a partition is paused while the buffer is full: backpressure) from which
 *     `claimBatches` picks in priority order. Priorities are honoured within that buffer only: Kafka
 *     has one log per partition, not one queue per priority.
 *   - Offsets are committed (autoCommit off) only after a record's results entry — or its retry copy
 *     or dead letter — has been acknowledged by the brokers (acks=-1), and only up to the highest
 *     CONTIGUOUS finished offset of the partition, never past an unfinished record: at-least-once.
 *   - There is no per-batch lease. A lease is partition ownership: when a worker dies (or stops
 *     heartbeating for `heartbeat_timeout`, the consumer session timeout) the group rebalances and
 *     the partition's uncommitted records are redelivered to its new owner. `renewLeases` reports the
 *     claims whose partition was revoked; their results are still published (the coordinator drops
 *     duplicates), but their offsets are no longer committed by this worker. `reclaimExpired` has
 *     nothing to do. `lease_seconds`, `enable_requeue` and `circuit_breaker_threshold` do not apply.
 *   - Attempts count explicit retries only (`releaseBatch` with `countAttempt`): a redelivery after a
 *     rebalance is not counted, because Kafka keeps no per-record delivery count.
 *   - `releaseBatch(countAttempt: false)` (drain, hand-back) returns the record to the local buffer
 *     uncommitted. A live worker claims it again; a worker that closes leaves the group, and the
 *     partition — from its committed offset — goes to the others. The record is never re-produced.
 *   - `releaseBatch(countAttempt: true)` re-produces the record with attempt+1 and a not_before of
 *     now+delayMs (whoever owns the partition keeps it buffered until then), then commits the
 *     original; past `max_requeue_attempts` it is dead-lettered instead.
 *   - While the group rebalances (kafkajs reported it, the new assignment has not come) nothing new
 *     is claimed: the records here may be about to move to another worker.
 *   - Batches of a job the coordinator has deleted (finished) are skipped at claim time, and a dead
 *     letter of such a batch is dropped: redeliveries after a crash must not fill the DLQ.
 *
 * Config: `heartbeat_timeout` is the consumer session timeout (real brokers accept 6 s to 30 min by
 * default: group.min/max.session.timeout.ms), `heartbeat_check_interval` the consumer heartbeat
 * interval (at most a third of the session). The coordinator side never joins the worker group: its
 * readers (results, heartbeats, dead letters) and a worker's reader of T.jobs are private consumers
 * (a group of their own each, nothing committed). `readResults` sees every entry appended to
 * T.results after `connect()`; a job's entries are kept in memory until `deleteJob`.
 *
 * `stats()`: pending = consumer lag of the worker group (listed under `normal`: a record's priority
 * is only known once fetched), `kafka.partitions` has it per partition; dispatched = records in T,
 * completed = records the group has committed (completed, retried or dead-lettered); in-flight,
 * delayed and requeued count this process only.
 *
 * Lost batches (`missingBatches`): the coordinator knows where each batch it enqueued landed (it picks
 * the partition with the producer's partitioner, and the produce response gives the offset). A batch is
 * missing once the group has committed past it (finished: its results or dead letter are on T.results)
 * or once its offset is outside the partition's log (below the log start: retention, deleted records;
 * at or past the end: the topic was recreated or an unclean leader election truncated it). A worker
 * that re-produces a batch for a counted retry writes a `moved` marker to T.results before committing
 * the original, and the check reads T.results up to now first, so a retried batch is followed, not
 * taken for finished. Enqueue is idempotent on the same bookkeeping (a batch still live is not
 * produced again); a second record of one batch (an acknowledgement lost, a produce retried) is
 * skipped by the worker that holds the first (group-member.ts), `kafka.duplicatesSkipped` in stats.
 *
 * Read-back: every record is checked against its schema (wire.ts, ../records.ts); one that fails is
 * skipped and logged as `malformed_record` with the field, the reason and the consequence. A job
 * manifest that fails makes `getJob` throw MG_ERR_MALFORMED_RECORD (its batches are dead-lettered with
 * that reason), never "job not found".
 *
 * Clock: `now()` is this host's Date.now(); heartbeat freshness compares a heartbeat record's
 * CreateTime with the reader's clock, so hosts need synchronised clocks (NTP).
 */
import { EventEmitter } from 'node:events';
import { Partitioners, type KafkaMessage, type Message, type PartitionMetadata } from 'kafkajs';
import { MetaguardError, type WireError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import type { Logger } from '../../observe/log.js';
import { waitForAny } from '../../util/wait.js';
import { logMalformed, MalformedRecord, parseManifest, parseWorkerInfo } from '../records.js';
import { ArtifactMemo, BoundedMap, BoundedSet, onceAtATime } from '../artifact-memo.js';
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
} from '../types.js';
import { KafkaClient, type Topics } from './client.js';
import { KafkaDeadLetters } from './dead-letters.js';
import { GroupMember, type KafkaBackendEvent } from './group-member.js';
import type { TopicView } from './topic-view.js';
import { parseResultRecord, roleSet, toBuffer, withTimeout } from './wire.js';

export { DEFAULT_CONSUMER_GROUP } from './client.js';
export type { KafkaBackendEvent } from './group-member.js';

export interface KafkaBackendOptions {
  /** Records a worker buffers ahead of its claims (per backend). @defaultValue 16 */
  prefetch?: number;
  /** kafkajs client id. @defaultValue `metaguard-<host>` */
  clientId?: string;
  /** kafkajs log level (its logs go to stderr). @defaultValue nothing */
  logLevel?: 'nothing' | 'error' | 'warn' | 'info' | 'debug';
  /** How long reads of the jobs, workers and dead-letter topics wait to catch up. @defaultValue 15000 */
  catchUpTimeoutMs?: number;
  /** Group-membership events of the worker consumer, for logs and tests. */
  onEvent?(event: KafkaBackendEvent): void;
  /**
   * Receives `malformed_record` warnings for records read back that fail their schema, and
   * `backend_error` (with its code) for failures nothing retries (leaving the broker, a commit).
   */
  logger?: Logger;
  /** Bytes of artifacts kept in memory, the most recently used (others are read again from the jobs topic). @defaultValue 64 MiB */
  artifactMemoBytes?: number;
  /**
   * What this process keeps of the jobs topic, the most recent first: manifests of jobs not deleted,
   * manifests that failed their schema, and deleted jobs. @defaultValue 10,000 / 1,000 / 100,000
   */
  jobsKept?: { manifests?: number; malformed?: number; deleted?: number };
}

/** Per-partition offsets and lag of the worker group, as `stats()` reports them. */
export interface KafkaPartitionLag {
  partition: number;
  /** Offset the group resumes from (-1: never committed, it starts at `low`). */
  committed: number;
  low: number;
  high: number;
  lag: number;
}

export interface KafkaQueueStats extends QueueStats {
  kafka: { topic: string; group: string; partitions: KafkaPartitionLag[]; lag: number; duplicatesSkipped: number; note: string };
}

const ENQUEUE_CHUNK = 500;
const ENQUEUE_CHUNK_BYTES = 512 * 1024;
/** Results of jobs nobody here asked for are kept this long (a reader may register late). */
const UNREGISTERED_RESULTS_MS = 60_000;
const STATS_NOTE =
  'pending = consumer lag of the worker group (records not yet committed, including ones in flight on workers); ' +
  'in-flight, delayed and requeued are this process only; dispatched = records appended to the topic; completed = records the group has committed';
const SHA256 = /^[0-9a-f]{64}$/;
const PARTITIONS_CACHE_MS = 30_000;
const JOBS_CONSEQUENCE = 'skipped: a job manifest that fails its schema makes getJob fail with MG_ERR_MALFORMED_RECORD, so workers dead-letter its batches with that reason (not "job not found")';

/** Where the coordinator's record of a batch is (its enqueue, or the retry copy a worker reported). */
interface Placed {
  jobId: string;
  partition: number;
  offset: bigint;
}

type BatchState = 'live' | 'finished' | 'lost' | 'unknown';

export class KafkaBackend implements Backend {
  readonly kind = 'kafka';
  /**
   * What this backend promises beyond the common contract. lostBatchDetection: missingBatches (see
   * the header). idempotentEnqueue is left false: a batch still live is not produced again (tested in
   * test/kafka.test.ts), but claims are not FIFO across partitions, which the shared check assumes.
   */
  readonly capabilities = {
    queue: { leases: false, circuitBreaker: false, strictPriority: false, weightedPriority: false, fifo: false, idempotentEnqueue: false, lostBatchDetection: true, wakeOnWork: false },
    admin: { perPriorityStats: false, pendingExcludesClaimed: false, delayedStats: false, withdraw: true, preflight: false, progress: false, priorityCounts: false, benchRecords: false },
  };
  readonly #config: QueueConfig;
  readonly #options: KafkaBackendOptions;
  readonly #client: KafkaClient;
  readonly #events = new EventEmitter();
  readonly #member: GroupMember;
  readonly #dead: KafkaDeadLetters;
  #closing: Promise<void> | undefined;
  #dispatched = 0;

  // coordinator side
  #resultsView: TopicView | undefined;
  readonly #results = new Map<string, { entries: ResultEntry[]; registered: boolean; firstAt: number }>();
  readonly #deletedJobs = new Set<string>();
  /** Batches this process enqueued, by id: where their live record is (missingBatches, idempotent enqueue). */
  readonly #placed = new Map<string, Placed>();
  #partitionsCache: { at: number; partitions: PartitionMetadata[] } | undefined;

  // jobs and workers views
  #jobsView: TopicView | undefined;
  /**
   * Manifests of jobs not deleted, bounded (jobsKept): a finished job's tombstone removes its manifest,
   * but a job whose coordinator died keeps one on the compacted topic for good, and anyone with write
   * access could add more. A job evicted here reads as missing (its batches are dead-lettered, not run).
   */
  readonly #manifests: BoundedMap<JobManifest>;
  /** Manifests that failed their schema: getJob throws their error instead of trusting them. */
  readonly #badManifests: BoundedMap<MalformedRecord>;
  /** Recently used artifacts' bytes, within a byte budget: the jobs topic carries every evaluation's, and a Map kept them all for the process's life. */
  readonly #artifacts: ArtifactMemo;
  /** Artifacts read from the topic (the latest 100,000), so that one whose bytes the memo let go is read again, not reported missing. */
  readonly #artifactsRead = new BoundedSet(100_000);
  /** Rereads of the topic in progress, one per artifact. */
  readonly #rereads = new Map<string, Promise<Uint8Array | null>>();
  /** Deleted jobs, bounded (jobsKept): one is added per finished evaluation. A job forgotten here reads as missing after a catch-up read. */
  readonly #jobTombstones: BoundedSet;
  #workersView: TopicView | undefined;
  #workersCaughtUp = false;
  readonly #workers = new Map<string, WorkerInfo>();

  constructor(config: QueueConfig, options: KafkaBackendOptions = {}) {
    this.#artifacts = new ArtifactMemo(options.artifactMemoBytes);
    this.#manifests = new BoundedMap(options.jobsKept?.manifests ?? 10_000);
    this.#badManifests = new BoundedMap(options.jobsKept?.malformed ?? 1_000);
    this.#jobTombstones = new BoundedSet(options.jobsKept?.deleted ?? 100_000);
    this.#config = config;
    this.#options = options;
    this.#events.setMaxListeners(0);
    this.#client = new KafkaClient(config, {
      ...(options.clientId !== undefined ? { clientId: options.clientId } : {}),
      ...(options.logLevel !== undefined ? { logLevel: options.logLevel } : {}),
      ...(options.catchUpTimeoutMs !== undefined ? { catchUpTimeoutMs: options.catchUpTimeoutMs } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
    this.#dead = new KafkaDeadLetters(this.#client);
    this.#member = new GroupMember({
      client: this.#client,
      config,
      prefetch: Math.max(1, options.prefetch ?? 16),
      isTombstoned: (jobId) => this.#jobTombstones.has(jobId),
      startJobsView: () => {
        this.#startJobsView()
          .start()
          .catch((err: unknown) => this.#client.failed('start the jobs reader (retried by the next getJob)', err, 'info'));
      },
      emit: (event) => this.#emit(event),
    });
  }

  /** Topic names this backend uses (tests, tools). */
  get topics(): Readonly<Topics> {
    return this.#client.topics;
  }

  get consumerGroup(): string {
    return this.#client.group;
  }

  #emit(event: KafkaBackendEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch (err) {
      // An observer's failure is not the backend's: said once per event, never thrown into the consumer.
      this.#client.failed(`the onEvent observer of ${event.type}`, err, 'debug');
    }
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  connect(): Promise<void> {
    return this.#client.connect();
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    this.#client.closed = true;
    this.#events.emit('closed');
    const views = [this.#resultsView, this.#jobsView, this.#workersView, this.#dead.view].filter((v): v is TopicView => v !== undefined);
    await Promise.all([...views.map((v) => withTimeout(v.stop(), 10_000, undefined)), this.#member.close()]);
    await this.#client.closeConnections();
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  #onJobsRecord(p: number, m: KafkaMessage): void {
    const topic = this.#client.topics.jobs;
    const key = m.key?.toString('utf8') ?? '';
    const record = `jobs record ${topic}/${p}@${m.offset}`;
    if (key.startsWith('artifact:')) {
      const sha = key.slice('artifact:'.length);
      if (!SHA256.test(sha)) throw new MalformedRecord(record, 'key', 'must be artifact:<sha256>');
      if (!m.value) throw new MalformedRecord(record, 'value', 'an artifact must have bytes');
      this.#artifacts.set(sha, new Uint8Array(m.value)); // a copy of its own: a slice would pin the fetch buffer
      this.#artifactsRead.add(sha);
      return;
    }
    if (!key.startsWith('job:')) throw new MalformedRecord(record, 'key', 'must be job:<id> or artifact:<sha256>');
    const jobId = key.slice('job:'.length);
    if (m.value === null) {
      this.#manifests.delete(jobId);
      this.#badManifests.delete(jobId);
      this.#jobTombstones.add(jobId);
      return;
    }
    this.#jobTombstones.delete(jobId);
    try {
      this.#manifests.set(jobId, parseManifest(jobId, m.value.toString('utf8')));
      this.#badManifests.delete(jobId);
    } catch (err) {
      if (!(err instanceof MalformedRecord)) throw err;
      this.#manifests.delete(jobId);
      this.#badManifests.set(jobId, err);
      logMalformed(this.#options.logger, err, { topic, consequence: JOBS_CONSEQUENCE });
    }
  }

  #startJobsView(): TopicView {
    return (this.#jobsView ??= this.#client.view(this.#client.topics.jobs, 'jobs', 'beginning', (p, m) => this.#onJobsRecord(p, m), JOBS_CONSEQUENCE));
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    await this.#client.send('put artifact', this.#client.topics.jobs, [{ key: `artifact:${sha256}`, value: toBuffer(bytes), headers: { kind: 'artifact' } }]);
  }

  async getArtifact(sha256: string): Promise<Uint8Array | null> {
    this.#client.checkOpen();
    const known = this.#artifacts.get(sha256);
    if (known) return known;
    await this.#client.caughtUp(this.#startJobsView(), `artifact ${sha256.slice(0, 12)}`);
    const read = this.#artifacts.get(sha256);
    if (read || !this.#artifactsRead.has(sha256)) return read ?? null;
    // Read once, and its bytes since let go: read the topic again from its start for this one, once
    // however many batches ask at the same moment.
    return onceAtATime(this.#rereads, sha256, () => this.#reread(sha256));
  }

  async #reread(sha256: string): Promise<Uint8Array | null> {
    let found: Uint8Array | undefined;
    const key = `artifact:${sha256}`;
    const view = this.#client.view(this.#client.topics.jobs, 'artifact-reread', 'beginning', (_p, m) => {
      if (m.value && m.key?.toString('utf8') === key) found = new Uint8Array(m.value); // the last copy, as the first reading kept
    }, JOBS_CONSEQUENCE);
    try {
      await this.#client.caughtUp(view, `artifact ${sha256.slice(0, 12)} again`);
    } finally {
      await view.stop();
    }
    this.#options.logger?.log('debug', 'artifact_reread', { topic: this.#client.topics.jobs, sha256, found: found !== undefined });
    if (found) this.#artifacts.set(sha256, found);
    return found ?? null;
  }

  async putJob(manifest: JobManifest): Promise<void> {
    await this.#client.ensureConnected();
    // The coordinator reads this job's results: register it before any of its batches exists.
    this.#registerJob(manifest.jobId);
    this.#startResultsView();
    this.#startWorkersView();
    await this.#client.send('put job', this.#client.topics.jobs, [{ key: `job:${manifest.jobId}`, value: JSON.stringify(manifest), headers: { kind: 'job' } }]);
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    this.#client.checkOpen();
    if (!this.#manifests.has(jobId) && !this.#jobTombstones.has(jobId) && !this.#badManifests.has(jobId)) await this.#client.caughtUp(this.#startJobsView(), `job ${jobId}`);
    const bad = this.#badManifests.get(jobId);
    if (bad) throw bad;
    const m = this.#manifests.get(jobId);
    return m ? structuredClone(m) : null;
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#results.delete(jobId);
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    for (const [id, placed] of this.#placed) if (placed.jobId === jobId) this.#placed.delete(id);
    await this.#client.send('delete job', this.#client.topics.jobs, [{ key: `job:${jobId}`, value: null, headers: { kind: 'job-deleted' } }]);
    // Forget the cached manifest: the next getJob catches up with the jobs topic, through the tombstone
    // just appended, instead of answering from the cache the jobs reader has not updated yet.
    this.#manifests.delete(jobId);
  }

  /**
   * Kafka cannot take records back: withdrawing is deleting the job (a tombstone on the jobs topic).
   * Workers skip the job's batches at claim time and drop their dead letters; its results stream is
   * forgotten here. Returns 0: no record is removed from the topic.
   */
  async withdrawJob(jobId: string, _batchIds?: readonly string[]): Promise<number> {
    await this.deleteJob(jobId);
    // This process skips the job's records from now on, without waiting for its jobs reader.
    this.#jobTombstones.add(jobId);
    return 0;
  }

  // --- batches (coordinator side) ------------------------------------------------------------------

  /**
   * Idempotent: a batch whose record this process enqueued before and which is still live (neither
   * finished nor lost) is not produced again; a batch that finished or was lost is (a republish). A
   * produce that failed after the brokers had in fact written it (a lost acknowledgement) cannot be
   * told apart here: its retry writes a second record, which workers skip as a duplicate
   * (group-member.ts). kafkajs's idempotent producer is not used: it needs the cluster's controller
   * for InitProducerId, which the test broker (librdkafka's mock) does not name.
   */
  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    const again = batches.filter((b) => this.#placed.has(b.id)).map((b) => b.id);
    const states = again.length ? await this.#states(again) : new Map<string, BatchState>();
    const seen = new Set<string>();
    const todo = batches.filter((b) => {
      if (seen.has(b.id) || states.get(b.id) === 'live') return false;
      seen.add(b.id);
      return true;
    });
    if (todo.length === 0) return;
    const topic = this.#client.topics.batches;
    // Each record's partition is chosen here (the producer's own partitioner, by key) so that its
    // offset is known from the produce response: missingBatches checks it against the topic.
    const partitionMetadata = await this.#partitionMetadata();
    const partitioner = Partitioners.DefaultPartitioner();
    // One produce request per chunk; kafkajs puts a chunk's records of one partition into one record
    // batch, which the broker's message.max.bytes (1 MiB by default) bounds: chunk by bytes too.
    let chunk: { batch: BatchMessage; message: Message & { partition: number } }[] = [];
    let bytes = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      const sent = await this.#client.send('enqueue', topic, chunk.map((c) => c.message));
      const base = new Map(sent.map((r) => [r.partition, BigInt(r.baseOffset ?? '-1')]));
      const index = new Map<number, bigint>();
      for (const { batch, message } of chunk) {
        const first = base.get(message.partition);
        const i = index.get(message.partition) ?? 0n;
        index.set(message.partition, i + 1n);
        if (first !== undefined && first >= 0n) this.#placed.set(batch.id, { jobId: batch.jobId, partition: message.partition, offset: first + i });
      }
      this.#dispatched += chunk.length;
      chunk = [];
      bytes = 0;
    };
    for (const b of todo) {
      const size = b.payload.byteLength + b.id.length * 2 + b.jobId.length + 256;
      if (chunk.length > 0 && (chunk.length >= ENQUEUE_CHUNK || bytes + size > ENQUEUE_CHUNK_BYTES)) await flush();
      const message: Message = {
        key: b.id,
        value: toBuffer(b.payload),
        headers: { id: b.id, job: b.jobId, role: b.role, priority: b.priority, attempt: '0', ...(b.mac ? { mac: b.mac } : {}) },
      };
      chunk.push({ batch: b, message: { ...message, partition: partitioner({ topic, partitionMetadata, message }) } });
      bytes += size;
    }
    await flush();
  }

  /** The batch topic's partitions (cached for a few seconds: partitions are added rarely, if ever). */
  async #partitionMetadata(): Promise<PartitionMetadata[]> {
    const cached = this.#partitionsCache;
    if (cached && Date.now() - cached.at < PARTITIONS_CACHE_MS) return cached.partitions;
    const topic = this.#client.topics.batches;
    const admin = await this.#client.run('enqueue', () => this.#client.admin());
    const meta = await this.#client.run('enqueue', () => admin.fetchTopicMetadata({ topics: [topic] }));
    const partitions = meta.topics.find((t) => t.name === topic)?.partitions ?? [];
    if (partitions.length === 0) throw new MetaguardError('MG_ERR_BACKEND', `kafka enqueue failed: topic ${topic} has no partitions`);
    this.#partitionsCache = { at: Date.now(), partitions };
    return partitions;
  }

  /**
   * Where each batch stands, from the batch topic's watermarks and the worker group's committed
   * offsets: `finished` (committed past: completed, dead-lettered, or retried by a worker whose copy
   * it did not report), `lost` (its record is below the log start — retention, deleted records — or
   * beyond the log end — a topic recreated, an unclean leader election), `unknown` (never enqueued
   * by this process), else `live`. The result stream is read up to now first: a worker reports a
   * retry copy there before it commits the original.
   */
  async #states(ids: readonly string[]): Promise<Map<string, BatchState>> {
    const topic = this.#client.topics.batches;
    // Records this process finished count as finished: commit them before reading the group's offsets.
    await this.#member.settle();
    const admin = await this.#client.run('check batches', () => this.#client.admin());
    const [ends, committed] = await this.#client.run('check batches', () =>
      Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: this.#client.group, topics: [topic] })]),
    );
    await this.#client.caughtUp(this.#startResultsView(), 'results');
    const marks = new Map(ends.map((e) => [e.partition, { low: BigInt(e.low), high: BigInt(e.high) }]));
    const done = new Map<number, bigint>();
    for (const t of committed) if (t.topic === topic) for (const p of t.partitions) done.set(p.partition, BigInt(p.offset));
    const out = new Map<string, BatchState>();
    for (const id of ids) {
      const placed = this.#placed.get(id);
      const mark = placed && marks.get(placed.partition);
      if (!placed) out.set(id, 'unknown');
      else if (!mark || placed.offset < mark.low || placed.offset >= mark.high) out.set(id, 'lost');
      else if ((done.get(placed.partition) ?? -1n) > placed.offset) out.set(id, 'finished');
      else out.set(id, 'live');
    }
    return out;
  }

  /** Of `ids`, those neither pending, delayed nor in flight: finished, lost, or never enqueued here. */
  async missingBatches(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const states = await this.#states(ids);
    return ids.filter((id) => states.get(id) !== 'live');
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  async claimBatches(workerId: string, max: number, _leaseMs: number): Promise<Claim[]> {
    this.#client.checkOpen();
    return this.#member.claim(workerId, max);
  }

  async renewLeases(workerId: string, ids: string[], _leaseMs: number): Promise<string[]> {
    this.#client.checkOpen();
    return this.#member.renew(workerId, ids);
  }

  completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    return this.#member.complete(workerId, batch, results);
  }

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    this.#client.checkOpen();
    await this.#member.release(workerId, id, options);
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    this.#client.checkOpen();
    await this.#member.deadLetter(workerId, id, error);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#client.checkOpen();
    // No per-batch leases: a dead worker's partitions are redelivered by the group rebalance.
    this.#member.tick();
    return { requeued: [], deadLettered: [] };
  }

  // --- results -------------------------------------------------------------------------------------

  #registerJob(jobId: string): void {
    this.#deletedJobs.delete(jobId);
    const known = this.#results.get(jobId);
    if (known) known.registered = true;
    else this.#results.set(jobId, { entries: [], registered: true, firstAt: Date.now() });
  }

  #onResultRecord(p: number, m: KafkaMessage): void {
    const { jobId, entry } = parseResultRecord(this.#client.topics.results, p, m);
    if (this.#deletedJobs.has(jobId)) return;
    if (entry.kind === 'moved') {
      const placed = this.#placed.get(entry.batchId);
      if (placed && placed.jobId === jobId) this.#placed.set(entry.batchId, { jobId, partition: entry.partition, offset: entry.offset });
      return;
    }
    let stream = this.#results.get(jobId);
    if (!stream) {
      this.#pruneUnregistered();
      this.#results.set(jobId, (stream = { entries: [], registered: false, firstAt: Date.now() }));
    }
    stream.entries.push(entry);
    this.#events.emit('result:' + jobId);
  }

  #startResultsView(): TopicView {
    if (this.#resultsView) return this.#resultsView;
    const view = this.#client.view(this.#client.topics.results, 'results', this.#client.resultsStart ?? new Map(), (p, m) => this.#onResultRecord(p, m), 'skipped: the coordinator never sees it (a batch it named is still awaited, and republished if lost)');
    this.#resultsView = view;
    view.start().catch((err: unknown) => this.#client.failed('start the results reader (retried by the next readResults)', err, 'info'));
    return view;
  }

  #pruneUnregistered(): void {
    const before = Date.now() - UNREGISTERED_RESULTS_MS;
    for (const [jobId, s] of this.#results) if (!s.registered && s.firstAt < before) this.#results.delete(jobId);
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    await this.#client.run('read results', () => this.#client.ensureConnected());
    this.#registerJob(jobId);
    const view = this.#startResultsView();
    const until = Date.now() + Math.max(0, blockMs);
    // The reader's first join takes a moment; wait for it within blockMs (its failure is this read's).
    await this.#client.run('read results', () => withTimeout(view.start(), Math.max(0, blockMs), undefined));
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    const collect = () => this.#results.get(jobId)?.entries.slice(after) ?? [];
    let found = collect();
    const left = until - Date.now();
    if (found.length === 0 && left > 0 && !this.#client.closed) {
      await waitForAny(this.#events, ['result:' + jobId, 'closed'], left);
      found = collect();
    }
    return { cursor: String(after + found.length), entries: found };
  }

  // --- workers -------------------------------------------------------------------------------------

  #onWorkerRecord(_p: number, m: KafkaMessage): void {
    const workerId = m.key?.toString('utf8');
    if (!workerId) throw new MalformedRecord(`worker record ${this.#client.topics.workers}/${_p}@${m.offset}`, 'key', 'must be a worker id');
    if (m.value === null) {
      this.#workers.delete(workerId);
      return;
    }
    const at = Number(m.timestamp);
    const prev = this.#workers.get(workerId);
    if (prev && (prev.lastHeartbeat ?? 0) > at) return;
    // A display-only field that fails is left out (and logged); a record that fails is skipped.
    this.#workers.set(workerId, parseWorkerInfo(workerId, at, m.value.toString('utf8'), (err) => logMalformed(this.#options.logger, err, { topic: this.#client.topics.workers, consequence: 'the field is left out' })));
  }

  #startWorkersView(): TopicView {
    if (this.#workersView) return this.#workersView;
    // Heartbeats of the last few heartbeat_timeouts are what matters; the topic's retention bounds
    // the rest (brokers' timestamp lookups are not relied on: librdkafka's mock ignores them).
    const view = this.#client.view(this.#client.topics.workers, 'workers', 'beginning', (p, m) => this.#onWorkerRecord(p, m), 'skipped: the worker is not counted as alive by this heartbeat');
    this.#workersView = view;
    view.start().catch((err: unknown) => this.#client.failed('start the heartbeat reader (retried by the next activeWorkers)', err, 'info'));
    return view;
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const { lastHeartbeat: _ignored, ...rest } = info;
    await this.#client.send('heartbeat', this.#client.topics.workers, [{ key: info.workerId, value: JSON.stringify(rest), timestamp: String(Date.now()) }]);
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
    await this.#client.send('remove worker', this.#client.topics.workers, [{ key: workerId, value: null }]);
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    await this.#client.run('active workers', () => this.#client.ensureConnected());
    const view = this.#startWorkersView();
    if (!this.#workersCaughtUp) {
      // The first answer waits for the view to read the recent heartbeats; later ones are live.
      await this.#client.caughtUp(view, 'worker heartbeats');
      this.#workersCaughtUp = true;
    }
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    return [...this.#workers.values()].filter((w) => (w.lastHeartbeat ?? 0) >= since).map((w) => ({ ...w }));
  }

  // --- stats and dead letters ----------------------------------------------------------------------

  async stats(): Promise<KafkaQueueStats> {
    const admin = await this.#client.run('stats', () => this.#client.admin());
    const topic = this.#client.topics.batches;
    const group = this.#client.group;
    const [ends, committed] = await this.#client.run('stats', () => Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: group, topics: [topic] })]));
    const byPartition = new Map<number, number>();
    for (const t of committed) if (t.topic === topic) for (const p of t.partitions) byPartition.set(p.partition, Number(p.offset));
    const partitions: KafkaPartitionLag[] = ends
      .map((e) => {
        const low = Number(e.low);
        const high = Number(e.high);
        const c = byPartition.get(e.partition) ?? -1;
        return { partition: e.partition, committed: c, low, high, lag: Math.max(0, high - Math.max(c, low)) };
      })
      .sort((a, b) => a.partition - b.partition);
    const lag = partitions.reduce((s, p) => s + p.lag, 0);
    const [dead, workers] = await Promise.all([this.#dead.count(), this.activeWorkers()]);
    const pending = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<Priority, number>;
    pending.normal = lag;
    return {
      pending,
      inflight: this.#member.inflight(),
      delayed: this.#member.delayed(Date.now()),
      dead,
      completed: partitions.reduce((s, p) => s + Math.max(0, p.committed), 0),
      dispatched: partitions.reduce((s, p) => s + p.high, 0),
      requeued: this.#member.counters.requeued,
      workers,
      kafka: { topic, group, partitions, lag, duplicatesSkipped: this.#member.counters.duplicates, note: STATS_NOTE },
    };
  }

  listDead(limit = 100): Promise<DeadEntry[]> {
    return this.#dead.list(limit);
  }

  retryDead(id?: string): Promise<number> {
    return this.#dead.retry(id);
  }

  purgeDead(): Promise<number> {
    return this.#dead.purge();
  }
}
