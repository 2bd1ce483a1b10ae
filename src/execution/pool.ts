/**
 * The case pool: a piscina pool of case threads with limits enforced from the parent.
 *
 * - Time: the thread posts results as cases finish (grouped over at most a few ms); the parent re-arms
 *   one timer per message. When it fires (limit + slack) the chunk's task is aborted, which makes piscina terminate the thread
 *   (a busy loop cannot be interrupted any other way) and start a fresh one.
 * - Memory: the thread runs with `resourceLimits.maxOldGenerationSizeMb`; V8 kills it on a heap
 *   blow-up and the run rejects with ERR_WORKER_OUT_OF_MEMORY.
 * - Anything else that ends the thread (process.exit, a fatal error) is E_CRASH.
 *
 * In each case the running case — the first one of the chunk without a result — takes the error,
 * the cases that finished keep their results, and only the rest are run again.
 *
 * Results come back on the threads' `parentPort` (piscina re-emits those messages as the pool's
 * 'message' event), tagged with a random token per attempt. An earlier version transferred a new
 * MessagePort per chunk, and each left ~1.2 KB in the thread's heap for good (a daemon grew by
 * ~60 MB per million cases). Messages without a known token are dropped, and every result is checked
 * and cut to size (`limits.ts`) before it is believed: the thread's realm belongs to user code.
 *
 * A pool runs one role of one job: baseline and candidate never share a thread or a realm (a
 * candidate that replaces `Array.prototype.sort` in its realm cannot make the baseline fail). Threads
 * see a scrubbed environment (`env.ts`).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { MetaguardError, type ErrorInfo } from '../errors.js';
import { runningFromSource } from '../util/paths.js';
import type { ChunkExec, ChunkRequest, ThreadMessage } from './protocol.js';
import { boundResult } from './limits.js';
import { killStarted, threadStart, THREAD_MARK } from './reap.js';
import { PackedCases } from '../codec/serialize.js';
import { caseEnvironment } from './env.js';
import { CASE_MEM_MB, CASE_TIMEOUT_S } from '../options/defaults.js';
import type { CaseInput, CaseResult } from '../core/protocol.js';
import { publishing, type ChunkEvents } from './events.js';

export interface CasePoolOptions {
  /** Number of threads. @defaultValue available parallelism */
  threads?: number;
  /** Per-case time limit in milliseconds. @defaultValue 2000 */
  timeoutMs?: number;
  /** Heap limit of each thread (old generation), in MiB. @defaultValue 512 */
  memMb?: number;
  /** Environment of the threads (`caseEnvironment(env)` of the caller's environment). @defaultValue process.env without METAGUARD_* and METAGUARD_HIDE_ENV's names */
  env?: Record<string, string>;
  /** Seconds a thread may sit idle before piscina stops it (it is restarted on demand). @defaultValue 60 */
  idleTimeoutS?: number;
  /** First slot number of this pool's threads (pools of one pool set number their threads apart). @defaultValue 0 */
  slotBase?: number;
}

export interface ChunkSpec {
  taskUrl: string;
  implUrl: string;
  seed: number;
  cases: CaseInput[];
  /** Concurrency, endpoint and rate limit (src/execution/lanes, src/http/*). @defaultValue one case at a time */
  exec?: ChunkExec;
  /**
   * Each case serialized (codec/serialize `{ index, args }`), `payloads[i]` for `cases[i]`, when the
   * caller has them (a batch frame's, the gen thread's): the thread pool sends these bytes.
   */
  payloads?: Uint8Array[];
}

export type { ChunkEvents } from './events.js';

/**
 * The cases' serialized forms (`payloads[i]` of `cases[i]`, codec/serialize) back to back, or
 * undefined when there are none. A chunk sent this way crosses to its thread as one buffer instead of
 * a clone of every value.
 */
