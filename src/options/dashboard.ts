/** `metaguard dashboard` options (one schema, validated once). */
import { backendField, logFields } from './fields.js';
import type { OptionsOf, Schema } from './schema.js';

export const dashboardSchema = {
  config: { type: 'string', description: 'config file (TOML) with a [queue] table', placeholder: 'FILE' },
  backend: backendField,
  queueConfig: { type: 'json', description: 'queue configuration JSON (the one the workers use)' },
  port: { type: 'int', min: 0, max: 65_535, default: 9465, env: 'METAGUARD_DASHBOARD_PORT', description: 'port to serve the dashboard on' },
  host: { type: 'string', default: '127.0.0.1', env: 'METAGUARD_DASHBOARD_HOST', placeholder: 'ADDR', description: 'bind address; any non-loopback address requires --auth-token' },
  reportDir: { type: 'string', description: 'folder of JSON reports to list (the evaluations\' --report-dir)', placeholder: 'DIR' },
  authToken: {
    type: 'string',
    env: 'METAGUARD_DASHBOARD_TOKEN',
    description: 'token every request must carry (Authorization: Bearer, or the sign-in cookie); at least 16 characters',
    placeholder: 'TOKEN',
  },
  refreshS: { type: 'number', min: 0.2, max: 60, default: 2, env: 'METAGUARD_DASHBOARD_REFRESH_S', description: 'seconds between reads of the queue (live updates)' },
  logJson: logFields.logJson,
} as const satisfies Schema;

export type DashboardOptions = OptionsOf<typeof dashboardSchema>;

/** Shortest accepted --auth-token: a guessable token on a network bind is no protection. */
export const MIN_TOKEN_LENGTH = 16;
