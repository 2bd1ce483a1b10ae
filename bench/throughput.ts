/**
 * The issue-15 table, one run: the benchmark workload (bench/fixtures/sort: sorting integer arrays of
 * length 0–49, two properties, two relations) through every path side by side —
 *
 *   limit          the case work in a tight loop on one thread, × 2 threads
 *   case thread    the chunk runner (runCases) on one thread, × 2
 *   local          metaguard's local dispatcher, 2 threads
 *   memory queue   the embedded queue, 2 in-process workers
 *   redis          one worker daemon × 2 threads on a redis-server started here, native codec and JS codec;
 *                  then two daemons × 1 thread (Redis CPU per case, the check of docs/scaling.md)
 *   bullmq         BullMQ on the same Redis: in-process processor (concurrency 100) and sandboxed
 *                  worker threads × 2, one job per case, same cases, no time or memory limits
 *
 * each with cases/s (both roles counted) and its share of the limit; then CPU µs per case of the
 * daemon, the coordinator and Redis on the Redis rows; then the round trip of one case through an idle
 * Redis queue (p50/p99).
 *
 *   node --import tsx bench/throughput.ts [--n 50000] [--latency-samples 300] [--no-bullmq] [--json]
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { genSortCases, sortFixture } from './hotpath.ts';
import { evaluationRow, limitRow, processCpuMs, type ThroughputRow, type Workload } from '../src/bench/throughput.ts';
import { printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '50000' },
    'latency-samples': { type: 'string', default: '300' },
    'no-bullmq': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const n = Number(values.n);
const w: Workload = { task: sortFixture.task, baseline: sortFixture.baseline, candidate: sortFixture.candidate, n, seed: 1 };
const threads = 2;
const rows: ThroughputRow[] = [];
const cpuRows: Record<string, string | number>[] = [];
const say = (s: string) => process.stderr.write(s + '\n');

const { row: limit, runnerRow, usPerCase, runnerUsPerCase } = await limitRow(w, threads);
rows.push(limit, runnerRow);
say(`limit: baseline ${usPerCase.baseline.toFixed(2)} µs, candidate ${usPerCase.candidate.toFixed(2)} µs per case; chunk runner: ${runnerUsPerCase.baseline.toFixed(2)} µs, ${runnerUsPerCase.candidate.toFixed(2)} µs`);
const L = limit.cases_per_sec;
await evaluationRow('warm-up', { ...w, n: 500 }, threads, { parallel: threads }, L);
rows.push(await evaluationRow('local (2 threads)', w, threads, { parallel: threads }, L));
say('local done');
rows.push(await evaluationRow('queue: memory (2 in-process workers)', w, threads, { dispatcher: 'queue', queueConfig: { backend: 'memory', spawn_local_workers: threads } }, L));
say('memory done');

const { redisAvailable, startRedis } = await import('../test/helpers/redis-server.ts');
let latency: { p50: number; p99: number; samples: number; redisUsPerBatch?: number } | undefined;
if (!redisAvailable()) {
  say('bench: redis-server not found, skipping the Redis and BullMQ rows');
} else {
  const { spawnWorker } = await import('../test/helpers/queue-harness.ts');
  const { Redis } = await import('ioredis');
  const redis = await startRedis({ appendonly: false });
  const admin = new Redis({ port: redis.port, lazyConnect: true });
  await admin.connect();
  const redisCpuMs = async () => {
    const info = await admin.info('cpu');
    const get = (k: string) => Number(new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1] ?? 0);
    return (get('used_cpu_user') + get('used_cpu_sys')) * 1000;
  };
  try {
    // The last setup checks docs/scaling.md's projection: the same cases from two daemons, Redis CPU per case.
    for (const { native, daemons } of [{ native: true, daemons: 1 }, { native: false, daemons: 1 }, { native: true, daemons: 2 }]) {
      const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: `bench-${native ? 'native' : 'js'}-${daemons}` };
      const saved = process.env.METAGUARD_NATIVE;
      if (!native) process.env.METAGUARD_NATIVE = '0';
      const perDaemon = Math.max(1, threads / daemons);
      const workers = Array.from({ length: daemons }, () => spawnWorker(queueConfig, { args: ['--threads', String(perDaemon), '--log-level', 'warn'], env: native ? {} : { METAGUARD_NATIVE: '0' } }));
      const pids = workers.map((x) => x.child.pid!);
      const path = `queue: redis, ${daemons} daemon${daemons > 1 ? 's' : ''} × ${perDaemon} thread${perDaemon > 1 ? 's' : ''}, ${native ? 'native' : 'JS'} codec`;
      try {
        await evaluationRow('warm-up', { ...w, n: 2000 }, threads, { dispatcher: 'queue', queueConfig }, L);
        // Two evaluations, n/4 and n: CPU per case is the marginal cost between them, without what an
        // evaluation pays once (bundling, generating cases, starting pools, the report).
        const r0 = await redisCpuMs();
        const small = await evaluationRow(path, { ...w, n: Math.round(n / 4) }, threads, { dispatcher: 'queue', queueConfig }, L, pids);
        const r1 = await redisCpuMs();
        const row = await evaluationRow(path, w, threads, { dispatcher: 'queue', queueConfig }, L, pids);
        const r2 = await redisCpuMs();
        const extra = row.cases - small.cases;
        const marginal = (big: number, little: number) => Number((((big - little) * 1000) / extra).toFixed(1));
        rows.push(row);
        cpuRows.push({
          path,
          daemon: marginal(row.daemon_cpu_ms!, small.daemon_cpu_ms!),
          coordinator: marginal(row.coordinator_cpu_ms!, small.coordinator_cpu_ms!),
          redis: marginal(r2 - r1, r1 - r0),
          case_work: Number(((usPerCase.baseline + usPerCase.candidate) / 2).toFixed(1)),
          coordinator_whole_run: row.coordinator_us_per_case!,
        });
        if (native && daemons === 1) {
          // Batches of one case: Redis CPU per batch (its fixed cost, docs/scaling.md).
          const l0 = await redisCpuMs();
          latency = await (await import('./latency.ts')).singleCaseLatency(queueConfig, Number(values['latency-samples']));
          latency.redisUsPerBatch = (((await redisCpuMs()) - l0) * 1000) / (latency.samples + 1);
        }
      } finally {
        if (saved === undefined) delete process.env.METAGUARD_NATIVE;
        else process.env.METAGUARD_NATIVE = saved;
        for (const x of workers) x.child.kill('SIGTERM');
        await Promise.all(workers.map((x) => x.exited));
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
        rows.push({ path: r.path, threads, cases: r.cases, seconds: Number(r.seconds.toFixed(2)), cases_per_sec: Math.round(r.cases / r.seconds), share_of_limit: Number((r.cases / r.seconds / L).toFixed(3)) });
        cpuRows.push({ path: r.path, daemon: '-', coordinator: Number(r.cpuUsPerCase.toFixed(1)), redis: Number(redisUs.toFixed(1)), case_work: Number(((usPerCase.baseline + usPerCase.candidate) / 2).toFixed(1)), coordinator_whole_run: '-' });
        say(`bullmq ${mode} done`);
      }
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
}

if (values.json) {
  process.stdout.write(JSON.stringify({ rows, cpu_us_per_case: cpuRows, single_case_latency_ms: latency ?? null }, null, 2) + '\n');
} else {
  printTable(`Throughput, sort workload (bench/fixtures/sort), n=${n} per role, both roles counted`, rows.map((r) => ({ path: r.path, 'cases/s': r.cases_per_sec, share_of_limit: r.share_of_limit.toFixed(3) })));
  printTable(
    'CPU µs per case: metaguard rows marginal between an n/4 and an n evaluation (coordinator_whole_run: the whole evaluation ÷ cases); BullMQ: its one process (producer + worker) under "coordinator"; case_work: the tight loop',
    cpuRows,
  );
  if (latency) process.stdout.write(`\nOne case through an idle Redis queue (enqueue → worker → result read), ${latency.samples} samples: p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms; Redis CPU ${latency.redisUsPerBatch?.toFixed(0)} µs per one-case batch\n`);
}
