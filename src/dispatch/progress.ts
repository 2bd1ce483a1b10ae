/**
 * What a queue coordinator tells the backend about its evaluation while it runs: cases done, passed
 * and errored per role, refreshed about once a second (`metaguard dashboard` lists these). Publishing
 * is best effort: a failed publication is logged and the evaluation goes on. The reply carries whether
 * a cancellation was requested, which the coordinator obeys at once.
 */
import { hostname } from 'node:os';
import type { Logger } from '../observe/log.js';
import { can } from '../queue/capabilities.js';
import type { JobProgress, Priority, QueueAdmin } from '../queue/types.js';
import type { Role, CaseResult } from '../core/protocol.js';

/** Least time between two publications. @defaultValue 1000 ms */
export const PROGRESS_INTERVAL_MS = 1000;

export class ProgressPublisher {
  readonly #backend: QueueAdmin;
  readonly #logger: Logger;
  readonly #progress: JobProgress;
  readonly #intervalMs: number;
  #lastPublished = 0;
  #failing = false;

  constructor(backend: QueueAdmin, logger: Logger, job: { jobId: string; task: string; total: number; priority: Priority }, intervalMs = PROGRESS_INTERVAL_MS) {
    this.#backend = backend;
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    const zero = () => ({ baseline: 0, candidate: 0 });
    this.#progress = { ...job, done: zero(), passed: zero(), errors: zero(), host: hostname(), pid: process.pid, startedAt: Date.now() };
  }

  /** Counts one accounted case (called once per (role, case index)). */
  record(role: Role, result: CaseResult): void {
    this.#progress.done[role]++;
    if (result.passed) this.#progress.passed[role]++;
    if (result.error) this.#progress.errors[role]++;
  }

  /**
   * Publishes when the interval has passed (or `force`). Resolves true when a cancellation of the job
   * was requested. Backends without progress support never publish and never cancel.
   */
  async tick(force = false): Promise<boolean> {
    const backend = this.#backend;
    if (!can(backend, 'progress')) return false;
    const now = Date.now();
    if (!force && now - this.#lastPublished < this.#intervalMs) return false;
    this.#lastPublished = now;
    try {
      const { cancelRequested } = await backend.publishProgress({ ...this.#progress });
      if (this.#failing) this.#failing = false;
      return cancelRequested;
    } catch (err) {
      if (!this.#failing) this.#logger.warn('backend_error', { job: this.#progress.jobId, during: 'publish progress', code: (err as { code?: string }).code, message: (err as Error).message });
      this.#failing = true;
      return false;
    }
  }

  /** Drops the job's progress entry (the evaluation ended, whichever way). */
  async remove(): Promise<void> {
    const backend = this.#backend;
    if (!can(backend, 'progress')) return;
    await backend.removeProgress(this.#progress.jobId).catch((err: unknown) =>
      this.#logger.warn('backend_error', { job: this.#progress.jobId, during: 'remove progress', code: (err as { code?: string }).code, message: (err as Error).message }),
    );
  }
}
