/** The verdict: may the candidate replace the baseline? */
import type { DecisionReason } from '../reports/types.js';

export interface GateInput {
  /** Candidate cases with a hard property or relation violation. */
  candidateViolations: number;
  candidatePassRate: number;
  deltaCi: [number, number];
}

export interface GateLimits {
  violationCap: number;
  minPassRate: number;
  minDelta: number;
}

/**
 * Rejects, in this order, when the candidate's violations exceed the cap, when its pass rate is below
 * the minimum, or when the CI's lower bound on (candidate − baseline) is below min_delta; else adopts.
 */
export function decide(input: GateInput, limits: GateLimits): { adopt: boolean; reason: DecisionReason } {
  if (input.candidateViolations > limits.violationCap) return { adopt: false, reason: 'violations' };
  if (input.candidatePassRate < limits.minPassRate) return { adopt: false, reason: 'pass_rate_below_min' };
  if (input.deltaCi[0] < limits.minDelta) return { adopt: false, reason: 'ci_below_min_delta' };
  return { adopt: true, reason: 'meets_gate' };
}
