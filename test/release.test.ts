/**
 * The release and redelivery decisions RabbitMQ and SQS share (src/queue/release.ts): pure logic, so
 * a unit test; the brokers' tests (test/broker-backends.test.ts, test/broker-faults.test.ts) show
 * each backend carrying them out.
 *
 * Run: node --import tsx --test test/release.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideLost, decideRelease } from '../src/queue/release.ts';

describe('release decisions', () => {
  const config = { max_requeue_attempts: 2, enable_requeue: true };
  const retry = { delayMs: 500, countAttempt: true, reason: 'disk full' };

  it('an entry that is not a batch is dead-lettered with the reason given', () => {
    assert.deepEqual(decideRelease(config, undefined, retry), { action: 'dead', reason: 'disk full' });
  });

  it('a drain hands back without counting, whatever the attempt', () => {
    assert.deepEqual(decideRelease(config, 3, { ...retry, countAttempt: false }), { action: 'hand-back' });
  });

  it('a counted retry requeues after its delay until max_requeue_attempts retries were spent', () => {
    assert.deepEqual(decideRelease(config, 1, retry), { action: 'requeue', delayMs: 500 });
    assert.deepEqual(decideRelease(config, 2, { ...retry, delayMs: -5 }), { action: 'requeue', delayMs: 0 });
    assert.deepEqual(decideRelease(config, 3, retry), { action: 'dead', reason: 'disk full (gave up after 3 attempts)' });
  });

  it('a lost batch is requeued until max_requeue_attempts + 1 deliveries, at once dead with enable_requeue false', () => {
    assert.deepEqual(decideLost(config, 2, 'lease expired'), { action: 'requeue', delayMs: 0 });
    assert.deepEqual(decideLost(config, 3, 'lease expired'), { action: 'dead', reason: 'lease expired after 3 attempts' });
    assert.deepEqual(decideLost({ ...config, enable_requeue: false }, 1, 'lease lost'), { action: 'dead', reason: 'lease lost after 1 attempts' });
  });
});
