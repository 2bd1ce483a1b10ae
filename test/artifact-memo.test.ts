/**
 * The in-memory artifact budget of the stream and topic backends (src/queue/artifact-memo.ts): the
 * most recently used bytes are kept up to the budget, and a bounded set of names read.
 *
 * Run: node --import tsx --test test/artifact-memo.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArtifactMemo, BoundedMap, BoundedSet, ENTRY_OVERHEAD_BYTES as E, onceAtATime } from '../src/queue/artifact-memo.ts';

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

describe('ArtifactMemo', () => {
  it('keeps the most recently used bytes within its budget', () => {
    const memo = new ArtifactMemo(1000 + 3 * E);
    memo.set('a', bytes(400, 1));
    memo.set('b', bytes(400, 2));
    assert.equal(memo.bytes, 800 + 2 * E);
    assert.equal(memo.get('a')?.[0], 1); // a is now the most recently used
    memo.set('c', bytes(400, 3)); // over budget: b, the least recently used, goes
    assert.equal(memo.get('b'), undefined);
    assert.equal(memo.get('a')?.[0], 1);
    assert.equal(memo.get('c')?.[0], 3);
    assert.equal(memo.bytes, 800 + 2 * E);
    assert.equal(memo.size, 2);
  });

  it('replaces an entry without counting it twice, and does not keep one larger than the budget', () => {
    const memo = new ArtifactMemo(1000 + E);
    memo.set('a', bytes(600));
    memo.set('a', bytes(700));
    assert.equal(memo.bytes, 700 + E);
    memo.set('huge', bytes(1001));
    assert.equal(memo.get('huge'), undefined);
    assert.equal(memo.bytes, 700 + E, 'a bigger-than-budget entry evicts nothing');
    memo.delete('a');
    assert.equal(memo.bytes, 0);
    assert.equal(memo.size, 0);
  });

  it('stays within budget over many entries, tiny ones too (the months-of-uptime case)', () => {
    const memo = new ArtifactMemo(64 * 1024);
    for (let i = 0; i < 10_000; i++) memo.set(`sha${i}`, bytes(1000 + (i % 7) * 100));
    assert.ok(memo.bytes <= 64 * 1024, `${memo.bytes} bytes held`);
    assert.ok(memo.get('sha9999'));
    assert.equal(memo.get('sha0'), undefined);
    const tiny = new ArtifactMemo(64 * 1024);
    for (let i = 0; i < 100_000; i++) tiny.set(`t${i}`, bytes(1));
    assert.ok(tiny.size <= (64 * 1024) / (1 + E), `${tiny.size} one-byte entries held`);
  });
});

describe('BoundedSet', () => {
  it('forgets the oldest names past its size; adding again makes a name young', () => {
    const s = new BoundedSet(3);
    for (const x of ['a', 'b', 'c']) s.add(x);
    s.add('a');
    s.add('d'); // b is the oldest now
    assert.equal(s.has('b'), false);
    assert.ok(s.has('a') && s.has('c') && s.has('d'));
    assert.equal(s.size, 3);
    s.delete('c');
    assert.equal(s.has('c'), false);
    assert.equal(s.size, 2);
  });
});

describe('BoundedMap', () => {
  it('forgets the oldest entry past its size; setting a key again makes it young; delete forgets one', () => {
    const m = new BoundedMap<number>(3);
    for (const [i, k] of ['a', 'b', 'c'].entries()) m.set(k, i);
    m.set('a', 10);
    m.set('d', 3); // b is the oldest now
    assert.equal(m.has('b'), false);
    assert.equal(m.get('b'), undefined);
    assert.deepEqual(['a', 'c', 'd'].map((k) => m.get(k)), [10, 2, 3]);
    assert.equal(m.size, 3);
    m.delete('a');
    assert.equal(m.has('a'), false);
    assert.equal(m.size, 2);
    // A million keys through a map of three stay three.
    for (let i = 0; i < 1_000_000; i++) m.set(`k${i}`, i);
    assert.equal(m.size, 3);
    assert.equal(m.get('k999999'), 999999);
  });
});

describe('onceAtATime', () => {
  it('runs once for callers that ask while it runs, and again after it settled (a failure too)', async () => {
    const inFlight = new Map<string, Promise<number>>();
    let runs = 0;
    const run = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 10));
      return runs;
    };
    const [a, b, c] = await Promise.all([onceAtATime(inFlight, 'x', run), onceAtATime(inFlight, 'x', run), onceAtATime(inFlight, 'y', run)]);
    assert.deepEqual([a, b, runs], [a, a, 2], 'x ran once for two callers, y once');
    assert.ok(c === 1 || c === 2);
    assert.equal(inFlight.size, 0);
    await assert.rejects(onceAtATime(inFlight, 'x', async () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(inFlight.size, 0, 'a failure is not kept');
    assert.equal(await onceAtATime(inFlight, 'x', run), 3);
  });
});
