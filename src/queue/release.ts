/**
 * What happens to a claimed batch that comes back, decided once for the brokers that hold deliveries
 * themselves (RabbitMQ, SQS): the worker hands it back (`releaseBatch`), its lease runs out, or the
 * broker delivers it again after its holder died. Each backend then carries the decision out in its
 * broker's terms (a republish, a visibility change, a dead letter).
 */
import { wireError, type WireError } from '../errors.js';
import type { QueueConfig } from '../options/queue.js';
import { withDetail } from './records.js';
import type { ReleaseOptions } from './types.js';

export type ReleaseDecision =
  /** Dead-letter it with this error (its code kept from the release, or MG_ERR_LEASE_EXPIRED). */
  | { action: 'dead'; error: WireError }
  /** Drain: first in line for this process's next claim, the attempt not counted. */
  | { action: 'hand-back' }
  /** Back to the queue after `delayMs`, the attempt counted. */
  | { action: 'requeue'; delayMs: number };

/**
 * `releaseBatch(countAttempt, delayMs, reason)` of a batch in its `attempt`-th delivery (undefined: the
 * entry was not a well-formed batch).
 */
export function decideRelease(
  config: Pick<QueueConfig, 'max_requeue_attempts'>,
  attempt: number | undefined,
  options: ReleaseOptions,
): ReleaseDecision {
  if (attempt === undefined) return { action: 'dead', error: options.error };
  if (!options.countAttempt) return { action: 'hand-back' };
  if (attempt >= config.max_requeue_attempts + 1) return { action: 'dead', error: withDetail(options.error, `(gave up after ${attempt} attempts)`) };
  return { action: 'requeue', delayMs: Math.max(0, options.delayMs) };
}

/**
 * A batch whose holder lost it (its lease ran out, or its connection died) after `attempts`
 * deliveries: requeued with the attempt counted, or dead-lettered once `max_requeue_attempts` retries
 * were spent (at once with `enable_requeue: false`). `why` says how it was lost, for the reason.
 */
export function decideLost(config: Pick<QueueConfig, 'max_requeue_attempts' | 'enable_requeue'>, attempts: number, why: string): ReleaseDecision {
  if (!config.enable_requeue || attempts >= config.max_requeue_attempts + 1) return { action: 'dead', error: wireError('MG_ERR_LEASE_EXPIRED', `${why} after ${attempts} attempts`) };
  return { action: 'requeue', delayMs: 0 };
}
