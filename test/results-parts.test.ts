/**
 * A batch's results travel in several frames when one would exceed the transport's message limit
 * (`max_frame_bytes`, a default per backend). Pure: how results are cut into parts and read back,
 * and the config key. Over a real redis-server with worker daemons as processes: a job whose batches
 * need several frames gives the report a local run gives, every frame under the limit; duplicated,
 * re-labelled and unsigned parts are dropped (each part carries its own HMAC, bound to its batch);
 * a batch whose last part never comes (its worker died between parts) is sent again after the
 * grace period and not taken for lost. Over RabbitMQ (no lost-batch check; parts after the first are
 * published after the acknowledgement) the same job gives the same report. Over SQS (fauxqs) and Kafka
 * (librdkafka's mock cluster), with their default limits: results over 256 KiB / 1 MB per batch arrive
 * in parts (SQS without S3).
 *
 * Run: node --import tsx --test test/results-parts.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createCodec } from '../src/codec/index.ts';
import { DEFAULT_MAX_FRAME_BYTES, decodeResultsFrame, encodeResultFrames, maxFrameBytes } from '../src/queue/messages.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { partGraceMs, type QueueDispatcher } from '../src/dispatch/queue.ts';
import type { Backend, ResultEntry } from '../src/queue/types.ts';
import type { CaseResult } from '../src/core/protocol.ts';
import { startRedis, redisAvailable, type RedisServer } from './helpers/redis-server.ts';
import { fauxqsUnavailable, startFauxqs, type Fauxqs } from './helpers/fauxqs-server.ts';
import { rabbitUnavailable, startRabbit, type RabbitServer } from './helpers/rabbitmq-server.ts';
import { kafkaMockUnavailable, startKafkaMock, type KafkaMock } from './helpers/kafka-broker.ts';
import { assertSameVerdict, fixture, killAllWorkers, localReport, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';

const codec = createCodec({ compress: true });
/** `n` characters of text LZ4 cannot shrink much (base64 of a hash chain). */
const noiseText = (i: number, n: number) => {
  let out = '';
  for (let h = String(i); out.length < n; ) out += h = createHash('sha256').update(h).digest('base64');
  return out.slice(0, n);
};
const bulkyResults = (n: number): CaseResult[] =>
  Array.from({ length: n }, (_, index) => ({ index, passed: false, durationMs: 1.5, error: { code: 'E_THROW', message: noiseText(index, 1000) }, output: noiseText(index + 1, 200) }));

