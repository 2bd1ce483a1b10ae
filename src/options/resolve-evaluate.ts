/**
 * Resolution of `evaluate`'s options: flags > METAGUARD_* environment > files (`--config` and
 * `--policy`; a policy's [gating] ranks above the config file's) > defaults.
 */
import { existsSync } from 'node:fs';
import { MetaguardError, invalidOption } from '../errors.js';
import { loadPolicy } from '../gate/policy.js';
import { builtinTask, builtinTaskNames } from '../spec/builtin.js';
import { nearest } from '../cli/args.js';
import { configFileSources } from './config-file.js';
import { evaluateSchema, type EvaluateOptions } from './evaluate.js';
import { resolveOptions, type Sources } from './schema.js';

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

export function resolveEvaluateOptions(sources: Sources): Readonly<EvaluateOptions> {
  const first = resolveOptions<EvaluateOptions>(evaluateSchema, sources);
  let options = first;
  if (first.config !== undefined || first.policy !== undefined) {
    const policy = first.policy === undefined ? undefined : { values: loadPolicy(first.policy), name: `policy ${first.policy}`, keyOf: (key: string) => `gating.${snake(key)}` };
    const file = configFileSources(first.config, evaluateSchema, sources.env ?? {}, policy);
    options = resolveOptions<EvaluateOptions>(evaluateSchema, { ...sources, ...file });
    // The config file may name a policy too.
    if (first.policy === undefined && options.policy !== undefined) {
      const late = { values: loadPolicy(options.policy), name: `policy ${options.policy}`, keyOf: (key: string) => `gating.${snake(key)}` };
      options = resolveOptions<EvaluateOptions>(evaluateSchema, { ...sources, ...configFileSources(first.config, evaluateSchema, sources.env ?? {}, late) });
    }
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