function packCases(cases: CaseInput[], payloads: Uint8Array[]): { packed: NonNullable<ChunkRequest['packed']>; buffers: ArrayBuffer[] } {
  let total = 0;
  for (let i = 0; i < payloads.length; i++) total += payloads[i].byteLength;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(payloads.length);
  const indices = new Float64Array(payloads.length);
  let at = 0;
  for (let i = 0; i < payloads.length; i++) {
    bytes.set(payloads[i], at);
    at += payloads[i].byteLength;
    ends[i] = at;
    indices[i] = cases[i].index;
  }
  // New buffers of this chunk's own: they can be moved to the thread rather than copied.
  return { packed: { bytes, ends, indices }, buffers: [bytes.buffer, ends.buffer, indices.buffer] };
}

/** The payloads of an attempt's cases: the chunk's own on a first attempt, looked up by index on a retry. */
function payloadsFor(spec: ChunkSpec, cases: CaseInput[]): Uint8Array[] | undefined {
  const payloads = spec.payloads;
  if (payloads === undefined || payloads.length !== spec.cases.length) return undefined;
  if (cases === spec.cases) return payloads;
  const byIndex = new Map<number, Uint8Array>();
  spec.cases.forEach((c, i) => byIndex.set(c.index, payloads[i]));
  return cases.map((c) => byIndex.get(c.index)!);
}

const threadFile = fileURLToPath(new URL(`../case-runner/case-thread.${runningFromSource ? 'ts' : 'js'}`, import.meta.url));

const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader', '--conditions', '-C']);
const LOADER_SWITCHES = new Set(['--enable-source-maps', '--no-warnings']);

/** The subset of the process's execArgv that worker threads need and accept. */
export function loaderExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (LOADER_SWITCHES.has(a)) out.push(a);
    else if (LOADER_FLAGS.has(name)) {
      if (eq > 0) out.push(a);
      else if (i + 1 < argv.length) out.push(a, argv[++i]);
    }
  }
  return out;
}

/** Extra time past the limit before the thread is terminated: message latency and timer jitter. */
export function timeoutSlackMs(timeoutMs: number): number {
  return Math.max(50, Math.min(500, timeoutMs * 0.05));
}

/** How long a thread may take to import a task and an implementation before the chunk is failed. */
const importBudgetMs = (timeoutMs: number) => Math.max(10_000, timeoutMs * 2);

export interface AttemptOutcome {
  results: CaseResult[];
  /** The thread that ran the attempt (-1 if it never began) and its slot. */
  threadId: number;
  slot: number;
  /** Position in the attempt's cases of the case running when it ended (-1: none had started). */
  position: number;
  /** Set when the thread was cut short; the first case without a result takes this error. */
  fault?: ErrorInfo & { beforeBegin: boolean; reason: 'timeout' | 'oom' | 'crash'; unfinished?: boolean };
}

/**
 * Runs `cases` by attempts until each has a result. After a fault, the running case — at the shared
 * progress position — takes the error, the cases that finished keep their results, and only the rest
 * are run again. Shared by the thread pool and the process pool.
 */
export async function runAttempts(
  cases: CaseInput[],
  events: ChunkEvents,
  timeoutMs: number,
  attempt: (cases: CaseInput[]) => Promise<AttemptOutcome>,
  hooks: { closed(): boolean; released(threadId: number): void },
): Promise<CaseResult[]> {
  const done: CaseResult[] = [];
  let remaining = cases;
  while (remaining.length > 0) {
    const outcome = await attempt(remaining);
    // A pool destroyed mid-chunk (a worker handing its batches back) has no trustworthy outcome.
    if (hooks.closed()) throw new MetaguardError('MG_ERR_POOL_CLOSED', 'the case pool was closed while the chunk ran');
    done.push(...outcome.results);
    if (!outcome.fault) break;
    if (!outcome.fault.unfinished) {
      events.onRestart?.(outcome.fault.reason, outcome.slot);
      hooks.released(outcome.threadId);
    }
    const finished = new Set(outcome.results.map((r) => r.index));
    const error = { code: outcome.fault.code, message: outcome.fault.message };
    // Before 'begin' the thread died loading modules: no case ran, every case of the chunk fails
    // alike. Otherwise the case at the progress position takes the error, and every other case
    // without a received result runs again (those that finished but whose results were not yet sent
    // included: at most a few milliseconds of work).
    const running = outcome.fault.beforeBegin || outcome.fault.unfinished ? -1 : outcome.position;
    const victim = remaining[running];
    const victims =
      running < 0 ? remaining.filter((c) => !finished.has(c.index)) : victim && !finished.has(victim.index) ? [victim] : remaining.filter((c) => !finished.has(c.index)).slice(0, 1);
    for (const c of victims) {
      const r: CaseResult = { index: c.index, passed: false, durationMs: outcome.fault.code === 'E_TIMEOUT' ? timeoutMs : 0, error };
      done.push(r);
      events.onResult?.(r, outcome.slot);
    }
    const blamed = new Set(victims.map((c) => c.index));
    remaining = remaining.filter((c) => !finished.has(c.index) && !blamed.has(c.index));
  }
  return done;
}

