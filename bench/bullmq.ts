/**
 * BullMQ rows of bench/throughput.ts: the same cases as jobs (one case per job) on the same Redis,
 * processed by the sort workload's case work (bench/fixtures/sort/case-work.mjs) — in-process with
 * concurrency 100, or in sandboxed worker threads — with no time or memory limits. Timed from the
 * first `addBulk` to the last completion; CPU is this process's (producer, worker and its threads).
 */
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
// @ts-expect-error -- a plain .mjs fixture (also loaded by the sandboxed processor), no declarations
import { runCase } from './fixtures/sort/case-work.mjs';

const processorFile = fileURLToPath(new URL('./fixtures/sort/bullmq-processor.mjs', import.meta.url));

export async function bullmqRow(port: number, cases: unknown[][], mode: 'in-process' | 'sandboxed', threads: number): Promise<{ path: string; cases: number; seconds: number; cpuUsPerCase: number }> {
  const name = `bullmq-${mode}-${Date.now()}`;
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const queue = new Queue(name, { connection });
  const total = 2 * cases.length;
  let done = 0;
  let failed = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const worker =
    mode === 'in-process'
      ? new Worker(name, async (job) => runCase(job.data as never), { connection, concurrency: 100, autorun: false })
      : new Worker(name, processorFile, { connection, concurrency: threads, useWorkerThreads: true, autorun: false });
  worker.on('completed', (_job, result: { passed: boolean }) => {
    if (!result.passed) failed++;
    if (++done === total) finish();
  });
  worker.on('failed', () => {
    failed++;
    if (++done === total) finish();
  });
  try {
    // Warm-up: sandbox threads start, JIT.
    await queue.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: 'case', data: { role: 'baseline', index: i, args: cases[i % cases.length] }, opts: { removeOnComplete: true, removeOnFail: true } })));
    void worker.run();
    await new Promise<void>((r) => {
      const check = () => (done >= 200 ? r() : setTimeout(check, 20));
      check();
    });
    done = 0;
    failed = 0;
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    for (const role of ['baseline', 'candidate']) {
      for (let i = 0; i < cases.length; i += 1000) {
        const jobs = [];
        for (let j = i; j < Math.min(cases.length, i + 1000); j++) jobs.push({ name: 'case', data: { role, index: j, args: cases[j] }, opts: { removeOnComplete: true, removeOnFail: true } });
        await queue.addBulk(jobs);
      }
    }
    await finished;
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    if (failed) process.stderr.write(`bench: bullmq ${mode}: ${failed} of ${total} cases failed\n`);
    const path = mode === 'in-process' ? 'bullmq: in-process processor, concurrency 100 (no limits)' : `bullmq: sandboxed worker threads × ${threads} (no limits)`;
    return { path, cases: total, seconds, cpuUsPerCase: (cpu.user + cpu.system) / total };
  } finally {
    await worker.close();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}
