/**
 * RabbitMQ implementation of the queue `Backend` (amqplib, AMQP 0-9-1).
 *
 * Topology (Q = `queue` / `queue_name`, X = `exchange`, K = `routing_key`):
 *   Q.critical|high|normal|low  classic queues, one per priority, bound to the direct exchange X with
 *                 K.<priority> (K defaults to Q). A batch is a message: headers id, job, role, priority, mac, attempt
 *                 (deliveries counted before this copy); body = the codec frame, as is. Dead-lettered
 *                 by the broker (x-dead-letter-exchange) into X.dead.
 *   X.dead        direct exchange, routing key Q -> Q.dlq (x-message-ttl = result_ttl_seconds). metaguard publishes
 *                 its dead letters there with headers reason, dead_at, attempts.
 *   Q.delay.<ms>  retry delays: queues with x-message-ttl whose expired messages dead-letter into the
 *                 headers exchange X.retry, which routes them back by their priority header. A delay is
 *                 rounded up to the next 100 ms × 2^k above it (100 ms … ~55 min).
 *   Q.results.<job>  one queue per job (x-expires = result_ttl_seconds): results and dead entries,
 *                 consumed by the coordinator.
 *   Q.jobs        a stream (x-queue-type stream): manifests, their tombstones, and artifacts.
 *   Q.workers     a stream: heartbeats.
 *
 * Delivery:
 *   - A claim is a `basic.get` without auto-ack from the priority queue that `strict_priority` /
 *     `queue_weights` pick (in this process, as for Redis). The message stays unacknowledged on this
 *     connection — that is the lease — and is acknowledged only after its results were published and
 *     confirmed by the broker (publisher confirms). If the connection dies (the worker was killed, the
 *     network or the broker failed) the broker requeues it with `redelivered` set.
 *   - There is no lease to renew or expire: `renewLeases` reports the claims whose connection was lost,
 *     `reclaimExpired` has nothing to do, `circuit_breaker_threshold` does not apply. The broker's
 *     `consumer_timeout` (default 30 min) bounds how long one batch may stay unacknowledged.
 *   - Attempts survive crashes: a redelivered message is republished with attempt + 1 (and the original
 *     acknowledged) before anyone runs it again; past `max_requeue_attempts` (or at once with
 *     `enable_requeue: false`) it is dead-lettered with the reason.
 *   - `releaseBatch(countAttempt: false)` (drain) keeps the message here, first in line for this
 *     process's next claim; `close()` republishes such hand-backs with their attempt unchanged.
 *     `countAttempt: true` republishes with attempt + 1 through the delay queue, then acknowledges.
 *
 * `stats()`: pending per priority and dead from the broker's queue counts, delayed from the delay queues;
 * in-flight, dispatched, completed and requeued count this process only. Clock: `now()` is this host's
 * Date.now() (heartbeats carry it), so hosts need synchronised clocks.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { connect as amqpConnect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type GetMessage, type Options } from 'amqplib';
import { MetaguardError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { signDead, signResults } from '../messages.js';
import { pickPriority } from '../priority.js';
import { waitForAny } from '../../util/wait.js';
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

const roleSet = new Set<string>(['baseline', 'candidate']);
const CONNECT_TIMEOUT_MS = 5000;
const CATCH_UP_MS = 15_000;
/** Retry-delay steps: 100 ms × 2^k, k = 0..15 (100 ms … ~55 min), one delay queue each. */
export const DELAY_STEPS_MS: readonly number[] = Array.from({ length: 16 }, (_, k) => 100 * 2 ** k);
const MAX_DLQ_SCAN = 10_000;
/** An artifact appended this recently is not appended again (the jobs stream keeps 7 days). */
const ARTIFACT_REUSE_MS = 24 * 3600 * 1000;

export interface RabbitQueueStats extends QueueStats {
  rabbitmq: { queues: Record<Priority, string>; dlq: string; note: string };
}

