/**
 * AdaptiveBatchSize (src/queue/batching.ts): starts at `initial` and doubles per batch handed out
 * until a batch has completed, then follows the measured time per case (shrinking at once, growing
 * by doubling), always within [min, max]; a fixed size never moves. The local dispatcher sizes its
 * chunks with it (chunkSizer).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdaptiveBatchSize } from '../src/queue/batching.ts';
import { chunkSizer, CHUNK_TARGET_MS, MAX_CHUNK } from '../src/dispatch/local.ts';

test('grows geometrically from the initial size to the maximum before any batch completes', () => {
  const b = new AdaptiveBatchSize({ initial: 1, min: 1, max: 100, adaptive: true });
  const sizes = Array.from({ length: 10 }, () => b.take());
  assert.deepStrictEqual(sizes, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
});

test('after a batch completes, the measured time per case sets the target; slow cases shrink it at once', () => {
  const changes: number[] = [];
  const b = new AdaptiveBatchSize({ initial: 10, min: 1, max: 1000, adaptive: true, targetBatchMs: 100, onChange: (s) => changes.push(s) });
  b.take();
  b.record(10, 10); // 1 ms per case: target 100
  assert.equal(b.size, 20); // no shrink: 20 < 100; growth happens through take()
  const sizes = Array.from({ length: 5 }, () => b.take());
  assert.deepStrictEqual(sizes, [20, 40, 80, 100, 100]);
  b.record(100, 5000); // 50 ms per case: the average moves to 15.7 ms, the target to 6
  assert.equal(b.size, 6);
  assert.equal(changes.at(-1), 6);
});

test('a fixed size (adaptive off) never moves, and sizes stay within [min, max]', () => {
  const fixed = new AdaptiveBatchSize({ initial: 25, min: 25, max: 25, adaptive: false });
  for (let i = 0; i < 5; i++) assert.equal(fixed.take(), 25);
  fixed.record(25, 1e6);
  assert.equal(fixed.size, 25);
  const b = new AdaptiveBatchSize({ initial: 1, min: 4, max: 8, adaptive: true });
  assert.equal(b.take(), 4);
  b.record(4, 1e9);
  assert.equal(b.size, 4);
});

// The local dispatcher's chunks (src/dispatch/local.ts) use the same controller with a 25 ms target.

test('local chunks: fast cases grow to the cap, slow cases go one at a time, a chunk never exceeds a quarter of a thread\'s share', () => {
  const fast = chunkSizer(1_000_000, 2, 1);
  assert.equal(fast.take(), 32);
  fast.record(32, 32 * 0.01); // 10 µs per case: 2,500 cases make 25 ms
  const sizes = Array.from({ length: 8 }, () => fast.take());
  assert.deepStrictEqual(sizes, [64, 128, 256, 512, 1024, 2048, 2500, 2500]);
  assert.equal(Math.round(CHUNK_TARGET_MS / 0.01), 2500);
  const faster = chunkSizer(1_000_000, 2, 1);
  faster.take();
  faster.record(32, 32 * 0.0001);
  for (let i = 0; i < 20; i++) assert.ok(faster.take() <= MAX_CHUNK);
  assert.equal(faster.size, MAX_CHUNK);

  const slow = chunkSizer(1_000_000, 2, 1);
  slow.take();
  slow.record(32, 32 * 200); // 200 ms per case
  assert.deepStrictEqual(Array.from({ length: 3 }, () => slow.take()), [1, 1, 1]);

  // A small run: at most n / (threads × 4) per chunk, so every thread gets several.
  const small = chunkSizer(100, 2, 1);
  assert.deepStrictEqual(Array.from({ length: 3 }, () => small.take()), [13, 13, 13]);
});

test('local chunks: a concurrent role keeps 8 × its lanes per chunk, and a fixed chunk size never moves', () => {
  const concurrent = chunkSizer(100_000, 2, 16);
  concurrent.take();
  concurrent.record(128, 128 * 500); // slow endpoint calls: still 128 per chunk, the lanes stay busy
  assert.equal(concurrent.take(), 128);
  const fixed = chunkSizer(100_000, 2, 1, 50);
  fixed.record(50, 50 * 1000);
  assert.deepStrictEqual([fixed.take(), fixed.take()], [50, 50]);
});
