/**
 * Case limits enforced by the case pool (src/execution/pool.ts, src/case-runner/case-thread.ts): time, memory,
 * throws, thread exits and import failures are per-case results; no case is lost or counted twice; the
 * pool keeps working after a thread is replaced; relation rngs replay exactly.
 *
 * Run: node --import tsx --test test/limits.test.ts
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { CasePool, timeoutSlackMs, type ChunkEvents } from '../src/execution/pool.js';
import { relationRng } from '../src/util/rng.js';
import type { CaseInput, CaseResult } from '../src/core/protocol.js';

const fixturesDir = fileURLToPath(new URL('./fixtures/', import.meta.url));
const fixtureUrl = (name: string) => pathToFileURL(join(fixturesDir, name)).href;
const taskUrl = fixtureUrl('length-task.mjs');

const TIMEOUT_MS = 300;

/** length-task's gen, imported directly so the tests know which cases trigger the faults. */
const { default: lengthTask } = (await import(taskUrl)) as { default: { gen(n: number, seed: number): unknown[][] } };

const rngTaskUrl = fixtureUrl('rng-task.mjs');
const { default: rngTask, shuffle } = (await import(rngTaskUrl)) as {
  default: { gen(n: number): unknown[][] };
  shuffle(xs: number[], rng: () => number): number[];
};

function casesOf(n: number, seed = 0, offset = 0): CaseInput[] {
  return lengthTask.gen(n, seed).map((args, i) => ({ index: offset + i, args }));
}

const isFaulty = (c: CaseInput) => (c.args[0] as number[])[0] < 0;

/** Every index of `cases` appears exactly once in `results`; returns results keyed by index. */
function byIndex(cases: CaseInput[], results: CaseResult[]): Map<number, CaseResult> {
  const seen = new Map<number, CaseResult>();
  for (const r of results) {
    assert.ok(!seen.has(r.index), `case ${r.index} has two results`);
    seen.set(r.index, r);
  }
  assert.deepEqual([...seen.keys()].sort((a, b) => a - b), cases.map((c) => c.index).sort((a, b) => a - b), 'results must cover every case exactly once');
  return seen;
}

/** Faulty cases fail with `code` (and a message matching `message`), every other case passes. */
function assertFaults(cases: CaseInput[], results: CaseResult[], code: string, message?: RegExp): void {
  const map = byIndex(cases, results);
  const faulty = cases.filter(isFaulty);
  assert.ok(faulty.length > 0, 'the chunk must contain at least one faulty case');
  for (const c of cases) {
    const r = map.get(c.index)!;
    if (isFaulty(c)) {
      assert.equal(r.passed, false, `case ${c.index} should fail`);
      assert.equal(r.error?.code, code, `case ${c.index}: ${JSON.stringify(r)}`);
      if (message) assert.match(r.error!.message, message);
    } else {
      assert.equal(r.error, undefined, `case ${c.index} should have no error: ${JSON.stringify(r)}`);
      assert.equal(r.passed, true, `case ${c.index} should pass: ${JSON.stringify(r)}`);
    }
  }
}

function assertAllPass(cases: CaseInput[], results: CaseResult[]): void {
  const map = byIndex(cases, results);
  for (const r of map.values()) assert.ok(r.passed && r.error === undefined, `case ${r.index} should pass: ${JSON.stringify(r)}`);
}

function recorder(): ChunkEvents & { results: CaseResult[]; restarts: string[] } {
  const results: CaseResult[] = [];
  const restarts: string[] = [];
  return { results, restarts, onResult: (r) => results.push(r), onRestart: (reason) => restarts.push(reason) };
}

