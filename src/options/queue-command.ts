/** `metaguard queue` (docs/reference.md). */
import { backendField } from './fields.js';
import type { OptionsOf, Schema } from './schema.js';

export const queueSchema = {
  config: { type: 'string', description: 'config file (TOML) with a [queue] table', placeholder: 'FILE' },
  backend: backendField,
  queueConfig: { type: 'json', description: 'queue configuration JSON' },
  json: { type: 'bool', default: false, noEnv: true, description: 'print JSON' },
  all: { type: 'bool', default: false, noEnv: true, description: 'with dlq retry: every dead-lettered batch' },
  limit: { type: 'int', min: 1, default: 100, noEnv: true, description: 'with dlq list: most entries' },
  yes: { type: 'bool', default: false, noEnv: true, description: 'with dlq purge: do not ask for confirmation on a terminal' },
} as const satisfies Schema;

export type QueueCommandOptions = OptionsOf<typeof queueSchema>;
