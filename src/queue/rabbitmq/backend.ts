/**
 * RabbitMQ implementation of the queue `Backend` (amqplib, AMQP 0-9-1).
 *
 * Topology (Q = `queue` / `queue_name`, X = `exchange`, K = `routing_key`; connection.ts declares it):
 *   Q.critical|high|normal|low  classic queues, one per priority, bound to the direct exchange X with
 *                 K.<priority> (K defaults to Q). A batch is a message: headers id, job, role, priority, mac, attempt
 *                 (deliveries counted before this copy); body = the codec frame, as is. Dead-lettered
 *                 by the broker (x-dead-letter-exchange) into X.dead.
 *                 Why four queues and not one `x-max-priority` queue: a priority queue only ever
 *                 delivers its highest priority first (strict), which starves `low` under a steady
 *                 stream of `high`; four queues let a claim pick by `queue_weights` (the default) or
 *                 strictly (`strict_priority`), as Redis does.
 *   X.dead        direct exchange, routing key Q -> Q.dlq (x-message-ttl = result_ttl_seconds). metaguard publishes
 *                 its dead letters there with headers reason, dead_at, attempts.
 *   Q.delay.<ms>  retry delays: queues with x-message-ttl whose expired messages dead-letter into the
 *                 headers exchange X.retry, which routes them back by their priority header. A delay is
 *                 rounded up to the next 100 ms × 2^k above it (100 ms … ~55 min).
 *   Q.results.<job>  one queue per job (x-expires = result_ttl_seconds): results and dead entries,
 *                 consumed by the coordinator.
 *   Q.jobs        a stream (x-queue-type stream): manifests, their tombstones, and artifacts (registry.ts).
 *   Q.workers     a stream: heartbeats.
 *
 * Delivery:
 *   - A claim is a `basic.get` without auto-ack from the priority queue that `strict_priority` /
 *     `queue_weights` pick (in this process, as for Redis). The message stays unacknowledged on this
 *     connection and is acknowledged only after its results were published and confirmed by the broker
 *     (publisher confirms). If the connection dies (the worker was killed, the network or the broker
 *     failed) the broker requeues it with `redelivered` set.
 *   - On top of that, each claim has a lease of `lease_seconds` on this host's clock, renewed by
 *     `renewLeases`. A lease that runs out while its process is alive (a stuck worker that still
 *     answers AMQP heartbeats) is ended here by a timer: the batch is republished with attempt + 1 (or
 *     dead-lettered past `max_requeue_attempts`), its delivery acknowledged, and the holder told at
 *     its next renewal; `reclaimExpired` reports what this process ended. RabbitMQ 3.10 (Debian 12)
 *     has no per-queue `x-consumer-timeout` (3.12+); its global `consumer_timeout` (default 30 min)
 *     still closes a channel holding a delivery longer than that, renewed or not: raise it in
 *     rabbitmq.conf for longer batches.
 *   - Attempts survive crashes: a redelivered message is republished with attempt + 1 (and the original
 *     acknowledged) before anyone runs it again; past `max_requeue_attempts` (or at once with
 *     `enable_requeue: false`) it is dead-lettered with the reason.
 *   - `releaseBatch(countAttempt: false)` (drain) keeps the message here, first in line for this
 *     process's next claim; `close()` republishes such hand-backs with their attempt unchanged.
 *     `countAttempt: true` republishes with attempt + 1 through the delay queue, then acknowledges.
 *   - Enqueue is idempotent within the coordinator's process: a batch id it enqueued and has not heard
 *     back of is not published again (a retried enqueue after a partial failure adds nothing).
 *   - `withdrawJob` appends the job's tombstone to the jobs stream and deletes its results queue; a
 *     queue cannot give back one message, so each process drops the job's batches as it meets them
 *     (claims skip them, renewals report them lost), acknowledged, never dead-lettered.
 *   - No `missingBatches`: a queue cannot be asked whether it holds a message id. Durable queues with
 *     persistent, confirmed messages (the default) keep batches across broker restarts.
 *
 * `stats()`: pending per priority and dead from the broker's queue counts, delayed from the delay queues;
 * in-flight, dispatched, completed and requeued count this process only. Clock: `now()` is this host's
 * Date.now() (heartbeats carry it), so hosts need synchronised clocks.
 */
