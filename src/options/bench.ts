/** `metaguard bench` (docs/reference.md). */
import { availableParallelism } from 'node:os';
import type { OptionsOf, Schema } from './schema.js';

export const benchSchema = {
  queueConfig: { type: 'json', description: 'queue configuration of the backend to sweep (default: the embedded memory queue)' },
  task: { type: 'string', default: 'sum', noEnv: true, description: 'workload: a task module, or a built-in task name', placeholder: 'PATH|NAME' },
  baseline: { type: 'string', noEnv: true, description: 'baseline module of the workload (required with a task file)', placeholder: 'PATH' },
  candidate: { type: 'string', noEnv: true, description: 'candidate module of the workload (required with a task file)', placeholder: 'PATH' },
  sizes: { type: 'string', default: '1,5,10,25,50,100,250,500', noEnv: true, description: 'batch sizes to sweep, comma-separated' },
  n: { type: 'int', min: 100, max: 10_000_000, default: 5000, noEnv: true, description: 'cases per role for each batch size' },
  workers: { type: 'int', min: 1, max: 64, default: Math.max(1, availableParallelism()), noEnv: true, description: 'in-process workers (memory backend)' },
  codecTimeMs: { type: 'int', min: 100, max: 60_000, default: 1500, noEnv: true, description: 'measuring time per codec task, ms' },
  skipCodec: { type: 'bool', default: false, noEnv: true, description: 'skip the codec table' },
  skipSweep: { type: 'bool', default: false, noEnv: true, description: 'skip the batch-size sweep' },
  skipThroughput: { type: 'bool', default: false, noEnv: true, description: 'skip the throughput rows (limit, local, memory queue, configured backend)' },
  json: { type: 'bool', default: false, noEnv: true, description: 'print one JSON object' },
} as const satisfies Schema;

export type BenchOptions = OptionsOf<typeof benchSchema>;
