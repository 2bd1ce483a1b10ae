/**
 * Adaptive batching: tunes the batch size from measured throughput (cases completed per second).
 *
 * - Growing: each observation window (a quarter second of completed cases) doubles the size while
 *   throughput keeps up (within 5% of the best seen); the first window that falls clearly behind
 *   (more than 10%) sends the size back to the best one, and the controller holds there.
 * - Holding: after `holdWindows` windows it probes one step (alternately up and down); a probe that
 *   beats the held throughput by 5% is kept, otherwise the held size comes back.
 *
 * Sizes stay within [min, max]; a controller at a bound holds there instead of bouncing off it.
 * A fixed `batch_size` turns it off. The size is exported as `metaguard_batch_size`.
 */
export interface BatchSizeOptions {
  initial: number;
  min: number;
  max: number;
  adaptive: boolean;
  /** Length of one observation window, ms. @defaultValue 250 */
  windowMs?: number;
  /** Windows to hold a size before probing a neighbour. @defaultValue 8 */
  holdWindows?: number;
  onChange?(size: number): void;
}

export class AdaptiveBatchSize {
  #size: number;
  #phase: 'growing' | 'holding' | 'probing' = 'growing';
  #best = { size: 0, throughput: 0 };
  #held = 0;
  #probeUp = true;
  #windowStart = 0;
  #windowCases = 0;
  readonly #min: number;
  readonly #max: number;
  readonly #adaptive: boolean;
  readonly #windowMs: number;
  readonly #holdWindows: number;
  readonly #onChange: ((size: number) => void) | undefined;

  constructor(options: BatchSizeOptions) {
    this.#min = options.min;
    this.#max = Math.max(options.min, options.max);
    this.#adaptive = options.adaptive;
    this.#windowMs = options.windowMs ?? 250;
    this.#holdWindows = options.holdWindows ?? 8;
    this.#onChange = options.onChange;
    this.#size = this.#clamp(options.initial);
    this.#onChange?.(this.#size);
  }

  get size(): number {
    return this.#size;
  }

  #clamp(n: number): number {
    return Math.min(this.#max, Math.max(this.#min, Math.round(n)));
  }

  #set(n: number): void {
    const next = this.#clamp(n);
    if (next !== this.#size) {
      this.#size = next;
      this.#onChange?.(next);
    }
  }

  /** Records `cases` completed at time `now` (ms). */
  record(cases: number, now = performance.now()): void {
    if (!this.#adaptive) return;
    if (this.#windowStart === 0) this.#windowStart = now;
    this.#windowCases += cases;
    const elapsed = now - this.#windowStart;
    if (elapsed < this.#windowMs) return;
    const throughput = (this.#windowCases * 1000) / elapsed;
    this.#windowStart = now;
    this.#windowCases = 0;
    this.#observe(throughput);
  }

  #observe(throughput: number): void {
    const best = this.#best;
    switch (this.#phase) {
      case 'growing':
        if (throughput >= best.throughput * 0.95) {
          if (throughput > best.throughput || this.#size > best.size) {
            best.size = this.#size;
            best.throughput = Math.max(best.throughput, throughput);
          }
          if (this.#size >= this.#max) this.#hold();
          else this.#set(this.#size * 2);
        } else if (throughput < best.throughput * 0.9) {
          this.#set(best.size);
          this.#hold();
        }
        return;
      case 'holding':
        // Track the held size's current throughput (conditions drift: workers come and go).
        best.throughput = best.throughput * 0.5 + throughput * 0.5;
        if (++this.#held < this.#holdWindows) return;
        this.#held = 0;
        {
          const up = this.#probeUp ? this.#size * 2 : this.#size / 2;
          this.#probeUp = !this.#probeUp;
          const target = this.#clamp(up);
          if (target === this.#size) return;
          this.#phase = 'probing';
          this.#set(target);
        }
        return;
      case 'probing':
        if (throughput > best.throughput * 1.05) {
          best.size = this.#size;
          best.throughput = throughput;
        } else this.#set(best.size);
        this.#hold();
        return;
    }
  }

  #hold(): void {
    this.#phase = 'holding';
    this.#held = 0;
    this.#best.size = this.#size;
  }
}
