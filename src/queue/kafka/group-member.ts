/**
 * The worker side of the Kafka backend: a member of the worker consumer group, the records of the
 * partitions it owns from fetch to commit, and the claims made from them (see backend.ts's header
 * for how delivery maps onto the group). Offset bookkeeping is the `CommitTracker`'s.
 *
 * Duplicates: a record whose batch id and attempt are those of a record this member holds unfinished
 * (an enqueue retried after a failure that had in fact been written) is skipped and committed past,
 * never claimed twice; a retry copy (attempt + 1) or a `dlq retry` (after the first finished) is not a
 * duplicate. The coordinator drops duplicate results in any case; this keeps the work from doubling.
 */
import type { Consumer, KafkaMessage } from 'kafkajs';
import { MetaguardError, type WireError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { signDead, signResults } from '../messages.js';
import { pickPriority } from '../priority.js';
import { storedWireError, withDetail } from '../records.js';
import type { BatchMessage, Claim, ClaimedBatch, Priority, ReleaseOptions } from '../types.js';
import type { KafkaClient } from './client.js';
import { CommitTracker } from './commit-tracker.js';
import { copyHeaders, describe, parseBatchRecord, recordName, toBuffer, withTimeout, type ParsedBatch } from './wire.js';

export type KafkaBackendEvent =
  | { type: 'rebalancing' }
  | { type: 'assigned'; partitions: number[]; memberId: string }
  | { type: 'revoked'; partitions: number[]; lostClaims: string[] }
  | { type: 'commit_failed'; message: string }
  | { type: 'consumer_failed'; message: string }
  | { type: 'duplicate_skipped'; id: string; partition: number; offset: string };

interface Rec {
  partition: number;
  offset: bigint;
  message: KafkaMessage;
  parsed: ParsedBatch;
  /** The claim id: the batch id, or a synthetic id for a record without one. */
  id: string;
  /** Batch id and attempt: two live records with the same key are one batch enqueued twice. */
  dedupeKey: string | undefined;
  priority: Priority;
  notBefore: number;
  state: 'buffered' | 'claimed' | 'done';
  owner?: string;
  claim?: ClaimedBatch;
  /** Its partition was revoked while it was claimed. */
  lost?: boolean;
}

export interface GroupMemberContext {
  client: KafkaClient;
  config: QueueConfig;
  prefetch: number;
  /** True when the job was deleted (finished or withdrawn): its records are skipped. */
  isTombstoned(jobId: string): boolean;
  /** Workers read manifests and artifacts: started alongside the group join. */
  startJobsView(): void;
  emit(event: KafkaBackendEvent): void;
}

export class GroupMember {
  readonly #ctx: GroupMemberContext;
  #consumer: Consumer | undefined;
  #starting: Promise<void> | undefined;
  #error: Error | undefined;
  #assigned = new Set<number>();
  /** Set while the group rebalances: no new claims from partitions that may be moving. */
  #rebalancingSince: number | undefined;
  readonly #tracker = new CommitTracker<Rec>();
  #buffer: Rec[] = [];
  readonly #paused = new Set<number>();
  readonly #held = new Map<string, Rec>();
  readonly #live = new Map<string, Rec>();
  #flushing: Promise<boolean> | undefined;
  #flushAgain = false;
  readonly counters = { completed: 0, requeued: 0, duplicates: 0 };

  constructor(ctx: GroupMemberContext) {
    this.#ctx = ctx;
  }

  get started(): boolean {
    return this.#consumer !== undefined;
  }

  /** Claims held (not lost), and buffered records still waiting out a retry delay. */
  inflight(): number {
    return [...this.#held.values()].filter((r) => !r.lost).length;
  }

  delayed(now: number): number {
    return this.#buffer.filter((r) => r.notBefore > now).length;
  }

  // --- the group member ----------------------------------------------------------------------------

  /** Starts the group member in the background: claims return [] until it has joined and fetched. */
  #ensureStarted(): void {
    if (this.#starting) return;
    this.#starting = this.#start().catch((err: unknown) => {
      // Reported by the next claim (which starts a new member): that is this failure's handler.
      if (!this.#ctx.client.closed) this.#error = err instanceof Error ? err : new Error(String(err));
    });
  }

  async #start(): Promise<void> {
    const { client } = this.#ctx;
    await client.ensureConnected();
    this.#ctx.startJobsView();
    const topic = client.topics.batches;
    const consumer = client.kafka.consumer({ groupId: client.group, allowAutoTopicCreation: true, ...client.consumerConfig });
    this.#consumer = consumer;
    this.#error = undefined;
    consumer.on(consumer.events.REBALANCING, () => {
      if (this.#consumer !== consumer) return;
      this.#rebalancingSince = Date.now();
      this.#ctx.emit({ type: 'rebalancing' });
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
      // kafkajs keeps a partition paused across assignments; this member forgets the pause of a
      // revoked partition, so a partition coming back must not stay paused there.
      const stale = partitions.filter((p) => !this.#paused.has(p));
      if (stale.length) consumer.resume([{ topic, partitions: stale }]);
      this.#ctx.emit({ type: 'assigned', partitions: [...partitions].sort((a, b) => a - b), memberId });
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.#consumer !== consumer || e.payload.restart) return;
      // kafkajs gave up on this consumer: everything it owned is gone. The next claim starts a new one.
      this.#error = e.payload.error;
      this.#onAssignment(new Set());
      this.#ctx.emit({ type: 'consumer_failed', message: describe(e.payload.error) });
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset }) => {
        if (this.#consumer !== consumer || client.closed) return;
        const p = batch.partition;
        if (!this.#assigned.has(p)) return;
        for (const m of batch.messages) {
          const off = BigInt(m.offset);
          if (this.#tracker.received(p, off)) {
            // Refetched after a rejoin (kafkajs restarts from the committed offset): already ours.
            resolveOffset(m.offset);
            continue;
          }
          if (this.#buffer.length >= this.#ctx.prefetch) {
            // Backpressure: stop fetching this partition; the rest is refetched after resume().
            this.#paused.add(p);
            consumer.pause([{ topic, partitions: [p] }]);
            break;
          }
          this.#receive(topic, p, m);
          resolveOffset(m.offset);
        }
      },
    });
  }

  #receive(topic: string, p: number, m: KafkaMessage): void {
    const off = BigInt(m.offset);
    const parsed = parseBatchRecord(topic, p, m, this.#ctx.config.retry_max_ms + 60_000);
    const rec: Rec = {
      partition: p,
      offset: off,
      message: m,
      parsed,
      id: parsed.ok ? parsed.batch.id : parsed.id,
      dedupeKey: parsed.ok ? `${parsed.batch.id}#${parsed.attempts}` : undefined,
      priority: parsed.ok ? parsed.batch.priority : 'critical',
      notBefore: parsed.ok ? parsed.notBefore : 0,
      state: 'buffered',
    };
    this.#tracker.receive(p, off, rec);
    const twin = rec.dedupeKey === undefined ? undefined : this.#live.get(rec.dedupeKey);
    if (twin && twin.state !== 'done' && !twin.lost) {
      // The same batch enqueued twice: done at once, committed past, never claimed.
      rec.state = 'done';
      this.counters.duplicates++;
      this.#ctx.emit({ type: 'duplicate_skipped', id: rec.id, partition: p, offset: m.offset });
      if (this.#tracker.finish(p, off)) void this.#flushCommits();
      return;
    }
    if (rec.dedupeKey !== undefined) this.#live.set(rec.dedupeKey, rec);
    this.#buffer.push(rec);
  }

  /** A new assignment: partitions no longer ours lose their buffered records and claims. */
  #onAssignment(assigned: Set<number>): void {
    const revoked: number[] = [];
    const lostClaims: string[] = [];
    for (const { partition, records } of this.#tracker.revoke(assigned)) {
      for (const rec of records) {
        if (rec.dedupeKey !== undefined && this.#live.get(rec.dedupeKey) === rec) this.#live.delete(rec.dedupeKey);
        if (rec.state !== 'claimed') continue;
        rec.lost = true;
        lostClaims.push(rec.id);
      }
      revoked.push(partition);
    }
    if (revoked.length) this.#ctx.emit({ type: 'revoked', partitions: revoked, lostClaims });
    this.#buffer = this.#buffer.filter((r) => assigned.has(r.partition));
    for (const p of [...this.#paused]) if (!assigned.has(p)) this.#paused.delete(p);
    this.#assigned = assigned;
  }

  #resumeIfDrained(): void {
    if (this.#paused.size === 0 || !this.#consumer) return;
    if (this.#buffer.length > this.#ctx.prefetch / 2) return;
    const partitions = [...this.#paused];
    this.#paused.clear();
    this.#consumer.resume([{ topic: this.#ctx.client.topics.batches, partitions }]);
  }

  // --- claims --------------------------------------------------------------------------------------

  async claim(workerId: string, max: number): Promise<Claim[]> {
    const { client } = this.#ctx;
    if (this.#error) {
      // The group member failed to start, or kafkajs gave up on it: report once, start a new one next time.
      const err = this.#error;
      const old = this.#consumer;
      this.#consumer = undefined;
      this.#starting = undefined;
      this.#error = undefined;
      this.#onAssignment(new Set());
      if (old) await client.disconnect(old, 'the worker consumer failed', 10_000);
      throw new MetaguardError('MG_ERR_BACKEND', `kafka consumer of group ${client.group} failed (it is restarted on the next claim): ${describe(err)}`, { cause: err });
    }
    this.#ensureStarted();
    // During a rebalance (until the new assignment, at most a session timeout) records already here
    // may belong to another worker shortly: starting them would mostly be duplicate work.
    if (this.#rebalancingSince !== undefined && Date.now() - this.#rebalancingSince < client.consumerConfig.sessionTimeout) return [];
    const n = Math.floor(max);
    const claims: Claim[] = [];
    const now = Date.now();
    let advanced = false;
    while (claims.length < n) {
      const candidates = this.#buffer.filter((r) => r.notBefore <= now && !this.#held.has(r.id));
      const priority = pickPriority((p) => candidates.some((r) => r.priority === p), this.#ctx.config);
      if (!priority) break;
      const rec = candidates.find((r) => r.priority === priority)!;
      this.#buffer.splice(this.#buffer.indexOf(rec), 1);
      const parsed = rec.parsed;
      const jobId = parsed.ok ? parsed.batch.jobId : parsed.jobId;
      if (jobId !== undefined && this.#ctx.isTombstoned(jobId)) {
        // Its job has finished (the coordinator deleted it): an obsolete redelivery.
        rec.state = 'done';
        if (rec.dedupeKey !== undefined && this.#live.get(rec.dedupeKey) === rec) this.#live.delete(rec.dedupeKey);
        advanced = this.#tracker.finish(rec.partition, rec.offset) || advanced;
        continue;
      }
      rec.state = 'claimed';
      rec.owner = workerId;
      this.#held.set(rec.id, rec);
      if (parsed.ok) {
        rec.claim = { ...parsed.batch, attempt: parsed.attempts + 1 };
        claims.push({ ok: true, batch: rec.claim });
      } else {
        claims.push({ ok: false, id: rec.id, error: parsed.error });
      }
    }
    this.#resumeIfDrained();
    if (advanced) void this.#flushCommits();
    return claims;
  }

  /**
   * Commits every owned partition whose commit point moved. Single flight. Never rejects: a failure
   * (a rebalance in progress, the broker away) is reported (`commit_failed`, and `backend_error` with
   * its code) and retried by the next call — every finish, claim and lease renewal makes one.
   * Resolves true when everything due was committed.
   */
  #flushCommits(): Promise<boolean> {
    if (this.#flushing) {
      this.#flushAgain = true;
      return this.#flushing;
    }
    const flight: Promise<boolean> = this.#commitLoop()
      .then(
        () => true,
        (err: unknown) => {
          this.#ctx.emit({ type: 'commit_failed', message: describe(err) });
          this.#ctx.client.failed('commit offsets (retried on the next claim or lease renewal)', err);
          return false;
        },
      )
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
      const due = this.#tracker.due(this.#assigned);
      if (due.length === 0) return;
      await consumer.commitOffsets(due.map((t) => ({ topic: this.#ctx.client.topics.batches, partition: t.partition, offset: t.offset.toString() })));
      this.#tracker.committed(due);
    } while (this.#flushAgain);
  }

  #finish(rec: Rec): void {
    rec.state = 'done';
    if (rec.dedupeKey !== undefined && this.#live.get(rec.dedupeKey) === rec) this.#live.delete(rec.dedupeKey);
    if (rec.lost || !this.#tracker.owns(rec.partition, rec.offset, rec)) return;
    if (this.#tracker.finish(rec.partition, rec.offset)) void this.#flushCommits();
  }

  /** Commits what this member has finished (before a caller reads the group's offsets). */
  async settle(): Promise<void> {
    if (this.#consumer) await this.#flushCommits();
  }

  /** The worker's tick: retries commits that failed (during a rebalance, say). */
  tick(): void {
    if (this.#consumer) void this.#flushCommits();
  }

  renew(workerId: string, ids: string[]): string[] {
    const lost = ids.filter((id) => {
      const rec = this.#held.get(id);
      return !rec || rec.owner !== workerId || rec.lost === true;
    });
    this.tick();
    return lost;
  }

  async complete(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    const { client, config } = this.#ctx;
    // Results first (acknowledged by the brokers), offset after: never at-most-once.
    const key = config.hmac_key;
    const mac = key ? { mac: signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results) } : {};
    await client.send('complete batch', client.topics.results, [
      { key: batch.jobId, value: toBuffer(results), headers: { kind: 'results', batch: batch.id, role: batch.role, worker: workerId, ...mac } },
    ]);
    const rec = this.#held.get(batch.id);
    if (!rec || rec.owner !== workerId) return false;
    this.#held.delete(batch.id);
    if (rec.lost) return false;
    this.counters.completed++;
    this.#finish(rec);
    return true;
  }

  async release(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    const { client, config } = this.#ctx;
    const rec = this.#held.get(id);
    if (!rec || rec.owner !== workerId) return;
    if (rec.lost) {
      this.#held.delete(id);
      return;
    }
    if (!rec.parsed.ok || !rec.claim) {
      await this.#deadLetterRec(rec, options.error);
      return;
    }
    if (!options.countAttempt) {
      // Hand back: uncommitted, first in line here; the group hands it on if this worker leaves.
      this.#unclaim(rec);
      return;
    }
    const attempts = rec.claim.attempt;
    if (attempts >= config.max_requeue_attempts + 1) {
      await this.#deadLetterRec(rec, withDetail(options.error, `(gave up after ${attempts} attempts)`));
      return;
    }
    const m = rec.message;
    const headers = copyHeaders(m.headers);
    headers.attempt = String(attempts);
    headers.not_before = String(Date.now() + Math.max(0, Math.ceil(options.delayMs)));
    headers.retry_reason = storedWireError(options.error).reason;
    try {
      const [where] = await client.send('release batch', client.topics.batches, [{ key: m.key ?? rec.id, value: m.value, headers }]);
      // Tell the coordinator where the batch went before the original is committed: its check for
      // lost batches (missingBatches) follows the copy instead of taking the batch for finished.
      if (where) {
        await client.send('release batch', client.topics.results, [
          { key: rec.claim.jobId, value: null, headers: { kind: 'moved', batch: rec.id, partition: String(where.partition), offset: String(where.baseOffset) } },
        ]);
      }
    } catch (err) {
      this.#unclaim(rec);
      throw err;
    }
    this.#held.delete(id);
    this.counters.requeued++;
    this.#finish(rec);
  }

  /** Puts a claimed record back in line here (uncommitted), when handing it on failed. */
  #unclaim(rec: Rec): void {
    if (this.#held.get(rec.id) === rec) this.#held.delete(rec.id);
    if (rec.lost || this.#ctx.client.closed || !this.#tracker.owns(rec.partition, rec.offset, rec)) return;
    rec.state = 'buffered';
    delete rec.owner;
    delete rec.claim;
    this.#buffer.unshift(rec);
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    const rec = this.#held.get(id);
    if (!rec || rec.owner !== workerId) return;
    if (rec.lost) {
      // Its partition has a new owner, who will meet the same record.
      this.#held.delete(id);
      return;
    }
    await this.#deadLetterRec(rec, error);
  }

  async #deadLetterRec(rec: Rec, why: WireError): Promise<void> {
    const { reason, error } = storedWireError(why);
    const { client, config } = this.#ctx;
    const parsed = rec.parsed;
    const jobId = parsed.ok ? parsed.batch.jobId : parsed.jobId;
    const role = parsed.ok ? parsed.batch.role : parsed.role;
    if (jobId === undefined || !this.#ctx.isTombstoned(jobId)) {
      const attempts = rec.claim?.attempt ?? parsed.attempts + 1;
      const headers: Record<string, string> = {
        ...copyHeaders(rec.message.headers),
        id: rec.id,
        kind: 'dead',
        reason,
        attempts: String(attempts),
        dead_at: String(Date.now()),
        source: recordName(client.topics.batches, rec.partition, rec.offset),
      };
      try {
        await client.send('dead-letter', client.topics.dlq, [{ key: rec.id, value: rec.message.value, headers }]);
        if (jobId !== undefined) {
          const key = config.hmac_key;
          const mac = key ? { mac: signDead(key, { jobId, batchId: rec.id, role: role ?? '', error }) } : {};
          await client.send('dead-letter', client.topics.results, [
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

  /** Commits what is finished, then leaves the group (so the next owner redoes as little as possible). */
  async close(): Promise<void> {
    const { client } = this.#ctx;
    const consumer = this.#consumer;
    if (consumer) {
      const committed = await withTimeout(this.#flushCommits(), 5000, false);
      if (!committed) client.failed('commit offsets before leaving the group (the next owner redoes the uncommitted records)', new Error('not committed within 5 s or refused'), 'info');
      await client.disconnect(consumer, 'close', 10_000);
    }
    this.#buffer = [];
    this.#held.clear();
    this.#live.clear();
    this.#tracker.clear();
  }
}
