/**
 * Amazon SQS implementation of the queue `Backend` (@aws-sdk/client-sqs; S3 for large messages).
 *
 * Queues (N = the name of `queue_url`, or `queue_name` / `queue`, created when missing):
 *   N          batches (a standard queue; FIFO queues are not supported). A batch is a message: body =
 *              the batch id; attributes id, job, role, priority, mac, attempts_before, and the codec
 *              frame as the Binary attribute `payload` — or, over 256 KiB, `s3_key` + `sha256` of the
 *              frame stored in `s3_bucket`.
 *   N-dlq      dead letters (or the queue N's RedrivePolicy names), with reason, dead_at, attempts.
 *              N, when created here, gets a RedrivePolicy to it with maxReceiveCount =
 *              max_requeue_attempts + 2: a backstop for messages nobody could dead-letter with a reason.
 *   N-r-<h>    one per job (h = a hash of the job id): results and dead entries, read and deleted by
 *              the coordinator; deleted with the job.
 *   N-j-<h>    one per job: its manifest, read without deleting (VisibilityTimeout 0); deleted with the job.
 *   N-a-<h>    one per artifact (h = its sha256, shortened): the module, read the same way.
 *   N-workers  the worker registry, as tags of this queue (one tag per worker; SQS allows 50).
 *
 * Delivery:
 *   - A claim is a ReceiveMessage; its lease is the visibility timeout (`visibility_timeout`, default
 *     `lease_seconds`, whole seconds), renewed with ChangeMessageVisibilityBatch while the batch runs.
 *     A lease that was not renewed in time is reported lost; SQS makes the message visible again on its
 *     own, so `reclaimExpired` has nothing to do and `circuit_breaker_threshold` does not apply.
 *   - A message is deleted (DeleteMessageBatch) only after its results were sent.
 *   - attempt = attempts_before + ApproximateReceiveCount, so redeliveries after a crash count; a
 *     message received past max_requeue_attempts + 1 attempts is dead-lettered with the reason.
 *     A counted retry makes the message visible again after its delay (ChangeMessageVisibility).
 *     A hand-back (drain) is claimed first by this process; `close()` sends such hand-backs back as
 *     new messages with attempts_before set so that the hand-back is not counted.
 *   - Standard queues do not keep order: there is no FIFO, and priorities are not honoured (every
 *     batch is in N); results may arrive in any order (the coordinator does not need order).
 *   - Enqueue is idempotent within the coordinator's process: a batch id it enqueued and has not heard
 *     back of is not sent again (a retried enqueue after a partial SendMessageBatch failure adds
 *     nothing). A send that timed out after SQS took it can still leave a second copy; workers and the
 *     coordinator drop the duplicate.
 *   - `withdrawJob` deletes the job's results and manifest queues. A message cannot be taken back by
 *     anyone but its receiver, so workers check, at claim and at each renewal (at most every few
 *     seconds per job), that the job's results queue still exists, and delete the batches of a job
 *     that is gone without running them.
 *   - No `missingBatches`: SQS cannot be asked whether it holds a message id; it keeps messages for
 *     their retention period (result_ttl_seconds here, at most 14 days).
 *
 * Idle workers long-poll (`long_polling_seconds`) in `waitForWork`. `stats()`: pending and dead are
 * SQS's approximate counts (pending all under `normal`); in-flight, delayed, dispatched, completed and
 * requeued count this process only. Clock: `now()` is this host's Date.now(), so hosts need
 * synchronised clocks. Credentials come from `aws_access_key_id` / `aws_secret_access_key` or the AWS
 * default chain (environment, profile, instance or task role); they are never logged.
 */
import { ChangeMessageVisibilityCommand, DeleteQueueCommand, SendMessageBatchCommand, SendMessageCommand, type Message, type MessageAttributeValue } from '@aws-sdk/client-sqs';
import { MetaguardError, toWireError, wireError, type WireError } from '../../errors.js';
import type { Role } from '../../core/protocol.js';
import type { Logger } from '../../observe/log.js';
import type { QueueConfig } from '../../options/queue.js';
import { signDead, signResults } from '../messages.js';
import { parseResultEntry, Unanswered } from '../read-back.js';
import { isRecordId, logMalformed, MalformedRecord, storedWireError } from '../records.js';
import { decideLost, decideRelease } from '../release.js';
import { waitForAny } from '../../util/wait.js';
import { priorities, type Backend, type BatchMessage, type Claim, type ClaimedBatch, type DeadEntry, type JobManifest, type Priority, type QueueStats, type ReclaimOutcome, type ReleaseOptions, type ResultEntry, type WorkerInfo } from '../types.js';
import { attr, attrBytes, describe, notFound, num, SqsClientHost, SQS_MAX_MESSAGE_BYTES, str, toBuffer, type SqsNames } from './client.js';
import { SqsDeadLetters } from './dead-letters.js';
import { SqsRegistry } from './registry.js';

