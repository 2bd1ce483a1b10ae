/**
 * AdaptiveBatchSize (src/queue/batching.ts): starts at `initial` and doubles per batch handed out
 * until a batch has completed, then follows the measured time per case (shrinking at once, growing
 * by doubling), always within [min, max]; a fixed size never moves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdaptiveBatchSize } from '../src/queue/batching.ts';

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
