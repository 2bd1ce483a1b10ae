/**
 * The shapes the dashboard's JSON API returns and its page renders (shared by server and page, so
 * this file imports nothing).
 */
type Priority = 'critical' | 'high' | 'normal' | 'low';

export interface Overview {
  queue: { backend: string; name: string };
  /** Backend clock of the snapshot, ms. */
  at: number;
  pending: Record<Priority, number>;
  /** Per priority, when the backend can tell (null otherwise: only the totals below). */
  inflightByPriority: Record<Priority, number> | null;
  deadByPriority: Record<Priority, number> | null;
  inflight: number;
  delayed: number;
  dead: number;
  totals: { dispatched: number; completed: number; requeued: number };
  activeWorkers: number;
  casesPerSec: number;
  /** [backend ms, cases/s, batches/s] samples, oldest first. */
  history: [number, number, number][];
  bench: { recommendedBatchSize: number; at: number } | null;
  capabilities: { progress: boolean; cancel: boolean };
  /** The last backend error, while reads fail. */
  error: string | null;
}

export interface WorkerRow {
  workerId: string;
  host: string;
  pid: number;
  threads: number;
  state: string;
  version: string | null;
  node: string | null;
  codec: string | null;
  casesPerSec: number | null;
  casesCompleted: number;
  threadLoad: { busy: number; heapBytes: number }[];
  startedAt: number | null;
  lastHeartbeat: number | null;
  heartbeatAgeS: number | null;
  /** Missed at least two heartbeats (still within heartbeat_timeout, so still counted active). */
  stale: boolean;
}

export interface EvaluationRow {
  jobId: string;
  task: string;
  total: number;
  done: { baseline: number; candidate: number };
  passRate: { baseline: number | null; candidate: number | null };
  errors: { baseline: number; candidate: number };
  percent: number;
  casesPerSec: number | null;
  etaS: number | null;
  priority: string;
  host: string;
  pid: number;
  startedAt: number;
  updatedAt: number | null;
  cancelRequested: boolean;
}

export interface DeadRow {
  id: string;
  jobId: string | null;
  role: string | null;
  /** The dead letter's error: code, message, and whether `dlq retry` may cure it. */
  code: string;
  reason: string;
  retryable: boolean;
  attempts: number;
  deadAt: number;
  ageS: number;
}

export interface Snapshot {
  overview: Overview;
  workers: WorkerRow[];
  evaluations: EvaluationRow[];
  dead: DeadRow[];
  /** Null without --report-dir. */
  reports: ReportRow[] | null;
}

export interface ReportRow {
  file: string;
  task: string | null;
  /** 'adopt' | 'reject', or null when the file is not a readable report. */
  verdict: 'adopt' | 'reject' | null;
  reason: string | null;
  n: number | null;
  deltaPassRate: number | null;
  /** ISO time the evaluation finished, else the file's modification time. */
  date: string;
}
