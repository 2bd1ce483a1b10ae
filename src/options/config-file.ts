/**
 * `--config FILE.toml` / `METAGUARD_CONFIG`: the Metamorphic Guard configuration layout.
 *
 *   [dispatcher]  type = "local" | "queue", parallel = N
 *   [queue]       config = '''{ …queue config JSON… }'''  (or the queue-config keys written as TOML)
 *   [gating]      min_delta, min_pass_rate, violation_cap, alpha, ci_method, bootstrap_samples
 *   [metrics]     enabled, port, host
 *   [logging]     json, level, file
 *   top level     evaluate's options in snake_case (task, baseline, candidate, n, seed, timeout_s, …)
 *
 * `${VAR}` and `${VAR:-default}` in any string value (also inside the queue config's JSON strings)
 * expand from the environment; an unset `${VAR}` without a default is an error naming it. Values rank
 * below environment variables and flags: flags > env > file > defaults.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { invalidOption, MetaguardError } from '../errors.js';
import { resolveOptions, type OptionsOf, type Schema, type Sources } from './schema.js';

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

/** Table key → schema key, for every table metaguard reads. Top-level keys map by snake_case. */
const tables: Record<string, Record<string, string>> = {
  dispatcher: { type: 'dispatcher', parallel: 'parallel', workers: 'parallel' },
  queue: { config: 'queueConfig' },
  gating: {
    min_delta: 'minDelta',
    min_pass_rate: 'minPassRate',
    violation_cap: 'violationCap',
    alpha: 'alpha',
    ci_method: 'ciMethod',
    bootstrap_samples: 'bootstrapSamples',
  },
  metrics: { enabled: 'metrics', port: 'metricsPort', host: 'metricsHost' },
  logging: { json: 'logJson', level: 'logLevel', file: 'logFile' },
};

/** Expands `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`. */
export function expandEnv(text: string, env: NodeJS.ProcessEnv, where: string): string {
  return text.replace(/\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, escaped: string | undefined, name: string, fallback: string | undefined) => {
    if (escaped) return whole.slice(1);
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    throw invalidOption(where, `\${${name}} is not set in the environment (write \${${name}:-default} for a default)`);
  });
}

function expandDeep(value: unknown, env: NodeJS.ProcessEnv, where: string): unknown {
  if (typeof value === 'string') return expandEnv(value, env, where);
  if (Array.isArray(value)) return value.map((v, i) => expandDeep(v, env, `${where}[${i}]`));
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandDeep(v, env, `${where}.${k}`)]));
  }
  return value;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}

export interface ConfigFileValues {
  /** Values keyed by schema key, still to be coerced. */
  values: Record<string, unknown>;
  /** How each key was written in the file, for messages (`gating.min_delta`). */
  keyOf: Record<string, string>;
}

