/**
 * The standard normal distribution: CDF and quantile (inverse CDF), both to double precision.
 *
 * - `normalCdf` evaluates W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev
 *   approximations for the error function", Math. Comp. 1969; ACM TOMS Algorithm 715, 1993), in the
 *   three-region form R's `pnorm` uses. Relative error is at the level of double rounding.
 * - `normalQuantile` is M. J. Wichura's Algorithm AS 241 (PPND16, Applied Statistics 37:477-484,
 *   1988), accurate to about 1 part in 1e16 over the whole open interval (0, 1).
 */

const SQRT_32 = Math.sqrt(32);
const ONE_OVER_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

// Cody: |x| <= 0.66291.
const CA = [2.2352520354606839287, 161.02823106855587881, 1067.6894854603709582, 18154.981253343561249, 0.065682337918207449113] as const;
const CB = [47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956] as const;
// Cody: 0.66291 < |x| <= sqrt(32).
const CC = [
  0.39894151208813466764, 8.8831497943883759412, 93.506656132177855979, 597.27027639480026226, 2494.5375852903726711,
  6848.1904505362823326, 11602.651437647350124, 9842.7148383839780218, 1.0765576773720192317e-8,
] as const;
const CD = [
  22.266688044328115691, 235.38790178262499861, 1519.377599407554805, 6485.558298266760755, 18615.571640885098091,
  34900.952721145977266, 38912.003286093271411, 19685.429676859990727,
] as const;
// Cody: sqrt(32) < |x| < 50.
const CP = [0.21589853405795699, 0.1274011611602473639, 0.022235277870649807, 0.001421619193227893466, 2.9112874951168792e-5, 0.02307344176494017303] as const;
const CQ = [1.28426009614491121, 0.468238212480865118, 0.0659881378689285515, 0.00378239633202758244, 7.29751555083966205e-5] as const;

/** exp(-y^2 / 2) computed as exp(-ys^2/2) * exp(-(y - ys)(y + ys)/2), ys = y rounded down to 1/16: no cancellation. */
function gaussTail(y: number, ratio: number): number {
  const ys = Math.floor(y * 16) / 16;
  const del = (y - ys) * (y + ys);
  return Math.exp(-ys * ys * 0.5) * Math.exp(-del * 0.5) * ratio;
}

/**
 * Φ(x) = P(Z <= x) for Z ~ N(0, 1). ±Infinity map to 0 and 1. Throws RangeError on NaN (a NaN must
 * never leak into a report).
 */
export function normalCdf(x: number): number {
  if (Number.isNaN(x)) throw new RangeError('normalCdf: x is NaN');
  const y = Math.abs(x);
  if (y <= 0.66291) {
    const xsq = y > 1.1102230246251565e-16 ? x * x : 0;
    let num = CA[4] * xsq;
    let den = xsq;
    for (let i = 0; i < 3; i++) {
      num = (num + CA[i]!) * xsq;
      den = (den + CB[i]!) * xsq;
    }
    return 0.5 + (x * (num + CA[3])) / (den + CB[3]);
  }
  let upper: number; // P(Z > |x|)
  if (y <= SQRT_32) {
    let num = CC[8] * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + CC[i]!) * y;
      den = (den + CD[i]!) * y;
    }
    upper = gaussTail(y, (num + CC[7]) / (den + CD[7]));
  } else if (y < 50) {
    const xsq = 1 / (y * y);
    let num = CP[5] * xsq;
    let den = xsq;
    for (let i = 0; i < 4; i++) {
      num = (num + CP[i]!) * xsq;
      den = (den + CQ[i]!) * xsq;
    }
    const r = (xsq * (num + CP[4])) / (den + CQ[4]);
    upper = gaussTail(y, (ONE_OVER_SQRT_2PI - r) / y);
  } else {
    upper = 0;
  }
  return x > 0 ? 1 - upper : upper;
}

// AS 241 coefficients, lowest order first.
const QA = [
  3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125, 45921.953931549871457,
  67265.770927008700853, 33430.575583588128105, 2509.0809287301226727,
] as const;
const QB = [
  1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867, 39307.89580009271061,
  28729.085735721942674, 5226.495278852854561,
] as const;
const QC = [
  1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504, 1.27045825245236838258,
  0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4,
] as const;
const QD = [
  1, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459,
  0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9,
] as const;
const QE = [
  6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123, 0.026532189526576123093,
  0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7,
] as const;
const QF = [
  1, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4,
  1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15,
] as const;

function horner(coefficients: readonly number[], x: number): number {
  let value = 0;
  for (let i = coefficients.length - 1; i >= 0; i--) value = value * x + coefficients[i]!;
  return value;
}

/**
 * Φ⁻¹(p): the z with P(Z <= z) = p, for p strictly inside (0, 1). Throws RangeError otherwise, since
 * the quantile of 0 or 1 is infinite and reports must stay finite.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}`);
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (q * horner(QA, r)) / horner(QB, r);
  }
  let r = Math.sqrt(-Math.log(q < 0 ? p : 1 - p));
  let value: number;
  if (r <= 5) {
    r -= 1.6;
    value = horner(QC, r) / horner(QD, r);
  } else {
    r -= 5;
    value = horner(QE, r) / horner(QF, r);
  }
  return q < 0 ? -value : value;
}

/** z_{1-α/2}, validating α ∈ (0, 1). */
export function twoSidedZ(alpha: number): number {
  assertAlpha(alpha);
  return normalQuantile(1 - alpha / 2);
}

export function assertAlpha(alpha: number): void {
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
}
