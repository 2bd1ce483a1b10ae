/** Turns per-case results into the report's role summaries and violation list. */
import type { CaseErrorCode } from '../errors.js';
import type { HttpSummary, RoleSummary, Violation } from './types.js';
import type { Role, CaseList, CaseResult } from '../core/protocol.js';

/** At most this many violations are listed in a report (the total is kept in violations_total). */
export const VIOLATION_LIST_CAP = 200;

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

export function summarizeRole(results: CaseResult[]): RoleSummary {
  let passes = 0;
  let prop = 0;
  let mr = 0;
  let soft = 0;
  const errors: Partial<Record<CaseErrorCode, number>> = {};
  const durations = new Float64Array(results.length);
  let sum = 0;
  results.forEach((r, i) => {
    if (r.passed) passes++;
    if (r.propViolations?.length) prop++;
    if (r.mrViolations?.length) mr++;
    if (r.softViolations?.length) soft++;
    if (r.error) {
      const code = r.error.code as CaseErrorCode;
      errors[code] = (errors[code] ?? 0) + 1;
    }
    durations[i] = r.durationMs;
    sum += r.durationMs;
  });
  durations.sort();
  const total = results.length;
  const http = summarizeHttp(results);
  return {
    passes,
    total,
    pass_rate: total ? passes / total : 0,
    prop_violations: prop,
    mr_violations: mr,
    errors,
    soft_violations: soft,
    duration_ms: {
      mean: round(total ? sum / total : 0),
      p50: round(quantile(durations, 0.5)),
      p95: round(quantile(durations, 0.95)),
      max: round(total ? durations[total - 1] : 0),
    },
    ...(http ? { http } : {}),
  };
}

/** Most attempts read from one case's trace (a forged result must not make the report arbitrarily large). */
const MAX_TRACE = 10_000;

function statusKey(status: number): string {
  return status === 0 ? 'error' : status === -1 ? 'timeout' : String(status);
}

/** Requests, retries, statuses and latency percentiles over every case's HTTP trace; undefined when none. */
export function summarizeHttp(results: CaseResult[]): HttpSummary | undefined {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let retries = 0;
  let any = false;
  for (const r of results) {
    const t = r?.http;
    // Results may come back through a broker: use a trace only if it has the shape a thread writes.
    if (!t || !Array.isArray(t.ms) || !Array.isArray(t.status) || t.ms.length !== t.status.length || t.ms.length > MAX_TRACE || !Number.isInteger(t.calls) || t.calls < 0) continue;
    any = true;
    let attempts = 0;
    for (let i = 0; i < t.ms.length; i++) {
      const ms = t.ms[i];
      const status = t.status[i];
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || !Number.isInteger(status) || status < -1 || status > 999) continue;
      attempts++;
      latencies.push(ms);
      const key = statusKey(status);
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
    retries += Math.max(0, attempts - t.calls);
  }
  if (!any) return undefined;
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    retries,
    statuses,
    latency_ms: {
      p50: round(quantile(sorted, 0.5)),
      p95: round(quantile(sorted, 0.95)),
      p99: round(quantile(sorted, 0.99)),
      max: round(sorted.length ? sorted[sorted.length - 1] : 0),
    },
  };
}

/** Cases with a hard property or relation violation: what `--violation-cap` counts. */
export function violatingCases(results: CaseResult[]): number {
  let count = 0;
  for (const r of results) if (r.propViolations?.length || r.mrViolations?.length) count++;
  return count;
}

/** Case errors that count toward `--violation-cap` (E_DELIVERY is not the implementation's doing). */
export const GATED_ERRORS: ReadonlySet<string> = new Set(['E_TIMEOUT', 'E_OOM', 'E_THROW', 'E_OUTPUT', 'E_CRASH']);

/**
 * Candidate cases that ended in a gated error (E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT, E_CRASH) where the baseline
 * did not end in an error on the same case index: what `--violation-cap` counts besides violations.
 */
export function countedErrors(candidate: CaseResult[], baseline: CaseResult[]): number {
  let count = 0;
  for (const r of candidate) {
    if (r?.error && GATED_ERRORS.has(r.error.code) && !baseline[r.index]?.error) count++;
  }
  return count;
}

function inputPreview(args: unknown[]): string {
  let s: string;
  try {
    s = JSON.stringify(args) ?? 'undefined';
  } catch {
    s = String(args);
  }
  return s.length > 300 ? s.slice(0, 297) + '...' : s;
}

/** Every violation of both roles, candidate first; the list is capped, the count is not. */
export function collectViolations(results: Record<Role, CaseResult[]>, cases: CaseList): { list: Violation[]; total: number } {
  const list: Violation[] = [];
  let total = 0;
  const add = (v: Omit<Violation, 'input'>) => {
    total++;
    if (list.length < VIOLATION_LIST_CAP) list.push({ ...v, input: inputPreview(cases.at(v.case_index) ?? []) });
  };
  for (const role of ['candidate', 'baseline'] as const) {
    for (const r of results[role]) {
      const base = { role, case_index: r.index, ...(r.output !== undefined ? { output: r.output } : {}) };
      if (r.error) {
        const { status, body } = r.error;
        add({
          ...base,
          kind: 'error',
          name: r.error.code,
          message: r.error.message,
          ...(Number.isInteger(status) ? { status } : {}),
          ...(typeof body === 'string' ? { body: body.slice(0, 200) } : {}),
        });
      }
      for (const name of r.propViolations ?? []) add({ ...base, kind: 'property', name });
      for (const name of r.mrViolations ?? []) add({ ...base, kind: 'relation', name });
    }
  }
  return { list, total };
}
