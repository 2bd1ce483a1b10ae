import { availableParallelism } from 'node:os';
import { INTERVAL_METHODS } from '../statistics/index.js';
import type { OptionsOf, Schema } from './schema.js';
import { isolations, logFields, metricsFields } from './fields.js';
import { CASE_MEM_MB, CASE_TIMEOUT_S } from './defaults.js';
import { MAX_CONCURRENCY, MAX_HTTP_RETRIES } from '../http/endpoint.js';

/** `metaguard evaluate` and `evaluate(options)` (docs/reference.md). */
export const evaluateSchema = {
  config: { type: 'string', description: 'config file (TOML): [dispatcher] [queue] [gating] [metrics] [logging] tables and top-level options; ${VAR} and ${VAR:-default} expand from the environment', placeholder: 'FILE' },
  task: { type: 'string', description: 'task module (.mjs, .js, .ts) or built-in task name', placeholder: 'PATH|NAME' },
  baseline: { type: 'string', description: 'baseline implementation: a module, or an http(s):// endpoint URL (defaults to the built-in example)', placeholder: 'PATH|URL' },
  candidate: { type: 'string', description: 'candidate implementation: a module, or an http(s):// endpoint URL (defaults to the built-in example)', placeholder: 'PATH|URL' },
  n: { type: 'int', min: 1, max: 10_000_000, default: 400, description: 'number of cases' },
  seed: { type: 'int', min: 0, max: 2 ** 32 - 1, default: 42, description: 'seed of the generator and of every rng' },
  timeoutS: { type: 'number', min: 0, exclusiveMin: true, max: 86_400, default: CASE_TIMEOUT_S, description: 'time limit of one case, seconds' },
  memMb: { type: 'int', min: 16, max: 65_536, default: CASE_MEM_MB, description: 'heap limit of each case thread, MiB' },
  alpha: { type: 'number', min: 0, exclusiveMin: true, max: 0.5, default: 0.05, description: 'significance level (CI coverage 1 - alpha)' },
  minDelta: { type: 'number', min: -1, max: 1, default: 0.02, description: 'least lower CI bound on candidate - baseline to adopt' },
  minPassRate: { type: 'number', min: 0, max: 1, default: 0.8, description: 'least candidate pass rate to adopt' },
  violationCap: { type: 'int', min: 0, default: 0, description: 'most candidate cases with a violation or an error (E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT, E_CRASH on a case where the baseline did not error) (0: any rejects)' },
  ciMethod: { type: 'enum', values: INTERVAL_METHODS, default: 'bootstrap', description: 'confidence interval method' },
  bootstrapSamples: { type: 'int', min: 100, max: 1_000_000, default: 1000, description: 'bootstrap resamples' },
  policy: { type: 'string', description: 'gating policy: a TOML file with [gating], or superiority:margin=X / noninferiority:margin=X', placeholder: 'FILE|PRESET' },
  dispatcher: { type: 'enum', values: ['local', 'queue'], description: 'run cases in-process or through a queue (default local; queue when a queue config is given)' },
  queueConfig: { type: 'json', description: 'queue configuration JSON (keys: docs/reference.md); implies --dispatcher queue' },
  deadlineS: { type: 'number', min: 0, exclusiveMin: true, max: 31_536_000, description: 'bound on the whole evaluation, seconds; past it the run stops (a queue job is withdrawn) and exits 2' },
  noWorkerTimeoutS: { type: 'number', min: 0, max: 31_536_000, default: 120, description: 'queue: exit 2 (job withdrawn) when no worker has been alive this long; 0 waits forever' },
  allowIncomplete: { type: 'bool', default: false, description: 'decide on the delivered cases when some could not be delivered (E_DELIVERY) instead of exiting 2' },
  parallel: { type: 'int', min: 1, max: 256, default: Math.max(1, availableParallelism()), description: 'threads of the local dispatcher, split between the roles (a pool each, at least one thread each)' },
  isolation: { type: 'enum', values: isolations, default: 'thread', description: 'where local cases run: threads, or child processes under the permission model and prlimit' },
  reportDir: { type: 'string', default: 'reports', description: 'folder of the JSON report', placeholder: 'DIR' },
  cacheDir: { type: 'string', description: 'folder of module bundles (default $XDG_CACHE_HOME/metaguard)', placeholder: 'DIR' },
  htmlReport: { type: 'string', description: 'also write a self-contained HTML report', placeholder: 'FILE' },
  junitReport: { type: 'string', description: 'also write a JUnit XML report', placeholder: 'FILE' },
  json: { type: 'bool', default: false, noEnv: true, description: 'print the report as JSON on stdout' },
  ...logFields,
  ...metricsFields,
  concurrency: { type: 'int', min: 1, max: MAX_CONCURRENCY, description: 'cases of a role in flight at once on each thread, for async implementations (default 1 for modules, 16 for endpoints)', placeholder: 'K' },
  rateLimit: { type: 'number', min: 0, exclusiveMin: true, max: 1_000_000, description: "requests per second to each role's endpoint, shared by a process's threads (default unlimited)", placeholder: 'RPS' },
  httpRetries: { type: 'int', min: 0, max: MAX_HTTP_RETRIES, default: 3, description: 'retries of a request after a connection error, 429 or 503 (backoff with jitter, Retry-After honoured)' },
} as const satisfies Schema;

/** Resolved options of an evaluation: the schema's, with `task` required and the dispatcher settled. */
export type EvaluateOptions = OptionsOf<typeof evaluateSchema> & { task: string; dispatcher: 'local' | 'queue' };

/** The gate's keys: also the keys of a policy file's [gating] table. */
export const gatingKeys = ['minDelta', 'minPassRate', 'violationCap', 'alpha', 'ciMethod', 'bootstrapSamples'] as const;
