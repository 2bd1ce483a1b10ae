/** Priority choice shared by the backends that pick in process (memory, Kafka's fetch buffer). */
import type { QueueConfig } from '../options/queue.js';
import { priorities, type Priority } from './types.js';

/**
 * Picks the priority to claim from among the non-empty ones (`present`): the highest under
 * `strict_priority`, else at random in proportion to `queue_weights` (a zero-weight priority is only
 * taken when every non-empty one weighs zero). Redis does the same inside its claim script.
 */
export function pickPriority(present: (p: Priority) => boolean, config: Pick<QueueConfig, 'strict_priority' | 'queue_weights'>, random: () => number = Math.random): Priority | undefined {
  const nonEmpty = priorities.filter(present);
  if (nonEmpty.length === 0) return undefined;
  if (config.strict_priority) return nonEmpty[0];
  const weights = nonEmpty.map((p) => Math.max(0, config.queue_weights[p] ?? 0));
  const total = weights.reduce((a, b) => a + b, 0);
  if (total <= 0) return nonEmpty[0];
  let r = random() * total;
  for (let i = 0; i < nonEmpty.length; i++) {
    r -= weights[i];
    if (r < 0) return nonEmpty[i];
  }
  return nonEmpty[nonEmpty.length - 1];
}
