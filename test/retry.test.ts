/**
 * Retries: a worker that fails to prepare a batch for a retryable reason (here the backend failing to
 * serve the job manifest) gives it back with an exponential, jittered delay counted against
 * max_requeue_attempts, and the evaluation still completes with every case accounted.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetaguardError } from '../src/errors.ts';
import { retryDelayMs } from '../src/queue/retry.ts';
import { MemoryBackend } from '../src/queue/memory/backend.ts';
import type { ReleaseOptions } from '../src/queue/types.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { startWorker } from '../src/daemon/daemon.ts';
import { QueueDispatcher } from '../src/dispatch/queue.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';

it('backoff doubles per attempt within [half, full] of the step, capped', () => {
  assert.equal(retryDelayMs(1, 100, 10_000, () => 0), 50);
  assert.equal(retryDelayMs(1, 100, 10_000, () => 1), 100);
  assert.equal(retryDelayMs(3, 100, 10_000, () => 0), 200);
  assert.equal(retryDelayMs(3, 100, 10_000, () => 1), 400);
  assert.equal(retryDelayMs(30, 100, 10_000, () => 1), 10_000);
  for (let i = 0; i < 100; i++) {
    const d = retryDelayMs(2, 100, 10_000);
    assert.ok(d >= 100 && d <= 200, String(d));
  }
});

it('a retryable failure while preparing is retried after a delay and the run completes', async () => {
  const config = validateQueueConfig({ backend: 'memory', batch_size: 10, retry_base_ms: 50, retry_max_ms: 200, max_requeue_attempts: 3 });
  const backend = new MemoryBackend(config);
  let failures = 0;
  const releases: ReleaseOptions[] = [];
  const flaky = new Proxy(backend, {
    get(target, prop, receiver) {
      if (prop === 'getJob') {
        return async (jobId: string) => {
          if (failures < 2) {
            failures++;
            throw new MetaguardError('MG_ERR_BACKEND', 'simulated outage while fetching the manifest');
          }
          return target.getJob(jobId);
        };
      }
      if (prop === 'releaseBatch') {
        return async (w: string, id: string, o: ReleaseOptions) => {
          releases.push(o);
          return target.releaseBatch(w, id, o);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const worker = await startWorker({ backend: flaky, config, threads: 1, pollIntervalS: 0.02, cacheDir: mkdtempSync(join(tmpdir(), 'mg-cache-')) });
  try {
    const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 20, dispatcher: 'queue', reportDir: mkdtempSync(join(tmpdir(), 'mg-r-')) }, env: {} });
    const { report } = await runEvaluation(options, { createDispatcher: () => new QueueDispatcher({ config, backend }) });
    assert.equal(report.baseline.total + report.candidate.total, 40);
    assert.equal(report.candidate.passes, 20);
    assert.equal(Object.keys(report.candidate.errors).length, 0, 'no E_DELIVERY: the retries succeeded');
    assert.ok(releases.length >= 2, `released for retry ${releases.length} times`);
    for (const r of releases) {
      assert.equal(r.countAttempt, true);
      assert.deepEqual([r.error.code, r.error.retryable], ['MG_ERR_BACKEND', true], 'retried with the outage\'s code');
      assert.ok(r.delayMs >= 25 && r.delayMs <= 200, `delay ${r.delayMs}`);
    }
  } finally {
    await worker.close();
  }
});
