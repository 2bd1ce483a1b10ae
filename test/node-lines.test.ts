/**
 * The supported Node.js lines (package.json engines) and what tells an operator which one runs:
 * `metaguard worker --version`. CI runs the whole suite on Node 22 and on Node 24 with one build of the
 * native module (METAGUARD_REQUIRE_NATIVE=1 makes test/codec.test.ts fail if it does not load).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runCli } from './helpers/run-cli.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; engines: { node: string } };

function satisfiesEngines(version: string, range: string): boolean {
  const m = /^>=(\d+)\.(\d+)\.(\d+)$/.exec(range);
  assert.ok(m, `engines.node is a plain >= range: ${range}`);
  const want = m.slice(1).map(Number);
  const have = version.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < 3; i++) if (have[i] !== want[i]) return have[i]! > want[i]!;
  return true;
}

test('this Node.js satisfies package.json engines (22.12 or later)', () => {
  assert.ok(satisfiesEngines(process.version, pkg.engines.node), `${process.version} vs ${pkg.engines.node}`);
  assert.equal(satisfiesEngines('v20.20.2', pkg.engines.node), false, 'Node 20 is not supported');
  assert.equal(satisfiesEngines('v22.11.0', pkg.engines.node), false);
  assert.equal(satisfiesEngines('v22.12.0', pkg.engines.node), true);
  assert.equal(satisfiesEngines('v24.0.0', pkg.engines.node), true);
});

test('metaguard worker --version names the node binary that runs it and the codec', async () => {
  const r = await runCli(['worker', '--version'], { env: process.env.METAGUARD_NATIVE ? { METAGUARD_NATIVE: process.env.METAGUARD_NATIVE } : {} });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^metaguard ${pkg.version}`, 'm'));
  assert.ok(r.stdout.includes(`node ${process.version} (${process.execPath})`), r.stdout);
  assert.match(r.stdout, /^codec (native|js)/m);
  if (process.env.METAGUARD_REQUIRE_NATIVE === '1') assert.match(r.stdout, /^codec native$/m);
});
