// Copies the non-TypeScript files the compiled modules read at run time into dist/, at the same
// place under dist/src as under src/: the Redis backend's Lua commands (src/queue/redis/commands/).
// The copy replaces what an earlier build left there, so a file removed from src/ leaves dist/ too.
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dirs = ['queue/redis/commands'];
for (const dir of dirs) {
  const from = fileURLToPath(new URL(`../src/${dir}`, import.meta.url));
  const to = fileURLToPath(new URL(`../dist/src/${dir}`, import.meta.url));
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true, filter: (src) => !/\.(ts|md)$/.test(src) });
  console.log(`copied ${from} -> ${to}`);
}
