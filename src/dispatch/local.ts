/**
 * The local dispatcher: cases run in this process's case threads, in chunks, both roles interleaved,
 * each role in its own pool (a candidate never shares a realm with the baseline). The pools publish
 * what they observe with this dispatcher as the source (metrics subscribe: Metrics.attachCoordinator).
 */
import type { CaseRunner } from '../execution/pool.js';
import { createRolePools } from '../execution/pools.js';
import { caseEnvironment } from '../execution/env.js';
import { chunkExecFor, RateLimitStates } from '../execution/chunk-exec.js';
import { moduleLoadError, stoppedError, type DispatchEvents, type Dispatcher, type JobSpec } from './types.js';
import { NO_ARGS, roles, type Role, type CaseInput, type CaseResult } from '../core/protocol.js';
import { AdaptiveBatchSize } from '../queue/batching.js';

export interface LocalDispatcherOptions {
  threads: number;
  /** Run on these pools (already started, e.g. by the implementation check) instead of new ones. */
  pools?: Record<Role, CaseRunner>;
  /** Cases per `pool.run`, fixed. @defaultValue adaptive: see `chunkSizer` */
  chunkSize?: number;
  /** The caller's environment: endpoint headers' `${VAR}` values come from it, and pools this dispatcher starts begin from it (scrubbed). */
  env: NodeJS.ProcessEnv;
}

/** Thread milliseconds of case work a chunk should carry once the cases' cost is known. */
export const CHUNK_TARGET_MS = 25;
/** Largest chunk, and the first one's size. */
export const MAX_CHUNK = 4096;
const FIRST_CHUNK = 32;

/**
 * Sizes the chunks of a run of `n` cases on `threads` threads (both roles): each chunk costs a round
 * trip through this thread (a thread finishes a chunk, its answer is read here, the next chunk is
 * posted), during which that thread idles — 0.3–1 ms on a loaded 2-core machine. So a chunk should
 * carry about CHUNK_TARGET_MS of work: fast cases go in chunks of thousands, slow ones one or a few
 * at a time (a big chunk of slow cases would leave one thread with a long tail at the end). Chunks
 * start at FIRST_CHUNK cases and grow as the cases' time is measured (the queue's batch controller),
 * never above a quarter of a thread's share of the run, nor below 8 × the lanes of a concurrent role.
 */
export function chunkSizer(n: number, threads: number, lanes: number, fixed?: number): AdaptiveBatchSize {
  if (fixed !== undefined) return new AdaptiveBatchSize({ initial: fixed, min: fixed, max: fixed, adaptive: false });
  const min = lanes > 1 ? Math.max(1, Math.min(n, 1024, 8 * lanes)) : 1;
  const max = Math.max(min, Math.min(MAX_CHUNK, Math.ceil(n / (threads * 4))));
  return new AdaptiveBatchSize({ initial: Math.min(max, Math.max(min, FIRST_CHUNK)), min, max, adaptive: true, targetBatchMs: CHUNK_TARGET_MS });
}

export class LocalDispatcher implements Dispatcher {
  readonly #options: LocalDispatcherOptions;
  #pools: Record<Role, CaseRunner> | undefined;

  constructor(options: LocalDispatcherOptions) {
    this.#options = options;
    this.#pools = options.pools;
  }

