/**
 * Piscina thread entry: runs a chunk of cases of one implementation. For each case it calls the
 * implementation, checks every property, and runs every relation (the implementation again on the
 * transformed arguments, with an rng seeded from seed, case index and relation index). Results stream
 * back on parentPort, tagged with the chunk's token, as cases finish. Time and memory limits are
 * enforced by the parent, which terminates this thread; this side only measures and classifies what
 * it can see, and cuts what it sends to size (src/execution/limits.ts).
 *
 * Structure: `runCase` runs one case; `runChunk` (the piscina task) loads the modules, runs the cases
 * one after another and flushes results; `Flusher` groups results into messages.
 */
import { guardThread } from '../execution/thread-guard.js';
import { osThreadId, THREAD_MARK } from '../execution/reap.js';
import { isDeepStrictEqual } from 'node:util';
import { copyArgs, copyOutput } from './copy.js';
import { realmLocked } from './realm-lock.js';
import { packCaseList, unpackCase } from '../codec/serialize.js';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, threadId } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { CaseErrorCodes, MetaguardError, toErrorInfo } from '../errors.js';
import { generateCases as generate, importModule, validateImplementation, validateTask } from '../task/load.js';
import { relationRng } from '../util/rng.js';
import type { Solve, TaskSpec } from '../task/types.js';
import type { ChunkExec, ChunkRequest, ThreadMessage } from '../execution/protocol.js';
import type { CallScope, HttpShape } from '../http/client.js';
import { isEndpointUrl } from '../http/endpoint.js';
import { CaseDeadline, raceAbort, runInLanes } from '../execution/lanes.js';
import { MAX_MESSAGE_CHARS, MAX_OUTPUT_CHARS, truncate } from '../execution/limits.js';
import type { CaseInput, CaseResult, HttpTrace } from '../core/protocol.js';

// Before any user module is imported.
guardThread();

// Captured before user code can replace them in this realm. A builtin module's exports are mutable:
// `require('node:util').isDeepStrictEqual = …` followed by `syncBuiltinESMExports()` would change an
// imported binding (the default equivalence of relations), not these constants.
const getPrototypeOf = Object.getPrototypeOf;
const PromiseProto = Promise.prototype;
const isArrayNow = Array.isArray;
const Float64Ctor = Float64Array;
const deepStrictEqual = isDeepStrictEqual;
const now = performance.now.bind(performance);
const freeze = Object.freeze;
// A case process refuses v8.setFlagsFromString to user code once its realm is locked (realm-lock.ts).
const setV8Flags = setFlagsFromString;
const apply = Reflect.apply;
const atomicsStore = Atomics.store;
/** This thread's kernel id, read before any user module loads (see execution/reap.ts). */
const OS_TID = osThreadId();
// What this thread starts inherits the pool's mark with this thread's id (a thread's process.env is its own).
if (process.env[THREAD_MARK] !== undefined && OS_TID > 0) process.env[THREAD_MARK] = `${process.env[THREAD_MARK]}.${OS_TID}`;
/** Tells the pool which kernel thread runs its request: the pool kills what this thread starts when it ends the thread. */
const claim = (req: { tid?: Int32Array }) => {
  if (req.tid) atomicsStore(req.tid, 0, OS_TID);
};

/**
 * The runner imports the task under a URL of its own (the bundle's, plus a query no one else knows),
 * so that its module instance is not the one an implementation gets by importing the task's file; and
 * it keeps its own frozen copy of the spec's lists (`snapshotTask`), so that rewriting the module's
 * objects changes nothing it runs.
 */
const TASK_INSTANCE = `mg-runner=${randomBytes(16).toString('hex')}`;
const runnerTaskUrl = (url: string) => `${url}${url.includes('?') ? '&' : '?'}${TASK_INSTANCE}`;

/**
 * A property as the runner calls it: `holds` applies its check, on the property's own object, to an
 * argument list `[output, ...args]` built once per output (not once per property).
 */
interface RunnerProperty {
  readonly name: string;
  /** 'hard', 'soft', or what else the task's `mode` said when it loaded (then it is never checked, as before). */
  readonly mode: unknown;
  holds(list: readonly unknown[]): boolean;
}

/** The task as the runner uses it: its own frozen lists, and the relations' equivalence resolved. */
interface RunnerTask {
  readonly properties: readonly RunnerProperty[];
  readonly relations: readonly TaskSpec['relations'][number][];
  readonly equivalent: (a: unknown, b: unknown) => boolean;
}

