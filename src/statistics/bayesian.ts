/**
 * Monte Carlo credible interval for p1 − p2 under independent Jeffreys priors, with a seeded rng.
 */

import { createRng, mixSeed } from '../util/rng.js';
import { assertAlpha } from './normal.js';
import { assertCount, finishInterval, type Interval } from './proportions.js';
import { sortedQuantile } from './bootstrap.js';

export interface BayesianOptions {
  /** Two-sided level: equal-tailed 1 − alpha credible interval. Default 0.05. */
  alpha?: number;
  /** Seed for the deterministic rng (src/util/rng.ts). */
  seed: number;
  /** Monte Carlo draws of (p1, p2). Default 20,000. */
  draws?: number;
}

const BAYES_STREAM = 0xba7e5;

/** Standard normal variates by Box–Muller, both halves used. */
export function createNormalSampler(rng: () => number): () => number {
  let spare = 0;
  let hasSpare = false;
  return () => {
    if (hasSpare) {
      hasSpare = false;
      return spare;
    }
    const u1 = 1 - rng(); // (0, 1]: log is finite
    const u2 = rng();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    spare = radius * Math.sin(angle);
    hasSpare = true;
    return radius * Math.cos(angle);
  };
}

/**
 * Gamma(shape, 1) variates by Marsaglia & Tsang (ACM TOMS 26:363-372, 2000). For shape < 1 the
 * "boost": draw G ~ Gamma(shape + 1) and return G · U^{1/shape}.
 */
export function createGammaSampler(rng: () => number, normal: () => number = createNormalSampler(rng)): (shape: number) => number {
  const sample = (shape: number): number => {
    if (!(shape > 0) || !Number.isFinite(shape)) throw new RangeError(`gamma shape must be positive and finite, got ${shape}`);
    if (shape < 1) {
      const u = 1 - rng(); // (0, 1]
      return sample(shape + 1) * Math.pow(u, 1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - rng(); // (0, 1]
      const x2 = x * x;
      if (u < 1 - 0.0331 * x2 * x2) return d * v;
      if (Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v;
    }
  };
  return sample;
}

/** Beta(α, β) as G1 / (G1 + G2). */
export function sampleBeta(gamma: (shape: number) => number, alpha: number, beta: number): number {
  const g1 = gamma(alpha);
  const g2 = gamma(beta);
  const total = g1 + g2;
  return total > 0 ? g1 / total : 0.5;
}

/**
 * Equal-tailed 1 − alpha credible interval for p1 − p2 with p_i ~ Beta(x_i + ½, n_i − x_i + ½)
 * (independent Jeffreys priors), from `draws` seeded Monte Carlo draws. With n_i = 0 the posterior is
 * the prior, which still gives a finite interval.
 */
export function bayesianDifferenceInterval(x1: number, n1: number, x2: number, n2: number, options: BayesianOptions): Interval {
  const alpha = options.alpha ?? 0.05;
  const draws = options.draws ?? 20000;
  assertAlpha(alpha);
  assertCount('n1', n1);
  assertCount('x1', x1);
  assertCount('n2', n2);
  assertCount('x2', x2);
  if (x1 > n1 || x2 > n2) throw new RangeError('successes cannot exceed trials');
  if (!Number.isInteger(draws) || draws < 1) throw new RangeError(`draws must be a positive integer, got ${draws}`);
  if (!Number.isFinite(options.seed)) throw new RangeError(`seed must be a finite number, got ${options.seed}`);

  const rng = createRng(mixSeed(options.seed, BAYES_STREAM));
  const gamma = createGammaSampler(rng);
  const a1 = x1 + 0.5;
  const b1 = n1 - x1 + 0.5;
  const a2 = x2 + 0.5;
  const b2 = n2 - x2 + 0.5;
  const differences = new Float64Array(draws);
  for (let i = 0; i < draws; i++) {
    differences[i] = sampleBeta(gamma, a1, b1) - sampleBeta(gamma, a2, b2);
  }
  differences.sort();
  return finishInterval(sortedQuantile(differences, alpha / 2), sortedQuantile(differences, 1 - alpha / 2), -1, 1);
}
