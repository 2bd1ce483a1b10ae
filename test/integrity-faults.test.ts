/**
 * Fault tests of integrity under attack (issue 12): someone with write access to Redis forges or
 * corrupts what the coordinator reads back, loses its state, or fills its memory. Each test is named
 * after what it attacks, runs against a real redis-server on a free port with worker daemons as real
 * processes (and against a Kafka-protocol broker where the attack applies), and checks that the verdict is the one a local run gives (or that the run stops with a
 * coded error) — never a forged verdict, never a hang.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, redisAvailable, type RedisServer } from './helpers/redis-server.ts';
import { assertSameVerdict, fixture, killAllWorkers, localReport, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';
import { runCli } from './helpers/run-cli.ts';
import { kafkaMockUnavailable, startKafkaMock, type KafkaMock } from './helpers/kafka-broker.ts';
import { Kafka, logLevel } from 'kafkajs';
import { createCodec } from '../src/codec/index.ts';
import { decodeCases, encodeResults } from '../src/queue/messages.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { createBackend } from '../src/queue/index.ts';
import { RedisBackend } from '../src/queue/redis/backend.ts';
import { createLogger } from '../src/observe/log.ts';
import type { Backend, BatchMessage, JobManifest, ResultEntry } from '../src/queue/types.ts';
import type { QueueDispatcher } from '../src/dispatch/queue.ts';
import { until } from './helpers/poll.ts';

const skip = redisAvailable() ? false : 'redis-server is not installed';

/** A backend whose listed methods are replaced, everything else passed through (fault injection). */
function overriding(backend: Backend, methods: Partial<Record<keyof Backend, (...args: never[]) => unknown>>): Backend {
  return new Proxy(backend, {
    get(target, prop, receiver) {
      if (prop in methods) return methods[prop as keyof Backend];
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const codec = createCodec({ compress: true });
/** A results frame claiming every case of `indices` passed (or failed). */
const forgedFrame = (indices: number[], passed: boolean) => Buffer.from(encodeResults(codec, indices.map((index) => ({ index, passed, durationMs: 1 }))));
const indicesOf = (b: BatchMessage) => decodeCases(codec, b.payload).map((c) => c.index);

/** A log sink for a backend's malformed_record warnings. */
function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => (lines.push(JSON.parse(s)), true) } as unknown as NodeJS.WritableStream;
  return { logger: createLogger({ json: true, stream }), lines };
}

const worse: RunOptions = { task: fixture('slow/task.mjs'), baseline: fixture('slow/baseline.mjs'), candidate: fixture('slow/worse.mjs'), n: 40 };

describe('integrity under attack over Redis', { skip, concurrency: false }, () => {
  let redis: RedisServer;
  let raw: Redis;
  let expected: Awaited<ReturnType<typeof localReport>>;

  before(async () => {
    redis = await startRedis({ appendonly: false });
    raw = new Redis({ port: redis.port, lazyConnect: true });
    await raw.connect();
    expected = await localReport(worse);
    assert.equal(expected.decision.adopt, false, 'the worse candidate is rejected locally');
  });
  after(async () => {
    killAllWorkers();
    raw?.disconnect();
    await redis?.stop();
  });

  const config = (extra: object = {}) => ({
    backend: 'redis',
    connection: { host: '127.0.0.1', port: redis.port },
    queue: `t_${randomUUID().slice(0, 8)}`,
    lease_seconds: 2,
    heartbeat_check_interval: 0.25,
    heartbeat_timeout: 3,
    batch_size: 5,
    ...extra,
  });
  const prefix = (qc: { queue: string }) => `mg:{${qc.queue}}:`;

  it('forged results entries (hmac_key): a rejected candidate is not adopted', async () => {
    const qc = config({ hmac_key: 'k-' + randomUUID() });
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    // The attacker sees every batch as it is enqueued and answers it first: every candidate case
    // passed, every baseline case failed. A second forgery names a batch id that was never sent.
    const report = await queueReport(worse, qc, {
      onDispatcher: (x) => (d = x),
      wrap: (backend) =>
        overriding(backend, {
          enqueue: async (batches: BatchMessage[]) => {
            for (const b of batches) {
              const stream = `${prefix(qc)}results:${b.jobId}`;
              const indices = indicesOf(b);
              await raw.xadd(stream, '*', 'kind', 'results', 'batch', b.id, 'role', b.role, 'worker', 'attacker', 'frame', forgedFrame(indices, b.role === 'candidate'));
              await raw.xadd(stream, '*', 'kind', 'results', 'batch', `${b.jobId}:${b.role}:9${indices[0]}`, 'role', b.role, 'worker', 'attacker', 'frame', forgedFrame(indices, b.role === 'candidate'));
            }
            await backend.enqueue(batches);
          },
        }),
    });
    assertSameVerdict(report, expected);
    assert.equal(report.decision.adopt, false);
    assert.ok(d!.forged.bad_signature >= 16, `unsigned forgeries dropped (${JSON.stringify(d!.forged)})`);
    assert.ok(d!.forged.unknown_batch >= 16, `forgeries for batches never sent dropped (${JSON.stringify(d!.forged)})`);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('forged results entries without hmac_key: unknown batches, other roles and other indices are dropped', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    const report = await queueReport(worse, qc, {
      onDispatcher: (x) => (d = x),
      wrap: (backend) =>
        overriding(backend, {
          enqueue: async (batches: BatchMessage[]) => {
            for (const b of batches) {
              const stream = `${prefix(qc)}results:${b.jobId}`;
              const indices = indicesOf(b);
              const other = b.role === 'candidate' ? 'baseline' : 'candidate';
              // Never sent; sent as the other role; the right batch with indices it was not sent with.
              await raw.xadd(stream, '*', 'kind', 'results', 'batch', `${b.id}:x`, 'role', b.role, 'worker', 'attacker', 'frame', forgedFrame(indices, true));
              await raw.xadd(stream, '*', 'kind', 'results', 'batch', b.id, 'role', other, 'worker', 'attacker', 'frame', forgedFrame(indices, other === 'candidate'));
              await raw.xadd(stream, '*', 'kind', 'results', 'batch', b.id, 'role', b.role, 'worker', 'attacker', 'frame', forgedFrame(indices.map((i) => i + 1000), b.role === 'candidate'));
              // The right count, but one case twice and the last never: not the batch's cases.
              if (indices.length > 1) await raw.xadd(stream, '*', 'kind', 'results', 'batch', b.id, 'role', b.role, 'worker', 'attacker', 'frame', forgedFrame([...indices.slice(0, -1), indices[0]], b.role === 'candidate'));
            }
            await backend.enqueue(batches);
          },
        }),
    });
    assertSameVerdict(report, expected);
    assert.ok(d!.forged.unknown_batch >= 16 && d!.forged.wrong_role >= 16 && d!.forged.wrong_indices >= 32, JSON.stringify(d!.forged));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('forged dead letters (hmac_key) do not turn cases that ran into E_DELIVERY', async () => {
    const qc = config({ hmac_key: 'k-' + randomUUID() });
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    const report = await queueReport(worse, qc, {
      onDispatcher: (x) => (d = x),
      wrap: (backend) =>
        overriding(backend, {
          enqueue: async (batches: BatchMessage[]) => {
            await backend.enqueue(batches);
            for (const b of batches) {
              await raw.xadd(`${prefix(qc)}results:${b.jobId}`, '*', 'kind', 'dead', 'batch', b.id, 'role', b.role, 'reason', 'forged', 'mac', '0'.repeat(64));
            }
          },
        }),
    });
    assertSameVerdict(report, expected);
    assert.equal(report.candidate.errors.E_DELIVERY ?? 0, 0);
    assert.ok(d!.forged.bad_signature >= 16, JSON.stringify(d!.forged));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('roles swapped in the job manifest (hmac_key): workers refuse it, nothing runs under the wrong role', async () => {
    const qc = config({ hmac_key: 'k-' + randomUUID() });
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const small: RunOptions = { ...worse, n: 10 };
    const report = await queueReport(small, qc, {
      wrap: (backend) =>
        overriding(backend, {
          putJob: async (m: JobManifest) => {
            await backend.putJob(m);
            const swapped = { ...m, implementations: { baseline: m.implementations.candidate, candidate: m.implementations.baseline } };
            await raw.set(`${prefix(qc)}job:${m.jobId}`, JSON.stringify(swapped));
          },
        }),
    });
    // Every case is undeliverable (no verdict can be drawn from it), none ran under a swapped role.
    assert.equal(report.baseline.errors.E_DELIVERY, 10);
    assert.equal(report.candidate.errors.E_DELIVERY, 10);
    assert.equal(report.decision.adopt, false);
    await until('the worker dead-letters with MG_ERR_HMAC naming the manifest', () => /"event":"dead_lettered"[^\n]*MG_ERR_HMAC[^\n]*manifest/.test(w.output()), 10_000);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  for (const signed of [false, true]) {
    it(`a results frame with a flipped byte${signed ? ' (hmac_key)' : ''} sends its batch back; the run does not hang`, async () => {
      const qc = config(signed ? { hmac_key: 'k-' + randomUUID() } : {});
      const w = spawnWorker(qc, { args: ['--threads', '2'] });
      let d: QueueDispatcher | undefined;
      let flipped = 0;
      const started = Date.now();
      const report = await queueReport(worse, qc, {
        onDispatcher: (x) => (d = x),
        wrap: (backend) =>
          overriding(backend, {
            readResults: async (jobId: string, cursor: string, blockMs: number) => {
              const read = await backend.readResults(jobId, cursor, blockMs);
              const entries = read.entries.map((e): ResultEntry => {
                if (e.kind !== 'results' || flipped >= 2) return e;
                flipped++;
                const frame = Buffer.from(e.frame);
                frame[frame.length - 3] ^= 0x40;
                return { ...e, frame };
              });
              return { cursor: read.cursor, entries };
            },
          }),
      });
      assert.equal(flipped, 2);
      assertSameVerdict(report, expected);
      assert.ok(Date.now() - started < 60_000);
      const reason = signed ? 'bad_signature' : 'undecodable';
      assert.equal(d!.forged[reason], 2, JSON.stringify(d!.forged));
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    });
  }

  it('Redis killed without persistence and restarted mid-run: lost batches, manifest and artifacts are republished', async () => {
    const lossy = await startRedis({ appendonly: false });
    try {
      const qc = { ...config(), connection: { host: '127.0.0.1', port: lossy.port } };
      const w = spawnWorker(qc, { args: ['--threads', '2'] });
      let d: QueueDispatcher | undefined;
      let outage: Promise<void> | undefined;
      const long: RunOptions = { ...worse, n: 120 };
      const expectedLong = await localReport(long);
      const report = await queueReport(long, qc, {
        onDispatcher: (x) => (d = x),
        onProgress: (done, total) => {
          if (!outage && done > total * 0.3) {
            outage = (async () => {
              await lossy.kill9();
              await lossy.restart();
            })();
          }
        },
      });
      assert.ok(outage, 'redis was killed mid-run');
      await outage;
      assertSameVerdict(report, expectedLong);
      assert.ok(d!.batchesLost > 0, 'lost batches were detected and republished');
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    } finally {
      await lossy.stop();
    }
  });

  it('a retried enqueue never duplicates a batch id', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let failures = 0;
    // Every enqueue commits, then reports a failure once: the coordinator retries it.
    const report = await queueReport(worse, qc, {
      wrap: (backend) =>
        overriding(backend, {
          enqueue: async (batches: BatchMessage[]) => {
            await backend.enqueue(batches);
            if (batches.some((b) => !(b as { retried?: boolean }).retried)) {
              for (const b of batches) (b as { retried?: boolean }).retried = true;
              failures++;
              const { MetaguardError } = await import('../src/errors.ts');
              throw new MetaguardError('MG_ERR_BACKEND', 'connection reset after the script ran (injected)');
            }
          },
        }),
    });
    assert.ok(failures > 0);
    assertSameVerdict(report, expected);
    const stats = await (async () => {
      const b = await createBackend(validateQueueConfig(qc));
      await b.connect();
      const s = await b.stats();
      await b.close();
      return s;
    })();
    assert.equal(stats.dispatched, 16, `each of the 16 batches was added once (dispatched ${stats.dispatched})`);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('Redis maxmemory: the OOM is reported as such, naming maxmemory and maxmemory-policy, and the run exits 2', async () => {
    const full = await startRedis({ appendonly: false });
    const c = new Redis({ port: full.port, lazyConnect: true });
    try {
      await c.connect();
      await c.set('ballast', 'x'.repeat(3 * 1024 * 1024));
      await c.config('SET', 'maxmemory', String(2 * 1024 * 1024));
      const qc = { ...config(), connection: { host: '127.0.0.1', port: full.port } };
      const dir = mkdtempSync(join(tmpdir(), 'mg-oom-'));
      const started = Date.now();
      const r = await runCli(
        ['evaluate', '--task', worse.task, '--baseline', worse.baseline, '--candidate', worse.candidate, '--n', '20', '--dispatcher', 'queue', '--queue-config', JSON.stringify(qc), '--report-dir', dir],
        { cwd: dir, timeoutMs: 60_000 },
      );
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /MG_ERR_BACKEND_OOM|out of memory/);
      assert.match(r.stderr, /maxmemory 2097152 bytes/);
      assert.match(r.stderr, /maxmemory-policy noeviction/);
      assert.ok(Date.now() - started < 30_000, 'no retrying forever');
    } finally {
      c.disconnect();
      await full.stop();
    }
  });

  it('an evicting maxmemory-policy gets a warning at start', async () => {
    const qc = config();
    await raw.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      const backend = new RedisBackend(validateQueueConfig(qc));
      await backend.connect();
      const notices = await backend.preflight();
      await backend.close();
      assert.equal(notices.length, 1);
      assert.equal(notices[0].event, 'redis_eviction_policy');
      assert.match(notices[0].message, /allkeys-lru/);
      const w = spawnWorker(qc, { args: ['--threads', '1'] });
      await until('the worker started', () => /"event":"worker_started"/.test(w.output()), 30_000);
      assert.match(w.output(), /"event":"redis_eviction_policy"[^\n]*allkeys-lru/, 'the worker warned at start');
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    } finally {
      await raw.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  it('malformed records read back are skipped with a coded log event: worker threads, counters, attempts, manifest limits', async () => {
    const qc = config();
    const p = prefix(qc);
    const { logger, lines } = captureLogger();
    const backend = new RedisBackend(validateQueueConfig(qc), { logger });
    await backend.connect();
    try {
      // A worker record with threads "q" (it made the coordinator's slot count NaN).
      const now = await backend.now();
      await raw.zadd(`${p}workers`, String(now), 'w-bad');
      await raw.set(`${p}worker:w-bad`, JSON.stringify({ host: 'h', pid: 1, threads: 'q', startedAt: now }));
      await backend.heartbeat({ workerId: 'w-good', host: 'h', pid: 2, threads: 3, startedAt: now });
      const workers = await backend.activeWorkers();
      assert.deepEqual(workers.map((x) => x.workerId), ['w-good']);
      assert.ok(lines.some((l) => l.event === 'malformed_record' && l.code === 'MG_ERR_MALFORMED_RECORD' && l.field === 'threads'), JSON.stringify(lines));

      // A non-numeric counter (it made every enqueue fail after pushing): enqueue goes on.
      await raw.hset(`${p}counters`, 'dispatched', 'many');
      const batch = (id: string): BatchMessage => ({ id, jobId: 'job1', role: 'baseline', priority: 'normal', payload: Buffer.from('x') });
      await backend.enqueue([batch('b1'), batch('b2')]);
      assert.equal((await backend.stats()).dispatched, 2);

      // An attempts field that is not a count (it kept a batch in flight forever): dead-lettered.
      await raw.hset(`${p}batch:b1`, 'attempts', 'abc');
      const claims = await backend.claimBatches('w-good', 2, 5000);
      const bad = claims.find((c) => !c.ok);
      assert.ok(bad && !bad.ok && /attempts/.test(bad.error.message), JSON.stringify(claims));
      await backend.deadLetter('w-good', 'b1', bad.error);
      assert.equal((await backend.stats()).inflight, 1);

      // Manifests whose limits no coordinator writes: memMb -5, "abc", 1e12.
      const good: JobManifest = {
        jobId: 'job1',
        task: { sha256: 'a'.repeat(64), ext: '.mjs', name: 't.mjs' },
        implementations: { baseline: { sha256: 'b'.repeat(64), ext: '.mjs', name: 'b.mjs' }, candidate: { sha256: 'c'.repeat(64), ext: '.mjs', name: 'c.mjs' } },
        seed: 1,
        timeoutMs: 2000,
        memMb: 256,
        createdAt: now,
      };
      await backend.putJob(good);
      assert.deepEqual(await backend.getJob('job1'), good);
      for (const memMb of [-5, 'abc', 1e12]) {
        await raw.set(`${p}job:job1`, JSON.stringify({ ...good, memMb }));
        await assert.rejects(backend.getJob('job1'), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_MALFORMED_RECORD' && /memMb/.test(err.message ?? ''));
      }
    } finally {
      await backend.close();
    }
  });

  it('a manifest with memMb -5 is dead-lettered by the worker with a coded reason, not run as E_OOM', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const small: RunOptions = { ...worse, n: 10 };
    const report = await queueReport(small, qc, {
      wrap: (backend) =>
        overriding(backend, {
          putJob: async (m: JobManifest) => {
            await backend.putJob(m);
            await raw.set(`${prefix(qc)}job:${m.jobId}`, JSON.stringify({ ...m, memMb: -5 }));
          },
        }),
    });
    assert.equal(report.candidate.errors.E_OOM ?? 0, 0);
    assert.equal(report.candidate.errors.E_DELIVERY, 10);
    await until('coded dead letter', () => /"event":"dead_lettered"[^\n]*MG_ERR_MALFORMED_RECORD[^\n]*memMb/.test(w.output()), 10_000);
    assert.match(w.output(), /"event":"malformed_record"/);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('different hmac_keys on coordinator and worker: no case is trusted, the run ends without a verdict', async () => {
    const qc = config({ hmac_key: 'coordinator-' + randomUUID(), max_requeue_attempts: 1 });
    const w = spawnWorker({ ...qc, hmac_key: 'worker-' + randomUUID() }, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    const small: RunOptions = { ...worse, n: 5 };
    const report = await queueReport(small, qc, { onDispatcher: (x) => (d = x) });
    assert.equal(report.baseline.errors.E_DELIVERY, 5);
    assert.equal(report.candidate.errors.E_DELIVERY, 5);
    assert.match(w.output(), /"event":"worker_started"[^\n]*"verifies_signatures":true/);
    assert.match(w.output(), /"event":"dead_lettered"[^\n]*"code":"MG_ERR_HMAC","retryable":false,"reason":"batch signature does not match/);
    // The worker's dead letters are signed with its own key: the coordinator cannot trust them either.
    assert.ok(d!.forged.bad_signature >= 2, JSON.stringify(d!.forged));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('lost state that cannot be republished stops the run with MG_ERR_QUEUE_STATE_LOST naming what was lost', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '1'] });
    let lose = false;
    const run = queueReport(worse, qc, {
      onProgress: (done) => {
        if (done >= 4) lose = true;
      },
      wrap: (backend) =>
        overriding(backend, {
          // After a few results, every outstanding batch is reported gone, and republishing fails
          // for a reason retrying cannot fix.
          missingBatches: async (ids: string[]) => (lose ? ids : backend.missingBatches!(ids)),
          enqueue: async (batches: BatchMessage[]) => {
            if (lose) {
              const { MetaguardError } = await import('../src/errors.ts');
              throw new MetaguardError('MG_ERR_BACKEND_OOM', 'redis is out of memory (injected)');
            }
            await backend.enqueue(batches);
          },
        }),
    });
    await assert.rejects(run, (err: { code?: string; message?: string }) => {
      assert.equal(err.code, 'MG_ERR_QUEUE_STATE_LOST', err.message);
      assert.match(err.message ?? '', /\d+ batches \(\d+ cases\) of job [\w-]+ vanished from the redis backend and could not be republished: redis is out of memory/);
      return true;
    });
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('hmac_key on the coordinator only: the worker says it does not verify and refuses signed batches with a coded dead letter', async () => {
    const qc = config({ hmac_key: 'k-' + randomUUID(), max_requeue_attempts: 1 });
    const { hmac_key: _key, ...workerQc } = qc as typeof qc & { hmac_key: string };
    const w = spawnWorker(workerQc, { args: ['--threads', '2'] });
    await until('the worker says at start it does not verify', () => /"event":"worker_started"[^\n]*"verifies_signatures":false/.test(w.output()), 30_000);
    const small: RunOptions = { ...worse, n: 5 };
    const started = Date.now();
    const report = await queueReport(small, qc);
    assert.equal(report.baseline.errors.E_DELIVERY, 5);
    assert.equal(report.candidate.errors.E_DELIVERY, 5);
    assert.ok(Date.now() - started < 60_000);
    assert.match(w.output(), /"event":"dead_lettered"[^\n]*"code":"MG_ERR_HMAC","retryable":false,"reason":"batch is signed but this worker has no hmac_key/);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });
});

describe('integrity under attack over Kafka', { skip: kafkaMockUnavailable() ?? false, concurrency: false }, () => {
  let mock: KafkaMock;
  let expected: Awaited<ReturnType<typeof localReport>>;
  const topics = ['mg-int-a', 'mg-int-b'];

  before(async () => {
    mock = await startKafkaMock({ partitions: 2, topics });
    expected = await localReport(worse);
  });
  after(async () => {
    killAllWorkers();
    await mock?.stop();
  });

  const config = (topic: string, extra: object = {}) => ({
    backend: 'kafka',
    bootstrap_servers: mock.bootstrap,
    topic,
    consumer_group: `${topic}-workers`,
    heartbeat_timeout: 6,
    heartbeat_check_interval: 0.5,
    batch_size: 5,
    ...extra,
  });

  it('forged results entries (hmac_key): a rejected candidate is not adopted', { timeout: 180_000 }, async () => {
    const qc = config(topics[0], { hmac_key: 'k-' + randomUUID() });
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const producer = new Kafka({ clientId: 'attacker', brokers: mock.bootstrap.split(','), logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    let d: QueueDispatcher | undefined;
    // A forged entry for a batch still waiting in the topic costs nothing (its real results come);
    // one for a batch already run sends it again (a forger who answers every copy can exhaust
    // max_requeue_attempts: E_DELIVERY, no verdict). This forger answers each batch id once.
    const forged = new Set<string>();
    try {
      const report = await queueReport(worse, qc, {
        onDispatcher: (x) => (d = x),
        wrap: (backend) =>
          overriding(backend, {
            enqueue: async (batches: BatchMessage[]) => {
              // Forgeries first, so they reach the coordinator before any worker's answer.
              const fresh = batches.filter((b) => !forged.has(b.id));
              for (const b of fresh) forged.add(b.id);
              if (fresh.length) await producer.send({
                topic: `${topics[0]}.results`,
                messages: fresh.map((b) => ({
                  key: b.jobId,
                  value: forgedFrame(indicesOf(b), b.role === 'candidate'),
                  headers: { kind: 'results', batch: b.id, role: b.role, worker: 'attacker' },
                })),
              });
              await backend.enqueue(batches);
            },
          }),
      });
      assertSameVerdict(report, expected);
      assert.ok(d!.forged.bad_signature >= 16, JSON.stringify(d!.forged));
    } finally {
      await producer.disconnect();
    }
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  it('a results frame with a flipped byte sends its batch back; the run does not hang', { timeout: 180_000 }, async () => {
    const qc = config(topics[1]);
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    let flipped = 0;
    const report = await queueReport(worse, qc, {
      onDispatcher: (x) => (d = x),
      wrap: (backend) =>
        overriding(backend, {
          readResults: async (jobId: string, cursor: string, blockMs: number) => {
            const read = await backend.readResults(jobId, cursor, blockMs);
            const entries = read.entries.map((e): ResultEntry => {
              if (e.kind !== 'results' || flipped >= 1) return e;
              flipped++;
              const frame = Buffer.from(e.frame);
              frame[frame.length - 3] ^= 0x40;
              return { ...e, frame };
            });
            return { cursor: read.cursor, entries };
          },
        }),
    });
    assert.equal(flipped, 1);
    assertSameVerdict(report, expected);
    assert.equal(d!.forged.undecodable, 1);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });
});
