/**
 * A request rate limit shared by every case thread of a process: a token bucket of capacity one
 * (requests are spaced 1/RPS apart, so no one-second window ever holds more than RPS + 1 requests),
 * kept as a GCRA "theoretical arrival time" in a SharedArrayBuffer. Each request reserves the next
 * free slot with one compare-and-swap and sleeps until it; no thread ever blocks another.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Shared state of one bucket: the next free slot, in microseconds since the epoch. */
export function createRateLimitState(): SharedArrayBuffer {
  return new SharedArrayBuffer(8);
}

/** Epoch microseconds; `timeOrigin` differs per thread but `timeOrigin + now()` agrees across them. */
const nowMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Reserves one request slot; returns how many milliseconds to wait before sending it. */
export function reserveSlot(state: SharedArrayBuffer, rps: number): number {
  const cell = new BigInt64Array(state);
  const interval = Math.max(1, Math.round(1e6 / rps));
  for (;;) {
    const tat = Atomics.load(cell, 0);
    const now = nowMicros();
    const start = Math.max(Number(tat), now);
    if (Atomics.compareExchange(cell, 0, tat, BigInt(start + interval)) === tat) return (start - now) / 1000;
  }
}

/** Waits for a slot; an abort (the case's deadline) ends the wait. Returns the milliseconds waited. */
export async function acquireSlot(state: SharedArrayBuffer, rps: number, signal?: AbortSignal): Promise<number> {
  const waitMs = reserveSlot(state, rps);
  if (waitMs >= 1) await sleep(waitMs, undefined, signal ? { signal } : {});
  return waitMs;
}