/** The spec as the runner uses it: its lists and their entries copied and frozen; functions called on their own objects. */
function snapshotTask(spec: TaskSpec): RunnerTask {
  const properties = spec.properties.map((p): RunnerProperty => {
    const { name } = p;
    const mode: unknown = p.mode ?? 'hard';
    const check = p.check;
    return freeze({ name, mode, holds: (list: readonly unknown[]) => apply(check, p, list) === true });
  });
  const relations = spec.relations.map((r) => {
    const { name, expect } = r;
    const transform = r.transform;
    return freeze({ name, expect, transform: (args: unknown[], rng: () => number) => apply(transform, r, [args, rng]) as unknown[] });
  });
  const equivalence = spec.equivalence;
  return freeze({ properties: freeze(properties), relations: freeze(relations), equivalent: equivalence ? (a: unknown, b: unknown) => apply(equivalence, spec, [a, b]) === true : deepStrictEqual });
}

const FLUSH_MS = 2;
const FLUSH_MAX = 256;

const taskCache = new Map<string, Promise<RunnerTask>>();
/** An implementation module exports `solve`, or `http` (an endpoint with its own request shape). */
type Loaded = { solve: Solve } | { http: HttpShape };
const implCache = new Map<string, Promise<Loaded>>();

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

const where = (url: string) => (url.startsWith('file:') ? fileURLToPath(url.split('?')[0]) : url);
const loadTask = (url: string) => cached(taskCache, url, async () => snapshotTask(validateTask((await importModule(runnerTaskUrl(url))).default, where(url))));
const loadImpl = (url: string): Promise<Loaded> =>
  cached(implCache, url, async (): Promise<Loaded> => {
    // A URL implementation has no module: the default request shape (args as a JSON array) applies.
    if (isEndpointUrl(url)) return { http: {} };
    const mod = await importModule(url);
    if (mod.http !== undefined) return { http: httpShape(mod.http, where(url)) };
    return { solve: validateImplementation(mod, where(url)) };
  });

function httpShape(value: unknown, file: string): HttpShape {
  const h = value as Record<string, unknown> | null;
  const fail = (reason: string) => new MetaguardError('MG_ERR_INVALID_IMPLEMENTATION', `implementation ${file}: \`http\` ${reason}`);
  if (h === null || typeof h !== 'object') throw fail('must be an object { url, method?, headers?, toRequest?, fromResponse? }');
  for (const fn of ['toRequest', 'fromResponse'] as const) if (h[fn] !== undefined && typeof h[fn] !== 'function') throw fail(`${fn} must be a function`);
  const shape: HttpShape = {};
  if (h.toRequest) shape.toRequest = (h.toRequest as NonNullable<HttpShape['toRequest']>).bind(h);
  if (h.fromResponse) shape.fromResponse = (h.fromResponse as NonNullable<HttpShape['fromResponse']>).bind(h);
  return shape;
}

/**
 * How a case calls the implementation; `scope` is given when the case runs under its own deadline.
 * Returns the output, or a thenable when the implementation is asynchronous.
 */
type Invoke = (args: unknown[], scope?: CallScope) => unknown;

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** `call` as a promise (a case racing its deadline). */
async function callAsync(solve: Solve, args: unknown[]): Promise<unknown> {
  const out = call(solve, args);
  return isThenable(out) ? await out : out;
}

/** Calls `solve` on its own copy of `args` (src/case-runner/copy.ts): the case's arguments stay intact. */
function call(solve: Solve, args: unknown[]): unknown {
  return solve(...copyArgs(args));
}

function preview(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    try {
      s = String(value);
    } catch {
      s = `[unprintable ${typeof value}]`;
    }
  }
  return truncate(s, MAX_OUTPUT_CHARS);
}

function errorInfo(err: unknown, fallbackCode: string): { code: string; message: string } {
  let info: { code: string; message: string };
  try {
    info = toErrorInfo(err, fallbackCode);
    // What an implementation throws is a case outcome: a code of metaguard's own (`MG_ERR_MODULE_LOAD`
    // stops the whole run, `E_DELIVERY` withholds the verdict) on an error it made up would turn its
    // rejection into a run error.
    if (!Object.hasOwn(CaseErrorCodes, info.code) || info.code === 'E_DELIVERY') info.code = fallbackCode;
    // Node's permission model (--isolation process) refuses with ERR_ACCESS_DENIED.
    if ((err as { code?: unknown })?.code === 'ERR_ACCESS_DENIED') info.code = 'E_PERMISSION';
    // An allocation the OS limit refused (--isolation process: RLIMIT_AS) is the memory limit.
    else if (err instanceof RangeError && /allocat/i.test(err.message)) info.code = 'E_OOM';
  } catch {
    // A thrown value whose message or toString throws.
    info = { code: fallbackCode, message: '[an error that cannot be printed]' };
  }
  return { ...info, message: truncate(info.message, MAX_MESSAGE_CHARS) };
}

