/**
 * Normal-approximation power for a paired difference of proportions against a margin.
 */

import { assertAlpha, normalCdf, normalQuantile, twoSidedZ } from './normal.js';

export interface PairedPowerInput {
  /** Number of paired cases. */
  n: number;
  /** Candidate-only count: cases the candidate passes and the baseline fails. */
  b: number;
  /** Baseline-only count: cases the baseline passes and the candidate fails. */
  c: number;
  /** The margin the difference Δ = candidate − baseline pass rate must exceed (e.g. −0.02). */
  minDelta: number;
  /** Two-sided level; the test uses z_{1−α/2}. */
  alpha: number;
  /** Power to plan for in `recommended_n`. Default 0.8. */
  targetPower?: number;
}

export interface PairedPowerResult {
  estimated_power: number;
  target_power: number;
  /** Cases needed for `target_power` at the observed effect; null when the observed Δ does not exceed minDelta. */
  recommended_n: number | null;
}

/**
 * With Δ = (b − c)/n and per-pair variance v = (b + c)/n − Δ² (the variance of one pair's
 * candidate − baseline difference in {−1, 0, 1}):
 *   power = Φ((Δ − minDelta)/sqrt(v/n) − z_{1−α/2}),
 *   recommended_n = ceil(v (z_{1−α/2} + z_{target})² / (Δ − minDelta)²)  when Δ > minDelta, else null.
 * Degenerate inputs stay finite: n = 0 → power 0, recommended_n null; v = 0 (no discordant pairs or
 * all discordant pairs one way) → power 1 if Δ > minDelta else 0, recommended_n = n or null.
 * A recommended_n that would overflow is capped at Number.MAX_SAFE_INTEGER.
 */
export function pairedPower(input: PairedPowerInput): PairedPowerResult {
  const { n, b, c, minDelta, alpha } = input;
  const targetPower = input.targetPower ?? 0.8;
  assertAlpha(alpha);
  if (!(targetPower > 0 && targetPower < 1)) throw new RangeError(`targetPower must be in (0, 1), got ${targetPower}`);
  for (const [name, value] of [['n', n], ['b', b], ['c', c]] as const) {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite non-negative count, got ${value}`);
  }
  if (b + c > n) throw new RangeError(`b + c (${b + c}) cannot exceed n (${n})`);
  if (!Number.isFinite(minDelta)) throw new RangeError(`minDelta must be finite, got ${minDelta}`);

  if (n === 0) return { estimated_power: 0, target_power: targetPower, recommended_n: null };
  const delta = (b - c) / n;
  const variance = Math.max(0, (b + c) / n - delta * delta);
  const effect = delta - minDelta;
  if (variance === 0) {
    return { estimated_power: effect > 0 ? 1 : 0, target_power: targetPower, recommended_n: effect > 0 ? n : null };
  }
  const zAlpha = twoSidedZ(alpha);
  const power = normalCdf(effect / Math.sqrt(variance / n) - zAlpha);
  let recommended: number | null = null;
  if (effect > 0) {
    const zPower = normalQuantile(targetPower);
    const raw = Math.ceil((variance * (zAlpha + zPower) ** 2) / (effect * effect));
    recommended = Number.isFinite(raw) && raw <= Number.MAX_SAFE_INTEGER ? Math.max(1, raw) : Number.MAX_SAFE_INTEGER;
  }
  return { estimated_power: power, target_power: targetPower, recommended_n: recommended };
}