/** What an implementation module's `http` export describes (see case-runner/case-thread describeImplementation). */
export type ImplementationDescription = { kind: 'none' } | { kind: 'http'; http: unknown } | { kind: 'invalid'; message: string };

/** What a pool of case threads or case processes offers (see CasePool, ProcessCasePool). */
export interface CaseRunner {
  readonly threads: number;
  readonly timeoutMs: number;
  readonly memMb: number;
  readonly needsDrain: boolean;
  readonly utilization: number;
  readonly running: number;
  readonly closed: boolean;
  readonly threadCount: number;
  /** Sends a chunk's cases as their `payloads` when it has them (and never reads `args` then). */
  readonly takesPayloads: boolean;
  runChunk(spec: ChunkSpec, events?: ChunkEvents): Promise<CaseResult[]>;
  checkModules(taskUrl: string, implUrl: string): Promise<ErrorInfo | null>;
  heapAfterGc(): Promise<number>;
  describeImplementation(implUrl: string): Promise<ImplementationDescription>;
  close(): Promise<void>;
  destroy(): Promise<void>;
  on(event: 'drain', listener: () => void): unknown;
  /** A case thread died while it ran no chunk (code a case left behind: a timer, a late rejection); it is replaced. */
  on(event: 'idleExit', listener: (err: unknown) => void): unknown;
}

export class CasePool extends EventEmitter implements CaseRunner {
  readonly takesPayloads = true;
  readonly threads: number;
  readonly timeoutMs: number;
  readonly memMb: number;
  readonly #pool: Piscina<ChunkRequest, number>;
  /** Thread id → slot, and the slots free for new threads. */
  readonly #slots = new Map<number, number>();
  #nextSlot = 0;
  readonly #freeSlots: number[] = [];
  readonly #slotBase: number;
  /** Attempts in flight by token: thread messages are routed here. */
  readonly #attempts = new Map<string, (m: ThreadMessage) => void>();
  /** Kernel-thread slots of the requests running now, and the threads that ran one: kernel id → start time (reap.ts). */
  readonly #tidSlots = new Set<Int32Array>();
  readonly #tids = new Map<number, string>();
  /** This pool's part of the mark its threads' environments carry (reap.ts). */
  readonly #mark = randomBytes(8).toString('hex');
  #running = 0;
  #closed = false;
  /** When the last chunk finished (for idle eviction by a pool set). */
  lastUsed = Date.now();