describe('results frames', () => {
  it('stay one frame, without a part header, when the whole encoding fits', () => {
    const results = bulkyResults(10);
    const frames = encodeResultFrames(codec, results, 65_536);
    assert.equal(frames.length, 1);
    assert.deepEqual(decodeResultsFrame(codec, frames[0]), { results });
  });

  it('are split into numbered parts, each under the limit, that together hold every result once', () => {
    const results = bulkyResults(300);
    const frames = encodeResultFrames(codec, results, 65_536);
    assert.ok(frames.length >= 4, `${frames.length} frames`);
    const decoded = frames.map((f) => decodeResultsFrame(codec, f));
    assert.ok(frames.every((f) => f.byteLength <= 65_536), frames.map((f) => f.byteLength).join());
    assert.deepEqual(decoded.map((d) => d.part), frames.map((_, i) => ({ part: i + 1, parts: frames.length })));
    assert.deepEqual(decoded.flatMap((d) => d.results), results);
  });

  it('count compression: results that compress under the limit stay one frame', () => {
    const results = Array.from({ length: 300 }, (_, index) => ({ index, passed: false, durationMs: 1, error: { code: 'E_THROW', message: 'm'.repeat(1000) } }));
    assert.ok(Buffer.byteLength(JSON.stringify(results)) > 65_536);
    assert.equal(encodeResultFrames(codec, results, 65_536).length, 1);
  });

  it('compact a single result that does not fit a part, and refuse a limit no result can fit', () => {
    const [r] = bulkyResults(1);
    const [frame] = encodeResultFrames(createCodec({ compress: false }), [r], 700);
    const [back] = decodeResultsFrame(codec, frame).results;
    assert.equal(back.output, undefined);
    assert.ok(back.error!.message.length <= 100);
    assert.throws(() => encodeResultFrames(codec, [r], 100), { code: 'MG_ERR_CODEC' });
  });

  it('refuse a malformed part header', () => {
    const result = Buffer.from(JSON.stringify({ index: 0, passed: true, durationMs: 1 }));
    const header = (h: object) => Buffer.from(JSON.stringify(h));
    for (const h of [{ part: 0, parts: 2 }, { part: 3, parts: 2 }, { part: 1.5, parts: 2 }, { part: 1, parts: 1e9 }, { part: '1', parts: 2 }]) {
      assert.throws(() => decodeResultsFrame(codec, codec.encode([header(h), result])), { code: 'MG_ERR_CODEC' }, JSON.stringify(h));
    }
    assert.throws(() => decodeResultsFrame(codec, codec.encode([header({ part: 1, parts: 1 })])), /no results/);
    assert.deepEqual(decodeResultsFrame(codec, codec.encode([header({ part: 2, parts: 2 }), result])).part, { part: 2, parts: 2 });
  });

  it('carry plain passes as pass lists when the coordinator reads them (manifest resultsFormat 2), every result once, each part under the limit', () => {
    const passes: CaseResult[] = Array.from({ length: 20_000 }, (_, index) => ({ index, passed: true, durationMs: index === 7 ? 0 : 0.000123456789 * (index + 1) }));
    const others: CaseResult[] = [{ index: 20_000, passed: false, durationMs: 2, mrViolations: ['reversed'] }, { index: 20_001, passed: true, durationMs: 1, softViolations: ['fast'] }];
    const results = [...passes.slice(0, 10_000), ...others, ...passes.slice(10_000)];
    const byIndex = (rs: CaseResult[]) => [...rs].sort((a, b) => a.index - b.index);
    const plain = encodeResultFrames(codec, results, 65_536);
    const listed = encodeResultFrames(codec, results, 65_536, { passLists: true });
    const decoded = listed.map((f) => decodeResultsFrame(codec, f));
    assert.ok(listed.every((f) => f.byteLength <= 65_536), listed.map((f) => f.byteLength).join());
    // Plain passes' durations come to the microsecond; everything else as it went.
    const micro = (r: CaseResult) => (r.index < 20_000 ? { ...r, durationMs: Math.round(r.durationMs * 1000) / 1000 } : r);
    const got = byIndex(decoded.flatMap((d) => d.results));
    const sent = byIndex(results);
    assert.equal(got.length, sent.length);
    assert.ok(got.every((r, i) => r.index === i && Math.abs(r.durationMs - sent[i].durationMs) <= 0.0005));
    assert.deepEqual(got, byIndex(results.map(micro)));
    // Smaller: 20,002 results as lists of numbers rather than objects.
    const size = (fs: Uint8Array[]) => fs.reduce((n, f) => n + f.byteLength, 0);
    assert.ok(size(listed) < size(plain), `${size(listed)} vs ${size(plain)} bytes`);
    // A pass list is a payload that is a JSON array; a worker without the flag sends none.
    assert.ok(plain.flatMap((f) => codec.decode(f)).every((p) => p[0] === 0x7b));
  });

  it('refuse a malformed pass list', () => {
    const list = (v: unknown) => codec.encode([Buffer.from(JSON.stringify(v))]);
    assert.deepEqual(decodeResultsFrame(codec, list([3, 0.5, 4, 0])).results, [{ index: 3, passed: true, durationMs: 0.5 }, { index: 4, passed: true, durationMs: 0 }]);
    for (const bad of [[1], [-1, 0.5], [1.5, 0.5], [1, -0.5], [1, '0.5'], [1, null], ['1', 0.5], [2 ** 53, 1], Array.from({ length: 2 * 4097 }, () => 1)]) {
      assert.throws(() => decodeResultsFrame(codec, list(bad)), { code: 'MG_ERR_CODEC' }, JSON.stringify(bad).slice(0, 40));
    }
  });

  it('take their limit from the backend, or from max_frame_bytes (at least 64 KiB)', () => {
    assert.equal(maxFrameBytes(validateQueueConfig({ backend: 'redis' })), DEFAULT_MAX_FRAME_BYTES.redis);
    assert.equal(maxFrameBytes(validateQueueConfig({ backend: 'memory' })), DEFAULT_MAX_FRAME_BYTES.memory);
    assert.equal(DEFAULT_MAX_FRAME_BYTES.sqs, 240 * 1024);
    assert.equal(maxFrameBytes(validateQueueConfig({ backend: 'redis', max_frame_bytes: 100_000 })), 100_000);
    assert.throws(() => validateQueueConfig({ backend: 'redis', max_frame_bytes: 1000 }), /queue-config\.max_frame_bytes/);
  });
});

