/**
 * The case thread's own cost: the benchmark workload (bench/fixtures/sort) run (1) as a tight loop —
 * the implementation, the properties, the transforms and the comparisons, no copies, no isolation:
 * the limit one thread can reach — and (2) through the case thread's chunk runner (`runCases`) on this
 * thread, with its copies, results and timing. Prints µs per case and the ratio.
 *
 *   npm run build && node --import tsx bench/hotpath.ts [--n 100000] [--role baseline|candidate]
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { relationRng } from '../src/util/rng.ts';
import { printTable } from './table.ts';

export const sortFixture = {
  task: fileURLToPath(new URL('./fixtures/sort/task.mjs', import.meta.url)),
  baseline: fileURLToPath(new URL('./fixtures/sort/baseline.mjs', import.meta.url)),
  candidate: fileURLToPath(new URL('./fixtures/sort/candidate.mjs', import.meta.url)),
};

type Task = {
  gen(n: number, seed: number): unknown[][];
  properties: { check(out: unknown, ...args: unknown[]): boolean }[];
  relations: { transform(args: unknown[], rng: () => number): unknown[] }[];
};

function sameInts(a: unknown, b: unknown): boolean {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The case work of `cases` in a tight loop; returns µs per case. */
export async function tightLoopUs(cases: unknown[][], role: 'baseline' | 'candidate' = 'baseline', seed = 1): Promise<number> {
  const task = (await import(pathToFileURL(sortFixture.task).href)).default as Task;
  const solve = (await import(pathToFileURL(sortFixture[role]).href)).solve as (...a: unknown[]) => unknown;
  // The candidate sorts in place: even the tight loop gives it its own array (a slice, the least a
  // runner can do), or later relations would see sorted inputs.
  const own = role === 'candidate' ? (args: unknown[]) => [(args[0] as number[]).slice()] : (args: unknown[]) => args;
  let passed = 0;
  const run = () => {
    for (let i = 0; i < cases.length; i++) {
      const args = cases[i];
      const out = solve(...own(args));
      let ok = true;
      for (const p of task.properties) ok = p.check(out, ...args) === true && ok;
      for (let r = 0; r < task.relations.length; r++) {
        const follow = task.relations[r].transform(args, relationRng(seed, i, r));
        ok = sameInts(out, solve(...own(follow))) && ok;
      }
      if (ok) passed++;
    }
  };
  run(); // warm-up
  const started = performance.now();
  run();
  const us = ((performance.now() - started) * 1000) / cases.length;
  if (passed !== 2 * cases.length) throw new Error(`tight loop: ${passed / 2} of ${cases.length} cases passed`);
  return us;
}

/** The same cases through the case thread's chunk runner, on this thread; returns µs per case. */
export async function chunkRunnerUs(cases: unknown[][], role: 'baseline' | 'candidate' = 'baseline', seed = 1, chunk = 500): Promise<number> {
  // The built runner, as users run it (from source, tsx's esbuild wraps every function in `__name`).
  const built = new URL('../dist/src/case-runner/case-thread.js', import.meta.url);
  if (!existsSync(built)) throw new Error('bench/hotpath: the build is missing: run `npm run build` first');
  const { runCases } = (await import(built.href)) as typeof import('../src/case-runner/case-thread.ts');
  const inputs = cases.map((args, index) => ({ index, args }));
  let failed = 0;
  const post = (m: { t: string; results?: { passed: boolean }[] }) => {
    if (m.t === 'results') for (const r of m.results!) if (!r.passed) failed++;
  };
  const run = async () => {
    for (let i = 0; i < inputs.length; i += chunk) {
      await runCases({ taskUrl: pathToFileURL(sortFixture.task).href, implUrl: pathToFileURL(sortFixture[role]).href, seed, timeoutMs: 2000, cases: inputs.slice(i, i + chunk), token: 't' }, post as never, { threadId: 0, flushMs: 2 });
    }
  };
  await run();
  const started = performance.now();
  await run();
  const us = ((performance.now() - started) * 1000) / cases.length;
  if (failed) throw new Error(`chunk runner: ${failed} cases failed`);
  return us;
}

export async function genSortCases(n: number, seed = 1): Promise<unknown[][]> {
  const task = (await import(pathToFileURL(sortFixture.task).href)).default as Task;
  return task.gen(n, seed);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { n: { type: 'string', default: '100000' }, role: { type: 'string', default: 'baseline' } } });
  const role = values.role as 'baseline' | 'candidate';
  const cases = await genSortCases(Number(values.n));
  const tight = await tightLoopUs(cases, role);
  const runner = await chunkRunnerUs(cases, role);
  printTable(`Case thread hot path, sort workload, ${role}, n=${values.n} (one thread)`, [
    { path: 'tight loop (the limit)', us_per_case: Number(tight.toFixed(2)), ratio: '1.00x' },
    { path: 'chunk runner (runCases)', us_per_case: Number(runner.toFixed(2)), ratio: `${(runner / tight).toFixed(2)}x` },
  ]);
}
