/**
 * Small deterministic PRNGs. Runs must replay exactly from (seed, case index, relation index), on any
 * machine and in any thread, so nothing here may depend on Math.random or on the host.
 */

/** Mixes any number of 32-bit integers into one well-distributed 32-bit seed (splitmix-style). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9 | 0;
  for (const part of parts) {
    h = Math.imul(h ^ (part | 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    h = (h + 0x6d2b79f5) | 0;
  }
  return h >>> 0;
}

/** mulberry32: uniform floats in [0, 1). */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The rng handed to `relation.transform` for a case. */
export function relationRng(seed: number, caseIndex: number, relationIndex: number): () => number {
  return createRng(mixSeed(seed, caseIndex, relationIndex));
}

/** Integer in [lo, hi] inclusive. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}
