/**
 * Resolution of `evaluate`'s options: flags > a policy (`--policy FILE|PRESET`, chosen for this run)
 * > METAGUARD_* environment > the config file (`--config`) > defaults.
 */
import { existsSync } from 'node:fs';
import { MetaguardError, invalidOption } from '../errors.js';
import { loadPolicy } from './policy.js';
import { builtinTask, builtinTaskNames } from '../task/builtin.js';
import { nearest } from '../util/text.js';
import { compatEnv, configFileSources } from './config-file.js';
import { evaluateSchema, type EvaluateOptions } from './evaluate.js';
import { envName, flagName, resolveOptions, type Sources } from './schema.js';

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

export function resolveEvaluateOptions(given: Sources): Readonly<EvaluateOptions> {
  const sources = { ...given, env: compatEnv(given.env ?? {}) };
  const first = resolveOptions<typeof evaluateSchema, EvaluateOptions>(evaluateSchema, sources);
  let options = first;
  const file: Pick<Sources, 'file' | 'fileKey'> = first.config !== undefined ? configFileSources(first.config, evaluateSchema, sources.env ?? {}) : {};
  if (first.config !== undefined) options = resolveOptions<typeof evaluateSchema, EvaluateOptions>(evaluateSchema, { ...sources, ...file });
  // The policy may come from a flag, the environment or the config file.
  if (options.policy !== undefined) {
    const spec = options.policy;
    const policy = { values: loadPolicy(spec), where: (key: string) => `policy ${spec}: gating.${snake(key)}` };
    options = resolveOptions<typeof evaluateSchema, EvaluateOptions>(evaluateSchema, { ...sources, ...file, policy });
  }
  if (options.task === undefined) throw invalidOption('--task', 'is required (a task module path or a built-in task name)');
  if (!existsSync(options.task) && !builtinTask(options.task)) {
    const guess = nearest(options.task, builtinTaskNames);
    throw new MetaguardError(
      'MG_ERR_FILE_NOT_FOUND',
      `--task: no file ${options.task} and no built-in task of that name (${guess ? `did you mean ${guess}? ` : ''}built-in tasks: ${builtinTaskNames.join(', ')})`,
      { field: 'task' },
    );
  }
  return withLocalWorkers(Object.freeze({ ...options, dispatcher: settleDispatcher(options, sources, file) }));
}

/** How the user named an option: the flag, the variable, the config file key or the programmatic key that set it. */
function givenAs(key: string, sources: Sources, file: Pick<Sources, 'file' | 'fileKey'>): string {
  if (sources.values?.[key] !== undefined) return key;
  if (sources.flags?.[key] !== undefined) return `--${flagName(key)}`;
  const env = sources.env?.[envName(key)];
  if (env !== undefined && env !== '') return envName(key);
  if (file.file?.[key] !== undefined) return file.fileKey?.(key) ?? key;
  return `--${flagName(key)}`;
}

/** A queue config implies the queue dispatcher; asking for the local one as well is a contradiction. */
function settleDispatcher(options: Readonly<EvaluateOptions>, sources: Sources, file: Pick<Sources, 'file' | 'fileKey'>): 'local' | 'queue' {
  const given = options.dispatcher as EvaluateOptions['dispatcher'] | undefined;
  if (options.queueConfig === undefined) return given ?? 'local';
  if (given === 'local') {
    const field = givenAs('dispatcher', sources, file);
    throw new MetaguardError('MG_ERR_INVALID_OPTION', `${field} local conflicts with ${givenAs('queueConfig', sources, file)}: a queue config runs cases through the queue (drop one of them)`, { field });
  }
  return 'queue';
}

/**
 * An in-process (memory) queue has no daemon that could reach it: unless the config says how many,
 * the coordinator starts one local worker per thread (`--parallel`); `spawn_local_workers = true`
 * (the Metamorphic Guard spelling) means the same.
 */
function withLocalWorkers(options: Readonly<EvaluateOptions>): Readonly<EvaluateOptions> {
  if (options.dispatcher !== 'queue') return options;
  const qc = options.queueConfig;
  if (qc !== undefined && (qc === null || typeof qc !== 'object' || Array.isArray(qc))) return options; // validated later, with its own message
  const given = (qc ?? {}) as Record<string, unknown>;
  if ((given.backend ?? 'memory') !== 'memory') return options;
  const spawn = given.spawn_local_workers;
  if (spawn !== undefined && spawn !== true) return options;
  return Object.freeze({ ...options, queueConfig: { ...given, spawn_local_workers: options.parallel } });
}
