/**
 * The Kafka backend against a real Kafka-protocol broker: librdkafka's mock cluster, started by
 * test/helpers/kafka-broker.ts (a tiny C program compiled with `cc … -lrdkafka`). Skipped, with the
 * reason, where no C compiler or librdkafka-dev is installed.
 *
 * 1. Backend behaviours through the `Backend` interface (each test on its own topics and consumer
 *    group, run concurrently): round trip, stats, poison records, retries and dead letters, hand-back
 *    and hand-over, artifacts and manifests, a rebalance revoking claims.
 * 2. An end-to-end evaluation of the built-in task top_k through two worker processes, one of which is
 *    killed with SIGKILL mid-run: every case is accounted once, and the pass counts equal a local run.
 *
 * Run: node --import tsx --test test/kafka.test.ts
 */
import assert from 'node:assert/strict';
import { wireError } from '../src/errors.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';

import { KafkaBackend } from '../src/queue/kafka/backend.js';
import { saslRefused } from '../src/queue/kafka/client.js';
import { validateQueueConfig, type QueueConfig } from '../src/options/queue.js';
import type { BatchMessage, Claim, ClaimedBatch, JobManifest, ResultEntry } from '../src/queue/types.js';
import { startWorker } from '../src/daemon/daemon.js';
import { QueueDispatcher } from '../src/dispatch/queue.js';
import { LocalDispatcher } from '../src/dispatch/local.js';
import type { JobSpec } from '../src/dispatch/types.js';
import { createLogger } from '../src/observe/log.js';
import { sha256 } from '../src/util/hash.js';
import { builtinTask } from '../src/task/builtin.js';
import { loadTask } from '../src/task/load.js';
import { startKafkaMock, type KafkaMock } from './helpers/kafka-broker.js';
import type { Role, CaseResult } from '../src/core/protocol.js';
import { until } from './helpers/poll.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const unavailable = false; // startKafkaMock() fails naming the packages when the mock broker cannot be built
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const manifest = (jobId: string): JobManifest => ({
  jobId,
  task: { sha256: 'a'.repeat(64), ext: '.mjs', name: 'task.mjs' },
  implementations: { baseline: { sha256: 'b'.repeat(64), ext: '.mjs', name: 'b.mjs' }, candidate: { sha256: 'c'.repeat(64), ext: '.mjs', name: 'c.mjs' } },
  seed: 1,
  timeoutMs: 1000,
  memMb: 64,
  createdAt: Date.now(),
});

const batch = (jobId: string, i: number, extra: Partial<BatchMessage> = {}): BatchMessage => ({
  id: `${jobId}:b${i}`,
  jobId,
  role: i % 2 ? 'candidate' : 'baseline',
  priority: 'normal',
  payload: Uint8Array.from([i, i + 1, i + 2]),
  ...extra,
});

/** Claims until `count` claims arrived (returns them all). */
async function claimN(b: KafkaBackend, worker: string, count: number, timeoutMs = 15_000): Promise<Claim[]> {
  const out: Claim[] = [];
  await until(`${count} claims by ${worker}`, async () => {
    out.push(...(await b.claimBatches(worker, count - out.length, 60_000)));
    return out.length >= count;
  }, timeoutMs);
  return out;
}

async function readAll(b: KafkaBackend, jobId: string, count: number, timeoutMs = 15_000): Promise<ResultEntry[]> {
  const out: ResultEntry[] = [];
  let cursor = '0';
  await until(`${count} result entries of ${jobId}`, async () => {
    const r = await b.readResults(jobId, cursor, 200);
    cursor = r.cursor;
    out.push(...r.entries);
    return out.length >= count;
  }, { timeoutMs, intervalMs: 0 });
  return out;
}

/** Rejects when `p` has not settled within `ms` (and leaves no timer behind). */
function deadline<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message())), ms)))]).finally(() => clearTimeout(timer));
}

const ok = (c: Claim): ClaimedBatch => {
  assert.ok(c.ok, `expected a batch, got ${JSON.stringify(c)}`);
  return c.batch;
};