export { regionOfQueueUrl, SQS_MAX_MESSAGE_BYTES } from './client.js';

const roleSet = new Set<string>(['baseline', 'candidate']);
/** How long a worker trusts that a job still exists before asking SQS again. */
const JOB_CHECK_MS = 5000;

export interface SqsQueueStats extends QueueStats {
  sqs: { queueUrl: string; dlqUrl: string; note: string };
}

export interface SqsBackendOptions {
  /** Receives `malformed_record` warnings for records read back that fail their schema. */
  logger?: Logger;
}

const STATS_NOTE = 'pending and dead are SQS approximate counts (pending under normal: SQS has no priorities); in-flight, delayed, dispatched, completed and requeued count this process only';

type Parsed =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt' | 'payload'>; attemptsBefore: number }
  | { ok: false; error: WireError; jobId?: string; role?: Role; attemptsBefore: number };

interface Held {
  id: string;
  message: Message;
  receipts: string[];
  owner?: string;
  /** Local clock of the lease's end. */
  deadline: number;
  parsed: Parsed;
  claim?: ClaimedBatch;
  receiveCount: number;
}

/** A batch message's attributes, checked: a batch, or why it is not one (to dead-letter). */
function parseBatch(m: Message, id: string): Parsed {
  const raw = attr(m, 'attempts_before') ?? '0';
  const countable = /^\d{1,7}$/.test(raw);
  const attemptsBefore = countable ? Number(raw) : 0;
  const jobId = attr(m, 'job');
  const role = attr(m, 'role');
  const info = { ...(isRecordId(jobId) ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
  if (!m.MessageAttributes?.payload?.BinaryValue && !attr(m, 's3_key')) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no payload'), attemptsBefore, ...info };
  if (!jobId) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no job'), attemptsBefore, ...info };
  if (!isRecordId(jobId)) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: job is not an id'), attemptsBefore, ...info };
  if (!role || !roleSet.has(role)) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: bad role'), attemptsBefore, ...info };
  if (!countable) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: attempts is not a count'), attemptsBefore, ...info };
  const mac = attr(m, 'mac');
  const p = attr(m, 'priority');
  const priority = p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
  return { ok: true, batch: { id, jobId, role: role as Role, priority, ...(mac ? { mac } : {}) }, attemptsBefore };
}

export class SqsBackend implements Backend {
  readonly kind = 'sqs';
  /**
   * What this backend promises beyond the common contract (src/queue/types.ts): a standard queue (no
   * priorities, no order), leases ended by SQS itself (visibility timeouts), no way to ask whether a
   * message exists.
   */
  readonly capabilities = {
    queue: { leases: false, circuitBreaker: false, strictPriority: false, weightedPriority: false, fifo: false, idempotentEnqueue: true, lostBatchDetection: false, wakeOnWork: true },
    admin: { perPriorityStats: false, pendingExcludesClaimed: true, delayedStats: true, withdraw: true, preflight: false, progress: false, priorityCounts: false, benchRecords: false },
  };
  readonly #config: QueueConfig;
  readonly #logger: Logger | undefined;
  readonly #c: SqsClientHost;
  readonly #registry: SqsRegistry;
  readonly #dead: SqsDeadLetters;
  #closing: Promise<void> | undefined;

  readonly #held = new Map<string, Held>();
  #returned: Held[] = [];
  /** Messages received by waitForWork, not yet claimed. */
  #stash: Message[] = [];
  readonly #delayed = new Map<string, number>();
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };
  readonly #jobResults = new Map<string, ResultEntry[]>();
  readonly #deletedJobs = new Set<string>();
  /** Jobs whose results queue was seen to exist, and when (local clock, ms). */
  readonly #jobSeen = new Map<string, number>();
  readonly #unanswered = new Unanswered();

  constructor(config: QueueConfig, options: SqsBackendOptions = {}) {
    this.#config = config;
    this.#logger = options.logger;
    this.#c = new SqsClientHost(config, options.logger);
    this.#registry = new SqsRegistry(this.#c, config);
    this.#dead = new SqsDeadLetters(this.#c);
  }

  /** Queue names (tests, tools). */
  names(): SqsNames {
    return this.#c.names;
  }

  get queueUrl(): string | undefined {
    return this.#c.mainUrl;
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  async connect(): Promise<void> {
    await this.#c.run('connect', async () => {});
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    // Hand-backs and stashed messages go back without counting an attempt: sent again as new messages
    // with attempts_before set, the received copies deleted.
    const back = this.#returned.filter((x) => x.parsed.ok);
    this.#returned = [];
    const stash = this.#stash;
    this.#stash = [];
    const url = this.#c.mainUrl;
    if (url && (back.length || stash.length)) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          (async () => {
            for (const x of back) await this.#resend(url, x.message, x.claim ? x.claim.attempt - 1 : x.parsed.attemptsBefore + x.receiveCount - 1, x.receipts);
            for (const m of stash) {
              const rc = Number(m.Attributes?.ApproximateReceiveCount ?? 1);
              await this.#resend(url, m, Math.max(0, Number(attr(m, 'attempts_before') ?? 0) || 0) + rc - 1, [m.ReceiptHandle!]);
            }
          })(),
          new Promise((r) => (timer = setTimeout(r, 5000))),
        ]);
      } catch (err) {
        // They become visible again when their visibility timeout ends (counted as an attempt).
        this.#logger?.warn('backend_error', { code: 'MG_ERR_BACKEND', during: 'hand back on close', batches: back.length + stash.length, message: describe(err) });
      } finally {
        clearTimeout(timer);
      }
    }
    this.#held.clear();
    this.#c.destroy();
  }

  async #resend(url: string, m: Message, attemptsBefore: number, receipts: string[]): Promise<void> {
    const attrs = { ...(m.MessageAttributes ?? {}), attempts_before: num(Math.max(0, attemptsBefore)) };
    await this.#c.send(new SendMessageCommand({ QueueUrl: url, MessageBody: m.Body || 'batch', MessageAttributes: attrs }));
    await this.#c.deleteAll(url, receipts);
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  putArtifact(sha: string, bytes: Uint8Array): Promise<void> {
    return this.#registry.putArtifact(sha, bytes);
  }

  getArtifact(sha: string): Promise<Uint8Array | null> {
    return this.#registry.getArtifact(sha);
  }

  async putJob(manifest: JobManifest): Promise<void> {
    this.#deletedJobs.delete(manifest.jobId);
    await this.#c.run('put job', () => this.#c.createQueue(this.#c.names.results(manifest.jobId), { MessageRetentionPeriod: String(this.#c.retention()) }));
    await this.#registry.putJob(manifest);
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    if (this.#deletedJobs.has(jobId)) return null;
    return this.#registry.getJob(jobId);
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#forgetJob(jobId);
    this.#jobResults.delete(jobId);
    this.#unanswered.dropJob(jobId);
    await this.#c.run('delete job', async () => {
      for (const name of [this.#c.names.results(jobId), this.#c.names.job(jobId)]) {
        const url = await this.#c.urlOf(name);
        this.#c.forget(name);
        if (url) await this.#c.send(new DeleteQueueCommand({ QueueUrl: url })).catch((err) => (notFound(err) ? undefined : Promise.reject(err)));
      }
    });
  }

  #forgetJob(jobId: string): void {
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    this.#jobSeen.delete(jobId);
    this.#registry.forgetJob(jobId);
  }

  /**
   * Deletes the job's queues; workers drop its batches when they see its results queue gone. Returns
   * how many of the job's batches this process had enqueued and not heard back of: those will not run.
   */
  async withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number> {
    const open = new Set(this.#unanswered.dropJob(jobId));
    const removed = batchIds === undefined ? open.size : batchIds.filter((id) => open.has(id)).length;
    await this.deleteJob(jobId);
    for (const x of [...this.#held.values()]) if (x.claim?.jobId === jobId) await this.#c.run('withdraw job', () => this.#drop(x));
    return removed;
  }

  /** False once the job's results queue is gone (deleted or withdrawn); asks SQS at most every JOB_CHECK_MS. */
  async #jobAlive(jobId: string | undefined): Promise<boolean> {
    if (jobId === undefined) return true;
    if (this.#deletedJobs.has(jobId)) return false;
    const seen = this.#jobSeen.get(jobId);
    if (seen !== undefined && Date.now() - seen < JOB_CHECK_MS) return true;
    const url = await this.#c.urlOf(this.#c.names.results(jobId), true);
    if (!url) {
      this.#forgetJob(jobId);
      return false;
    }
    this.#jobSeen.set(jobId, Date.now());
    if (this.#jobSeen.size > 1000) this.#jobSeen.delete(this.#jobSeen.keys().next().value!);
    return true;
  }

  /** Deletes a batch of a withdrawn job without running it: nobody wants its results. */
  async #drop(x: Held): Promise<void> {
    this.#held.delete(x.id);
    this.#logger?.log('debug', 'job_withdrawn', { batch: x.id, message: 'dropping a batch of a withdrawn job' });
    await this.#c.deleteAll(this.#c.mainUrl!, x.receipts);
  }

  // --- batches (coordinator side) ------------------------------------------------------------------

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    // Idempotent: what SQS took before a failure is not sent again by the retry.
    const fresh = new Map<string, BatchMessage>();
    for (const b of batches) if (!this.#unanswered.has(b.jobId, b.id)) fresh.set(b.id, b);
    if (fresh.size === 0) return;
    await this.#c.run('enqueue', async () => {
      const url = this.#c.mainUrl!;
      // A job's results queue exists before its first batch: workers never create one (a late
      // duplicate of a finished job's batch must not bring its deleted queue back).
      for (const jobId of new Set([...fresh.values()].map((b) => b.jobId))) await this.#c.createQueue(this.#c.names.results(jobId), { MessageRetentionPeriod: String(this.#c.retention()) });
      const list = [...fresh.values()];
      const entries = await Promise.all(
        list.map(async (b, i) => {
          const attrs: Record<string, MessageAttributeValue> = { id: str(b.id), job: str(b.jobId), role: str(b.role), priority: str(b.priority), attempts_before: num(0), ...(b.mac ? { mac: str(b.mac) } : {}) };
          return { Id: String(i), MessageBody: b.id, MessageAttributes: await this.#c.carry(`batch ${b.id}`, toBuffer(b.payload), attrs, b.id) };
        }),
      );
      // SendMessageBatch: up to 10 entries and 256 KiB in all.
      let chunk: typeof entries = [];
      let bytes = 0;
      const flush = async () => {
        if (!chunk.length) return;
        const r = await this.#c.send<{ Successful?: { Id?: string }[]; Failed?: { Id?: string; Message?: string }[] }>(new SendMessageBatchCommand({ QueueUrl: url, Entries: chunk }));
        for (const ok of r.Successful ?? []) {
          const b = list[Number(ok.Id)];
          if (b && !this.#unanswered.has(b.jobId, b.id)) {
            this.#unanswered.add(b.jobId, b.id);
            this.#counters.dispatched++;
          }
        }
        if (r.Failed?.length) throw new Error(`SendMessageBatch failed for ${r.Failed.length} of ${chunk.length}: ${r.Failed[0].Message ?? ''}`);
        chunk = [];
        bytes = 0;
      };
      for (const e of entries) {
        const size = attrBytes(e.MessageAttributes, e.MessageBody);
        if (chunk.length === 10 || bytes + size > SQS_MAX_MESSAGE_BYTES) await flush();
        chunk.push(e);
        bytes += size;
      }
      await flush();
    });
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  #leaseSeconds(leaseMs: number): number {
    return Math.max(1, Math.min(43_200, Math.ceil(leaseMs / 1000)));
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    const n = Math.min(1000, Math.floor(max));
    if (!(n >= 1)) return [];
    return this.#c.run('claim', async () => {
      const out: Claim[] = [];
      const lease = this.#leaseSeconds(leaseMs);
      while (out.length < n && this.#returned.length) {
        const x = this.#returned.shift()!;
        if (!(await this.#jobAlive(x.claim?.jobId))) {
          await this.#drop(x);
          continue;
        }
        x.owner = workerId;
        this.#held.set(x.id, x);
        out.push(x.claim ? { ok: true, batch: x.claim } : { ok: false, id: x.id, error: (x.parsed as { error: WireError }).error });
      }
      const received = this.#stash.splice(0, n - out.length);
      if (received.length) {
        // Stashed by waitForWork under its own lease: extend it to this claim's.
        await this.#c.changeVisibility(this.#c.mainUrl!, received.map((m) => m.ReceiptHandle!), lease);
      }
      while (out.length + received.length < n) {
        const got = await this.#c.receive(this.#c.mainUrl!, n - out.length - received.length, lease, 0);
        if (!got.length) break;
        received.push(...got);
        if (got.length < 10) break;
      }
      for (const m of received) {
        const claim = await this.#take(m, workerId, lease);
        if (claim) out.push(claim);
      }
      return out;
    });
  }

  async #take(m: Message, workerId: string, lease: number): Promise<Claim | undefined> {
    const named = attr(m, 'id') ?? m.Body;
    const id = isRecordId(named) ? named : `sqs:${m.MessageId}`;
    const receiveCount = Math.max(1, Number(m.Attributes?.ApproximateReceiveCount ?? 1) || 1);
    const rec: Held = { id, message: m, receipts: [m.ReceiptHandle!], deadline: Date.now() + lease * 1000, parsed: parseBatch(m, id), receiveCount };
    const attempt = rec.parsed.attemptsBefore + receiveCount;
    if (!(await this.#jobAlive(rec.parsed.ok ? rec.parsed.batch.jobId : undefined))) {
      await this.#drop(rec);
      return undefined;
    }
    if (receiveCount > 1) {
      // Received again after a lease ran out (a worker died or stalled): past the limit, it is dead.
      const decision = decideLost(this.#config, attempt - 1, 'lease expired');
      if (decision.action === 'dead') {
        await this.#deadLetterRec(rec, decision.error);
        return undefined;
      }
    }
    const known = this.#held.get(id);
    if (known) {
      // The same batch id received again while it runs here (enqueued twice, or its lease ran out
      // meanwhile): the claim already held answers both, and holds the new lease.
      known.receipts.push(m.ReceiptHandle!);
      known.deadline = rec.deadline;
      return undefined;
    }
    rec.owner = workerId;
    this.#held.set(id, rec);
    this.#delayed.delete(id);
    if (!rec.parsed.ok) return { ok: false, id, error: rec.parsed.error };
    let payload: Buffer | undefined;
    try {
      payload = await this.#c.bytesOf(m);
    } catch (err) {
      return { ok: false, id, error: { ...toWireError(err, 'MG_ERR_BACKEND'), message: describe(err) } };
    }
    if (!payload) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no payload') };
    rec.claim = { ...rec.parsed.batch, payload, attempt };
    return { ok: true, batch: rec.claim };
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    this.#c.checkOpen();
    if (this.#stash.length || this.#returned.length) return;
    const wait = Math.min(this.#config.long_polling_seconds ?? 20, Math.floor(timeoutMs / 1000));
    try {
      await this.#c.run('wait for work', async () => {
        if (wait <= 0) {
          await waitForAny(this.#c.events, ['closed'], timeoutMs);
          return;
        }
        const got = await this.#c.receive(this.#c.mainUrl!, 1, this.#leaseSeconds(this.#config.lease_seconds * 1000), wait);
        this.#stash.push(...got);
      });
    } catch (err) {
      if (this.#c.closed) return;
      throw err;
    }
  }

  #mine(workerId: string, id: string): Held | undefined {
    const x = this.#held.get(id);
    return x && x.owner === workerId ? x : undefined;
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const now = Date.now();
    const lost: string[] = [];
    const renew: Held[] = [];
    for (const id of ids) {
      const x = this.#mine(workerId, id);
      // A lease that ran out may already be someone else's: SQS made the message visible again.
      if (!x || x.deadline <= now) lost.push(id);
      else if (!(await this.#c.run('renew leases', () => this.#jobAlive(x.claim?.jobId)))) {
        await this.#c.run('renew leases', () => this.#drop(x));
        lost.push(id);
      } else renew.push(x);
    }
    if (renew.length || this.#returned.length) {
      const lease = this.#leaseSeconds(leaseMs);
      const all = [...renew, ...this.#returned];
      const failed = await this.#c.run('renew leases', () => this.#c.changeVisibility(this.#c.mainUrl!, all.flatMap((x) => x.receipts), lease));
      for (const x of all) {
        if (x.receipts.some((r) => failed.has(r))) {
          if (renew.includes(x)) lost.push(x.id);
        } else x.deadline = now + lease * 1000;
      }
    }
    return lost;
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    // Results first; the batch is deleted only once they were sent.
    let gone = false;
    await this.#c.run('complete batch', async () => {
      // No results queue: the job is finished (deleted), withdrawn or expired, and nobody reads these results.
      const url = this.#deletedJobs.has(batch.jobId) ? undefined : await this.#c.urlOf(this.#c.names.results(batch.jobId));
      if (!url) {
        gone = true;
        return;
      }
      const key = this.#config.hmac_key;
      const mac: Record<string, MessageAttributeValue> = key ? { mac: str(signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results)) } : {};
      const attrs = await this.#c.carry(`results of batch ${batch.id}`, toBuffer(results), { kind: str('results'), batch: str(batch.id), role: str(batch.role), worker: str(workerId), ...mac }, batch.id);
      try {
        await this.#c.send(new SendMessageCommand({ QueueUrl: url, MessageBody: batch.id, MessageAttributes: attrs }));
      } catch (err) {
        if (!notFound(err)) throw err;
        gone = true;
        this.#c.forget(this.#c.names.results(batch.jobId));
      }
    });
    const x = this.#mine(workerId, batch.id);
    if (!x) return false;
    this.#held.delete(batch.id);
    const expired = x.deadline <= Date.now();
    // Deleted even after its lease ran out: its results are in, and a redelivery would only be dropped.
    await this.#c.run('complete batch', () => this.#c.deleteAll(this.#c.mainUrl!, x.receipts));
    if (expired || gone) return false;
    this.#counters.completed++;
    return true;
  }

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    this.#c.checkOpen();
    const x = this.#mine(workerId, id);
    if (!x) return;
    const decision = decideRelease(this.#config, x.parsed.ok ? x.claim?.attempt : undefined, options);
    if (decision.action === 'dead') return this.#c.run('release batch', () => this.#deadLetterRec(x, decision.error));
    if (decision.action === 'hand-back') {
      // First in line for this process's next claim (its lease renewed meanwhile).
      this.#held.delete(id);
      delete x.owner;
      this.#returned.unshift(x);
      return;
    }
    const seconds = Math.max(0, Math.min(43_200, Math.ceil(decision.delayMs / 1000)));
    // Visible again after the delay; the next receive counts the attempt (ApproximateReceiveCount).
    await this.#c.run('release batch', () => this.#c.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#c.mainUrl!, ReceiptHandle: x.receipts[0], VisibilityTimeout: seconds })));
    if (x.receipts.length > 1) await this.#c.run('release batch', () => this.#c.deleteAll(this.#c.mainUrl!, x.receipts.slice(1)));
    this.#held.delete(id);
    if (seconds > 0) this.#delayed.set(id, Date.now() + seconds * 1000);
    this.#counters.requeued++;
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    this.#c.checkOpen();
    const x = this.#mine(workerId, id);
    if (!x) return;
    await this.#c.run('dead-letter', () => this.#deadLetterRec(x, error));
  }

  async #deadLetterRec(x: Held, why: WireError): Promise<void> {
    const { reason, error } = storedWireError(why);
    const p = x.parsed;
    const jobId = p.ok ? p.batch.jobId : p.jobId;
    const role = p.ok ? p.batch.role : p.role;
    const attempts = x.claim?.attempt ?? p.attemptsBefore + x.receiveCount;
    const m = x.message;
    const attrs: Record<string, MessageAttributeValue> = { ...(m.MessageAttributes ?? {}), id: str(x.id), reason: str(reason), attempts: num(attempts), dead_at: num(Date.now()) };
    // At most 10 attributes: drop what a dead letter does not need.
    delete attrs.attempts_before;
    delete attrs.kind;
    while (Object.keys(attrs).length > 10) delete attrs[Object.keys(attrs).find((k) => !['id', 'reason', 'attempts', 'dead_at', 'payload', 's3_key', 'sha256', 'job', 'role', 'priority'].includes(k)) ?? 'mac'];
    await this.#c.send(new SendMessageCommand({ QueueUrl: this.#c.dlqUrl!, MessageBody: m.Body || x.id, MessageAttributes: attrs }));
    const url = jobId !== undefined && !this.#deletedJobs.has(jobId) ? await this.#c.urlOf(this.#c.names.results(jobId)) : undefined;
    if (url) {
      const key = this.#config.hmac_key;
      const mac: Record<string, MessageAttributeValue> = key && jobId !== undefined ? { mac: str(signDead(key, { jobId, batchId: x.id, role: role ?? '', error })) } : {};
      await this.#c.send(new SendMessageCommand({ QueueUrl: url, MessageBody: x.id, MessageAttributes: { kind: str('dead'), batch: str(x.id), reason: str(reason), ...(role ? { role: str(role) } : {}), ...mac } })).catch((err) => {
        // The job finished (its results queue deleted) meanwhile: nobody is told, as nobody waits.
        if (!notFound(err)) throw err;
      });
    }
    await this.#c.deleteAll(this.#c.mainUrl!, x.receipts);
    this.#held.delete(x.id);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#c.checkOpen();
    // SQS makes a message whose visibility timeout ran out visible again by itself.
    return { requeued: [], deadLettered: [] };
  }

  // --- results -------------------------------------------------------------------------------------

  /** A results-queue message, checked; undefined (logged) when it is not an entry of this job. */
  async #entryOf(jobId: string, m: Message): Promise<ResultEntry | undefined> {
    const record = `results queue entry of job ${jobId}`;
    try {
      const kind = attr(m, 'kind');
      let frame: Buffer | undefined;
      if (kind === 'results') {
        try {
          frame = await this.#c.bytesOf(m);
        } catch (err) {
          throw new MalformedRecord(record, 'payload', `cannot be read: ${describe(err)}`);
        }
      }
      const raw = { kind, batch: attr(m, 'batch'), role: attr(m, 'role') ?? '', worker: attr(m, 'worker') ?? '', reason: attr(m, 'reason'), mac: attr(m, 'mac'), frame };
      return parseResultEntry(record, Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)));
    } catch (err) {
      if (!(err instanceof MalformedRecord)) throw err;
      logMalformed(this.#logger, err, { job: jobId, queue: this.#c.name });
      return undefined;
    }
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#c.checkOpen();
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    if (this.#deletedJobs.has(jobId)) return { cursor: String(after), entries: [] };
    let entries = this.#jobResults.get(jobId);
    if (!entries) this.#jobResults.set(jobId, (entries = []));
    const list = entries;
    const until = Date.now() + Math.max(0, blockMs);
    try {
      await this.#c.run('read results', async () => {
        const url = await this.#c.createQueue(this.#c.names.results(jobId), { MessageRetentionPeriod: String(this.#c.retention()) });
        for (;;) {
          const left = until - Date.now();
          const got = await this.#c.receive(url, 10, 30, Math.max(0, Math.min(20, Math.floor(left / 1000))));
          for (const m of got) {
            const entry = await this.#entryOf(jobId, m);
            if (!entry) continue;
            list.push(entry);
            this.#unanswered.answered(jobId, entry.batchId);
          }
          if (got.length) await this.#c.deleteAll(url, got.map((m) => m.ReceiptHandle!));
          if (list.length > after || this.#c.closed) return;
          const rest = until - Date.now();
          if (rest <= 0) return;
          if (rest < 1000) await waitForAny(this.#c.events, ['closed'], Math.min(rest, 100));
        }
      });
    } catch (err) {
      if (this.#c.closed) return { cursor: String(after), entries: [] };
      throw err;
    }
    const found = list.slice(after);
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

  async stats(): Promise<SqsQueueStats> {
    const [main, dead] = await this.#c.run('stats', () => Promise.all([this.#dead.counts(this.#c.mainUrl!), this.#dead.counts(this.#c.dlqUrl!)]));
    const now = Date.now();
    for (const [id, due] of this.#delayed) if (due <= now) this.#delayed.delete(id);
    const workers = await this.activeWorkers();
    const pending = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<Priority, number>;
    pending.normal = main.visible;
    return {
      pending,
      inflight: this.#held.size,
      delayed: this.#delayed.size,
      dead: dead.visible + dead.invisible,
      completed: this.#counters.completed,
      dispatched: this.#counters.dispatched,
      requeued: this.#counters.requeued,
      workers,
      sqs: { queueUrl: this.#c.mainUrl!, dlqUrl: this.#c.dlqUrl!, note: STATS_NOTE },
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
