/**
 * The Kafka worker's offset-commit bookkeeping (src/queue/kafka/commit-tracker.ts), without a broker:
 * the commit point moves only over the contiguous finished prefix of a partition (at-least-once),
 * survives gaps in offsets, is per partition, never moves back, and forgets revoked partitions.
 *
 * Run: node --import tsx --test test/kafka-commit-tracker.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommitTracker } from '../src/queue/kafka/commit-tracker.js';

const all = new Set([0, 1, 2, 3]);

function tracker(partition: number, offsets: number[]): CommitTracker<string> {
  const t = new CommitTracker<string>();
  for (const o of offsets) t.receive(partition, BigInt(o), `r${partition}@${o}`);
  return t;
}

describe('kafka commit tracker', () => {
  it('nothing is due before a record finishes; the first record received is where the group resumed', () => {
    const t = tracker(0, [10, 11, 12]);
    assert.deepEqual(t.due(all), []);
    assert.equal(t.committedOffset(0), 10n);
    assert.equal(t.received(0, 12n), true);
    assert.equal(t.received(0, 13n), false);
    assert.equal(t.received(1, 0n), false, 'another partition');
  });

  it('commits only the contiguous finished prefix, never past an unfinished record', () => {
    const t = tracker(0, [10, 11, 12, 13]);
    assert.equal(t.finish(0, 12n), false, 'finishing a later record moves nothing');
    assert.equal(t.finish(0, 13n), false);
    assert.deepEqual(t.due(all), []);
    assert.equal(t.finish(0, 10n), true);
    assert.deepEqual(t.due(all), [{ partition: 0, offset: 11n }], 'stops at 11, still running');
    assert.equal(t.finish(0, 11n), true);
    assert.deepEqual(t.due(all), [{ partition: 0, offset: 14n }], 'past the last received record');
    assert.deepEqual(t.records(0), [], 'finished records behind the point are dropped');
  });

  it('gaps in offsets (compaction, transaction markers) do not hold the point back', () => {
    const t = tracker(2, [5, 9, 20]);
    t.finish(2, 5n);
    assert.deepEqual(t.due(all), [{ partition: 2, offset: 9n }]);
    t.finish(2, 9n);
    t.finish(2, 20n);
    assert.deepEqual(t.due(all), [{ partition: 2, offset: 21n }]);
  });

  it('partitions are independent, and only assigned ones are due', () => {
    const t = new CommitTracker<string>();
    t.receive(0, 0n, 'a');
    t.receive(1, 100n, 'b');
    t.receive(1, 101n, 'c');
    t.finish(0, 0n);
    t.finish(1, 101n);
    assert.deepEqual(t.due(all), [{ partition: 0, offset: 1n }]);
    t.finish(1, 100n);
    assert.deepEqual(t.due(new Set([1])), [{ partition: 1, offset: 102n }], 'partition 0 is not assigned here');
  });

  it('an acknowledged commit is not due again, a smaller one never moves it back, and later finishes are due', () => {
    const t = tracker(0, [0, 1, 2]);
    t.finish(0, 0n);
    t.finish(0, 1n);
    const due = t.due(all);
    assert.deepEqual(due, [{ partition: 0, offset: 2n }]);
    t.committed(due);
    assert.deepEqual(t.due(all), []);
    t.committed([{ partition: 0, offset: 1n }]);
    assert.equal(t.committedOffset(0), 2n, 'a late, smaller acknowledgement is ignored');
    t.finish(0, 2n);
    assert.deepEqual(t.due(all), [{ partition: 0, offset: 3n }]);
  });

  it('a commit that failed stays due (the next flush retries it)', () => {
    const t = tracker(3, [7]);
    t.finish(3, 7n);
    assert.deepEqual(t.due(all), [{ partition: 3, offset: 8n }]);
    // no committed() call: the broker refused
    assert.deepEqual(t.due(all), [{ partition: 3, offset: 8n }]);
  });

  it('revoke forgets partitions not kept and hands back their records; a re-assignment starts afresh', () => {
    const t = new CommitTracker<string>();
    t.receive(0, 0n, 'a');
    t.receive(0, 1n, 'b');
    t.receive(1, 0n, 'c');
    t.finish(0, 0n);
    const revoked = t.revoke(new Set([1]));
    assert.deepEqual(revoked, [{ partition: 0, records: ['b'] }]);
    assert.deepEqual(t.partitions(), [1]);
    assert.deepEqual(t.due(all), [], 'nothing of a revoked partition is committed by this worker');
    assert.equal(t.finish(0, 1n), false, 'finishing a revoked record does nothing');
    assert.equal(t.owns(0, 1n, 'b'), false);
    // The partition comes back: the group resumes from its committed offset (1 here).
    t.receive(0, 1n, 'b2');
    assert.equal(t.owns(0, 1n, 'b2'), true);
    assert.equal(t.owns(0, 1n, 'b'), false, 'the stale record of the old assignment is not this one');
    t.finish(0, 1n);
    assert.deepEqual(t.due(all), [{ partition: 0, offset: 2n }]);
  });

  it('offsets must come in ascending order per partition', () => {
    const t = tracker(0, [4, 5]);
    assert.throws(() => t.receive(0, 5n, 'again'), RangeError);
    assert.throws(() => t.receive(0, 3n, 'older'), RangeError);
    assert.equal(t.finish(0, 99n), false, 'an offset never received');
  });
});