import { MetaguardError, type WireError } from '../../errors.js';
import type { Logger } from '../../observe/log.js';
import type { QueueConfig } from '../../options/queue.js';
import { signDead, signResults } from '../messages.js';
import { pickPriority } from '../priority.js';
import { decideLost, decideRelease } from '../release.js';
import { Unanswered } from '../read-back.js';
import { logMalformed, MalformedRecord, storedWireError, withDetail } from '../records.js';
import { waitForAny } from '../../util/wait.js';
import { priorities, type Backend, type BatchMessage, type Claim, type ClaimedBatch, type DeadEntry, type JobManifest, type Priority, type QueueStats, type ReclaimOutcome, type ReleaseOptions, type ResultEntry, type WorkerInfo } from '../types.js';
import type { Channel, GetMessage, Options } from 'amqplib';
import { RabbitConnection, type RabbitNames } from './connection.js';
import { RabbitAdmin } from './dead-letters.js';
import { RabbitRegistry } from './registry.js';
import { batchIdOf, DELAY_STEPS_MS, delayStep, describe, parseBatch, parseResultMessage, roleSet, toBuffer, type Parsed } from './wire.js';

export { DELAY_STEPS_MS, delayStep, redactUrl } from './wire.js';

/** How often expired leases are looked for while this process holds claims. */
const LEASE_SWEEP_MS = 200;

export interface RabbitQueueStats extends QueueStats {
  rabbitmq: { queues: Record<Priority, string>; dlq: string; note: string };
}

export interface RabbitBackendOptions {
  /** Receives `malformed_record` warnings for records read back that fail their schema. */
  logger?: Logger;
  /** Bytes of artifacts kept in memory, the most recently used (others are read again from the jobs stream). @defaultValue 64 MiB */
  artifactMemoBytes?: number;
}

const STATS_NOTE = 'pending, delayed and dead are broker counts; in-flight, dispatched, completed and requeued count this process only';

interface Held {
  id: string;
  msg: GetMessage;
  /** Other deliveries of the same batch id (enqueued twice), acknowledged with it. */
  dups: GetMessage[];
  gen: number;
  owner?: string;
  /** Local clock of the lease's end (claimed batches only). */
  deadline: number;
  parsed: Parsed;
  claim?: ClaimedBatch;
  queue: string;
}

export class RabbitBackend implements Backend {
  readonly kind = 'rabbitmq';
  /**
   * What this backend promises beyond the common contract (src/queue/types.ts). leases: false — a
   * lease is measured and ended by the process holding it, not on a clock the others can reclaim on
   * (see the header). lostBatchDetection: false — a queue cannot be asked whether it holds a message id.
   */
  readonly capabilities = {
    queue: { leases: false, circuitBreaker: false, strictPriority: true, weightedPriority: true, fifo: true, idempotentEnqueue: true, lostBatchDetection: false, wakeOnWork: false },
    admin: { perPriorityStats: true, pendingExcludesClaimed: true, delayedStats: true, withdraw: true, preflight: false, progress: false, priorityCounts: false, benchRecords: false },
  };
  readonly #config: QueueConfig;
  readonly #logger: Logger | undefined;
  readonly #c: RabbitConnection;
  readonly #registry: RabbitRegistry;
  readonly #admin: RabbitAdmin;
  #results: { ch: Channel; gen: number } | undefined;
  #closing: Promise<void> | undefined;

