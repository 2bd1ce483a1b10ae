/**
 * Resolution of `evaluate`'s options: flags > a policy (`--policy FILE|PRESET`, chosen for this run)
 * > METAGUARD_* environment > the config file (`--config`) > defaults.
 */
import { existsSync } from 'node:fs';
import { MetaguardError, invalidOption } from '../errors.js';
import { loadPolicy } from '../gate/policy.js';
import { builtinTask, builtinTaskNames } from '../spec/builtin.js';
import { nearest } from '../cli/args.js';
import { compatEnv, configFileSources } from './config-file.js';
import { evaluateSchema, type EvaluateOptions } from './evaluate.js';
import { resolveOptions, type Sources } from './schema.js';

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

export function resolveEvaluateOptions(given: Sources): Readonly<EvaluateOptions> {
  const sources = { ...given, env: compatEnv(given.env ?? {}) };
  const first = resolveOptions<EvaluateOptions>(evaluateSchema, sources);
  let options = first;
  const file = first.config !== undefined ? configFileSources(first.config, evaluateSchema, sources.env ?? {}) : {};
  if (first.config !== undefined) options = resolveOptions<EvaluateOptions>(evaluateSchema, { ...sources, ...file });
  // The policy may come from a flag, the environment or the config file.
  if (options.policy !== undefined) {
    const spec = options.policy;
    const policy = { values: loadPolicy(spec), where: (key: string) => `policy ${spec}: gating.${snake(key)}` };
    options = resolveOptions<EvaluateOptions>(evaluateSchema, { ...sources, ...file, policy });
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
  return withLocalWorkers(options);
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
