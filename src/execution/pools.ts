/**
 * Pools of case threads, one per (role, job, limits): the two sides of a comparison never share a
 * thread or a realm, and a thread never carries one job's globals into the next.
 *
 * A worker daemon serves jobs with different limits for months, so its pools are bounded: at most
 * `maxPools` at once (least recently used idle pool closed first; a batch that needs a new pool while
 * every pool is busy waits for one to go idle), and a pool idle for `idleS` is closed. The daemon's
 * case threads therefore never exceed `maxPools × threadsPerPool` (= threads, or threads + 1 when
 * threads is odd) however many jobs it serves.
 */
import { CasePool, type CasePoolOptions, type CaseRunner } from './pool.js';
import { ProcessCasePool } from './process-pool.js';
import { CASE_MEM_MB, CASE_TIMEOUT_S } from '../options/defaults.js';

export const isolationModes = ['thread', 'process'] as const;
export type Isolation = (typeof isolationModes)[number];

export interface RunnerOptions {
  /** Where cases run. @defaultValue 'thread' */
  isolation?: Isolation;
  /** First thread slot number (metrics label) of the pool. @defaultValue 0 */
  slotBase?: number;
  /** Folders case processes may read (artifact cache, module folders); `process` only. */
  readPaths?: string[];
  env?: Record<string, string>;
}

/** A pool of case threads or case processes. */
export function createRunner(threads: number, limits: Pick<CasePoolOptions, 'timeoutMs' | 'memMb'>, options: RunnerOptions = {}): CaseRunner {
  const timeoutMs = limits.timeoutMs ?? CASE_TIMEOUT_S * 1000;
  const memMb = limits.memMb ?? CASE_MEM_MB;
  if (options.isolation === 'process') {
    return new ProcessCasePool({ threads, timeoutMs, memMb, readPaths: options.readPaths ?? [], slotBase: options.slotBase ?? 0, ...(options.env ? { env: options.env } : {}) });
  }
  return new CasePool({ threads, timeoutMs, memMb, slotBase: options.slotBase ?? 0, ...(options.env ? { env: options.env } : {}) });
}

export interface PoolSetOptions {
  /** Threads of each pool. */
  threadsPerPool: number;
  /** Pools alive at once. @defaultValue 2 (one per role) */
  maxPools?: number;
  /** Seconds an unused pool lives. @defaultValue 30 */
  idleS?: number;
  /** Environment of the threads (see env.ts). */
  env?: Record<string, string>;
  isolation?: Isolation;
  readPaths?: string[];
}

interface Entry {
  pool: CaseRunner;
  slotBase: number;
  /** Batches holding the pool now. */
  refs: number;
  lastUsed: number;
}

/** Threads per role pool and pools for a budget of `threads`: two roles share it. */
export function splitThreads(threads: number): { threadsPerPool: number; maxPools: number } {
  const threadsPerPool = Math.max(1, Math.ceil(threads / 2));
  return { threadsPerPool, maxPools: Math.max(2, Math.floor(threads / threadsPerPool)) };
}

export class PoolSet {
  readonly threadsPerPool: number;
  readonly maxPools: number;
  readonly idleMs: number;
  readonly #runner: RunnerOptions;
  /** Insertion order is recency order: a touched entry is re-inserted at the end. */
  readonly #entries = new Map<string, Entry>();
  #closingCount = 0;
  #waiters: (() => void)[] = [];
  #closed = false;
  /** Called for each pool created (the daemon wires 'drain'). */
  onCreate?: (pool: CaseRunner) => void;
  /** Pools created and closed so far (for tests and logs). */
  created = 0;
  retired = 0;

  constructor(options: PoolSetOptions) {
    this.threadsPerPool = options.threadsPerPool;
    this.maxPools = options.maxPools ?? 2;
    this.idleMs = (options.idleS ?? 30) * 1000;
    this.#runner = { isolation: options.isolation ?? 'thread', readPaths: options.readPaths ?? [], ...(options.env ? { env: options.env } : {}) };
  }

  get pools(): CaseRunner[] {
    return [...this.#entries.values()].map((e) => e.pool);
  }

  /** Live case threads over every pool. */
  get threadCount(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.pool.threadCount;
    return n;
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /**
   * The pool for `key` (created with `limits` if needed), held until `release(key)`. Waits while every
   * pool is busy and none may be added.
   */
  async acquire(key: string, limits: Pick<CasePoolOptions, 'timeoutMs' | 'memMb'>): Promise<CaseRunner> {
    for (;;) {
      if (this.#closed) throw new Error('pool set closed');
      const entry = this.#entries.get(key);
      if (entry) {
        entry.refs++;
        this.#entries.delete(key);
        this.#entries.set(key, entry);
        return entry.pool;
      }
      if (this.#entries.size + this.#closingCount < this.maxPools) {
        // Thread slots (the `thread` metrics label) stay within maxPools x threadsPerPool.
        const used = new Set([...this.#entries.values()].map((e) => e.slotBase));
        let slotBase = 0;
        while (used.has(slotBase)) slotBase += this.threadsPerPool;
        const pool = createRunner(this.threadsPerPool, limits, { ...this.#runner, slotBase });
        this.created++;
        this.#entries.set(key, { pool, refs: 1, lastUsed: Date.now(), slotBase });
        this.onCreate?.(pool);
        return pool;
      }
      const idle = [...this.#entries].find(([, e]) => e.refs === 0);
      if (idle) await this.#retire(idle[0]);
      else await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  release(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.refs = Math.max(0, entry.refs - 1);
    entry.lastUsed = Date.now();
    this.#notify();
  }

  async #retire(key: string): Promise<void> {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#closingCount++;
    try {
      await entry.pool.close();
    } finally {
      this.#closingCount--;
      this.retired++;
      this.#notify();
    }
  }

  /** Closes pools unused for idleS. */
  async sweep(now = Date.now()): Promise<void> {
    const stale = [...this.#entries].filter(([, e]) => e.refs === 0 && now - e.lastUsed >= this.idleMs).map(([k]) => k);
    await Promise.all(stale.map((k) => this.#retire(k)));
  }

  /** Waits for running chunks, then stops every pool. */
  async close(): Promise<void> {
    this.#closed = true;
    const pools = this.pools;
    this.#entries.clear();
    this.#notify();
    await Promise.all(pools.map((p) => p.close()));
  }

  /** Stops every pool now. */
  async destroy(): Promise<void> {
    this.#closed = true;
    const pools = this.pools;
    this.#entries.clear();
    this.#notify();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}

/** One pool per role for an in-process evaluation (`--parallel` threads shared by the two roles). */
export function createRolePools(threads: number, limits: Pick<CasePoolOptions, 'timeoutMs' | 'memMb'>, options: RunnerOptions = {}): { baseline: CaseRunner; candidate: CaseRunner } {
  const { threadsPerPool } = splitThreads(threads);
  return { baseline: createRunner(threadsPerPool, limits, options), candidate: createRunner(threadsPerPool, limits, { ...options, slotBase: threadsPerPool }) };
}
