/**
 * The worker daemon exactly as systemd starts it: no flags, every option from METAGUARD_* variables
 * (as an EnvironmentFile= sets them). It serves health and metrics, runs an evaluation's cases through
 * Redis, and drains on SIGTERM with exit 0.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { freePort } from './helpers/net.ts';
import { startRedis, type RedisServer } from './helpers/redis-server.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { until } from './helpers/poll.ts';

const skip = false; // startRedis() fails naming the package when redis-server is missing
let redis: RedisServer;
before(async () => {
  if (!skip) redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});


it('runs from METAGUARD_* variables alone', { skip }, async () => {
  const port = await freePort();
  const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: 'envonly', batch_size: 10 };
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('METAGUARD_')) env[k] = v;
  Object.assign(env, {
    METAGUARD_QUEUE_CONFIG: JSON.stringify(queueConfig),
    METAGUARD_THREADS: '2',
    METAGUARD_POLL_INTERVAL: '0.05',
    METAGUARD_LOG_JSON: 'true',
    METAGUARD_METRICS: '1',
    METAGUARD_METRICS_PORT: String(port),
    METAGUARD_CACHE_DIR: mkdtempSync(join(tmpdir(), 'mg-cache-')),
    METAGUARD_WORKER_ID: 'env-only-worker',
    METAGUARD_SHUTDOWN_TIMEOUT_S: '5',
  });
  const entry = fileURLToPath(new URL('../src/cli/run.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, 'worker'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await until('worker up', () => out.includes('"event":"worker_started"') && out.includes('/metrics'), 30_000);
    const health = await request(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.statusCode, 200);
    assert.match(await health.body.text(), /env-only-worker/);
    const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 60, dispatcher: 'queue', queueConfig, reportDir: mkdtempSync(join(tmpdir(), 'mg-r-')) }, env: {} });
    const { report } = await runEvaluation(options);
    assert.equal(report.candidate.passes, 60);
    const metrics = await (await request(`http://127.0.0.1:${port}/metrics`)).body.text();
    assert.match(metrics, /metaguard_thread_cases_total\{thread="0"\} \d+/);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, out);
    assert.match(out, /"event":"worker_stopped"/);
  } finally {
    child.kill('SIGKILL');
  }
});