describe('case limits (timeout 300 ms, 64 MiB, 2 threads)', () => {
  let pool: CasePool;
  before(() => {
    pool = new CasePool({ threads: 2, timeoutMs: TIMEOUT_MS, memMb: 64 });
  });
  after(() => pool.destroy());

  const run = (impl: string, cases: CaseInput[], events?: ChunkEvents) => pool.runChunk({ taskUrl, implUrl: fixtureUrl(impl), seed: 7, cases }, events);

  it('a good implementation passes every case (baseline for the fault tests)', async () => {
    // good.mjs is right on the fault-triggering cases too.
    const cases = casesOf(20);
    assertAllPass(cases, await run('good.mjs', cases));
  });

  it('loop.mjs: exactly the cases with a negative first value time out, every other case passes', async () => {
    const cases = casesOf(24); // cases 3, 13 and 23 loop
    assert.deepEqual(cases.filter(isFaulty).map((c) => c.index), [3, 13, 23]);
    const events = recorder();
    const results = await run('loop.mjs', cases, events);
    assertFaults(cases, results, 'E_TIMEOUT', /300 ms/);
    for (const r of results.filter((r) => r.error)) assert.ok(r.durationMs >= TIMEOUT_MS, `timed-out case ${r.index} lasted ${r.durationMs} ms`);
    assert.deepEqual(events.restarts, ['timeout', 'timeout', 'timeout'], 'one thread replacement per looping case');
    // onResult reports every case once too (the streamed results and the synthesized timeouts).
    byIndex(cases, events.results);
  });

  it('a chunk with one looping case finishes near the limit, and the pool keeps working', async () => {
    const cases = casesOf(10); // only case 3 loops
    assert.equal(cases.filter(isFaulty).length, 1);
    const started = performance.now();
    const results = await run('loop.mjs', cases);
    const elapsed = performance.now() - started;
    assertFaults(cases, results, 'E_TIMEOUT');
    assert.ok(elapsed >= TIMEOUT_MS, `the looping case must run until its limit (${elapsed.toFixed(0)} ms)`);
    assert.ok(elapsed < TIMEOUT_MS + timeoutSlackMs(TIMEOUT_MS) + 2000, `chunk took ${elapsed.toFixed(0)} ms for a ${TIMEOUT_MS} ms limit`);

    const good = casesOf(10, 3, 100);
    assertAllPass(good, await run('good.mjs', good));
  });

  it('a looping chunk and a good chunk running side by side do not disturb each other', async () => {
    const looping = casesOf(20);
    const good = casesOf(20, 1, 1000).filter((c) => !isFaulty(c));
    const [a, b] = await Promise.all([run('loop.mjs', looping), run('good.mjs', good)]);
    assertFaults(looping, a, 'E_TIMEOUT');
    assertAllPass(good, b);
  });

  it('never-resolves.mjs: an async implementation whose promise never settles times out', async () => {
    const cases = casesOf(14); // cases 3 and 13
    const events = recorder();
    const results = await run('never-resolves.mjs', cases, events);
    assertFaults(cases, results, 'E_TIMEOUT');
    assert.deepEqual(events.restarts, ['timeout', 'timeout']);
  });

  it('throws.mjs: E_THROW with the error message, no thread replaced', async () => {
    const cases = casesOf(20);
    const events = recorder();
    const results = await run('throws.mjs', cases, events);
    assertFaults(cases, results, 'E_THROW', /RangeError: negative first value/);
    assert.deepEqual(events.restarts, []);
  });

  it('exits.mjs: a thread that calls process.exit is E_CRASH for that case only', async () => {
    const cases = casesOf(20);
    const events = recorder();
    const results = await run('exits.mjs', cases, events);
    assertFaults(cases, results, 'E_CRASH', /exit/);
    assert.deepEqual(events.restarts, ['crash', 'crash']);
  });

  it('throws-at-import.mjs: every case carries the load error MG_ERR_MODULE_LOAD (a run-level error, not a crash)', async () => {
    const cases = casesOf(12);
    const results = await run('throws-at-import.mjs', cases);
    const map = byIndex(cases, results);
    for (const r of map.values()) {
      assert.equal(r.passed, false);
      assert.equal(r.error?.code, 'MG_ERR_MODULE_LOAD');
      assert.match(r.error!.message, /failed to load/);
      assert.match(r.error!.message, /broken module/);
    }
  });

  it('the pool still runs good chunks on both threads after all of the above', async () => {
    const a = casesOf(20, 4, 5000).filter((c) => !isFaulty(c));
    const b = casesOf(20, 5, 6000).filter((c) => !isFaulty(c));
    const [ra, rb] = await Promise.all([run('good.mjs', a), run('good.ts', b)]);
    assertAllPass(a, ra);
    assertAllPass(b, rb);
  });
});

