/** A progress bar on stderr, only on a TTY and only for runs that last longer than a second. */
export function createProgress(stream: NodeJS.WriteStream = process.stderr, delayMs = 1000) {
  const startedAt = Date.now();
  let last = 0;
  let shown = false;
  let waiting = false;
  let lastDone = 0;
  let lastTotal = 0;
  const enabled = stream.isTTY === true;
  const progress = {
    /** Queue: while no worker is alive the line says so instead of a rate. */
    waiting(isWaiting: boolean): void {
      waiting = isWaiting;
      last = 0;
      if (enabled) progress.update(lastDone, lastTotal, true);
    },
    update(done: number, total: number, force = false): void {
      lastDone = done;
      lastTotal = total;
      if (!enabled) return;
      const now = Date.now();
      if (!force && (now - startedAt < delayMs || (now - last < 100 && done < total))) return;
      last = now;
      shown = true;
      const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 40));
      const frac = total ? done / total : 1;
      const filled = Math.round(frac * width);
      const rate = done / (Math.max(1, now - startedAt) / 1000);
      const tail = waiting ? 'waiting for workers' : `${rate.toFixed(0)}/s`;
      stream.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} cases  ${tail} `);
    },
    end(): void {
      if (shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
  return progress;
}
