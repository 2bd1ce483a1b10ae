// Keeps a small sorted buffer of the k largest values seen so far; clamps k to the input.
export function solve(xs, k) {
  const want = Math.min(k, xs.length);
  if (want <= 0) return [];
  const top = [];
  for (const x of xs) {
    if (top.length === want && x <= top[want - 1]) continue;
    let i = top.length;
    while (i > 0 && top[i - 1] < x) i--;
    top.splice(i, 0, x);
    if (top.length > want) top.pop();
  }
  return top;
}
