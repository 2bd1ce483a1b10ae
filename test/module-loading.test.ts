/**
 * One loader for user modules (src/task/bundle.ts): task and implementation modules in every
 * extension load from any folder — no package.json, a CommonJS package, an ESM package — importing
 * sibling files, npm packages and `metaguard`; a local run and a queue run (real redis-server, a
 * worker daemon as a real process) execute the same bundles: same hashes, same verdict.
 *
 * Run: node --import tsx --test --test-concurrency=1 test/module-loading.test.ts
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli, type CliResult } from './helpers/run-cli.ts';
import { redisAvailable } from './helpers/redis-server.ts';
import { redisSuite, spawnWorker } from './helpers/queue-harness.ts';
import type { Report } from '../src/reports/types.ts';
import { bundleModule } from '../src/task/bundle.ts';
import { MetaguardError } from '../src/errors.ts';

const root = mkdtempSync(join(tmpdir(), 'mg-modules-'));
const cacheDir = join(root, 'cache');

function write(files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
}

// A task of lengths with a TypeScript-only syntax and the package's own authoring API.
const tsTask = `import { defineTask } from 'metaguard';
import { makeCases } from './cases';
const name: string = 'lengths';
export default defineTask({
  name,
  gen: (n: number, seed: number) => makeCases(n, seed),
  properties: [{ name: 'is_length', check: (out: number, xs: number[]) => out === xs.length }],
  relations: [{ name: 'reverse', transform: ([xs]: [number[]]) => [[...xs].reverse()] }],
});
`;
const tsCases = `export function makeCases(n: number, seed: number): number[][][] {
  return Array.from({ length: n }, (_, i) => [Array.from({ length: 1 + ((i * 7 + seed) % 5) }, (_, j) => j)]);
}
`;

write({
  // No package.json anywhere above (tmpdir): .ts, .mts, .cts and siblings.
  'plain/task.ts': tsTask,
  'plain/cases.ts': tsCases,
  'plain/impl.ts': `import { count } from './helper.ts';\nexport function solve(xs: number[]): number { return count(xs); }\n`,
  'plain/helper.ts': `export const count = (xs: readonly unknown[]): number => xs.length;\n`,
  'plain/impl.mts': `import { count } from './helper.ts';\nexport default (xs: number[]) => count(xs);\n`,
  // A CommonJS package: ESM-syntax .ts (the failing case), require() of siblings, an npm package.
  'cjs/package.json': '{ "name": "cjs-project", "type": "commonjs" }\n',
  'cjs/task.ts': tsTask,
  'cjs/cases.ts': tsCases,
  'cjs/impl.js': `const { count } = require('./helper.js');\nconst len = require('lenlib');\nconst path = require('node:path');\nmodule.exports = { solve: (xs) => (path.sep ? count(xs) : len(xs)) };\n`,
  'cjs/helper.js': `exports.count = (xs) => require('lenlib')(xs);\n`,
  'cjs/impl.cts': `import len = require('lenlib');\nexport function solve(xs: number[]) { return len(xs); }\n`,
  'cjs/node_modules/lenlib/package.json': '{ "name": "lenlib", "version": "1.0.0", "main": "index.js" }\n',
  'cjs/node_modules/lenlib/index.js': 'module.exports = function len(xs) { return xs.length; };\n',
  // An ESM package: .js is ESM here, .cjs CommonJS.
  'esm/package.json': '{ "name": "esm-project", "type": "module" }\n',
  'esm/task.js': `import { makeCases } from './cases.mjs';\nexport default { name: 'lengths', gen: makeCases, properties: [{ name: 'is_length', check: (out, xs) => out === xs.length }] };\n`,
  'esm/cases.mjs': `export const makeCases = (n, seed) => Array.from({ length: n }, (_, i) => [Array.from({ length: 1 + ((i * 7 + seed) % 5) }, (_, j) => j)]);\n`,
  'esm/impl.js': `import { count } from './lib/count.js';\nexport const solve = count;\n`,
  'esm/lib/count.js': `export const count = (xs) => xs.length;\n`,
  'esm/impl.cjs': `module.exports = function solve(xs) { return xs.length; };\n`,
});

const layouts = [
  { name: 'no package.json', task: 'plain/task.ts', baseline: 'plain/impl.ts', candidate: 'plain/impl.mts' },
  { name: 'a CommonJS package', task: 'cjs/task.ts', baseline: 'cjs/impl.js', candidate: 'cjs/impl.cts' },
  { name: 'an ESM package', task: 'esm/task.js', baseline: 'esm/impl.js', candidate: 'esm/impl.cjs' },
];

const describeRun = (r: CliResult) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

function report(dir: string): Report {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1);
  return JSON.parse(readFileSync(join(dir, files[0]), 'utf8')) as Report;
}

async function evaluate(layout: (typeof layouts)[number], extra: string[] = []): Promise<Report> {
  const dir = join(root, 'reports', randomUUID().slice(0, 8));
  const r = await runCli(
    ['evaluate', '--task', join(root, layout.task), '--baseline', join(root, layout.baseline), '--candidate', join(root, layout.candidate), '--n', '60', '--min-delta=-1', '--cache-dir', cacheDir, '--report-dir', dir, ...extra],
    { cwd: root },
  );
  assert.equal(r.code, 0, describeRun(r));
  return report(dir);
}

const local = new Map<string, Report>();

describe('local runs load modules from any folder', { concurrency: 1 }, () => {
  for (const layout of layouts) {
    it(`${layout.name}: ${layout.task}, ${layout.baseline}, ${layout.candidate}`, async () => {
      const r = await evaluate(layout);
      assert.equal(r.task, 'lengths');
      assert.equal(r.baseline.passes, 60, JSON.stringify(r.baseline));
      assert.equal(r.candidate.passes, 60, JSON.stringify(r.candidate));
      assert.deepEqual(r.decision.adopt, true);
      // The hashes name the bundles that ran: the files are in the cache under their hash.
      for (const h of Object.values(r.hashes)) assert.ok(readdirSync(join(cacheDir, 'bundles')).includes(`${h}.mjs`), h);
      local.set(layout.name, r);
    });
  }
});

describe('bundles', () => {
  it('are byte-identical from any working directory (the hash is the identity)', async () => {
    const a = await bundleModule(join(root, 'plain/task.ts'), 'task', cacheDir);
    const cwd = process.cwd();
    process.chdir(tmpdir());
    try {
      const b = await bundleModule(join(root, 'plain/task.ts'), 'task', cacheDir);
      assert.equal(b.sha256, a.sha256);
    } finally {
      process.chdir(cwd);
    }
  });

  it('a module that does not build fails with MG_ERR_MODULE_LOAD naming the file, line and reason', async () => {
    write({ 'broken/impl.ts': `import { gone } from './missing';\nexport const solve = gone;\n` });
    await assert.rejects(bundleModule(join(root, 'broken/impl.ts'), 'candidate', cacheDir), (err: unknown) => {
      assert.ok(err instanceof MetaguardError);
      assert.equal(err.code, 'MG_ERR_MODULE_LOAD');
      assert.equal(err.message, `candidate ${join(root, 'broken/impl.ts')}: failed to load: line 1:22: Could not resolve "./missing"`);
      return true;
    });
  });
});

describe('through Redis the same bundles run on a worker', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  const redis = redisSuite();

  for (const layout of layouts) {
    it(`${layout.name}: same hashes and verdict as the local run`, async () => {
      const qc = redis.queueConfig('t', { heartbeat_check_interval: 0.25, batch_size: 10 });
      const worker = spawnWorker(qc, { args: ['--threads', '1'] });
      try {
        const r = await evaluate(layout, ['--queue-config', JSON.stringify(qc), '--no-worker-timeout-s', '60']);
        const l = local.get(layout.name);
        assert.ok(l, 'the local run of this layout ran first');
        assert.deepEqual(r.hashes, l.hashes, 'a queue run ships the bundles the local run ran');
        assert.equal(r.dispatcher, 'queue');
        assert.equal(r.candidate.passes, 60, JSON.stringify(r.candidate));
        assert.equal(r.baseline.passes, 60, JSON.stringify(r.baseline));
        assert.deepEqual(r.decision, l.decision);
      } finally {
        worker.child.kill('SIGTERM');
        await worker.exited;
      }
    });
  }
});
