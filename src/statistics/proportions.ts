/**
 * Closed-form score intervals for proportions and differences of proportions (Wilson; Newcombe's
 * hybrid score "square-and-add" method 10, independent and paired). No continuity correction.
 */

import { twoSidedZ } from './normal.js';

export type Interval = [number, number];

export function clamp(value: number, lo: number, hi: number): number {
  return value < lo ? lo : value > hi ? hi : value;
}

/** Clamps both ends into [lo, hi] and orders them, so every interval leaving this module is well formed. */
export function finishInterval(lower: number, upper: number, lo: number, hi: number): Interval {
  const a = clamp(lower, lo, hi);
  const b = clamp(upper, lo, hi);
  return a <= b ? [a, b] : [b, a];
}

export function assertCount(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite non-negative count, got ${value}`);
}

function assertSuccesses(x: number, n: number): void {
  assertCount('n', n);
  assertCount('x', x);
  if (x > n) throw new RangeError(`x (${x}) cannot exceed n (${n})`);
}

function wilsonWithZ(x: number, n: number, z: number): Interval {
  if (n === 0) return [0, 1];
  const z2 = z * z;
  const denom = n + z2;
  const centre = (x + z2 / 2) / denom;
  const half = (z * Math.sqrt((x * (n - x)) / n + z2 / 4)) / denom;
  // At x = 0 (x = n) the lower (upper) limit is exactly 0 (1); pin it against rounding.
  const lower = x === 0 ? 0 : centre - half;
  const upper = x === n ? 1 : centre + half;
  return finishInterval(lower, upper, 0, 1);
}

/**
 * Wilson score interval for a binomial proportion x/n (Newcombe 1998, Stat Med 17:857, method 3).
 * n = 0 carries no information: [0, 1].
 */
export function wilsonInterval(x: number, n: number, alpha = 0.05): Interval {
  assertSuccesses(x, n);
  return wilsonWithZ(x, n, twoSidedZ(alpha));
}

/**
 * Newcombe's hybrid score interval (method 10 of Stat Med 1998;17:873-890) for p1 − p2 from two
 * independent samples: Wilson limits (l_i, u_i) for each proportion combined by square-and-add,
 *   L = d − sqrt((p1 − l1)² + (u2 − p2)²),  U = d + sqrt((u1 − p1)² + (p2 − l2)²).
 * An empty arm knows nothing about its proportion (Wilson [0, 1]); then the interval degrades to the
 * plain range [l1 − u2, u1 − l2] (both empty: [−1, 1]).
 */
export function newcombeInterval(x1: number, n1: number, x2: number, n2: number, alpha = 0.05): Interval {
  assertSuccesses(x1, n1);
  assertSuccesses(x2, n2);
  const z = twoSidedZ(alpha);
  const [l1, u1] = wilsonWithZ(x1, n1, z);
  const [l2, u2] = wilsonWithZ(x2, n2, z);
  if (n1 === 0 || n2 === 0) return finishInterval(l1 - u2, u1 - l2, -1, 1);
  const p1 = x1 / n1;
  const p2 = x2 / n2;
  const d = p1 - p2;
  const lower = d - Math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2);
  const upper = d + Math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2);
  return finishInterval(lower, upper, -1, 1);
}

/**
 * Newcombe's correlation estimate for method 10 on paired data (Stat Med 1998;17:2635-2650, §5):
 * φ̂ = C / sqrt((a+b)(c+d)(a+c)(b+d)) with the continuity-corrected numerator
 *   C = ad − bc − n/2  if ad − bc > n/2,
 *   C = 0              if 0 <= ad − bc <= n/2,
 *   C = ad − bc        if ad − bc < 0,
 * and φ̂ = 0 whenever any marginal total is zero (the product is 0). The same rule is implemented by
 * contingencytables::Newcombe_square_and_add_CI_paired_2x2, biostatUZH::confIntPairedProportion and
 * propint::ci.two.dep.props, and it is what reproduces the paper's Table III: with the raw
 * (ad − bc)/sqrt(...) the (18, 12, 2, 18) row would come out as (0.0618, 0.3239) instead of the
 * published (0.0562, 0.3290), and (27, 0, 0, 27) would collapse to the zero-width (0, 0) instead of
 * (−0.0351, 0.0351).
 */
export function newcombePhi(a: number, b: number, c: number, d: number): number {
  const product = (a + b) * (c + d) * (a + c) * (b + d);
  if (product === 0) return 0;
  const n = a + b + c + d;
  const cross = a * d - b * c;
  const numerator = cross > n / 2 ? cross - n / 2 : cross >= 0 ? 0 : cross;
  return clamp(numerator / Math.sqrt(product), -1, 1);
}

/**
 * Newcombe's method 10 for the difference of paired proportions, θ = (a+b)/n − (a+c)/n, where
 * a = both pass, b = first only, c = second only, d = neither:
 *   L = θ − sqrt((p1 − l1)² − 2φ̂(p1 − l1)(u2 − p2) + (u2 − p2)²),
 *   U = θ + sqrt((u1 − p1)² − 2φ̂(u1 − p1)(p2 − l2) + (p2 − l2)²),
 * with (l_i, u_i) the Wilson limits of p1 = (a+b)/n and p2 = (a+c)/n and φ̂ from `newcombePhi`.
 * n = 0: [−1, 1].
 */
export function newcombePairedInterval(a: number, b: number, c: number, d: number, alpha = 0.05): Interval {
  assertCount('a', a);
  assertCount('b', b);
  assertCount('c', c);
  assertCount('d', d);
  const z = twoSidedZ(alpha);
  const n = a + b + c + d;
  if (n === 0) return [-1, 1];
  const p1 = (a + b) / n;
  const p2 = (a + c) / n;
  const theta = (b - c) / n;
  const [l1, u1] = wilsonWithZ(a + b, n, z);
  const [l2, u2] = wilsonWithZ(a + c, n, z);
  const phi = newcombePhi(a, b, c, d);
  const dl1 = p1 - l1;
  const du1 = u1 - p1;
  const dl2 = p2 - l2;
  const du2 = u2 - p2;
  const lowerRadicand = dl1 * dl1 - 2 * phi * dl1 * du2 + du2 * du2;
  const upperRadicand = du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2;
  const lower = theta - Math.sqrt(Math.max(0, lowerRadicand));
  const upper = theta + Math.sqrt(Math.max(0, upperRadicand));
  return finishInterval(lower, upper, -1, 1);
}
