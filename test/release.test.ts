/**
 * The release and redelivery decisions RabbitMQ and SQS share (src/queue/release.ts): pure logic, so
 * a unit test; the brokers' tests (test/broker-backends.test.ts, test/broker-faults.test.ts) show
 * each backend carrying them out.
 *
 * Run: node --import tsx --test test/release.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wireError } from '../src/errors.ts';
import { decideLost, decideRelease } from '../src/queue/release.ts';

describe('release decisions', () => {
  const config = { max_requeue_attempts: 2, enable_requeue: true };
  const retry = { delayMs: 500, countAttempt: true, error: wireError('MG_ERR_WORKER', 'disk full') };

  it('an entry that is not a batch is dead-lettered with the reason given', () => {
    assert.deepEqual(decideRelease(config, undefined, retry), { action: 'dead', error: { code: 'MG_ERR_WORKER', message: 'disk full', retryable: true } });
  });

  it('a drain hands back without counting, whatever the attempt', () => {
    assert.deepEqual(decideRelease(config, 3, { ...retry, countAttempt: false }), { action: 'hand-back' });
  });

  it('a counted retry requeues after its delay until max_requeue_attempts retries were spent', () => {
    assert.deepEqual(decideRelease(config, 1, retry), { action: 'requeue', delayMs: 500 });
    assert.deepEqual(decideRelease(config, 2, { ...retry, delayMs: -5 }), { action: 'requeue', delayMs: 0 });
    assert.deepEqual(decideRelease(config, 3, retry), { action: 'dead', error: { code: 'MG_ERR_WORKER', message: 'disk full (gave up after 3 attempts)', retryable: true } });
  });

  it('a lost batch is requeued until max_requeue_attempts + 1 deliveries, at once dead with enable_requeue false', () => {
    assert.deepEqual(decideLost(config, 2, 'lease expired'), { action: 'requeue', delayMs: 0 });
    assert.deepEqual(decideLost(config, 3, 'lease expired'), { action: 'dead', error: { code: 'MG_ERR_LEASE_EXPIRED', message: 'lease expired after 3 attempts', retryable: false } });
    assert.deepEqual(decideLost({ ...config, enable_requeue: false }, 1, 'lease lost'), { action: 'dead', error: { code: 'MG_ERR_LEASE_EXPIRED', message: 'lease lost after 1 attempts', retryable: false } });
  });
});
