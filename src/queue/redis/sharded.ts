/**
 * Scale-out over a Redis Cluster (queue config `shards` > 1): one evaluation spreads its batches over
 * several queues, each on its own hash tag — so on its own slot, and with the tags chosen below, on
 * different masters — and workers consume from all of them. One queue is one slot is one master's
 * core; `shards` queues use up to `shards` cores.
 *
 * `ShardedBackend` is a `Backend` over `shards` Redis backends, so coordinators and workers use it
 * unchanged. Shard i is the queue `<queue>.<k>` where k is the smallest integer whose hash slot lies
 * in the i-th of `shards` equal slot ranges: a cluster created with slots split evenly over its
 * masters (what `redis-cli --cluster create` does) puts shard i on master i mod masters. Every process
 * with the same `queue` and `shards` computes the same names.
 *
 * Routing: batches are enqueued round-robin over the shards; a worker claims from the shards in turn
 * and remembers which shard each claimed id came from (renewals, completions, releases and dead
 * letters go back there). Job manifests, artifacts and worker heartbeats live on shard 0; each shard
 * has the job's result stream for the batches it carried, and the coordinator reads all of them with
 * a composite cursor (`c0,c1,…`). Stats, dead letters and reclaim sweeps cover every shard.
 */
import { createRequire } from 'node:module';
import { MetaguardError, type WireError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { RedisBackend, redisCapabilities } from './backend.js';
import { describe } from '../shared.js';
import type { Logger } from '../../observe/log.js';
import type { Backend, BackendNotice, BatchMessage, BenchRecord, Claim, DeadEntry, JobManifest, JobProgress, Priority, QueueStats, ReclaimOutcome, ReleaseOptions, ResultEntry, WorkerInfo } from '../types.js';

const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

const SLOTS = 16384;
/** A blocking read on N streams is N parallel reads; each waits at most this long so one busy shard is not held up by idle ones. */
const SHARD_BLOCK_MS = 20;
const MAX_TRIES = 100_000;

/** Queue name of shard `i` of `shards` (its hash slot lies in the i-th of `shards` equal slot ranges). */
export function shardQueueName(queue: string, i: number, shards: number): string {
  const lo = Math.floor((i * SLOTS) / shards);
  const hi = Math.floor(((i + 1) * SLOTS) / shards);
  for (let k = 0; k < MAX_TRIES; k++) {
    const name = `${queue}.${k}`;
    const slot = keySlot(name);
    if (slot >= lo && slot < hi) return name;
  }
  throw new MetaguardError('MG_ERR_INVALID_OPTION', `queue-config.shards: no shard name found for queue ${queue} shard ${i}`, { field: 'queue-config.shards' });
}

export class ShardedBackend implements Backend {
  readonly kind = 'redis';
  readonly capabilities = redisCapabilities;
  readonly shards: RedisBackend[];
  readonly #logger: Logger | undefined;
  /** Shards whose last waitForWork failed (logged once until one succeeds again). */
  readonly #waitFailing = new Set<number>();
  /** Shard of each id this process claimed and still holds. */
  readonly #claimedOn = new Map<string, number>();
  /** The open waitForWork of each shard. */
  readonly #waiting: (Promise<void> | undefined)[] = [];
  #enqueueTurn = 0;
  #claimTurn = 0;

  constructor(config: QueueConfig, options: { clientName?: string; logger?: Logger } = {}) {
    const n = config.shards;
    this.#logger = options.logger;
    this.shards = Array.from({ length: n }, (_, i) => {
      const queue = shardQueueName(config.queue, i, n);
      return new RedisBackend({ ...config, queue }, { clientName: `${options.clientName ?? `metaguard:${config.queue}`}:${i}`, ...(options.logger ? { logger: options.logger } : {}) });
    });
  }

  get #home(): RedisBackend {
    return this.shards[0];
  }

  #shardOf(id: string): RedisBackend | undefined {
    const i = this.#claimedOn.get(id);
    return i === undefined ? undefined : this.shards[i];
  }

  async connect(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.connect()));
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }

  now(): Promise<number> {
    return this.#home.now();
  }

  putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    return this.#home.putArtifact(sha256, bytes);
  }

  getArtifact(sha256: string): Promise<Uint8Array | null> {
    return this.#home.getArtifact(sha256);
  }

  putJob(manifest: JobManifest): Promise<void> {
    return this.#home.putJob(manifest);
  }

  getJob(jobId: string): Promise<JobManifest | null> {
    return this.#home.getJob(jobId);
  }

  async deleteJob(jobId: string): Promise<void> {
    await Promise.all(this.shards.map((s) => s.deleteJob(jobId)));
  }

  async withdrawJob(jobId: string, batchIds?: readonly string[]): Promise<number> {
    // Each shard removes the ids it carries (the others are not its job's batches there).
    const removed = await Promise.all(this.shards.map((s) => s.withdrawJob(jobId, batchIds)));
    return removed.reduce((a, b) => a + b, 0);
  }

  async enqueue(batches: BatchMessage[]): Promise<void> {
    const groups: BatchMessage[][] = this.shards.map(() => []);
    for (const b of batches) groups[this.#enqueueTurn++ % this.shards.length].push(b);
    await Promise.all(groups.map((g, i) => (g.length ? this.shards[i].enqueue(g) : undefined)));
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    // The first shard with new work ends the wait; the other waits end within timeoutMs on their own
    // and are joined, not duplicated, by the next call (each open wait holds a blocking connection).
    // A failed wait only ends the wait (logged once per outage): the claim that follows reports the fault.
    const waits = this.shards.map((s, i) =>
      (this.#waiting[i] ??= s
        .waitForWork(timeoutMs)
        .then(
          () => {
            this.#waitFailing.delete(i);
          },
          (err: unknown) => {
            if (this.#waitFailing.has(i)) return;
            this.#waitFailing.add(i);
            this.#logger?.warn('backend_error', { queue: s.queue, during: 'wait for work', code: (err as { code?: string })?.code ?? 'MG_ERR_BACKEND', message: describe(err) });
          },
        )
        .finally(() => {
          this.#waiting[i] = undefined;
        })),
    );
    await Promise.race(waits);
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    const out: Claim[] = [];
    const start = this.#claimTurn++ % this.shards.length;
    for (let k = 0; k < this.shards.length && out.length < max; k++) {
      const i = (start + k) % this.shards.length;
      const claims = await this.shards[i].claimBatches(workerId, max - out.length, leaseMs);
      for (const c of claims) {
        this.#claimedOn.set(c.ok ? c.batch.id : c.id, i);
        out.push(c);
      }
    }
    return out;
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    const groups = new Map<number, string[]>();
    const lost: string[] = [];
    for (const id of ids) {
      const i = this.#claimedOn.get(id);
      if (i === undefined) lost.push(id);
      else groups.set(i, [...(groups.get(i) ?? []), id]);
    }
    const results = await Promise.all([...groups].map(([i, g]) => this.shards[i].renewLeases(workerId, g, leaseMs)));
    return [...lost, ...results.flat()];
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    // A results part after the first (messages.ts encodeResultFrames) comes for a batch the first part
    // completed: it is published on the home shard, whose result stream is read like the others.
    const shard = this.#shardOf(batch.id) ?? this.#home;
    const owned = await shard.completeBatch(workerId, batch, results);
    this.#claimedOn.delete(batch.id);
    return owned;
  }

  async releaseBatch(workerId: string, id: string, options: ReleaseOptions): Promise<void> {
    const shard = this.#shardOf(id);
    if (!shard) return;
    await shard.releaseBatch(workerId, id, options);
    this.#claimedOn.delete(id);
  }

  async deadLetter(workerId: string, id: string, error: WireError): Promise<void> {
    const shard = this.#shardOf(id);
    if (!shard) return;
    await shard.deadLetter(workerId, id, error);
    this.#claimedOn.delete(id);
  }

  /** A batch is missing only when no shard has it (a resend may land on another shard than the first copy). */
  async missingBatches(ids: string[]): Promise<string[]> {
    let missing = ids;
    for (const shard of this.shards) {
      if (missing.length === 0) break;
      missing = await shard.missingBatches(missing);
    }
    return missing;
  }

  async preflight(): Promise<BackendNotice[]> {
    const all = (await Promise.all(this.shards.map((s) => s.preflight()))).flat();
    return [...new Map(all.map((n) => [n.message, n])).values()];
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    const all = await Promise.all(this.shards.map((s) => s.reclaimExpired()));
    return { requeued: all.flatMap((r) => r.requeued), deadLettered: all.flatMap((r) => r.deadLettered) };
  }

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    const cursors = cursor === '' || cursor === '0' ? this.shards.map(() => '0') : cursor.split(',');
    if (cursors.length !== this.shards.length) throw new MetaguardError('MG_ERR_BACKEND', `result cursor ${JSON.stringify(cursor)} does not have ${this.shards.length} parts`);
    // A plain read of every shard first: while results flow, no idle shard holds up a busy one.
    let reads = await Promise.all(this.shards.map((s, i) => s.readResults(jobId, cursors[i], 0)));
    if (blockMs > 0 && reads.every((r) => r.entries.length === 0)) {
      const block = Math.min(blockMs, SHARD_BLOCK_MS);
      reads = await Promise.all(this.shards.map((s, i) => s.readResults(jobId, reads[i].cursor, block)));
    }
    const next = reads.map((r) => r.cursor);
    // Nothing read yet from any shard: the start cursor, as a single queue would answer.
    return { cursor: next.every((c) => c === '0') ? '0' : next.join(','), entries: reads.flatMap((r) => r.entries) };
  }

  heartbeat(info: WorkerInfo): Promise<void> {
    return this.#home.heartbeat(info);
  }

  removeWorker(workerId: string): Promise<void> {
    return this.#home.removeWorker(workerId);
  }

  activeWorkers(): Promise<WorkerInfo[]> {
    return this.#home.activeWorkers();
  }

  async stats(): Promise<QueueStats> {
    const all = await Promise.all(this.shards.map((s) => s.stats()));
    const sum = (f: (s: QueueStats) => number) => all.reduce((t, s) => t + f(s), 0);
    return {
      pending: { critical: sum((s) => s.pending.critical), high: sum((s) => s.pending.high), normal: sum((s) => s.pending.normal), low: sum((s) => s.pending.low) },
      inflight: sum((s) => s.inflight),
      delayed: sum((s) => s.delayed),
      dead: sum((s) => s.dead),
      dispatched: sum((s) => s.dispatched),
      completed: sum((s) => s.completed),
      requeued: sum((s) => s.requeued),
      workers: all[0].workers,
    };
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    const all = await Promise.all(this.shards.map((s) => s.listDead(limit)));
    return all
      .flat()
      .sort((a, b) => a.deadAt - b.deadAt)
      .slice(0, Math.max(0, Math.floor(limit)));
  }

  async retryDead(id?: string): Promise<number> {
    return (await Promise.all(this.shards.map((s) => s.retryDead(id)))).reduce((a, b) => a + b, 0);
  }

  async purgeDead(): Promise<number> {
    return (await Promise.all(this.shards.map((s) => s.purgeDead()))).reduce((a, b) => a + b, 0);
  }

  // Administration (dashboard): progress, cancel requests and the bench record live on shard 0 like the
  // manifests; a job's batches may be on every shard, so withdrawal and per-priority counts cover all.

  publishProgress(progress: JobProgress): Promise<{ cancelRequested: boolean }> {
    return this.#home.publishProgress(progress);
  }

  listProgress(): Promise<JobProgress[]> {
    return this.#home.listProgress();
  }

  removeProgress(jobId: string): Promise<void> {
    return this.#home.removeProgress(jobId);
  }

  requestCancel(jobId: string): Promise<boolean> {
    return this.#home.requestCancel(jobId);
  }


  async priorityCounts(): Promise<{ inflight: Record<Priority, number>; dead: Record<Priority, number> }> {
    const all = await Promise.all(this.shards.map((s) => s.priorityCounts()));
    const sum = (pick: (c: (typeof all)[number]) => Record<Priority, number>) =>
      Object.fromEntries((['critical', 'high', 'normal', 'low'] as const).map((p) => [p, all.reduce((t, c) => t + pick(c)[p], 0)])) as Record<Priority, number>;
    return { inflight: sum((c) => c.inflight), dead: sum((c) => c.dead) };
  }

  putBenchRecord(record: Omit<BenchRecord, 'at'>): Promise<void> {
    return this.#home.putBenchRecord(record);
  }

  getBenchRecord(): Promise<BenchRecord | null> {
    return this.#home.getBenchRecord();
  }
}
