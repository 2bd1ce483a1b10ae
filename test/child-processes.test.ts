/**
 * Processes user code starts from a case thread (src/execution/reap.ts): a thread blocked in a child
 * process (execSync) is ended by its case limit and by --deadline-s, and nothing a thread started
 * outlives its pool. Real processes (`sleep` with a duration no other process uses), found with /proc.
 *
 * Run: node --import tsx --test test/child-processes.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CasePool } from '../src/execution/pool.js';
import type { CaseInput } from '../src/core/protocol.js';
import { tryLoadNativeBinding } from '../src/codec/native.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const cli = fileURLToPath(new URL('../bin/metaguard.js', import.meta.url));

/** Processes running `sleep <marker>` now (from /proc: no pgrep needed). */
function sleepers(marker: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('sleep') && argv[1] === marker) out.push(Number(pid));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** `sleep` processes that died and that no one collected, left as zombies of this process. */
function zombieSleeps(): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (stat.includes('(sleep)') && state === 'Z' && Number(ppid) === process.pid) out.push(Number(pid));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** The addon collects killed children (waitpid); without it they stay zombies, as documented. */
const collects = tryLoadNativeBinding()?.reapExited !== undefined;

const killAll = (marker: string) => {
  for (const pid of sleepers(marker)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
};

const waitFor = async (what: string, ok: () => boolean, ms = 5000) => {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('child processes started by case threads', { skip: process.platform !== 'linux' && 'needs /proc (Linux)' }, () => {
  let dir: string;
  // Durations no other process on the machine uses, so the tests find exactly their own sleeps.
  const marker = (tag: number) => `${60 + tag}.${process.pid}${Math.floor(Math.random() * 1e6)}`;
  const made: string[] = [];
  const write = (name: string, source: string) => {
    writeFileSync(join(dir, name), source);
    return pathToFileURL(join(dir, name)).href;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mg-children-'));
  });
  after(() => {
    for (const m of made) killAll(m);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a case blocked in execSync ends at its limit: E_TIMEOUT, the child killed, the pool goes on', async () => {
    const m = marker(1);
    made.push(m);
    // Negative first values block for a minute in a child process; the others sort.
    const impl = write('blocks.mjs', `import { execSync } from 'node:child_process';\nexport const solve = (xs) => { if (xs[0] < 0) execSync('sleep ${m}'); return xs.slice().sort((a, b) => a - b); };`);
    const pool = new CasePool({ threads: 1, timeoutMs: 300 });
    try {
      const cases: CaseInput[] = [[[-1, 2]], [[3, 1]], [[-2, 5]], [[4, 2]]].map((args, index) => ({ index, args }));
      const started = Date.now();
      const results = await pool.runChunk({ taskUrl: pathToFileURL(fixture('length-task.mjs')).href, implUrl: impl, seed: 1, cases });
      const ms = Date.now() - started;
      const codes = results.sort((a, b) => a.index - b.index).map((r) => r.error?.code ?? 'pass');
      assert.deepEqual(codes, ['E_TIMEOUT', 'pass', 'E_TIMEOUT', 'pass']);
      // Two limits and two thread starts; a minute per blocked case before.
      assert.ok(ms < 10_000, `the chunk took ${ms} ms`);
      await waitFor('the blocked children to be gone', () => sleepers(m).length === 0);
      if (collects) await waitFor('no zombie left', () => zombieSleeps().length === 0);
    } finally {
      await pool.destroy();
    }
  });

  it('what cases started in the background dies with the pool, not before', async () => {
    const m = marker(2);
    made.push(m);
    const impl = write('spawns.mjs', `import { spawn } from 'node:child_process';\nexport const solve = (xs) => { spawn('sleep', ['${m}'], { stdio: 'ignore' }); return xs.slice().sort((a, b) => a - b); };`);
    const pool = new CasePool({ threads: 2, timeoutMs: 5000 });
    const cases: CaseInput[] = Array.from({ length: 6 }, (_, index) => ({ index, args: [[index, 1]] }));
    const results = await Promise.all([pool.runChunk({ taskUrl: pathToFileURL(fixture('length-task.mjs')).href, implUrl: impl, seed: 1, cases: cases.slice(0, 3) }), pool.runChunk({ taskUrl: pathToFileURL(fixture('length-task.mjs')).href, implUrl: impl, seed: 1, cases: cases.slice(3) })]);
    assert.equal(results.flat().length, 6);
    // Still running while the pool lives (an implementation may keep a helper process across cases).
    await waitFor('the background children to start', () => sleepers(m).length >= 6);
    await pool.close();
    await waitFor('the background children to be gone', () => sleepers(m).length === 0);
    if (collects) await waitFor('no zombie left', () => zombieSleeps().length === 0);
  });

  it('what a thread started is killed when the thread dies, and a background job that holds the pipe of an execSync does not hang it', async () => {
    const m1 = marker(4);
    const m2 = marker(5);
    made.push(m1, m2);
    // Negative first values: start a child, then end the thread. Others: a shell's background job
    // (handed to init once the shell exits) keeps execSync's pipe open for a minute.
    const impl = write('orphans.mjs', `import { spawn, execSync } from 'node:child_process';\nexport const solve = (xs) => { if (xs[0] < 0) { spawn('sleep', ['${m1}'], { stdio: 'ignore' }); process.exit(3); } if (xs[0] === 7) execSync("sh -c 'sleep ${m2} &'"); return xs.slice().sort((a, b) => a - b); };`);
    const pool = new CasePool({ threads: 1, timeoutMs: 400 });
    try {
      const cases: CaseInput[] = [[[-1, 2]], [[7, 1]], [[4, 2]]].map((args, index) => ({ index, args }));
      const started = Date.now();
      const results = await pool.runChunk({ taskUrl: pathToFileURL(fixture('length-task.mjs')).href, implUrl: impl, seed: 1, cases });
      const ms = Date.now() - started;
      assert.deepEqual(results.sort((a, b) => a.index - b.index).map((r) => r.error?.code ?? 'pass'), ['E_CRASH', 'E_TIMEOUT', 'pass']);
      assert.ok(ms < 10_000, `the chunk took ${ms} ms`);
      await waitFor('the dead thread\'s child and the background job to be gone', () => sleepers(m1).length + sleepers(m2).length === 0);
      // The dead thread's child was this process's: collected, not left a zombie.
      if (collects) await waitFor('no zombie left', () => zombieSleeps().length === 0);
    } finally {
      await pool.destroy();
    }
  });

  it('--deadline-s holds against an implementation that blocks in execSync while it loads (exit 2, nothing left)', () => {
    const m = marker(3);
    made.push(m);
    const candidate = join(dir, 'blocks-at-import.mjs');
    writeFileSync(candidate, `import { execSync } from 'node:child_process';\nexecSync('sleep ${m}');\nexport const solve = (xs) => xs;`);
    const started = Date.now();
    const r = spawnSync(process.execPath, [cli, 'evaluate', '--task', fixture('length-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', candidate, '--n', '20', '--deadline-s', '1', '--report-dir', dir], { encoding: 'utf8', timeout: 50_000 });
    const ms = Date.now() - started;
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--deadline-s 1 passed/);
    // It waited for the child's minute before.
    assert.ok(ms < 20_000, `evaluate took ${ms} ms`);
    assert.deepEqual(sleepers(m), []);
  });
});
