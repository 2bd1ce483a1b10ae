/**
 * Adaptive batching: a hill-climbing controller that tunes the batch size from measured throughput.
 * Each observation window (about a second of completed cases) yields cases/s at the current size. If
 * the last step raised throughput the controller keeps stepping the same way; if it lowered it, it
 * turns around; sizes stay within [min, max]. A fixed `batch_size` turns it off.
 */
export interface BatchSizeOptions {
  initial: number;
  min: number;
  max: number;
  adaptive: boolean;
  /** Length of one observation window, ms. @defaultValue 1000 */
  windowMs?: number;
  /** Multiplicative step. @defaultValue 1.5 */
  step?: number;
  onChange?(size: number): void;
}

export class AdaptiveBatchSize {
  #size: number;
  #direction = 1;
  #lastThroughput = 0;
  #windowStart = 0;
  #windowCases = 0;
  readonly #options: Required<Omit<BatchSizeOptions, 'onChange'>> & Pick<BatchSizeOptions, 'onChange'>;

  constructor(options: BatchSizeOptions) {
    this.#options = { windowMs: 1000, step: 1.5, ...options };
    this.#size = Math.min(options.max, Math.max(options.min, options.initial));
    options.onChange?.(this.#size);
  }

  get size(): number {
    return this.#size;
  }

  /** Records `cases` completed at time `now` (ms). */
  record(cases: number, now = performance.now()): void {
    if (!this.#options.adaptive) return;
    if (this.#windowStart === 0) this.#windowStart = now;
    this.#windowCases += cases;
    const elapsed = now - this.#windowStart;
    if (elapsed < this.#options.windowMs) return;
    const throughput = (this.#windowCases * 1000) / elapsed;
    if (this.#lastThroughput > 0 && throughput < this.#lastThroughput * 0.97) this.#direction = -this.#direction;
    this.#lastThroughput = throughput;
    this.#windowStart = now;
    this.#windowCases = 0;
    const { min, max, step } = this.#options;
    let next = this.#direction > 0 ? Math.ceil(this.#size * step) : Math.floor(this.#size / step);
    next = Math.min(max, Math.max(min, next));
    // At a bound, turn around so the controller keeps probing instead of sticking.
    if (next === this.#size) this.#direction = -this.#direction;
    if (next !== this.#size) {
      this.#size = next;
      this.#options.onChange?.(next);
    }
  }
}
