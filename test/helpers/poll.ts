/**
 * The one way tests wait for a condition they cannot await as an event: `until` calls `check` at
 * once and then every `intervalMs` until it returns something other than `false` or `undefined`,
 * and returns that. Past `timeoutMs` it fails naming `what` and the last value (or error) seen.
 *
 *   await until('worker A claimed a batch', () => /"event":"batch_claimed"/.test(a.output()), 30_000);
 *   const w = await until('w1 active', async () => (await b.activeWorkers()).find((x) => x.workerId === 'w1'));
 *
 * `check` throwing fails at once, unless `retryErrors` (a server still starting, say). `what` may be a
 * function, called only for the failure message (e.g. to append a server's output).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

export interface PollOptions {
  /** @defaultValue 15_000 */
  timeoutMs?: number;
  /** @defaultValue 50 */
  intervalMs?: number;
  /** Keep polling when `check` throws; the last error is named if time runs out. @defaultValue false */
  retryErrors?: boolean;
}

export async function until<T>(what: string | (() => string), check: () => T | Promise<T>, options: number | PollOptions = {}): Promise<Exclude<T, false | undefined>> {
  const { timeoutMs = 15_000, intervalMs = 50, retryErrors = false } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } | undefined;
  for (;;) {
    try {
      const v = await check();
      if (v !== false && v !== undefined) return v as Exclude<T, false | undefined>;
      last = { value: v };
    } catch (error) {
      if (!retryErrors) throw error;
      last = { error };
    }
    if (Date.now() >= deadline) {
      const seen = last && 'error' in last ? `last error: ${(last.error as Error)?.message ?? String(last.error)}` : `last value: ${inspect(last?.value, { depth: 4, breakLength: Infinity })}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what} (${seen})`);
    }
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}
