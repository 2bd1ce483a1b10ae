/**
 * Task and implementation loading (src/task/load.ts): .mjs, .js and .ts modules, the validation
 * messages of broken ones, missing files, and .ts implementations running inside case threads.
 *
 * Run: node --import tsx --test test/spec-loading.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { MetaguardError } from '../src/errors.js';
import { CasePool } from '../src/execution/pool.js';
import { loadImplementation, loadTask, moduleUrl, validateImplementation, validateTask } from '../src/task/load.js';

const fixturesDir = fileURLToPath(new URL('./fixtures/', import.meta.url));
const fixture = (name: string) => join(fixturesDir, name);
const fixtureUrl = (name: string) => pathToFileURL(fixture(name)).href;

/** Asserts that `fn` throws (or rejects with) a MetaguardError with `code` whose message matches every pattern. */
async function rejectsWith(fn: () => unknown, code: string, ...patterns: RegExp[]): Promise<MetaguardError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a ${code} error, nothing was thrown`);
  assert.ok(caught instanceof MetaguardError, `expected a MetaguardError, got ${String(caught)}`);
  assert.equal(caught.code, code, `wrong code for: ${caught.message}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

describe('loadTask', () => {
  const reference = [
    [[1, 2, 3]],
    [[1, 2, 3, 4, 5]],
  ];

  for (const ext of ['mjs', 'js', 'ts']) {
    it(`loads length-task.${ext} and fills defaults`, async () => {
      const task = await loadTask(fixtureUrl(`length-task.${ext}`));
      assert.equal(task.name, 'length');
      assert.equal(typeof task.gen, 'function');
      assert.deepEqual(task.properties.map((p) => p.name), ['is_length']);
      assert.deepEqual(task.relations.map((r) => r.name), ['reverse']);
      const cases = task.gen(10, 2);
      assert.equal(cases.length, 10);
      // gen(…, seed 2): len = 1 + ((7i + 2) % 5) → case 0 has 3 values, case 1 has 5.
      assert.deepEqual(cases.slice(0, 2), reference);
      // Every 10th case starting at 3 has a negative first value (the fault fixtures' trigger).
      assert.equal((cases[3][0] as number[])[0], -1);
      assert.equal(task.properties[0].check(3, [1, 2, 3]), true);
      assert.equal(task.properties[0].check(2, [1, 2, 3]), false);
      assert.deepEqual(task.relations[0].transform([[1, 2, 3]], () => 0), [[3, 2, 1]]);
    });
  }

  it('the three task flavours generate identical cases', async () => {
    const [a, b, c] = await Promise.all(['mjs', 'js', 'ts'].map((ext) => loadTask(fixtureUrl(`length-task.${ext}`))));
    assert.deepEqual(a.gen(25, 7), b.gen(25, 7));
    assert.deepEqual(a.gen(25, 7), c.gen(25, 7));
  });

  it('a task without gen is MG_ERR_INVALID_TASK naming gen and the file', async () => {
    const err = await rejectsWith(() => loadTask(fixtureUrl('no-gen-task.mjs')), 'MG_ERR_INVALID_TASK', /\bgen\b/);
    assert.ok(err.message.includes(fixture('no-gen-task.mjs')), `message should name the file: ${err.message}`);
  });

  it('a task module that throws at import is MG_ERR_MODULE_LOAD naming the file', async () => {
    const err = await rejectsWith(() => loadTask(fixtureUrl('throws-at-import.mjs')), 'MG_ERR_MODULE_LOAD', /broken module/);
    assert.ok(err.message.includes('throws-at-import.mjs'), err.message);
  });
});

describe('validateTask messages', () => {
  const gen = (n: number) => Array.from({ length: n }, () => [1]);
  const table: Array<[string, unknown, RegExp]> = [
    ['not an object', 42, /default-export a task spec/],
    ['null', null, /default-export a task spec/],
    ['no name', { gen }, /`name`/],
    ['empty name', { name: '', gen }, /`name`/],
    ['no gen', { name: 'x' }, /`gen\(n, seed\)`/],
    ['gen not a function', { name: 'x', gen: [] }, /`gen\(n, seed\)`/],
    ['properties not an array', { name: 'x', gen, properties: {} }, /`properties` must be an array/],
    ['relations not an array', { name: 'x', gen, relations: 'r' }, /`relations` must be an array/],
    ['property without check', { name: 'x', gen, properties: [{ name: 'p' }] }, /property p needs a `check/],
    ['property with bad mode', { name: 'x', gen, properties: [{ name: 'p', check: () => true, mode: 'strict' }] }, /property p: mode must be/],
    ['relation without transform', { name: 'x', gen, relations: [{ name: 'r' }] }, /relation r needs a `transform/],
    ['relation with bad expect', { name: 'x', gen, relations: [{ name: 'r', transform: (a: unknown[]) => a, expect: 'same' }] }, /relation r: expect must be/],
    ['equivalence not a function', { name: 'x', gen, equivalence: true }, /`equivalence` must be a function/],
  ];
  for (const [label, value, pattern] of table) {
    it(`${label} → MG_ERR_INVALID_TASK`, async () => {
      const err = await rejectsWith(() => validateTask(value, 'where.mjs'), 'MG_ERR_INVALID_TASK', pattern);
      assert.match(err.message, /^task where\.mjs: /);
    });
  }

  it('a valid spec gets empty properties and relations by default', () => {
    const spec = validateTask({ name: 'x', gen }, 'where.mjs');
    assert.deepEqual(spec.properties, []);
    assert.deepEqual(spec.relations, []);
    assert.equal(spec.name, 'x');
  });
});