/** E_OUTPUT: in a locked realm, the implementation returned something its checks cannot be given a copy of. */
function outputError(err: unknown): Error {
  const e = new Error(`the output is not data (checks see a structured-clone copy of it): ${errorInfo(err, 'E_OUTPUT').message}`);
  (e as Error & { code: string }).code = 'E_OUTPUT';
  return e;
}

/**
 * The properties an output violates, hard ones checked first, then soft ones; NO_VIOLATIONS (shared)
 * when it violates none.
 */
function checkProperties(task: RunnerTask, output: unknown, args: readonly unknown[], hardOnly = false): Violations {
  const properties = task.properties;
  if (properties.length === 0) return NO_VIOLATIONS;
  // One argument list for every check, built by hand (no spread: an iterator this realm's code could
  // have replaced). A transform's output that is not an array is spread, as the checks always got it,
  // and a failure to spread it fails each check.
  let list: unknown[] | undefined;
  if (isArrayNow(args)) {
    list = new Array<unknown>(args.length + 1);
    list[0] = output;
    for (let i = 0; i < args.length; i++) list[i + 1] = args[i];
  } else {
    try {
      list = [output, ...(args as Iterable<unknown>)];
    } catch {
      list = undefined;
    }
  }
  const hard = failing(properties, 'hard', list);
  const soft = hardOnly ? undefined : failing(properties, 'soft', list);
  return hard || soft ? { hard: hard ?? NONE, soft: soft ?? NONE } : NO_VIOLATIONS;
}

/** Names of the properties of `mode` that do not hold on `list` (all of them when there is no list). */
function failing(properties: readonly RunnerProperty[], mode: 'hard' | 'soft', list: readonly unknown[] | undefined): string[] | undefined {
  let failed: string[] | undefined;
  for (let i = 0; i < properties.length; i++) {
    const p = properties[i];
    if (p.mode !== mode) continue;
    let ok = false;
    try {
      ok = list !== undefined && p.holds(list);
    } catch {
      ok = false;
    }
    if (!ok) (failed ??= []).push(p.name);
  }
  return failed;
}

interface Violations {
  readonly hard: readonly string[];
  readonly soft: readonly string[];
}

/** An empty violation list, shared (never mutated). */
const NONE: readonly string[] = Object.freeze([]);
const NO_VIOLATIONS: Violations = Object.freeze({ hard: NONE, soft: NONE });

interface CaseContext {
  deadline: CaseDeadline;
  scope: CallScope;
  trace: HttpTrace;
  redact(text: string): string;
}

/**
 * One case as a generator that yields every call of the implementation and is resumed with its
 * output (`drive` below): a synchronous `solve` runs the whole case without a microtask, an
 * asynchronous one is awaited.
 */
