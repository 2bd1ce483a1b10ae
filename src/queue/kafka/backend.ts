/**
 * Kafka implementation of the queue `Backend` (kafkajs).
 *
 * Topics (T = `topic`, default the queue name):
 *   T          batches. key = batch id; headers id, job, role, priority, mac, attempt (deliveries
 *              before this record), not_before (retry backoff, ms); value = the codec frame, as is.
 *              Consumed by the worker group `consumer_group` (default `metaguard-workers`): its
 *              partitions are the unit of parallelism (create T with at least as many partitions as
 *              workers; an auto-created topic gets the broker default, often 1).
 *   T.results  result entries. key = job id (one job's entries stay in order in one partition);
 *              headers kind=results|dead, batch, role, worker, reason; value = results frame.
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
 * Clock: `now()` is this host's Date.now(); heartbeat freshness compares a heartbeat record's
 * CreateTime with the reader's clock, so hosts need synchronised clocks (NTP).
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Kafka, logLevel as KafkaLogLevel, Partitioners, type Admin, type Consumer, type IHeaders, type KafkaMessage, type Message, type Producer, type SASLOptions } from 'kafkajs';
import { tlsOptions, isAuthFailure } from '../tls.js';
import { MetaguardError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import type { Logger } from '../../observe/log.js';
import { waitForAny } from '../../util/wait.js';
import { signDead, signResults } from '../messages.js';
import { isRecordId, logMalformed, MalformedRecord, parseManifest, parseWorkerInfo } from '../records.js';
import { pickPriority } from '../priority.js';
import {
  priorities,
  type Backend,
  type BatchMessage,
  type Claim,
  type ClaimedBatch,
  type DeadEntry,
  type JobManifest,
  type Priority,
  type QueueStats,
  type ReclaimOutcome,
  type ResultEntry,
  type WorkerInfo,
} from '../types.js';
import type { Role } from '../../core/protocol.js';

export const DEFAULT_CONSUMER_GROUP = 'metaguard-workers';

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
  /** Receives `malformed_record` warnings for records read back that fail their schema. */
  logger?: Logger;
}

export type KafkaBackendEvent =
  | { type: 'rebalancing' }
  | { type: 'assigned'; partitions: number[]; memberId: string }
  | { type: 'revoked'; partitions: number[]; lostClaims: string[] }
  | { type: 'commit_failed'; message: string }
  | { type: 'consumer_failed'; message: string };

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
  kafka: { topic: string; group: string; partitions: KafkaPartitionLag[]; lag: number; note: string };
}

const roleSet = new Set<string>(['baseline', 'candidate']);
const ENQUEUE_CHUNK = 500;
const ENQUEUE_CHUNK_BYTES = 512 * 1024;
/** Results of jobs nobody here asked for are kept this long (a reader may register late). */
const UNREGISTERED_RESULTS_MS = 60_000;
const STATS_NOTE =
  'pending = consumer lag of the worker group (records not yet committed, including ones in flight on workers); ' +
  'in-flight, delayed and requeued are this process only; dispatched = records appended to the topic; completed = records the group has committed';

const levels = { nothing: KafkaLogLevel.NOTHING, error: KafkaLogLevel.ERROR, warn: KafkaLogLevel.WARN, info: KafkaLogLevel.INFO, debug: KafkaLogLevel.DEBUG } as const;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function header(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined || v === null) return undefined;
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  if (one === undefined) return undefined;
  return Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function prioOf(p: string | undefined): Priority {
  return p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
}

function int(v: string | undefined, fallback = 0): number {
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) ? Math.trunc(n) : fallback;
}

