/**
 * Messages between the case pool (parent) and a case thread (`case-runner/case-thread`). Everything here
 * crosses a structured clone, so errors travel as `{ code, message }` objects.
 */
import type { CaseInput, CaseResult } from '../core/protocol.js';
import type { HttpTarget } from '../http/client.js';

/** How a chunk runs when it is not one plain case at a time (`--concurrency`, endpoints, rate limits). */
export interface ChunkExec {
  /** Cases in flight at once on the thread. @defaultValue 1 */
  concurrency: number;
  /** Set when the implementation is an HTTP endpoint: its description with header values filled in. */
  http?: HttpTarget;
  /** Requests per second shared by every thread given the same `state`. */
  rateLimit?: { state: SharedArrayBuffer; rps: number };
}

/** One chunk of cases handed to a thread with a single `pool.run`. */
export interface ChunkRequest {
  taskUrl: string;
  implUrl: string;
  seed: number;
  timeoutMs: number;
  cases: CaseInput[];
  /**
   * Results stream back on the thread's parentPort in small groups (so a chunk cut short keeps what
   * was already sent), each message tagged with this token; the parent drops messages without a
   * token it is waiting for.
   */
  token: string;
  /**
   * Shared with the parent: the position (within `cases`) of the case now running, -1 before the
   * first. When the parent terminates the thread it blames exactly that case.
   */
  progress: Int32Array;
  exec?: ChunkExec;
}

export type ThreadMessage =
  | { t: 'started'; token: string }
  | { t: 'begin'; token: string; threadId: number }
  | { t: 'results'; token: string; results: CaseResult[] }
  | { t: 'end'; token: string; count: number; heapUsed: number };
