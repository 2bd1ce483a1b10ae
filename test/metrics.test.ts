/**
 * Metrics and health endpoints: a worker daemon is scraped with undici while it runs an evaluation,
 * and its counters must match the cases it ran. The coordinator's endpoint is checked too.
 */
import { describe, it } from 'node:test';
import { wireError } from '../src/errors.ts';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from './helpers/net.ts';
import { MemoryBackend } from '../src/queue/memory/backend.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { startWorker } from '../src/daemon/daemon.ts';
import { Metrics } from '../src/observe/metrics.ts';
import { serveMetrics } from '../src/observe/server.ts';
import { QueueDispatcher } from '../src/dispatch/queue.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { fixture } from './helpers/queue-harness.ts';

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url);
  return { status: res.statusCode, body: await res.body.text() };
}

/** Sums a metric's samples whose labels match `labels` (all given labels must match). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries((m[3] ?? '').split(',').filter(Boolean).map((kv) => kv.split('=')).map(([k, v]) => [k, v.replace(/"/g, '')]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  assert.ok(found, `metric ${name} ${JSON.stringify(labels)} present`);
  return sum;
}

describe('metrics', () => {
  it('a worker exposes per-thread series whose counters match the cases it ran, plus healthz and readyz', async () => {
    const config = validateQueueConfig({ backend: 'memory', batch_size: 7, heartbeat_check_interval: 0.1 });
    const backend = new MemoryBackend(config);
    const worker = await startWorker({ backend, config, threads: 2, pollIntervalS: 0.02, cacheDir: mkdtempSync(join(tmpdir(), 'mg-cache-')) });
    const metrics = new Metrics();
    metrics.attachWorker(worker, worker.codecImpl);
    const server = await serveMetrics({
      metrics,
      host: '127.0.0.1',
      port: 0,
      health: () => ({ ok: worker.backendConnected }),
      ready: () => ({ ok: worker.progressing }),
      beforeScrape: () => metrics.refreshQueue(backend),
    });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      assert.equal((await get(`${base}/healthz`)).status, 200);
      assert.equal((await get(`${base}/readyz`)).status, 200);
      const n = 63; // a multiple of the batch size: every batch, the last included, has 7 cases
      const options = resolveEvaluateOptions({
        values: { task: fixture('length-task.mjs'), baseline: fixture('throws.mjs'), candidate: fixture('loop.mjs'), n, timeoutS: 0.3, dispatcher: 'queue', reportDir: mkdtempSync(join(tmpdir(), 'mg-r-')) },
        env: {},
      });
      let midScrape = '';
      const outcome = await runEvaluation(options, {
        onProgress: (done) => {
          if (done === 20) void get(`${base}/metrics`).then((r) => (midScrape = r.body));
        },
        createDispatcher: () => new QueueDispatcher({ config, backend }),
      });
      const text = (await get(`${base}/metrics`)).body;
      assert.ok(midScrape.includes('metaguard_thread_cases_total'), 'scraped during the run');
      // In-flight counts are cases: every held batch holds 7, so the gauge is a multiple of 7.
      assert.equal(sample(midScrape, 'metamorphic_queue_inflight_cases') % 7, 0, 'in-flight cases, not batches');
      // Every case of both roles ran on this worker's two threads.
      assert.equal(sample(text, 'metaguard_thread_cases_total'), 2 * n);
      assert.equal(sample(text, 'metaguard_thread_case_duration_seconds_count'), 2 * n);
      assert.equal(sample(text, 'metamorphic_cases_total'), 2 * n);
      const timeouts = outcome.report.candidate.errors.E_TIMEOUT ?? 0;
      assert.ok(timeouts > 0);
      assert.equal(sample(text, 'metamorphic_cases_total', { role: 'candidate', status: 'error' }), timeouts);
      assert.equal(sample(text, 'metamorphic_cases_total', { role: 'baseline', status: 'error' }), outcome.report.baseline.errors.E_THROW);
      assert.equal(sample(text, 'metamorphic_queue_timeout_failures_total'), timeouts);
      assert.equal(sample(text, 'metaguard_thread_restarts_total', { reason: 'timeout' }), timeouts);
      assert.equal(sample(text, 'metamorphic_queue_cases_completed_total'), 2 * n);
      assert.ok(sample(text, 'metaguard_thread_heap_used_bytes', { thread: '0' }) > 0);
      assert.ok(text.includes('metaguard_thread_utilization{thread="1"}'));
      assert.equal(sample(text, 'metaguard_codec_info', { impl: worker.codecImpl }), 1);
      assert.equal(sample(text, 'metaguard_build_info', { node: process.version, codec: worker.codecImpl }), 1);
      assert.equal(sample(text, 'metaguard_batch_size'), 7);
      assert.ok(sample(text, 'metamorphic_queue_worker_heartbeats_total') >= 1);
      assert.equal(sample(text, 'metamorphic_queue_active_workers'), 1);
      assert.equal(sample(text, 'metamorphic_queue_pending_tasks'), 0);
      assert.equal(sample(text, 'metamorphic_queue_inflight_cases'), 0, 'nothing held after the run');
      assert.equal(sample(text, 'metamorphic_queue_inflight_batches'), 0);
      assert.equal(sample(text, 'metamorphic_queue_dead_letter_batches'), 0);
      assert.equal((await get(`${base}/nope`)).status, 404);
      await worker.close();
      assert.equal((await get(`${base}/readyz`)).status, 503, 'not ready once drained');
      assert.equal((await get(`${base}/healthz`)).status, 503, 'not healthy once stopped');
    } finally {
      await worker.close();
      await server.close();
    }
  });

  it('evaluate --metrics serves the coordinator series during the run', async () => {
    const port = await freePort();
    const options = resolveEvaluateOptions({
      values: { task: 'top_k', n: 300, metrics: true, metricsPort: port, reportDir: mkdtempSync(join(tmpdir(), 'mg-r-')), parallel: 1 },
      env: {},
    });
    let scrape: Promise<string> | undefined;
    await runEvaluation(options, {
      onProgress: (done) => {
        if (done === 300) scrape = get(`http://127.0.0.1:${port}/metrics`).then((r) => r.body);
      },
    });
    const text = await scrape!;
    assert.ok(sample(text, 'metaguard_thread_cases_total', { thread: '0' }) >= 1);
    assert.ok(sample(text, 'metamorphic_cases_total', { role: 'baseline' }) >= 1);
    await assert.rejects(get(`http://127.0.0.1:${port}/metrics`), 'the endpoint closes with the evaluation');
  });

  it('the dead-letter gauge counts dead-lettered batches; process metrics carry one prefix', async () => {
    const config = validateQueueConfig({ backend: 'memory' });
    const backend = new MemoryBackend(config);
    const payload = new Uint8Array([1, 2, 3]);
    await backend.enqueue([0, 1, 2].map((i) => ({ id: `b${i}`, jobId: 'j', role: 'baseline' as const, priority: 'normal' as const, payload })));
    const claims = await backend.claimBatches('w1', 3, 60_000);
    assert.equal(claims.length, 3);
    await backend.deadLetter('w1', 'b0', wireError('MG_ERR_MALFORMED_BATCH', 'test'));
    await backend.deadLetter('w1', 'b1', wireError('MG_ERR_MALFORMED_BATCH', 'test'));
    const metrics = new Metrics({ defaultMetrics: true });
    await metrics.refreshQueue(backend);
    const text = await metrics.text();
    assert.equal(sample(text, 'metamorphic_queue_dead_letter_batches'), 2);
    assert.equal(sample(text, 'metamorphic_queue_inflight_batches'), 1);
    assert.ok(sample(text, 'metaguard_process_cpu_user_seconds_total') >= 0);
    assert.ok(!text.includes('process_process'), 'no doubled process_ prefix');
  });
});

describe('metrics: per-case counts', () => {
  it('cases counted between scrapes reach their counters exactly once, by thread and by role and status', async () => {
    const m = new Metrics();
    const pass = { index: 0, passed: true, durationMs: 2 };
    const fail = { index: 1, passed: false, durationMs: 3, error: { code: 'E_TIMEOUT', message: 'late' } };
    for (let i = 0; i < 5; i++) m.recordCase(pass, 'baseline', 0);
    m.recordCase(fail, 'candidate', 1);
    let text = await m.registry.metrics();
    assert.equal(sample(text, 'metaguard_thread_cases_total', { thread: '0' }), 5);
    assert.equal(sample(text, 'metaguard_thread_cases_total', { thread: '1' }), 1);
    assert.equal(sample(text, 'metamorphic_cases_total', { role: 'baseline', status: 'passed' }), 5);
    assert.equal(sample(text, 'metamorphic_cases_total', { role: 'candidate', status: 'error' }), 1);
    assert.equal(sample(text, 'metaguard_thread_case_duration_seconds_count', { thread: '0' }), 5);
    // A second scrape with nothing new changes nothing; new cases add to what was there.
    text = await m.registry.metrics();
    assert.equal(sample(text, 'metaguard_thread_cases_total', { thread: '0' }), 5);
    m.recordCase(pass, 'baseline', 0);
    text = await m.registry.metrics();
    assert.equal(sample(text, 'metaguard_thread_cases_total', { thread: '0' }), 6);
    assert.equal(sample(text, 'metamorphic_cases_total', { role: 'baseline', status: 'passed' }), 6);
  });
});
