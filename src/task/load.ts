import { existsSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { MetaguardError } from '../errors.js';
import type { Solve, TaskSpec } from './types.js';
import { registerSelfResolve } from './self-resolve.js';

const TS_EXTENSIONS = /\.(c|m)?tsx?(\?.*)?$/;
/**
 * Whether TypeScript modules already load in this thread. `node --import tsx` registers its hooks in
 * the main thread only (worker threads do not get them), and the built CLI runs without tsx at all.
 */
let tsLoads: Promise<void> | undefined = isMainThread && process.execArgv.some((a, i, all) => a === 'tsx' && all[i - 1] === '--import') ? Promise.resolve() : undefined;

/**
 * Imports a task or implementation module. `.mjs`/`.js` load natively; for `.ts` we register tsx's ESM
 * loader once per thread, lazily, before the first import (not after a failure: Node caches a failed
 * import). Concurrent first imports share one registration.
 */
export async function importModule(url: string): Promise<Record<string, unknown>> {
  registerSelfResolve();
  if (TS_EXTENSIONS.test(url)) {
    await (tsLoads ??= import('tsx/esm/api').then(({ register }) => {
      register();
    }));
  }
  const mod = (await import(url)) as Record<string, unknown>;
  // A .ts file outside an ESM package is compiled to CommonJS: its exports arrive as `default`, with
  // the ES default export one level down (`default.default`, flagged __esModule).
  const inner = mod.default as Record<string, unknown> | undefined;
  if ('module.exports' in mod && inner !== null && typeof inner === 'object' && inner.__esModule === true) return inner;
  return mod;
}

/** Resolves a path given on the command line to a file URL, or fails naming the path. */
export function moduleUrl(path: string, what: string): string {
  if (path.startsWith('file://')) path = fileURLToPath(path);
  const abs = resolvePath(path);
  if (!existsSync(abs) || !statSync(abs).isFile()) {
    throw new MetaguardError('MG_ERR_FILE_NOT_FOUND', `${what} file not found: ${path}`, { field: what });
  }
  return pathToFileURL(abs).href;
}

function describe(url: string): string {
  return url.startsWith('file://') ? fileURLToPath(url) : url;
}

async function importOrExplain(url: string, what: string): Promise<Record<string, unknown>> {
  try {
    return await importModule(url);
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new MetaguardError('MG_ERR_MODULE_LOAD', `${what} ${describe(url)} failed to load: ${message}`, { cause: err });
  }
}

/** Checks the shape of a task spec and fills defaults; `where` names the file in messages. */
export function validateTask(value: unknown, where: string): TaskSpec {
  const fail = (reason: string) => new MetaguardError('MG_ERR_INVALID_TASK', `task ${where}: ${reason}`);
  if (value === null || typeof value !== 'object') throw fail('must default-export a task spec object');
  const spec = value as Partial<TaskSpec>;
  if (typeof spec.name !== 'string' || spec.name.length === 0) throw fail('missing `name` (a non-empty string)');
  if (typeof spec.gen !== 'function') throw fail('missing `gen(n, seed)` (a function)');
  const properties = spec.properties ?? [];
  const relations = spec.relations ?? [];
  if (!Array.isArray(properties)) throw fail('`properties` must be an array');
  if (!Array.isArray(relations)) throw fail('`relations` must be an array');
  properties.forEach((p, i) => {
    if (!p || typeof p.name !== 'string') throw fail(`properties[${i}] needs a \`name\``);
    if (typeof p.check !== 'function') throw fail(`property ${p.name} needs a \`check(output, ...args)\` function`);
    if (p.mode !== undefined && p.mode !== 'hard' && p.mode !== 'soft') throw fail(`property ${p.name}: mode must be 'hard' or 'soft'`);
  });
  relations.forEach((r, i) => {
    if (!r || typeof r.name !== 'string') throw fail(`relations[${i}] needs a \`name\``);
    if (typeof r.transform !== 'function') throw fail(`relation ${r.name} needs a \`transform(args, rng)\` function`);
    if (r.expect !== undefined && !['equal', 'not_equal', 'properties_hold'].includes(r.expect)) {
      throw fail(`relation ${r.name}: expect must be 'equal', 'not_equal' or 'properties_hold'`);
    }
  });
  if (spec.equivalence !== undefined && typeof spec.equivalence !== 'function') throw fail('`equivalence` must be a function');
  return { ...spec, properties, relations } as TaskSpec;
}

export function validateImplementation(mod: Record<string, unknown>, where: string): Solve {
  if (typeof mod.solve === 'function') return mod.solve as Solve;
  if (typeof mod.default === 'function') return mod.default as Solve;
  const def = mod.default as { solve?: unknown } | undefined;
  if (def && typeof def.solve === 'function') return def.solve.bind(def) as Solve;
  throw new MetaguardError('MG_ERR_INVALID_IMPLEMENTATION', `implementation ${where}: must export \`solve\` (a named export or a default-exported function)`);
}

/** Loads a task module; `where` names it in messages (the file the user gave, when `url` is its bundle). */
export async function loadTask(url: string, where = describe(url)): Promise<TaskSpec> {
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(url);
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    const named = err instanceof Error && err.name !== 'Error' && !message.startsWith(err.name) ? `${err.name}: ${message}` : message;
    throw new MetaguardError('MG_ERR_MODULE_LOAD', `task ${where}: failed to load: ${named}`, { cause: err });
  }
  return validateTask(mod.default ?? mod.task, where);
}

export async function loadImplementation(url: string): Promise<Solve> {
  const mod = await importOrExplain(url, 'implementation');
  return validateImplementation(mod, describe(url));
}

/**
 * Calls a task's `gen(n, seed)` and checks what it returned; `where` names the task file. Runs in a
 * case thread (never the coordinator's): a gen that hangs cannot stop a deadline or a signal.
 */
export function generateCases(task: TaskSpec, n: number, seed: number, where: string): unknown[][] {
  let cases: unknown;
  try {
    cases = task.gen(n, seed);
  } catch (err) {
    const e = err as { name?: unknown; message?: unknown };
    const message = typeof e?.message === 'string' ? e.message.split('\n')[0] : String(err);
    const named = typeof e?.name === 'string' && e.name !== 'Error' ? `${e.name}: ${message}` : message;
    throw new MetaguardError('MG_ERR_TASK_GEN', `task ${where}: gen(${n}, ${seed}) threw: ${named}`, { cause: err });
  }
  if (!Array.isArray(cases) || cases.length !== n) {
    throw new MetaguardError('MG_ERR_TASK_GEN', `task ${where}: gen(${n}, ${seed}) must return an array of ${n} argument lists, got ${Array.isArray(cases) ? `${cases.length} items` : typeof cases}`);
  }
  cases.forEach((c, i) => {
    if (!Array.isArray(c)) throw new MetaguardError('MG_ERR_TASK_GEN', `task ${where}: case ${i} is not an argument list (an array)`);
  });
  return cases as unknown[][];
}
