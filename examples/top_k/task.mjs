// Built-in task `top_k`: return the k largest values of an array, largest first.
// The baseline forgets to clamp k to the array length; the candidate is correct, so it is adopted.

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sortedDesc = (xs) => [...xs].sort((a, b) => b - a);

export default {
  name: 'top_k',
  gen(n, seed) {
    const r = rng(seed);
    const cases = [];
    for (let i = 0; i < n; i++) {
      const len = Math.floor(r() * 40);
      const xs = Array.from({ length: len }, () => Math.floor(r() * 2001) - 1000);
      // Mostly k within the array, sometimes beyond it (an edge case implementations get wrong).
      const k = r() < 0.85 ? Math.floor(r() * (len + 1)) : len + 1 + Math.floor(r() * 5);
      cases.push([xs, k]);
    }
    return cases;
  },
  properties: [
    { name: 'length_is_min_k_n', check: (out, xs, k) => Array.isArray(out) && out.length === Math.min(k, xs.length) },
    { name: 'sorted_descending', check: (out) => Array.isArray(out) && out.every((v, i) => i === 0 || out[i - 1] >= v) },
    {
      name: 'are_the_largest',
      check: (out, xs, k) => {
        const want = sortedDesc(xs).slice(0, Math.min(k, xs.length));
        return Array.isArray(out) && out.length === want.length && out.every((v, i) => v === want[i]);
      },
    },
    { name: 'fast_enough_shape', mode: 'soft', check: (out) => !Array.isArray(out) || out.length < 10_000 },
  ],
  relations: [
    {
      name: 'permute_input',
      transform: ([xs, k], rand) => {
        const ys = [...xs];
        for (let i = ys.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [ys[i], ys[j]] = [ys[j], ys[i]];
        }
        return [ys, k];
      },
    },
    {
      name: 'append_smaller_values',
      // Values below the current minimum never enter the top k when k <= len.
      expect: 'properties_hold',
      transform: ([xs, k], rand) => {
        const min = xs.length ? Math.min(...xs) : 0;
        return [[...xs, min - 1 - Math.floor(rand() * 10)], k];
      },
    },
  ],
};