  readonly #held = new Map<string, Held>();
  #returned: Held[] = [];
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };
  #synthetic = 0;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  /** What the lease timer ended since the last reclaimExpired. */
  #reclaimed: ReclaimOutcome = { requeued: [], deadLettered: [] };

  // coordinator side
  readonly #jobResults = new Map<string, { entries: ResultEntry[]; consumer?: { tag: string; gen: number } }>();
  readonly #deletedJobs = new Set<string>();
  readonly #unanswered = new Unanswered();

  constructor(config: QueueConfig, options: RabbitBackendOptions = {}) {
    this.#config = config;
    this.#logger = options.logger;
    this.#c = new RabbitConnection(config, options.logger);
    this.#registry = new RabbitRegistry(this.#c, config, options.artifactMemoBytes);
    this.#admin = new RabbitAdmin({
      connection: () => this.#c.conn!,
      connectionGen: () => this.#c.connGen,
      run: (op, fn) => this.#c.run(op, fn),
      dlq: this.#c.names.dlq,
      exchange: this.#c.x,
      routingKey: this.#c.rk,
      durable: this.#c.durable,
      logger: options.logger,
    });
    // Hand-backs were deliveries of the channel that died: the broker has them again.
    this.#c.events.on('lost', () => (this.#returned = []));
  }

  /** Queue and exchange names (tests, tools). */
  names(): RabbitNames {
    return this.#c.names;
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  async connect(): Promise<void> {
    await this.#c.run('connect', async () => {});
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    clearInterval(this.#sweeper);
    // Hand-backs go back to the queue with their attempt unchanged (a channel close would count one).
    const back = this.#returned.filter((h) => h.gen === this.#c.gen && h.parsed.ok);
    this.#returned = [];
    if (back.length && this.#c.ch) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(
          back.map(async (h) => {
            try {
              await this.#republish(h, h.parsed.prior, 0);
              this.#c.ch?.ack(h.msg);
            } catch (err) {
              // The broker requeues it when the channel closes (counted as an attempt).
              this.#logger?.warn('backend_error', { code: 'MG_ERR_BACKEND', during: 'hand back on close', batch: h.id, message: describe(err) });
            }
          }),
        ),
        new Promise((r) => (timer = setTimeout(r, 3000))),
      ]);
      clearTimeout(timer);
    }
    this.#registry.stop();
    this.#results = undefined;
    this.#held.clear();
    await this.#c.shutdown();
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    return this.#registry.putArtifact(sha256, bytes);
  }

  getArtifact(sha256: string): Promise<Uint8Array | null> {
    return this.#registry.getArtifact(sha256);
  }

  async putJob(manifest: JobManifest): Promise<void> {
    this.#deletedJobs.delete(manifest.jobId);
    await this.#c.run('put job', () => this.#declareResults(manifest.jobId));
    await this.#registry.putJob(manifest);
  }

  getJob(jobId: string): Promise<JobManifest | null> {
    return this.#registry.getJob(jobId);
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    this.#unanswered.dropJob(jobId);
    const state = this.#jobResults.get(jobId);
    this.#jobResults.delete(jobId);
    await this.#c.run('delete job', async () => {
      const r = this.#results;
      if (state?.consumer && r && state.consumer.gen === this.#c.connGen) await r.ch.cancel(state.consumer.tag);
      await this.#registry.tombstone(jobId);
      await this.#c.admin!.deleteQueue(this.#c.names.results(jobId));
      this.#c.forget(this.#c.names.results(jobId));
    });
  }

  /**
   * Tombstones the job (every process drops its batches as it meets them) and deletes its results
   * queue. Returns how many of the job's batches this process had enqueued and not heard back of:
   * those will not run (RabbitMQ cannot take a message out of a queue; they are dropped on delivery).
   */
  async withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number> {
    const open = new Set(this.#unanswered.dropJob(jobId));
    const removed = batchIds === undefined ? open.size : batchIds.filter((id) => open.has(id)).length;
    await this.deleteJob(jobId);
    for (const h of [...this.#held.values()]) if (this.#jobGone(h)) this.#drop(h);
    return removed;
  }

  /** True when the batch's job was deleted or withdrawn (as far as this process has read). */
  #jobGone(h: Held): boolean {
    const jobId = h.parsed.ok ? h.parsed.batch.jobId : h.parsed.jobId;
    return jobId !== undefined && (this.#deletedJobs.has(jobId) || this.#registry.deleted(jobId));
  }

  /** Acknowledges a batch of a withdrawn job without running it: nobody wants its results. */
  #drop(h: Held): void {
    this.#logger?.log('debug', 'job_withdrawn', { batch: h.id, message: 'dropping a batch of a withdrawn job' });
    this.#ack(h);
  }

  #declareResults(jobId: string): Promise<void> {
    return this.#c.declare(this.#c.names.results(jobId), { durable: this.#c.durable, arguments: { 'x-expires': this.#config.result_ttl_seconds * 1000 } });
  }

  // --- batches (coordinator side) ------------------------------------------------------------------

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    // Idempotent: what the broker confirmed before a failure is not published again by the retry.
    const fresh = new Map<string, BatchMessage>();
    for (const b of batches) if (!this.#unanswered.has(b.jobId, b.id)) fresh.set(b.id, b);
    await this.#c.run('enqueue', () =>
      Promise.all(
        [...fresh.values()].map(async (b) => {
          await this.#c.publish(this.#c.x, `${this.#c.rk}.${b.priority}`, toBuffer(b.payload), {
            messageId: b.id,
            headers: { id: b.id, job: b.jobId, role: b.role, priority: b.priority, attempt: 0, ...(b.mac ? { mac: b.mac } : {}) },
          });
          this.#unanswered.add(b.jobId, b.id);
          this.#counters.dispatched++;
        }),
      ),
    );
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  #take(h: Held, workerId: string, leaseMs: number): Claim {
    h.owner = workerId;
    h.deadline = Date.now() + leaseMs;
    this.#held.set(h.id, h);
    this.#sweeper ??= setInterval(() => void this.#sweep(), LEASE_SWEEP_MS).unref();
    if (!h.parsed.ok) return { ok: false, id: h.id, error: h.parsed.error };
    h.claim = { ...h.parsed.batch, attempt: h.parsed.prior + 1 };
    return { ok: true, batch: h.claim };
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    const n = Math.min(1000, Math.floor(max));
    if (!(n >= 1)) return [];
    const lease = Math.max(1, leaseMs);
    return this.#c.run('claim', async () => {
      const out: Claim[] = [];
      while (out.length < n && this.#returned.length) {
        const h = this.#returned.shift()!;
        if (h.gen !== this.#c.gen) continue;
        if (this.#jobGone(h)) this.#drop(h);
        else out.push(this.#take(h, workerId, lease));
      }
      const empty = new Set<Priority>();
      while (out.length < n) {
        const p = pickPriority((x) => !empty.has(x), this.#config);
        if (!p) break;
        const ch = this.#c.ch;
        if (!ch) throw new Error('channel closed');
        const queue = this.#c.names.priority[p];
        const msg = await ch.get(queue, { noAck: false });
        if (!msg) {
          empty.add(p);
          continue;
        }
        const claim = await this.#receive(msg, queue, workerId, lease);
        if (claim) out.push(claim);
      }
      return out;
    });
  }

  async #receive(msg: GetMessage, queue: string, workerId: string, leaseMs: number): Promise<Claim | undefined> {
    const id = batchIdOf(msg) ?? `${queue}.unnamed-${Date.now()}-${++this.#synthetic}`;
    const rec: Held = { id, msg, dups: [], gen: this.#c.gen, deadline: 0, parsed: parseBatch(msg, id), queue };
    if (this.#jobGone(rec)) {
      this.#drop(rec);
      return undefined;
    }
    if (msg.fields.redelivered) {
      // Back from a connection that died holding it (a killed worker, a lost network, a broker
      // restart): count the attempt in the message itself before anyone runs it again.
      const decision = decideLost(this.#config, rec.parsed.prior + 1, 'lease lost');
      if (decision.action === 'dead') {
        await this.#deadLetterRec(rec, withDetail(decision.error, '(the workers holding it died or lost their connection)'));
        return undefined;
      }
      if (rec.parsed.ok) {
        await this.#republish(rec, rec.parsed.prior + 1, 0);
        this.#c.ch!.ack(msg);
        this.#counters.requeued++;
        this.#logger?.log('debug', 'queue_requeued', { batch: id, attempts: rec.parsed.prior + 1, message: 'redelivered after its holder died or lost its connection; attempt counted' });
        return undefined;
      }
    }
    const known = this.#held.get(id);
    if (known && known.gen === this.#c.gen) {
      // The same batch id delivered twice (enqueued twice): the claim already held answers both.
      known.dups.push(msg);
      return undefined;
    }
    return this.#take(rec, workerId, leaseMs);
  }

  /** Publishes a copy of a held batch with `attempt` counted deliveries, after `delayMs`. */
  async #republish(h: Held, attempt: number, delayMs: number, extra: Record<string, string> = {}): Promise<void> {
    const headers: Record<string, unknown> = { ...(h.msg.properties.headers ?? {}), attempt, queue: this.#c.q, ...extra };
    delete headers['x-death'];
    const priority = h.parsed.ok ? h.parsed.batch.priority : 'normal';
    headers.priority = priority;
    const options: Options.Publish = { messageId: h.id, headers };
    if (delayMs > 0) await this.#c.publish('', this.#c.names.delay(delayStep(delayMs)), h.msg.content, options);
    else await this.#c.publish(this.#c.x, `${this.#c.rk}.${priority}`, h.msg.content, options);
  }

  /** The claim `workerId` holds on `id`, if its lease, its channel and its job are still there. */
  #mine(workerId: string, id: string): Held | undefined {
    const h = this.#held.get(id);
    if (!h || h.owner !== workerId) return undefined;
    if (h.gen !== this.#c.gen) {
      this.#held.delete(id);
      return undefined;
    }
    if (this.#jobGone(h)) {
      this.#drop(h);
      return undefined;
    }
    return h;
  }

  #ack(h: Held): void {
    this.#held.delete(h.id);
    if (h.gen !== this.#c.gen || !this.#c.ch) return;
    for (const m of [h.msg, ...h.dups]) this.#c.ch.ack(m);
  }

  /**
   * Ends the leases that ran out: each batch goes back to the queue with attempt + 1, or to the
   * dead-letter queue past max_requeue_attempts. Runs on a timer, so a holder that stopped renewing
   * loses its batches even if it never calls in again.
   */
  #sweep(): Promise<void> {
    return (this.#sweeping ??= this.#endExpired().finally(() => (this.#sweeping = undefined)));
  }

  async #endExpired(): Promise<void> {
    if (this.#c.closed) return;
    const now = Date.now();
    for (const h of [...this.#held.values()]) {
      if (h.deadline > now || this.#held.get(h.id) !== h) continue;
      if (h.gen !== this.#c.gen) {
        this.#held.delete(h.id);
        continue;
      }
      if (this.#jobGone(h)) {
        this.#drop(h);
        continue;
      }
      this.#held.delete(h.id);
      try {
        const attempts = h.claim?.attempt ?? h.parsed.prior + 1;
        const decision = h.parsed.ok ? decideLost(this.#config, attempts, 'lease expired') : { action: 'dead' as const, error: h.parsed.error };
        if (decision.action === 'dead') {
          await this.#c.run('end expired lease', () => this.#deadLetterRec(h, decision.error));
          this.#reclaimed.deadLettered.push(h.id);
        } else {
          await this.#c.run('end expired lease', () => this.#republish(h, attempts, 0, { retry_reason: 'lease expired' }));
          this.#ack(h);
          this.#counters.requeued++;
          this.#reclaimed.requeued.push(h.id);
        }
      } catch (err) {
        // Not republished: the delivery stays unacknowledged on this channel (the broker requeues it
        // if the channel closes), held by nobody, and tried again a moment later.
        if (h.gen === this.#c.gen && !this.#held.has(h.id)) {
          delete h.owner;
          h.deadline = Date.now() + 5 * LEASE_SWEEP_MS;
          this.#held.set(h.id, h);
        }
        this.#logger?.warn('backend_error', { code: (err as { code?: string }).code ?? 'MG_ERR_BACKEND', during: 'end expired lease', batch: h.id, message: describe(err) });
      }
    }
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    this.#c.checkOpen();
    const now = Date.now();
    const lost: string[] = [];
    for (const id of ids) {
      const h = this.#mine(workerId, id);
      if (!h || h.deadline <= now) lost.push(id);
      else h.deadline = now + Math.max(1, leaseMs);
    }
    if (lost.length && this.#held.size) await this.#sweep();
    return lost;
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    const gone = this.#deletedJobs.has(batch.jobId) || this.#registry.deleted(batch.jobId);
    // Results first, confirmed by the broker; the acknowledgement after: never at-most-once. A
    // deleted or withdrawn job's results are not published (its results queue is gone).
    if (!gone) {
      await this.#c.run('complete batch', async () => {
        await this.#declareResults(batch.jobId);
        const key = this.#config.hmac_key;
        const mac = key ? { mac: signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) } : {};
        await this.#c.publish('', this.#c.names.results(batch.jobId), toBuffer(results), { headers: { kind: 'results', batch: batch.id, role: batch.role, worker: workerId, ...mac } });
      });
    }
    const h = this.#mine(workerId, batch.id);
    if (!h) return false;
    this.#ack(h);
    this.#counters.completed++;
    return true;
  }

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    this.#c.checkOpen();
    const h = this.#mine(workerId, id);
    if (!h) return;
    const decision = decideRelease(this.#config, h.parsed.ok ? h.claim?.attempt : undefined, options);
    if (decision.action === 'dead') return this.#c.run('release batch', () => this.#deadLetterRec(h, decision.error));
    if (decision.action === 'hand-back') {
      // Still unacknowledged here, first in line for this process's next claim.
      this.#held.delete(id);
      delete h.owner;
      delete h.claim;
      this.#returned.unshift(h);
      return;
    }
    await this.#c.run('release batch', () => this.#republish(h, h.claim!.attempt, decision.delayMs, { retry_reason: storedWireError(options.error).reason }));
    this.#ack(h);
    this.#counters.requeued++;
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    this.#c.checkOpen();
    const h = this.#mine(workerId, id);
    if (!h) return;
    await this.#c.run('dead-letter', () => this.#deadLetterRec(h, error));
  }

  async #deadLetterRec(h: Held, why: WireError): Promise<void> {
    const { reason, error } = storedWireError(why);
    const p = h.parsed;
    const jobId = p.ok ? p.batch.jobId : p.jobId;
    const role = p.ok ? p.batch.role : p.role;
    const attempts = h.claim?.attempt ?? p.prior + 1;
    const headers: Record<string, unknown> = { ...(h.msg.properties.headers ?? {}), id: h.id, reason, attempts, dead_at: Date.now(), source: h.queue };
    delete headers['x-death'];
    await this.#c.publish(`${this.#c.x}.dead`, this.#c.q, h.msg.content, { messageId: h.id, headers, persistent: true });
    if (jobId !== undefined && !this.#deletedJobs.has(jobId) && !this.#registry.deleted(jobId)) {
      await this.#declareResults(jobId);
      const key = this.#config.hmac_key;
      const mac = key ? { mac: signDead(key, { jobId, batchId: h.id, role: role ?? '', error }) } : {};
      await this.#c.publish('', this.#c.names.results(jobId), Buffer.alloc(0), { headers: { kind: 'dead', batch: h.id, reason, ...(role ? { role } : {}), ...mac } });
    }
    this.#ack(h);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#c.checkOpen();
    // A dead connection's deliveries are requeued by the broker; this process ends its own expired leases.
    await this.#sweep();
    const out = this.#reclaimed;
    this.#reclaimed = { requeued: [], deadLettered: [] };
    return out;
  }

  // --- results -------------------------------------------------------------------------------------

  async #ensureResultsConsumer(jobId: string): Promise<void> {
    let state = this.#jobResults.get(jobId);
    if (!state) this.#jobResults.set(jobId, (state = { entries: [] }));
    if (state.consumer && state.consumer.gen === this.#c.connGen && this.#results?.gen === this.#c.connGen) return;
    if (!this.#results || this.#results.gen !== this.#c.connGen) {
      const r = await this.#c.channel(Math.max(100, this.#config.prefetch_count ?? 10), 'results consumer');
      r.ch.on('close', () => {
        if (this.#results === r) this.#results = undefined;
      });
      this.#results = r;
    }
    const { ch } = this.#results;
    await this.#declareResults(jobId);
    const s = state;
    const { consumerTag } = await ch.consume(
      this.#c.names.results(jobId),
      (msg) => {
        if (!msg) return;
        try {
          const entry = parseResultMessage(jobId, msg);
          s.entries.push(entry);
          this.#unanswered.answered(jobId, entry.batchId);
        } catch (err) {
          if (!(err instanceof MalformedRecord)) throw err;
          logMalformed(this.#logger, err, { job: jobId, queue: this.#c.q });
        }
        try {
          ch.ack(msg);
        } catch (err) {
          // The channel is gone (amqplib throws synchronously): the entry is kept here; the broker
          // redelivers it and the coordinator drops the duplicate.
          this.#logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: 'acknowledge a results entry', job: jobId, message: describe(err) });
        }
        this.#c.events.emit('result:' + jobId);
      },
      { noAck: false },
    );
    state.consumer = { tag: consumerTag, gen: this.#c.connGen };
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#c.checkOpen();
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    if (this.#deletedJobs.has(jobId)) return { cursor: String(after), entries: [] };
    try {
      await this.#c.run('read results', () => this.#ensureResultsConsumer(jobId));
    } catch (err) {
      // close() during the consumer's start: a pending read returns, as it does when close() wakes it.
      if (this.#c.closed) return { cursor: String(after), entries: [] };
      throw err;
    }
    const collect = () => this.#jobResults.get(jobId)?.entries.slice(after) ?? [];
    let found = collect();
    if (found.length === 0 && blockMs > 0 && !this.#c.closed) {
      await waitForAny(this.#c.events, ['result:' + jobId, 'closed', 'lost'], blockMs);
      found = collect();
    }
    return { cursor: String(after + found.length), entries: found };
  }

  // --- workers -------------------------------------------------------------------------------------

  heartbeat(info: WorkerInfo): Promise<void> {
    return this.#registry.heartbeat(info);
  }

  removeWorker(workerId: string): Promise<void> {
    return this.#registry.removeWorker(workerId);
  }

  activeWorkers(): Promise<WorkerInfo[]> {
    return this.#registry.activeWorkers();
  }

  // --- stats and dead letters ----------------------------------------------------------------------

  async stats(): Promise<RabbitQueueStats> {
    const n = this.#c.names;
    const [counts, workers] = await Promise.all([
      this.#c.run('stats', async () => {
        const c = await this.#admin.counts([...priorities.map((p) => n.priority[p]), n.dlq, ...DELAY_STEPS_MS.map((ms) => n.delay(ms))]);
        const pending = Object.fromEntries(priorities.map((p, i) => [p, c[i]])) as Record<Priority, number>;
        return { pending, dead: c[priorities.length], delayed: c.slice(priorities.length + 1).reduce((a, b) => a + b, 0) };
      }),
      this.activeWorkers(),
    ]);
    return {
      pending: counts.pending,
      inflight: [...this.#held.values()].filter((h) => h.gen === this.#c.gen && h.owner !== undefined).length,
      delayed: counts.delayed,
      dead: counts.dead,
      completed: this.#counters.completed,
      dispatched: this.#counters.dispatched,
      requeued: this.#counters.requeued,
      workers,
      rabbitmq: { queues: n.priority, dlq: n.dlq, note: STATS_NOTE },
    };
  }

  listDead(limit = 100): Promise<DeadEntry[]> {
    return this.#admin.listDead(limit);
  }

  retryDead(id?: string): Promise<number> {
    return this.#admin.retryDead(id);
  }

  async purgeDead(): Promise<number> {
    return this.#c.run('purge dead', async () => (await this.#c.admin!.purgeQueue(this.#c.names.dlq)).messageCount);
  }
}
