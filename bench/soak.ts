/**
 * `npm run bench:soak`: memory of one worker daemon (2 threads, Redis) over millions of cases. Runs
 * `--evaluations` evaluations of `--n` cases per role of the trivial task through one worker process,
 * sampling the worker's RSS (/proc) and each thread's heap (its /metrics) every `--every-s` seconds,
 * then stays idle for `--idle-s` (case pools close when idle) and samples again; between evaluations
 * it records this process's (the coordinator's) heap after a full collection. Prints the samples,
 * an RSS sparkline, the growth after warm-up (the first evaluation) and the idle figure.
 *
 *   node --expose-gc --import tsx bench/soak.ts [--evaluations 20] [--n 50000] [--warmup 2] [--every-s 2] [--idle-s 40] [--isolation thread|process]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { redisAvailable, startRedis } from '../test/helpers/redis-server.ts';
import { spawnWorker } from '../test/helpers/queue-harness.ts';
import { freePort } from '../test/helpers/net.ts';
import { printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    evaluations: { type: 'string', default: '20' },
    n: { type: 'string', default: '50000' },
    'every-s': { type: 'string', default: '2' },
    'idle-s': { type: 'string', default: '40' },
    isolation: { type: 'string', default: 'thread' },
    warmup: { type: 'string', default: '2' },
  },
});
const evaluations = Number(values.evaluations);
const n = Number(values.n);

if (!redisAvailable()) {
  process.stderr.write('bench:soak needs redis-server\n');
  process.exit(1);
}

interface Sample {
  s: number;
  cases: number;
  rss_mb: number;
  main_heap_mb: number;
  external_mb: number;
  heaps_mb: string;
  threads: number;
  /** This process's (the coordinator's) heap after a full collection, MB; sampled between evaluations. */
  coordinator_heap_mb?: number;
}

const redis = await startRedis({ appendonly: false });
const metricsPort = await freePort();
const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: 'soak' };
const worker = spawnWorker(queueConfig, { args: ['--threads', '2', '--metrics', '--metrics-port', String(metricsPort), '--log-level', 'warn'], env: { METAGUARD_ISOLATION: values.isolation! } });
const pid = worker.child.pid!;
const started = performance.now();
let cases = 0;
const samples: Sample[] = [];

function procStatus(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function sample(): Promise<void> {
  let heaps = '';
  let main = NaN;
  let external = NaN;
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1]) / 1e6;
    main = Number(gauge('metaguard_nodejs_heap_size_used_bytes').toFixed(1));
    external = Number(gauge('metaguard_nodejs_external_memory_bytes').toFixed(1));
    heaps = [...text.matchAll(/^metaguard_thread_heap_used_bytes\{thread="(\d+)"\} (\S+)/gm)].map((m) => `${m[1]}:${(Number(m[2]) / 1e6).toFixed(1)}`).join(' ');
  } catch {
    heaps = '-';
  }
  samples.push({ s: Math.round((performance.now() - started) / 1000), cases, rss_mb: Math.round(procStatus('VmRSS') / 1024), main_heap_mb: main, external_mb: external, heaps_mb: heaps, threads: procStatus('Threads') });
}

const timer = setInterval(() => void sample(), Number(values['every-s']) * 1000);
const dir = mkdtempSync(join(tmpdir(), 'mg-soak-'));
let warm = 0;
const coordinatorHeaps: number[] = [];
try {
  // Wait for the worker to answer on /metrics.
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await sample();
  for (let e = 0; e < evaluations; e++) {
    const options = resolveEvaluateOptions({ values: { task: 'sum', n, seed: e + 1, reportDir: dir, dispatcher: 'queue', queueConfig }, env: {} });
    await runEvaluation(options);
    cases += 2 * n;
    // The coordinator keeps nothing of a finished evaluation: its heap after a full collection.
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      coordinatorHeaps.push(process.memoryUsage().heapUsed / 1e6);
    }
    if (e === Number(values.warmup) - 1) {
      await sample();
      warm = samples.at(-1)!.rss_mb;
    }
  }
  await sample();
  const busyEnd = samples.at(-1)!.rss_mb;
  await new Promise((r) => setTimeout(r, Number(values['idle-s']) * 1000));
  clearInterval(timer);
  await sample();
  const idle = samples.at(-1)!.rss_mb;

  const step = Math.max(1, Math.ceil(samples.length / 40));
  printTable(
    `Worker memory over ${cases.toLocaleString('en-US')} cases (${evaluations} evaluations of ${n} cases per role, 2 threads, Redis, isolation ${values.isolation}); heaps per thread slot after its last chunk`,
    samples.filter((_, i) => i % step === 0 || i === samples.length - 1).map((x) => ({ ...x })),
  );
  const bars = '▁▂▃▄▅▆▇█';
  const rss = samples.map((x) => x.rss_mb);
  const lo = Math.min(...rss);
  const hi = Math.max(...rss);
  process.stdout.write(`\nRSS ${lo}–${hi} MB  ${rss.map((v) => bars[Math.min(7, Math.floor(((v - lo) / Math.max(1, hi - lo)) * 8))]).join('')}\n`);
  process.stdout.write(`after warm-up (${values.warmup} evaluations): ${warm} MB; at the end of the run: ${busyEnd} MB (${(((busyEnd - warm) / warm) * 100).toFixed(1)}%); after ${values['idle-s']} s idle: ${idle} MB\n`);
  if (coordinatorHeaps.length) {
    const w = Number(values.warmup);
    const at = (i: number) => coordinatorHeaps[Math.min(coordinatorHeaps.length - 1, i)];
    const fmt = (v: number) => v.toFixed(1);
    process.stdout.write(`coordinator heap after a full GC, between evaluations: ${coordinatorHeaps.map(fmt).join(' ')} MB; after warm-up ${fmt(at(w - 1))} MB, at the end ${fmt(at(coordinatorHeaps.length - 1))} MB (${(((at(coordinatorHeaps.length - 1) - at(w - 1)) / at(w - 1)) * 100).toFixed(1)}%)\n`);
  } else process.stdout.write('coordinator heap: not sampled (run with node --expose-gc, as npm run bench:soak does)\n');
} finally {
  clearInterval(timer);
  worker.child.kill('SIGTERM');
  await worker.exited;
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
