// Built-in task `median`, written in TypeScript: the middle value of a list of numbers (the mean of
// the two middle values for an even length). The candidate "optimises" by taking the upper middle
// element, which is wrong for every even-length input, so it is rejected.

type Case = [number[]];

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const reference = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export default {
  name: 'median',
  gen(n: number, seed: number): Case[] {
    const r = rng(seed);
    return Array.from({ length: n }, () => {
      const len = 1 + Math.floor(r() * 30);
      return [Array.from({ length: len }, () => Math.floor(r() * 200) - 100)] as Case;
    });
  },
  properties: [
    { name: 'is_number', check: (out: unknown) => typeof out === 'number' && Number.isFinite(out) },
    {
      name: 'within_range',
      check: (out: number, xs: number[]) => out >= Math.min(...xs) && out <= Math.max(...xs),
    },
    { name: 'equals_reference', check: (out: number, xs: number[]) => out === reference(xs) },
  ],
  relations: [
    { name: 'reverse_input', transform: ([xs]: Case) => [[...xs].reverse()] },
    {
      name: 'shuffle_input',
      transform: ([xs]: Case, rand: () => number) => {
        const ys = [...xs];
        for (let i = ys.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [ys[i], ys[j]] = [ys[j], ys[i]];
        }
        return [ys];
      },
    },
    { name: 'duplicate_every_value', transform: ([xs]: Case) => [xs.flatMap((x) => [x, x])] },
  ],
};
