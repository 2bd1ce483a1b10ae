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
  /** Shared with the parent: the thread writes its kernel id here (see execution/reap.ts). */
  tid?: Int32Array;
  exec?: ChunkExec;
  /**
   * Set instead of `cases` (then empty) when the cases arrived serialized (a worker's batch): the
   * serialized cases back to back in `bytes`, case i in bytes[ends[i-1] .. ends[i]) (codec/serialize)
   * with index `indices[i]`. One buffer crosses to the thread instead of a clone of every case's values.
   */
  packed?: { bytes: Uint8Array; ends: Uint32Array; indices: Float64Array };
}

export type ThreadMessage =
  | { t: 'started'; token: string }
  | { t: 'begin'; token: string; threadId: number }
  /** `passIdx`/`passMs`: plain passes (no error, soft violation or HTTP trace) as index and duration, from case threads. */
  | { t: 'results'; token: string; results: CaseResult[]; passIdx?: Float64Array; passMs?: Float64Array }
  | { t: 'end'; token: string; count: number; heapUsed: number };
