/**
 * The end-to-end batch-size sweep of `metaguard bench`: one evaluation per batch size (the built-in
 * `sum` task, or the operator's own task and implementations), through the configured backend with the same queue dispatcher (fixed sizes: the
 * adaptive controller is what the sweep calibrates), measuring cases/s over both roles.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetaguardError } from '../errors.js';
import { createQueueDispatcher, resolveEvaluateOptions, runEvaluation } from '../evaluate.js';
import { validateQueueConfig, type QueueConfig } from '../options/queue.js';
import { createBackend } from '../queue/index.js';
import { can } from '../queue/capabilities.js';

export interface SweepRow {
  batch_size: number;
  cases_per_sec: number;
}

export interface SweepOptions {
  queueConfig: Record<string, unknown>;
  sizes: number[];
  /** Cases per role per size. */
  n: number;
  /** In-process workers for the memory backend. */
  localWorkers: number;
  /** The evaluation to run per size: a built-in task name, or task, baseline and candidate files. @defaultValue the built-in `sum` */
  workload?: { task: string; baseline?: string; candidate?: string };
  onRow?(row: SweepRow): void;
}

async function requireWorkers(config: QueueConfig): Promise<void> {
  const backend = await createBackend(config);
  await backend.connect();
  try {
    const workers = await backend.activeWorkers();
    if (workers.length === 0) {
      throw new MetaguardError('MG_ERR_BACKEND', `no active workers on ${config.backend} queue ${config.queue}: start \`metaguard worker\` with the same queue config first`);
    }
  } finally {
    await backend.close();
  }
}

async function runOnce(queueConfig: Record<string, unknown>, n: number, dir: string, workload: SweepOptions['workload'] = { task: 'sum' }): Promise<number> {
  const options = resolveEvaluateOptions({ values: { ...workload, n, dispatcher: 'queue', queueConfig, reportDir: dir }, env: {} });
  const started = performance.now();
  // The queue config as given: the environment's METAGUARD_BATCH_SIZE must not override the size swept.
  await runEvaluation(options, { createDispatcher: (_, extras) => createQueueDispatcher({ queueConfig }, { ...extras, env: {} }) });
  return (2 * n) / ((performance.now() - started) / 1000);
}

export async function batchSizeSweep(options: SweepOptions): Promise<{ sweep: SweepRow[]; recommended_batch_size: number }> {
  const base = { ...options.queueConfig };
  delete base.batch_size;
  const config = validateQueueConfig(base);
  if (config.backend === 'memory') base.spawn_local_workers = options.localWorkers;
  else await requireWorkers(config);
  const dir = mkdtempSync(join(tmpdir(), 'metaguard-bench-'));
  const sweep: SweepRow[] = [];
  try {
    // Warm-up: thread start-up, module loading and JIT are not what the sweep measures.
    await runOnce({ ...base, batch_size: options.sizes[Math.floor(options.sizes.length / 2)] }, Math.min(options.n, 500), dir, options.workload);
    for (const size of options.sizes) {
      const row = { batch_size: size, cases_per_sec: Math.round(await runOnce({ ...base, batch_size: size }, options.n, dir, options.workload)) };
      sweep.push(row);
      options.onRow?.(row);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const recommended = recommendBatchSize(sweep);
  if (config.backend !== 'memory') await recordSweep(config, { recommendedBatchSize: recommended, sweep });
  return { sweep, recommended_batch_size: recommended };
}

/** Leaves the sweep on the queue it measured, where `metaguard dashboard` shows the recommendation. */
async function recordSweep(config: QueueConfig, record: { recommendedBatchSize: number; sweep: SweepRow[] }): Promise<void> {
  const backend = await createBackend(config);
  try {
    await backend.connect();
    if (can(backend, 'benchRecords')) await backend.putBenchRecord(record);
  } finally {
    await backend.close();
  }
}

/**
 * The smallest batch size within 5% of the best throughput: smaller batches spread work across
 * workers more evenly and lose less on a crash, so past the knee of the curve they are preferred.
 */
export function recommendBatchSize(sweep: SweepRow[]): number {
  if (sweep.length === 0) throw new RangeError('empty sweep');
  const best = Math.max(...sweep.map((r) => r.cases_per_sec));
  return [...sweep].sort((a, b) => a.batch_size - b.batch_size).find((r) => r.cases_per_sec >= best * 0.95)!.batch_size;
}

/**
 * Whether the recommended size is the largest or the smallest size the sweep tried: then the best size
 * may lie outside the sweep (throughput still rising past the largest size, or flat below the
 * smallest), and the sweep should be extended in that direction. null when it lies inside.
 */
export function recommendationAtEdge(sweep: SweepRow[], recommended: number): 'largest' | 'smallest' | null {
  const sizes = sweep.map((r) => r.batch_size);
  if (sizes.length === 0) return null;
  if (recommended === Math.max(...sizes)) return 'largest';
  if (recommended === Math.min(...sizes)) return 'smallest';
  return null;
}
