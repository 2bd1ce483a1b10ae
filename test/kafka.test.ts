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
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, Partitioners } from 'kafkajs';

import { KafkaBackend } from '../src/queue/kafka/backend.js';
import { validateQueueConfig, type QueueConfig } from '../src/options/queue.js';
import type { BatchMessage, Claim, ClaimedBatch, JobManifest, ResultEntry } from '../src/queue/types.js';
import { startWorker } from '../src/daemon/daemon.js';
import { QueueDispatcher } from '../src/dispatch/queue.js';
import { LocalDispatcher } from '../src/dispatch/local.js';
import type { JobSpec } from '../src/dispatch/types.js';
import { createLogger } from '../src/observe/log.js';
import { builtinTask } from '../src/task/builtin.js';
import { loadTask } from '../src/task/load.js';
import { startKafkaMock, type KafkaMock } from './helpers/kafka-broker.js';
import type { Role, CaseResult } from '../src/core/protocol.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const unavailable = false; // startKafkaMock() fails naming the packages when the mock broker cannot be built
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

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
  }, timeoutMs, 0);
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
    }, 20_000, 20);
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
    assert.equal(garbage.reason, 'malformed batch: no id header');
    assert.equal(bad.find((b) => b.id === 'bad-role')!.reason, 'malformed batch: bad role');
    for (const b of bad) await worker.deadLetter('w1', b.id, b.reason);
    // A batch whose payload does not decode takes the daemon's path: deadLetter with the codec error.
    const good = ok(claims.find((cl) => cl.ok)!);
    await worker.deadLetter('w1', good.id, 'MG_ERR_CODEC: frame too short');

    const entries = await readAll(coord, 'job-p', 2);
    assert.deepEqual(
      entries.map((e) => [e.kind, e.batchId, e.kind === 'dead' ? e.reason : '']).sort(),
      [['dead', 'bad-role', 'malformed batch: bad role'], ['dead', good.id, 'MG_ERR_CODEC: frame too short']].sort(),
    );

    const dead = await coord.listDead();
    assert.deepEqual(dead.map((d) => d.id).sort(), [garbage.id, 'bad-role', good.id].sort());
    const codec = dead.find((d) => d.id === good.id)!;
    assert.equal(codec.reason, 'MG_ERR_CODEC: frame too short');
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
    await worker.releaseBatch('w1', b.id, { delayMs: 1500, countAttempt: true, reason: 'boom' });
    const second = ok((await claimN(worker, 'w1', 1))[0]);
    assert.ok(Date.now() - released >= 1400, `claimed again after ${Date.now() - released} ms, before its delay`);
    assert.equal(second.attempt, 2);
    assert.deepEqual([...second.payload], [...b.payload]);
    await worker.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: true, reason: 'boom' });

    const entries = await readAll(coord, 'job-r', 1);
    assert.deepEqual(entries, [{ kind: 'dead', batchId: b.id, reason: 'boom (gave up after 2 attempts)', role: b.role }]);
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
    await w1.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: false, reason: 'worker draining' });
    const again = ok((await w1.claimBatches('w1', 1, 60_000))[0]);
    assert.equal(again.id, b.id);
    assert.equal(again.attempt, 1, 'a hand-back is not an attempt');
    await w1.releaseBatch('w1', b.id, { delayMs: 0, countAttempt: false, reason: 'worker draining' });
    await w1.close();
    assert.equal((await coord.stats()).kafka.lag, 1, 'never committed');

    const w2 = await backend(c);
    const taken = ok((await claimN(w2, 'w2', 1))[0]);
    assert.equal(taken.id, b.id);
    assert.equal(await w2.completeBatch('w2', taken, Buffer.from('done')), true);
    const entries = await readAll(coord, 'job-h', 1);
    assert.equal(entries[0].kind === 'results' && entries[0].workerId, 'w2');
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
    // w2 joins; the group rebalances and w1 keeps only part of the partitions.
    const lost = await until('w1 to lose claims to the rebalance', async () => {
      claimed2.push(...(await w2.claimBatches('w2', 16, 60_000)).map(ok));
      const l = await w1.renewLeases('w1', held.map((b) => b.id), 60_000);
      return l.length > 0 && l;
    }, 20_000, 100);
    assert.ok(lost.length < 16, 'w1 keeps some partitions');
    const lostBatch = held.find((b) => b.id === lost[0])!;
    assert.equal(await w1.completeBatch('w1', lostBatch, Buffer.from('late')), false, 'no longer held, results published anyway');
    for (const b of held) if (!lost.includes(b.id)) assert.equal(await w1.completeBatch('w1', b, Buffer.from('w1')), true);

    await until('w2 to receive the revoked records', async () => {
      claimed2.push(...(await w2.claimBatches('w2', 16, 60_000)).map(ok));
      return lost.every((id) => claimed2.some((b) => b.id === id));
    });
    for (const b of claimed2) assert.equal(await w2.completeBatch('w2', b, Buffer.from('w2')), true);
    const entries = await readAll(coord, 'job-x', 16 + 1);
    for (const b of sent) assert.ok(entries.some((e) => e.batchId === b.id), `results of ${b.id}`);
    await until('all committed', async () => (await coord.stats()).kafka.lag === 0);
  });
});

describe('kafka end-to-end: an evaluation survives kill -9 of a worker', { skip: unavailable }, () => {
  let mock: KafkaMock;
  let cacheRoot: string;
  const children: ChildProcess[] = [];

  before(async () => {
    mock = await startKafkaMock({ partitions: 4, topics: ['mg-e2e'] });
    cacheRoot = mkdtempSync(join(tmpdir(), 'mg-kafka-e2e-'));
  });
  after(async () => {
    for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
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

    const local = new LocalDispatcher({ threads: 2 });
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
