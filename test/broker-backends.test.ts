/**
 * What the RabbitMQ and SQS backends do beyond the shared conformance suite, against real brokers
 * (rabbitmq-server and fauxqs, started here):
 *   - a batch whose holders keep dying is dead-lettered once it was delivered max_requeue_attempts + 1
 *     times, with the reason, and its job is told (attempts survive crashes);
 *   - SQS: a frame over 256 KiB travels through S3 (key + sha256 in the message) and a tampered object
 *     is refused; without s3_bucket the error names that key; queue_name creates the queue and its DLQ;
 *   - RabbitMQ leases: a long batch whose lease is renewed is not redelivered; one whose holder stops
 *     renewing (alive, its connection open) goes to another worker with attempt 2, and past
 *     max_requeue_attempts to the dead-letter queue;
 *   - RabbitMQ over TLS (amqps://, a node listening with certificates made by openssl here): with the
 *     CA it works, without it the connection is refused naming the certificate;
 *   - withdrawJob (what the coordinator does on SIGINT/SIGTERM) across processes: the worker holding
 *     a batch of the job loses it, the job's other batches are dropped, nothing is dead-lettered;
 *   - enqueue is idempotent, and a batch sent again after its entry was read goes out again;
 *   - records read back are checked: forged results entries, heartbeats, manifests and batch headers
 *     are skipped with malformed_record (or dead-lettered, for a batch), never trusted;
 *   - `metaguard queue stats` and `queue dlq list|retry|purge` work on both;
 *   - the config keys as the guides write them, and the ones that contradict each other.
 *
 * Run: node --import tsx --test test/broker-backends.test.ts
 */
import assert from 'node:assert/strict';
import { wireError } from '../src/errors.ts';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { validateQueueConfig } from '../src/options/queue.ts';
import { createLogger, type Logger } from '../src/observe/log.ts';
import type { Backend, BatchMessage, JobManifest } from '../src/queue/types.ts';
import { makeTlsFiles, startRabbit, type RabbitServer } from './helpers/rabbitmq-server.ts';
import { startFauxqs, type Fauxqs } from './helpers/fauxqs-server.ts';
import { runCli } from './helpers/run-cli.ts';
import { until } from './helpers/poll.ts';

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

