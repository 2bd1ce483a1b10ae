/**
 * The issue-15 table, one run: the benchmark workload (bench/fixtures/sort: sorting integer arrays of
 * length 0–49, two properties, two relations) through every path side by side —
 *
 *   limit          the case work in a tight loop on one thread, × 2 threads
 *   case thread    the chunk runner (runCases) on one thread, × 2
 *   local          metaguard's local dispatcher, 2 threads
 *   memory queue   the embedded queue, 2 in-process workers
 *   redis          one worker daemon × 2 threads on a redis-server started here: default batching
 *                  (adaptive, at most 100 cases) with the native codec; then `--batch-size` (1000: what
 *                  `metaguard bench` recommends for this workload here) with the native and the JS
 *                  codec; then two daemons × 1 thread (Redis CPU per case, the check of docs/scaling.md)
 *   bullmq         BullMQ on the same Redis: in-process processor (concurrency 100) and sandboxed
 *                  worker threads × 2, one job per case, same cases, no time or memory limits
 *
 * each with cases/s (both roles counted) and its share of the limit; then CPU µs per case of the
 * daemon, the coordinator and Redis on the Redis rows; the ratios against BullMQ; then the round trip
 * of one case through an idle Redis queue (p50/p99). Evaluations and daemons run from the build
 * (dist/), each in a process of its own, as users run them.
 *
 *   node --import tsx bench/throughput.ts [--n 100000] [--batch-size 1000] [--latency-samples 300] [--no-bullmq] [--json]
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { genSortCases, sortFixture } from './hotpath.ts';
import type { EvaluationRunner, ThroughputRow, Workload } from '../src/bench/throughput.ts';
import { printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '100000' },
    'latency-samples': { type: 'string', default: '300' },
    /** The fixed batch size of the tuned Redis rows: what `metaguard bench` recommends for this workload on this machine. */
    'batch-size': { type: 'string', default: '1000' },
    'no-bullmq': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const n = Number(values.n);
const tunedBatch = Number(values['batch-size']);
const w: Workload = { task: sortFixture.task, baseline: sortFixture.baseline, candidate: sortFixture.candidate, n, seed: 1 };
const threads = 2;
const rows: ThroughputRow[] = [];
const cpuRows: Record<string, string | number>[] = [];
const say = (s: string) => process.stderr.write(s + '\n');

