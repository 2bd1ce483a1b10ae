/**
 * Retry backoff for failures a worker marks retryable (the backend or the disk failing while a batch
 * is prepared): exponential in the attempt, capped, with "equal jitter" (half fixed, half random) so
 * that workers that failed together do not retry together.
 */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