describe('kafka backend (librdkafka mock cluster)', { skip: unavailable, concurrency: true }, () => {
  let mock: KafkaMock;
  const open: KafkaBackend[] = [];
  const topics = ['rt', 'poison', 'retry', 'handback', 'jobs', 'rebalance', 'prefetch'].map((t) => `mg-${t}`);

  before(async () => {
    mock = await startKafkaMock({ partitions: 4, topics });
  });
  after(async () => {
    await Promise.all(open.map((b) => b.close().catch(() => {})));
    await mock?.stop();
  });

  const config = (topic: string, extra: Record<string, unknown> = {}): QueueConfig =>
    validateQueueConfig({ backend: 'kafka', bootstrap_servers: mock.bootstrap, topic, consumer_group: `${topic}-workers`, heartbeat_timeout: 3, heartbeat_check_interval: 0.5, ...extra });
  const backend = async (c: QueueConfig, options: ConstructorParameters<typeof KafkaBackend>[1] = {}): Promise<KafkaBackend> => {
    const b = new KafkaBackend(c, options);
    open.push(b);
    await b.connect();
    return b;
  };

  it('round trip: enqueue, claim, complete, read results; offsets committed; stats show lag and workers', async () => {
    const c = config('mg-rt');
    const coord = await backend(c);
    const worker = await backend(c);
    await coord.putJob(manifest('job-rt'));
    const sent = Array.from({ length: 8 }, (_, i) => batch('job-rt', i, i === 3 ? { mac: 'f'.repeat(64), priority: 'critical' } : {}));
    await coord.enqueue(sent);

    const before = await coord.stats();
    assert.equal(before.kafka.lag, 8, 'nothing committed yet: all 8 records pending');
    assert.equal(before.pending.normal, 8);
    assert.equal(before.dispatched, 8);

    const claims = await claimN(worker, 'w1', 8);
    const byId = new Map(claims.map((cl) => [ok(cl).id, ok(cl)]));
    assert.equal(byId.size, 8);
    for (const b of sent) {
      const got = byId.get(b.id)!;
      assert.ok(got, `claimed ${b.id}`);
      assert.deepEqual([...got.payload], [...b.payload], 'payload bytes carried as is');
      assert.equal(got.jobId, b.jobId);
      assert.equal(got.role, b.role);
      assert.equal(got.priority, b.priority);
      assert.equal(got.mac, b.mac);
      assert.equal(got.attempt, 1);
    }
    assert.deepEqual(await worker.renewLeases('w1', [...byId.keys(), 'nope'], 60_000), ['nope']);
    assert.deepEqual(await worker.renewLeases('w2', [sent[0].id], 60_000), [sent[0].id], 'another worker does not hold it');
    assert.equal((await worker.stats()).inflight, 8);

    for (const b of sent) assert.equal(await worker.completeBatch('w1', b, Buffer.from(`results of ${b.id}`)), true);
    assert.equal(await worker.completeBatch('w1', sent[0], Buffer.from('again')), false, 'a second completion is not ours any more');

    const entries = await readAll(coord, 'job-rt', 9);
    assert.equal(entries.length, 9);
    for (const b of sent) {
      const e = entries.find((x) => x.batchId === b.id);
      assert.ok(e && e.kind === 'results');
      assert.equal(e.role, b.role);
      assert.equal(e.workerId, 'w1');
    }
    assert.deepEqual(entries.filter((e) => e.batchId === sent[0].id).map((e) => e.kind === 'results' && Buffer.from(e.frame).toString()), [`results of ${sent[0].id}`, 'again']);
    const again = await coord.readResults('job-rt', '9', 0);
    assert.deepEqual(again, { cursor: '9', entries: [] });

    await until('all offsets committed', async () => (await coord.stats()).kafka.lag === 0);
    const s = await coord.stats();
    assert.equal(s.completed, 8);

    await worker.heartbeat({ workerId: 'w1', host: 'h1', pid: 42, threads: 3, startedAt: 1 });
    const w = await until('w1 active', async () => (await coord.activeWorkers()).find((x) => x.workerId === 'w1'));
    assert.equal(w.threads, 3);
    assert.ok(w.lastHeartbeat && Math.abs(w.lastHeartbeat - Date.now()) < 10_000);
    assert.ok((await coord.stats()).workers.some((x) => x.workerId === 'w1'));
    await worker.removeWorker('w1');
    await until('w1 gone', async () => !(await coord.activeWorkers()).some((x) => x.workerId === 'w1'));

    const t0 = Date.now();
    const pending = coord.readResults('job-rt', '9', 10_000);
    await sleep(100);
    await coord.close();
    assert.deepEqual(await pending, { cursor: '9', entries: [] });
    assert.ok(Date.now() - t0 < 3000, 'close() ends a blocking read promptly');
    await assert.rejects(coord.readResults('job-rt', '9', 0), { code: 'MG_ERR_BACKEND_CLOSED' });
  });

  it('backpressure: a full buffer pauses fetching, claims resume it, nothing is skipped', async () => {
    const c = config('mg-prefetch');
    const coord = await backend(c);
    const worker = await backend(c, { prefetch: 2 });
    await coord.putJob(manifest('job-f'));
    const sent = Array.from({ length: 24 }, (_, i) => batch('job-f', i));
    await coord.enqueue(sent);
    const seen = new Set<string>();
    await until('all 24 claimed one at a time', async () => {
      for (const cl of await worker.claimBatches('w1', 1, 60_000)) {
        const b = ok(cl);
        assert.ok(!seen.has(b.id), `${b.id} claimed twice`);
        seen.add(b.id);
        assert.equal(await worker.completeBatch('w1', b, Buffer.from('r')), true);
      }
      return seen.size === sent.length;
    }, { timeoutMs: 20_000, intervalMs: 20 });
    assert.equal((await worker.stats()).inflight, 0);
    await until('all committed', async () => (await coord.stats()).kafka.lag === 0);
  });

  it('poison records go to the dead-letter topic with the reason; dlq list, retry and purge', async () => {
    const c = config('mg-poison');
    const coord = await backend(c);
    const worker = await backend(c);
    await coord.putJob(manifest('job-p'));
    const kafka = new Kafka({ brokers: [mock.bootstrap], logLevel: logLevel.NOTHING });
    const raw = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await raw.connect();
    try {
      await raw.send({ topic: 'mg-poison', messages: [{ value: 'garbage, no headers' }] });
      await raw.send({ topic: 'mg-poison', messages: [{ key: 'bad-role', value: 'x', headers: { id: 'bad-role', job: 'job-p', role: 'nobody' } }] });
    } finally {
      await raw.disconnect();
    }
    await coord.enqueue([batch('job-p', 1)]);

    const claims = await claimN(worker, 'w1', 3);
    const bad = claims.filter((cl) => !cl.ok) as Extract<Claim, { ok: false }>[];
    assert.equal(bad.length, 2);
    const garbage = bad.find((b) => b.id !== 'bad-role')!;
    assert.match(garbage.id, /^mg-poison\/\d+@\d+$/);
    assert.equal(garbage.error.message, 'malformed batch: no id header');
    assert.equal(bad.find((b) => b.id === 'bad-role')!.error.message, 'malformed batch: bad role');
    for (const b of bad) await worker.deadLetter('w1', b.id, b.error);
    // A batch whose payload does not decode takes the daemon's path: deadLetter with the codec error.
    const good = ok(claims.find((cl) => cl.ok)!);
    await worker.deadLetter('w1', good.id, wireError('MG_ERR_CODEC', 'frame too short'));

    const entries = await readAll(coord, 'job-p', 2);
    assert.deepEqual(
      entries.map((e) => [e.kind, e.batchId, e.kind === 'dead' ? e.error.message : '']).sort(),
      [['dead', 'bad-role', 'malformed batch: bad role'], ['dead', good.id, 'frame too short']].sort(),
    );

    const dead = await coord.listDead();
    assert.deepEqual(dead.map((d) => d.id).sort(), [garbage.id, 'bad-role', good.id].sort());
    const codec = dead.find((d) => d.id === good.id)!;
    assert.deepEqual(codec.error, { code: 'MG_ERR_CODEC', message: 'frame too short', retryable: false });
    assert.equal(codec.jobId, 'job-p');
    assert.equal(codec.role, good.role);
    assert.equal(codec.attempts, 1);
    assert.ok(Math.abs(codec.deadAt - Date.now()) < 30_000);
    assert.equal((await coord.stats()).dead, 3);
    await until('dead-lettered records committed', async () => (await coord.stats()).kafka.lag === 0);

    // Only well-formed batches can be retried; the garbage stays dead.
    assert.equal(await coord.retryDead(garbage.id), 0);
    assert.equal(await coord.retryDead(), 1);
    const again = ok((await claimN(worker, 'w1', 1))[0]);
    assert.equal(again.id, good.id);
    assert.equal(again.attempt, 1, 'fresh attempts');
    assert.deepEqual([...again.payload], [...good.payload]);
    assert.deepEqual((await coord.listDead()).map((d) => d.id).sort(), [garbage.id, 'bad-role'].sort());
    assert.equal(await worker.completeBatch('w1', again, Buffer.from('ok')), true);

    assert.equal(await coord.purgeDead(), 2);
    assert.deepEqual(await coord.listDead(), []);
    const fresh = await backend(c);
    assert.deepEqual(await fresh.listDead(), [], 'a new reader sees the purge too');
  });

  it('counted retries wait out their delay and dead-letter past max_requeue_attempts; the job is told', async () => {
    const c = config('mg-retry', { max_requeue_attempts: 1 });
    const coord = await backend(c);
    const worker = await backend(c);
    await coord.putJob(manifest('job-r'));
    const b = batch('job-r', 7);
    await coord.enqueue([b]);
    const first = ok((await claimN(worker, 'w1', 1))[0]);
    assert.equal(first.attempt, 1);
    const released = Date.now();
    await worker.releaseBatch('w1', b.id, { delayMs: 1500, countAttempt: true, error: wireError('MG_ERR_WORKER', 'boom') });
    const second = ok((await claimN(worker, 'w1', 1))[0]);
    assert.ok(Date.now() - released >= 1400, `claimed again after ${Date.now() - released} ms, before its delay`);
    assert.equal(second.attempt, 2);
    assert.deepEqual([...second.payload], [...b.payload]);
    await worker.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: true, error: wireError('MG_ERR_WORKER', 'boom') });

    const entries = await readAll(coord, 'job-r', 1);
    assert.deepEqual(entries, [{ kind: 'dead', batchId: b.id, error: { code: 'MG_ERR_WORKER', message: 'boom (gave up after 2 attempts)', retryable: true }, role: b.role }], 'the dead letter keeps the code it was retried with');
    const dead = await coord.listDead();
    assert.equal(dead.length, 1);
    assert.equal(dead[0].attempts, 2);
    await until('retried and dead-lettered records committed', async () => (await coord.stats()).kafka.lag === 0);
    assert.equal((await worker.stats()).requeued, 1);
  });

  it('a hand-back stays uncommitted: claimed again here, and by another worker once this one leaves', async () => {
    const c = config('mg-handback');
    const coord = await backend(c);
    const w1 = await backend(c);
    await coord.putJob(manifest('job-h'));
    const b = batch('job-h', 2);
    await coord.enqueue([b]);
    ok((await claimN(w1, 'w1', 1))[0]);
    await w1.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: false, error: wireError('MG_ERR_WORKER', 'worker draining') });
    const again = ok((await w1.claimBatches('w1', 1, 60_000))[0]);
    assert.equal(again.id, b.id);
    assert.equal(again.attempt, 1, 'a hand-back is not an attempt');
    await w1.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: false, error: wireError('MG_ERR_WORKER', 'worker draining') });
    await w1.close();
    assert.equal((await coord.stats()).kafka.lag, 1, 'never committed');

    const w2 = await backend(c);
    const taken = ok((await claimN(w2, 'w2', 1))[0]);
    assert.equal(taken.id, b.id);
    assert.equal(await w2.completeBatch('w2', taken, Buffer.from('done')), true);
    const entries = await readAll(coord, 'job-h', 1);
    assert.equal(entries[0].kind === 'results' && entries[0].workerId, 'w2');
  });

  it('artifacts past the in-memory budget are let go and read again from the jobs topic when needed', async () => {
    const c = config('mg-jobs');
    const coord = await backend(c);
    const blobs = [1, 2, 3].map((k) => Buffer.from(Uint8Array.from({ length: 200 * 1024 }, (_, i) => (i * k + (i >> 8)) & 0xff)));
    const shas = blobs.map((b) => sha256(b));
    for (let i = 0; i < 3; i++) await coord.putArtifact(shas[i], blobs[i]);
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({ write: (chunk, _e, done) => (lines.push(...String(chunk).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)), done()) });
    // Two of the three fit in this worker's budget: reading all three lets one go (the topic has four
    // partitions, so which one depends on the order the partitions are read in).
    const worker = await backend(c, { artifactMemoBytes: 450 * 1024, logger: createLogger({ json: true, stream, level: 'debug' }) });
    for (const i of [2, 1, 0]) assert.deepEqual(Buffer.from((await worker.getArtifact(shas[i]))!), blobs[i], `artifact ${i}`);
    const rereads = lines.filter((l) => l.event === 'artifact_reread');
    assert.ok(rereads.length >= 1, 'at least the artifact let go was read again');
    for (const r of rereads) assert.ok(r.found === true && shas.includes(r.sha256 as string), JSON.stringify(r));
  });

  it('artifacts and manifests round trip; a deleted job reads as null and its batches are skipped', async () => {
    const c = config('mg-jobs');
    const coord = await backend(c);
    const bytes = Buffer.from('export default 42;\n');
    await coord.putArtifact('d'.repeat(64), bytes);
    const ma = manifest('job-a');
    await coord.putJob(ma);
    await coord.putJob(manifest('job-b'));

    const worker = await backend(c);
    assert.deepEqual(Buffer.from((await worker.getArtifact('d'.repeat(64)))!), bytes);
    assert.equal(await worker.getArtifact('e'.repeat(64)), null);
    assert.deepEqual(await worker.getJob('job-a'), ma);
    assert.equal(await worker.getJob('job-missing'), null);

    await coord.deleteJob('job-b');
    const later = await backend(c);
    assert.equal(await later.getJob('job-b'), null);
    assert.ok(await later.getJob('job-a'));
    // Batches of the deleted (finished) job are obsolete: skipped and committed, never claimed.
    await coord.enqueue([batch('job-b', 1), batch('job-a', 2)]);
    const claims = await claimN(later, 'w1', 1);
    assert.equal(ok(claims[0]).jobId, 'job-a');
    await later.completeBatch('w1', ok(claims[0]), Buffer.from('r'));
    await until('both records committed', async () => {
      assert.deepEqual(await later.claimBatches('w1', 10, 60_000), [], 'nothing else to claim');
      return (await coord.stats()).kafka.lag === 0;
    });
  });

  it('what a reader keeps of the jobs topic is bounded: the oldest manifests and deleted jobs are forgotten, and read as missing', async () => {
    const c = config('mg-jobs-kept');
    const coord = await backend(c);
    const jobs = ['kept-1', 'kept-2', 'kept-3', 'kept-4'].map((id) => manifest(id));
    for (const m of jobs) await coord.putJob(m);
    const reader = await backend(c, { jobsKept: { manifests: 2, deleted: 2 } });
    // A job it never saw makes it read the whole topic first.
    assert.equal(await reader.getJob('never-published'), null);
    // The jobs topic has several partitions: which two manifests are the newest read depends on their
    // order, so the check is on the count and on every job reading as its manifest or as missing.
    const read: (JobManifest | null)[] = [];
    for (const m of jobs) read.push(await reader.getJob(m.jobId));
    assert.equal(read.filter((m) => m !== null).length, 2, 'two manifests kept');
    read.forEach((m, i) => assert.ok(m === null || JSON.stringify(m) === JSON.stringify(jobs[i]), `job ${i}`));
    // Four tombstones through a reader that keeps two: each deleted job reads as missing either way.
    for (const m of jobs) await coord.deleteJob(m.jobId);
    const later = await backend(c, { jobsKept: { manifests: 2, deleted: 2 } });
    for (const m of jobs) assert.equal(await later.getJob(m.jobId), null, `${m.jobId} deleted`);
  });

  it('a rebalance revokes claims: renewLeases reports them, their results still publish, the new owner redoes them', async () => {
    const c = config('mg-rebalance');
    const coord = await backend(c);
    const w1 = await backend(c);
    await coord.putJob(manifest('job-x'));
    const sent = Array.from({ length: 16 }, (_, i) => batch('job-x', i));
    await coord.enqueue(sent);
    const held = (await claimN(w1, 'w1', 16)).map(ok);
    assert.equal(held.length, 16);

    const w2 = await backend(c);
    const claimed2: ClaimedBatch[] = [];
    // A group member that fails (the mock broker has answered a join in mid-rebalance with
    // INVALID_REQUEST) is reported by one claim and restarted by the next, as the daemon's claim loop
    // does: the test goes on the same way, and says how often it happened if it then fails.
    const restarts: string[] = [];
    const claim2 = async (): Promise<ClaimedBatch[]> => {
      try {
        return (await w2.claimBatches('w2', 16, 60_000)).map(ok);
      } catch (err) {
        const e = err as Error & { code?: string };
        if (e.code !== 'MG_ERR_BACKEND' || !/restarted on the next claim/.test(e.message) || restarts.length >= 3) throw new Error(`${e.message} (after ${restarts.length} restarts: ${restarts.join(' | ')})`, { cause: err });
        restarts.push(e.message);
        return [];
      }
    };
    // w2 joins; the group rebalances and w1 keeps only part of the partitions.
    const lost = await until('w1 to lose claims to the rebalance', async () => {
      claimed2.push(...(await claim2()));
      const l = await w1.renewLeases('w1', held.map((b) => b.id), 60_000);
      return l.length > 0 && l;
    }, { timeoutMs: 20_000, intervalMs: 100 });
    assert.ok(lost.length < 16, 'w1 keeps some partitions');
    const lostBatch = held.find((b) => b.id === lost[0])!;
    assert.equal(await w1.completeBatch('w1', lostBatch, Buffer.from('late')), false, 'no longer held, results published anyway');
    for (const b of held) if (!lost.includes(b.id)) assert.equal(await w1.completeBatch('w1', b, Buffer.from('w1')), true);

    await until('w2 to receive the revoked records', async () => {
      claimed2.push(...(await claim2()));
      return lost.every((id) => claimed2.some((b) => b.id === id));
    });
    for (const b of claimed2) assert.equal(await w2.completeBatch('w2', b, Buffer.from('w2')), true);
    const entries = await readAll(coord, 'job-x', 16 + 1);
    for (const b of sent) assert.ok(entries.some((e) => e.batchId === b.id), `results of ${b.id}`);
    await until('all committed', async () => (await coord.stats()).kafka.lag === 0);
  });
});