  async run(job: JobSpec, events: DispatchEvents = {}): Promise<Record<Role, CaseResult[]>> {
    const pools = (this.#pools ??= createRolePools(this.#options.threads, { timeoutMs: job.timeoutMs, memMb: job.memMb }, { env: caseEnvironment(this.#options.env) }));
    const n = job.cases.length;
    const rateLimits = new RateLimitStates();
    const execs = { baseline: chunkExecFor(job.exec, 'baseline', { jobId: 'local', env: this.#options.env, rateLimits }), candidate: chunkExecFor(job.exec, 'candidate', { jobId: 'local', env: this.#options.env, rateLimits }) };
    // Chunks several times the concurrency, so lanes stay busy and a chunk's tail is short.
    const lanes = Math.max(execs.baseline?.concurrency ?? 1, execs.candidate?.concurrency ?? 1);
    const sizer = chunkSizer(n, this.#options.threads, lanes, this.#options.chunkSize);
    const out: Record<Role, CaseResult[]> = { baseline: new Array(n), candidate: new Array(n) };
    const bytesOnly = job.payloads !== undefined && job.payloads.length === n && roles.every((role) => pools[role].takesPayloads);
    const work: Promise<void>[] = [];
    let inFlight = 0;
    let wake: (() => void) | undefined;
    // The run stops early for a stop signal or a module that failed to load in a thread: no verdict.
    let failure: Error | undefined;
    let stopped!: () => void;
    /** Resolves once the run has failed (`failure` says why): nothing here rejects unhandled. */
    const failed = new Promise<void>((resolve) => (stopped = resolve));
    const fail = (err: Error) => {
      failure ??= err;
      stopped();
      wake?.();
    };
    const onAbort = () => fail(stoppedError(events.signal!, 'no case is left running'));
    if (events.signal?.aborted) onAbort();
    events.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (let start = 0, end = 0; start < n && !failure; start = end) {
        end = Math.min(n, start + sizer.take());
        const cases: CaseInput[] = new Array(end - start);
        // Pools that send payloads never read args: the cases are then not decoded in this thread.
        for (let i = start; i < end; i++) cases[i - start] = { index: i, args: bytesOnly ? NO_ARGS : job.cases.at(i)! };
        // Serialized once (by the gen thread): each role's thread gets a copy of the bytes, not a clone of every value.
        const payloads = job.payloads?.slice(start, end);
        for (const role of roles) {
          inFlight++;
          work.push(
            pools[role]
              .runChunk(
                { taskUrl: job.taskUrl, implUrl: job.implUrls[role], seed: job.seed, cases, ...(payloads ? { payloads } : {}), ...(execs[role] ? { exec: execs[role] } : {}) },
                {
                  context: { source: this, role },
                  onResult: (r) => {
                    if (failure) return;
                    if (r.error?.code === 'MG_ERR_MODULE_LOAD') {
                      fail(moduleLoadError(role, job.sources, r.error));
                      return;
                    }
                    events.onResult?.(role, r);
                  },
                },
              )
              // A chunk that fails fails the run; after that, the rejections of chunks abandoned by
              // destroy() below land here too and change nothing (the first failure is kept).
              .then(
                (results) => {
                  let busyMs = 0;
                  for (const r of results) {
                    out[role][r.index] = r;
                    busyMs += r.durationMs;
                  }
                  sizer.record(results.length, busyMs);
                },
                (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
              )
              .finally(() => {
                inFlight--;
                wake?.();
              }),
          );
        }
        // Backpressure: at most two chunks per thread in flight, instead of queueing every chunk up front.
        while (inFlight >= 2 * this.#options.threads && !failure) await new Promise<void>((resolve) => (wake = resolve));
      }
      if (!failure) await Promise.race([Promise.all(work), failed]);
      if (failure) throw failure;
    } catch (err) {
      // Chunks still running (a hung case, a signal) must not keep the process alive: stop the threads.
      await Promise.all(roles.map((r) => pools[r].destroy()));
      throw failure ?? err;
    } finally {
      events.signal?.removeEventListener('abort', onAbort);
    }
    return out;
  }

  /** Drains: waits for running chunks, then stops the threads. */
  async close(): Promise<void> {
    if (this.#pools) await Promise.all(roles.map((role) => this.#pools![role].close()));
  }

  /** Stops the threads now (a running close() returns with it). */
  async destroy(): Promise<void> {
    if (this.#pools) await Promise.all(roles.map((role) => this.#pools![role].destroy()));
  }
}
