/**
 * Endpoint implementations: throughput of an evaluation whose baseline and candidate are both an HTTP
 * endpoint with a fixed latency (a separate node:http process), at several `--concurrency` values,
 * with one case thread — against the ideal `threads × concurrency / latency` executions per second.
 * With `--redis`, the same through Redis to one worker daemon with one thread.
 *
 *   node --import tsx bench/http.ts [--http-n 2000] [--latency-ms 20] [--concurrency 1,16,64] [--redis]
 *
 * (`npm run bench` passes its flags to every benchmark: this one ignores those of the others.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { printTable } from './table.ts';

const task = fileURLToPath(new URL('./fixtures/echo-task.mjs', import.meta.url));
const serverFile = fileURLToPath(new URL('./fixtures/latency-server.mjs', import.meta.url));

export interface HttpBenchRow {
  path: string;
  concurrency: number;
  executions: number;
  seconds: number;
  /** From the first result to the last: without thread start-up and module checks. */
  run_seconds: number;
  cases_per_sec: number;
  ideal_per_sec: number;
  ratio_to_ideal: string;
  latency_p50_ms: number;
  latency_p99_ms: number;
  /** CPU of this process (every thread) per execution, ms: load-independent, local rows only. */
  cpu_ms_per_exec: string;
}

async function startServer(latencyMs: number): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [serverFile, String(latencyMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`latency server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/`, child };
}

async function measure(path: string, url: string, n: number, concurrency: number, latencyMs: number, values: Record<string, unknown>): Promise<HttpBenchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-bench-http-'));
  try {
    const options = resolveEvaluateOptions({ values: { task, baseline: url, candidate: url, n, concurrency, parallel: 1, timeoutS: 30, reportDir: dir, ...values }, env: {} });
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    let first = 0;
    let last = 0;
    const { report } = await runEvaluation(options, {
      onProgress: () => {
        last = performance.now();
        first ||= last;
      },
    });
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    // Executions per second while cases ran: the first result arrives one latency after the first request.
    const runSeconds = (last - first) / 1000 + latencyMs / 1000;
    if (report.baseline.passes !== n || report.candidate.passes !== n) throw new Error(`bench: ${path} K=${concurrency}: not every case passed (${JSON.stringify(report.candidate.errors)})`);
    const executions = 2 * n;
    const perSec = executions / runSeconds;
    // One case thread runs one chunk at a time: at most `concurrency` requests are in flight.
    const ideal = concurrency / (latencyMs / 1000);
    return {
      path,
      concurrency,
      executions,
      seconds: Number(seconds.toFixed(2)),
      run_seconds: Number(runSeconds.toFixed(2)),
      cases_per_sec: Math.round(perSec),
      ideal_per_sec: Math.round(ideal),
      ratio_to_ideal: `${((perSec / ideal) * 100).toFixed(0)}%`,
      latency_p50_ms: report.candidate.http!.latency_ms.p50,
      latency_p99_ms: report.candidate.http!.latency_ms.p99,
      // Through a queue the requests are made by the worker process, which this one does not measure.
      cpu_ms_per_exec: values.dispatcher === 'queue' ? '-' : ((cpu.user + cpu.system) / 1000 / executions).toFixed(3),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runHttpBench(n: number, latencyMs: number, levels: number[], withRedis: boolean): Promise<HttpBenchRow[]> {
  const server = await startServer(latencyMs);
  const rows: HttpBenchRow[] = [];
  try {
    // Warm-up: thread start, module loading, connections; not measured.
    await measure('warmup', server.url, 200, 16, latencyMs, {});
    for (const k of levels) rows.push(await measure('local, 1 thread', server.url, n, k, latencyMs, {}));
    if (withRedis) {
      const { redisAvailable, startRedis } = await import('../test/helpers/redis-server.ts');
      if (!redisAvailable()) process.stderr.write('bench: redis-server not found, skipping the Redis rows\n');
      else {
        const { spawnWorker } = await import('../test/helpers/queue-harness.ts');
        const redis = await startRedis();
        const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: 'bench-http' };
        const worker = spawnWorker(queueConfig, { args: ['--threads', '1'] });
        try {
          await measure('warmup', server.url, 200, 16, latencyMs, { dispatcher: 'queue', queueConfig });
          for (const k of levels) rows.push(await measure('redis, 1 worker x 1 thread', server.url, n, k, latencyMs, { dispatcher: 'queue', queueConfig }));
        } finally {
          worker.child.kill('SIGTERM');
          await worker.exited;
          await redis.stop();
        }
      }
    }
  } finally {
    server.child.kill('SIGTERM');
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    strict: false,
    options: {
      'http-n': { type: 'string', default: '2000' },
      'latency-ms': { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '1,16,64' },
      redis: { type: 'boolean', default: false },
    },
  });
  const latencyMs = Number(values['latency-ms']);
  const n = Number(values['http-n']);
  const rows = await runHttpBench(n, latencyMs, String(values.concurrency).split(',').map(Number), values.redis === true);
  printTable(`Endpoint implementations: n=${n} per role (both roles the same ${latencyMs} ms endpoint), executions/s while running (run_seconds) vs ideal concurrency/latency; seconds includes start-up`, rows as unknown as Record<string, string | number>[]);
}