describe('kafka idle connections (librdkafka mock cluster)', { skip: unavailable }, () => {
  it('an idle backend schedules no pending-queue checks: kafkajs\'s 1 ms timer is off while nothing waits', async () => {
    const mock = await startKafkaMock({ partitions: 2, topics: ['mg-idle'] });
    const b = new KafkaBackend(validateQueueConfig({ backend: 'kafka', bootstrap_servers: mock.bootstrap, topic: 'mg-idle', consumer_group: 'mg-idle-workers' }));
    const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as { prototype: { checkPendingRequests(): void } };
    const check = RequestQueue.prototype.checkPendingRequests;
    let checks = 0;
    RequestQueue.prototype.checkPendingRequests = function (this: unknown) {
      checks++;
      return check.call(this);
    };
    try {
      await b.connect();
      await b.putJob(manifest('job-idle'));
      await new Promise((r) => setTimeout(r, 500));
      checks = 0;
      await new Promise((r) => setTimeout(r, 1000));
      // Without the fix every connection checks ~1,000 times a second; responses still run a check each.
      assert.ok(checks < 100, `${checks} pending-queue checks in one idle second`);
    } finally {
      RequestQueue.prototype.checkPendingRequests = check;
      await b.close().catch(() => {});
      await mock.stop();
    }
  });
});

