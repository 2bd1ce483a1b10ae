/** The seam between the evaluator and whatever runs cases: in-process threads or a queue. */
import type { CaseList, CaseResult, Role } from '../core/protocol.js';
import type { JobExec } from '../http/endpoint.js';
import type { PayloadList } from '../codec/serialize.js';
import { MetaguardError, type MetaguardErrorCode } from '../errors.js';

/** Everything needed to run one evaluation's cases. Implementations are file URLs of modules or http(s) endpoint URLs. */
export interface JobSpec {
  /** The task's name, for progress shown to operators. @defaultValue the task module's file name */
  taskName?: string;
  taskUrl: string;
  implUrls: Record<Role, string>;
  seed: number;
  timeoutMs: number;
  memMb: number;
  /** Argument lists from the task's generator, by case index: an array, or the gen thread's PackedCases (decoded on demand). */
  cases: CaseList;
  /**
   * Each case `{ index, args }` serialized (codec/serialize), as the task's gen thread packed it: sent
   * to case threads and into batch frames as they are. Absent: serialized from `cases` where needed.
   */
  payloads?: PayloadList;
  /** Concurrency, endpoints, rate limit and retries; absent: every role a module run one case at a time. */
  exec?: JobExec;
  /** The files as the user named them, for messages (the URLs above may point at bundles). */
  sources?: Record<'task' | Role, string>;
}

export interface DispatchEvents {
  /** Called once per (role, case index), in completion order. */
  onResult?(role: Role, result: CaseResult): void;
  /** Queue: called with true while no worker is alive (cases wait in the queue), false once one is. */
  onWaiting?(waiting: boolean): void;
  /**
   * Stops the run: the dispatcher stops its cases (a queue dispatcher withdraws its job) and rejects
   * with a MetaguardError of the reason's code whose message starts with the reason's message.
   */
  signal?: AbortSignal;
}

/** The abort reason the dispatchers expect: a code and a message, e.g. a MetaguardError. */
export function abortReason(signal: AbortSignal): { code: string; message: string } {
  const r = signal.reason as { code?: unknown; message?: unknown } | undefined;
  return { code: typeof r?.code === 'string' ? r.code : 'MG_ERR_INTERRUPTED', message: typeof r?.message === 'string' ? r.message : 'stopped' };
}

export interface Dispatcher {
  /** Runs every case of both roles; resolves with each role's results indexed by case index. */
  run(job: JobSpec, events?: DispatchEvents): Promise<Record<Role, CaseResult[]>>;
  /** Drains what it started (threads, in-process workers) and lets go of the backend. */
  close(): Promise<void>;
  /** Stops at once, without draining; a close() in progress returns promptly too. */
  destroy(): Promise<void>;
}

/** The first line of an error message (a stack or a code frame never reaches the one-line error). */
export const firstLine = (message: string) => message.split('\n').find((l) => l.trim() !== '')?.trim() ?? message;

/**
 * The one-line error of a module that cannot be loaded in a case thread, here or on a worker
 * (`where`, e.g. " on worker w1"): names the role and the file as the user gave it.
 */
export function moduleLoadError(
  role: Role,
  sources: Record<'task' | Role, string> | undefined,
  info: { code: string; message: string; module?: 'task' | 'implementation' },
  where = '',
): MetaguardError {
  const who = info.module === 'task' ? `task ${sources?.task ?? ''}` : `${role} ${sources?.[role] ?? ''}`;
  const code: MetaguardErrorCode = info.code === 'MG_ERR_INVALID_IMPLEMENTATION' || info.code === 'MG_ERR_INVALID_TASK' ? info.code : 'MG_ERR_MODULE_LOAD';
  return new MetaguardError(code, `${who.trimEnd()}${where}: ${firstLine(info.message)}`);
}

/** The error a dispatcher rejects with when its run is stopped: the reason, plus what was cleaned up. */
export function stoppedError(signal: AbortSignal, detail = ''): MetaguardError {
  const r = abortReason(signal);
  return new MetaguardError(r.code as MetaguardErrorCode, detail ? `${r.message}; ${detail}` : r.message);
}
