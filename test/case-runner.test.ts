/**
 * The case runner's verdict on each case (src/case-runner/case-thread.ts), through a real case pool:
 * hard and soft properties, each relation kind ('equal', 'not_equal', 'properties_hold'), a task's
 * own equivalence, and the same results whether the cases cross to the thread as values or serialized
 * (`payloads`, decoded there in one pass, or case by case when that pass fails).
 *
 * Run: node --import tsx --test test/case-runner.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CasePool } from '../src/execution/pool.js';
import { pack } from '../src/codec/serialize.js';
import type { CaseInput, CaseResult } from '../src/core/protocol.js';

// Cases are [xs]; the implementations below say what they return.
const TASK = `
export default {
  name: 'runner_kinds',
  gen: (n) => Array.from({ length: n }, (_, i) => [[i % 5, 3, 1]]),
  properties: [
    { name: 'ascending', check: (out) => Array.isArray(out) && out.every((x, i) => i === 0 || out[i - 1] <= x) },
    { name: 'short', mode: 'soft', check: (out) => out.length < 3 },
    { name: 'same_length', check: (out, xs) => out.length === xs.length },
  ],
  relations: [
    { name: 'reversed_same', transform: ([xs]) => [xs.slice().reverse()] },
    { name: 'appended_differs', expect: 'not_equal', transform: ([xs]) => [[...xs, 9]] },
    { name: 'doubled_holds', expect: 'properties_hold', transform: ([xs]) => [xs.map((x) => x * 2)] },
  ],
};`;
// A transform whose output is not an array: the checks get it spread, as they always did.
const TASK_SET = TASK.replace("transform: ([xs]) => [xs.map((x) => x * 2)] }", "transform: ([xs]) => new Set([xs.map((x) => x * 2)]) }");
// Equal when the sums are equal: an output permuted the same way passes 'reversed_same' even unsorted.
const TASK_EQUIV = TASK.replace("name: 'runner_kinds',", "name: 'runner_equiv', equivalence: (a, b) => a.reduce((s, x) => s + x, 0) === b.reduce((s, x) => s + x, 0),");
const IMPLS: Record<string, string> = {
  // Right: every hard property and relation holds; 'short' (soft) fails on 3 elements.
  'sort.mjs': 'export const solve = (xs) => xs.slice().sort((a, b) => a - b);',
  // Returns its input as it came: not ascending; 'reversed_same' fails (unequal outputs); doubled inputs stay unsorted.
  'identity.mjs': 'export const solve = (xs) => xs;',
  // Always the same array: 'appended_differs' fails (equal outputs), 'same_length' fails on the appended input only.
  'constant.mjs': 'export const solve = () => [1, 2, 3];',
  // Throws on the follow-up inputs (the reversed one starts with 1; [.., 9] ends with 9): relations fail, the case does not throw.
  'picky.mjs': 'export const solve = (xs) => { if (xs[0] === 1 || xs.at(-1) === 9) throw new Error("no"); return xs.slice().sort((a, b) => a - b); };',
  // Mutates its input: the properties and the other relations still see the case's own arguments.
  'in-place.mjs': 'export const solve = (xs) => { xs.sort((a, b) => a - b); xs.push(-1); xs.pop(); return xs; };',
};

describe('the case runner: properties, relations, equivalence', () => {
  let dir: string;
  let pool: CasePool;
  const url = (name: string) => pathToFileURL(join(dir, name)).href;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mg-runner-'));
    writeFileSync(join(dir, 'task.mjs'), TASK);
    writeFileSync(join(dir, 'task-equiv.mjs'), TASK_EQUIV);
    writeFileSync(join(dir, 'task-set.mjs'), TASK_SET);
    for (const [name, src] of Object.entries(IMPLS)) writeFileSync(join(dir, name), src);
    pool = new CasePool({ threads: 1, timeoutMs: 5000, memMb: 128 });
  });
  after(async () => {
    await pool.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: CaseInput[] = Array.from({ length: 5 }, (_, i) => ({ index: i, args: [[i + 4, 3, 1]] }));
  const run = async (impl: string, task = 'task.mjs', payloads?: Uint8Array[]): Promise<CaseResult[]> => {
    const results = await pool.runChunk({ taskUrl: url(task), implUrl: url(impl), seed: 3, cases, ...(payloads ? { payloads } : {}) });
    return results.sort((a, b) => a.index - b.index);
  };
  const verdicts = (results: CaseResult[]) => results.map((r) => ({ passed: r.passed, prop: r.propViolations ?? [], soft: r.softViolations ?? [], mr: r.mrViolations ?? [], error: r.error?.code }));

  it('a right implementation passes; a soft property is reported and does not fail the case', async () => {
    for (const r of verdicts(await run('sort.mjs'))) assert.deepEqual(r, { passed: true, prop: [], soft: ['short'], mr: [], error: undefined });
  });

  it('each relation kind and hard property fails where it should', async () => {
    const identity = verdicts(await run('identity.mjs'));
    // [i + 4, 3, 1] is never ascending; reversed it gives another output; doubled it is not ascending either.
    for (const r of identity) assert.deepEqual(r, { passed: false, prop: ['ascending'], soft: ['short'], mr: ['reversed_same', 'doubled_holds'], error: undefined });
    const constant = verdicts(await run('constant.mjs'));
    // [1, 2, 3] for [x, y, z, 9] too: equal outputs, and the wrong length for the doubled input is fine (3 = 3).
    for (const r of constant) assert.deepEqual(r, { passed: false, prop: [], soft: ['short'], mr: ['appended_differs'], error: undefined });
    const picky = verdicts(await run('picky.mjs'));
    // Throws on reversed ([1, 3, i + 4]) and appended inputs: those relations fail; doubled holds.
    for (const r of picky) assert.deepEqual(r, { passed: false, prop: [], soft: ['short'], mr: ['reversed_same', 'appended_differs'], error: undefined });
  });

  it('an implementation that mutates its input changes nothing the checks see', async () => {
    for (const r of verdicts(await run('in-place.mjs'))) assert.deepEqual(r, { passed: true, prop: [], soft: ['short'], mr: [], error: undefined });
  });

  it("a task's own equivalence replaces deep equality", async () => {
    // identity: reversed input, reversed output: the sums are equal, so only the properties fail.
    for (const r of verdicts(await run('identity.mjs', 'task-equiv.mjs'))) assert.deepEqual(r, { passed: false, prop: ['ascending'], soft: ['short'], mr: ['doubled_holds'], error: undefined });
  });

  it("a relation whose transform returns a Set (not an array): its implementation and its checks get the Set's values", async () => {
    assert.notEqual(TASK_SET, TASK);
    for (const r of verdicts(await run('sort.mjs', 'task-set.mjs'))) assert.deepEqual(r, { passed: true, prop: [], soft: ['short'], mr: [], error: undefined });
  });

  it('serialized cases give the same results, decoded in one pass or, past a bad one, case by case', async () => {
    const payloads = cases.map((c) => pack(c));
    for (const impl of Object.keys(IMPLS)) assert.deepEqual(verdicts(await run(impl, 'task.mjs', payloads)), verdicts(await run(impl)), impl);
    // A payload that is not a case runs with no arguments (and fails); the others run as sent.
    const bad = payloads.slice();
    bad[2] = Uint8Array.from([0xc1]);
    const results = verdicts(await run('sort.mjs', 'task.mjs', bad));
    assert.deepEqual(results.map((r) => r.passed), [true, true, false, true, true]);
  });

  it("every chunk reports its thread's heap, however the thread's messages and its answer interleave", async () => {
    // metaguard_thread_heap_used_bytes comes from this: a figure lost for a chunk leaves the series
    // unset (seen on Node 22, where piscina's answer could overtake a message posted after the results).
    const heaps: Array<[number, number]> = [];
    for (let i = 0; i < 200; i++) {
      const one = [cases[i % cases.length]];
      await pool.runChunk({ taskUrl: url('task.mjs'), implUrl: url('sort.mjs'), seed: 3, cases: one }, { onHeap: (bytes, slot) => heaps.push([bytes, slot]) });
    }
    assert.equal(heaps.length, 200);
    assert.ok(heaps.every(([bytes, slot]) => bytes > 0 && slot === 0));
  });
});