describe('kafka integrity: read-back validation, lost batches, idempotent enqueue', { skip: unavailable, concurrency: true }, () => {
  let mock: KafkaMock;
  let raw: Producer;
  const open: KafkaBackend[] = [];
  const PARTITIONS = 4;

  before(async () => {
    mock = await startKafkaMock({ partitions: PARTITIONS, topics: ['mg-valid', 'mg-missing', 'mg-lost', 'mg-idem'] });
    raw = new Kafka({ brokers: [mock.bootstrap], logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await raw.connect();
  });
  after(async () => {
    for (const b of open) await b.close();
    await raw?.disconnect();
    await mock?.stop();
  });

  const config = (topic: string, extra: Record<string, unknown> = {}): QueueConfig =>
    validateQueueConfig({ backend: 'kafka', bootstrap_servers: mock.bootstrap, topic, consumer_group: `${topic}-workers`, heartbeat_timeout: 3, heartbeat_check_interval: 0.5, ...extra });
  const backend = async (c: QueueConfig, options: ConstructorParameters<typeof KafkaBackend>[1] = {}): Promise<KafkaBackend> => {
    const b = new KafkaBackend(c, options);
    open.push(b);
    await b.connect();
    return b;
  };
  /** A JSON logger whose lines are kept. */
  const capture = () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
        cb();
      },
    });
    return { lines, logger: createLogger({ json: true, stream, level: 'debug' }) };
  };
  /** The partition the producer's partitioner gives a key (what the backend and kafkajs use). */
  const partitionOf = (topic: string, key: string) =>
    Partitioners.DefaultPartitioner()({ topic, partitionMetadata: Array.from({ length: PARTITIONS }, (_, i) => ({ partitionId: i, leader: 1, partitionErrorCode: 0, replicas: [1], isr: [1] })), message: { key, value: null } });
  const highOf = async (b: KafkaBackend, partition: number) => (await b.stats()).kafka.partitions.find((p) => p.partition === partition)!.high;

  it('forged records read back (manifest, results, heartbeat, dead letter, batch headers) are skipped with malformed_record and never trusted', async () => {
    const c = config('mg-valid', { heartbeat_timeout: 60 }); // heartbeats written at the start stay fresh
    const { lines, logger } = capture();
    const coord = await backend(c, { logger });
    await coord.putJob(manifest('job-v'));
    const good = manifest('job-good');
    await raw.send({
      topic: 'mg-valid.jobs',
      acks: -1,
      messages: [
        { key: 'job:job-bad', value: JSON.stringify({ ...manifest('job-bad'), memMb: -5 }) },
        { key: 'something-else', value: 'x' },
        { key: 'job:job-good', value: JSON.stringify(good) },
      ],
    });
    await raw.send({
      topic: 'mg-valid.results',
      acks: -1,
      messages: [
        { key: 'job-v', value: 'frame', headers: { kind: 'results', batch: 'job-v:b1', role: 'nobody', worker: 'w' } },
        { key: 'job-v', value: 'frame', headers: { kind: 'results', batch: 'job-v:b2', role: 'candidate', worker: 'w' } },
      ],
    });
    await raw.send({
      topic: 'mg-valid.workers',
      acks: -1,
      messages: [
        { key: 'w-bad', value: JSON.stringify({ host: 'h', pid: 1, threads: 'q', startedAt: 1 }), timestamp: String(Date.now()) },
        { key: 'w-good', value: JSON.stringify({ host: 'h', pid: 2, threads: 2, startedAt: 1 }), timestamp: String(Date.now()) },
      ],
    });
    await raw.send({
      topic: 'mg-valid.dlq',
      acks: -1,
      messages: [
        { key: 'job-v:d1', value: 'x', headers: { kind: 'dead', id: 'job-v:d1', reason: 'r', attempts: 'abc', dead_at: '1' } },
        { key: 'job-v:d2', value: 'x', headers: { kind: 'dead', id: 'job-v:d2', reason: 'r', attempts: '2', dead_at: '1', job: 'job-v', role: 'candidate' } },
      ],
    });
    await raw.send({
      topic: 'mg-valid',
      acks: -1,
      messages: [
        { key: 'job-v:a1', value: 'p', headers: { id: 'job-v:a1', job: 'job-v', role: 'baseline', attempt: '1e9' } },
        { key: 'job-v:a2', value: 'p', headers: { id: 'job-v:a2', job: 'job-v', role: 'baseline', not_before: 'soon' } },
        { key: 'job-v:a3', value: 'p', headers: { id: '../../etc', job: 'job-v', role: 'baseline' } },
      ],
    });

    // A manifest that fails its schema is an error naming the field, never "job not found".
    const worker = await backend(c, { logger });
    await assert.rejects(worker.getJob('job-bad'), (err: Error & { code?: string }) => err.code === 'MG_ERR_MALFORMED_RECORD' && /memMb/.test(err.message));
    assert.deepEqual(await worker.getJob('job-good'), good, 'the records after it are read');
    // A results entry with a forged role is not passed on; the next one is.
    const entries = await readAll(coord, 'job-v', 1);
    assert.deepEqual(entries.map((e) => e.batchId), ['job-v:b2']);
    assert.deepEqual((await coord.readResults('job-v', '1', 300)).entries, []);
    // A heartbeat with threads "q" does not count as a worker (it would make the slot count NaN).
    assert.deepEqual((await coord.activeWorkers()).map((w) => w.workerId).sort(), ['w-good']);
    // A dead letter with a non-numeric attempt count is not listed.
    assert.deepEqual((await coord.listDead()).map((d) => [d.id, d.attempts, d.jobId]), [['job-v:d2', 2, 'job-v']]);
    // Forged batch headers make a poison claim (dead-lettered with the reason), not a batch.
    const claims = await claimN(worker, 'w1', 3);
    const reasons = Object.fromEntries(claims.map((cl) => (cl.ok ? [cl.batch.id, 'ok'] : [cl.id, cl.error.message])));
    assert.match(reasons['job-v:a1'], /malformed batch: .*attempt must be an integer in 0\.\.1000000/);
    assert.match(reasons['job-v:a2'], /malformed batch: .*not_before must be an integer/);
    const forgedId = Object.keys(reasons).find((id) => id.startsWith('mg-valid/'))!;
    assert.match(reasons[forgedId], /malformed batch: id "\.\.\/\.\.\/etc" is not a batch id/);

    const malformed = lines.filter((l) => l.event === 'malformed_record');
    for (const l of malformed) assert.equal(l.code, 'MG_ERR_MALFORMED_RECORD');
    const fields = (topic: string) => malformed.filter((l) => l.topic === topic).map((l) => l.field);
    assert.ok(fields('mg-valid.jobs').includes('memMb'), JSON.stringify(malformed));
    assert.ok(fields('mg-valid.jobs').includes('key'));
    assert.ok(malformed.some((l) => l.field === 'memMb' && /dead-letter/.test(String(l.consequence))), 'the consequence is named');
    assert.deepEqual(fields('mg-valid.results'), ['role']);
    assert.ok(fields('mg-valid.workers').includes('threads'));
    assert.ok(fields('mg-valid.dlq').includes('attempts'));
  });

  it('missingBatches: finished and never-sent batches are missing; pending, handed back and retried (the copy) are not', async () => {
    const c = config('mg-missing');
    const coord = await backend(c);
    const worker = await backend(c);
    await coord.putJob(manifest('job-m'));
    const [done, dead, retried, handed, pending] = [0, 1, 2, 3, 4].map((i) => batch('job-m', i));
    await coord.enqueue([done, dead, retried, handed]);
    const claims = (await claimN(worker, 'w1', 4)).map(ok);
    assert.equal(claims.length, 4);
    assert.equal(await worker.completeBatch('w1', done, Buffer.from('r')), true);
    await worker.deadLetter('w1', dead.id, wireError('MG_ERR_CODEC', 'bad'));
    await worker.releaseBatch('w1', retried.id, { delayMs: 60_000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'later') });
    await worker.releaseBatch('w1', handed.id, { delayMs: 0, countAttempt: false, error: wireError('MG_ERR_INTERRUPTED', 'drain', true) });
    await coord.enqueue([pending]);
    const ids = [done.id, dead.id, retried.id, handed.id, pending.id, 'job-m:never-sent'];
    const missing = await until('the group to commit the finished records', async () => {
      const m = (await coord.missingBatches(ids)).sort();
      return m.length === 3 && m;
    });
    assert.deepEqual(missing, [done.id, dead.id, 'job-m:never-sent'].sort());
  });

  it('a batch lost from the log (retention moved the log start past it) is missing, and enqueue republishes only that one', async () => {
    const topic = 'mg-lost';
    const c = config(topic);
    const coord = await backend(c);
    await coord.putJob(manifest('job-l'));
    // Two batches on different partitions.
    const a = batch('job-l', 1);
    let b = batch('job-l', 2);
    for (let i = 3; partitionOf(topic, b.id) === partitionOf(topic, a.id); i++) b = batch('job-l', i);
    await coord.enqueue([a, b]);
    assert.deepEqual(await coord.missingBatches([a.id, b.id]), []);
    // The mock broker keeps at most 5 MiB per partition: 12 x 512 KiB more pushes a's record out.
    const pa = partitionOf(topic, a.id);
    for (let i = 0; i < 12; i++) await raw.send({ topic, acks: -1, messages: [{ key: `filler-${i}`, partition: pa, value: Buffer.alloc(512 * 1024, i) }] });
    const low = (await coord.stats()).kafka.partitions.find((p) => p.partition === pa)!.low;
    assert.ok(low > 0, 'the log start moved');
    assert.deepEqual(await coord.missingBatches([a.id, b.id]), [a.id]);
    // A retried enqueue of both: b is still there (not produced again), a is republished.
    const [highA, highB] = [await highOf(coord, pa), await highOf(coord, partitionOf(topic, b.id))];
    await coord.enqueue([a, b]);
    assert.equal(await highOf(coord, pa), highA + 1, 'a republished');
    assert.equal(await highOf(coord, partitionOf(topic, b.id)), highB, 'b not duplicated');
    assert.deepEqual(await coord.missingBatches([a.id, b.id]), []);
  });

  it('ssl and sasl reach the client; only a refused SASL authentication is MG_ERR_BACKEND_AUTH (the mock broker speaks neither TLS nor SASL)', async () => {
    // librdkafka's mock cluster has no SaslHandshake/SaslAuthenticate handlers and listens on plain
    // TCP, so a live "bad password" cannot be produced here. What can: the keys are used (SASL fails
    // at the handshake's API version, TLS at the handshake), and neither is taken for bad credentials.
    const sasl = new KafkaBackend(config('mg-sasl', { sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'wrong' } }));
    await assert.rejects(sasl.connect(), (err: Error & { code?: string }) => err.code === 'MG_ERR_BACKEND' && /does not support the requested API version/.test(err.message));
    await sasl.close();
    const tls = new KafkaBackend(config('mg-tls', { ssl: true }));
    await assert.rejects(tls.connect(), (err: Error & { code?: string }) => err.code === 'MG_ERR_BACKEND' && /cannot connect to kafka/.test(err.message));
    await tls.close();
    // kafkajs's class for a broker's SaslAuthenticate failure, as it arrives (wrapped or not): AUTH.
    // kafkajs's error classes are CommonJS exports that ESM cannot name: load them as kafkajs does.
    const errors = createRequire(import.meta.url)('kafkajs') as Record<string, new (e: unknown, meta?: unknown) => Error>;
    const refused = new errors.KafkaJSSASLAuthenticationError('SASL SCRAM SHA512 authentication failed: Invalid username or password');
    assert.equal(saslRefused(refused), true);
    assert.equal(saslRefused(new Error('cannot connect', { cause: new errors.KafkaJSNumberOfRetriesExceeded(refused, { retryCount: 0, retryTime: 0 }) })), true);
    assert.equal(saslRefused(new Error('SASL authentication failed (only the text says so)')), false, 'decided on the class, never on text');
  });

  it('idempotent enqueue: a retried enqueue adds nothing, and a batch written twice is claimed once', async () => {
    const c = config('mg-idem');
    const coord = await backend(c);
    await coord.putJob(manifest('job-i'));
    const sent = [0, 1, 2].map((i) => batch('job-i', i));
    await coord.enqueue(sent);
    await coord.enqueue(sent); // the coordinator's retry after a failure that had in fact been written
    assert.equal((await coord.stats()).dispatched, 3, 'the retry produced nothing');
    // A produce whose acknowledgement was lost and was sent again by another client: two records.
    const twin = sent[1];
    await raw.send({ topic: 'mg-idem', acks: -1, messages: [{ key: twin.id, value: Buffer.from(twin.payload), headers: { id: twin.id, job: twin.jobId, role: twin.role, priority: twin.priority, attempt: '0' } }] });
    assert.equal((await coord.stats()).dispatched, 4);

    const worker = await backend(c);
    const claims = (await claimN(worker, 'w1', 3)).map(ok);
    assert.deepEqual(claims.map((b) => b.id).sort(), sent.map((b) => b.id).sort());
    await until('the duplicate skipped', async () => {
      assert.deepEqual(await worker.claimBatches('w1', 10, 60_000), [], 'the duplicate is never claimed');
      return (await worker.stats()).kafka.duplicatesSkipped === 1;
    });
    for (const b of claims) assert.equal(await worker.completeBatch('w1', b, Buffer.from('r')), true);
    await until('all four records committed', async () => (await coord.stats()).kafka.lag === 0);
    assert.equal((await readAll(coord, 'job-i', 3)).length, 3);
    assert.deepEqual((await coord.readResults('job-i', '3', 300)).entries, [], 'one result per batch');
  });
});