describe('memory limit', () => {
  // Filling 64 MiB with heap-hog's 800 kB arrays takes ~0.4–0.9 s on a 2-core machine, longer than a
  // 300 ms case limit (the case then times out first), so this pool gives the case time to run out of heap.
  let pool: CasePool;
  before(() => {
    pool = new CasePool({ threads: 2, timeoutMs: 5000, memMb: 64 });
  });
  after(() => pool.destroy());

  it('heap-hog.mjs: E_OOM for the hogging cases, every other case passes, the pool recovers', async () => {
    const cases = casesOf(14); // cases 3 and 13
    const events = recorder();
    const results = await pool.runChunk({ taskUrl, implUrl: fixtureUrl('heap-hog.mjs'), seed: 7, cases }, events);
    assertFaults(cases, results, 'E_OOM', /64 MiB/);
    assert.deepEqual(events.restarts, ['oom', 'oom']);

    const good = casesOf(10, 2, 50).filter((c) => !isFaulty(c));
    assertAllPass(good, await pool.runChunk({ taskUrl, implUrl: fixtureUrl('good.mjs'), seed: 7, cases: good }));
  });
});

describe('relation rng determinism', () => {
  const implUrl = fixtureUrl('first-element.mjs');
  const cases: CaseInput[] = rngTask.gen(60).map((args, index) => ({ index, args }));

  let pool: CasePool;
  before(() => {
    pool = new CasePool({ threads: 2, timeoutMs: 2000, memMb: 128 });
  });
  after(() => pool.destroy());

  /** Runs the cases in chunks of `size`, concurrently, and returns the results sorted by index. */
  async function runAll(seed: number, size: number): Promise<CaseResult[]> {
    const chunks: CaseInput[][] = [];
    for (let i = 0; i < cases.length; i += size) chunks.push(cases.slice(i, i + size));
    const parts = await Promise.all(chunks.map((chunk) => pool.runChunk({ taskUrl: rngTaskUrl, implUrl, seed, cases: chunk })));
    const all = parts.flat().sort((a, b) => a.index - b.index);
    byIndex(cases, all);
    return all;
  }

  const outcome = (rs: CaseResult[]) => rs.map((r) => ({ index: r.index, passed: r.passed, mr: r.mrViolations ?? [], error: r.error }));

  it('two runs with the same seed give identical results, however the cases are chunked', async () => {
    const first = await runAll(11, 60);
    const second = await runAll(11, 7);
    assert.deepEqual(outcome(second), outcome(first));
    // The relations are not trivially satisfied: some cases pass and some fail.
    const passes = first.filter((r) => r.passed).length;
    assert.ok(passes > 0 && passes < cases.length, `expected a mix of passes and failures, got ${passes}/${cases.length}`);
  });

  it('the rng is seeded from (seed, case index, relation index)', async () => {
    const seed = 11;
    const results = await runAll(seed, 13);
    for (const c of cases) {
      const xs = c.args[0] as number[];
      const expectedViolations = ['shuffle_a', 'shuffle_b'].filter((_, r) => shuffle(xs, relationRng(seed, c.index, r))[0] !== xs[0]);
      const r = results[c.index];
      assert.deepEqual(r.mrViolations ?? [], expectedViolations, `case ${c.index}`);
      assert.equal(r.passed, expectedViolations.length === 0, `case ${c.index}`);
    }
  });

  it('another seed gives other relation outcomes (the seed reaches the rng)', async () => {
    const a = outcome(await runAll(11, 60));
    const b = outcome(await runAll(12, 60));
    assert.notDeepEqual(b, a);
  });
});
