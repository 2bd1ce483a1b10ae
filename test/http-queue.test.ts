/**
 * HTTP endpoints through a queue: a real redis-server, worker daemons as child processes, and a
 * node:http endpoint started here. The coordinator ships the endpoint description (header templates,
 * never values); each worker fills in `${VAR}` from its own environment, only for the names it lists in
 * METAGUARD_HTTP_SECRETS; results keep their HTTP codes, statuses, bodies and latencies on the way back.
 *
 * Run: node --import tsx --test --test-concurrency=1 test/http-queue.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { QueueDispatcher } from '../src/dispatch/queue.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { createBackend } from '../src/queue/index.ts';
import type { Backend, JobManifest } from '../src/queue/types.ts';
import type { Report } from '../src/reports/types.ts';
import { startRedis, redisAvailable, type RedisServer } from './helpers/redis-server.ts';
import { startEndpoint, type TestEndpoint } from './helpers/http-endpoint.ts';
import { fixture, killAllWorkers, spawnWorker } from './helpers/queue-harness.ts';

const skip = redisAvailable() ? false : 'redis-server is not installed';
const task = fixture('length-task.mjs');

describe('endpoints through Redis', { skip, concurrency: false }, () => {
  let redis: RedisServer;
  let ep: TestEndpoint;
  const tmp = mkdtempSync(join(tmpdir(), 'mg-http-q-'));
  const token = 'qtok-' + randomUUID();

  before(async () => {
    redis = await startRedis();
    ep = await startEndpoint();
  });
  after(async () => {
    killAllWorkers();
    await ep?.close();
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const config = (extra: object = {}) => ({
    backend: 'redis',
    connection: { host: '127.0.0.1', port: redis.port },
    queue: `h_${randomUUID().slice(0, 8)}`,
    lease_seconds: 10,
    heartbeat_check_interval: 0.25,
    ...extra,
  });

  /** A module exporting `http` whose Authorization header is a template on MG_Q_TOKEN. */
  const authModule = () => {
    const file = join(tmp, `auth-${randomUUID().slice(0, 6)}.mjs`);
    writeFileSync(file, `export const http = { url: ${JSON.stringify(`${ep.url}/auth?sha=${createHash('sha256').update(token).digest('hex')}&delay=30`)}, headers: { authorization: 'Bearer \${MG_Q_TOKEN}' } };\n`);
    return file;
  };

  /** Runs an evaluation through the queue; returns the report and the job manifests the coordinator published. */
  async function viaQueue(queueConfig: object, values: Record<string, unknown>): Promise<{ report: Report; manifests: JobManifest[] }> {
    const manifests: JobManifest[] = [];
    const options = resolveEvaluateOptions({ values: { task, n: 30, seed: 5, timeoutS: 5, reportDir: join(tmp, randomUUID()), dispatcher: 'queue', queueConfig, ...values }, env: {} });
    const cfg = validateQueueConfig(queueConfig);
    let dispatcher: QueueDispatcher | undefined;
    try {
      const { report } = await runEvaluation(options, {
        // The coordinator has no MG_Q_TOKEN: it ships the template and never needs the value.
        env: {},
        createDispatcher: async () => {
          const inner = await createBackend(cfg);
          const backend = new Proxy(inner, {
            get(target, prop, receiver) {
              if (prop === 'putJob') return (m: JobManifest) => (manifests.push(m), target.putJob(m));
              const v = Reflect.get(target, prop, receiver) as unknown;
              return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
            },
          }) as Backend;
          dispatcher = new QueueDispatcher({ config: cfg, backend });
          return dispatcher;
        },
      });
      return { report, manifests };
    } finally {
      await dispatcher?.close();
    }
  }

  it('workers call the endpoint with their own secret, K cases in flight; statuses, bodies and latencies come back', async () => {
    const qc = config();
    const worker = spawnWorker(qc, { args: ['--threads', '2'], env: { MG_Q_TOKEN: token, METAGUARD_HTTP_SECRETS: 'MG_Q_TOKEN' } });
    const { report, manifests } = await viaQueue(qc, { baseline: authModule(), candidate: `${ep.url}/status/503?q=1`, concurrency: 8, httpRetries: 1 });
    assert.equal(report.baseline.passes, 30, worker.output());
    assert.equal(report.baseline.http!.requests, 60);
    assert.ok(report.baseline.http!.latency_ms.p99 > 0);
    assert.ok(ep.seen.filter((s) => s.path.startsWith('/auth')).every((s) => s.headers.authorization === `Bearer ${token}`));
    assert.ok((ep.maxInFlight.get('/auth') ?? 0) > 1, 'cases ran concurrently on the workers');
    // 503 is retried once (--http-retries 1), then the case is E_HTTP_STATUS with its status and body.
    assert.deepEqual(report.candidate.errors, { E_HTTP_STATUS: 30 });
    assert.equal(report.candidate.http!.retries, 30);
    const v = report.violations.find((x) => x.name === 'E_HTTP_STATUS')!;
    assert.equal(v.status, 503);
    assert.ok(v.body!.startsWith('failure for anonymous'));
    // What went through Redis: the template, never the value.
    assert.equal(manifests.length, 1);
    assert.equal(manifests[0].exec!.roles.baseline.endpoint!.headers.authorization, 'Bearer ${MG_Q_TOKEN}');
    assert.equal(manifests[0].exec!.roles.baseline.concurrency, 8);
    assert.ok(!JSON.stringify(manifests[0]).includes(token));
    assert.ok(!worker.output().includes(token), 'the worker never logs the secret');
    worker.child.kill('SIGTERM');
    assert.equal((await worker.exited).code, 0);
  });

  it('a worker that does not list the variable hands the batch back; past its attempts it is dead-lettered (E_DELIVERY)', async () => {
    const qc = config({ max_requeue_attempts: 1, retry_base_ms: 10, retry_max_ms: 50, batch_size: 10 });
    // The variable is set, but the worker does not allow jobs to read it.
    const worker = spawnWorker(qc, { args: ['--threads', '1'], env: { MG_Q_TOKEN: token } });
    const { report } = await viaQueue(qc, { baseline: authModule(), candidate: `${ep.url}/ok`, n: 10 });
    assert.deepEqual(report.baseline.errors, { E_DELIVERY: 10 });
    assert.equal(report.candidate.passes, 10);
    const out = worker.output();
    assert.match(out, /endpoint_unusable/);
    assert.match(out, /references \$\{MG_Q_TOKEN\}, which this worker does not provide/);
    assert.ok(!out.includes(token));
    worker.child.kill('SIGTERM');
    await worker.exited;
  });
});
