/**
 * Statistics for the replace-the-baseline decision: intervals for Δ = candidate pass rate − baseline
 * pass rate, the exact McNemar test, and a power estimate. Every function returns finite numbers
 * (reports are strict JSON): differences are clamped to [−1, 1], proportions to [0, 1]; invalid
 * arguments (negative counts, alpha outside (0, 1), mismatched lengths) throw RangeError.
 */

import { bayesianDifferenceInterval } from './bayesian.js';
import { pairedBcaInterval, pairedBootstrapInterval, pairedCounts } from './bootstrap.js';
import { newcombeInterval, newcombePairedInterval, type Interval } from './proportions.js';

export { normalCdf, normalQuantile } from './normal.js';
export { wilsonInterval, newcombeInterval, newcombePairedInterval, newcombePhi, type Interval } from './proportions.js';
export {
  pairedBootstrapInterval,
  pairedBcaInterval,
  pairedCounts,
  jackknifeAcceleration,
  type BinaryOutcomes,
  type BootstrapOptions,
  type PairedCounts,
} from './bootstrap.js';
export { bayesianDifferenceInterval, createGammaSampler, createNormalSampler, type BayesianOptions } from './bayesian.js';
export { mcnemarTest, type McNemarResult } from './mcnemar.js';
export { pairedPower, type PairedPowerInput, type PairedPowerResult } from './power.js';

export const INTERVAL_METHODS = ['bootstrap', 'bootstrap-bca', 'newcombe', 'wilson', 'bayesian'] as const;
export type IntervalMethod = (typeof INTERVAL_METHODS)[number];

export interface ComputeIntervalOptions {
  /** Two-sided level (coverage 1 − alpha). */
  alpha: number;
  /** Bootstrap resamples ('bootstrap', 'bootstrap-bca' only). */
  samples: number;
  /** Seed for the Monte Carlo methods ('bootstrap', 'bootstrap-bca', 'bayesian'). */
  seed: number;
}

/**
 * Interval for Δ = mean(candidate) − mean(baseline), where both arrays hold one entry per case
 * (non-zero = pass) for the same cases in the same order.
 *
 * - 'bootstrap': paired percentile bootstrap over cases.
 * - 'bootstrap-bca': paired BCa bootstrap over cases.
 * - 'newcombe': Newcombe's paired method 10 with a = both pass, b = candidate only,
 *   c = baseline only, d = neither.
 * - 'wilson': Newcombe's independent-samples square-and-add of Wilson limits on the two pass rates,
 *   ignoring the pairing (conservative when outcomes are positively correlated).
 * - 'bayesian': Jeffreys-prior Monte Carlo credible interval on the two pass rates (independent).
 */
export function computeInterval(
  method: IntervalMethod,
  baseline: Uint8Array,
  candidate: Uint8Array,
  options: ComputeIntervalOptions,
): Interval {
  const { alpha, samples, seed } = options;
  switch (method) {
    case 'bootstrap':
      return pairedBootstrapInterval(baseline, candidate, { samples, alpha, seed });
    case 'bootstrap-bca':
      return pairedBcaInterval(baseline, candidate, { samples, alpha, seed });
    case 'newcombe':
    case 'wilson':
    case 'bayesian': {
      const counts = pairedCounts(baseline, candidate);
      const { both, candidateOnly, baselineOnly, neither, n } = counts;
      if (method === 'newcombe') return newcombePairedInterval(both, candidateOnly, baselineOnly, neither, alpha);
      const candidatePasses = both + candidateOnly;
      const baselinePasses = both + baselineOnly;
      if (method === 'wilson') return newcombeInterval(candidatePasses, n, baselinePasses, n, alpha);
      return bayesianDifferenceInterval(candidatePasses, n, baselinePasses, n, { alpha, seed });
    }
    default: {
      const unknown: never = method;
      throw new RangeError(`unknown interval method: ${String(unknown)}`);
    }
  }
}
