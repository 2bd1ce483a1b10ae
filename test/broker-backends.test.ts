/**
 * What the RabbitMQ and SQS backends do beyond the shared conformance suite, against real brokers
 * (rabbitmq-server and fauxqs, started here):
 *   - a batch whose holders keep dying is dead-lettered once it was delivered max_requeue_attempts + 1
 *     times, with the reason, and its job is told (attempts survive crashes);
 *   - SQS: a frame over 256 KiB travels through S3 (key + sha256 in the message) and a tampered object
 *     is refused; without s3_bucket the error names that key; queue_name creates the queue and its DLQ;
 *   - `metaguard queue stats` and `queue dlq list` work on both;
 *   - the config keys as the guides write them, and the ones that contradict each other.
 *
 * Run: node --import tsx --test test/broker-backends.test.ts
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { validateQueueConfig } from '../src/options/queue.ts';
import type { Backend, BatchMessage, JobManifest } from '../src/queue/types.ts';
import { startRabbit, type RabbitServer } from './helpers/rabbitmq-server.ts';
import { startFauxqs, type Fauxqs } from './helpers/fauxqs-server.ts';
import { runCli } from './helpers/run-cli.ts';

const manifest = (jobId: string): JobManifest => ({
  jobId,
  task: { sha256: 'a'.repeat(64), ext: '.mjs', name: 'task.mjs' },
  implementations: { baseline: { sha256: 'b'.repeat(64), ext: '.mjs', name: 'b.mjs' }, candidate: { sha256: 'c'.repeat(64), ext: '.mjs', name: 'c.mjs' } },
  seed: 1,
  timeoutMs: 1000,
  memMb: 64,
  createdAt: Date.now(),
});

const batch = (jobId: string, payload: Uint8Array = Uint8Array.from([1, 2, 3])): BatchMessage => ({ id: `${jobId}:b${randomUUID().slice(0, 6)}`, jobId, role: 'candidate', priority: 'normal', payload });

async function claimOne(b: Backend, worker: string, leaseMs: number, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const [c] = await b.claimBatches(worker, 1, leaseMs);
    if (c) return c;
    if (Date.now() > end) return undefined;
    await sleep(100);
  }
}

async function readEntries(b: Backend, jobId: string, count: number) {
  const out = [];
  let cursor = '0';
  const end = Date.now() + 10_000;
  while (out.length < count && Date.now() < end) {
    const r = await b.readResults(jobId, cursor, 250);
    cursor = r.cursor;
    out.push(...r.entries);
  }
  return out;
}

describe('rabbitmq backend', () => {
  let server: RabbitServer;
  before(async () => {
    server = await startRabbit();
  });
  after(async () => {
    await server?.stop();
  });
  const config = (extra: object = {}) => validateQueueConfig({ backend: 'rabbitmq', url: server.url, queue: `t_${randomUUID().slice(0, 8)}`, ...extra });

  it('a batch whose holders keep dying is dead-lettered after max_requeue_attempts, with the reason', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const c = config({ max_requeue_attempts: 1 });
    const coord = new RabbitBackend(c);
    await coord.connect();
    const job = `job-${randomUUID()}`;
    await coord.putJob(manifest(job));
    const sent = batch(job);
    await coord.enqueue([sent]);
    // Two workers in turn claim it and "die": their connections close with the batch unacknowledged.
    for (const expected of [1, 2]) {
      const w = new RabbitBackend(c);
      await w.connect();
      const claim = await claimOne(w, `w${expected}`, 60_000);
      assert.ok(claim?.ok, `delivery ${expected}: ${JSON.stringify(claim)}`);
      assert.equal(claim.batch.attempt, expected);
      await w.close();
    }
    // The third delivery is past the limit: the next claimer dead-letters it instead of running it.
    const w3 = new RabbitBackend(c);
    await w3.connect();
    assert.equal(await claimOne(w3, 'w3', 60_000, 1500), undefined);
    await w3.close();
    const dead = await coord.listDead();
    assert.equal(dead.length, 1);
    assert.equal(dead[0].id, sent.id);
    assert.match(dead[0].reason, /lease lost after 2 attempts/);
    const entries = await readEntries(coord, job, 1);
    assert.deepEqual(entries.map((e) => e.kind), ['dead']);
    await coord.close();
  });

  it('queue stats and dlq list through the CLI', async () => {
    const c = { backend: 'rabbitmq', url: server.url, queue: `t_${randomUUID().slice(0, 8)}` };
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const b = new RabbitBackend(validateQueueConfig(c));
    await b.connect();
    await b.enqueue([batch('j1'), { ...batch('j1'), priority: 'high' }]);
    const [claim] = await b.claimBatches('w', 1, 1000);
    assert.ok(claim);
    await b.deadLetter('w', claim.ok ? claim.batch.id : claim.id, 'poison pill');
    await b.close();
    const stats = await runCli(['queue', 'stats', '--queue-config', JSON.stringify(c)]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /rabbitmq/);
    assert.match(stats.stdout, /normal=1/);
    assert.match(stats.stdout, /dead-lettered 1/);
    const list = await runCli(['queue', 'dlq', 'list', '--json', '--queue-config', JSON.stringify(c)]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /poison pill/);
  });

  it('config: url or connection, not both; amqp URLs only; queue_name names the queue', () => {
    assert.throws(() => validateQueueConfig({ backend: 'rabbitmq', url: 'amqp://h', connection: { host: 'h' } }), /queue-config\.url: give url or connection, not both/);
    assert.throws(() => validateQueueConfig({ backend: 'rabbitmq', url: 'redis://h' }), /queue-config\.url: must be an amqp/);
    assert.throws(() => validateQueueConfig({ backend: 'rabbitmq', connection: { host: 'h', db: 1 } }), /connection\.db: unknown key/);
    const c = validateQueueConfig({ backend: 'rabbitmq', connection: { host: 'rabbit', virtual_host: '/mg', username: 'u', password: 'p', ssl: true }, queue_name: 'tasks', exchange: 'x', routing_key: 'task', durable: false, prefetch_count: 5, heartbeat: 30 });
    assert.equal(c.queue, 'tasks');
    assert.equal(c.connection?.port, 5671);
    assert.equal(c.connection?.virtual_host, '/mg');
    assert.throws(() => validateQueueConfig({ backend: 'redis', exchange: 'x' }), /queue-config\.exchange: is a rabbitmq key, but backend is redis/);
  });
});

describe('sqs backend (fauxqs)', () => {
  let server: Fauxqs;
  before(async () => {
    server = await startFauxqs();
  });
  after(async () => {
    await server?.stop();
  });
  const raw = (extra: object = {}) => ({ backend: 'sqs', endpoint_url: server.endpoint, region: 'us-east-1', aws_access_key_id: 'test', aws_secret_access_key: 'test', queue_name: `t${randomUUID().slice(0, 8)}`, ...extra });
  const backend = async (extra: object = {}) => {
    const { SqsBackend } = await import('../src/queue/sqs/backend.ts');
    const b = new SqsBackend(validateQueueConfig(raw(extra)));
    await b.connect();
    return b;
  };
  const client = async () => {
    const sqs = await import('@aws-sdk/client-sqs');
    return { sqs, client: new sqs.SQSClient({ endpoint: server.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }) };
  };

  it('queue_name creates the queue and its DLQ, with a redrive policy as a backstop', async () => {
    const b = await backend({ max_requeue_attempts: 2 });
    const { sqs, client: c } = await client();
    const url = (await c.send(new sqs.GetQueueUrlCommand({ QueueName: b.names().main }))).QueueUrl!;
    const attrs = (await c.send(new sqs.GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['RedrivePolicy'] }))).Attributes!;
    const policy = JSON.parse(attrs.RedrivePolicy!);
    assert.equal(policy.maxReceiveCount, 4);
    assert.match(policy.deadLetterTargetArn, new RegExp(`${b.names().dlq}$`));
    c.destroy();
    await b.close();
  });

  it('a batch whose holders keep dying is dead-lettered after max_requeue_attempts, with the reason', async () => {
    const coord = await backend({ max_requeue_attempts: 1 });
    const job = `job-${randomUUID()}`;
    await coord.putJob(manifest(job));
    const sent = batch(job);
    await coord.enqueue([sent]);
    // Each worker claims it with a 1 s visibility timeout and never renews nor completes it: it "died".
    const worker = () => backend({ queue_name: coord.names().main, max_requeue_attempts: 1 });
    const w1 = await worker();
    const first = await claimOne(w1, 'w1', 1000);
    assert.ok(first?.ok && first.batch.attempt === 1);
    await sleep(1100);
    assert.deepEqual(await w1.renewLeases('w1', [sent.id], 1000), [sent.id], 'an unrenewed lease is reported lost');
    await w1.close();
    const w2 = await worker();
    const second = await claimOne(w2, 'w2', 1000, 5000);
    assert.ok(second?.ok && second.batch.attempt === 2, JSON.stringify(second));
    await w2.close();
    await sleep(1100);
    const w3 = await worker();
    assert.equal(await claimOne(w3, 'w3', 1000, 3000), undefined, 'the third delivery is dead-lettered, not run');
    await w3.close();
    const dead = await coord.listDead();
    assert.equal(dead.length, 1);
    assert.equal(dead[0].id, sent.id);
    assert.match(dead[0].reason, /lease expired after 2 attempts/);
    assert.deepEqual((await readEntries(coord, job, 1)).map((e) => e.kind), ['dead']);
    await coord.close();
  });

  it('a frame over 256 KiB goes through S3 (key and sha256 in the message); without s3_bucket the error names the key', async () => {
    const big = Uint8Array.from({ length: 300 * 1024 }, (_, i) => (i * 131 + 7) & 0xff);
    const noBucket = await backend();
    await assert.rejects(noBucket.enqueue([batch('j', big)]), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_INVALID_OPTION' && /queue-config\.s3_bucket: is needed/.test(err.message ?? ''));
    await noBucket.close();

    const { S3Client, CreateBucketCommand, PutObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const s3 = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    const bucket = `mg-${randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const b = await backend({ s3_bucket: bucket });
    const job = `job-${randomUUID()}`;
    await b.putJob(manifest(job));
    const sent = batch(job, big);
    await b.enqueue([sent]);
    const claim = await claimOne(b, 'w1', 30_000);
    assert.ok(claim?.ok);
    assert.deepEqual(Buffer.from(claim.batch.payload).equals(Buffer.from(big)), true, 'payload byte-exact through S3');
    assert.equal(await b.completeBatch('w1', claim.batch, big), true);
    const [entry] = await readEntries(b, job, 1);
    assert.ok(entry?.kind === 'results' && Buffer.from(entry.frame).equals(Buffer.from(big)), 'results over 256 KiB through S3 too');
    const keys = (await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents?.map((o) => o.Key) ?? [];
    assert.ok(keys.length >= 1, `objects in the bucket: ${keys.join(', ')}`);

    // Tampering with the object: the claim is refused as a codec error, to be dead-lettered.
    const again = batch(job, Uint8Array.from(big).reverse());
    await b.enqueue([again]);
    const key = (await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents!.map((o) => o.Key!).find((k) => !keys.includes(k))!;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('not the frame') }));
    const bad = await claimOne(b, 'w1', 30_000);
    assert.ok(bad && !bad.ok, JSON.stringify(bad));
    assert.match(bad.reason, /MG_ERR_CODEC.*does not match its sha256/);
    s3.destroy();
    await b.close();
  });

  it('queue stats and dlq list through the CLI', async () => {
    const c = raw();
    const b = await backend({ queue_name: c.queue_name });
    await b.enqueue([batch('j1'), batch('j1')]);
    const [claim] = await b.claimBatches('w', 1, 5000);
    assert.ok(claim);
    await b.deadLetter('w', claim.ok ? claim.batch.id : claim.id, 'poison pill');
    await b.close();
    const stats = await runCli(['queue', 'stats', '--queue-config', JSON.stringify(c)]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /sqs/);
    assert.match(stats.stdout, /normal=1/);
    assert.match(stats.stdout, /dead-lettered 1/);
    const list = await runCli(['queue', 'dlq', 'list', '--json', '--queue-config', JSON.stringify(c)]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /poison pill/);
    assert.doesNotMatch(stats.stdout + stats.stderr + list.stdout + list.stderr, /aws_secret|"test"/, 'credentials are never printed');
  });

  it('config: queue names SQS accepts, visibility_timeout is the lease, credentials go in pairs', () => {
    const base = { backend: 'sqs', region: 'eu-west-1' };
    assert.throws(() => validateQueueConfig({ ...base, queue_name: 'jobs.fifo' }), /queue-config\.queue_name: an SQS queue name is 1-50 letters/);
    assert.throws(() => validateQueueConfig({ ...base, queue_url: 'https://sqs.eu-west-1.amazonaws.com/1/x.fifo' }), /queue-config\.queue_url: must be an http\(s\) SQS queue URL/);
    assert.throws(() => validateQueueConfig({ ...base, aws_access_key_id: 'AKIA' }), /queue-config\.aws_secret_access_key: aws_access_key_id and aws_secret_access_key go together/);
    assert.throws(() => validateQueueConfig({ ...base, visibility_timeout: 30, lease_seconds: 60 }), /queue-config\.visibility_timeout: is the lease on SQS/);
    assert.throws(() => validateQueueConfig({ ...base, long_polling_seconds: 21 }), /long_polling_seconds/);
    const c = validateQueueConfig({ ...base, queue_url: 'https://sqs.eu-west-1.amazonaws.com/123456789012/metaguard-tasks', visibility_timeout: 90, long_polling_seconds: 20, max_batch_size: 10 });
    assert.equal(c.lease_seconds, 90);
    assert.throws(() => validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', s3_bucket: 'b' }), /queue-config\.s3_bucket: is a sqs key, but backend is kafka/);
  });
});
