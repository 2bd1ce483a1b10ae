/**
 * The protocol every part speaks: the two roles, a batch's priority, a case as it goes out and its
 * result as it comes back. The coordinator (`dispatch/`), the queues (`queue/`), the case pools
 * (`execution/`), the worker daemon (`daemon/`) and the reports all import these from here; this
 * module imports nothing of metaguard but the error shape, so no part has to reach "up" for them.
 */
import type { ErrorInfo } from '../errors.js';

export type Role = 'baseline' | 'candidate';
export const roles: readonly Role[] = ['baseline', 'candidate'];

export type Priority = 'critical' | 'high' | 'normal' | 'low';
export const priorities: readonly Priority[] = ['critical', 'high', 'normal', 'low'];

export interface CaseInput {
  /** Index of the case within its evaluation: results are keyed by (job, role, index). */
  index: number;
  args: unknown[];
}

/** The args of a case whose pool is sent its payload instead (never read, never handed to user code). */
export const NO_ARGS: unknown[] = Object.freeze([]) as unknown as unknown[];

export interface CaseResult {
  index: number;
  /** The implementation returned within its limits, every hard property and every relation held. */
  passed: boolean;
  /** Set when the case did not produce an output to check (E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT, E_CRASH, E_DELIVERY). */
  error?: ErrorInfo;
  durationMs: number;
  /** Names of hard properties that failed. */
  propViolations?: string[];
  /** Names of soft properties that failed (reported, never gating). */
  softViolations?: string[];
  /** Names of relations that failed. */
  mrViolations?: string[];
  /** Short JSON preview of the output, present only on failing cases. */
  output?: string;
  /** Requests an endpoint implementation made for this case (latency and status of each attempt). */
  http?: HttpTrace;
}

/** Every request a case made: latency (ms) and status of each attempt; 0 = no response, -1 = cut by the deadline. */
export interface HttpTrace {
  /** Calls of the implementation (the original and each relation's follow-up). */
  calls: number;
  ms: number[];
  status: number[];
}

/**
 * A job's cases: argument lists by case index. An array of argument lists is one; so is the gen
 * thread's PackedCases (codec/serialize), which decodes a case when it is first asked for.
 */
export interface CaseList {
  readonly length: number;
  at(index: number): unknown[] | undefined;
}
