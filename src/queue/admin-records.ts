/**
 * Parsing of the administration records a backend stores for the dashboard (evaluation progress,
 * the last bench sweep). They are read back from a datastore anyone with access could have written:
 * every field is checked, and a record that does not parse is dropped rather than shown half-read.
 */
import { priorities, type BenchRecord, type JobProgress, type Priority } from './types.js';

const MAX_TEXT = 200;

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_TEXT ? v : undefined;
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

function perRole(v: unknown, max: number): Record<'baseline' | 'candidate', number> | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const b = count(o.baseline);
  const c = count(o.candidate);
  if (b === undefined || c === undefined || b > max || c > max) return undefined;
  return { baseline: b, candidate: c };
}

/** A JobProgress from its stored JSON, or undefined when any field is missing or out of range. */
export function parseProgress(jobId: string, json: string): JobProgress | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const o = raw as Record<string, unknown>;
  const total = count(o.total);
  if (total === undefined || o.jobId !== jobId) return undefined;
  const done = perRole(o.done, total);
  const passed = perRole(o.passed, total);
  const errors = perRole(o.errors, total);
  const task = text(o.task);
  const host = text(o.host) ?? '';
  const pid = count(o.pid) ?? 0;
  const startedAt = count(o.startedAt);
  const priority = priorities.includes(o.priority as Priority) ? (o.priority as Priority) : undefined;
  if (!done || !passed || !errors || task === undefined || startedAt === undefined || priority === undefined) return undefined;
  return { jobId, task, total, done, passed, errors, priority, host, pid, startedAt };
}

/** A BenchRecord from its stored JSON, or null when it does not parse. */
export function parseBenchRecord(json: string): BenchRecord | null {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== 'object') return null;
  const o = raw as Record<string, unknown>;
  const size = count(o.recommendedBatchSize);
  const at = count(o.at);
  if (size === undefined || size < 1 || at === undefined || !Array.isArray(o.sweep)) return null;
  const sweep: BenchRecord['sweep'] = [];
  for (const row of o.sweep.slice(0, 100) as unknown[]) {
    const r = row as Record<string, unknown> | null;
    const bs = count(r?.batch_size);
    const cps = typeof r?.cases_per_sec === 'number' && Number.isFinite(r.cases_per_sec) && r.cases_per_sec >= 0 ? r.cases_per_sec : undefined;
    if (bs === undefined || cps === undefined) return null;
    sweep.push({ batch_size: bs, cases_per_sec: cps });
  }
  return { recommendedBatchSize: size, at, sweep };
}
