/** `metaguard bench` (docs/reference.md). */
import { availableParallelism } from 'node:os';
import type { OptionsOf, Schema } from './schema.js';

export const benchSchema = {
  queueConfig: { type: 'json', description: 'queue configuration of the backend to sweep (default: the embedded memory queue)' },
  sizes: { type: 'string', default: '1,5,10,25,50,100,250,500', noEnv: true, description: 'batch sizes to sweep, comma-separated' },
  n: { type: 'int', min: 100, max: 10_000_000, default: 5000, noEnv: true, description: 'cases per role for each batch size' },
  workers: { type: 'int', min: 1, max: 64, default: Math.max(1, availableParallelism()), noEnv: true, description: 'in-process workers (memory backend)' },
  codecTimeMs: { type: 'int', min: 100, max: 60_000, default: 1500, noEnv: true, description: 'measuring time per codec task, ms' },
  skipCodec: { type: 'bool', default: false, noEnv: true, description: 'skip the codec table' },
  skipSweep: { type: 'bool', default: false, noEnv: true, description: 'skip the batch-size sweep' },
  json: { type: 'bool', default: false, noEnv: true, description: 'print one JSON object' },
} as const satisfies Schema;

export type BenchOptions = OptionsOf<typeof benchSchema>;