describe('kafka end-to-end: an evaluation survives kill -9 of a worker and batches lost from the log', { skip: unavailable }, () => {
  let mock: KafkaMock;
  let raw: Producer;
  let cacheRoot: string;
  const children: ChildProcess[] = [];

  before(async () => {
    mock = await startKafkaMock({ partitions: 4, topics: ['mg-e2e', 'mg-e2e-lost'] });
    raw = new Kafka({ brokers: [mock.bootstrap], logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await raw.connect();
    cacheRoot = mkdtempSync(join(tmpdir(), 'mg-kafka-e2e-'));
  });
  after(async () => {
    for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
    await raw?.disconnect();
    await mock?.stop();
    rmSync(cacheRoot, { recursive: true, force: true });
  });

  function spawnWorker(name: string, queueConfig: Record<string, unknown>) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'helpers', 'kafka-worker-entry.ts')], {
      cwd: root,
      env: {
        ...process.env,
        MG_TEST_QUEUE_CONFIG: JSON.stringify(queueConfig),
        MG_TEST_WORKER_ID: name,
        MG_TEST_CACHE_DIR: join(cacheRoot, name),
        MG_TEST_LOG_FILE: join(cacheRoot, `${name}.log`),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const events: { event: string; id?: string }[] = [];
    let buf = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          events.push(JSON.parse(line));
        } catch {
          // not ours
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    return { child, events, stderr: () => stderr, batches: () => events.filter((e) => e.event === 'batch').length };
  }

  it('batches lost from the log before any worker ran them are republished (queue_state_lost) and the run completes', { timeout: 150_000 }, async () => {
    const n = 40;
    const seed = 3;
    const top = builtinTask('top_k')!;
    const taskUrl = pathToFileURL(top.task).href;
    const task = await loadTask(taskUrl);
    const job: JobSpec = {
      taskUrl,
      implUrls: { baseline: pathToFileURL(top.baseline).href, candidate: pathToFileURL(top.candidate).href },
      seed,
      timeoutMs: 20_000,
      memMb: 256,
      cases: task.gen(n, seed),
    };
    const topic = 'mg-e2e-lost';
    const queueConfig = { backend: 'kafka', bootstrap_servers: mock.bootstrap, topic, consumer_group: `${topic}-workers`, heartbeat_timeout: 6, heartbeat_check_interval: 0.5, batch_size: 4 };
    const config = validateQueueConfig(queueConfig);
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
        cb();
      },
    });
    const observer = new KafkaBackend(config);
    await observer.connect();
    const dispatcher = new QueueDispatcher({ config, backend: new KafkaBackend(config), logger: createLogger({ json: true, stream }) });
    const seen: Record<Role, Uint16Array> = { baseline: new Uint16Array(n), candidate: new Uint16Array(n) };
    let worker: ReturnType<typeof spawnWorker> | undefined;
    try {
      const running = dispatcher.run(job, { onResult: (role, r) => seen[role][r.index]++ });
      running.catch(() => {});
      // No worker yet: the first batches wait in the topic. Then retention drops them — the mock
      // broker keeps at most 5 MiB per partition — under records of a finished job (workers skip those).
      const enqueued = await until('the first batches enqueued', async () => {
        const s = await observer.stats();
        return s.dispatched > 0 && s.kafka.partitions;
      }, 30_000);
      await observer.deleteJob('job-gone');
      for (const { partition } of enqueued) {
        for (let i = 0; i < 12; i++) {
          await raw.send({ topic, acks: -1, messages: [{ key: `filler-${i}`, partition, value: Buffer.alloc(512 * 1024, i), headers: { id: `job-gone:f${partition}-${i}`, job: 'job-gone', role: 'baseline' } }] });
        }
      }
      const lost = await until('the coordinator to notice the lost batches', () => lines.find((l) => l.event === 'queue_state_lost'), 30_000);
      assert.ok(Number(lost.batches) > 0, JSON.stringify(lost));
      worker = spawnWorker('worker-lost', queueConfig);
      const results = await deadline(running, 90_000, () => `the run did not finish\nworker: ${worker!.stderr()}\n${lines.slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
      for (const role of ['baseline', 'candidate'] as const) {
        assert.equal(results[role].length, n);
        for (let i = 0; i < n; i++) {
          assert.equal(seen[role][i], 1, `${role} case ${i} accounted ${seen[role][i]} times`);
          assert.notEqual(results[role][i].error?.code, 'E_DELIVERY', `${role} case ${i}: ${results[role][i].error?.message}`);
        }
      }
    } finally {
      await dispatcher.close();
      await observer.close();
      if (worker && worker.child.exitCode === null) {
        worker.child.kill('SIGTERM');
        await until('the worker to exit', () => worker!.child.exitCode !== null || worker!.child.signalCode !== null, 20_000);
      }
    }
  });

  it('two worker processes, one killed mid-run: every case accounted once, pass counts equal a local run', { timeout: 150_000 }, async (t) => {
    const started = Date.now();
    const n = 240;
    const seed = 7;
    const top = builtinTask('top_k')!;
    const taskUrl = pathToFileURL(top.task).href;
    const task = await loadTask(taskUrl);
    const job: JobSpec = {
      taskUrl,
      implUrls: { baseline: pathToFileURL(top.baseline).href, candidate: pathToFileURL(top.candidate).href },
      seed,
      // Generous: top_k's cases take microseconds, and a loaded machine must not turn them into timeouts.
      timeoutMs: 20_000,
      memMb: 256,
      cases: task.gen(n, seed),
    };
    const queueConfig = {
      backend: 'kafka',
      bootstrap_servers: mock.bootstrap,
      topic: 'mg-e2e',
      consumer_group: 'mg-e2e-workers',
      heartbeat_timeout: 6,
      heartbeat_check_interval: 0.5,
      batch_size: 4,
    };
    const a = spawnWorker('worker-a', queueConfig);
    const b = spawnWorker('worker-b', queueConfig);
    await until('both workers ready', () => a.events.some((e) => e.event === 'ready') && b.events.some((e) => e.event === 'ready'), 30_000).catch((err) => {
      throw new Error(`${(err as Error).message}\nworker-a: ${a.stderr()}\nworker-b: ${b.stderr()}`);
    });

    const config = validateQueueConfig(queueConfig);
    const logs = () =>
      ['coordinator', 'worker-a', 'worker-b']
        .map((name) => {
          const file = join(cacheRoot, `${name}.log`);
          return `--- ${name} (last lines)\n` + (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-25).join('\n') : '(no log)');
        })
        .join('\n');
    const dispatcher = new QueueDispatcher({ config, backend: new KafkaBackend(config), logger: createLogger({ file: join(cacheRoot, 'coordinator.log') }) });
    const seen: Record<Role, Uint16Array> = { baseline: new Uint16Array(n), candidate: new Uint16Array(n) };
    let finished = false;
    let killedAt = 0;
    let killedAfter = 0;
    let bBefore = 0;
    let results: Record<Role, CaseResult[]>;
    // Whatever fails, the dispatcher is closed: a run left going would keep this process alive.
    try {
      const running = dispatcher.run(job, { onResult: (role, r) => seen[role][r.index]++ }).finally(() => (finished = true));
      running.catch(() => {});
      await until('worker-a to complete a batch', () => a.batches() > 0, 40_000).catch((err) => {
        throw new Error(`${(err as Error).message}\nworker-a: ${a.stderr()}\nworker-b: ${b.stderr()}`);
      });
      assert.equal(finished, false, 'killed mid-run');
      a.child.kill('SIGKILL');
      killedAt = Date.now();
      killedAfter = a.batches();
      bBefore = b.batches();
      // Under the test's own timeout, so a stuck run fails with the logs and still closes everything.
      results = await deadline(running, 60_000, () => `the run did not finish within 60 s of the kill\n${logs()}`);
    } finally {
      await dispatcher.close();
    }
    t.diagnostic(
      `worker-a killed after ${killedAfter} batches at ${((killedAt - started) / 1000).toFixed(1)} s; worker-b ran ${bBefore} before, ${b.batches() - bBefore} after; ` +
        `run finished ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill; duplicates dropped: ${dispatcher.duplicatesDropped}`,
    );
    assert.ok(b.batches() > bBefore, 'the survivor went on');
    assert.ok(killedAfter > 0);

    for (const role of ['baseline', 'candidate'] as const) {
      assert.equal(results[role].length, n);
      for (let i = 0; i < n; i++) {
        assert.equal(seen[role][i], 1, `${role} case ${i} accounted ${seen[role][i]} times`);
        assert.equal(results[role][i]?.index, i);
        assert.notEqual(results[role][i].error?.code, 'E_DELIVERY', `${role} case ${i} was not delivered: ${results[role][i].error?.message}`);
      }
    }

    const local = new LocalDispatcher({ threads: 2, env: process.env });
    let expected: Record<Role, CaseResult[]>;
    try {
      expected = await local.run(job);
    } finally {
      await local.close();
    }
    for (const role of ['baseline', 'candidate'] as const) {
      const outcomes = (rs: CaseResult[]) => JSON.stringify(rs.reduce<Record<string, number>>((h, r) => ((h[r.passed ? 'pass' : (r.error?.code ?? 'fail')] = (h[r.passed ? 'pass' : (r.error?.code ?? 'fail')] ?? 0) + 1), h), {}));
      assert.equal(passes(results[role]), passes(expected[role]), `${role} pass count over kafka (${outcomes(results[role])}) equals the local run (${outcomes(expected[role])})`);
      assert.deepEqual(results[role].map((r) => r.passed), expected[role].map((r) => r.passed), `${role} per-case outcomes`);
    }
    assert.ok(passes(expected.candidate) > passes(expected.baseline), 'top_k: the candidate is the better one');

    b.child.kill('SIGTERM');
    await until('worker-b to drain and exit', () => b.child.exitCode !== null, 20_000);
    assert.equal(b.child.exitCode, 0);
  });
});

function passes(rs: CaseResult[]): number {
  return rs.filter((r) => r.passed).length;
}