function copyHeaders(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(headers ?? {})) {
    const v = header(headers, key);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

type Parsed =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt'>; attempts: number; notBefore: number }
  | { ok: false; id: string; reason: string; jobId?: string; role?: Role; attempts: number };

/** Reads a batch record; anything that is not a well-formed batch is a claim to dead-letter. */
function notBeforeOf(raw: string | undefined, maxDelayMs: number): number {
  const t = int(raw);
  return t > Date.now() + maxDelayMs ? 0 : t;
}

function parseBatchRecord(topic: string, partition: number, m: KafkaMessage, maxDelayMs: number): Parsed {
  const h = m.headers;
  const key = m.key ? m.key.toString('utf8') : undefined;
  const id = header(h, 'id') ?? key;
  const attempts = Math.max(0, int(header(h, 'attempt')));
  if (!id) return { ok: false, id: `${topic}/${partition}@${m.offset}`, reason: 'malformed batch: no id header', attempts };
  const jobId = header(h, 'job');
  const role = header(h, 'role');
  const info = { ...(jobId ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
  if (!m.value || m.value.length === 0) return { ok: false, id, reason: 'malformed batch: no payload', attempts, ...info };
  if (!jobId) return { ok: false, id, reason: 'malformed batch: no job', attempts, ...info };
  if (!role || !roleSet.has(role)) return { ok: false, id, reason: 'malformed batch: bad role', attempts, ...info };
  const mac = header(h, 'mac');
  return {
    ok: true,
    batch: { id, jobId, role: role as Role, priority: prioOf(header(h, 'priority')), payload: m.value, ...(mac ? { mac } : {}) },
    attempts,
    // A retry is never scheduled further out than retry backoff allows: a later not_before is forged
    // (it would park the record in a worker's buffer for ever) and is ignored.
    notBefore: notBeforeOf(header(h, 'not_before'), maxDelayMs),
  };
}

// ---------------------------------------------------------------------------------------------------
// Topic views: a private consumer (a group of its own) that reads one topic into local state.

interface ViewOptions {
  kafka: Kafka;
  admin: () => Promise<Admin>;
  topic: string;
  groupId: string;
  /** Where to start per partition; partitions not listed start at their low watermark. */
  start: Map<number, bigint> | 'beginning';
  onRecord(partition: number, message: KafkaMessage): void;
  consumerConfig: { sessionTimeout: number; heartbeatInterval: number; maxWaitTimeInMs: number };
}

class TopicView extends EventEmitter {
  readonly topic: string;
  readonly #options: ViewOptions;
  /** Next offset to process, per partition. */
  readonly #positions = new Map<number, bigint>();
  #consumer: Consumer | undefined;
  #starting: Promise<void> | undefined;
  #stopped = false;
  #generation = 0;

  constructor(options: ViewOptions) {
    super();
    this.setMaxListeners(0);
    this.topic = options.topic;
    this.#options = options;
  }

  /** Starts (or, after its consumer failed, restarts) reading; resolves once it has joined. */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new Error(`the reader of ${this.topic} is stopped`));
    return (this.#starting ??= this.#start().catch((err) => {
      this.#starting = undefined;
      throw err;
    }));
  }

  async #start(): Promise<void> {
    const o = this.#options;
    const offsets = await (await o.admin()).fetchTopicOffsets(o.topic);
    for (const { partition, low } of offsets) {
      if (this.#positions.has(partition)) continue; // a restart goes on from where this view is
      const from = o.start === 'beginning' ? undefined : o.start.get(partition);
      this.#positions.set(partition, from !== undefined && from > BigInt(low) ? from : BigInt(low));
    }
    // A group of its own (new on each restart, so it never waits for a dead predecessor's session).
    const consumer = o.kafka.consumer({ groupId: `${o.groupId}.${++this.#generation}`, allowAutoTopicCreation: true, ...o.consumerConfig });
    this.#consumer = consumer;
    consumer.on(consumer.events.CRASH, (e) => {
      if (e.payload.restart || this.#consumer !== consumer) return;
      // kafkajs gave up on it: the next start() (every read calls it) makes a new one.
      this.#consumer = undefined;
      this.#starting = undefined;
      void consumer.disconnect().catch(() => {});
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      // Every (re)join starts from the committed offsets, and a view commits none: seek back to where
      // this view is. Seeks apply on the next fetch.
      for (const p of e.payload.memberAssignment[o.topic] ?? []) {
        const at = this.#positions.get(p);
        if (at !== undefined) consumer.seek({ topic: o.topic, partition: p, offset: at.toString() });
      }
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [o.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          if (this.#consumer !== consumer) return;
          const p = batch.partition;
          for (const m of batch.messages) {
            const off = BigInt(m.offset);
            if (off < (this.#positions.get(p) ?? 0n)) continue;
            try {
              o.onRecord(p, m);
            } catch {
              // a record this view cannot read is skipped; it must not stop the view
            }
            this.#positions.set(p, off + 1n);
          }
          this.emit('progress');
        },
      });
    } catch (err) {
      if (this.#consumer === consumer) this.#consumer = undefined;
      await consumer.disconnect().catch(() => {});
      throw err;
    }
    if (this.#stopped) await consumer.disconnect().catch(() => {});
  }

  /**
   * Waits until everything appended to the topic before this call has been read. Returns false when
   * `timeoutMs` passed first.
   */
  async catchUp(timeoutMs: number): Promise<boolean> {
    await this.start();
    const highs = (await (await this.#options.admin()).fetchTopicOffsets(this.topic)).map((o) => ({ partition: o.partition, high: BigInt(o.high) }));
    const behind = () => highs.some(({ partition, high }) => (this.#positions.get(partition) ?? 0n) < high);
    if (!behind()) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('progress', check);
        this.off('stopped', stopped);
        resolve(ok);
      };
      const check = () => {
        if (!behind()) done(true);
      };
      const stopped = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('progress', check);
      this.on('stopped', stopped);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.emit('stopped');
    await this.#consumer?.disconnect().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------
// The worker side: records of owned partitions, from fetch to commit.

interface Rec {
  partition: number;
  offset: bigint;
  message: KafkaMessage;
  parsed: Parsed;
  /** The claim id: the batch id, or a synthetic id for a record without one. */
  id: string;
  priority: Priority;
  notBefore: number;
  state: 'buffered' | 'claimed' | 'done';
  owner?: string;
  claim?: ClaimedBatch;
  /** Its partition was revoked while it was claimed. */
  lost?: boolean;
}

interface PartState {
  /** Offsets received and not yet behind the commit point, ascending. */
  order: bigint[];
  recs: Map<bigint, Rec>;
  maxReceived: bigint;
  /** Offset committed to the group (next to read), as far as this worker knows. */
  committed: bigint;
  /** Offset this worker wants committed (all records below it are finished). */
  want: bigint;
}

interface DeadRecord extends DeadEntry {
  partition: number;
  offset: bigint;
  value: Buffer | null;
  headers: Record<string, string>;
}

export class KafkaBackend implements Backend {
  readonly kind = 'kafka';
  readonly #config: QueueConfig;
  readonly #options: KafkaBackendOptions;
  readonly #brokers: string[];
  readonly #topics: { batches: string; results: string; jobs: string; workers: string; dlq: string };
  readonly #group: string;
  readonly #kafka: Kafka;
  readonly #events = new EventEmitter();
  readonly #consumerConfig: { sessionTimeout: number; heartbeatInterval: number; maxWaitTimeInMs: number; rebalanceTimeout: number };
  #producer: Producer | undefined;
  #admin: Admin | undefined;
  #connecting: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  // coordinator side
  #resultsStart: Map<number, bigint> | undefined;
  #resultsView: TopicView | undefined;
  readonly #results = new Map<string, { entries: ResultEntry[]; registered: boolean; firstAt: number }>();
  readonly #deletedJobs = new Set<string>();

  // jobs, workers and dead-letter views
  #jobsView: TopicView | undefined;
  readonly #manifests = new Map<string, JobManifest>();
  /** Manifests that failed their schema: getJob throws their error instead of trusting them. */
  readonly #badManifests = new Map<string, MalformedRecord>();
  readonly #artifacts = new Map<string, Buffer>();
  readonly #jobTombstones = new Set<string>();
  #workersView: TopicView | undefined;
  #workersCaughtUp = false;
  readonly #workers = new Map<string, WorkerInfo>();
  #dlqView: TopicView | undefined;
  readonly #dead = new Map<string, DeadRecord>();

  // worker side
  #consumer: Consumer | undefined;
  #consumerStarting: Promise<void> | undefined;
  #consumerError: Error | undefined;
  #assigned = new Set<number>();
  /** Set while the group rebalances: no new claims from partitions that may be moving. */
  #rebalancingSince: number | undefined;
  readonly #parts = new Map<number, PartState>();
  #buffer: Rec[] = [];
  readonly #paused = new Set<number>();
  readonly #held = new Map<string, Rec>();
  #flushing: Promise<void> | undefined;
  #flushAgain = false;
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };

  constructor(config: QueueConfig, options: KafkaBackendOptions = {}) {
    this.#config = config;
    this.#options = options;
    this.#events.setMaxListeners(0);
    const servers = config.bootstrap_servers ?? '';
    this.#brokers = servers.split(',').map((s) => s.trim()).filter(Boolean);
    if (this.#brokers.length === 0) throw new MetaguardError('MG_ERR_INVALID_OPTION', 'queue-config.bootstrap_servers: is required for backend kafka', { field: 'queue-config.bootstrap_servers' });
    const base = config.topic ?? config.queue;
    this.#topics = { batches: base, results: `${base}.results`, jobs: `${base}.jobs`, workers: `${base}.workers`, dlq: `${base}.dlq` };
    this.#group = config.consumer_group ?? DEFAULT_CONSUMER_GROUP;
    const sessionTimeout = Math.max(1000, Math.round(config.heartbeat_timeout * 1000));
    const heartbeatInterval = Math.max(100, Math.min(Math.round(config.heartbeat_check_interval * 1000), Math.floor(sessionTimeout / 3)));
    this.#consumerConfig = {
      sessionTimeout,
      heartbeatInterval,
      // Heartbeats go out between fetches: a long-poll must stay well inside the session.
      maxWaitTimeInMs: Math.max(100, Math.min(1000, heartbeatInterval)),
      rebalanceTimeout: Math.max(60_000, sessionTimeout),
    };
    const level = levels[options.logLevel ?? 'nothing'];
    this.#kafka = new Kafka({
      clientId: options.clientId ?? `metaguard-${hostname()}`,
      brokers: this.#brokers,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
      ...(config.ssl === undefined || config.ssl === false ? {} : { ssl: config.ssl === true ? true : tlsOptions(config.ssl, 'queue-config.ssl') }),
      ...(config.sasl ? { sasl: config.sasl as SASLOptions } : {}),
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
      logLevel: level,
      logCreator: () => (entry) => {
        if (entry.level <= level && level !== KafkaLogLevel.NOTHING) process.stderr.write(JSON.stringify({ kafkajs: entry.namespace, level: entry.label, message: entry.log.message }) + '\n');
      },
    });
  }

  /** Topic names this backend uses (tests, tools). */
  get topics(): Readonly<{ batches: string; results: string; jobs: string; workers: string; dlq: string }> {
    return this.#topics;
  }

  get consumerGroup(): string {
    return this.#group;
  }

  // --- plumbing ------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `kafka backend for topic ${this.#topics.batches} is closed`);
  }

  async #run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `kafka backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `kafka ${op} failed (${this.#brokers.join(',')}, topic ${this.#topics.batches}): ${describe(err)}`, { cause: err });
    }
  }

  async #adminClient(): Promise<Admin> {
    await this.#ensureConnected();
    return this.#admin!;
  }

  async #ensureConnected(): Promise<void> {
    this.#checkOpen();
    await (this.#connecting ??= this.#connect().catch((err) => {
      this.#connecting = undefined;
      throw err;
    }));
  }

  async #connect(): Promise<void> {
    const producer = this.#kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
    const admin = this.#kafka.admin();
    try {
      await Promise.all([producer.connect(), admin.connect()]);
    } catch (err) {
      await Promise.all([producer.disconnect().catch(() => {}), admin.disconnect().catch(() => {})]);
      throw new MetaguardError('MG_ERR_BACKEND', `cannot connect to kafka at ${this.#brokers.join(',')}: ${describe(err)}`, { cause: err });
    }
    this.#producer = producer;
    this.#admin = admin;
    // Best effort: brokers that refuse CreateTopics (or auto-create on metadata, like librdkafka's
    // mock) are fine; partition counts are the operator's (see the header comment).
    await withTimeout(
      admin.createTopics({ waitForLeaders: true, topics: Object.values(this.#topics).map((topic) => ({ topic })) }).catch(() => false),
      5000,
      false,
    );
    // Results produced from here on are readable by readResults: capture where the topic ends now,
    // before this process can enqueue anything.
    try {
      const ends = await admin.fetchTopicOffsets(this.#topics.results);
      this.#resultsStart = new Map(ends.map((o) => [o.partition, BigInt(o.high)]));
    } catch (err) {
      throw new MetaguardError('MG_ERR_BACKEND', `kafka: cannot read the offsets of ${this.#topics.results} (does the topic exist?): ${describe(err)}`, { cause: err });
    }
  }

  async #send(op: string, topic: string, messages: Message[]): Promise<void> {
    await this.#run(op, async () => {
      await this.#ensureConnected();
      await this.#producer!.send({ topic, acks: -1, messages });
    });
  }

  #view(topic: string, purpose: string, start: Map<number, bigint> | 'beginning', onRecord: (p: number, m: KafkaMessage) => void): TopicView {
    return new TopicView({
      kafka: this.#kafka,
      admin: () => this.#adminClient(),
      topic,
      groupId: `${this.#group}.${purpose}.${randomUUID()}`,
      start,
      onRecord,
      consumerConfig: {
        sessionTimeout: this.#consumerConfig.sessionTimeout,
        heartbeatInterval: this.#consumerConfig.heartbeatInterval,
        maxWaitTimeInMs: this.#consumerConfig.maxWaitTimeInMs,
      },
    });
  }

  get #catchUpMs(): number {
    return this.#options.catchUpTimeoutMs ?? 15_000;
  }

  async #caughtUp(view: TopicView, what: string): Promise<void> {
    const ok = await this.#run(`read ${what}`, () => view.catchUp(this.#catchUpMs));
    this.#checkOpen();
    if (!ok) throw new MetaguardError('MG_ERR_BACKEND', `kafka: reading ${view.topic} did not catch up within ${this.#catchUpMs} ms (${what})`);
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  async connect(): Promise<void> {
    try {
      await this.#ensureConnected();
    } catch (err) {
      // Refused credentials are a configuration error (the worker exits 78), not an outage to retry.
      if (isAuthFailure(err)) throw new MetaguardError('MG_ERR_BACKEND_AUTH', `kafka at ${this.#brokers.join(',')} refused the credentials (queue-config.sasl): ${(err as Error).message}`, { cause: err, field: 'queue-config.sasl' });
      throw err;
    }
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#events.emit('closed');
    // Commit what is finished before leaving the group, so the next owner redoes as little as possible.
    if (this.#consumer) await withTimeout(this.#flushCommits().catch(() => {}), 5000, undefined);
    const views = [this.#resultsView, this.#jobsView, this.#workersView, this.#dlqView].filter((v): v is TopicView => v !== undefined);
    await Promise.all([
      ...views.map((v) => withTimeout(v.stop(), 10_000, undefined)),
      this.#consumer ? withTimeout(this.#consumer.disconnect().catch(() => {}), 10_000, undefined) : undefined,
    ]);
    await Promise.all([
      this.#producer ? withTimeout(this.#producer.disconnect().catch(() => {}), 5000, undefined) : undefined,
      this.#admin ? withTimeout(this.#admin.disconnect().catch(() => {}), 5000, undefined) : undefined,
    ]);
    this.#buffer = [];
    this.#held.clear();
    this.#parts.clear();
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  #startJobsView(): TopicView {
    return (this.#jobsView ??= this.#view(this.#topics.jobs, 'jobs', 'beginning', (_p, m) => {
      const key = m.key?.toString('utf8') ?? '';
      if (key.startsWith('artifact:')) {
        if (m.value) this.#artifacts.set(key.slice('artifact:'.length), Buffer.from(m.value)); // a copy: a slice would pin the fetch buffer
      } else if (key.startsWith('job:')) {
        const jobId = key.slice('job:'.length);
        if (m.value === null) {
          this.#manifests.delete(jobId);
          this.#badManifests.delete(jobId);
          this.#jobTombstones.add(jobId);
        } else {
          this.#jobTombstones.delete(jobId);
          try {
            this.#manifests.set(jobId, parseManifest(jobId, m.value.toString('utf8')));
            this.#badManifests.delete(jobId);
          } catch (err) {
            if (!(err instanceof MalformedRecord)) throw err;
            this.#manifests.delete(jobId);
            this.#badManifests.set(jobId, err);
            logMalformed(this.#options.logger, err, { topic: this.#topics.jobs });
          }
        }
      }
    }));
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    await this.#send('put artifact', this.#topics.jobs, [{ key: `artifact:${sha256}`, value: toBuffer(bytes), headers: { kind: 'artifact' } }]);
  }

  async getArtifact(sha256: string): Promise<Uint8Array | null> {
    this.#checkOpen();
    const known = this.#artifacts.get(sha256);
    if (known) return known;
    await this.#caughtUp(this.#startJobsView(), `artifact ${sha256.slice(0, 12)}`);
    return this.#artifacts.get(sha256) ?? null;
  }

  async putJob(manifest: JobManifest): Promise<void> {
    await this.#ensureConnected();
    // The coordinator reads this job's results: register it before any of its batches exists.
    this.#registerJob(manifest.jobId);
    this.#startResultsView();
    this.#startWorkersView();
    await this.#send('put job', this.#topics.jobs, [{ key: `job:${manifest.jobId}`, value: JSON.stringify(manifest), headers: { kind: 'job' } }]);
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    this.#checkOpen();
    if (!this.#manifests.has(jobId) && !this.#jobTombstones.has(jobId) && !this.#badManifests.has(jobId)) await this.#caughtUp(this.#startJobsView(), `job ${jobId}`);
    const bad = this.#badManifests.get(jobId);
    if (bad) throw bad;
    const m = this.#manifests.get(jobId);
    return m ? structuredClone(m) : null;
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#results.delete(jobId);
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    await this.#send('delete job', this.#topics.jobs, [{ key: `job:${jobId}`, value: null, headers: { kind: 'job-deleted' } }]);
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

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    // One produce request per chunk; kafkajs puts a chunk's records of one partition into one record
    // batch, which the broker's message.max.bytes (1 MiB by default) bounds: chunk by bytes too.
    let chunk: Message[] = [];
    let bytes = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      await this.#send('enqueue', this.#topics.batches, chunk);
      this.#counters.dispatched += chunk.length;
      chunk = [];
      bytes = 0;
    };
    for (const b of batches) {
      const size = b.payload.byteLength + b.id.length * 2 + b.jobId.length + 256;
      if (chunk.length > 0 && (chunk.length >= ENQUEUE_CHUNK || bytes + size > ENQUEUE_CHUNK_BYTES)) await flush();
      chunk.push({
        key: b.id,
        value: toBuffer(b.payload),
        headers: { id: b.id, job: b.jobId, role: b.role, priority: b.priority, attempt: '0', ...(b.mac ? { mac: b.mac } : {}) },
      });
      bytes += size;
    }
    await flush();
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  /** Starts the group member in the background: claims return [] until it has joined and fetched. */
  #ensureWorkerConsumer(): void {
    if (this.#consumerStarting) return;
    this.#consumerStarting = this.#startWorkerConsumer().catch((err: unknown) => {
      if (!this.#closed) this.#consumerError = err instanceof Error ? err : new Error(String(err));
    });
  }

  async #startWorkerConsumer(): Promise<void> {
    await this.#ensureConnected();
    // Workers read manifests and artifacts: start that view alongside the group join.
    this.#startJobsView().start().catch(() => {});
    const topic = this.#topics.batches;
    const consumer = this.#kafka.consumer({
      groupId: this.#group,
      allowAutoTopicCreation: true,
      ...this.#consumerConfig,
    });
    this.#consumer = consumer;
    this.#consumerError = undefined;
    consumer.on(consumer.events.REBALANCING, () => {
      if (this.#consumer !== consumer) return;
      this.#rebalancingSince = Date.now();
      this.#emit({ type: 'rebalancing' });
    });
    let memberId: string | undefined;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (this.#consumer !== consumer) return;
      this.#rebalancingSince = undefined;
      // A new member id means this worker had been dropped from the group (a missed session): others
      // may have owned its partitions meanwhile, so nothing it held is still its own.
      if (memberId !== undefined && e.payload.memberId !== memberId) this.#onAssignment(new Set());
      memberId = e.payload.memberId;
      const partitions = e.payload.memberAssignment[topic] ?? [];
      this.#onAssignment(new Set(partitions));
      // kafkajs keeps a partition paused across assignments; this backend forgets the pause of a
      // revoked partition, so a partition coming back must not stay paused there.
      const stale = partitions.filter((p) => !this.#paused.has(p));
      if (stale.length) consumer.resume([{ topic, partitions: stale }]);
      this.#emit({ type: 'assigned', partitions: [...partitions].sort((a, b) => a - b), memberId });
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.#consumer !== consumer || e.payload.restart) return;
      // kafkajs gave up on this consumer: everything it owned is gone. The next claim starts a new one.
      this.#consumerError = e.payload.error;
      this.#onAssignment(new Set());
      this.#emit({ type: 'consumer_failed', message: describe(e.payload.error) });
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset }) => {
        if (this.#consumer !== consumer || this.#closed) return;
        const p = batch.partition;
        if (!this.#assigned.has(p)) return;
        let st = this.#parts.get(p);
        const prefetch = this.#prefetch;
        for (const m of batch.messages) {
          const off = BigInt(m.offset);
          if (st && off <= st.maxReceived) {
            // Refetched after a rejoin (kafkajs restarts from the committed offset): already ours.
            resolveOffset(m.offset);
            continue;
          }
          if (this.#buffer.length >= prefetch) {
            // Backpressure: stop fetching this partition; the rest is refetched after resume().
            this.#paused.add(p);
            consumer.pause([{ topic, partitions: [p] }]);
            break;
          }
          if (!st) {
            st = { order: [], recs: new Map(), maxReceived: off - 1n, committed: off, want: off };
            this.#parts.set(p, st);
          }
          const parsed = parseBatchRecord(topic, p, m, this.#config.retry_max_ms + 60_000);
          const rec: Rec = {
            partition: p,
            offset: off,
            message: m,
            parsed,
            id: parsed.ok ? parsed.batch.id : parsed.id,
            priority: parsed.ok ? parsed.batch.priority : 'critical',
            notBefore: parsed.ok ? parsed.notBefore : 0,
            state: 'buffered',
          };
          st.order.push(off);
          st.recs.set(off, rec);
          st.maxReceived = off;
          this.#buffer.push(rec);
          resolveOffset(m.offset);
        }
      },
    });
  }

  get #prefetch(): number {
    return Math.max(1, this.#options.prefetch ?? 16);
  }

  #emit(event: KafkaBackendEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch {
      // an observer's failure is not ours
    }
  }

  /** A new assignment: partitions no longer ours lose their buffered records and claims. */
  #onAssignment(assigned: Set<number>): void {
    const revoked: number[] = [];
    const lostClaims: string[] = [];
    for (const p of [...this.#parts.keys()]) {
      if (assigned.has(p)) continue;
      const st = this.#parts.get(p)!;
      for (const rec of st.recs.values()) {
        if (rec.state !== 'claimed') continue;
        rec.lost = true;
        lostClaims.push(rec.id);
      }
      this.#parts.delete(p);
      revoked.push(p);
    }
    if (revoked.length) this.#emit({ type: 'revoked', partitions: revoked, lostClaims });
    this.#buffer = this.#buffer.filter((r) => assigned.has(r.partition));
    for (const p of [...this.#paused]) if (!assigned.has(p)) this.#paused.delete(p);
    this.#assigned = assigned;
  }

  #resumeIfDrained(): void {
    if (this.#paused.size === 0 || !this.#consumer) return;
    if (this.#buffer.length > this.#prefetch / 2) return;
    const partitions = [...this.#paused];
    this.#paused.clear();
    this.#consumer.resume([{ topic: this.#topics.batches, partitions }]);
  }

  #pickPriority(candidates: Rec[]): Priority | undefined {
    return pickPriority((p) => candidates.some((r) => r.priority === p), this.#config);
  }

  async claimBatches(workerId: string, max: number, _leaseMs: number): Promise<Claim[]> {
    this.#checkOpen();
    if (this.#consumerError) {
      // The group member failed to start, or kafkajs gave up on it: report once, start a new one next time.
      const err = this.#consumerError;
      const old = this.#consumer;
      this.#consumer = undefined;
      this.#consumerStarting = undefined;
      this.#consumerError = undefined;
      this.#onAssignment(new Set());
      await old?.disconnect().catch(() => {});
      throw new MetaguardError('MG_ERR_BACKEND', `kafka consumer of group ${this.#group} failed (it is restarted on the next claim): ${describe(err)}`, { cause: err });
    }
    this.#ensureWorkerConsumer();
    // During a rebalance (until the new assignment, at most a session timeout) records already here
    // may belong to another worker shortly: starting them would mostly be duplicate work.
    if (this.#rebalancingSince !== undefined && Date.now() - this.#rebalancingSince < this.#consumerConfig.sessionTimeout) return [];
    const n = Math.floor(max);
    const claims: Claim[] = [];
    const now = Date.now();
    let advanced = false;
    while (claims.length < n) {
      const candidates = this.#buffer.filter((r) => r.notBefore <= now && !this.#held.has(r.id));
      const priority = this.#pickPriority(candidates);
      if (!priority) break;
      const rec = candidates.find((r) => r.priority === priority)!;
      this.#buffer.splice(this.#buffer.indexOf(rec), 1);
      const parsed = rec.parsed;
      const jobId = parsed.ok ? parsed.batch.jobId : parsed.jobId;
      if (jobId !== undefined && this.#jobTombstones.has(jobId)) {
        // Its job has finished (the coordinator deleted it): an obsolete redelivery.
        rec.state = 'done';
        this.#advance(rec.partition);
        advanced = true;
        continue;
      }
      rec.state = 'claimed';
      rec.owner = workerId;
      this.#held.set(rec.id, rec);
      if (parsed.ok) {
        rec.claim = { ...parsed.batch, attempt: parsed.attempts + 1 };
        claims.push({ ok: true, batch: rec.claim });
      } else {
        claims.push({ ok: false, id: rec.id, reason: parsed.reason });
      }
    }
    this.#resumeIfDrained();
    if (advanced) void this.#flushCommits().catch(() => {});
    return claims;
  }

  /** Moves the partition's commit point past its finished prefix. */
  #advance(partition: number): void {
    const st = this.#parts.get(partition);
    if (!st) return;
    while (st.order.length > 0 && st.recs.get(st.order[0])!.state === 'done') {
      st.recs.delete(st.order.shift()!);
    }
    const target = st.order.length > 0 ? st.order[0] : st.maxReceived + 1n;
    if (target > st.want) st.want = target;
  }

  /** Commits every owned partition whose commit point moved. Single flight; failures retry on the next call. */
  #flushCommits(): Promise<void> {
    if (this.#flushing) {
      this.#flushAgain = true;
      return this.#flushing;
    }
    const flight: Promise<void> = this.#commitLoop()
      .catch((err: unknown) => {
        this.#emit({ type: 'commit_failed', message: describe(err) });
        throw err;
      })
      .finally(() => {
        if (this.#flushing === flight) this.#flushing = undefined;
      });
    this.#flushing = flight;
    return flight;
  }

  async #commitLoop(): Promise<void> {
    do {
      this.#flushAgain = false;
      const consumer = this.#consumer;
      if (!consumer) return;
      const todo: { st: PartState; partition: number; offset: bigint }[] = [];
      for (const [partition, st] of this.#parts) {
        if (st.want > st.committed && this.#assigned.has(partition)) todo.push({ st, partition, offset: st.want });
      }
      if (todo.length === 0) return;
      await consumer.commitOffsets(todo.map((t) => ({ topic: this.#topics.batches, partition: t.partition, offset: t.offset.toString() })));
      for (const t of todo) if (t.offset > t.st.committed) t.st.committed = t.offset;
    } while (this.#flushAgain);
  }

  #finish(rec: Rec): void {
    rec.state = 'done';
    if (rec.lost || this.#parts.get(rec.partition)?.recs.get(rec.offset) !== rec) return;
    this.#advance(rec.partition);
    void this.#flushCommits().catch(() => {});
  }

  async renewLeases(workerId: string, ids: string[], _leaseMs: number): Promise<string[]> {
    this.#checkOpen();
    const lost = ids.filter((id) => {
      const rec = this.#held.get(id);
      return !rec || rec.owner !== workerId || rec.lost === true;
    });
    // The worker's tick: retry commits that failed during a rebalance.
    void this.#flushCommits().catch(() => {});
    return lost;
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    // Results first (acknowledged by the brokers), offset after: never at-most-once.
    const key = this.#config.hmac_key;
    const mac = key ? { mac: signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) } : {};
    await this.#send('complete batch', this.#topics.results, [
      { key: batch.jobId, value: toBuffer(results), headers: { kind: 'results', batch: batch.id, role: batch.role, worker: workerId, ...mac } },
    ]);
    const rec = this.#held.get(batch.id);
    if (!rec || rec.owner !== workerId) return false;
    this.#held.delete(batch.id);
    if (rec.lost) return false;
    this.#counters.completed++;
    this.#finish(rec);
    return true;
  }

  async releaseBatch(workerId: string, id: string, options: { delayMs: number; countAttempt: boolean; reason: string }): Promise<void> {
    this.#checkOpen();
    const rec = this.#held.get(id);
    if (!rec || rec.owner !== workerId) return;
    if (rec.lost) {
      this.#held.delete(id);
      return;
    }
    if (!rec.parsed.ok || !rec.claim) {
      await this.#deadLetterRec(rec, options.reason);
      return;
    }
    if (!options.countAttempt) {
      // Hand back: uncommitted, first in line here; the group hands it on if this worker leaves.
      this.#unclaim(rec);
      return;
    }
    const attempts = rec.claim.attempt;
    if (attempts >= this.#config.max_requeue_attempts + 1) {
      await this.#deadLetterRec(rec, `${options.reason} (gave up after ${attempts} attempts)`);
      return;
    }
    const m = rec.message;
    const headers = copyHeaders(m.headers);
    headers.attempt = String(attempts);
    headers.not_before = String(Date.now() + Math.max(0, Math.ceil(options.delayMs)));
    headers.retry_reason = options.reason;
    try {
      await this.#send('release batch', this.#topics.batches, [{ key: m.key ?? rec.id, value: m.value, headers }]);
    } catch (err) {
      this.#unclaim(rec);
      throw err;
    }
    this.#held.delete(id);
    this.#counters.requeued++;
    this.#finish(rec);
  }

  /** Puts a claimed record back in line here (uncommitted), when handing it on failed. */
  #unclaim(rec: Rec): void {
    if (this.#held.get(rec.id) === rec) this.#held.delete(rec.id);
    if (rec.lost || this.#closed || this.#parts.get(rec.partition)?.recs.get(rec.offset) !== rec) return;
    rec.state = 'buffered';
    delete rec.owner;
    delete rec.claim;
    this.#buffer.unshift(rec);
  }

  async deadLetter(workerId: string, id: string, reason: string): Promise<void> {
    this.#checkOpen();
    const rec = this.#held.get(id);
    if (!rec || rec.owner !== workerId) return;
    if (rec.lost) {
      // Its partition has a new owner, who will meet the same record.
      this.#held.delete(id);
      return;
    }
    await this.#deadLetterRec(rec, reason);
  }

  async #deadLetterRec(rec: Rec, reason: string): Promise<void> {
    const parsed = rec.parsed;
    const jobId = parsed.ok ? parsed.batch.jobId : parsed.jobId;
    const role = parsed.ok ? parsed.batch.role : parsed.role;
    if (jobId === undefined || !this.#jobTombstones.has(jobId)) {
      const attempts = rec.claim?.attempt ?? parsed.attempts + 1;
      const headers: Record<string, string> = {
        ...copyHeaders(rec.message.headers),
        id: rec.id,
        kind: 'dead',
        reason,
        attempts: String(attempts),
        dead_at: String(Date.now()),
        source: `${this.#topics.batches}/${rec.partition}@${rec.offset}`,
      };
      try {
        await this.#send('dead-letter', this.#topics.dlq, [{ key: rec.id, value: rec.message.value, headers }]);
        if (jobId !== undefined) {
          const key = this.#config.hmac_key;
          const mac = key ? { mac: signDead(key, { jobId, batchId: rec.id, role: role ?? '', reason }) } : {};
          await this.#send('dead-letter', this.#topics.results, [
            { key: jobId, value: null, headers: { kind: 'dead', batch: rec.id, reason, ...(role ? { role } : {}), ...mac } },
          ]);
        }
      } catch (err) {
        // Not dead-lettered: back in line, so it is tried again rather than left claimed forever.
        this.#unclaim(rec);
        throw err;
      }
    }
    // else: a redelivery of a finished job's batch; nobody waits for it, so it is dropped.
    this.#held.delete(rec.id);
    this.#finish(rec);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#checkOpen();
    // No per-batch leases: a dead worker's partitions are redelivered by the group rebalance.
    if (this.#consumer) void this.#flushCommits().catch(() => {});
    return { requeued: [], deadLettered: [] };
  }

  // --- results -------------------------------------------------------------------------------------

  #registerJob(jobId: string): void {
    this.#deletedJobs.delete(jobId);
    const known = this.#results.get(jobId);
    if (known) known.registered = true;
    else this.#results.set(jobId, { entries: [], registered: true, firstAt: Date.now() });
  }

  #startResultsView(): TopicView {
    if (this.#resultsView) return this.#resultsView;
    const view = this.#view(this.#topics.results, 'results', this.#resultsStart ?? new Map(), (_p, m) => {
      const jobId = m.key?.toString('utf8');
      if (!jobId || this.#deletedJobs.has(jobId)) return;
      const kind = header(m.headers, 'kind');
      const batchId = header(m.headers, 'batch') ?? '';
      const role = header(m.headers, 'role') ?? '';
      const mac = header(m.headers, 'mac');
      const record = `result record ${this.#topics.results}/${_p}@${m.offset}`;
      const malformed = (field: string, reason: string) => logMalformed(this.#options.logger, new MalformedRecord(record, field, reason), { job: jobId });
      let entry: ResultEntry;
      if (kind !== 'results' && kind !== 'dead') return malformed('kind', `must be results or dead, got ${JSON.stringify(String(kind).slice(0, 40))}`);
      if (!isRecordId(batchId)) return malformed('batch', 'must be a batch id');
      if (kind === 'results') {
        if (!roleSet.has(role)) return malformed('role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`);
        if (!m.value || m.value.length === 0) return malformed('value', 'must be a non-empty frame');
        entry = { kind: 'results', batchId, role: role as Role, workerId: (header(m.headers, 'worker') ?? '').slice(0, 300), frame: Buffer.from(m.value), ...(mac !== undefined ? { mac } : {}) };
      } else {
        if (role !== '' && !roleSet.has(role)) return malformed('role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`);
        entry = { kind: 'dead', batchId, reason: (header(m.headers, 'reason') ?? '').slice(0, 2000), ...(role !== '' ? { role: role as Role } : {}), ...(mac !== undefined ? { mac } : {}) };
      }
      let stream = this.#results.get(jobId);
      if (!stream) {
        this.#pruneUnregistered();
        this.#results.set(jobId, (stream = { entries: [], registered: false, firstAt: Date.now() }));
      }
      stream.entries.push(entry);
      this.#events.emit('result:' + jobId);
    });
    this.#resultsView = view;
    view.start().catch(() => {}); // retried by the next readResults
    return view;
  }

  #pruneUnregistered(): void {
    const before = Date.now() - UNREGISTERED_RESULTS_MS;
    for (const [jobId, s] of this.#results) if (!s.registered && s.firstAt < before) this.#results.delete(jobId);
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    await this.#run('read results', () => this.#ensureConnected());
    this.#registerJob(jobId);
    const view = this.#startResultsView();
    const until = Date.now() + Math.max(0, blockMs);
    // The reader's first join takes a moment; wait for it within blockMs (its failure is this read's).
    await this.#run('read results', () => withTimeout(view.start(), Math.max(0, blockMs), undefined));
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    const collect = () => this.#results.get(jobId)?.entries.slice(after) ?? [];
    let found = collect();
    const left = until - Date.now();
    if (found.length === 0 && left > 0 && !this.#closed) {
      await waitForAny(this.#events, ['result:' + jobId, 'closed'], left);
      found = collect();
    }
    return { cursor: String(after + found.length), entries: found };
  }

  // --- workers -------------------------------------------------------------------------------------

  #startWorkersView(): TopicView {
    if (this.#workersView) return this.#workersView;
    // Heartbeats of the last few heartbeat_timeouts are what matters; the topic's retention bounds
    // the rest (brokers' timestamp lookups are not relied on: librdkafka's mock ignores them).
    const view = this.#view(this.#topics.workers, 'workers', 'beginning', (_p, m) => {
      const workerId = m.key?.toString('utf8');
      if (!workerId) return;
      if (m.value === null) {
        this.#workers.delete(workerId);
        return;
      }
      const at = Number(m.timestamp);
      const prev = this.#workers.get(workerId);
      if (prev && (prev.lastHeartbeat ?? 0) > at) return;
      try {
        this.#workers.set(workerId, parseWorkerInfo(workerId, at, m.value.toString('utf8')));
      } catch (err) {
        if (!(err instanceof MalformedRecord)) throw err;
        logMalformed(this.#options.logger, err, { topic: this.#topics.workers });
      }
    });
    this.#workersView = view;
    view.start().catch(() => {}); // retried by the next activeWorkers
    return view;
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const { lastHeartbeat: _ignored, ...rest } = info;
    await this.#send('heartbeat', this.#topics.workers, [{ key: info.workerId, value: JSON.stringify(rest), timestamp: String(Date.now()) }]);
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
    await this.#send('remove worker', this.#topics.workers, [{ key: workerId, value: null }]);
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    await this.#run('active workers', () => this.#ensureConnected());
    const view = this.#startWorkersView();
    if (!this.#workersCaughtUp) {
      // The first answer waits for the view to read the recent heartbeats; later ones are live.
      await this.#caughtUp(view, 'worker heartbeats');
      this.#workersCaughtUp = true;
    }
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    return [...this.#workers.values()].filter((w) => (w.lastHeartbeat ?? 0) >= since).map((w) => ({ ...w }));
  }

  // --- stats and dead letters ----------------------------------------------------------------------

  async stats(): Promise<KafkaQueueStats> {
    const admin = await this.#run('stats', () => this.#adminClient());
    const topic = this.#topics.batches;
    const [ends, committed] = await this.#run('stats', () => Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: this.#group, topics: [topic] })]));
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
    const [dead, workers] = await Promise.all([this.#liveDead(), this.activeWorkers()]);
    const now = Date.now();
    const pending = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<Priority, number>;
    pending.normal = lag;
    return {
      pending,
      inflight: [...this.#held.values()].filter((r) => !r.lost).length,
      delayed: this.#buffer.filter((r) => r.notBefore > now).length,
      dead: dead.length,
      completed: partitions.reduce((s, p) => s + Math.max(0, p.committed), 0),
      dispatched: partitions.reduce((s, p) => s + p.high, 0),
      requeued: this.#counters.requeued,
      workers,
      kafka: { topic, group: this.#group, partitions, lag, note: STATS_NOTE },
    };
  }

  #startDlqView(): TopicView {
    return (this.#dlqView ??= this.#view(this.#topics.dlq, 'dlq', 'beginning', (p, m) => {
      const kind = header(m.headers, 'kind') ?? 'dead';
      const id = header(m.headers, 'id') ?? m.key?.toString('utf8');
      if (kind === 'purge') {
        // Everything this partition held before the marker is purged.
        for (const [key, d] of this.#dead) if (d.partition === p) this.#dead.delete(key);
        return;
      }
      if (!id) return;
      if (kind === 'retried') {
        const d = this.#dead.get(id);
        if (d && d.partition === p && d.offset < BigInt(m.offset)) this.#dead.delete(id);
        return;
      }
      const headers = copyHeaders(m.headers);
      const role = headers.role;
      this.#dead.set(id, {
        id,
        reason: headers.reason ?? '',
        attempts: int(headers.attempts),
        deadAt: int(headers.dead_at, Number(m.timestamp)),
        ...(headers.job ? { jobId: headers.job } : {}),
        ...(role && roleSet.has(role) ? { role: role as Role } : {}),
        partition: p,
        offset: BigInt(m.offset),
        value: m.value ? Buffer.from(m.value) : null,
        headers,
      });
    }));
  }

  async #liveDead(): Promise<DeadRecord[]> {
    await this.#run('read dead letters', () => this.#ensureConnected());
    await this.#caughtUp(this.#startDlqView(), 'dead letters');
    return [...this.#dead.values()].sort((a, b) => a.deadAt - b.deadAt);
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    return (await this.#liveDead()).slice(0, n).map((d) => {
      const entry: DeadEntry = { id: d.id, reason: d.reason, attempts: d.attempts, deadAt: d.deadAt };
      if (d.jobId !== undefined) entry.jobId = d.jobId;
      if (d.role !== undefined) entry.role = d.role;
      return entry;
    });
  }

  /**
   * Re-produces dead-lettered batches (those that still are well-formed batches) to the batch topic
   * with fresh attempts, then marks them retried on the DLQ topic. Returns how many.
   */
  async retryDead(id?: string): Promise<number> {
    const all = await this.#liveDead();
    const targets = all.filter((d) => (id === undefined || d.id === id) && d.value && d.value.length > 0 && d.jobId && d.role && d.headers.id);
    let n = 0;
    for (const d of targets) {
      const h = d.headers;
      const headers: Record<string, string> = { id: h.id, job: h.job, role: h.role, priority: prioOf(h.priority), attempt: '0', ...(h.mac ? { mac: h.mac } : {}) };
      await this.#send('retry dead', this.#topics.batches, [{ key: d.id, value: d.value, headers }]);
      await this.#send('retry dead', this.#topics.dlq, [{ key: d.id, value: null, headers: { kind: 'retried', id: d.id } }]);
      this.#dead.delete(d.id);
      n++;
    }
    return n;
  }

  /**
   * Kafka cannot delete single records: a purge appends a marker to every partition of the DLQ topic,
   * and readers drop what came before it. The records themselves expire with the topic's retention.
   */
  async purgeDead(): Promise<number> {
    const n = (await this.#liveDead()).length;
    const admin = await this.#run('purge dead', () => this.#adminClient());
    const parts = await this.#run('purge dead', () => admin.fetchTopicOffsets(this.#topics.dlq));
    await this.#send(
      'purge dead',
      this.#topics.dlq,
      parts.map((p) => ({ partition: p.partition, key: null, value: null, headers: { kind: 'purge', purged_at: String(Date.now()) } })),
    );
    this.#dead.clear();
    return n;
  }
}