// What users run: the coordinator and the daemons from the build, each in a process of its own (no
// tsx loader in them or their case threads).
const cliEntry = fileURLToPath(new URL('../bin/metaguard.js', import.meta.url));
const childEntry = fileURLToPath(new URL('./evaluate-child.mjs', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../dist/src/evaluate.js', import.meta.url)))) {
  say('bench: the build is missing: run `npm run build` first (npm run bench does)');
  process.exit(2);
}
// The limit and case-thread rows run the built case runner too: from source, tsx's esbuild wraps every
// function in a `__name` helper, which made the runner look ~20% slower than what users run.
const { evaluationRow, limitRow } = (await import('../dist/src/bench/throughput.js')) as typeof import('../src/bench/throughput.ts');
const cleanEnv = (extra: Record<string, string> = {}) => {
  const env: Record<string, string | undefined> = { ...process.env };
  // The batch size under test is the queue config's, not an environment file's.
  delete env.METAGUARD_BATCH_SIZE;
  delete env.METAGUARD_QUEUE_CONFIG;
  return { ...env, ...extra };
};
const inChild =
  (env: Record<string, string> = {}): EvaluationRunner =>
  (evaluateValues) =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [childEntry, JSON.stringify(evaluateValues)], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      child.once('exit', (code) => {
        const last = out.trim().split('\n').pop() ?? '';
        if (code !== 0 || !last.startsWith('{')) return reject(new Error(`evaluation exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
        const r = JSON.parse(last) as { seconds: number; cpu_ms: number };
        resolve({ seconds: r.seconds, cpuMs: r.cpu_ms });
      });
    });

interface Daemon {
  pid: number;
  stop(): Promise<void>;
}
/** `metaguard worker` from the build, with the queue config in its environment; resolves once it has started. */
function startDaemon(queueConfig: object, daemonThreads: number, env: Record<string, string> = {}): Promise<Daemon> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'mg-bench-cache-'));
  const child = spawn(process.execPath, [cliEntry, 'worker', '--threads', String(daemonThreads), '--log-json', '--cache-dir', cacheDir], {
    env: cleanEnv({ ...env, METAGUARD_QUEUE_CONFIG: JSON.stringify(queueConfig) }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      log += d;
      if (log.includes('"worker_started"')) resolve({ pid: child.pid!, stop: async () => (child.kill('SIGTERM'), await exited, rmSync(cacheDir, { recursive: true, force: true })) });
    });
    child.once('exit', (code) => reject(new Error(`metaguard worker exited with ${code}: ${log.trim().split('\n').slice(-3).join(' | ')}`)));
  });
}

const { row: limit, runnerRow, usPerCase, runnerUsPerCase } = await limitRow(w, threads);
rows.push(limit, runnerRow);
say(`limit: baseline ${usPerCase.baseline.toFixed(2)} µs, candidate ${usPerCase.candidate.toFixed(2)} µs per case; chunk runner: ${runnerUsPerCase.baseline.toFixed(2)} µs, ${runnerUsPerCase.candidate.toFixed(2)} µs`);
const L = limit.cases_per_sec;
const caseWork = Number(((usPerCase.baseline + usPerCase.candidate) / 2).toFixed(1));
const child = inChild();
await evaluationRow('warm-up', { ...w, n: 500 }, threads, { parallel: threads }, L, [], child);
rows.push(await evaluationRow('local (2 threads)', w, threads, { parallel: threads }, L, [], child));
say('local done');
rows.push(await evaluationRow('queue: memory (2 in-process workers)', w, threads, { dispatcher: 'queue', queueConfig: { backend: 'memory', spawn_local_workers: threads } }, L, [], child));
say('memory done');

const { redisAvailable, startRedis } = await import('../test/helpers/redis-server.ts');
let latency: { p50: number; p99: number; samples: number; redisUsPerBatch?: number } | undefined;
const ratios: Record<string, number> = {};
if (!redisAvailable()) {
  say('bench: redis-server not found, skipping the Redis and BullMQ rows');
} else {
  const { Redis } = await import('ioredis');
  const redis = await startRedis({ appendonly: false });
  const admin = new Redis({ port: redis.port, lazyConnect: true });
  await admin.connect();
  const redisCpuMs = async () => {
    const info = await admin.info('cpu');
    const get = (k: string) => Number(new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1] ?? 0);
    return (get('used_cpu_user') + get('used_cpu_sys')) * 1000;
  };
  const setups = [
    { native: true, daemons: 1, batch: undefined, latency: true },
    { native: true, daemons: 1, batch: tunedBatch },
    { native: false, daemons: 1, batch: tunedBatch },
    // Checks docs/scaling.md's projection: the same cases from two daemons, Redis CPU per case.
    { native: true, daemons: 2, batch: tunedBatch },
  ];
  const rateOf: Record<string, number> = {};
  try {
    for (const setup of setups) {
      const { native, daemons, batch } = setup;
      const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: `bench-${native ? 'native' : 'js'}-${daemons}-${batch ?? 'adaptive'}`, ...(batch ? { batch_size: batch } : {}) };
      const env: Record<string, string> = native ? {} : { METAGUARD_NATIVE: '0' };
      const perDaemon = Math.max(1, threads / daemons);
      const started = await Promise.all(Array.from({ length: daemons }, () => startDaemon(queueConfig, perDaemon, env)));
      const pids = started.map((d) => d.pid);
      const run = inChild(env);
      const path = `queue: redis, ${daemons} daemon${daemons > 1 ? 's' : ''} × ${perDaemon} thread${perDaemon > 1 ? 's' : ''}, ${native ? 'native' : 'JS'} codec, ${batch ? `batch_size ${batch}` : 'default batching (adaptive, ≤ 100)'}`;
      try {
        await evaluationRow('warm-up', { ...w, n: 2000 }, threads, { dispatcher: 'queue', queueConfig }, L, [], run);
        // Two evaluations, n/4 and n: CPU per case is the marginal cost between them, without what an
        // evaluation pays once (bundling, generating cases, starting pools, the report).
        const r0 = await redisCpuMs();
        const small = await evaluationRow(path, { ...w, n: Math.round(n / 4) }, threads, { dispatcher: 'queue', queueConfig }, L, pids, run);
        const r1 = await redisCpuMs();
        const row = await evaluationRow(path, w, threads, { dispatcher: 'queue', queueConfig }, L, pids, run);
        const r2 = await redisCpuMs();
        const extra = row.cases - small.cases;
        const marginal = (big: number, little: number) => Number((((big - little) * 1000) / extra).toFixed(1));
        rows.push(row);
        if (native && daemons === 1) rateOf[batch ? 'tuned' : 'default'] = row.cases_per_sec;
        cpuRows.push({
          path,
          daemon: marginal(row.daemon_cpu_ms!, small.daemon_cpu_ms!),
          coordinator: marginal(row.coordinator_cpu_ms!, small.coordinator_cpu_ms!),
          redis: marginal(r2 - r1, r1 - r0),
          case_work: caseWork,
          coordinator_whole_run: row.coordinator_us_per_case!,
        });
        if (setup.latency) {
          // Batches of one case: Redis CPU per batch (its fixed cost, docs/scaling.md).
          const l0 = await redisCpuMs();
          latency = await (await import('./latency.ts')).singleCaseLatency(queueConfig, Number(values['latency-samples']));
          latency.redisUsPerBatch = (((await redisCpuMs()) - l0) * 1000) / (latency.samples + 1);
        }
      } finally {
        await Promise.all(started.map((d) => d.stop()));
      }
      say(`${path} done`);
    }
    if (!values['no-bullmq']) {
      const { bullmqRow } = await import('./bullmq.ts');
      for (const mode of ['in-process', 'sandboxed'] as const) {
        const cases = await genSortCases(n);
        const r0 = await redisCpuMs();
        const r = await bullmqRow(redis.port, cases, mode, threads);
        const redisUs = ((await redisCpuMs()) - r0) * 1000 / r.cases;
        const rate = Math.round(r.cases / r.seconds);
        rows.push({ path: r.path, threads, cases: r.cases, seconds: Number(r.seconds.toFixed(2)), cases_per_sec: rate, share_of_limit: Number((rate / L).toFixed(3)) });
        cpuRows.push({ path: r.path, daemon: '-', coordinator: Number(r.cpuUsPerCase.toFixed(1)), redis: Number(redisUs.toFixed(1)), case_work: caseWork, coordinator_whole_run: '-' });
        for (const [k, v] of Object.entries(rateOf)) ratios[`metaguard redis (${k === 'tuned' ? `batch_size ${tunedBatch}` : 'default batching'}) ÷ bullmq ${mode}`] = Number((v / rate).toFixed(1));
        say(`bullmq ${mode} done`);
      }
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
}

if (values.json) {
  process.stdout.write(JSON.stringify({ rows, cpu_us_per_case: cpuRows, single_case_latency_ms: latency ?? null, ratios }, null, 2) + '\n');
} else {
  printTable(`Throughput, sort workload (bench/fixtures/sort), n=${n} per role, both roles counted`, rows.map((r) => ({ path: r.path, 'cases/s': r.cases_per_sec, share_of_limit: r.share_of_limit.toFixed(3) })));
  printTable(
    'CPU µs per case: metaguard rows marginal between an n/4 and an n evaluation (coordinator_whole_run: the whole evaluation ÷ cases); BullMQ: its one process (producer + worker) under "coordinator"; case_work: the tight loop',
    cpuRows,
  );
  if (Object.keys(ratios).length) printTable('End to end against BullMQ (same cases, same Redis, this run)', Object.entries(ratios).map(([pair, ratio]) => ({ pair, ratio: `${ratio}x` })));
  if (latency) process.stdout.write(`\nOne case through an idle Redis queue (enqueue → worker → result read), ${latency.samples} samples: p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms; Redis CPU ${latency.redisUsPerBatch?.toFixed(0)} µs per one-case batch\n`);
}