describe('loadImplementation', () => {
  for (const file of ['good.mjs', 'good.ts', 'good-default.js']) {
    it(`loads ${file}`, async () => {
      const solve = await loadImplementation(fixtureUrl(file));
      assert.equal(typeof solve, 'function');
      assert.equal(solve([1, 2, 3]), 3);
      assert.equal(solve([]), 0);
    });
  }

  it('an implementation without solve is MG_ERR_INVALID_IMPLEMENTATION naming the file', async () => {
    const err = await rejectsWith(() => loadImplementation(fixtureUrl('no-solve.mjs')), 'MG_ERR_INVALID_IMPLEMENTATION', /solve/);
    assert.ok(err.message.includes(fixture('no-solve.mjs')), err.message);
  });

  it('an implementation that throws at import is MG_ERR_MODULE_LOAD', async () => {
    await rejectsWith(() => loadImplementation(fixtureUrl('throws-at-import.mjs')), 'MG_ERR_MODULE_LOAD', /broken module/, /throws-at-import\.mjs/);
  });

  it('validateImplementation accepts a named solve, a default function and a default object with solve', () => {
    const named = validateImplementation({ solve: () => 1 }, 'x');
    const fn = validateImplementation({ default: () => 2 }, 'x');
    const obj = validateImplementation({ default: { k: 3, solve(this: { k: number }) { return this.k; } } }, 'x');
    assert.equal(named(), 1);
    assert.equal(fn(), 2);
    assert.equal(obj(), 3, 'a default object’s solve keeps its `this`');
  });

  it('validateImplementation prefers the named solve over a default function', () => {
    const solve = validateImplementation({ solve: () => 'named', default: () => 'default' }, 'x');
    assert.equal(solve(), 'named');
  });

  it('validateImplementation rejects modules without a usable solve', async () => {
    for (const mod of [{}, { solve: 42 }, { default: {} }, { default: { solve: 'no' } }]) {
      await rejectsWith(() => validateImplementation(mod, 'impl.mjs'), 'MG_ERR_INVALID_IMPLEMENTATION', /^implementation impl\.mjs: /);
    }
  });
});

describe('moduleUrl', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'mg-load-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('resolves an existing file to its file URL (from a path or a file URL)', () => {
    assert.equal(moduleUrl(fixture('good.mjs'), 'candidate'), fixtureUrl('good.mjs'));
    assert.equal(moduleUrl(fixtureUrl('good.ts'), 'candidate'), fixtureUrl('good.ts'));
  });

  it('a missing file is MG_ERR_FILE_NOT_FOUND naming the path and the role', async () => {
    const missing = join(tmp, 'does-not-exist.mjs');
    const err = await rejectsWith(() => moduleUrl(missing, 'baseline'), 'MG_ERR_FILE_NOT_FOUND', /baseline/);
    assert.ok(err.message.includes(missing), `message should name ${missing}: ${err.message}`);
    assert.equal(err.field, 'baseline');
  });

  it('a relative missing path is named as given', async () => {
    const err = await rejectsWith(() => moduleUrl('no/such/task.mjs', 'task'), 'MG_ERR_FILE_NOT_FOUND');
    assert.ok(err.message.includes('no/such/task.mjs'), err.message);
  });

  it('a directory is not a module file', async () => {
    await rejectsWith(() => moduleUrl(tmp, 'task'), 'MG_ERR_FILE_NOT_FOUND');
  });
});

describe('TypeScript modules inside case threads', () => {
  const pool = new CasePool({ threads: 1, timeoutMs: 2000, memMb: 128 });
  after(() => pool.destroy());

  for (const taskFile of ['length-task.ts', 'length-task.mjs']) {
    it(`good.ts passes every case of ${taskFile}`, async () => {
      const task = await loadTask(fixtureUrl(taskFile));
      const cases = task.gen(12, 0).map((args, index) => ({ index, args }));
      const results = await pool.runChunk({ taskUrl: fixtureUrl(taskFile), implUrl: fixtureUrl('good.ts'), seed: 1, cases });
      assert.deepEqual(results.map((r) => r.index).sort((a, b) => a - b), cases.map((c) => c.index));
      for (const r of results) {
        assert.equal(r.error, undefined, `case ${r.index}: ${r.error?.message}`);
        assert.equal(r.passed, true, `case ${r.index} should pass: ${JSON.stringify(r)}`);
      }
    });
  }

  it('checkModules reports a .ts pair as loadable and a broken implementation by its code', async () => {
    assert.equal(await pool.checkModules(fixtureUrl('length-task.ts'), fixtureUrl('good.ts')), null);
    const broken = await pool.checkModules(fixtureUrl('length-task.ts'), fixtureUrl('no-solve.mjs'));
    assert.equal(broken?.code, 'MG_ERR_INVALID_IMPLEMENTATION');
    const noGen = await pool.checkModules(fixtureUrl('no-gen-task.mjs'), fixtureUrl('good.ts'));
    assert.equal(noGen?.code, 'MG_ERR_INVALID_TASK');
  });
});
