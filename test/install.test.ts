/**
 * The first two commands on a machine without Rust: `npm ci`'s prepare step builds dist/ and says in
 * one line that the JS codec is used and why (and succeeds); `npm run build:native` says in one line
 * what is missing (no stack trace) and fails.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
/** A PATH with node and the basic tools, but no cargo. */
const noCargoPath = [dirname(process.execPath), '/usr/bin', '/bin'].filter((d) => !spawnSync(join(d, 'cargo'), ['--version']).stdout).join(':');
const run = (script: string) => spawnSync(process.execPath, [join(root, script)], { cwd: root, encoding: 'utf8', env: { PATH: noCargoPath, HOME: process.env.HOME ?? '/tmp' }, timeout: 180_000 });

describe('without cargo', () => {
  it('build:native prints one line naming what is missing and exits 1', () => {
    const r = run('scripts/build-native.mjs');
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^build:native: cannot build the native module: cargo was not found on PATH .*JS codec.*\n$/);
    assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  });

  it('prepare builds dist/ and says in one line that the JS codec is used, and why', () => {
    const r = run('scripts/prepare.mjs');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.deepEqual(lines[0], 'metaguard: built dist/');
    assert.match(lines[1]!, /^metaguard: native module not built: cargo was not found on PATH .*; the JS codec is used/);
    assert.equal(lines.length, 2, r.stdout);
  });
});

describe('package.json', () => {
  it('runs the prepare step on npm ci, and build:native through the script that explains failures', async () => {
    const { scripts } = (await import('../package.json', { with: { type: 'json' } })).default as { scripts: Record<string, string> };
    assert.equal(scripts.prepare, 'node scripts/prepare.mjs');
    assert.equal(scripts['build:native'], 'node scripts/build-native.mjs');
  });
});