function* caseSteps(task: RunnerTask, invoke: Invoke, seed: number, timeoutMs: number, c: CaseInput, ctx?: CaseContext): Generator<unknown, CaseResult, unknown> {
  const started = now();
  let output: unknown;
  try {
    output = yield invoke(c.args, ctx?.scope);
  } catch (err) {
    return failed(c, started, err, ctx);
  }
  const locked = realmLocked();
  if (locked) {
    try {
      output = copyOutput(output);
    } catch (err) {
      return failed(c, started, outputError(err), ctx);
    }
  }
  const violations = checkProperties(task, output, c.args);
  let mrViolations: string[] | undefined;
  const { relations, equivalent } = task;
  for (let r = 0; r < relations.length; r++) {
    const relation = relations[r];
    let holds = false;
    try {
      const expect = relation.expect ?? 'equal';
      // The transform gets its own copy of the arguments, and the implementation its own copy of the
      // transform's output (which may hold the task module's own values).
      const followArgs = relation.transform(copyArgs(c.args), relationRng(seed, c.index, r));
      let followOutput: unknown;
      try {
        followOutput = yield invoke(followArgs, ctx?.scope);
      } catch (err) {
        // An endpoint that fails or runs out of time on the follow-up input is that case's result,
        // not a relation violation.
        const code = (err as { code?: unknown } | null)?.code;
        if (ctx?.deadline.signal.aborted || (typeof code === 'string' && code.startsWith('E_HTTP_'))) return failed(c, started, err, ctx);
        throw err;
      }
      // An output that is not data: the relation does not hold (the catch below).
      if (locked) followOutput = copyOutput(followOutput);
      if (expect === 'equal') holds = equivalent(output, followOutput) === true;
      else if (expect === 'not_equal') holds = equivalent(output, followOutput) !== true;
      else holds = checkProperties(task, followOutput, followArgs, true).hard.length === 0;
    } catch {
      // The implementation (or the transform) threw on the follow-up input: the relation does not hold.
      holds = false;
    }
    if (!holds) (mrViolations ??= []).push(relation.name);
  }
  const durationMs = elapsed(started, ctx);
  if (ctx?.deadline.signal.aborted) return failed(c, started, ctx.deadline.signal.reason, ctx);
  if (durationMs > timeoutMs) {
    return withTrace({ index: c.index, passed: false, durationMs, error: { code: 'E_TIMEOUT', message: `case took ${durationMs.toFixed(0)} ms, limit ${timeoutMs} ms` } }, ctx);
  }
  const passed = violations.hard.length === 0 && mrViolations === undefined;
  const result: CaseResult = { index: c.index, passed, durationMs };
  if (violations.hard.length) result.propViolations = violations.hard as string[];
  if (violations.soft.length) result.softViolations = violations.soft as string[];
  if (mrViolations) result.mrViolations = mrViolations;
  if (!passed) result.output = ctx ? ctx.redact(preview(output)) : preview(output);
  return withTrace(result, ctx);
}

/** A case's time so far, less what its endpoint calls were granted beyond the limit. */
function elapsed(started: number, ctx: CaseContext | undefined): number {
  return now() - started - (ctx?.deadline.extendedMs ?? 0);
}

/** `r`, with the case's HTTP trace when it made calls. */
function withTrace(r: CaseResult, ctx: CaseContext | undefined): CaseResult {
  if (ctx?.trace.ms.length) r.http = ctx.trace;
  return r;
}

/** The result of a case that failed with `err` (its deadline's reason when that has passed). */
function failed(c: CaseInput, started: number, err: unknown, ctx: CaseContext | undefined): CaseResult {
  const error = ctx?.deadline.signal.aborted ? errorInfo(ctx.deadline.signal.reason, 'E_TIMEOUT') : errorInfo(err, 'E_THROW');
  if (ctx) error.message = ctx.redact(error.message);
  return withTrace({ index: c.index, passed: false, durationMs: elapsed(started, ctx), error }, ctx);
}

/** Runs a case's steps: synchronously while every call returns a plain value, asynchronously from the first thenable on. */
function drive(steps: Generator<unknown, CaseResult, unknown>): CaseResult | Promise<CaseResult> {
  let step = steps.next();
  while (!step.done) {
    const value = step.value;
    if (isThenable(value)) return driveAsync(steps, value);
    step = steps.next(value);
  }
  return step.value;
}

async function driveAsync(steps: Generator<unknown, CaseResult, unknown>, pending: PromiseLike<unknown>): Promise<CaseResult> {
  for (;;) {
    let step: IteratorResult<unknown, CaseResult>;
    try {
      step = steps.next(await pending);
    } catch (err) {
      step = steps.throw(err);
    }
    // Later calls may be synchronous again.
    while (!step.done && !isThenable(step.value)) step = steps.next(step.value);
    if (step.done) return step.value;
    pending = step.value as PromiseLike<unknown>;
  }
}

function runCase(task: RunnerTask, invoke: Invoke, seed: number, timeoutMs: number, c: CaseInput, ctx?: CaseContext): CaseResult | Promise<CaseResult> {
  return drive(caseSteps(task, invoke, seed, timeoutMs, c, ctx));
}

/**
 * Groups results into messages: one message per case would make the parent's thread the bottleneck on
 * fast cases. A group is flushed once FLUSH_MS have passed since the last flush, so a slow case's
 * result leaves at once, and a thread cut short loses at most FLUSH_MS of finished work.
 *
 * `compact` (case threads): a plain pass — no error, no soft violation, no HTTP trace, the common case
 * by far — travels as its index and duration in two Float64Arrays instead of an object, which a
 * structured clone copies in one go rather than field by field (~0.9 µs per result less, and less
 * garbage on both sides).
 */