const STATS_NOTE = 'pending, delayed and dead are broker counts; in-flight, dispatched, completed and requeued count this process only';

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function hstr(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function hint(headers: Record<string, unknown> | undefined, name: string, fallback = 0): number {
  const n = Number(hstr(headers, name));
  return Number.isFinite(n) ? Math.trunc(n) : fallback;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function prioOf(p: string | undefined): Priority {
  return p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
}

/**
 * The delay step a retry of `ms` waits: the first step longer than it (so never shorter, at most twice
 * as long: TTL expiry is not exact to the millisecond), or the longest.
 */
export function delayStep(ms: number): number {
  for (const s of DELAY_STEPS_MS) if (s > ms) return s;
  return DELAY_STEPS_MS[DELAY_STEPS_MS.length - 1];
}

/** Hides the password of an amqp(s):// URL. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

type Parsed =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt'>; prior: number }
  | { ok: false; reason: string; jobId?: string; role?: Role; prior: number };

interface Held {
  id: string;
  msg: GetMessage;
  /** Other deliveries of the same batch id (enqueued twice), acknowledged with it. */
  dups: GetMessage[];
  gen: number;
  owner?: string;
  parsed: Parsed;
  claim?: ClaimedBatch;
  queue: string;
}

// ---------------------------------------------------------------------------------------------------
// A stream read from its first offset into local state; `catchUp` appends a marker and waits for it.

class StreamView extends EventEmitter {
  #ch: Channel | undefined;
  #gen = -1;
  #next: number | undefined;
  #starting: Promise<void> | undefined;
  readonly #seen = new Set<string>();

  constructor(
    readonly stream: string,
    private readonly backend: { channel(prefetch: number): Promise<{ ch: Channel; gen: number }>; currentGen(): number; publishTo(queue: string, content: Buffer, options: Options.Publish): Promise<void> },
    private readonly onMessage: (msg: ConsumeMessage) => void,
  ) {
    super();
    this.setMaxListeners(0);
  }

  start(): Promise<void> {
    if (this.#ch && this.#gen === this.backend.currentGen()) return Promise.resolve();
    return (this.#starting ??= this.#start().finally(() => (this.#starting = undefined)));
  }

  async #start(): Promise<void> {
    const old = this.#ch;
    this.#ch = undefined;
    if (old) void old.close().catch(() => {});
    const { ch, gen } = await this.backend.channel(500);
    this.#ch = ch;
    this.#gen = gen;
    ch.on('close', () => {
      if (this.#ch === ch) this.#ch = undefined;
    });
    const offset = this.#next === undefined ? 'first' : this.#next;
    await ch.consume(
      this.stream,
      (msg) => {
        if (!msg) return;
        const off = Number(msg.properties.headers?.['x-stream-offset']);
        try {
          if (!(Number.isFinite(off) && this.#next !== undefined && off < this.#next)) {
            const sync = hstr(msg.properties.headers, 'sync');
            if (sync !== undefined) this.#seen.add(sync);
            else this.onMessage(msg);
          }
        } catch {
          // a record this view cannot read is skipped; it must not stop the view
        }
        if (Number.isFinite(off)) this.#next = off + 1;
        try {
          ch.ack(msg);
        } catch {
          // channel gone: the next start() resumes from #next
        }
        this.emit('progress');
      },
      { noAck: false, arguments: { 'x-stream-offset': offset } },
    );
  }

  /** Waits until everything appended before this call has been read (false: not within `ms`). */
  async catchUp(ms: number): Promise<boolean> {
    await this.start();
    const id = randomUUID();
    await this.backend.publishTo(this.stream, Buffer.alloc(0), { headers: { sync: id }, persistent: true });
    if (this.#seen.delete(id)) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('progress', check);
        this.off('stopped', stop);
        resolve(ok);
      };
      const check = () => {
        if (this.#seen.delete(id)) done(true);
      };
      const stop = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      this.on('progress', check);
      this.on('stopped', stop);
    });
  }

  stop(): void {
    this.emit('stopped');
    this.#ch = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------

export class RabbitBackend implements Backend {
  readonly kind = 'rabbitmq';
  /** What this backend promises beyond the common contract (src/queue/types.ts). */
  readonly capabilities = {
    queue: { leases: false, circuitBreaker: false, strictPriority: true, weightedPriority: true, fifo: true, idempotentEnqueue: false, lostBatchDetection: false, wakeOnWork: false },
    admin: { perPriorityStats: true, pendingExcludesClaimed: true, delayedStats: true, withdraw: false, preflight: false, progress: false, priorityCounts: false, benchRecords: false },
  };
  readonly #config: QueueConfig;
  readonly #events = new EventEmitter();
  readonly #q: string;
  readonly #x: string;
  readonly #rk: string;
  readonly #durable: boolean;
  readonly #target: string;
  #conn: ChannelModel | undefined;
  #ch: ConfirmChannel | undefined;
  #admin: Channel | undefined;
  #results: Channel | undefined;
  /** Generation of the claim channel: deliveries of an older one are gone. */
  #gen = 0;
  /** Generation of the connection: consumers of an older one are gone. */
  #connGen = 0;
  #connecting: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #lastError: Error | undefined;

  readonly #held = new Map<string, Held>();
  #returned: Held[] = [];
  readonly #declared = new Set<string>();
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };
  #synthetic = 0;

  // coordinator side
  readonly #jobResults = new Map<string, { entries: ResultEntry[]; consumer?: { tag: string; gen: number } }>();
  readonly #deletedJobs = new Set<string>();

  // streams
  #jobsView: StreamView | undefined;
  readonly #manifests = new Map<string, JobManifest>();
  readonly #tombstones = new Set<string>();
  readonly #artifacts = new Map<string, Buffer>();
  /** When each artifact was last appended to the stream (publisher's clock, ms). */
  readonly #artifactAt = new Map<string, number>();
  #workersView: StreamView | undefined;
  #workersCaughtUp = false;
  readonly #workers = new Map<string, WorkerInfo>();

  constructor(config: QueueConfig) {
    this.#config = config;
    this.#events.setMaxListeners(0);
    this.#q = config.queue;
    this.#x = config.exchange ?? 'metaguard';
    // Default: the queue's own name, so that queues sharing an exchange never receive each other's batches.
    this.#rk = config.routing_key ?? config.queue;
    this.#durable = config.durable ?? true;
    const c = config.connection;
    this.#target = config.url !== undefined ? redactUrl(config.url) : `${c?.ssl ? 'amqps' : 'amqp'}://${c?.host ?? '127.0.0.1'}:${c?.port ?? (c?.ssl ? 5671 : 5672)}${c?.virtual_host ? '/' + encodeURIComponent(c.virtual_host) : ''}`;
  }

  /** Queue and exchange names (tests, tools). */
  names(): { priority: Record<Priority, string>; dlq: string; jobs: string; workers: string; exchange: string; results(jobId: string): string } {
    return {
      priority: Object.fromEntries(priorities.map((p) => [p, `${this.#q}.${p}`])) as Record<Priority, string>,
      dlq: `${this.#q}.dlq`,
      jobs: `${this.#q}.jobs`,
      workers: `${this.#q}.workers`,
      exchange: this.#x,
      results: (jobId) => `${this.#q}.results.${jobId}`,
    };
  }

  // --- plumbing ------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `rabbitmq backend for queue ${this.#q} is closed`);
  }

  async #run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      await this.#ensure();
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `rabbitmq backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `rabbitmq ${op} failed (${this.#target}, queue ${this.#q}): ${describe(err)}`, { cause: err });
    }
  }

  #connectOptions(): string | Options.Connect {
    const c = this.#config;
    const heartbeat = c.heartbeat ?? 10;
    if (c.url !== undefined) {
      const u = new URL(c.url);
      if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeat));
      return u.toString();
    }
    const conn = c.connection;
    return {
      protocol: conn?.ssl ? 'amqps' : 'amqp',
      hostname: conn?.host ?? '127.0.0.1',
      port: conn?.port ?? (conn?.ssl ? 5671 : 5672),
      username: conn?.username ?? 'guest',
      password: conn?.password ?? 'guest',
      vhost: conn?.virtual_host ?? '/',
      heartbeat,
    };
  }

  async #ensure(): Promise<void> {
    this.#checkOpen();
    if (this.#conn && this.#ch && this.#admin) return;
    await (this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined)));
  }

  async #connect(): Promise<void> {
    if (!this.#conn) {
      let conn: ChannelModel;
      try {
        conn = await amqpConnect(this.#connectOptions(), { timeout: CONNECT_TIMEOUT_MS });
      } catch (err) {
        throw new MetaguardError('MG_ERR_BACKEND', `cannot connect to rabbitmq at ${this.#target}: ${describe(err)}`, { cause: err });
      }
      conn.on('error', (err: Error) => (this.#lastError = err));
      conn.on('close', () => {
        if (this.#conn === conn) this.#lost();
      });
      this.#conn = conn;
      if (this.#closed) {
        await conn.close().catch(() => {});
        this.#checkOpen();
      }
    }
    const conn = this.#conn;
    if (!this.#admin) {
      const admin = await conn.createChannel();
      admin.on('error', (err: Error) => (this.#lastError = err));
      admin.on('close', () => {
        if (this.#admin === admin) this.#admin = undefined;
      });
      this.#admin = admin;
    }
    if (!this.#ch) {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err: Error) => (this.#lastError = err));
      ch.on('close', () => {
        // Unacknowledged claims on this channel go back to the broker: they are no longer held here.
        if (this.#ch === ch) this.#lostChannel();
      });
      this.#ch = ch;
      await this.#topology();
    }
  }

  /** The connection is gone: every claim on it is lost (the broker requeues them). */
  #lost(): void {
    this.#conn = undefined;
    this.#connGen++;
    this.#admin = undefined;
    this.#results = undefined;
    this.#lostChannel();
    this.#declared.clear();
  }

  #lostChannel(): void {
    this.#ch = undefined;
    this.#gen++;
    this.#returned = [];
    this.#events.emit('lost');
  }

  /** Declares a queue; one declared elsewhere with other arguments is used as it is. */
  async #declare(name: string, options: Options.AssertQueue): Promise<void> {
    if (this.#declared.has(name)) return;
    try {
      await this.#admin!.assertQueue(name, options);
    } catch (err) {
      if ((err as { code?: number }).code !== 406) throw err;
      // PRECONDITION_FAILED closed the admin channel: reopen it and only check that the queue exists.
      this.#admin = undefined;
      await this.#connect();
      await this.#admin!.checkQueue(name);
    }
    this.#declared.add(name);
  }

  async #topology(): Promise<void> {
    const a = this.#admin!;
    const n = this.names();
    await a.assertExchange(this.#x, 'direct', { durable: this.#durable });
    await a.assertExchange(`${this.#x}.dead`, 'direct', { durable: true });
    await a.assertExchange(`${this.#x}.retry`, 'headers', { durable: true });
    await this.#declare(n.dlq, { durable: true, arguments: { 'x-message-ttl': this.#config.result_ttl_seconds * 1000 } });
    await this.#admin!.bindQueue(n.dlq, `${this.#x}.dead`, this.#q);
    for (const p of priorities) {
      await this.#declare(n.priority[p], { durable: this.#durable, arguments: { 'x-dead-letter-exchange': `${this.#x}.dead`, 'x-dead-letter-routing-key': this.#q } });
      await this.#admin!.bindQueue(n.priority[p], this.#x, `${this.#rk}.${p}`);
      await this.#admin!.bindQueue(n.priority[p], `${this.#x}.retry`, '', { 'x-match': 'all', priority: p, queue: this.#q });
    }
    for (const ms of DELAY_STEPS_MS) {
      await this.#declare(`${this.#q}.delay.${ms}`, { durable: this.#durable, arguments: { 'x-message-ttl': ms, 'x-dead-letter-exchange': `${this.#x}.retry` } });
    }
    await this.#declare(n.jobs, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } });
    await this.#declare(n.workers, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '1h', 'x-stream-max-segment-size-bytes': 1_000_000 } });
  }

  /** Publishes through the confirm channel and waits for the broker's confirm. */
  #publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    const ch = this.#ch;
    if (!ch) return Promise.reject(new Error('channel closed'));
    return new Promise<void>((resolve, reject) => {
      try {
        ch.publish(exchange, routingKey, content, { persistent: this.#durable, ...options }, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err ?? 'nacked by the broker'))) : resolve()));
      } catch (err) {
        reject(err);
      }
    });
  }

  // StreamView's view of this backend.
  readonly #viewHost = {
    channel: async (prefetch: number) => {
      await this.#ensure();
      const ch = await this.#conn!.createChannel();
      ch.on('error', (err: Error) => (this.#lastError = err));
      await ch.prefetch(prefetch);
      return { ch, gen: this.#connGen };
    },
    currentGen: () => this.#connGen,
    publishTo: async (queue: string, content: Buffer, options: Options.Publish) => {
      await this.#ensure();
      await this.#publish('', queue, content, options);
    },
  };

  // --- lifecycle -----------------------------------------------------------------------------------

  async connect(): Promise<void> {
    await this.#run('connect', async () => {});
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    // Hand-backs go back to the queue with their attempt unchanged (a channel close would count one).
    const back = this.#returned.filter((h) => h.gen === this.#gen && h.parsed.ok);
    this.#returned = [];
    if (back.length && this.#ch) {
      await Promise.race([
        Promise.all(
          back.map(async (h) => {
            try {
              await this.#republish(h, h.parsed.prior, 0);
              this.#ch?.ack(h.msg);
            } catch {
              // the broker requeues it when the channel closes (counted as an attempt)
            }
          }),
        ),
        new Promise((r) => setTimeout(r, 3000)),
      ]);
    }
    this.#closed = true;
    this.#events.emit('closed');
    this.#jobsView?.stop();
    this.#workersView?.stop();
    const conn = this.#conn;
    this.#conn = undefined;
    this.#ch = undefined;
    this.#admin = undefined;
    this.#results = undefined;
    this.#held.clear();
    if (conn) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([conn.close().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
    }
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  #jobs(): StreamView {
    return (this.#jobsView ??= new StreamView(this.names().jobs, this.#viewHost, (msg) => {
      const kind = hstr(msg.properties.headers, 'kind');
      if (kind === 'artifact') {
        const sha = hstr(msg.properties.headers, 'sha256');
        if (sha) {
          this.#artifacts.set(sha, Buffer.from(msg.content));
          this.#artifactAt.set(sha, Math.max(this.#artifactAt.get(sha) ?? 0, hint(msg.properties.headers, 'at')));
        }
      } else if (kind === 'job') {
        const m = JSON.parse(msg.content.toString('utf8')) as JobManifest;
        if (typeof m?.jobId === 'string') {
          this.#manifests.set(m.jobId, m);
          this.#tombstones.delete(m.jobId);
        }
      } else if (kind === 'job-deleted') {
        const jobId = hstr(msg.properties.headers, 'job');
        if (jobId) {
          this.#manifests.delete(jobId);
          this.#tombstones.add(jobId);
        }
      }
    }));
  }

  async #caughtUp(view: StreamView, what: string): Promise<void> {
    const ok = await this.#run(`read ${what}`, () => view.catchUp(CATCH_UP_MS));
    this.#checkOpen();
    if (!ok) throw new MetaguardError('MG_ERR_BACKEND', `rabbitmq: reading ${view.stream} did not catch up within ${CATCH_UP_MS} ms (${what})`);
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    // The same code evaluated again is not appended again while its copy on the stream is recent
    // (well inside the stream's 7-day retention): the stream, and every reader's memory, stay small.
    const fresh = () => (this.#artifactAt.get(sha256) ?? 0) > Date.now() - ARTIFACT_REUSE_MS;
    if (!fresh()) await this.#caughtUp(this.#jobs(), `artifact ${sha256.slice(0, 12)}`);
    if (fresh()) return;
    const at = Date.now();
    await this.#run('put artifact', () => this.#publish('', this.names().jobs, toBuffer(bytes), { headers: { kind: 'artifact', sha256, at }, persistent: true }));
    this.#artifacts.set(sha256, Buffer.from(bytes));
    this.#artifactAt.set(sha256, at);
  }

  async getArtifact(sha256: string): Promise<Uint8Array | null> {
    this.#checkOpen();
    const known = this.#artifacts.get(sha256);
    if (known) return known;
    await this.#caughtUp(this.#jobs(), `artifact ${sha256.slice(0, 12)}`);
    return this.#artifacts.get(sha256) ?? null;
  }

  async putJob(manifest: JobManifest): Promise<void> {
    this.#deletedJobs.delete(manifest.jobId);
    await this.#run('put job', async () => {
      await this.#declareResults(manifest.jobId);
      await this.#publish('', this.names().jobs, Buffer.from(JSON.stringify(manifest)), { headers: { kind: 'job', job: manifest.jobId }, persistent: true });
    });
    this.#manifests.set(manifest.jobId, structuredClone(manifest));
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    this.#checkOpen();
    if (!this.#manifests.has(jobId) && !this.#tombstones.has(jobId)) await this.#caughtUp(this.#jobs(), `job ${jobId}`);
    const m = this.#manifests.get(jobId);
    return m ? structuredClone(m) : null;
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    const state = this.#jobResults.get(jobId);
    this.#jobResults.delete(jobId);
    this.#manifests.delete(jobId);
    this.#tombstones.add(jobId);
    await this.#run('delete job', async () => {
      if (state?.consumer && state.consumer.gen === this.#connGen) await this.#results?.cancel(state.consumer.tag).catch(() => {});
      await this.#publish('', this.names().jobs, Buffer.alloc(0), { headers: { kind: 'job-deleted', job: jobId }, persistent: true });
      await this.#admin!.deleteQueue(this.names().results(jobId));
      this.#declared.delete(this.names().results(jobId));
    });
  }

  #declareResults(jobId: string): Promise<void> {
    return this.#declare(this.names().results(jobId), { durable: this.#durable, arguments: { 'x-expires': this.#config.result_ttl_seconds * 1000 } });
  }

  // --- batches (coordinator side) ------------------------------------------------------------------

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    await this.#run('enqueue', () =>
      Promise.all(
        batches.map((b) =>
          this.#publish(this.#x, `${this.#rk}.${b.priority}`, toBuffer(b.payload), {
            messageId: b.id,
            headers: { id: b.id, job: b.jobId, role: b.role, priority: b.priority, attempt: 0, ...(b.mac ? { mac: b.mac } : {}) },
          }),
        ),
      ),
    );
    this.#counters.dispatched += batches.length;
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  #parse(msg: GetMessage, id: string): Parsed {
    const h = msg.properties.headers;
    const prior = Math.max(0, hint(h, 'attempt'));
    const jobId = hstr(h, 'job');
    const role = hstr(h, 'role');
    const info = { ...(jobId ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
    if (msg.content.length === 0) return { ok: false, reason: 'malformed batch: no payload', prior, ...info };
    if (!jobId) return { ok: false, reason: 'malformed batch: no job', prior, ...info };
    if (!role || !roleSet.has(role)) return { ok: false, reason: 'malformed batch: bad role', prior, ...info };
    const mac = hstr(h, 'mac');
    return { ok: true, batch: { id, jobId, role: role as Role, priority: prioOf(hstr(h, 'priority')), payload: msg.content, ...(mac ? { mac } : {}) }, prior };
  }

  #take(h: Held, workerId: string): Claim {
    h.owner = workerId;
    this.#held.set(h.id, h);
    if (!h.parsed.ok) return { ok: false, id: h.id, reason: h.parsed.reason };
    h.claim = { ...h.parsed.batch, attempt: h.parsed.prior + 1 };
    return { ok: true, batch: h.claim };
  }

  async claimBatches(workerId: string, max: number, _leaseMs: number): Promise<Claim[]> {
    const n = Math.min(1000, Math.floor(max));
    if (!(n >= 1)) return [];
    return this.#run('claim', async () => {
      const out: Claim[] = [];
      while (out.length < n && this.#returned.length) {
        const h = this.#returned.shift()!;
        if (h.gen === this.#gen) out.push(this.#take(h, workerId));
      }
      const empty = new Set<Priority>();
      while (out.length < n) {
        const p = pickPriority((x) => !empty.has(x), this.#config);
        if (!p) break;
        const ch = this.#ch;
        if (!ch) throw new Error('channel closed');
        const queue = this.names().priority[p];
        const msg = await ch.get(queue, { noAck: false });
        if (!msg) {
          empty.add(p);
          continue;
        }
        const claim = await this.#receive(msg, queue, workerId);
        if (claim) out.push(claim);
      }
      return out;
    });
  }

  async #receive(msg: GetMessage, queue: string, workerId: string): Promise<Claim | undefined> {
    const h = msg.properties.headers;
    const id = hstr(h, 'id') ?? (typeof msg.properties.messageId === 'string' && msg.properties.messageId !== '' ? msg.properties.messageId : `${queue}#${Date.now()}-${++this.#synthetic}`);
    const rec: Held = { id, msg, dups: [], gen: this.#gen, parsed: this.#parse(msg, id), queue };
    if (msg.fields.redelivered) {
      // Back from a connection that died holding it (a killed worker, a lost network, a broker
      // restart): count the attempt in the message itself before anyone runs it again.
      const delivered = rec.parsed.prior + 1;
      if (!this.#config.enable_requeue || delivered > this.#config.max_requeue_attempts) {
        await this.#deadLetterRec(rec, `lease lost after ${delivered} attempts (the workers holding it died or lost their connection)`);
        return undefined;
      }
      if (rec.parsed.ok) {
        await this.#republish(rec, delivered, 0);
        this.#ch!.ack(msg);
        this.#counters.requeued++;
        return undefined;
      }
    }
    const known = this.#held.get(id);
    if (known && known.gen === this.#gen) {
      // The same batch id delivered twice (enqueued twice): the claim already held answers both.
      known.dups.push(msg);
      return undefined;
    }
    return this.#take(rec, workerId);
  }

  /** Publishes a copy of a held batch with `attempt` counted deliveries, after `delayMs`. */
  async #republish(h: Held, attempt: number, delayMs: number, extra: Record<string, string> = {}): Promise<void> {
    const headers: Record<string, unknown> = { ...(h.msg.properties.headers ?? {}), attempt, queue: this.#q, ...extra };
    delete headers['x-death'];
    const priority = h.parsed.ok ? h.parsed.batch.priority : 'normal';
    headers.priority = priority;
    const options: Options.Publish = { messageId: h.id, headers };
    if (delayMs > 0) await this.#publish('', `${this.#q}.delay.${delayStep(delayMs)}`, h.msg.content, options);
    else await this.#publish(this.#x, `${this.#rk}.${priority}`, h.msg.content, options);
  }

  #mine(workerId: string, id: string): Held | undefined {
    const h = this.#held.get(id);
    if (!h || h.owner !== workerId) return undefined;
    if (h.gen !== this.#gen) {
      this.#held.delete(id);
      return undefined;
    }
    return h;
  }

  #ack(h: Held): void {
    this.#held.delete(h.id);
    if (h.gen !== this.#gen || !this.#ch) return;
    for (const m of [h.msg, ...h.dups]) this.#ch.ack(m);
  }

  async renewLeases(workerId: string, ids: string[], _leaseMs: number): Promise<string[]> {
    this.#checkOpen();
    return ids.filter((id) => {
      const h = this.#held.get(id);
      return !h || h.owner !== workerId || h.gen !== this.#gen;
    });
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    // Results first, confirmed by the broker; the acknowledgement after: never at-most-once.
    await this.#run('complete batch', async () => {
      await this.#declareResults(batch.jobId);
      const key = this.#config.hmac_key;
      const mac = key ? { mac: signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) } : {};
      await this.#publish('', this.names().results(batch.jobId), toBuffer(results), { headers: { kind: 'results', batch: batch.id, role: batch.role, worker: workerId, ...mac } });
    });
    const h = this.#mine(workerId, batch.id);
    if (!h) return false;
    this.#ack(h);
    this.#counters.completed++;
    return true;
  }

  async releaseBatch(workerId: string, id: string, options: { delayMs: number; countAttempt: boolean; reason: string }): Promise<void> {
    this.#checkOpen();
    const h = this.#mine(workerId, id);
    if (!h) return;
    if (!h.parsed.ok || !h.claim) {
      await this.#run('release batch', () => this.#deadLetterRec(h, options.reason));
      return;
    }
    if (!options.countAttempt) {
      // Hand back: still unacknowledged here, first in line for this process's next claim.
      this.#held.delete(id);
      delete h.owner;
      delete h.claim;
      this.#returned.unshift(h);
      return;
    }
    const attempts = h.claim.attempt;
    if (attempts >= this.#config.max_requeue_attempts + 1) {
      await this.#run('release batch', () => this.#deadLetterRec(h, `${options.reason} (gave up after ${attempts} attempts)`));
      return;
    }
    await this.#run('release batch', () => this.#republish(h, attempts, Math.max(0, options.delayMs), { retry_reason: options.reason }));
    this.#ack(h);
    this.#counters.requeued++;
  }

  async deadLetter(workerId: string, id: string, reason: string): Promise<void> {
    this.#checkOpen();
    const h = this.#mine(workerId, id);
    if (!h) return;
    await this.#run('dead-letter', () => this.#deadLetterRec(h, reason));
  }

  async #deadLetterRec(h: Held, reason: string): Promise<void> {
    const p = h.parsed;
    const jobId = p.ok ? p.batch.jobId : p.jobId;
    const role = p.ok ? p.batch.role : p.role;
    const attempts = h.claim?.attempt ?? p.prior + 1;
    const headers: Record<string, unknown> = { ...(h.msg.properties.headers ?? {}), id: h.id, reason, attempts, dead_at: Date.now(), source: h.queue };
    delete headers['x-death'];
    await this.#publish(`${this.#x}.dead`, this.#q, h.msg.content, { messageId: h.id, headers, persistent: true });
    if (jobId !== undefined && !this.#deletedJobs.has(jobId)) {
      await this.#declareResults(jobId);
      const key = this.#config.hmac_key;
      const mac = key ? { mac: signDead(key, { jobId, batchId: h.id, role: role ?? '', reason }) } : {};
      await this.#publish('', this.names().results(jobId), Buffer.alloc(0), { headers: { kind: 'dead', batch: h.id, reason, ...(role ? { role } : {}), ...mac } });
    }
    this.#ack(h);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#checkOpen();
    // No per-batch lease: a dead connection's unacknowledged batches are requeued by the broker.
    return { requeued: [], deadLettered: [] };
  }

  // --- results -------------------------------------------------------------------------------------

  async #ensureResultsConsumer(jobId: string): Promise<void> {
    let state = this.#jobResults.get(jobId);
    if (!state) this.#jobResults.set(jobId, (state = { entries: [] }));
    if (state.consumer && state.consumer.gen === this.#connGen && this.#results) return;
    if (!this.#results) {
      const ch = await this.#conn!.createChannel();
      ch.on('error', (err: Error) => (this.#lastError = err));
      ch.on('close', () => {
        if (this.#results === ch) this.#results = undefined;
      });
      await ch.prefetch(Math.max(100, this.#config.prefetch_count ?? 10));
      this.#results = ch;
    }
    const ch = this.#results;
    await this.#declareResults(jobId);
    const s = state;
    const { consumerTag } = await ch.consume(
      this.names().results(jobId),
      (msg) => {
        if (!msg) return;
        const h = msg.properties.headers;
        const kind = hstr(h, 'kind');
        const batchId = hstr(h, 'batch') ?? '';
        if (kind === 'results') {
          const mac = hstr(h, 'mac');
          s.entries.push({ kind: 'results', batchId, role: (hstr(h, 'role') ?? '') as Role, workerId: hstr(h, 'worker') ?? '', frame: Buffer.from(msg.content), ...(mac ? { mac } : {}) });
        } else if (kind === 'dead') {
          const mac = hstr(h, 'mac');
          const role = hstr(h, 'role');
          s.entries.push({ kind: 'dead', batchId, reason: hstr(h, 'reason') ?? '', ...(role ? { role: role as Role } : {}), ...(mac ? { mac } : {}) });
        }
        try {
          ch.ack(msg);
        } catch {
          // channel gone: the entry is kept here; the broker redelivers it and the coordinator drops the duplicate
        }
        this.#events.emit('result:' + jobId);
      },
      { noAck: false },
    );
    state.consumer = { tag: consumerTag, gen: this.#connGen };
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#checkOpen();
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    if (this.#deletedJobs.has(jobId)) return { cursor: String(after), entries: [] };
    try {
      await this.#run('read results', () => this.#ensureResultsConsumer(jobId));
    } catch (err) {
      // close() during the consumer's start: a pending read returns, as it does when close() wakes it.
      if (this.#closed) return { cursor: String(after), entries: [] };
      throw err;
    }
    const collect = () => this.#jobResults.get(jobId)?.entries.slice(after) ?? [];
    let found = collect();
    if (found.length === 0 && blockMs > 0 && !this.#closed) {
      await waitForAny(this.#events, ['result:' + jobId, 'closed', 'lost'], blockMs);
      found = collect();
    }
    return { cursor: String(after + found.length), entries: found };
  }

  // --- workers -------------------------------------------------------------------------------------

  #workersStream(): StreamView {
    return (this.#workersView ??= new StreamView(this.names().workers, this.#viewHost, (msg) => {
      const h = msg.properties.headers;
      const workerId = hstr(h, 'worker');
      if (!workerId) return;
      if (hstr(h, 'kind') === 'leave') {
        this.#workers.delete(workerId);
        return;
      }
      const at = Number(hstr(h, 'at'));
      const prev = this.#workers.get(workerId);
      if (prev && (prev.lastHeartbeat ?? 0) > at) return;
      let info: WorkerInfo = { workerId, host: '', pid: 0, threads: 0, startedAt: 0 };
      try {
        info = { ...info, ...(JSON.parse(msg.content.toString('utf8')) as Partial<WorkerInfo>) };
      } catch {
        // keep the minimal record: the heartbeat itself is what makes the worker active
      }
      info.workerId = workerId;
      info.lastHeartbeat = Number.isFinite(at) ? at : Date.now();
      this.#workers.set(workerId, info);
    }));
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const { lastHeartbeat: _ignored, ...rest } = info;
    await this.#run('heartbeat', () => this.#publish('', this.names().workers, Buffer.from(JSON.stringify(rest)), { headers: { kind: 'heartbeat', worker: info.workerId, at: Date.now() }, persistent: true }));
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
    await this.#run('remove worker', () => this.#publish('', this.names().workers, Buffer.alloc(0), { headers: { kind: 'leave', worker: workerId, at: Date.now() }, persistent: true }));
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    const view = this.#workersStream();
    if (!this.#workersCaughtUp) {
      await this.#caughtUp(view, 'worker heartbeats');
      this.#workersCaughtUp = true;
    } else await this.#run('active workers', () => view.start());
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    return [...this.#workers.values()].filter((w) => (w.lastHeartbeat ?? 0) >= since).map((w) => ({ ...w }));
  }

  // --- stats and dead letters ----------------------------------------------------------------------

  /** Channels of their own for queue counts, so that stats() asks for them side by side. */
  #countChannels: { ch: Channel; gen: number }[] = [];

  async #counter(i: number): Promise<Channel> {
    const known = this.#countChannels[i];
    if (known && known.gen === this.#connGen) return known.ch;
    const ch = await this.#conn!.createChannel();
    ch.on('error', () => {});
    const entry = { ch, gen: this.#connGen };
    ch.on('close', () => {
      if (this.#countChannels[i] === entry) delete this.#countChannels[i];
    });
    this.#countChannels[i] = entry;
    return ch;
  }

  /** Ready messages of each queue (0 for a queue that does not exist), over four channels at once. */
  async #counts(queues: string[]): Promise<number[]> {
    const lanes = 4;
    const out = new Array<number>(queues.length).fill(0);
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let i = lane; i < queues.length; i += lanes) {
          try {
            out[i] = (await (await this.#counter(lane)).checkQueue(queues[i])).messageCount;
          } catch (err) {
            // A missing queue closed that channel (404): it counts 0 and the lane opens a new one.
            if ((err as { code?: number }).code !== 404) throw err;
          }
        }
      }),
    );
    return out;
  }

  async stats(): Promise<RabbitQueueStats> {
    const n = this.names();
    const [counts, workers] = await Promise.all([
      this.#run('stats', async () => {
        const c = await this.#counts([...priorities.map((p) => n.priority[p]), n.dlq, ...DELAY_STEPS_MS.map((ms) => `${this.#q}.delay.${ms}`)]);
        const pending = Object.fromEntries(priorities.map((p, i) => [p, c[i]])) as Record<Priority, number>;
        return { pending, dead: c[priorities.length], delayed: c.slice(priorities.length + 1).reduce((a, b) => a + b, 0) };
      }),
      this.activeWorkers(),
    ]);
    return {
      pending: counts.pending,
      inflight: [...this.#held.values()].filter((h) => h.gen === this.#gen).length,
      delayed: counts.delayed,
      dead: counts.dead,
      completed: this.#counters.completed,
      dispatched: this.#counters.dispatched,
      requeued: this.#counters.requeued,
      workers,
      rabbitmq: { queues: n.priority, dlq: n.dlq, note: STATS_NOTE },
    };
  }

  /**
   * Reads every dead letter on a channel of its own (without acknowledging), hands them to `fn`, then
   * closes the channel: the broker puts back every message `fn` did not acknowledge, in order.
   */
  async #scanDead<T>(op: string, fn: (ch: ConfirmChannel, msgs: GetMessage[]) => Promise<T>): Promise<T> {
    return this.#run(op, async () => {
      const ch = await this.#conn!.createConfirmChannel();
      ch.on('error', () => {});
      try {
        const msgs: GetMessage[] = [];
        for (let i = 0; i < MAX_DLQ_SCAN; i++) {
          const m = await ch.get(this.names().dlq, { noAck: false });
          if (!m) break;
          msgs.push(m);
        }
        return await fn(ch, msgs);
      } finally {
        await ch.close().catch(() => {});
      }
    });
  }

  #deadEntry(m: GetMessage): DeadEntry {
    const h = m.properties.headers as Record<string, unknown> | undefined;
    const e: DeadEntry = {
      id: hstr(h, 'id') ?? (typeof m.properties.messageId === 'string' ? m.properties.messageId : '(no id)'),
      reason: hstr(h, 'reason') ?? (Array.isArray(h?.['x-death']) ? `dead-lettered by the broker (${hstr((h!['x-death'] as Record<string, unknown>[])[0], 'reason') ?? 'unknown'})` : ''),
      attempts: Math.max(0, hint(h, 'attempts')),
      deadAt: hint(h, 'dead_at', Number(m.properties.timestamp) || 0),
    };
    const job = hstr(h, 'job');
    const role = hstr(h, 'role');
    if (job) e.jobId = job;
    if (role && roleSet.has(role)) e.role = role as Role;
    return e;
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    const all = await this.#scanDead('list dead', async (_ch, msgs) => msgs.map((m) => this.#deadEntry(m)));
    return all.sort((a, b) => a.deadAt - b.deadAt).slice(0, n);
  }

  async retryDead(id?: string): Promise<number> {
    return this.#scanDead('retry dead', async (ch, msgs) => {
      let count = 0;
      for (const m of msgs) {
        const e = this.#deadEntry(m);
        if (id !== undefined && e.id !== id) continue;
        const h = m.properties.headers ?? {};
        if (m.content.length === 0 || !e.jobId || !e.role) continue;
        const priority = prioOf(hstr(h, 'priority'));
        const mac = hstr(h, 'mac');
        await new Promise<void>((resolve, reject) =>
          ch.publish(this.#x, `${this.#rk}.${priority}`, m.content, { persistent: this.#durable, messageId: e.id, headers: { id: e.id, job: e.jobId, role: e.role, priority, attempt: 0, ...(mac ? { mac } : {}) } }, (err) =>
            err ? reject(err instanceof Error ? err : new Error('nacked by the broker')) : resolve(),
          ),
        );
        ch.ack(m);
        count++;
      }
      return count;
    });
  }

  async purgeDead(): Promise<number> {
    return this.#run('purge dead', async () => (await this.#admin!.purgeQueue(this.names().dlq)).messageCount);
  }
}
