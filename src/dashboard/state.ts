/**
 * What the dashboard shows, read from the backend every `refreshS` seconds into one snapshot that the
 * JSON API and the live stream (server-sent events) both serve. Everything read back from the backend
 * is re-checked here before it is shown: numbers must be finite, texts are cut short, and nothing of
 * the queue config but its backend kind and queue name ever leaves the process.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../observe/log.js';
import type { QueueConfig } from '../options/queue.js';
import { can } from '../queue/capabilities.js';
import { priorities, type Backend, type BenchRecord, type DeadEntry, type JobProgress, type Priority, type WorkerInfo } from '../queue/types.js';
export type { DeadRow, EvaluationRow, Overview, Snapshot, WorkerRow } from './views.js';
import { listReports } from './reports.js';
import type { DeadRow, EvaluationRow, Overview, Snapshot, WorkerRow } from './views.js';

/** Minutes of throughput history kept for the overview chart. */
export const HISTORY_MINUTES = 10;
const DEAD_LIMIT = 500;
const TEXT_MAX = 300;

const num = (v: unknown, fallback = 0): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);
const nonNeg = (v: unknown): number => Math.max(0, num(v));
const optNum = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
const text = (v: unknown): string => (typeof v === 'string' ? v.slice(0, TEXT_MAX) : '');

export function workerRow(w: WorkerInfo, now: number, beatIntervalMs: number): WorkerRow {
  const last = optNum(w.lastHeartbeat);
  const age = last === null ? null : Math.max(0, now - last) / 1000;
  const load = Array.isArray(w.threadLoad) ? w.threadLoad.slice(0, 1024) : [];
  return {
    workerId: text(w.workerId),
    host: text(w.host),
    pid: nonNeg(w.pid),
    threads: nonNeg(w.threads),
    state: w.state === 'draining' ? 'draining' : 'running',
    version: typeof w.version === 'string' ? text(w.version) : null,
    node: typeof w.node === 'string' ? text(w.node) : null,
    codec: w.codec === 'native' || w.codec === 'js' ? w.codec : null,
    casesPerSec: optNum(w.casesPerSec),
    casesCompleted: nonNeg(w.casesCompleted),
    threadLoad: load.map((t) => ({ busy: Math.min(1, nonNeg(t?.busy)), heapBytes: nonNeg(t?.heapBytes) })),
    startedAt: optNum(w.startedAt),
    lastHeartbeat: last,
    heartbeatAgeS: age === null ? null : Math.round(age * 10) / 10,
    stale: age === null || age * 1000 > 2 * beatIntervalMs + 1000,
  };
}

export function deadRow(d: DeadEntry, now: number): DeadRow {
  return {
    id: text(d.id),
    jobId: typeof d.jobId === 'string' ? text(d.jobId) : null,
    role: d.role === 'baseline' || d.role === 'candidate' ? d.role : null,
    code: text(d.error.code),
    reason: text(d.error.message),
    retryable: d.error.retryable === true,
    attempts: nonNeg(d.attempts),
    deadAt: nonNeg(d.deadAt),
    ageS: Math.round(Math.max(0, now - nonNeg(d.deadAt)) / 100) / 10,
  };
}

interface RateSample {
  at: number;
  done: number;
}

export class DashboardState extends EventEmitter<{ snapshot: [Snapshot] }> {
  readonly #backend: Backend;
  readonly #config: QueueConfig;
  readonly #logger: Logger;
  readonly #reportDir: string | undefined;
  readonly #refreshMs: number;
  readonly #history: [number, number, number][] = [];
  readonly #rates = new Map<string, RateSample[]>();
  #lastCompleted: { at: number; completed: number } | undefined;
  #bench: BenchRecord | null = null;
  #benchReadAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<Snapshot> | undefined;
  #snapshot: Snapshot | undefined;
  #error: string | null = null;

  constructor(options: { backend: Backend; config: QueueConfig; logger: Logger; reportDir?: string; refreshS: number }) {
    super();
    this.#backend = options.backend;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#reportDir = options.reportDir;
    this.#refreshMs = options.refreshS * 1000;
  }