const bulky: RunOptions = { task: fixture('bulky/task.mjs'), baseline: fixture('bulky/baseline.mjs'), candidate: fixture('bulky/candidate.mjs'), n: 300 };

/** Wraps a coordinator's backend: every results entry it reads goes through `see` (which may add or drop entries). */
function watching(see: (e: ResultEntry, keep: (e: ResultEntry) => void) => void) {
  return (backend: Backend): Backend =>
    new Proxy(backend, {
      get(target, prop, receiver) {
        if (prop === 'readResults') {
          return async (jobId: string, cursor: string, blockMs: number) => {
            const read = await target.readResults(jobId, cursor, blockMs);
            const entries: ResultEntry[] = [];
            for (const e of read.entries) see(e, (x) => entries.push(x));
            return { cursor: read.cursor, entries };
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
}

/** What the coordinator read: frames per batch, and each part's header. */
function tally() {
  const frames = new Map<string, { bytes: number; part?: { part: number; parts: number } }[]>();
  return {
    frames,
    see(e: ResultEntry) {
      if (e.kind !== 'results') return;
      const { part } = decodeResultsFrame(codec, e.frame);
      frames.set(e.batchId, [...(frames.get(e.batchId) ?? []), { bytes: e.frame.byteLength, ...(part ? { part } : {}) }]);
    },
    split: () => [...frames.values()].filter((f) => f.some((x) => x.part)).length,
    largest: () => Math.max(...[...frames.values()].flat().map((x) => x.bytes)),
  };
}

describe('split results over Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  let redis: RedisServer;
  let expected: Awaited<ReturnType<typeof localReport>>;
  before(async () => {
    redis = await startRedis();
    expected = await localReport(bulky);
    assert.equal(expected.decision.adopt, false);
  });
  after(async () => {
    killAllWorkers();
    await redis?.stop();
  });

  const config = (extra: object = {}) => ({
    backend: 'redis',
    connection: { host: '127.0.0.1', port: redis.port },
    queue: `parts_${randomUUID().slice(0, 8)}`,
    lease_seconds: 2,
    heartbeat_check_interval: 0.25,
    heartbeat_timeout: 3,
    batch_size: 150,
    max_frame_bytes: 65_536,
    hmac_key: 'k-' + randomUUID(),
    ...extra,
  });

  it('a job whose batches need several frames gives the local report, every frame under the limit', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const seen = tally();
    let d: QueueDispatcher | undefined;
    const report = await queueReport(bulky, qc, { onDispatcher: (x) => (d = x), wrap: watching((e, keep) => (seen.see(e), keep(e))) });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations, 'every violation, message and name as a local run reports it');
    assert.ok(seen.split() >= 2, `the candidate's batches came in parts (${JSON.stringify([...seen.frames])})`);
    assert.ok(seen.largest() <= 65_536, `largest frame ${seen.largest()} bytes`);
    assert.deepEqual(d!.forged, { unknown_batch: 0, wrong_role: 0, wrong_indices: 0, bad_signature: 0, undecodable: 0 });
    assert.equal(d!.duplicatesDropped, 0);
    assert.equal(d!.batchesLost, 0, 'a batch completed by its first part is not taken for lost');
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });

  it('over two shards (parts after the first go to the home shard) the report is the same', async () => {
    const qc = config({ shards: 2 });
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const seen = tally();
    let d: QueueDispatcher | undefined;
    const report = await queueReport(bulky, qc, { onDispatcher: (x) => (d = x), wrap: watching((e, keep) => (seen.see(e), keep(e))) });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.ok(seen.split() >= 2, JSON.stringify([...seen.frames]));
    assert.equal(d!.batchesLost, 0);
    w.child.kill('SIGTERM');
    assert.doesNotMatch(w.output(), /"event":"backend_error"[^\n]*"during":"complete"/, 'every part was published at the first try');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });

  it('duplicated, re-labelled and unsigned parts are dropped; each part is verified on its own', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    let parts = 0;
    const report = await queueReport(bulky, qc, {
      onDispatcher: (x) => (d = x),
      wrap: watching((e, keep) => {
        if (e.kind === 'results' && decodeResultsFrame(codec, e.frame).part) {
          parts++;
          const results = decodeResultsFrame(codec, e.frame).results;
          // An attacker with write access to the stream: the part claims every case passed (unsigned,
          // and with the genuine signature of other bytes), the genuine part again, and the genuine part
          // re-labelled as the role's next batch (its signature binds it to its own batch).
          const forgedFrame = Buffer.from(codec.encode([Buffer.from(JSON.stringify({ part: 1, parts: 1 })), ...results.map((r) => Buffer.from(JSON.stringify({ index: r.index, passed: true, durationMs: 1 })))]));
          keep({ ...e, frame: forgedFrame, mac: undefined } as ResultEntry);
          keep({ ...e, frame: forgedFrame } as ResultEntry);
          keep(e);
          keep(e);
          const [job, role, start] = e.batchId.split(':');
          keep({ ...e, batchId: `${job}:${role}:${Number(start) + 150}` });
          return;
        }
        keep(e);
      }),
    });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.ok(parts >= 4, `${parts} parts`);
    assert.ok(d!.forged.bad_signature >= 2 * parts, JSON.stringify(d!.forged));
    assert.ok(d!.duplicatesDropped > 0, 'the repeated part was dropped as a duplicate');
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });

  it('a batch whose last part never comes is sent again after the grace period, not taken for lost', async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let d: QueueDispatcher | undefined;
    let dropped: string | undefined;
    const started = Date.now();
    const report = await queueReport(bulky, qc, {
      onDispatcher: (x) => (d = x),
      wrap: watching((e, keep) => {
        // The first split batch's last part is lost, as if its worker died before publishing it.
        const part = e.kind === 'results' ? decodeResultsFrame(codec, e.frame).part : undefined;
        if (dropped === undefined && part && part.parts > 1 && part.part === part.parts) {
          dropped = e.batchId;
          return;
        }
        keep(e);
      }),
    });
    assert.ok(dropped, 'a last part was dropped');
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.equal(d!.batchesLost, 0, 'not republished as lost from the backend');
    assert.ok(d!.duplicatesDropped > 0, 'the resent batch ran again; its cases already recorded were dropped');
    assert.ok(Date.now() - started >= partGraceMs(2), 'the resend waited for the grace period');
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });
});

