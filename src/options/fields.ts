/** Option fields that several commands share, written once; each schema spreads the ones it takes. */
import { backends } from './queue.js';

/** `--log-json`, `--log-level`, `--log-file` (evaluate, worker; the dashboard takes `--log-json`). */
export const logFields = {
  logJson: { type: 'bool', default: false, description: 'log JSON lines to stderr' },
  logLevel: { type: 'enum', values: ['debug', 'info', 'warn', 'error'], default: 'info', description: 'least level logged (per-batch events are debug)' },
  logFile: { type: 'string', description: 'append JSON log lines to FILE', placeholder: 'FILE' },
} as const;

/** `--metrics`, `--metrics-port`, `--metrics-host` (evaluate, worker). */
export const metricsFields = {
  metrics: { type: 'bool', default: false, description: 'serve Prometheus metrics' },
  metricsPort: { type: 'int', min: 0, max: 65_535, default: 9464, description: 'metrics port' },
  metricsHost: { type: 'string', default: '127.0.0.1', description: 'metrics bind address' },
} as const;

/** `--backend` of the commands that serve or inspect a queue (worker, queue, dashboard). */
export const backendField = { type: 'enum', values: backends, description: 'queue backend (overrides queue-config.backend)' } as const;

/** Where cases run (`--isolation`). */
export const isolations = ['thread', 'process'] as const;
