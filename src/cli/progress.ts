/** A progress bar on stderr, only on a TTY and only for runs that last longer than a second. */
export function createProgress(stream: NodeJS.WriteStream = process.stderr, delayMs = 1000) {
  const startedAt = Date.now();
  let last = 0;
  let shown = false;
  const enabled = stream.isTTY === true;
  return {
    update(done: number, total: number): void {
      if (!enabled) return;
      const now = Date.now();
      if (now - startedAt < delayMs || (now - last < 100 && done < total)) return;
      last = now;
      shown = true;
      const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 40));
      const frac = total ? done / total : 1;
      const filled = Math.round(frac * width);
      const rate = done / ((now - startedAt) / 1000);
      stream.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} cases  ${rate.toFixed(0)}/s `);
    },
    end(): void {
      if (shown) stream.write('\r\x1b[K');
    },
  };
}
