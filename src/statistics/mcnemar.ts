/**
 * Exact (binomial) McNemar test on the discordant pairs, computed in log space.
 */

export interface McNemarResult {
  /** Two-sided exact p: min(1, 2·P(X <= min(b, c))), X ~ Bin(b + c, ½). */
  exact_p: number;
  /** Two-sided mid-p: min(1, 2·P(X < k) + P(X = k)) = min(1, 2·P(X <= k) − P(X = k)), k = min(b, c). */
  mid_p: number;
  /** b + c. */
  discordant: number;
}

const LN2 = Math.LN2;
const HALF_LN_2PI = 0.5 * Math.log(2 * Math.PI);
const EXACT_LOG_FACTORIALS = 256;
const logFactorialTable: Float64Array = (() => {
  const table = new Float64Array(EXACT_LOG_FACTORIALS);
  for (let i = 2; i < EXACT_LOG_FACTORIALS; i++) table[i] = table[i - 1]! + Math.log(i);
  return table;
})();

/**
 * ln(m!) for a non-negative integer m: summed logs below 256, Stirling's series above
 * (ln m! = m ln m − m + ½ ln(2πm) + 1/(12m) − 1/(360m³) + 1/(1260m⁵) − 1/(1680m⁷), whose truncation
 * error at m >= 256 is far below double rounding).
 */
export function logFactorial(m: number): number {
  if (m < EXACT_LOG_FACTORIALS) return logFactorialTable[m]!;
  const inv = 1 / m;
  const inv2 = inv * inv;
  return m * Math.log(m) - m + HALF_LN_2PI + 0.5 * Math.log(m) + inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)));
}

function assertDiscordant(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}

/**
 * Two-sided exact McNemar test from the discordant counts b and c (either order). Point and tail
 * probabilities of Bin(b + c, ½) are formed in log space, and the lower tail is summed downward from
 * k = min(b, c) as a multiple of P(X = k) (ratios P(X = i − 1)/P(X = i) = i/(N − i + 1)), so
 * b + c in the tens of thousands neither overflows nor loses the tail. b + c = 0: both p-values are 1.
 */
export function mcnemarTest(b: number, c: number): McNemarResult {
  assertDiscordant('b', b);
  assertDiscordant('c', c);
  const total = b + c;
  if (total === 0) return { exact_p: 1, mid_p: 1, discordant: 0 };
  const k = Math.min(b, c);
  const logPointK = logFactorial(total) - logFactorial(k) - logFactorial(total - k) - total * LN2;
  const pointK = Math.exp(logPointK);
  // Σ_{i<=k} P(X = i) / P(X = k): terms shrink geometrically once i is well below the mode.
  let ratio = 1;
  let relativeTail = 1;
  for (let i = k; i >= 1; i--) {
    ratio *= i / (total - i + 1);
    relativeTail += ratio;
    if (ratio < relativeTail * 1e-18) break;
  }
  const lowerTail = Math.exp(logPointK + Math.log(relativeTail));
  const exact = Math.min(1, 2 * lowerTail);
  const mid = Math.min(1, Math.max(0, 2 * lowerTail - pointK));
  return { exact_p: exact, mid_p: mid, discordant: total };
}
