/**
 * `npm run bench`: every benchmark, each printing its own table. Run one alone with
 * `node --import tsx bench/<name>.ts`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpus, arch, platform } from 'node:os';

// One header for the whole run: figures are comparable only on the same Node line and machine.
process.stdout.write(`metaguard bench — node ${process.version} (${platform()}-${arch()}, V8 ${process.versions.v8}), ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}\n\n`);

for (const name of ['codec', 'serialize', 'dispatch', 'http', 'cluster', 'isolation']) {
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}
