/**
 * kafkajs 2.2.4 keeps a 1 ms timer running on every broker connection, even with nothing to send:
 * `RequestQueue.scheduleCheckPendingRequests` schedules a check of the pending queue whether or not
 * it holds anything, the check schedules the next one, and an unthrottled queue's delay is negative
 * (Node clamps it to 1 ms and warns, TimeoutNegativeWarning). An idle worker daemon on Kafka spent
 * 7–8% of a core in it (upstream tulios/kafkajs#1704 and #1751, unreleased).
 *
 * A check is only needed while requests wait: `push` schedules one when it queues a request it cannot
 * send, and a response runs the check itself when an in-flight slot frees. So with an empty pending
 * queue this schedules nothing. Applied once, when the Kafka backend is loaded; if kafkajs's queue no
 * longer looks like this, it is left alone.
 */
import { createRequire } from 'node:module';

interface RequestQueueLike {
  pending: unknown[];
  scheduleCheckPendingRequests(this: RequestQueueLike): void;
}

const patched = Symbol.for('metaguard.kafkajs.idlePoll');

/** Returns whether the fix is in place (false when this kafkajs has no such queue). */
export function stopIdlePolling(): boolean {
  let RequestQueue: { prototype: RequestQueueLike & { [patched]?: true } } | undefined;
  try {
    RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js');
  } catch {
    return false; // another layout: nothing to fix here
  }
  const proto = RequestQueue?.prototype;
  if (!proto || typeof proto.scheduleCheckPendingRequests !== 'function') return false;
  if (proto[patched]) return true;
  const schedule = proto.scheduleCheckPendingRequests;
  proto.scheduleCheckPendingRequests = function (this: RequestQueueLike) {
    if (Array.isArray(this.pending) && this.pending.length === 0) return;
    schedule.call(this);
  };
  proto[patched] = true;
  return true;
}
