/**
 * Round trip of one case through an idle queue, as the coordinator sees it: a job is published once
 * (its pools warm up on the first batch, not measured), then `samples` times one batch of one case is
 * enqueued and the coordinator waits on the result stream until its result is read — nothing else
 * queued. p50 and p99 in ms. The worker daemon must already be running on the queue.
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createCodec } from '../src/codec/index.ts';
import { loadArtifact } from '../src/queue/artifacts.ts';
import { resolveQueueConfig } from '../src/options/queue.ts';
import { createBackend } from '../src/queue/index.ts';
import { decodeResults, encodeCases } from '../src/queue/messages.ts';
import type { JobManifest } from '../src/queue/types.ts';
import { sortFixture } from './hotpath.ts';

export async function singleCaseLatency(queueConfig: Record<string, unknown>, samples: number): Promise<{ p50: number; p99: number; samples: number }> {
  const config = resolveQueueConfig(queueConfig, {});
  const backend = await createBackend(config);
  await backend.connect();
  const codec = createCodec({ compress: config.compress });
  const jobId = randomUUID();
  const [task, baseline, candidate] = [sortFixture.task, sortFixture.baseline, sortFixture.candidate].map((p) => loadArtifact(pathToFileURL(p).href));
  try {
    await Promise.all([task, baseline, candidate].map((a) => backend.putArtifact(a.ref.sha256, a.bytes)));
    const manifest: JobManifest = { jobId, task: task.ref, implementations: { baseline: baseline.ref, candidate: candidate.ref }, seed: 1, timeoutMs: 2000, memMb: 256, createdAt: await backend.now() };
    await backend.putJob(manifest);
    let cursor = '0';
    const roundTrip = async (i: number): Promise<number> => {
      const started = performance.now();
      const id = `${jobId}:baseline:${i}`;
      await backend.enqueue([{ id, jobId, role: 'baseline', priority: 'normal', payload: encodeCases(codec, [{ index: i, args: [[5, 3, 9, 1, i % 7]] }]) }]);
      for (;;) {
        const read = await backend.readResults(jobId, cursor, 1000);
        cursor = read.cursor;
        for (const e of read.entries) {
          if (e.batchId !== id) continue;
          if (e.kind !== 'results' || decodeResults(codec, e.frame).length !== 1) throw new Error(`latency: batch ${id} did not come back with one result`);
          return performance.now() - started;
        }
      }
    };
    // The first batch starts the job's case pools on the worker.
    await roundTrip(0);
    const ms: number[] = [];
    for (let i = 1; i <= samples; i++) ms.push(await roundTrip(i));
    ms.sort((a, b) => a - b);
    const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    return { p50: q(0.5), p99: q(0.99), samples };
  } finally {
    await backend.deleteJob(jobId).catch(() => {});
    await backend.close();
  }
}
