/** The seam between the evaluator and whatever runs cases: in-process threads or a queue. */
import type { CaseResult } from '../execution/protocol.js';
import type { JobExec } from '../http/endpoint.js';

export type Role = 'baseline' | 'candidate';
export const roles: readonly Role[] = ['baseline', 'candidate'];

/** Everything needed to run one evaluation's cases. Implementations are file URLs of modules or http(s) endpoint URLs. */
export interface JobSpec {
  /** The task's name, for progress shown to operators. @defaultValue the task module's file name */
  taskName?: string;
  taskUrl: string;
  implUrls: Record<Role, string>;
  seed: number;
  timeoutMs: number;
  memMb: number;
  /** Argument lists from the task's generator, indexed by case index. */
  cases: unknown[][];
  /** Concurrency, endpoints, rate limit and retries; absent: every role a module run one case at a time. */
  exec?: JobExec;
}

export interface DispatchEvents {
  /** Called once per (role, case index), in completion order. */
  onResult?(role: Role, result: CaseResult): void;
}

export interface Dispatcher {
  /** Runs every case of both roles; resolves with each role's results indexed by case index. */
  run(job: JobSpec, events?: DispatchEvents): Promise<Record<Role, CaseResult[]>>;
  close(): Promise<void>;
}
