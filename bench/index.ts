/**
 * `npm run bench`: the throughput table (bench/throughput.ts: the limit, the case thread, local, the
 * memory queue, Redis with the native and the JS codec, BullMQ in-process and sandboxed — one run,
 * one table — then CPU per case and single-case latency). `npm run bench -- --all` also runs every
 * other benchmark, each printing its own table. Run one alone with `node --import tsx bench/<name>.ts`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpus, arch, platform, loadavg } from 'node:os';

const all = process.argv.includes('--all');
const args = process.argv.slice(2).filter((a) => a !== '--all');
// One header for the whole run: figures are comparable only on the same Node line and machine, and
// on a shared machine only side by side in one run.
process.stdout.write(
  `metaguard bench — node ${process.version} (${platform()}-${arch()}, V8 ${process.versions.v8}), ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at start\n\n`,
);

for (const name of all ? ['throughput', 'codec', 'serialize', 'dispatch', 'http', 'cluster', 'isolation'] : ['throughput']) {
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...(name === 'throughput' ? args : all ? [] : args)], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}
process.stdout.write(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end\n`);
