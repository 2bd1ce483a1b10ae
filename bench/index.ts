/**
 * `npm run bench`: every benchmark, each printing its own table. Run one alone with
 * `node --import tsx bench/<name>.ts`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

for (const name of ['codec', 'serialize', 'dispatch']) {
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}
