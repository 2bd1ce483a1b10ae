/**
 * The events the worker daemon publishes (daemon/daemon.ts emits them on its handle); metrics and logs
 * subscribe. They live here, beside their subscribers, so the daemon imports observe/ and never the
 * other way round.
 */
import type { CaseResult } from '../core/protocol.js';

/** Everything a worker observes is published here; metrics and logs subscribe (one channel). */
export interface DaemonEvents {
  /** A case finished on thread slot `thread`. */
  case: [result: CaseResult, role: string, thread: number];
  /** A thread was replaced after a timeout, an OOM or a crash. */
  restart: [reason: 'timeout' | 'oom' | 'crash', thread: number];
  /** Heap used inside a thread, sampled at the end of each chunk. */
  heap: [bytes: number, thread: number];
  claimed: [info: { id: string; attempt: number; priority: string }];
  /** A claimed batch was decoded: how many cases it holds (in-flight case counts). */
  decoded: [info: { id: string; cases: number }];
  /** A batch's results were published (`frames` > 1: split under the frame limit; the bytes are their sums). */
  batch: [info: { id: string; cases: number; seconds: number; frameBytes: number; rawBytes: number; frames: number }];
  /** A batch was handed back: the error's code and message (`reason`). */
  requeued: [info: { id: string; code: string; reason: string }];
  /** A batch was dead-lettered; `serialization` when its code says it could not be decoded or verified. */
  dead: [info: { id: string; code: string; reason: string; serialization: boolean }];
  heartbeat: [];
  /** The consume loop stopped making progress; heartbeats have stopped. */
  stalled: [info: { sinceMs: number }];
  ready: [];
}
