/**
 * `--isolation process` (src/execution/process-pool.ts, src/case-runner/case-process.ts): cases run in child
 * processes under Node's permission model and prlimit. Each hostile act ends as a coded result and the
 * pool goes on: reads outside the package and the artifacts, writes, child processes and worker
 * threads are E_PERMISSION; a 3 GB off-heap Buffer is E_OOM; process.exit and process.abort are
 * E_CRASH; a busy loop is E_TIMEOUT. The environment is scrubbed as in threads. Through Redis, a
 * worker started with --isolation process gives the same verdicts.
 *
 * Needs the compiled package (npm run build) and prlimit (util-linux).
 * Run: node --import tsx --test test/process-isolation.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ProcessCasePool, deathReason, findPrlimit } from '../src/execution/process-pool.ts';
import { caseEnvironment } from '../src/execution/env.ts';
import { redisAvailable } from './helpers/redis-server.ts';
import { fixture, localReport, queueReport, redisSuite, type RunOptions, spawnWorker } from './helpers/queue-harness.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = !findPrlimit() ? 'prlimit is not installed' : !existsSync(join(root, 'dist', 'src', 'case-runner', 'case-process.js')) ? 'the package is not built (npm run build)' : false;
const url = (p: string) => pathToFileURL(p).href;
const probes = fixture('isolation/probes.mjs');

describe('the reason a case process died', () => {
  it('is the error line of what it printed, not the stack, the source excerpt or the version', () => {
    const uncaught = ['node:internal/deps/undici/undici:6054', '      return await WebAssembly.instantiate(mod, {', '                               ^', '', 'RangeError: WebAssembly.instantiate(): Out of memory: Cannot allocate Wasm memory for new instance', '    at lazyllhttp (node:internal/deps/undici/undici:6054:32)', '', 'Node.js v22.23.5', ''].join('\n');
    assert.equal(deathReason(uncaught), 'RangeError: WebAssembly.instantiate(): Out of memory: Cannot allocate Wasm memory for new instance');
    const v8 = ['<--- Last few GCs --->', '', 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory', '----- Native stack trace -----', '', ' 1: 0xe1a3c4 node::OOMErrorHandler(char const*, v8::OOMDetails const&) [node]', ' 2: 0x11d6d9e v8::Utils::ReportOOMFailure [node]'].join('\n');
    assert.equal(deathReason(v8), 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory');
    assert.equal(deathReason('Error [ERR_ACCESS_DENIED]: Access to this API has been restricted\n    at x (y:1:1)\n'), 'Error [ERR_ACCESS_DENIED]: Access to this API has been restricted');
    assert.equal(deathReason('something odd happened\n'), 'something odd happened');
    assert.equal(deathReason(''), '');
  });
});

describe('case processes', { skip }, () => {
  let pool: ProcessCasePool;
  before(() => {
    pool = new ProcessCasePool({
      threads: 1,
      timeoutMs: 1500,
      memMb: 64,
      readPaths: [dirname(probes), dirname(fixture('realm/task.mjs'))],
      env: caseEnvironment({ PATH: process.env.PATH, METAGUARD_QUEUE_CONFIG: '{"hmac_key":"topsecret"}' }),
    });
  });
  after(() => pool.destroy());

  it('turn each hostile act into a coded result and go on', async () => {
    const acts = ['ok', 'read', 'write', 'spawn', 'thread', 'offheap', 'exit', 'abort', 'loop', 'ok'];
    const results = await pool.runChunk({ taskUrl: url(fixture('isolation/task.mjs')), implUrl: url(probes), seed: 1, cases: acts.map((a, index) => ({ index, args: [a] })) });
    const byAct = Object.fromEntries(results.sort((a, b) => a.index - b.index).map((r) => [`${acts[r.index]}#${r.index}`, r.error?.code ?? (r.passed ? 'pass' : 'fail')]));
    assert.deepEqual(byAct, {
      'ok#0': 'pass',
      'read#1': 'E_PERMISSION',
      'write#2': 'E_PERMISSION',
      'spawn#3': 'E_PERMISSION',
      'thread#4': 'E_PERMISSION',
      'offheap#5': 'E_OOM',
      'exit#6': 'E_CRASH',
      'abort#7': 'E_CRASH',
      'loop#8': 'E_TIMEOUT',
      'ok#9': 'pass',
    });
  });

  it('run WebAssembly under the address-space limit, and say why a process died', async () => {
    // Node 22 backs a Wasm memory with a ~10 GiB reservation unless the trap handler is off: without
    // --disable-wasm-trap-handler every case process died at start there (undici's parser is Wasm).
    const acts = ['wasm', 'heap', 'ok'];
    const results = await pool.runChunk({ taskUrl: url(fixture('isolation/task.mjs')), implUrl: url(probes), seed: 1, cases: acts.map((a, index) => ({ index, args: [a] })) });
    const byIndex = results.sort((a, b) => a.index - b.index);
    assert.equal(byIndex[0].passed, true, JSON.stringify(byIndex[0]));
    assert.equal(byIndex[1].error?.code, 'E_OOM');
    // The OOM message carries what V8 printed as the process died, not only the classification.
    assert.match(byIndex[1].error!.message, /heap out of memory|Reached heap limit/i, byIndex[1].error!.message);
    assert.equal(byIndex[2].passed, true, JSON.stringify(byIndex[2]));
  });

  it('give a module that ends its process at import E_CRASH with the reason it printed', async () => {
    const results = await pool.runChunk({ taskUrl: url(fixture('isolation/task.mjs')), implUrl: url(fixture('isolation/dies-at-import.mjs')), seed: 1, cases: [0, 1].map((index) => ({ index, args: ['ok'] })) });
    assert.equal(results.length, 2);
    for (const r of results) {
      assert.equal(r.error?.code, 'E_CRASH', JSON.stringify(r));
      assert.match(r.error!.message, /exit code 9\): Error: the import-time reason this process gives for ending/, r.error!.message);
    }
  });

  it('see a scrubbed environment, no inspector, no signals', async () => {
    const [r] = await pool.runChunk({ taskUrl: url(fixture('realm/task.mjs')), implUrl: url(fixture('realm/env-probe.mjs')), seed: 1, cases: [{ index: 0, args: [[1]] }] });
    assert.deepEqual(JSON.parse(r.error!.message.slice('probe '.length)), { env: [], values: 0, inspector_import: 'refused', inspector_builtin: 'refused', binding: 'refused', kill: 'refused' });
  });
});

const sabotage: RunOptions = { task: fixture('realm/task.mjs'), baseline: fixture('realm/baseline.mjs'), candidate: fixture('realm/saboteur.mjs'), n: 40 };

describe('a task that imports metaguard', { skip: findPrlimit() ? false : 'prlimit is not installed' }, () => {
  for (const isolation of ['thread', 'process'] as const) {
    it(`loads and runs under --isolation ${isolation} (defineTask from the user-module entry, no native addon)`, async () => {
      const report = await localReport({ task: fixture('define-task.mjs'), baseline: fixture('realm/baseline.mjs'), candidate: fixture('realm/baseline.mjs'), n: 20, isolation });
      assert.equal(report.candidate.pass_rate, 1, JSON.stringify(report.candidate));
    });
  }
});

describe('a destroyed case process pool', { skip: findPrlimit() ? false : 'prlimit is not installed' }, () => {
  it('fails the chunks still waiting for a case process instead of leaving them (and close) waiting forever', async () => {
    const pool = new ProcessCasePool({ threads: 1, timeoutMs: 5000, memMb: 64, readPaths: [dirname(fixture('loop.mjs'))] });
    const chunk = (first: number) => pool.runChunk({ taskUrl: pathToFileURL(fixture('length-task.mjs')).href, implUrl: pathToFileURL(fixture('loop.mjs')).href, seed: 1, cases: [{ index: 0, args: [[first, 1]] }] });
    // The first chunk loops in the only case process; the second waits for it.
    const running = chunk(-1).then(() => 'settled', (e: { code?: string }) => e.code ?? 'rejected');
    const waiting = chunk(1).then(() => 'settled', (e: { code?: string }) => e.code ?? 'rejected');
    await new Promise((r) => setTimeout(r, 500));
    await pool.destroy();
    const outcome = await Promise.race([Promise.all([running, waiting]), new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000))]);
    assert.ok(Array.isArray(outcome), String(outcome));
    assert.equal(outcome[1], 'MG_ERR_POOL_CLOSED');
    const closed = await Promise.race([pool.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('close() still waiting after 5 s'), 5000))]);
    assert.equal(closed, 'closed');
  });
});

describe('evaluate --isolation process (local)', { skip }, () => {
  it('gives the same verdict as threads, with the saboteur kept out of the baseline', async () => {
    const report = await localReport({ ...sabotage, isolation: 'process' });
    assert.equal(report.baseline.pass_rate, 1, JSON.stringify(report.baseline));
    assert.equal(report.candidate.pass_rate, 1, JSON.stringify(report.candidate));
  });
});

describe('worker --isolation process over Redis', { skip: skip || (redisAvailable() ? false : 'redis-server is not installed'), concurrency: false }, () => {
  const redis = redisSuite();

  it('runs a job with every case accounted, a killer case ending as a result, and the daemon alive', async () => {
    const qc = redis.queueConfig('proc', { lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10 });
    const w = spawnWorker(qc, { args: ['--threads', '2'], env: { METAGUARD_ISOLATION: 'process' } });
    try {
      const report = await queueReport(sabotage, qc);
      assert.equal(report.baseline.pass_rate, 1, JSON.stringify(report.baseline));
      assert.equal(report.candidate.pass_rate, 1, JSON.stringify(report.candidate));
      const probed = await queueReport({ task: fixture('isolation/task.mjs'), baseline: fixture('realm/baseline.mjs'), candidate: probes, n: 10, timeoutS: 2 }, qc);
      assert.deepEqual(probed.candidate.errors, { E_PERMISSION: 4, E_OOM: 1, E_CRASH: 2, E_TIMEOUT: 1 }, JSON.stringify(probed.candidate));
      assert.equal(w.child.exitCode, null, 'the worker is still running');
      assert.match(w.output(), /"isolation":"process"/);
    } finally {
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output().slice(-2000));
    }
  });
});
