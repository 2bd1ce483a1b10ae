/**
 * The schemas of what the Kafka backend reads back (src/queue/kafka/wire.ts), without a broker: batch
 * records become a batch or a claim to dead-letter naming the reason; result and dead-letter records
 * that fail are MalformedRecord (MG_ERR_MALFORMED_RECORD) naming the field. Hostile values (forged
 * ids, attempts, timestamps, roles) are never taken on their word.
 *
 * Run: node --import tsx --test test/kafka-wire.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KafkaMessage } from 'kafkajs';
import { MalformedRecord } from '../src/queue/records.js';
import { parseBatchRecord, parseDlqRecord, parseResultRecord } from '../src/queue/kafka/wire.js';

const msg = (headers: Record<string, string>, value: string | null = 'payload', key: string | null = null, offset = '7'): KafkaMessage => ({
  key: key === null ? null : Buffer.from(key),
  value: value === null ? null : Buffer.from(value),
  headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v)])),
  timestamp: '1000',
  attributes: 0,
  offset,
});

const malformed = (field: string) => (err: unknown) => err instanceof MalformedRecord && err.code === 'MG_ERR_MALFORMED_RECORD' && err.recordField === field;

describe('kafka wire: batch records', () => {
  const now = 1_000_000;
  const parse = (h: Record<string, string>, value?: string | null, key?: string | null) => parseBatchRecord('T', 2, msg(h, value, key), 60_000, now);
  const good = { id: 'job-1:baseline:0', job: 'job-1', role: 'baseline', priority: 'high', attempt: '2' };

  it('a well-formed record is a batch with its attempts and priority', () => {
    const p = parse(good);
    assert.ok(p.ok);
    assert.deepEqual({ ...p.batch, payload: Buffer.from(p.batch.payload).toString() }, { id: good.id, jobId: 'job-1', role: 'baseline', priority: 'high', payload: 'payload' });
    assert.equal(p.attempts, 2);
    assert.equal(p.notBefore, 0);
  });

  it('anything else is a claim to dead-letter, with the reason', () => {
    const bad = (h: Record<string, string>, value?: string | null, key?: string | null) => {
      const p = parse(h, value, key);
      assert.ok(!p.ok, JSON.stringify(h));
      return p;
    };
    assert.deepEqual(bad({}), { ok: false, id: 'T/2@7', error: { code: 'MG_ERR_MALFORMED_BATCH', message: 'malformed batch: no id header', retryable: false }, attempts: 0 });
    assert.match(bad({ ...good, id: '../../etc/passwd' }).error.message, /id "\.\.\/\.\.\/etc\/passwd" is not a batch id/);
    assert.equal(bad({ ...good, id: 'x y' }).id, 'T/2@7', 'a forged id is not used as the claim id');
    assert.equal(bad({ ...good, role: 'nobody' }).error.message, 'malformed batch: bad role');
    assert.equal(bad({ ...good, job: 'a b' }).error.message, 'malformed batch: job is not a job id');
    assert.equal(bad({ ...good, job: '' }).error.message, 'malformed batch: no job');
    assert.equal(bad(good, null).error.message, 'malformed batch: no payload');
    assert.match(bad({ ...good, attempt: '1e9' }).error.message, /attempt must be an integer in 0\.\.1000000/);
    assert.match(bad({ ...good, attempt: '-1' }).error.message, /attempt must be an integer/);
    assert.match(bad({ ...good, attempt: '99999999' }).error.message, /attempt must be an integer/);
    assert.match(bad({ ...good, not_before: 'soon' }).error.message, /not_before must be an integer/);
  });

  it('the id falls back to the key; a not_before beyond retry backoff is forged and ignored', () => {
    const { id: _id, ...noId } = good;
    const p = parse(noId, 'x', 'job-1:candidate:5');
    assert.ok(p.ok && p.batch.id === 'job-1:candidate:5');
    const soon = parse({ ...good, not_before: String(now + 5_000) });
    assert.ok(soon.ok && soon.notBefore === now + 5_000);
    const forever = parse({ ...good, not_before: String(now + 10 * 60_000) });
    assert.ok(forever.ok && forever.notBefore === 0, 'never parked in a buffer for ever');
    const unknownPriority = parse({ ...good, priority: 'urgent!' });
    assert.ok(unknownPriority.ok && unknownPriority.batch.priority === 'normal');
  });
});

describe('kafka wire: result records', () => {
  const parse = (h: Record<string, string>, value: string | null = 'frame', key: string | null = 'job-1') => parseResultRecord('T.results', 0, msg(h, value, key));

  it('results, dead and moved entries', () => {
    const r = parse({ kind: 'results', batch: 'job-1:b', role: 'candidate', worker: 'w1', mac: 'ab' });
    assert.equal(r.jobId, 'job-1');
    assert.ok(r.entry.kind === 'results' && r.entry.role === 'candidate' && r.entry.workerId === 'w1' && r.entry.mac === 'ab' && Buffer.from(r.entry.frame).toString() === 'frame');
    // A free-text reason (an older worker) is kept as the message of MG_ERR_UNCODED, capped; a coded one is data.
    assert.deepEqual(parse({ kind: 'dead', batch: 'job-1:b', reason: 'x'.repeat(3000) }, null).entry, { kind: 'dead', batchId: 'job-1:b', error: { code: 'MG_ERR_UNCODED', message: 'x'.repeat(2000), retryable: false } });
    assert.deepEqual(parse({ kind: 'dead', batch: 'job-1:b', reason: '{"code":"MG_ERR_HMAC","message":"bad mac","retryable":false}' }, null).entry, { kind: 'dead', batchId: 'job-1:b', error: { code: 'MG_ERR_HMAC', message: 'bad mac', retryable: false } });
    assert.deepEqual(parse({ kind: 'moved', batch: 'job-1:b', partition: '3', offset: '12345678901234' }, null).entry, { kind: 'moved', batchId: 'job-1:b', partition: 3, offset: 12345678901234n });
  });

  it('a record that fails names the field', () => {
    assert.throws(() => parse({ kind: 'results', batch: 'job-1:b', role: 'candidate' }, 'f', 'not a job'), malformed('key'));
    assert.throws(() => parse({ kind: 'party', batch: 'job-1:b' }), malformed('kind'));
    assert.throws(() => parse({ kind: 'results', batch: '' , role: 'baseline' }), malformed('batch'));
    assert.throws(() => parse({ kind: 'results', batch: 'job-1:b', role: 'nobody' }), malformed('role'));
    assert.throws(() => parse({ kind: 'results', batch: 'job-1:b', role: 'baseline' }, null), malformed('value'));
    assert.throws(() => parse({ kind: 'dead', batch: 'job-1:b', role: 'root' }, null), malformed('role'));
    assert.throws(() => parse({ kind: 'moved', batch: 'job-1:b', partition: 'x', offset: '1' }, null), malformed('partition'));
    assert.throws(() => parse({ kind: 'moved', batch: 'job-1:b', partition: '1', offset: '-1' }, null), malformed('offset'));
  });
});

describe('kafka wire: dead-letter records', () => {
  const parse = (h: Record<string, string>, key: string | null = null) => parseDlqRecord('T.dlq', 1, msg(h, 'v', key, '40'));

  it('dead letters, retried and purge markers', () => {
    const d = parse({ kind: 'dead', id: 'job-1:b', reason: 'r', attempts: '3', dead_at: '5000', job: 'job-1', role: 'baseline' });
    assert.ok(d.kind === 'dead');
    assert.deepEqual({ id: d.dead.id, attempts: d.dead.attempts, deadAt: d.dead.deadAt, jobId: d.dead.jobId, role: d.dead.role, offset: d.dead.offset, partition: d.dead.partition }, { id: 'job-1:b', attempts: 3, deadAt: 5000, jobId: 'job-1', role: 'baseline', offset: 40n, partition: 1 });
    assert.deepEqual(d.dropped, []);
    assert.deepEqual(parse({ kind: 'retried', id: 'job-1:b' }), { kind: 'retried', id: 'job-1:b' });
    assert.deepEqual(parse({ kind: 'purge' }), { kind: 'purge' });
    const poison = parse({ id: 'T/3@17', reason: 'malformed batch: no id header', attempts: '1' });
    assert.ok(poison.kind === 'dead' && poison.dead.id === 'T/3@17', 'the synthetic id of a poison record');
    const noTime = parse({ id: 'job-1:b', attempts: '1' });
    assert.ok(noTime.kind === 'dead' && noTime.dead.deadAt === 1000, 'dead_at defaults to the record time');
  });

  it('bad ids, counts and times skip the record; a bad job or role is left out and reported', () => {
    assert.throws(() => parse({ kind: 'dead', id: 'x y', attempts: '1' }), malformed('id'));
    assert.throws(() => parse({ kind: 'dead', id: 'job-1:b', attempts: 'abc' }), malformed('attempts'));
    assert.throws(() => parse({ kind: 'dead', id: 'job-1:b', attempts: '1', dead_at: '9e99' }), malformed('dead_at'));
    assert.throws(() => parse({ kind: 'zombie', id: 'job-1:b' }), malformed('kind'));
    const d = parse({ kind: 'dead', id: 'job-1:b', attempts: '1', job: '../x', role: 'admin' });
    assert.ok(d.kind === 'dead');
    assert.equal(d.dead.jobId, undefined);
    assert.equal(d.dead.role, undefined);
    assert.deepEqual(d.dropped.map((e) => e.recordField), ['job', 'role']);
  });
});