/** A logger whose JSON lines are kept, for asserting on `malformed_record` events. */
function capture(): { logger: Logger; events(name: string): Record<string, unknown>[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ json: true, stream, level: 'debug' }), events: (name) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === name) };
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
    assert.equal(dead[0].error.code, 'MG_ERR_LEASE_EXPIRED');
    assert.match(dead[0].error.message, /lease lost after 2 attempts/);
    const entries = await readEntries(coord, job, 1);
    assert.deepEqual(entries.map((e) => e.kind), ['dead']);
    await coord.close();
  });

  it('processes creating a queue at the same moment all connect and write to its streams', async () => {
    // RabbitMQ answers the declaration of a stream another client has just created before the stream
    // takes writes; a heartbeat or manifest written then made the broker close the connection (541
    // INTERNAL_ERROR), and a worker starting beside another one died at its first heartbeat.
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const log = capture();
    for (let round = 0; round < 8; round++) {
      const c = config();
      const backends = [0, 1, 2].map(() => new RabbitBackend(c, { logger: log.logger }));
      try {
        await Promise.all(
          backends.map(async (b, i) => {
            await b.connect();
            await b.heartbeat({ workerId: `w${i}`, host: 'h', pid: i, threads: 1, startedAt: Date.now(), casesCompleted: 0, state: 'running' });
            await b.putJob(manifest(`job-${round}-${i}`));
          }),
        );
        const seen = await backends[0].activeWorkers();
        assert.deepEqual(seen.map((w) => w.workerId).sort(), ['w0', 'w1', 'w2'], `round ${round}`);
        assert.ok(await backends[1].getJob(`job-${round}-2`), `round ${round}: a manifest written by another process is read`);
      } finally {
        await Promise.all(backends.map((b) => b.close()));
      }
    }
  });

  it('a stream reader keeps only the markers its own catch-ups wait for (others\' markers are not kept: no growth over months)', async () => {
    const { RabbitConnection } = await import('../src/queue/rabbitmq/connection.ts');
    const { StreamView } = await import('../src/queue/rabbitmq/stream-view.ts');
    const conn = new RabbitConnection(config(), undefined);
    try {
      await conn.ensure();
      const host = { channel: (prefetch: number) => conn.channel(prefetch, 'test reader'), currentGen: () => conn.connGen, publishTo: (q: string, content: Buffer, options: object) => conn.publish('', q, content, options), logger: undefined };
      const records: unknown[] = [];
      const reader = new StreamView(conn.names.jobs, host, undefined, (msg) => records.push(msg));
      const other = new StreamView(conn.names.jobs, host, undefined, () => {});
      assert.ok(await reader.catchUp(5000));
      // Another process catching up 50 times appends 50 markers that this reader reads too.
      for (let i = 0; i < 50; i++) assert.ok(await other.catchUp(5000));
      assert.ok(await reader.catchUp(5000));
      assert.equal(reader.markersHeld, 0);
      assert.equal(other.markersHeld, 0);
      assert.equal(records.length, 0, 'markers never reach the record handler');
      reader.stop();
      other.stop();
    } finally {
      await conn.shutdown();
    }
  });

  it('artifacts past the in-memory budget are let go and read again from the stream when needed', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const { sha256 } = await import('../src/util/hash.ts');
    const c = config();
    const log = capture();
    const coord = new RabbitBackend(c);
    // A worker whose memory holds at most 1.5 MiB of artifacts: two of 600 KB fit, three do not.
    const worker = new RabbitBackend(c, { logger: log.logger, artifactMemoBytes: 1.5 * 1024 * 1024 });
    try {
      const blobs = [1, 2, 3].map((k) => Uint8Array.from({ length: 600 * 1024 }, (_, i) => (i * k + (i >> 8)) & 0xff));
      const shas = blobs.map((b) => sha256(b));
      await coord.connect();
      await worker.connect();
      assert.equal(await worker.getArtifact('0'.repeat(64)), null, 'never published: null (and the worker now reads the stream)');
      for (let i = 0; i < 3; i++) await coord.putArtifact(shas[i], blobs[i]);
      // Read in publication order: the first one's bytes were let go when the third arrived. Asked
      // for by three batches at once, it is read again once (from its own offset).
      for (const i of [2, 1, 0]) {
        const backs = await Promise.all([1, 2, 3].map(() => worker.getArtifact(shas[i])));
        for (const back of backs) {
          assert.ok(back, `artifact ${i}`);
          assert.equal(sha256(back), shas[i], `artifact ${i} is byte-exact`);
        }
      }
      assert.deepEqual(log.events('artifact_reread').map((e) => [e.sha256, e.found]), [[shas[0], true]]);
    } finally {
      await Promise.all([coord.close(), worker.close()]);
    }
  });

  it('queue stats and dlq list through the CLI', async () => {
    // strict_priority: the claim below takes the high batch, whatever the weights would draw.
    const c = { backend: 'rabbitmq', url: server.url, queue: `t_${randomUUID().slice(0, 8)}`, strict_priority: true };
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const b = new RabbitBackend(validateQueueConfig(c));
    await b.connect();
    await b.enqueue([batch('j1'), { ...batch('j1'), priority: 'high' }]);
    const [claim] = await b.claimBatches('w', 1, 1000);
    assert.ok(claim);
    await b.deadLetter('w', claim.ok ? claim.batch.id : claim.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison pill'));
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

  it('a renewed lease keeps a long batch; a holder that stops renewing loses it to another worker (attempt 2)', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const c = config();
    const [coord, a, b] = [new RabbitBackend(c), new RabbitBackend(c), new RabbitBackend(c)];
    await Promise.all([coord.connect(), a.connect(), b.connect()]);
    try {
      const job = `job-${randomUUID()}`;
      await coord.putJob(manifest(job));
      const sent = batch(job);
      await coord.enqueue([sent]);
      const first = await claimOne(a, 'wa', 1000);
      assert.ok(first?.ok && first.batch.attempt === 1, JSON.stringify(first));
      // Renewed every 250 ms for 3 s (three 1 s leases): nobody else gets it.
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        assert.deepEqual(await a.renewLeases('wa', [sent.id], 1000), [], 'a renewed lease holds');
        assert.deepEqual(await b.claimBatches('wb', 1, 1000), [], 'a batch under a live lease is not redelivered');
        await sleep(250);
      }
      // A stops renewing but stays connected (a stuck worker): its lease ends, the batch goes to B.
      const second = await claimOne(b, 'wb', 60_000, 10_000);
      assert.ok(second?.ok, JSON.stringify(second));
      assert.equal(second.batch.id, sent.id);
      assert.equal(second.batch.attempt, 2);
      assert.deepEqual([...second.batch.payload], [...sent.payload]);
      assert.deepEqual(await a.renewLeases('wa', [sent.id], 1000), [sent.id], 'the stuck holder is told it lost the lease');
      assert.deepEqual(await a.reclaimExpired(), { requeued: [sent.id], deadLettered: [] });
      assert.equal(await a.completeBatch('wa', first.batch, Uint8Array.from([1])), false, 'a late completion is not the completion');
      assert.equal(await b.completeBatch('wb', second.batch, Uint8Array.from([2])), true);
      const entries = await readEntries(coord, job, 2);
      assert.deepEqual(entries.map((e) => (e.kind === 'results' ? e.workerId : e.kind)).sort(), ['wa', 'wb'], 'both results arrive; the coordinator keeps the first');
      assert.equal((await coord.stats()).pending.normal, 0);
    } finally {
      await Promise.all([coord.close(), a.close(), b.close()]);
    }
  });

  it('an expired lease past max_requeue_attempts dead-letters the batch with the reason', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const c = config({ max_requeue_attempts: 0 });
    const b = new RabbitBackend(c);
    await b.connect();
    try {
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job));
      const sent = batch(job);
      await b.enqueue([sent]);
      assert.ok((await claimOne(b, 'w', 300))?.ok);
      const out = await until('the expired lease to be dead-lettered', async () => {
        const o = await b.reclaimExpired();
        return o.deadLettered.length > 0 && o;
      }, { timeoutMs: 5000, intervalMs: 100 });
      assert.deepEqual(out, { requeued: [], deadLettered: [sent.id] });
      const [dead] = await b.listDead();
      assert.equal(dead.id, sent.id);
      assert.deepEqual([dead.error.code, dead.error.message], ['MG_ERR_LEASE_EXPIRED', 'lease expired after 1 attempts']);
      assert.deepEqual((await readEntries(b, job, 1)).map((e) => e.kind), ['dead']);
    } finally {
      await b.close();
    }
  });

  it('withdrawJob across processes: the holder loses its batch, the job\'s other batches are dropped, nothing is dead-lettered', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const c = config();
    const [coord, worker] = [new RabbitBackend(c), new RabbitBackend(c)];
    await Promise.all([coord.connect(), worker.connect()]);
    try {
      const job = `job-${randomUUID()}`;
      const other = `job-${randomUUID()}`;
      await coord.putJob(manifest(job));
      await coord.putJob(manifest(other));
      const mine = [batch(job), batch(job), batch(job)];
      await coord.enqueue(mine);
      const held = await claimOne(worker, 'w', 60_000);
      assert.ok(held?.ok);
      assert.equal((await worker.getJob(job))?.jobId, job, 'the worker reads the manifest, as the daemon does');
      assert.equal(await coord.withdrawJob(job, mine.map((x) => x.id)), 3, 'every batch of the job is withdrawn');
      assert.deepEqual(await until('the holder\'s lease to be revoked', async () => {
        const l = await worker.renewLeases('w', [held.batch.id], 60_000);
        return l.length === 1 && l;
      }, { timeoutMs: 10_000, intervalMs: 100 }), [held.batch.id], 'the holder\'s lease is revoked');
      assert.equal(await worker.getJob(job), null, 'the worker sees the job gone');
      const theirs = batch(other);
      await coord.enqueue([theirs]);
      const next = await claimOne(worker, 'w', 60_000);
      assert.ok(next?.ok);
      assert.equal(next.batch.id, theirs.id, 'the withdrawn job\'s batches were dropped, the other job\'s claimed');
      assert.deepEqual(await worker.claimBatches('w', 10, 60_000), []);
      const s = await coord.stats();
      assert.equal(s.pending.normal, 0);
      assert.equal(s.dead, 0, 'nothing dead-lettered');
      assert.deepEqual(await coord.listDead(), []);
    } finally {
      await Promise.all([coord.close(), worker.close()]);
    }
  });

  it('enqueue is idempotent; a batch whose entry was read goes out again when sent again', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const b = new RabbitBackend(config());
    await b.connect();
    try {
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job));
      const x = batch(job);
      await b.enqueue([x]);
      await b.enqueue([x, x]);
      const first = await claimOne(b, 'w', 60_000);
      assert.ok(first?.ok);
      assert.deepEqual(await b.claimBatches('w', 10, 60_000), [], 'one copy only');
      assert.equal(await b.completeBatch('w', first.batch, Uint8Array.from([7])), true);
      assert.equal((await readEntries(b, job, 1)).length, 1);
      // The coordinator sends it again (its frame could not be verified): it must go out.
      await b.enqueue([x]);
      const again = await claimOne(b, 'w', 60_000);
      assert.ok(again?.ok && again.batch.id === x.id);
      assert.equal((await b.stats()).dispatched, 2);
    } finally {
      await b.close();
    }
  });

  it('records read back are checked: forged results entries, heartbeats, manifests and batch headers are not trusted', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const amqp = await import('amqplib');
    const log = capture();
    const c = config();
    const b = new RabbitBackend(c, { logger: log.logger });
    await b.connect();
    const conn = await amqp.connect(server.url);
    try {
      const ch = await conn.createConfirmChannel();
      const n = b.names();
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job));
      // Results queue: a forged entry with a bad role, one without a batch id, one not of ours; then a good one.
      for (const headers of [{ kind: 'results', batch: 'b1', role: 'admin', worker: 'x' }, { kind: 'results', role: 'candidate', worker: 'x' }, { kind: 'verdict', batch: 'b1' }]) ch.sendToQueue(n.results(job), Buffer.from([1]), { headers });
      ch.sendToQueue(n.results(job), Buffer.from([9]), { headers: { kind: 'results', batch: 'b2', role: 'baseline', worker: 'w' } });
      // Streams: a heartbeat without threads, a manifest with memMb -5.
      ch.sendToQueue(n.workers, Buffer.from(JSON.stringify({ host: 'h', pid: 1, threads: 'q', startedAt: 0 })), { headers: { kind: 'heartbeat', worker: 'forged', at: Date.now() } });
      const bad = `job-${randomUUID()}`;
      ch.sendToQueue(n.jobs, Buffer.from(JSON.stringify({ ...manifest(bad), memMb: -5 })), { headers: { kind: 'job', job: bad } });
      // A batch whose attempt header is not a count.
      ch.publish(n.exchange, `${c.queue}.normal`, Buffer.from([1, 2]), { messageId: 'forged-batch', headers: { id: 'forged-batch', job, role: 'candidate', priority: 'normal', attempt: 'abc' } });
      await ch.waitForConfirms();

      const entries = await readEntries(b, job, 1);
      assert.deepEqual(entries.map((e) => e.batchId), ['b2'], 'only the well-formed entry');
      assert.deepEqual(log.events('malformed_record').map((e) => e.field).sort(), ['batch', 'kind', 'role']);
      assert.equal(await b.getJob(bad), null, 'a manifest outside its schema is not a job');
      assert.deepEqual((await b.activeWorkers()).map((w) => w.workerId), [], 'a heartbeat outside its schema is not a worker');
      const fields = log.events('malformed_record').map((e) => `${e.record}: ${e.field}`);
      assert.ok(fields.some((f) => /manifest.*memMb/.test(f)), fields.join('\n'));
      assert.ok(fields.some((f) => /worker forged.*threads/.test(f)), fields.join('\n'));
      const claim = await claimOne(b, 'w', 60_000);
      assert.ok(claim && !claim.ok, JSON.stringify(claim));
      assert.equal(claim.id, 'forged-batch');
      assert.deepEqual([claim.error.code, claim.error.message], ['MG_ERR_MALFORMED_BATCH', 'malformed batch: attempts is not a count']);
    } finally {
      await conn.close();
      await b.close();
    }
  });

  it('queue dlq retry and purge through the CLI', async () => {
    const c = { backend: 'rabbitmq', url: server.url, queue: `t_${randomUUID().slice(0, 8)}` };
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    const b = new RabbitBackend(validateQueueConfig(c));
    await b.connect();
    const sent = [batch('j1'), batch('j1')];
    await b.enqueue(sent);
    for (let i = 0; i < sent.length; i++) {
      const claim = await claimOne(b, 'w', 60_000);
      assert.ok(claim?.ok);
      await b.deadLetter('w', claim.batch.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison pill'));
    }
    await b.close();
    const q = ['--queue-config', JSON.stringify(c)];
    assert.equal((await runCli(['queue', 'stats', ...q])).stdout.match(/dead-lettered (\d+)/)?.[1], '2');
    const none = await runCli(['queue', 'dlq', 'retry', 'no-such-batch', ...q]);
    assert.equal(none.code, 1, none.stderr);
    const retried = await runCli(['queue', 'dlq', 'retry', sent[0].id, ...q]);
    assert.equal(retried.code, 0, retried.stderr);
    assert.match(retried.stdout, /requeued 1 dead-lettered batch$/m);
    const stats = await runCli(['queue', 'stats', ...q]);
    assert.match(stats.stdout, /normal=1/);
    assert.match(stats.stdout, /dead-lettered 1/);
    const purged = await runCli(['queue', 'dlq', 'purge', '--yes', ...q]);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /purged 1 dead-lettered batch$/m);
    assert.match((await runCli(['queue', 'dlq', 'list', ...q])).stdout, /dead-letter queue is empty/);
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

describe('rabbitmq over TLS (amqps://)', () => {
  let server: RabbitServer;
  let dir: string;
  let ca: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mg-tls-'));
    const files = makeTlsFiles(dir);
    ca = files.ca;
    server = await startRabbit({ tls: files });
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a batch round-trips over amqps:// with the CA given; without it the certificate is refused', async () => {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.ts');
    for (const raw of [
      { url: server.amqpsUrl!, ssl: { ca } },
      { connection: { host: '127.0.0.1', port: server.tlsPort!, username: 'guest', password: 'guest', ssl: { ca, servername: 'localhost' } } },
    ]) {
      const b = new RabbitBackend(validateQueueConfig({ backend: 'rabbitmq', queue: `t_${randomUUID().slice(0, 8)}`, ...raw }));
      await b.connect();
      try {
        const job = `job-${randomUUID()}`;
        await b.putJob(manifest(job));
        const sent = batch(job);
        await b.enqueue([sent]);
        const claim = await claimOne(b, 'w', 60_000);
        assert.ok(claim?.ok && claim.batch.id === sent.id, JSON.stringify(claim));
        assert.equal(await b.completeBatch('w', claim.batch, Uint8Array.from([4, 2])), true);
        const [entry] = await readEntries(b, job, 1);
        assert.ok(entry?.kind === 'results' && Buffer.from(entry.frame).equals(Buffer.from([4, 2])));
      } finally {
        await b.close();
      }
    }
    const untrusted = new RabbitBackend(validateQueueConfig({ backend: 'rabbitmq', url: server.amqpsUrl!, queue: 't_untrusted' }));
    await assert.rejects(untrusted.connect(), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_BACKEND' && /cannot connect to rabbitmq at amqps:\/\/guest:\*\*\*@127\.0\.0\.1:\d+: .*(self[- ]signed|certificate)/i.test(err.message ?? ''));
    await untrusted.close();
    assert.throws(() => validateQueueConfig({ backend: 'rabbitmq', url: server.amqpsUrl!.replace('amqps:', 'amqp:'), ssl: { ca } }), /queue-config\.ssl: needs an amqps:\/\/ url/);
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
    assert.equal(dead[0].error.code, 'MG_ERR_LEASE_EXPIRED');
    assert.match(dead[0].error.message, /lease expired after 2 attempts/);
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
    assert.equal(bad.error.code, 'MG_ERR_CODEC');
    assert.match(bad.error.message, /does not match its sha256/);
    s3.destroy();
    await b.close();
  });

  it('queue stats and dlq list through the CLI', async () => {
    const c = raw();
    const b = await backend({ queue_name: c.queue_name });
    await b.enqueue([batch('j1'), batch('j1')]);
    const [claim] = await b.claimBatches('w', 1, 5000);
    assert.ok(claim);
    await b.deadLetter('w', claim.ok ? claim.batch.id : claim.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison pill'));
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

  it('withdrawJob across processes: the holder loses its batch, the job\'s other batches are dropped, nothing is dead-lettered', async () => {
    const coord = await backend();
    const worker = await backend({ queue_name: coord.names().main });
    try {
      const job = `job-${randomUUID()}`;
      const other = `job-${randomUUID()}`;
      await coord.putJob(manifest(job));
      await coord.putJob(manifest(other));
      const mine = [batch(job), batch(job), batch(job)];
      await coord.enqueue(mine);
      const held = await claimOne(worker, 'w', 30_000);
      assert.ok(held?.ok);
      assert.equal(held.batch.jobId, job);
      assert.equal(await coord.withdrawJob(job, mine.map((x) => x.id)), 3, 'every batch of the job is withdrawn');
      // Workers look at a job again at most every 5 s: within 15 s the holder is told.
      assert.deepEqual(await until('the holder\'s lease to be revoked', async () => {
        const l = await worker.renewLeases('w', [held.batch.id], 30_000);
        return l.length === 1 && l;
      }, { timeoutMs: 15_000, intervalMs: 100 }), [held.batch.id], 'the holder\'s lease is revoked');
      assert.equal(await worker.getJob(job), null, 'the worker sees the job gone');
      const theirs = batch(other);
      await coord.enqueue([theirs]);
      const next = await claimOne(worker, 'w', 30_000);
      assert.ok(next?.ok);
      assert.equal(next.batch.id, theirs.id, 'the withdrawn job\'s batches were dropped, the other job\'s claimed');
      assert.deepEqual(await worker.claimBatches('w', 10, 30_000), []);
      assert.equal(await worker.completeBatch('w', next.batch, Uint8Array.from([1])), true);
      const s = await until('the queue to drain', async () => {
        const x = await coord.stats();
        return x.pending.normal === 0 && x;
      }, { timeoutMs: 10_000, intervalMs: 100 });
      assert.equal(s.pending.normal, 0);
      assert.equal(s.dead, 0, 'nothing dead-lettered');
    } finally {
      await coord.close();
      await worker.close();
    }
  });

  it('enqueue is idempotent; a batch whose entry was read goes out again when sent again', async () => {
    const b = await backend();
    try {
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job));
      const x = batch(job);
      await b.enqueue([x]);
      await b.enqueue([x, x]);
      const first = await claimOne(b, 'w', 30_000);
      assert.ok(first?.ok);
      assert.deepEqual(await b.claimBatches('w', 10, 30_000), [], 'one copy only');
      assert.equal(await b.completeBatch('w', first.batch, Uint8Array.from([7])), true);
      assert.equal((await readEntries(b, job, 1)).length, 1);
      await b.enqueue([x]);
      const again = await claimOne(b, 'w', 30_000);
      assert.ok(again?.ok && again.batch.id === x.id);
      assert.equal((await b.stats()).dispatched, 2);
    } finally {
      await b.close();
    }
  });

  it('records read back are checked: forged results entries, heartbeats, manifests and batch attributes are not trusted', async () => {
    const log = capture();
    const { SqsBackend } = await import('../src/queue/sqs/backend.ts');
    const b = new SqsBackend(validateQueueConfig(raw()), { logger: log.logger });
    await b.connect();
    const { sqs, client: c } = await client();
    try {
      const n = b.names();
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job));
      const url = async (name: string) => (await c.send(new sqs.CreateQueueCommand({ QueueName: name }))).QueueUrl!;
      const s = (v: string) => ({ DataType: 'String', StringValue: v });
      const bin = { DataType: 'Binary', BinaryValue: Uint8Array.from([1]) };
      const results = await url(n.results(job));
      const forged: Record<string, { DataType: string; StringValue?: string; BinaryValue?: Uint8Array }>[] = [
        { kind: s('results'), batch: s('b1'), role: s('admin'), worker: s('x'), payload: bin },
        { kind: s('results'), role: s('candidate'), worker: s('x'), payload: bin },
        { kind: s('verdict'), batch: s('b1') },
      ];
      for (const attrs of forged) {
        await c.send(new sqs.SendMessageCommand({ QueueUrl: results, MessageBody: 'forged', MessageAttributes: attrs }));
      }
      await c.send(new sqs.SendMessageCommand({ QueueUrl: results, MessageBody: 'b2', MessageAttributes: { kind: s('results'), batch: s('b2'), role: s('baseline'), worker: s('w'), payload: { DataType: 'Binary', BinaryValue: Uint8Array.from([9]) } } }));
      const bad = `job-${randomUUID()}`;
      await c.send(new sqs.SendMessageCommand({ QueueUrl: await url(n.job(bad)), MessageBody: JSON.stringify({ ...manifest(bad), memMb: -5 }), MessageAttributes: { kind: s('job'), job: s(bad) } }));
      await c.send(new sqs.TagQueueCommand({ QueueUrl: await url(n.workers), Tags: { 'w:forged': JSON.stringify({ h: 'h', p: 1, t: 'q', s: 0, at: Date.now() }) } }));
      await c.send(new sqs.SendMessageCommand({ QueueUrl: b.queueUrl!, MessageBody: 'forged-batch', MessageAttributes: { id: s('forged-batch'), job: s(job), role: s('candidate'), priority: s('normal'), attempts_before: s('abc'), payload: bin } }));

      const entries = await readEntries(b, job, 1);
      assert.deepEqual(entries.map((e) => e.batchId), ['b2'], 'only the well-formed entry');
      assert.deepEqual(log.events('malformed_record').map((e) => e.field).sort(), ['batch', 'kind', 'role']);
      await assert.rejects(b.getJob(bad), (err: { code?: string }) => err.code === 'MG_ERR_MALFORMED_RECORD', 'a manifest outside its schema is refused');
      assert.deepEqual((await b.activeWorkers()).map((w) => w.workerId), [], 'a heartbeat outside its schema is not a worker');
      const fields = log.events('malformed_record').map((e) => `${e.record}: ${e.field}`);
      assert.ok(fields.some((f) => /manifest.*memMb/.test(f)), fields.join('\n'));
      assert.ok(fields.some((f) => /worker forged.*threads/.test(f)), fields.join('\n'));
      const claim = await claimOne(b, 'w', 30_000);
      assert.ok(claim && !claim.ok, JSON.stringify(claim));
      assert.equal(claim.id, 'forged-batch');
      assert.deepEqual([claim.error.code, claim.error.message], ['MG_ERR_MALFORMED_BATCH', 'malformed batch: attempts is not a count']);
    } finally {
      c.destroy();
      await b.close();
    }
  });

  it('queue dlq retry and purge through the CLI', async () => {
    const c = raw();
    const b = await backend({ queue_name: c.queue_name });
    const sent = [batch('j1'), batch('j1')];
    await b.enqueue(sent);
    const dead: string[] = [];
    for (let i = 0; i < sent.length; i++) {
      const claim = await claimOne(b, 'w', 30_000);
      assert.ok(claim?.ok);
      await b.deadLetter('w', claim.batch.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison pill'));
      dead.push(claim.batch.id);
    }
    await b.close();
    const q = ['--queue-config', JSON.stringify(c)];
    assert.equal((await runCli(['queue', 'stats', ...q])).stdout.match(/dead-lettered (\d+)/)?.[1], '2');
    const none = await runCli(['queue', 'dlq', 'retry', 'no-such-batch', ...q]);
    assert.equal(none.code, 1, none.stderr);
    const retried = await runCli(['queue', 'dlq', 'retry', dead[0], ...q]);
    assert.equal(retried.code, 0, retried.stderr);
    assert.match(retried.stdout, /requeued 1 dead-lettered batch$/m);
    const stats = await runCli(['queue', 'stats', ...q]);
    assert.match(stats.stdout, /normal=1/);
    assert.match(stats.stdout, /dead-lettered 1/);
    const purged = await runCli(['queue', 'dlq', 'purge', '--yes', ...q]);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /purged 1 dead-lettered batch$/m);
    assert.match((await runCli(['queue', 'dlq', 'list', ...q])).stdout, /dead-letter queue is empty/);
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