/** Reads the TOML text of a config file for `schema` (the command's options). */
export function parseConfigText(text: string, file: string, schema: Schema, env: NodeJS.ProcessEnv): ConfigFileValues {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw invalidOption(`config ${file}`, `malformed TOML: ${((err as Error).message ?? String(err)).split('\n')[0]}`);
  }
  const values: Record<string, unknown> = {};
  const keyOf: Record<string, string> = {};
  const put = (key: string, written: string, value: unknown) => {
    if (!(key in schema)) return; // an option of another command (e.g. [gating] read by `worker`)
    values[key] = value;
    keyOf[key] = written;
  };
  const unknown = (written: string, known: string[]) =>
    new MetaguardError('MG_ERR_UNKNOWN_OPTION', `config ${file}: ${written}: unknown key (known: ${known.join(', ')})`, { field: written });
  for (const [top, value] of Object.entries(doc)) {
    const table = tables[top];
    if (table) {
      if (!isTable(value)) throw invalidOption(`config ${file}: ${top}`, 'must be a table ([' + top + '])');
      if (top === 'queue') {
        // `config = '''{json}'''` as the guides write it, or the queue-config keys written as TOML.
        const { config, ...rest } = value;
        let queueConfig: Record<string, unknown> = {};
        if (config !== undefined) {
          if (typeof config === 'string') {
            try {
              queueConfig = JSON.parse(config) as Record<string, unknown>;
            } catch (err) {
              throw invalidOption(`config ${file}: queue.config`, `is not valid JSON (${(err as Error).message})`);
            }
            if (!isTable(queueConfig)) throw invalidOption(`config ${file}: queue.config`, 'must be a JSON object');
          } else if (isTable(config)) queueConfig = config;
          else throw invalidOption(`config ${file}: queue.config`, 'must be a JSON object in a string, or a table');
        }
        const merged = expandDeep({ ...queueConfig, ...rest }, env, `config ${file}: queue.config`);
        put('queueConfig', 'queue.config', merged);
        continue;
      }
      for (const [k, v] of Object.entries(value)) {
        const key = table[k];
        if (!key) throw unknown(`${top}.${k}`, Object.keys(table).map((t) => `${top}.${t}`));
        put(key, `${top}.${k}`, expandDeep(v, env, `config ${file}: ${top}.${k}`));
      }
      continue;
    }
    const key = Object.keys(schema).find((k) => snake(k) === top);
    if (key && !isTable(value) && key !== 'config') {
      put(key, top, expandDeep(value, env, `config ${file}: ${top}`));
      continue;
    }
    if (isTable(value)) throw unknown(`[${top}]`, Object.keys(tables).map((t) => `[${t}]`));
    if (!Object.values(tables).some((t) => Object.values(t).includes(top))) {
      throw unknown(top, ['[dispatcher]', '[queue]', '[gating]', '[metrics]', '[logging]', 'or a top-level option such as n, seed, task']);
    }
  }
  return { values, keyOf };
}

/** Reads a config file; missing files and bad content fail with one line naming the file. */
export function loadConfigFile(file: string, schema: Schema, env: NodeJS.ProcessEnv): ConfigFileValues {
  if (!existsSync(file)) throw new MetaguardError('MG_ERR_FILE_NOT_FOUND', `config file not found: ${file}`, { field: 'config' });
  return parseConfigText(readFileSync(file, 'utf8'), file, schema, env);
}

/** The `file` part of option sources for a command: its config file. */
export function configFileSources(configPath: string, schema: Schema, env: NodeJS.ProcessEnv): Pick<Sources, 'file' | 'fileKey'> {
  const fromFile = loadConfigFile(configPath, schema, env);
  return { file: fromFile.values, fileKey: (key) => `config ${configPath}: ${fromFile.keyOf[key] ?? snake(key)}` };
}

/** Metamorphic Guard's `METAMORPHIC_GUARD_PROMETHEUS=1` turns metrics on, as `METAGUARD_METRICS=1` does. */
export function compatEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const prom = env.METAMORPHIC_GUARD_PROMETHEUS;
  if (prom === undefined || prom === '' || env.METAGUARD_METRICS !== undefined) return env;
  return { ...env, METAGUARD_METRICS: prom };
}

/** Resolves a command's options with its `--config` file (if the schema has `config`): flags > env > file > defaults. */
export function resolveWithConfigFile<S extends Schema>(schema: S, given: Sources): Readonly<OptionsOf<S>> {
  const sources = { ...given, env: compatEnv(given.env ?? {}) };
  const first = resolveOptions(schema, sources);
  const config = (first as { config?: string }).config;
  if (config === undefined) return first;
  return resolveOptions(schema, { ...sources, ...configFileSources(config, schema, sources.env ?? {}) });
}

/**
 * The queue a `worker` or `queue` command serves: it must be configured (a daemon serving an
 * in-process memory queue that nothing can reach would wait forever).
 */
export function requireQueueConfig(options: { queueConfig?: unknown; backend?: string }): void {
  if (options.queueConfig === undefined && options.backend === undefined) {
    throw invalidOption('METAGUARD_QUEUE_CONFIG', 'is not set: no queue to serve (set it, or pass --queue-config JSON or --config FILE.toml with a [queue] table)');
  }
}

/** After validation: a daemon or an operator command cannot reach another process's memory queue. */
export function refuseMemoryQueue(backend: string, viaFlag: boolean): void {
  if (backend === 'memory') {
    throw invalidOption(viaFlag ? '--backend' : 'queue-config.backend', 'memory is the in-process queue of one evaluation; no other process can reach it (use redis or kafka)');
  }
}
