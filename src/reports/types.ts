/** The evaluation report. Keys are snake_case; every number is finite (JSON-safe). */
import type { CaseErrorCode } from '../errors.js';

import type { IntervalMethod } from '../statistics/index.js';

/** `--ci-method`: one of the interval methods of src/statistics (INTERVAL_METHODS). */
export type CiMethod = IntervalMethod;

export type DecisionReason = 'meets_gate' | 'violations' | 'pass_rate_below_min' | 'ci_below_min_delta' | 'incomplete';

export interface RoleSummary {
  passes: number;
  total: number;
  pass_rate: number;
  /** Cases with at least one hard property violation. */
  prop_violations: number;
  /** Cases with at least one relation violation. */
  mr_violations: number;
  /** Cases that ended with an error, by code. */
  errors: Partial<Record<CaseErrorCode, number>>;
  /** Cases with at least one soft property violation (reported, never gating). */
  soft_violations: number;
  /** Case durations in milliseconds. */
  duration_ms: { mean: number; p50: number; p95: number; max: number };
  /** Present when the role is an HTTP endpoint: its requests, retries, statuses and latency. */
  http?: HttpSummary;
}

export interface HttpSummary {
  /** Every attempt, retries included. */
  requests: number;
  /** Attempts after the first of a call (connection errors, 429, 503). */
  retries: number;
  /** Attempts by outcome: the status code, `error` (no response) or `timeout` (cut by the case deadline). */
  statuses: Record<string, number>;
  /** Latency of each attempt until its body was read, milliseconds. */
  latency_ms: { p50: number; p95: number; p99: number; max: number };
}

export interface Violation {
  role: 'baseline' | 'candidate';
  case_index: number;
  kind: 'property' | 'relation' | 'error';
  /** Property or relation name, or the error code. */
  name: string;
  /** JSON preview of the case's arguments (truncated). */
  input: string;
  output?: string;
  message?: string;
  /** E_HTTP_* errors: the response status, when there was one. */
  status?: number;
  /** E_HTTP_* errors: the first 200 bytes of the response body. */
  body?: string;
}

export interface Statistics {
  /** Paired 2x2 table: both pass, candidate only, baseline only, neither. */
  paired: { both_pass: number; candidate_only: number; baseline_only: number; neither: number };
  mcnemar: { exact_p: number; mid_p: number; discordant: number };
  power: {
    /** Power to show a lower CI bound above min_delta at the observed effect, normal approximation. */
    estimated_power: number;
    target_power: number;
    /** Smallest n reaching target_power at the observed effect; null when the effect does not exceed min_delta. */
    recommended_n: number | null;
  };
  alpha: number;
  bootstrap_samples?: number;
}

export interface Decision {
  adopt: boolean;
  reason: DecisionReason;
  /** What --violation-cap was compared with, kept apart: candidate cases with a violation … */
  counted_violations?: number;
  /** … and candidate cases ending in E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT or E_CRASH where the baseline did not error. */
  counted_errors?: number;
}

export interface Report {
  task: string;
  n: number;
  seed: number;
  config: Record<string, unknown>;
  hashes: { task: string; baseline: string; candidate: string };
  baseline: RoleSummary;
  candidate: RoleSummary;
  delta_pass_rate: number;
  delta_ci: [number, number];
  ci_method: CiMethod;
  decision: Decision;
  /** Present when some cases could not be delivered (E_DELIVERY): the verdict is withheld unless --allow-incomplete. */
  incomplete?: { undelivered_cases: number; reason: string; decided_on_delivered: boolean };
  statistics: Statistics;
  violations: Violation[];
  /** Total violations before capping `violations`. */
  violations_total: number;
  started_at: string;
  finished_at: string;
  duration_seconds: number;
  dispatcher: 'local' | 'queue';
  metaguard_version: string;
}
