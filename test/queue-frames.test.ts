/**
 * The coordinator compresses each range of cases once: the baseline's and the candidate's batches of
 * the same range carry the same frame (only the role, beside the payload, differs), and the run
 * still accounts every case of both roles.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBackend } from '../src/queue/memory/backend.ts';
import type { BatchMessage } from '../src/queue/types.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { startWorker } from '../src/daemon/daemon.ts';
import { QueueDispatcher } from '../src/dispatch/queue.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';

it('both roles\' batches of a range share one encoded frame, and every case is accounted', async () => {
  const config = validateQueueConfig({ backend: 'memory', batch_size: 10 });
  const backend = new MemoryBackend(config);
  const enqueued: BatchMessage[] = [];
  const watched = new Proxy(backend, {
    get(target, prop, receiver) {
      if (prop === 'enqueue') {
        return async (batches: BatchMessage[]) => {
          enqueued.push(...batches);
          return target.enqueue(batches);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const worker = await startWorker({ backend, config, threads: 2, pollIntervalS: 0.02, cacheDir: mkdtempSync(join(tmpdir(), 'mg-cache-')) });
  try {
    const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 60, dispatcher: 'queue', reportDir: mkdtempSync(join(tmpdir(), 'mg-r-')) }, env: {} });
    const { report } = await runEvaluation(options, { createDispatcher: () => new QueueDispatcher({ config, backend: watched }) });
    assert.equal(report.baseline.total + report.candidate.total, 120);
    // Six ranges of 10 cases, each sent once per role, each range's two payloads one frame.
    const byRange = new Map<string, BatchMessage[]>();
    for (const b of enqueued) {
      const range = b.id.slice(b.id.lastIndexOf(':') + 1);
      byRange.set(range, [...(byRange.get(range) ?? []), b]);
    }
    assert.equal(byRange.size, 6);
    for (const [range, batches] of byRange) {
      assert.deepEqual(batches.map((b) => b.role).sort(), ['baseline', 'candidate'], `range ${range}`);
      assert.equal(batches[0].payload, batches[1].payload, `range ${range}: one frame for both roles`);
    }
  } finally {
    await worker.close();
  }
});