  start(): void {
    const loop = () => {
      // refresh() rejects while there is no snapshot yet and the backend is down; #read logged it.
      this.#timer = setTimeout(
        () =>
          void this.refresh()
            .catch((err: unknown) => this.#logger.log('debug', 'backend_error', { during: 'dashboard refresh', code: (err as { code?: string })?.code ?? 'MG_ERR_BACKEND', message: (err as Error)?.message }))
            .finally(loop),
        this.#refreshMs,
      );
    };
    loop();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The latest snapshot (reads one if none yet). */
  async current(): Promise<Snapshot> {
    return this.#snapshot ?? this.refresh();
  }

  /** Reads the backend now (concurrent callers share one read) and publishes the snapshot. */
  refresh(): Promise<Snapshot> {
    return (this.#refreshing ??= this.#read().finally(() => (this.#refreshing = undefined)));
  }

  async #read(): Promise<Snapshot> {
    try {
      const snapshot = await this.#collect();
      if (this.#error !== null) this.#logger.info('backend_reconnected', { during: 'dashboard refresh' });
      this.#error = null;
      this.#snapshot = snapshot;
    } catch (err) {
      const message = (err as Error).message;
      if (this.#error === null) this.#logger.warn('backend_error', { during: 'dashboard refresh', code: (err as { code?: string }).code, message });
      this.#error = message;
      if (this.#snapshot) this.#snapshot = { ...this.#snapshot, overview: { ...this.#snapshot.overview, error: message } };
      else throw err;
    }
    this.emit('snapshot', this.#snapshot);
    return this.#snapshot;
  }

  async #collect(): Promise<Snapshot> {
    const backend = this.#backend;
    const [now, stats, dead, progress, byPriority] = await Promise.all([
      backend.now(),
      backend.stats(),
      backend.listDead(DEAD_LIMIT),
      can(backend, 'progress') ? backend.listProgress() : Promise.resolve(null),
      can(backend, 'priorityCounts') ? backend.priorityCounts() : Promise.resolve(null),
    ]);
    if (can(backend, 'benchRecords') && now - this.#benchReadAt > 5000) {
      this.#bench = await backend.getBenchRecord();
      this.#benchReadAt = now;
    }
    const beatMs = this.#config.heartbeat_check_interval * 1000;
    const workers = stats.workers.map((w) => workerRow(w, now, beatMs)).sort((a, b) => a.workerId.localeCompare(b.workerId));
    const casesPerSec = Math.round(workers.reduce((s, w) => s + (w.stale ? 0 : (w.casesPerSec ?? 0)), 0) * 10) / 10;
    const completed = nonNeg(stats.completed);
    let batchesPerSec = 0;
    if (this.#lastCompleted && now > this.#lastCompleted.at) batchesPerSec = Math.max(0, ((completed - this.#lastCompleted.completed) * 1000) / (now - this.#lastCompleted.at));
    this.#lastCompleted = { at: now, completed };
    this.#history.push([now, casesPerSec, Math.round(batchesPerSec * 10) / 10]);
    while (this.#history.length && this.#history[0][0] < now - HISTORY_MINUTES * 60_000) this.#history.shift();

    const perPriority = (counts: Partial<Record<Priority, unknown>> | undefined) => Object.fromEntries(priorities.map((p) => [p, nonNeg(counts?.[p])])) as Record<Priority, number>;
    const pending = perPriority(stats.pending);
    const overview: Overview = {
      queue: { backend: this.#config.backend, name: this.#config.queue },
      at: now,
      pending,
      inflightByPriority: byPriority ? perPriority(byPriority.inflight) : null,
      deadByPriority: byPriority ? perPriority(byPriority.dead) : null,
      inflight: nonNeg(stats.inflight),
      delayed: nonNeg(stats.delayed),
      dead: nonNeg(stats.dead),
      totals: { dispatched: nonNeg(stats.dispatched), completed, requeued: nonNeg(stats.requeued) },
      activeWorkers: workers.length,
      casesPerSec,
      history: [...this.#history],
      bench: this.#bench ? { recommendedBatchSize: this.#bench.recommendedBatchSize, at: this.#bench.at } : null,
      capabilities: { progress: progress !== null, cancel: backend.capabilities.admin.progress },
      error: null,
    };
    return {
      overview,
      workers,
      evaluations: progress === null ? [] : this.#evaluations(progress),
      dead: dead.map((d) => deadRow(d, now)),
      reports: this.#reportDir === undefined ? null : listReports(this.#reportDir),
    };
  }

  #evaluations(progress: JobProgress[]): EvaluationRow[] {
    const seen = new Set<string>();
    const wall = Date.now();
    const rows = progress.map((p): EvaluationRow => {
      seen.add(p.jobId);
      const done = p.done.baseline + p.done.candidate;
      // Rate over the last minute of this dashboard's own observations (clocks of other hosts are not used).
      const samples = this.#rates.get(p.jobId) ?? [];
      samples.push({ at: wall, done });
      while (samples.length > 2 && samples[0].at < wall - 60_000) samples.shift();
      this.#rates.set(p.jobId, samples);
      const first = samples[0];
      const rate = wall > first.at && done > first.done ? ((done - first.done) * 1000) / (wall - first.at) : null;
      const left = 2 * p.total - done;
      return {
        jobId: p.jobId,
        task: p.task,
        total: p.total,
        done: { ...p.done },
        passRate: {
          baseline: p.done.baseline ? p.passed.baseline / p.done.baseline : null,
          candidate: p.done.candidate ? p.passed.candidate / p.done.candidate : null,
        },
        errors: { ...p.errors },
        percent: p.total ? Math.round((done / (2 * p.total)) * 1000) / 10 : 100,
        casesPerSec: rate === null ? null : Math.round(rate * 10) / 10,
        etaS: rate === null ? null : Math.round(left / rate),
        priority: p.priority,
        host: p.host,
        pid: p.pid,
        startedAt: p.startedAt,
        updatedAt: p.updatedAt ?? null,
        cancelRequested: p.cancelRequested === true,
      };
    });
    for (const id of this.#rates.keys()) if (!seen.has(id)) this.#rates.delete(id);
    return rows.sort((a, b) => a.startedAt - b.startedAt);
  }
}
