/**
 * Adaptive batching: sizes batches from measured throughput. Every completed batch reports how many
 * cases it held and how long its cases ran on the worker's threads; the controller keeps a moving
 * average of the per-thread throughput (cases/s) and sizes the next batches so that each holds about
 * `targetBatchMs` of work.
 *
 * Why a time target rather than hill-climbing on end-to-end cases/s: a batch has a roughly fixed cost
 * (a round trip to the backend, a frame, a lease), so it should carry enough work to make that cost
 * small — but no more, because big batches spread work unevenly across workers and lose more on a
 * crash. Fast cases then ride in large batches and slow ones in small batches, from the first batch
 * on, without the noise of measuring the whole pipeline's rate over short windows. (Hill-climbing was
 * tried first and oscillated: see the commit history.)
 *
 * Before the first batch completes nothing is known about the cases, so the size starts at `initial`
 * and doubles with every batch handed out (`take`): a small evaluation — one case, a few dozen — goes
 * out in small batches that spread over the threads and come back at once, and a large one reaches
 * big batches within a few batches instead of flooding the queue with a whole window of small ones.
 * From the first completed batch on, the measured time per case decides (never more than doubling per
 * batch handed out, so one unrepresentative early batch cannot jump straight to the maximum).
 *
 * Sizes stay within [min, max]; a fixed `batch_size` turns the controller off. The size is exported
 * as `metaguard_batch_size`.
 */
export interface BatchSizeOptions {
  initial: number;
  min: number;
  max: number;
  adaptive: boolean;
  /** Work one batch should carry, in thread milliseconds. @defaultValue 100 */
  targetBatchMs?: number;
  onChange?(size: number): void;
}

export class AdaptiveBatchSize {
  #size: number;
  /** Moving average of thread milliseconds per case; undefined until the first batch completes. */
  #msPerCase: number | undefined;
  readonly #min: number;
  readonly #max: number;
  readonly #adaptive: boolean;
  readonly #targetMs: number;
  readonly #onChange: ((size: number) => void) | undefined;

  constructor(options: BatchSizeOptions) {
    this.#min = options.min;
    this.#max = Math.max(options.min, options.max);
    this.#adaptive = options.adaptive;
    this.#targetMs = options.targetBatchMs ?? 100;
    this.#onChange = options.onChange;
    this.#size = this.#clamp(options.initial);
    this.#onChange?.(this.#size);
  }

  get size(): number {
    return this.#size;
  }

  /**
   * The size of the next batch to hand out; each call counts one batch. Grows geometrically from
   * `initial` towards the target (the maximum until a batch has completed).
   */
  take(): number {
    const size = this.#size;
    if (this.#adaptive) {
      const goal = this.#msPerCase === undefined ? this.#max : this.#target();
      const next = Math.min(goal, size * 2);
      if (next > size) this.#set(next);
    }
    return size;
  }

  #target(): number {
    return this.#clamp(this.#targetMs / this.#msPerCase!);
  }

  #set(n: number): void {
    const next = this.#clamp(n);
    if (next !== this.#size) {
      this.#size = next;
      this.#onChange?.(next);
    }
  }

  /** Measured throughput of one worker thread, cases/s (undefined before the first batch). */
  get casesPerThreadSecond(): number | undefined {
    return this.#msPerCase === undefined ? undefined : 1000 / Math.max(this.#msPerCase, 1e-6);
  }

  #clamp(n: number): number {
    return Math.min(this.#max, Math.max(this.#min, Math.round(n)));
  }

  /** Records a completed batch: `cases` cases that ran for `busyMs` thread milliseconds in total. */
  record(cases: number, busyMs: number): void {
    if (!this.#adaptive || cases <= 0 || !Number.isFinite(busyMs)) return;
    // Per-case overhead inside the thread (timing, properties) is part of busyMs; floor at 1 µs.
    const sample = Math.max(busyMs / cases, 0.001);
    this.#msPerCase = this.#msPerCase === undefined ? sample : this.#msPerCase * 0.7 + sample * 0.3;
    // Shrinks at once (slow cases must not sit in big batches); grows through take().
    const target = this.#target();
    if (target < this.#size) this.#set(target);
  }
}
