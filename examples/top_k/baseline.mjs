// Sorts a copy and slices, but pads with `undefined` when k exceeds the array length.
export function solve(xs, k) {
  const sorted = [...xs].sort((a, b) => b - a);
  const out = new Array(k);
  for (let i = 0; i < k; i++) out[i] = sorted[i];
  return out;
}