describe('split results over SQS (fauxqs)', { skip: fauxqsUnavailable() ?? false, concurrency: false }, () => {
  let server: Fauxqs;
  before(async () => {
    server = await startFauxqs();
  });
  after(async () => {
    killAllWorkers();
    await server?.stop();
  });

  it('results over 256 KiB per batch arrive in parts under the default limit, without S3', async () => {
    const run = { ...bulky, n: 800 };
    const expected = await localReport(run);
    const qc = {
      backend: 'sqs',
      endpoint_url: server.endpoint,
      region: 'us-east-1',
      aws_access_key_id: 'test',
      aws_secret_access_key: 'test',
      queue_name: `parts${randomUUID().slice(0, 8)}`,
      lease_seconds: 10,
      heartbeat_check_interval: 0.5,
      batch_size: 400,
      hmac_key: 'k-' + randomUUID(),
    };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const seen = tally();
    let d: QueueDispatcher | undefined;
    const report = await queueReport(run, qc, { onDispatcher: (x) => (d = x), wrap: watching((e, keep) => (seen.see(e), keep(e))) });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.ok(seen.split() >= 1, JSON.stringify([...seen.frames]));
    assert.ok(seen.largest() <= DEFAULT_MAX_FRAME_BYTES.sqs, `largest frame ${seen.largest()} bytes`);
    assert.equal(d!.forged.bad_signature + d!.forged.undecodable, 0, JSON.stringify(d!.forged));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });
});

