/**
 * Per-thread load of a worker between two heartbeats: the share of wall time each thread slot spent
 * running cases, its last sampled V8 heap, and cases/s. Fed by the worker's chunk callbacks (each case,
 * each heap sample) and read by the heartbeat, so the dashboard can show it per worker.
 */
export class WorkerLoad {
  readonly #busyMs: number[];
  readonly #heap: number[];
  #cases = 0;
  #since = performance.now();

  constructor(threads: number) {
    this.#busyMs = new Array<number>(threads).fill(0);
    this.#heap = new Array<number>(threads).fill(0);
  }

  recordCase(durationMs: number, thread: number): void {
    this.#cases++;
    if (thread >= 0 && thread < this.#busyMs.length) this.#busyMs[thread] += Math.max(0, durationMs);
  }

  recordHeap(bytes: number, thread: number): void {
    if (thread >= 0 && thread < this.#heap.length) this.#heap[thread] = bytes;
  }

  /** Load since the previous snapshot; starts a new window. */
  snapshot(): { casesPerSec: number; threadLoad: { busy: number; heapBytes: number }[] } {
    const now = performance.now();
    const wallMs = Math.max(1, now - this.#since);
    const out = {
      casesPerSec: Math.round((this.#cases * 1000 * 10) / wallMs) / 10,
      threadLoad: this.#busyMs.map((busy, i) => ({ busy: Math.round(Math.min(1, busy / wallMs) * 1000) / 1000, heapBytes: this.#heap[i] })),
    };
    this.#busyMs.fill(0);
    this.#cases = 0;
    this.#since = now;
    return out;
  }
}
