/**
 * Prometheus metrics (docs/reference.md), one registry per coordinator or worker. Names that say
 * "cases" count cases; batch counts have `_batches` names. Metrics subscribe to the events a worker
 * daemon, a coordinator and their case pools publish (events.ts); nothing in the hot path calls
 * prom-client.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { priorities, type Priority } from '../core/protocol.js';
import { version } from '../version.js';
import { observe, type ObservedCase, type ThreadEvent } from './events.js';


/** What `refreshQueue` reads: a queue's counts (the Backend's `stats()`). */
export interface QueueCounts {
  pending: Record<Priority, number>;
  inflight: number;
  dead: number;
  workers: readonly unknown[];
}

export type CaseStatus = 'passed' | 'failed' | 'error';

export function caseStatus(r: ObservedCase): CaseStatus {
  return r.error ? 'error' : r.passed ? 'passed' : 'failed';
}

export class Metrics {
  readonly registry = new Registry();
  readonly pendingTasks: Gauge<'priority'>;
  readonly inflightCases: Gauge;
  readonly inflightBatches: Gauge;
  readonly deadLetterBatches: Gauge;
  readonly batchesRequeued: Counter;
  readonly activeWorkers: Gauge;
  readonly casesDispatched: Counter;
  readonly casesCompleted: Counter;
  readonly casesRequeued: Counter;
  readonly heartbeats: Counter;
  readonly timeoutFailures: Counter;
  readonly serializationErrors: Counter;
  readonly forgedEntries: Counter<'reason'>;
  readonly cases: Counter<'role' | 'status'>;
  readonly threadCases: Counter<'thread'>;
  readonly threadDuration: Histogram<'thread'>;
  readonly threadHeap: Gauge<'thread'>;
  readonly threadUtilization: Gauge<'thread'>;
  readonly threadRestarts: Counter<'thread' | 'reason'>;
  readonly batchSize: Gauge;
  readonly codecInfo: Gauge<'impl'>;
  readonly buildInfo: Gauge<'version' | 'node' | 'codec'>;
  readonly compressionRatio: Gauge;
  readonly httpRequests: Counter<'role' | 'status'>;
  readonly httpDuration: Histogram<'role'>;
  readonly httpRetries: Counter<'role'>;
  /** Per thread slot: busy milliseconds since the last scrape. */
  readonly #busyMs = new Map<number, number>();
  #lastScrape = performance.now();
  /**
   * Cases counted since the counters were last read, per thread slot and per role and status: on the
   * hot path a case adds one here (a Map lookup), and the labelled counters (label hashing and checks
   * on every call, ~1 µs a case between the two) take the sums when they are collected.
   */
  readonly #threadTally = new Map<number, number>();
  readonly #caseTally = new Map<string, Map<string, number>>();
  /** Cases of each batch this worker holds (decoded, not yet completed, handed back or dead-lettered). */
  readonly #heldCases = new Map<string, number>();
  /** Unsubscribes what attachWorker / attachCoordinator subscribed. */
  readonly #detach: (() => void)[] = [];

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.pendingTasks = new Gauge({ name: 'metamorphic_queue_pending_tasks', help: 'Batches (tasks) waiting in the queue, by priority', labelNames: ['priority'], registers });
    this.inflightCases = new Gauge({
      name: 'metamorphic_queue_inflight_cases',
      help: 'Cases this worker has claimed and not yet completed (sum over workers for the queue)',
      registers,
      collect: () => this.inflightCases.set([...this.#heldCases.values()].reduce((a, b) => a + b, 0)),
    });
    this.inflightBatches = new Gauge({ name: 'metamorphic_queue_inflight_batches', help: 'Batches claimed by workers and not yet completed, whole queue', registers });
    this.deadLetterBatches = new Gauge({ name: 'metamorphic_queue_dead_letter_batches', help: 'Batches in the dead-letter store, whole queue', registers });
    this.batchesRequeued = new Counter({ name: 'metamorphic_queue_batches_requeued_total', help: 'Batches handed back or reclaimed after a lost lease', registers });
    this.activeWorkers = new Gauge({ name: 'metamorphic_queue_active_workers', help: 'Workers with a recent heartbeat', registers });
    this.casesDispatched = new Counter({ name: 'metamorphic_queue_cases_dispatched_total', help: 'Cases published to the queue (coordinator) or claimed from it (worker)', registers });
    this.casesCompleted = new Counter({ name: 'metamorphic_queue_cases_completed_total', help: 'Cases whose results were published and accounted', registers });
    this.casesRequeued = new Counter({ name: 'metamorphic_queue_cases_requeued_total', help: 'Cases of the batches handed back or reclaimed after a lost lease', registers });
    this.heartbeats = new Counter({ name: 'metamorphic_queue_worker_heartbeats_total', help: 'Worker heartbeats sent', registers });
    this.timeoutFailures = new Counter({ name: 'metamorphic_queue_timeout_failures_total', help: 'Cases that ended with E_TIMEOUT', registers });
    this.serializationErrors = new Counter({ name: 'metamorphic_queue_serialization_errors_total', help: 'Messages that could not be decoded or verified (dead-lettered)', registers });
    this.forgedEntries = new Counter({
      name: 'metaguard_forged_entries_total',
      help: 'Result-stream entries the coordinator dropped: unknown batch, wrong role or case indices, bad or missing signature, undecodable',
      labelNames: ['reason'],
      registers,
    });
    this.cases = new Counter({ name: 'metamorphic_cases_total', help: 'Cases by role and outcome', labelNames: ['role', 'status'], registers, collect: () => this.#flushTallies() });
    this.threadCases = new Counter({ name: 'metaguard_thread_cases_total', help: 'Cases run, per thread', labelNames: ['thread'], registers, collect: () => this.#flushTallies() });
    this.threadDuration = new Histogram({
      name: 'metaguard_thread_case_duration_seconds',
      help: 'Case duration, per thread',
      labelNames: ['thread'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.threadHeap = new Gauge({ name: 'metaguard_thread_heap_used_bytes', help: 'V8 heap used inside each thread, sampled after each chunk', labelNames: ['thread'], registers });
    this.threadUtilization = new Gauge({
      name: 'metaguard_thread_utilization',
      help: 'Share of wall time each thread spent running cases since the previous scrape',
      labelNames: ['thread'],
      registers,
      collect: () => this.#collectUtilization(),
    });
    this.threadRestarts = new Counter({ name: 'metaguard_thread_restarts_total', help: 'Threads replaced, by reason', labelNames: ['thread', 'reason'], registers });
    this.batchSize = new Gauge({ name: 'metaguard_batch_size', help: 'Current batch size (cases per batch)', registers });
    this.codecInfo = new Gauge({ name: 'metaguard_codec_info', help: 'Codec implementation in use (1)', labelNames: ['impl'], registers });
    this.buildInfo = new Gauge({
      name: 'metaguard_build_info',
      help: 'Always 1: the metaguard version, the Node.js version and the codec this process runs',
      labelNames: ['version', 'node', 'codec'],
      registers,
    });
    this.compressionRatio = new Gauge({ name: 'metaguard_compression_ratio', help: 'Framed bytes over raw bytes of the last batch (lower is better)', registers });
    this.httpRequests = new Counter({ name: 'metaguard_http_requests_total', help: 'Requests to endpoint implementations (retries included), by role and status (error: no response, timeout: cut by the case deadline)', labelNames: ['role', 'status'], registers });
    this.httpDuration = new Histogram({
      name: 'metaguard_http_request_duration_seconds',
      help: 'Latency of each request to an endpoint implementation, until its body was read',
      labelNames: ['role'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.httpRetries = new Counter({ name: 'metaguard_http_retries_total', help: 'Requests to endpoint implementations that were retries (connection errors, 429, 503)', labelNames: ['role'], registers });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'metaguard_' }); // metaguard_process_cpu_…, metaguard_nodejs_…
    for (const p of priorities) this.pendingTasks.set({ priority: p }, 0);
  }

  /** Records a finished case run on thread slot `thread`. */
  recordCase(result: ObservedCase, role: string, thread: number): void {
    this.#threadTally.set(thread, (this.#threadTally.get(thread) ?? 0) + 1);
    this.threadDuration.observe({ thread: String(thread) }, result.durationMs / 1000);
    this.#busyMs.set(thread, (this.#busyMs.get(thread) ?? 0) + result.durationMs);
    this.#countCase(role, caseStatus(result));
    if (result.error?.code === 'E_TIMEOUT') this.timeoutFailures.inc();
    if (result.http) this.#recordHttp(result.http, role);
  }

  #countCase(role: string, status: string): void {
    let byStatus = this.#caseTally.get(role);
    if (byStatus === undefined) this.#caseTally.set(role, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  /** Adds the cases counted since the last read to their counters (run when either is collected). */
  #flushTallies(): void {
    for (const [thread, n] of this.#threadTally) this.threadCases.inc({ thread: String(thread) }, n);
    this.#threadTally.clear();
    for (const [role, byStatus] of this.#caseTally) for (const [status, n] of byStatus) this.cases.inc({ role, status }, n);
    this.#caseTally.clear();
  }

  #recordHttp(trace: NonNullable<ObservedCase['http']>, role: string): void {
    const n = Math.min(trace.ms.length, trace.status.length);
    for (let i = 0; i < n; i++) {
      const s = trace.status[i];
      this.httpRequests.inc({ role, status: s === 0 ? 'error' : s === -1 ? 'timeout' : String(s) });
      this.httpDuration.observe({ role }, trace.ms[i] / 1000);
    }
    if (n > trace.calls) this.httpRetries.inc({ role }, n - trace.calls);
  }

  #collectUtilization(): void {
    const now = performance.now();
    const wall = Math.max(1, now - this.#lastScrape);
    this.#lastScrape = now;
    for (const [thread, busy] of this.#busyMs) {
      this.threadUtilization.set({ thread: String(thread) }, Math.min(1, busy / wall));
      this.#busyMs.set(thread, 0);
    }
  }

  /** Subscribes to the events of a worker daemon (`source`: its handle) and of its case pools. */
  attachWorker(worker: { readonly threads: number }, codecImpl: string): void {
    this.codecInfo.set({ impl: codecImpl }, 1);
    this.buildInfo.set({ version, node: process.version, codec: codecImpl }, 1);
    for (let t = 0; t < worker.threads; t++) {
      this.threadCases.inc({ thread: String(t) }, 0);
      this.threadUtilization.set({ thread: String(t) }, 0);
    }
    this.#detach.push(
      observe(worker, {
        'metaguard:case': (m) => this.recordCase(m.result, m.role, m.slot),
        'metaguard:thread': (m) => this.#recordThread(m),
        'metaguard:batch': (m) => {
          switch (m.kind) {
            case 'decoded':
              this.#heldCases.set(m.batch, m.cases);
              this.casesDispatched.inc(m.cases);
              return;
            case 'completed':
              this.#heldCases.delete(m.batch);
              this.casesCompleted.inc(m.cases);
              this.batchSize.set(m.cases);
              if (m.rawBytes > 0) this.compressionRatio.set(m.frameBytes / m.rawBytes);
              return;
            case 'handed_back':
            case 'retry_later':
              this.casesRequeued.inc(this.#heldCases.get(m.batch) ?? 0);
              this.batchesRequeued.inc();
              this.#heldCases.delete(m.batch);
              return;
            case 'dead_lettered':
              this.#heldCases.delete(m.batch);
              if (m.serialization) this.serializationErrors.inc();
              return;
          }
        },
        'metaguard:worker': () => this.heartbeats.inc(),
      }),
    );
  }

  /**
   * Subscribes to the events of a coordinator (`source`: its dispatcher): the cases its local case
   * pools run, or the results its queue job accounts and what happened to its batches.
   */
  attachCoordinator(dispatcher: object): void {
    this.#detach.push(
      observe(dispatcher, {
        'metaguard:case': (m) => this.recordCase(m.result, m.role, m.slot),
        'metaguard:thread': (m) => this.#recordThread(m),
        'metaguard:result': (m) => {
          this.casesCompleted.inc();
          this.#countCase(m.role, caseStatus(m.result));
          if (m.result.error?.code === 'E_TIMEOUT') this.timeoutFailures.inc();
        },
        'metaguard:job': (m) => {
          switch (m.kind) {
            case 'started':
              this.codecInfo.set({ impl: m.codec }, 1);
              return;
            case 'batch_size':
              this.batchSize.set(m.size);
              return;
            case 'resent':
            case 'reclaimed':
              this.batchesRequeued.inc(m.batches);
              this.casesRequeued.inc(m.cases);
              return;
            case 'undecodable':
              this.serializationErrors.inc();
              return;
            case 'forged':
              this.forgedEntries.inc({ reason: m.reason });
              return;
          }
        },
      }),
    );
  }

  /** Stops every subscription of attachWorker / attachCoordinator (the registry keeps its values). */
  detach(): void {
    for (const stop of this.#detach.splice(0)) stop();
  }

  #recordThread(m: ThreadEvent): void {
    if (m.kind === 'restart') this.threadRestarts.inc({ thread: String(m.slot), reason: m.reason });
    else this.threadHeap.set({ thread: String(m.slot) }, m.bytes);
  }

  /** Refreshes the queue gauges from the backend (pending, in-flight, active workers). */
  async refreshQueue(backend: { stats(): Promise<QueueCounts> }): Promise<void> {
    const s = await backend.stats();
    for (const p of priorities) this.pendingTasks.set({ priority: p }, s.pending[p]);
    this.inflightBatches.set(s.inflight);
    this.deadLetterBatches.set(s.dead);
    this.activeWorkers.set(s.workers.length);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
