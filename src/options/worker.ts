import { availableParallelism } from 'node:os';
import { backendField, isolations, logFields, metricsFields } from './fields.js';
import type { OptionsOf, Schema } from './schema.js';
import { CASE_MEM_MB, CASE_TIMEOUT_S } from './defaults.js';

/** `metaguard worker` (docs/reference.md). Every option also reads from METAGUARD_<NAME>. */
export const workerSchema = {
  config: { type: 'string', description: 'config file (TOML) with [queue], [metrics] and [logging] tables; ${VAR} and ${VAR:-default} expand from the environment', placeholder: 'FILE' },
  backend: backendField,
  queueConfig: { type: 'json', description: 'queue configuration JSON (keys: docs/reference.md); required unless --backend or --config gives it' },
  threads: { type: 'int', min: 1, max: 256, default: Math.max(1, availableParallelism()), description: 'case threads' },
  pollInterval: { type: 'number', min: 0.01, max: 60, default: 1.0, description: 'seconds between claims when the queue is empty' },
  defaultTimeoutS: { type: 'number', min: 0, exclusiveMin: true, default: CASE_TIMEOUT_S, description: 'case time limit when a job has none, seconds' },
  defaultMemMb: { type: 'int', min: 16, max: 65_536, default: CASE_MEM_MB, description: 'thread heap limit when a job has none, MiB' },
  isolation: { type: 'enum', values: isolations, default: 'thread', description: 'where cases run: threads, or child processes under the permission model and prlimit' },
  hideEnv: { type: 'string', description: 'more variables hidden from cases, comma-separated names or PREFIX* (METAGUARD_* always are)', placeholder: 'NAMES' },
  shutdownTimeoutS: { type: 'number', min: 0, max: 3600, default: 30, description: 'drain deadline on SIGTERM/SIGINT, seconds' },
  workerId: { type: 'string', description: 'worker id (default host:pid:random)' },
  cacheDir: { type: 'string', description: 'artifact cache folder (default $CACHE_DIRECTORY or ~/.cache/metaguard)', placeholder: 'DIR' },
  ...logFields,
  ...metricsFields,
  httpSecrets: { type: 'string', description: "comma-separated environment variables a job's endpoint headers may read as ${NAME} (default none)", placeholder: 'NAMES' },
} as const satisfies Schema;

export type WorkerCliOptions = OptionsOf<typeof workerSchema>;

