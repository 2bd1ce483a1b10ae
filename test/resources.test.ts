/**
 * Resource safety of case execution (src/execution/pool.ts, pools.ts, limits.ts; src/daemon/daemon.ts):
 * - no per-chunk growth of a thread's heap (the per-chunk MessagePort leaked ~1.2 KB per chunk);
 * - pool sets stay bounded: a worker serving many jobs with different limits keeps its OS thread
 *   count within its threads plus a small constant;
 * - every result fits: a 30 MB error message is cut to size, and a results frame is compacted under
 *   its budget;
 * - a case calling process.kill on the daemon or throwing a 30 MB error does not end the daemon.
 *
 * Throughput and long-run memory are measured by `npm run bench:soak`, never asserted here.
 * Run: node --import tsx --test test/resources.test.ts
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CasePool } from '../src/execution/pool.ts';
import { PoolSet, splitThreads } from '../src/execution/pools.ts';
import { boundResult, MAX_MESSAGE_CHARS, MAX_NAMES, MAX_RESULT_BYTES, truncate } from '../src/execution/limits.ts';
import { decodeResults, encodeResultFrames } from '../src/queue/messages.ts';
import { createCodec } from '../src/codec/index.ts';
import { redisAvailable } from './helpers/redis-server.ts';
import { fixture, queueReport, redisSuite, type RunOptions, spawnWorker } from './helpers/queue-harness.ts';

const realm = (name: string) => fixture(`realm/${name}`);
const url = (p: string) => pathToFileURL(p).href;

describe('no per-chunk leak', () => {
  it("a thread's heap after GC does not grow with the number of chunks it ran", async () => {
    const pool = new CasePool({ threads: 1, timeoutMs: 2000, memMb: 128 });
    try {
      const spec = (i: number) => ({ taskUrl: url(realm('task.mjs')), implUrl: url(realm('baseline.mjs')), seed: 1, cases: [{ index: i, args: [[3, 1, 2]] }] });
      for (let i = 0; i < 500; i++) await pool.runChunk(spec(i));
      const warm = await pool.heapAfterGc();
      const chunks = 4000;
      for (let i = 0; i < chunks; i++) await pool.runChunk(spec(i));
      const grown = (await pool.heapAfterGc()) - warm;
      // The leak this guards against was ~1.2 KB per chunk (~4.8 MB here); allow 300 B per chunk of noise.
      assert.ok(grown < chunks * 300, `thread heap grew by ${grown} bytes over ${chunks} chunks (${(grown / chunks).toFixed(0)} B/chunk)`);
    } finally {
      await pool.close();
    }
  });
});

describe('bounded pool set', () => {
  it('never holds more than maxPools pools, retires the least recently used idle one, and waits while all are busy', async () => {
    const set = new PoolSet({ threadsPerPool: 1, maxPools: 2, idleS: 0.05 });
    try {
      const limits = (t: number) => ({ timeoutMs: t, memMb: 64 });
      const a = await set.acquire('a', limits(1000));
      const b = await set.acquire('b', limits(1100));
      let gotC = false;
      const c = set.acquire('c', limits(1200)).then((p) => ((gotC = true), p));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(gotC, false, 'a third pool waits while both are held');
      set.release('a');
      const poolC = await c;
      assert.notEqual(poolC, a);
      assert.equal(a.closed, true, 'the idle pool was retired');
      assert.equal(set.pools.length, 2);
      assert.equal(await set.acquire('b', limits(1100)), b, 'a held key returns its pool');
      set.release('b');
      set.release('b');
      set.release('c');
      await new Promise((r) => setTimeout(r, 100));
      await set.sweep();
      assert.equal(set.pools.length, 0, 'idle pools are closed by the sweep');
      assert.equal(set.created, 3);
      assert.equal(set.retired, 3);
    } finally {
      await set.destroy();
    }
  });

  it('splits a thread budget between the two roles without exceeding it by more than one', () => {
    for (const threads of [1, 2, 3, 4, 7, 8, 64]) {
      const { threadsPerPool, maxPools } = splitThreads(threads);
      assert.ok(maxPools >= 2);
      assert.ok(threadsPerPool * maxPools <= Math.max(2, threads + 1), `${threads}: ${threadsPerPool} x ${maxPools}`);
    }
  });
});

describe('every result fits', () => {
  it('boundResult cuts messages, previews and name lists, and drops unknown fields and bad codes', () => {
    const r = boundResult({
      index: 3,
      passed: true,
      durationMs: 1,
      error: { code: 'EVIL CODE', message: 'E'.repeat(1e6) },
      propViolations: Array.from({ length: 1000 }, (_, i) => 'p'.repeat(500) + i),
      output: 'o'.repeat(1e5),
      extra: 'x'.repeat(1e6),
    })!;
    assert.equal(r.passed, false, 'a result with an error does not pass');
    assert.equal(r.error!.code, 'E_THROW');
    assert.ok(r.error!.message.length <= MAX_MESSAGE_CHARS && /truncated/.test(r.error!.message));
    assert.equal(r.propViolations!.length, MAX_NAMES + 1);
    assert.ok(!('extra' in r));
    assert.ok(JSON.stringify(r).length <= MAX_RESULT_BYTES, `${JSON.stringify(r).length} bytes`);
    assert.equal(boundResult({ index: -1, passed: true }), null);
    assert.equal(boundResult({ index: 1, passed: 'yes' }), null);
    assert.equal(truncate('ab', 5), 'ab');
  });

  it('results over the frame limit are split into frames under it instead of failing', () => {
    const codec = createCodec({ compress: false });
    const results = Array.from({ length: 200 }, (_, i) => ({ index: i, passed: false, durationMs: 1, error: { code: 'E_THROW', message: 'm'.repeat(1000) }, output: 'o'.repeat(200) }));
    const frames = encodeResultFrames(codec, results, 65_536);
    assert.ok(frames.length > 1 && frames.every((f) => f.byteLength <= 65_536), frames.map((f) => f.byteLength).join());
    const back = frames.flatMap((f) => decodeResults(codec, f));
    assert.deepEqual(back, results, 'every result whole, in order');
  });

  it('a 30 MB error message comes back from a thread cut to size', async () => {
    const pool = new CasePool({ threads: 1, timeoutMs: 10_000, memMb: 256 });
    try {
      const [r] = await pool.runChunk({ taskUrl: url(realm('task.mjs')), implUrl: url(realm('huge-error.mjs')), seed: 1, cases: [{ index: 0, args: [[1]] }] });
      assert.equal(r.error?.code, 'E_THROW');
      assert.ok(r.error!.message.length <= MAX_MESSAGE_CHARS, `${r.error!.message.length} chars`);
    } finally {
      await pool.close();
    }
  });
});

const osThreads = (pid: number) => Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describe('worker daemon over Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  const redis = redisSuite();
  const config = () => redis.queueConfig('res', { lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10 });
  const sorting: RunOptions = { task: realm('task.mjs'), baseline: realm('baseline.mjs'), candidate: realm('baseline.mjs'), n: 20 };

  it('keeps its OS thread count bounded across jobs with different limits', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      await queueReport({ ...sorting, timeoutS: 3 }, qc);
      const first = osThreads(w.child.pid!);
      for (const timeoutS of [4, 5, 6, 7, 8]) await queueReport({ ...sorting, timeoutS }, qc);
      const last = osThreads(w.child.pid!);
      // Before pools were bounded, each new (timeout, mem) pair added a pool of 2 threads for good.
      assert.ok(last <= first + 2, `OS threads ${first} after the first job, ${last} after six`);
    } finally {
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    }
  });

  it('survives a case that kills its process and a case that throws a 30 MB error', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      const killed = await queueReport({ ...sorting, candidate: realm('killer.mjs') }, qc);
      assert.equal(killed.candidate.pass_rate, 1, JSON.stringify(killed.candidate));
      const huge = await queueReport({ ...sorting, candidate: realm('huge-error.mjs'), timeoutS: 20 }, qc);
      assert.equal(huge.candidate.errors.E_THROW, 20, JSON.stringify(huge.candidate));
      assert.equal(w.child.exitCode, null, 'the worker is still running');
    } finally {
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output().slice(-2000));
    }
  });
});