class Flusher {
  #pending: CaseResult[] = [];
  #lastFlush = performance.now();
  readonly #passIdx = new Float64Ctor(FLUSH_MAX);
  readonly #passMs = new Float64Ctor(FLUSH_MAX);
  #passes = 0;
  constructor(
    readonly post: (m: ThreadMessage) => void,
    readonly token: string,
    readonly flushMs = FLUSH_MS,
    readonly compact = false,
  ) {}

  add(result: CaseResult): void {
    if (this.compact && result.passed === true && result.error === undefined && result.softViolations === undefined && result.http === undefined) {
      this.#passIdx[this.#passes] = result.index;
      this.#passMs[this.#passes] = result.durationMs;
      this.#passes++;
    } else this.#pending.push(result);
    const now = performance.now();
    if (now - this.#lastFlush >= this.flushMs || this.#pending.length + this.#passes >= FLUSH_MAX) this.flush(now);
  }

  flush(now = performance.now()): void {
    if (this.#pending.length || this.#passes) {
      const n = this.#passes;
      if (n === 0) this.post({ t: 'results', token: this.token, results: this.#pending });
      else {
        // Copied element by element into arrays of the captured constructor: no prototype method
        // (slice, subarray, a species constructor) that code in this realm could have replaced.
        const passIdx = new Float64Ctor(n);
        const passMs = new Float64Ctor(n);
        for (let i = 0; i < n; i++) {
          passIdx[i] = this.#passIdx[i];
          passMs[i] = this.#passMs[i];
        }
        this.post({ t: 'results', token: this.token, results: this.#pending, passIdx, passMs });
      }
    }
    this.#pending = [];
    this.#passes = 0;
    this.#lastFlush = now;
  }
}

// Our own reference: user code may replace parentPort.postMessage in this realm, not this binding.
// (No parentPort when a case process imports this module for runCases.)
const postMessage = parentPort ? parentPort.postMessage.bind(parentPort) : undefined;

/**
 * Piscina task: runs a chunk, results on parentPort. Answers with the thread's heap used after the
 * chunk instead of posting an 'end' message: the answer always reaches the pool, while a message
 * posted after the last results could arrive after the pool had settled the chunk (the port and
 * piscina's answer are not ordered against each other).
 */
export default async function runChunk(req: ChunkRequest): Promise<number> {
  claim(req);
  await runCases(req, (m) => postMessage!(m), { threadId, flushMs: FLUSH_MS, compact: true, answers: true });
  return getHeapStatistics().used_heap_size;
}

/**
 * Runs a chunk's cases one after another, posting begin / results / end with `post`. `flushMs` 0
 * sends each result as its case ends (a case process has no shared progress slot: the first case
 * without a result is the one running). `answers`: the caller's task answer carries the heap figure,
 * so no 'end' message is posted (one message fewer per chunk).
 */
export async function runCases(request: Omit<ChunkRequest, 'progress'> & { progress?: Int32Array }, post: (m: ThreadMessage) => void, where: { threadId: number; flushMs: number; compact?: boolean; answers?: boolean }): Promise<number> {
  const req = request.packed ? { ...request, cases: unpackCases(request.packed) } : request;
  const { token } = req;
  const threadId = where.threadId;
  const out = new Flusher(post, token, where.flushMs, where.compact === true);
  post({ t: 'started', token });
  let task: RunnerTask;
  let impl: Loaded;
  try {
    // The HTTP client (undici) is loaded only by threads that call endpoints, and before user code.
    if (req.exec?.http) await httpClient();
    [task, impl] = await Promise.all([loadTask(req.taskUrl), loadImpl(req.implUrl)]);
    if ('http' in impl && !req.exec?.http) throw new Error('the implementation is an HTTP endpoint but the chunk carries no endpoint description');
  } catch (err) {
    // A module that cannot be loaded is not a case result: every case of the chunk carries the load
    // error (MG_ERR_MODULE_LOAD), which the local dispatcher and the queue coordinator turn into a
    // run-level error (exit 2) instead of a verdict.
    const error = { code: 'MG_ERR_MODULE_LOAD', message: truncate(`failed to load: ${errorInfo(err, 'MG_ERR_MODULE_LOAD').message.split('\n')[0]}`, MAX_MESSAGE_CHARS) };
    post({ t: 'begin', token, threadId });
    post({ t: 'results', token, results: req.cases.map((c) => ({ index: c.index, passed: false, durationMs: 0, error })) });
    if (!where.answers) post({ t: 'end', token, count: req.cases.length, heapUsed: getHeapStatistics().used_heap_size });
    return req.cases.length;
  }
  post({ t: 'begin', token, threadId });
  if ('http' in impl || (req.exec?.concurrency ?? 1) > 1) {
    await runConcurrently(req, task, impl, post);
    if (!where.answers) post({ t: 'end', token, count: req.cases.length, heapUsed: getHeapStatistics().used_heap_size });
    return req.cases.length;
  }
  const solve = impl.solve;
  const invoke: Invoke = (args) => call(solve, args);
  for (let i = 0; i < req.cases.length; i++) {
    if (req.progress) Atomics.store(req.progress, 0, i);
    const result = runCase(task, invoke, req.seed, req.timeoutMs, req.cases[i]);
    // No await (a microtask per case) unless the case went asynchronous.
    out.add(getPrototypeOf(result) === PromiseProto ? await result : (result as CaseResult));
  }
  out.flush();
  if (!where.answers) post({ t: 'end', token, count: req.cases.length, heapUsed: getHeapStatistics().used_heap_size });
  return req.cases.length;
}

/**
 * The cases of a chunk sent serialized (ChunkRequest.packed). The worker checked each one when it
 * decoded the batch; a case that does not come back well-formed here runs with no arguments and
 * fails like any case whose implementation cannot handle its input.
 */
function unpackCases(packed: NonNullable<ChunkRequest['packed']>): CaseInput[] {
  const out: CaseInput[] = new Array(packed.ends.length);
  let start = 0;
  for (let i = 0; i < packed.ends.length; i++) {
    const end = packed.ends[i];
    let args: unknown = undefined;
    try {
      args = (unpackCase(packed.bytes.subarray(start, end)) as CaseInput | null)?.args;
    } catch {
      // Left as no arguments (below).
    }
    out[i] = { index: packed.indices[i], args: isArrayNow(args) ? args : [] };
    start = end;
  }
  return out;
}

/** The HTTP client, loaded on first use: undici alone costs a case thread ~130 ms to start. */
let httpClientModule: Promise<typeof import('../http/client.js')> | undefined;
const httpClient = () => (httpClientModule ??= import('../http/client.js'));

/** Cases of a chunk with up to `exec.concurrency` in flight, each under its own deadline (src/execution/lanes). */
async function runConcurrently(req: Omit<ChunkRequest, 'progress'> & { progress?: Int32Array }, task: RunnerTask, impl: Loaded, post: (m: ThreadMessage) => void): Promise<void> {
  const exec: ChunkExec = req.exec ?? { concurrency: 1 };
  const caller = 'http' in impl ? new (await httpClient()).HttpCaller(exec.http!, impl.http, exec.concurrency, exec.rateLimit) : undefined;
  const invoke: Invoke = caller
    ? (args, scope) => caller.call(args, scope!)
    : (args, scope) => (scope ? raceAbort(callAsync((impl as { solve: Solve }).solve, args), scope.signal) : call((impl as { solve: Solve }).solve, args));
  const redact = caller ? (text: string) => caller.redact(text) : (text: string) => text;
  await runInLanes({
    count: req.cases.length,
    concurrency: exec.concurrency,
    timeoutMs: req.timeoutMs,
    flushMs: FLUSH_MS,
    flushMax: FLUSH_MAX,
    onStart: (position) => {
      if (req.progress) Atomics.store(req.progress, 0, position);
    },
    post: (results) => post({ t: 'results', token: req.token, results }),
    runCase: async (position, deadline) => {
      const trace: HttpTrace = { calls: 0, ms: [], status: [] };
      const scope: CallScope = { signal: deadline.signal, trace, extend: (ms) => deadline.extend(ms), remainingMs: () => deadline.remainingMs() };
      const c = req.cases[position];
      try {
        return await runCase(task, invoke, req.seed, req.timeoutMs, c, { deadline, scope, trace, redact });
      } catch (err) {
        // A task check that throws outside its guards: the case's result, never the lane's end.
        return { index: c.index, passed: false, durationMs: 0, error: { code: 'E_THROW', message: redact(errorInfo(err, 'E_THROW').message) } };
      }
    },
  });
}

/**
 * What a module's `http` export says about its endpoint (url, method, header templates): `none` for
 * a module without one or one that fails to load (its cases report that), `invalid` when the
 * description is not plain data.
 */
export async function describeImplementation(req: { implUrl: string; tid?: Int32Array }): Promise<{ kind: 'none' } | { kind: 'http'; http: unknown } | { kind: 'invalid'; message: string }> {
  claim(req);
  if (isEndpointUrl(req.implUrl)) return { kind: 'none' };
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(req.implUrl);
  } catch {
    return { kind: 'none' };
  }
  const h = mod.http as { url?: unknown; method?: unknown; headers?: unknown } | undefined;
  if (h === undefined) return { kind: 'none' };
  if (h === null || typeof h !== 'object') return { kind: 'invalid', message: 'must be an object { url, method?, headers?, toRequest?, fromResponse? }' };
  try {
    // Only data crosses back to the coordinator.
    return { kind: 'http', http: JSON.parse(JSON.stringify({ url: h.url, method: h.method, headers: h.headers })) as unknown };
  } catch (err) {
    return { kind: 'invalid', message: `url, method and headers must be plain data (${toErrorInfo(err).message})` };
  }
}

/**
 * Loads a task and an implementation and reports what is wrong with them, if anything: the evaluator
 * checks implementations here, in a thread, so user code never runs in the coordinator's thread.
 */
export async function checkModules(req: { taskUrl: string; implUrl: string; tid?: Int32Array }): Promise<{ code: string; message: string; module: 'task' | 'implementation' } | null> {
  claim(req);
  const problem = async (module: 'task' | 'implementation', load: Promise<unknown>) => {
    try {
      await load;
      return null;
    } catch (err) {
      const info = toErrorInfo(err, 'MG_ERR_MODULE_LOAD');
      // Shape errors (no solve, no gen) keep their code and say what is missing; anything thrown while
      // importing is a load failure, reported by its first line.
      if (info.code === 'MG_ERR_INVALID_IMPLEMENTATION' || info.code === 'MG_ERR_INVALID_TASK') return { code: info.code, message: info.message.replace(/^(task|implementation) [^:]*: /, ''), module };
      return { code: 'MG_ERR_MODULE_LOAD', message: `failed to load: ${info.message.split('\n')[0]}`, module };
    }
  };
  return (await problem('task', loadTask(req.taskUrl))) ?? (await problem('implementation', loadImpl(req.implUrl)));
}

/**
 * Loads the task and generates the evaluation's cases here, in a thread, so that the coordinator's
 * thread never runs user code. Errors come back as `{ ok: false, code, message }` naming `where`.
 */
export async function generateCases(req: { taskUrl: string; where: string; n: number; seed: number; tid?: Int32Array }): Promise<{ ok: true; name: string; bytes: Uint8Array; ends: Uint32Array } | { ok: false; code: string; message: string }> {
  claim(req);
  let task: TaskSpec;
  try {
    task = validateTask((await importModule(req.taskUrl)).default, req.where);
  } catch (err) {
    const info = toErrorInfo(err, 'MG_ERR_MODULE_LOAD');
    if (info.code === 'MG_ERR_INVALID_TASK') return { ok: false, code: info.code, message: info.message };
    return { ok: false, code: 'MG_ERR_MODULE_LOAD', message: `task ${req.where}: failed to load: ${info.message.split('\n')[0]}` };
  }
  try {
    // Serialized here, once: the coordinator, both roles' case threads and batch frames use these bytes.
    const { bytes, ends } = packCaseList(generate(task, req.n, req.seed, req.where));
    return { ok: true, name: task.name, bytes, ends };
  } catch (err) {
    const info = toErrorInfo(err, 'MG_ERR_TASK_GEN');
    return { ok: false, code: info.code, message: info.message.startsWith('case ') ? `task ${req.where}: gen(${req.n}, ${req.seed}): ${info.message}` : info.message };
  }
}

/**
 * Diagnostic task for leak tests and the soak benchmark: the thread's heap after a full collection.
 * (`--expose-gc` cannot be given to a worker thread; setting the flag at run time exposes gc to new
 * contexts.)
 */
export function heapAfterGc(req?: { tid?: Int32Array }): number {
  if (req) claim(req);
  setV8Flags('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  return getHeapStatistics().used_heap_size;
}
