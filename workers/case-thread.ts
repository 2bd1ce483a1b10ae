/**
 * Piscina thread entry: runs a chunk of cases of one implementation. For each case it calls the
 * implementation, checks every property, and runs every relation (the implementation again on the
 * transformed arguments, with an rng seeded from seed, case index and relation index). Results stream
 * back on the chunk's port as each case finishes. Time and memory limits are enforced by the parent,
 * which terminates this thread; this side only measures and classifies what it can see.
 */
import { isDeepStrictEqual } from 'node:util';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { threadId } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { toErrorInfo } from '../src/errors.js';
import { importModule, validateImplementation, validateTask } from '../src/spec/load.js';
import { relationRng } from '../src/util/rng.js';
import type { Solve, TaskSpec } from '../src/spec/types.js';
import type { CaseInput, CaseResult, ChunkRequest, ThreadMessage } from '../src/execution/protocol.js';

const FLUSH_MS = 2;
const FLUSH_MAX = 256;

const taskCache = new Map<string, Promise<TaskSpec>>();
const implCache = new Map<string, Promise<Solve>>();

function cached<T>(cache: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (p === undefined) {
    p = load();
    cache.set(key, p);
    // A failed import is not cached: the next chunk may try again on a fresh module graph.
    p.catch(() => cache.delete(key));
  }
  return p;
}

const where = (url: string) => (url.startsWith('file:') ? fileURLToPath(url) : url);
const loadTask = (url: string) => cached(taskCache, url, async () => validateTask((await importModule(url)).default, where(url)));
const loadSolve = (url: string) => cached(implCache, url, async () => validateImplementation(await importModule(url), where(url)));

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

async function call(solve: Solve, args: unknown[]): Promise<unknown> {
  const out = solve(...structuredClone(args));
  return isThenable(out) ? await out : out;
}

function preview(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 200 ? s.slice(0, 197) + '...' : s;
}

function failedProperties(task: TaskSpec, output: unknown, args: unknown[], mode: 'hard' | 'soft'): string[] {
  const failed: string[] = [];
  for (const p of task.properties) {
    if ((p.mode ?? 'hard') !== mode) continue;
    let ok = false;
    try {
      ok = p.check(output, ...args) === true;
    } catch {
      ok = false;
    }
    if (!ok) failed.push(p.name);
  }
  return failed;
}

async function runCase(task: TaskSpec, solve: Solve, seed: number, timeoutMs: number, c: CaseInput): Promise<CaseResult> {
  const started = performance.now();
  let output: unknown;
  try {
    output = await call(solve, c.args);
  } catch (err) {
    const durationMs = performance.now() - started;
    return { index: c.index, passed: false, durationMs, error: toErrorInfo(err, 'E_THROW') };
  }
  const propViolations = failedProperties(task, output, c.args, 'hard');
  const softViolations = failedProperties(task, output, c.args, 'soft');
  const mrViolations: string[] = [];
  const equivalent = task.equivalence ?? isDeepStrictEqual;
  for (let r = 0; r < task.relations.length; r++) {
    const relation = task.relations[r];
    let holds = false;
    try {
      const followArgs = relation.transform(structuredClone(c.args), relationRng(seed, c.index, r));
      const followOutput = await call(solve, followArgs);
      const expect = relation.expect ?? 'equal';
      if (expect === 'equal') holds = equivalent(output, followOutput) === true;
      else if (expect === 'not_equal') holds = equivalent(output, followOutput) !== true;
      else holds = failedProperties(task, followOutput, followArgs, 'hard').length === 0;
    } catch {
      // The implementation (or the transform) threw on the follow-up input: the relation does not hold.
      holds = false;
    }
    if (!holds) mrViolations.push(relation.name);
  }
  const durationMs = performance.now() - started;
  if (durationMs > timeoutMs) {
    return { index: c.index, passed: false, durationMs, error: { code: 'E_TIMEOUT', message: `case took ${durationMs.toFixed(0)} ms, limit ${timeoutMs} ms` } };
  }
  const passed = propViolations.length === 0 && mrViolations.length === 0;
  const result: CaseResult = { index: c.index, passed, durationMs };
  if (propViolations.length) result.propViolations = propViolations;
  if (softViolations.length) result.softViolations = softViolations;
  if (mrViolations.length) result.mrViolations = mrViolations;
  if (!passed) result.output = preview(output);
  return result;
}

export default async function runChunk(req: ChunkRequest): Promise<number> {
  const { port } = req;
  const post = (m: ThreadMessage) => port.postMessage(m);
  let task: TaskSpec;
  let solve: Solve;
  try {
    [task, solve] = await Promise.all([loadTask(req.taskUrl), loadSolve(req.implUrl)]);
  } catch (err) {
    // Failing at import is a crash of the implementation: every case of the chunk records it.
    const error = { code: 'E_CRASH', message: `failed at import: ${toErrorInfo(err).message.split('\n')[0]}` };
    post({ t: 'begin', threadId });
    post({ t: 'results', results: req.cases.map((c) => ({ index: c.index, passed: false, durationMs: 0, error })) });
    post({ t: 'end', count: req.cases.length, heapUsed: getHeapStatistics().used_heap_size });
    port.close();
    return req.cases.length;
  }
  post({ t: 'begin', threadId });
  // Results are flushed in small groups: one message per case would make the parent's thread the
  // bottleneck on fast cases. A group is flushed once FLUSH_MS have passed since the last flush, so a
  // slow case's result leaves at once, and a thread cut short loses at most FLUSH_MS of finished work.
  let pending: CaseResult[] = [];
  let lastFlush = performance.now();
  for (let i = 0; i < req.cases.length; i++) {
    Atomics.store(req.progress, 0, i);
    pending.push(await runCase(task, solve, req.seed, req.timeoutMs, req.cases[i]));
    const now = performance.now();
    if (now - lastFlush >= FLUSH_MS || pending.length >= FLUSH_MAX) {
      post({ t: 'results', results: pending });
      pending = [];
      lastFlush = now;
    }
  }
  if (pending.length) post({ t: 'results', results: pending });
  post({ t: 'end', count: req.cases.length, heapUsed: getHeapStatistics().used_heap_size });
  port.close();
  return req.cases.length;
}

/**
 * Loads a task and an implementation and reports what is wrong with them, if anything: the evaluator
 * checks implementations here, in a thread, so user code never runs in the coordinator's thread.
 */
export async function checkModules(req: { taskUrl: string; implUrl: string }): Promise<{ code: string; message: string } | null> {
  try {
    await Promise.all([loadTask(req.taskUrl), loadSolve(req.implUrl)]);
    return null;
  } catch (err) {
    return toErrorInfo(err, 'E_CRASH');
  }
}
