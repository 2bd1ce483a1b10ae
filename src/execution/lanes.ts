/**
 * Running several cases of a chunk at once inside one case thread (`--concurrency K`), for
 * implementations that wait on I/O (HTTP endpoints, async modules).
 *
 * Each case has its own deadline: when it passes, the case's signal aborts (an HTTP request is cut,
 * an async module call is abandoned) and the case ends with E_TIMEOUT, without replacing the thread.
 * A busy loop still blocks the whole thread: then nothing reaches the parent, whose watchdog
 * terminates the thread as for sequential chunks (the keep-alive messages below are what tell it the
 * event loop is still turning while every lane waits on the network).
 */
import { performance } from 'node:perf_hooks';
import type { CaseResult } from '../core/protocol.js';

export class CaseTimeoutError extends Error {
  readonly code = 'E_TIMEOUT';
  constructor(limitMs: number) {
    super(`case exceeded its ${limitMs} ms limit`);
    this.name = 'CaseTimeoutError';
  }
}

/** One case's time limit as an AbortSignal; time spent waiting for the rate limit can be added back. */
export class CaseDeadline {
  readonly #controller = new AbortController();
  readonly #limitMs: number;
  #endAt: number;
  #timer: NodeJS.Timeout | undefined;
  /** Milliseconds added by `extend` (excluded from the case's duration). */
  extendedMs = 0;

  constructor(limitMs: number) {
    this.#limitMs = limitMs;
    this.#endAt = performance.now() + limitMs;
    this.#arm();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(new CaseTimeoutError(this.#limitMs)), Math.max(0, this.#endAt - performance.now()));
  }

  extend(ms: number): void {
    if (this.#controller.signal.aborted || ms <= 0) return;
    this.extendedMs += ms;
    this.#endAt += ms;
    this.#arm();
  }

  remainingMs(): number {
    return this.#endAt - performance.now();
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

/** Settles with `promise`, or rejects with the signal's reason when it aborts first. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

export interface LaneRun {
  count: number;
  concurrency: number;
  timeoutMs: number;
  /** Runs case `position` of the chunk under `deadline`. Never rejects (faults are results). */
  runCase(position: number, deadline: CaseDeadline): Promise<CaseResult>;
  /** Called as a case starts: the parent blames the last started case if the thread must be killed. */
  onStart(position: number): void;
  post(results: CaseResult[]): void;
  flushMs: number;
  flushMax: number;
}

/** Runs `count` cases with at most `concurrency` in flight; results are posted in small groups. */
export async function runInLanes(run: LaneRun): Promise<void> {
  let pending: CaseResult[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    if (pending.length) {
      run.post(pending);
      pending = [];
    }
  };
  // Keep-alive: the parent's watchdog re-arms on every message. Empty groups say "the event loop turns".
  const keepAlive = setInterval(() => run.post([]), Math.max(20, Math.min(1000, run.timeoutMs / 3)));
  let next = 0;
  const lane = async () => {
    while (next < run.count) {
      const position = next++;
      run.onStart(position);
      const deadline = new CaseDeadline(run.timeoutMs);
      let result: CaseResult;
      try {
        result = await run.runCase(position, deadline);
      } finally {
        deadline.clear();
      }
      pending.push(result);
      if (pending.length >= run.flushMax) flush();
      else flushTimer ??= setTimeout(flush, run.flushMs);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(run.concurrency, run.count)) }, lane));
  } finally {
    clearInterval(keepAlive);
    flush();
  }
}
