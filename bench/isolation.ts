/**
 * The cost of isolation: (1) starting a pair of role pools and getting the first result from each —
 * what a worker pays each time a new job (or artifact pair) arrives, since threads are never reused
 * across jobs; (2) end-to-end throughput of a local evaluation with case threads and with case
 * processes (`--isolation process`: permission model + prlimit).
 *
 *   node --import tsx bench/isolation.ts [--n 20000] [--starts 5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { createRolePools, type Isolation } from '../src/execution/pools.ts';
import { findPrlimit } from '../src/execution/process-pool.ts';
import { builtinTask } from '../src/task/builtin.ts';
import { printTable } from './table.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '20000' }, starts: { type: 'string', default: '5' } } });
const n = Number(values.n);
const modes: Isolation[] = findPrlimit() ? ['thread', 'process'] : ['thread'];
if (modes.length === 1) process.stderr.write('bench: prlimit not found, skipping the process rows\n');
const sum = builtinTask('sum')!;

async function coldStartMs(isolation: Isolation): Promise<number> {
  const started = performance.now();
  const pools = createRolePools(2, { timeoutMs: 2000, memMb: 128 }, { isolation, readPaths: [join(sum.task, '..')] });
  await Promise.all(
    (['baseline', 'candidate'] as const).map((role) =>
      pools[role].runChunk({ taskUrl: pathToFileURL(sum.task).href, implUrl: pathToFileURL(sum[role]).href, seed: 1, cases: [{ index: 0, args: [[1, 2, 3]] }] }),
    ),
  );
  const ms = performance.now() - started;
  await Promise.all([pools.baseline.destroy(), pools.candidate.destroy()]);
  return ms;
}

async function throughput(isolation: Isolation): Promise<{ seconds: number; cases_per_sec: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-bench-'));
  try {
    const options = resolveEvaluateOptions({ values: { task: 'sum', n, parallel: 2, isolation, reportDir: dir }, env: {} });
    const started = performance.now();
    await runEvaluation(options);
    const seconds = (performance.now() - started) / 1000;
    return { seconds: Number(seconds.toFixed(2)), cases_per_sec: Math.round((2 * n) / seconds) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const startRows: Record<string, string | number>[] = [];
for (const mode of modes) {
  await coldStartMs(mode); // warm-up: module loading in this process
  const times: number[] = [];
  for (let i = 0; i < Number(values.starts); i++) times.push(await coldStartMs(mode));
  times.sort((a, b) => a - b);
  startRows.push({ isolation: mode, starts: times.length, median_ms: Math.round(times[times.length >> 1]), max_ms: Math.round(times.at(-1)!) });
}
printTable('Fresh role pools (2 threads: one per role) until each role has its first result: paid once per job on a worker', startRows);

const rows: Record<string, string | number>[] = [];
await throughput('thread'); // warm-up
for (const mode of modes) rows.push({ isolation: mode, threads: 2, cases: 2 * n, ...(await throughput(mode)) });
const ref = rows[0].cases_per_sec as number;
printTable(
  `Local evaluation throughput by isolation, trivial task, n=${n} per role`,
  rows.map((r) => ({ ...r, vs_thread: `${((r.cases_per_sec as number) / ref).toFixed(2)}x` })),
);