  constructor(options: CasePoolOptions = {}) {
    super();
    this.threads = options.threads ?? availableParallelism();
    this.timeoutMs = options.timeoutMs ?? CASE_TIMEOUT_S * 1000;
    this.memMb = options.memMb ?? CASE_MEM_MB;
    this.#slotBase = options.slotBase ?? 0;
    this.#pool = new Piscina<ChunkRequest, number>({
      filename: threadFile,
      minThreads: this.threads,
      maxThreads: this.threads,
      idleTimeout: (options.idleTimeoutS ?? 60) * 1000,
      // A pool built without one (tests, benches) starts from this process's scrubbed environment.
      env: { ...(options.env ?? caseEnvironment(process.env)), [THREAD_MARK]: this.#mark },
      // Young generation is kept small so the old-generation limit is what a heap hog hits.
      resourceLimits: { maxOldGenerationSizeMb: this.memMb, maxYoungGenerationSizeMb: Math.min(64, Math.max(8, this.memMb / 8)) },
      // Threads need the loader flags (--import tsx when running from source) but reject others
      // (--max-old-space-size, --stack-size, …: ERR_WORKER_INVALID_EXEC_ARGV).
      execArgv: loaderExecArgv(process.execArgv),
    });
    // piscina emits 'error' for a thread that fails with no task (the chunk runner handles deaths
    // during tasks). An idle thread is frozen in piscina's Atomics.wait, so this is a thread failing
    // outside any chunk (its bootstrap, say): piscina replaces it, and the owner says so ('idleExit':
    // the daemon and the evaluation log it as unexpected_error) instead of it passing unseen.
    this.#pool.on('error', (err: unknown) => this.emit('idleExit', err));
    this.#pool.on('message', (m: unknown) => this.#route(m));
    this.#pool.on('drain', () => this.emit('drain'));
  }

  /** True while every thread is busy and further chunks would queue. */
  get needsDrain(): boolean {
    return this.#pool.needsDrain;
  }

  get utilization(): number {
    return this.#pool.utilization;
  }

  /** Chunks running or queued now. */
  get running(): number {
    return this.#running;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Live threads (for the bound on OS threads). */
  get threadCount(): number {
    return this.#pool.threads.length;
  }

  #route(m: unknown): void {
    if (m === null || typeof m !== 'object') return;
    const token = (m as { token?: unknown }).token;
    if (typeof token !== 'string') return;
    this.#attempts.get(token)?.(m as ThreadMessage);
  }

  /** Runs a chunk of cases; never rejects for a case's fault (those are results). */
  async runChunk(spec: ChunkSpec, events: ChunkEvents = {}): Promise<CaseResult[]> {
    if (this.#closed) throw new MetaguardError('MG_ERR_POOL_CLOSED', 'the case pool is closed');
    this.#running++;
    try {
      return await this.#runChunk(spec, publishing(events));
    } finally {
      this.#running--;
      this.lastUsed = Date.now();
      if (this.#running === 0) this.emit('idle');
    }
  }

  /**
   * Runs a piscina task that tells which kernel thread took it. What that thread started is killed
   * when the task is aborted (a case limit, a stop) and when the task fails (the thread died), and
   * what any thread of the pool started, when the pool stops (reap.ts).
   */
  #run(request: object, options: { name?: string; signal?: AbortSignal; transferList?: ArrayBuffer[] }): Promise<unknown> {
    const tid = new Int32Array(new SharedArrayBuffer(4));
    this.#tidSlots.add(tid);
    const { signal } = options;
    // Added before piscina's own listener: the children die first, so the thread can be terminated.
    const onAbort = () => this.#reapThread(Atomics.load(tid, 0));
    signal?.addEventListener('abort', onAbort, { once: true });
    (request as { tid?: Int32Array }).tid = tid;
    const done = () => {
      signal?.removeEventListener('abort', onAbort);
      this.#tidSlots.delete(tid);
    };
    return this.#pool.run(request as ChunkRequest, options).then(
      (value) => {
        done();
        this.#remember(Atomics.load(tid, 0));
        return value;
      },
      (err: unknown) => {
        done();
        // The thread is gone (or going): what it started is the main thread's or init's now, found by its mark.
        const t = Atomics.load(tid, 0);
        if (t > 0) killStarted({ marks: [`${this.#mark}.${t}`] });
        throw err;
      },
    );
  }

  #reapThread(tid: number): void {
    if (tid > 0) killStarted({ tids: [tid], marks: [`${this.#mark}.${tid}`] });
  }

  #remember(tid: number): void {
    if (tid <= 0 || this.#tids.has(tid)) return;
    // Threads are replaced (a case limit, a crash): forget those that are gone (or whose id the
    // kernel gave to a later thread) before the map grows.
    if (this.#tids.size >= 4 * this.threads + 4) for (const [t, start] of this.#tids) if (threadStart(t) !== start) this.#tids.delete(t);
    this.#tids.set(tid, threadStart(tid));
  }

  /** Kills what this pool's threads started (reap.ts): they are about to stop. */
  #reapAll(): void {
    const tids = [...this.#tidSlots].map((slot) => Atomics.load(slot, 0));
    // A remembered id counts only while the thread it names is the one that ran here.
    for (const [t, start] of this.#tids) if (start !== '' && threadStart(t) === start) tids.push(t);
    killStarted({ tids, prefixes: [`${this.#mark}.`] });
  }

  #runChunk(spec: ChunkSpec, events: ChunkEvents): Promise<CaseResult[]> {
    return runAttempts(spec.cases, events, this.timeoutMs, (cases) => this.#attempt(spec, cases, events), {
      closed: () => this.#closed,
      released: (threadId) => this.#releaseSlot(threadId),
    });
  }

  #attempt(spec: ChunkSpec, cases: CaseInput[], events: ChunkEvents): Promise<AttemptOutcome> {
    const token = randomBytes(16).toString('base64url');
    const progress = new Int32Array(new SharedArrayBuffer(4));
    progress[0] = -1;
    const abort = new AbortController();
    const results: CaseResult[] = [];
    // Only the indices this attempt was sent, each believed once.
    const awaited = new Set(cases.map((c) => c.index));
    const limitMs = this.timeoutMs + timeoutSlackMs(this.timeoutMs);
    let begun = false;
    let timedOut = false;
    let thread = -1;
    let slot = 0;
    let expected = -1;
    let settle: (() => void) | undefined;

    const onLimit = () => {
      timedOut = true;
      abort.abort();
    };
    // The import budget starts when a thread takes the chunk ('started'), not while it waits in
    // piscina's queue behind a long chunk (which would fail a chunk that never ran as E_TIMEOUT).
    let timer: NodeJS.Timeout = setTimeout(() => {}, 0);

    this.#attempts.set(token, (m: ThreadMessage) => {
      if (m.t === 'started') {
        clearTimeout(timer);
        timer = setTimeout(onLimit, importBudgetMs(this.timeoutMs));
      } else if (m.t === 'results' && Array.isArray(m.results)) {
        for (const raw of m.results) {
          const r = boundResult(raw);
          if (!r || !awaited.delete(r.index)) continue;
          results.push(r);
          events.onResult?.(r, slot);
        }
        const { passIdx, passMs } = m;
        if (passIdx instanceof Float64Array && passMs instanceof Float64Array && passIdx.length === passMs.length) {
          for (let i = 0; i < passIdx.length; i++) {
            const index = passIdx[i];
            // Only an index this attempt awaits, once (a safe integer by construction of the set).
            if (!awaited.delete(index)) continue;
            const ms = passMs[i];
            const r: CaseResult = { index: index === 0 ? 0 : index, passed: true, durationMs: ms >= 0 && ms < Infinity ? ms : 0 };
            results.push(r);
            events.onResult?.(r, slot);
          }
        }
        timer.refresh();
      } else if (m.t === 'begin' && !begun && Number.isSafeInteger(m.threadId)) {
        begun = true;
        thread = m.threadId;
        slot = this.#slotOf(thread);
        // From here on each case has the case limit (the import budget no longer applies).
        clearTimeout(timer);
        timer = setTimeout(onLimit, limitMs);
      }
      if (expected >= 0 && results.length >= expected) settle?.();
    });

    const payloads = payloadsFor(spec, cases);
    const sent = payloads ? packCases(cases, payloads) : undefined;
    const packed = sent?.packed;
    const request: ChunkRequest = { taskUrl: spec.taskUrl, implUrl: spec.implUrl, seed: spec.seed, timeoutMs: this.timeoutMs, cases: packed ? [] : cases, token, progress, ...(spec.exec ? { exec: spec.exec } : {}), ...(packed ? { packed } : {}) };
    let lateTimer: NodeJS.Timeout | undefined;
    const finish = (fault?: AttemptOutcome['fault']): AttemptOutcome => {
      clearTimeout(timer);
      clearTimeout(lateTimer);
      this.#attempts.delete(token);
      const position = Atomics.load(progress, 0);
      return fault ? { results, threadId: thread, slot, position, fault } : { results, threadId: thread, slot, position };
    };
    // The packed buffers are this attempt's own (a retry packs again): moved to the thread, not copied.
    return this.#run(request, { signal: abort.signal, ...(sent ? { transferList: sent.buffers } : {}) }).then(
      (heapUsed: unknown) =>
        new Promise<AttemptOutcome>((resolve) => {
          // Results travel on the thread's parentPort, not with the task's return value: wait until
          // one has arrived for every case sent (the thread's own count is not trusted).
          expected = cases.length;
          settle = () => {
            // The thread's heap after the chunk comes with the task's answer (threads post no 'end'
            // message: it could arrive after this); the slot is known once every result is in.
            if (typeof heapUsed === 'number' && Number.isFinite(heapUsed) && heapUsed >= 0) events.onHeap?.(heapUsed, slot);
            resolve(finish());
          };
          if (results.length >= expected) settle();
          else {
            // Both channels are FIFO, but they are distinct: give late messages a moment, then treat
            // missing results as a crash of the case that was running (a thread that lied). This
            // timer keeps the event loop alive: piscina unrefs an idle thread, and when the task's
            // answer overtakes every message of the chunk (seen on Node 22), nothing else would, and
            // the process could end with the chunk's promise pending.
            lateTimer = setTimeout(() => {
              if (this.#attempts.has(token)) resolve(finish({ code: 'E_CRASH', message: 'thread ended its chunk without a result for every case', beforeBegin: !begun, reason: 'crash', unfinished: true }));
            }, 1000);
          }
        }),
      (err: unknown) =>
        new Promise<AttemptOutcome>((resolve) => {
          // Let results the thread posted before it died arrive before deciding which case failed.
          // The shared progress slot says whether a case had started even when the thread died before
          // its 'begin' message arrived: a crash in a case is never mistaken for a load failure.
          setImmediate(() => resolve(finish(this.#classify(err, timedOut, begun || Atomics.load(progress, 0) >= 0))));
        }),
    );
  }

  #slotOf(threadId: number): number {
    let slot = this.#slots.get(threadId);
    if (slot === undefined) {
      slot = this.#freeSlots.length ? this.#freeSlots.shift()! : this.#slotBase + this.#nextSlot++;
      this.#slots.set(threadId, slot);
    }
    return slot;
  }

  #releaseSlot(threadId: number): void {
    const slot = this.#slots.get(threadId);
    if (slot === undefined) return;
    this.#slots.delete(threadId);
    this.#freeSlots.push(slot);
    this.#freeSlots.sort((a, b) => a - b);
  }

  #classify(err: unknown, timedOut: boolean, begun: boolean): NonNullable<AttemptOutcome['fault']> {
    const e = err as { code?: string; message?: string };
    const reason = timedOut ? 'timeout' : e?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'oom' : 'crash';
    if (!begun) {
      // The thread never got past loading the modules: a load failure, not a case result.
      const why = timedOut ? `import exceeded ${importBudgetMs(this.timeoutMs)} ms` : reason === 'oom' ? `import exhausted the ${this.memMb} MiB heap limit` : `the thread exited during import: ${e?.message ?? String(err)}`;
      return { code: 'MG_ERR_MODULE_LOAD', message: `failed to load: ${why}`, beforeBegin: true, reason };
    }
    if (timedOut) return { code: 'E_TIMEOUT', message: `case exceeded its ${this.timeoutMs} ms limit`, beforeBegin: false, reason };
    if (reason === 'oom') return { code: 'E_OOM', message: `case exhausted the ${this.memMb} MiB heap limit`, beforeBegin: false, reason };
    return { code: 'E_CRASH', message: `thread exited: ${e?.message ?? String(err)}`, beforeBegin: false, reason };
  }

  /**
   * Loads a task and an implementation in a thread and returns what failed, or null. A module that
   * does not finish loading within the import budget is reported as E_TIMEOUT.
   */
  async checkModules(taskUrl: string, implUrl: string): Promise<ErrorInfo | null> {
    const signal = AbortSignal.timeout(importBudgetMs(this.timeoutMs));
    try {
      return (await this.#run({ taskUrl, implUrl }, { name: 'checkModules', signal })) as ErrorInfo | null;
    } catch (err) {
      return this.#classify(err, signal.aborted, false);
    }
  }

  /** Asks a thread what an implementation module's `http` export describes (url, method, header templates). */
  async describeImplementation(implUrl: string): Promise<ImplementationDescription> {
    const answer: unknown = await this.#run({ implUrl }, { name: 'describeImplementation', signal: AbortSignal.timeout(importBudgetMs(this.timeoutMs)) });
    return answer as ImplementationDescription;
  }

  /** A thread's heap after a full collection, in bytes (leak tests and the soak benchmark). */
  async heapAfterGc(): Promise<number> {
    return (await this.#run({}, { name: 'heapAfterGc' })) as number;
  }

  /**
   * Loads the task in a thread and returns its name and the cases of `gen(n, seed)`, or what failed.
   * `where` names the task file in messages. Bounded only by `signal` (a deadline, a stop).
   */
  async generate(
    taskUrl: string,
    where: string,
    n: number,
    seed: number,
    signal?: AbortSignal,
  ): Promise<{ ok: true; name: string; cases: PackedCases } | { ok: false; code: string; message: string }> {
    let answer: { ok: true; name: unknown; bytes: unknown; ends: unknown } | { ok: false; code: string; message: string };
    try {
      answer = (await this.#run({ taskUrl, where, n, seed }, { name: 'generateCases', ...(signal ? { signal } : {}) })) as typeof answer;
    } catch (err) {
      if (signal?.aborted) throw err;
      const e = err as { code?: string; message?: string };
      const why = e?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `exhausted the ${this.memMb} MiB heap limit` : `ended its thread: ${e?.message ?? String(err)}`;
      // A gen whose cases cannot be cloned (functions, symbols) lands here too.
      return { ok: false, code: 'MG_ERR_TASK_GEN', message: `task ${where}: gen(${n}, ${seed}) ${why}` };
    }
    if (!answer.ok) return answer;
    // The thread ran user code: its answer is checked, and each case is decoded (when needed) from the
    // very bytes the case threads and batch frames get (what the report shows is what the implementations saw).
    if (typeof answer.name !== 'string' || !(answer.bytes instanceof Uint8Array) || !(answer.ends instanceof Uint32Array)) {
      return { ok: false, code: 'MG_ERR_TASK_GEN', message: `task ${where}: gen(${n}, ${seed}): its thread answered with something other than the generated cases` };
    }
    try {
      return { ok: true, name: answer.name, cases: new PackedCases(answer.bytes, answer.ends, n) };
    } catch (err) {
      return { ok: false, code: 'MG_ERR_TASK_GEN', message: `task ${where}: gen(${n}, ${seed}): ${(err as Error).message}` };
    }
  }

  /** Waits for running chunks, then stops the threads and what they started. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#running > 0) await new Promise((resolve) => this.once('idle', resolve));
    // Before the threads exit: Linux hands an exited thread's children to another thread.
    this.#reapAll();
    await this.#pool.close();
  }

  /** Stops the threads now, and what they started; running chunks are abandoned. Idempotent. */
  async destroy(): Promise<void> {
    this.#closed = true;
    // First: a thread blocked in a child process (execSync) ends only once that child has.
    this.#reapAll();
    await this.#pool.destroy();
  }
}