describe('split results over RabbitMQ', { skip: rabbitUnavailable() ?? false, concurrency: false }, () => {
  let server: RabbitServer;
  before(async () => {
    server = await startRabbit();
  });
  after(async () => {
    killAllWorkers();
    await server?.stop();
  });

  it('a job whose batches need several frames gives the local report', async () => {
    const expected = await localReport(bulky);
    const qc = { backend: 'rabbitmq', url: server.url, queue: `parts_${randomUUID().slice(0, 8)}`, lease_seconds: 5, heartbeat_check_interval: 0.5, batch_size: 150, max_frame_bytes: 65_536, hmac_key: 'k-' + randomUUID() };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const seen = tally();
    let d: QueueDispatcher | undefined;
    const report = await queueReport(bulky, qc, { onDispatcher: (x) => (d = x), wrap: watching((e, keep) => (seen.see(e), keep(e))) });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.ok(seen.split() >= 2, JSON.stringify([...seen.frames]));
    assert.ok(seen.largest() <= 65_536, `largest frame ${seen.largest()} bytes`);
    assert.deepEqual(d!.forged, { unknown_batch: 0, wrong_role: 0, wrong_indices: 0, bad_signature: 0, undecodable: 0 });
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });
});

describe('split results over Kafka (librdkafka mock cluster)', { skip: kafkaMockUnavailable() ?? false, concurrency: false }, () => {
  let mock: KafkaMock;
  before(async () => {
    mock = await startKafkaMock({ partitions: 2, topics: ['mg-parts'] });
  });
  after(async () => {
    killAllWorkers();
    await mock?.stop();
  });

  it('results over 1 MB per batch arrive in parts under the default limit', { timeout: 180_000 }, async () => {
    const run = { ...bulky, n: 3000 };
    const expected = await localReport(run);
    const qc = { backend: 'kafka', bootstrap_servers: mock.bootstrap, topic: 'mg-parts', consumer_group: 'mg-parts-workers', heartbeat_timeout: 6, heartbeat_check_interval: 0.5, batch_size: 1500, hmac_key: 'k-' + randomUUID() };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    const seen = tally();
    let d: QueueDispatcher | undefined;
    const report = await queueReport(run, qc, { onDispatcher: (x) => (d = x), wrap: watching((e, keep) => (seen.see(e), keep(e))) });
    assertSameVerdict(report, expected);
    assert.deepEqual(report.violations, expected.violations);
    assert.ok(seen.split() >= 1, JSON.stringify([...seen.frames]));
    assert.ok(seen.largest() <= DEFAULT_MAX_FRAME_BYTES.kafka, `largest frame ${seen.largest()} bytes`);
    assert.equal(d!.forged.bad_signature + d!.forged.undecodable, 0, JSON.stringify(d!.forged));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output().slice(-2000));
  });
});
