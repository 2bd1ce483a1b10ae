/**
 * What metaguard observes while it runs, published on named `node:diagnostics_channel` channels.
 * The case pools (src/execution), the worker daemon (src/daemon) and the coordinator (src/dispatch)
 * publish; metrics (`metrics.ts`) and logs (`log-events.ts`) subscribe. Publishing costs one
 * `hasSubscribers` check when nobody listens, so the hot path never calls prom-client or a logger.
 *
 * Channels are process-wide: every message names its `source` (the worker handle or dispatcher it
 * belongs to), and a subscriber takes only its own source's messages. Subscribers run synchronously
 * inside the publisher and must not throw (diagnostics_channel reports a throw as an uncaught
 * exception). This module imports nothing of metaguard: every folder may depend on it.
 */
import { channel, subscribe, unsubscribe } from 'node:diagnostics_channel';

/** A case's outcome as observers see it (the fields of execution/protocol's CaseResult they read). */
export interface ObservedCase {
  index: number;
  passed: boolean;
  durationMs: number;
  error?: { code: string; message: string };
  http?: { calls: number; ms: number[]; status: number[] };
}

/** Who a chunk's cases run for: passed to a case pool with the chunk, carried by its events. */
export interface CaseContext {
  source: object;
  role: string;
  /** The worker's batch the chunk belongs to. */
  batch?: string;
}

/** `metaguard:case` — a case finished on thread slot `slot` of a case pool (src/execution). */
export interface CaseEvent extends CaseContext {
  slot: number;
  result: ObservedCase;
}

/** `metaguard:thread` — a case thread was replaced, or its heap was sampled after a chunk (src/execution). */
export type ThreadEvent = { source: object; slot: number } & ({ kind: 'restart'; reason: 'timeout' | 'oom' | 'crash' } | { kind: 'heap'; bytes: number });

/** `metaguard:batch` — a worker daemon's batches (src/daemon). */
export type BatchEvent = { source: object; worker: string; batch: string } & (
  | { kind: 'claimed'; attempt: number; priority: string }
  /** Decoded: how many cases the worker now holds for it. */
  | { kind: 'decoded'; cases: number }
  /** Its results were published (`frames` > 1: split under the frame limit; the bytes are their sums). */
  | { kind: 'completed'; cases: number; seconds: number; frameBytes: number; rawBytes: number; frames: number }
  /** Handed back at once, without counting an attempt (draining). */
  | { kind: 'handed_back'; code: string; reason: string }
  /** Released to run again after a backoff that counts an attempt. */
  | { kind: 'retry_later'; code: string; reason: string; attempt: number; delayMs: number }
  /** The renewal found the lease gone: the batch runs on and its results are deduplicated. */
  | { kind: 'lease_lost' }
  /** `serialization` when its code says it could not be decoded or verified. */
  | { kind: 'dead_lettered'; code: string; retryable: boolean; reason: string; serialization: boolean }
);

/** `metaguard:worker` — a worker daemon's heartbeats (src/daemon). */
export interface WorkerEvent {
  source: object;
  worker: string;
  kind: 'heartbeat';
}

/** `metaguard:result` — the coordinator accounted a case's result, once per (role, index) (src/dispatch). */
export interface ResultEvent {
  source: object;
  role: string;
  result: ObservedCase;
}

/** `metaguard:job` — a queue coordinator's job (src/dispatch). */
export type JobEvent = { source: object; job: string } & (
  | { kind: 'started'; codec: string }
  | { kind: 'batch_size'; size: number }
  | { kind: 'dispatched'; batches: number; cases: number }
  /** A worker's results for an outstanding batch were accepted. */
  | { kind: 'batch_completed'; batch: string; worker: string; cases: number; parts?: number }
  /** Outstanding batches sent again (bad results frame, lost from the backend). */
  | { kind: 'resent'; batches: number; cases: number; reason: string }
  /** Expired leases the coordinator's own reclaim put back. */
  | { kind: 'reclaimed'; batches: number; cases: number }
  /** A batch sent too often, or dead-lettered by a worker: its cases without results become E_DELIVERY. */
  | { kind: 'dead_lettered'; batch: string; code: string; retryable: boolean; reason: string }
  /** A results frame that could not be decoded. */
  | { kind: 'undecodable'; batch: string; message: string }
  /** A result-stream entry dropped (label of metaguard_forged_entries_total). */
  | { kind: 'forged'; batch: string; reason: string; entry: 'results' | 'dead'; message: string; claimedCode?: string; claimedReason?: string; worker?: string }
);

export interface Events {
  'metaguard:case': CaseEvent;
  'metaguard:thread': ThreadEvent;
  'metaguard:batch': BatchEvent;
  'metaguard:worker': WorkerEvent;
  'metaguard:result': ResultEvent;
  'metaguard:job': JobEvent;
}

export interface TypedChannel<T> {
  readonly hasSubscribers: boolean;
  publish(message: T): void;
}

export const caseChannel = channel('metaguard:case') as TypedChannel<CaseEvent>;
export const threadChannel = channel('metaguard:thread') as TypedChannel<ThreadEvent>;
export const batchChannel = channel('metaguard:batch') as TypedChannel<BatchEvent>;
export const workerChannel = channel('metaguard:worker') as TypedChannel<WorkerEvent>;
export const resultChannel = channel('metaguard:result') as TypedChannel<ResultEvent>;
export const jobChannel = channel('metaguard:job') as TypedChannel<JobEvent>;

/**
 * Subscribes `fn` to the messages of one `source` on these channels; returns the function that
 * unsubscribes them all.
 */
export function observe(source: object, handlers: { [K in keyof Events]?: (message: Events[K]) => void }): () => void {
  const subscribed: [string, (message: unknown, name: string | symbol) => void][] = [];
  for (const [name, fn] of Object.entries(handlers) as [keyof Events, (m: unknown) => void][]) {
    if (!fn) continue;
    const onMessage = (message: unknown) => {
      if ((message as { source?: unknown }).source === source) fn(message);
    };
    subscribe(name, onMessage);
    subscribed.push([name, onMessage]);
  }
  return () => {
    for (const [name, fn] of subscribed.splice(0)) unsubscribe(name, fn);
  };
}

/**
 * The worker daemon's life cycle, emitted on its handle (daemon/daemon.ts). What it observes goes to
 * the channels above instead.
 */
export interface DaemonEvents {
  /** The consume loop stopped making progress; heartbeats have stopped. */
  stalled: [info: { sinceMs: number }];
  ready: [];
}
